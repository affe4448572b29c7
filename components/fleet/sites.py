"""The hub/edge contract: what a hub stack exports for its edge sites and how an edge reads it.

One definition serves the hub's exports, the edge's StackReference and the offline render's
stand-in for a hub. `siteHub` is plain (where the shared cache is); `siteEdgeCredentials` is a
secret object holding, per edge, the hub credential that reads the cache and writes only the
replicated keys (`EdgeAccess`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import pulumi

from ..workloads.edge_cache import EdgeHub

HUB_OUTPUT = "siteHub"
"""Stack output of a hub: `SiteHub`."""
EDGE_CREDENTIALS_OUTPUT = "siteEdgeCredentials"
"""Secret stack output of a hub: `EdgeCredential` by edge name."""


class SiteHub(TypedDict):
    """Where the fleet's shared cache is (the hub's `siteHub` output)."""

    name: pulumi.Input[str]
    """The hub's site name."""
    bucket: pulumi.Input[str]
    """The hub's cache bucket."""
    region: pulumi.Input[str]
    """Its region."""
    prefix: pulumi.Input[str]
    """The runners' cache `Path` in it."""
    endpoint: pulumi.Input[str]
    """The S3 endpoint URL; empty for AWS S3 in `region`."""
    pathStyle: pulumi.Input[bool]
    """Path-style requests to `endpoint`."""
    replicate: pulumi.Input[list[str]]
    """Cache key globs edges push to the hub (the hub's `site.replicate`)."""


class EdgeCredential(TypedDict):
    """One edge's credential for the hub's bucket (in the hub's secret output)."""

    accessKeyId: pulumi.Input[str]
    secretAccessKey: pulumi.Input[str]


def site_hub(
    *,
    name: str,
    bucket: pulumi.Input[str],
    region: str,
    prefix: str,
    replicate: Sequence[str],
) -> SiteHub:
    """The `siteHub` output of a hub whose cache is an AWS S3 bucket."""
    return {
        "name": name,
        "bucket": bucket,
        "region": region,
        "prefix": prefix,
        "endpoint": "",
        "pathStyle": False,
        "replicate": list(replicate),
    }


def edge_credential(
    by_edge: Mapping[str, EdgeCredential], edge_name: str, hub_stack: str
) -> EdgeCredential:
    """This edge's credential among those its hub exports, or an error saying how to get one
    (the hub issues one per name in its `site.edges`, at its own `pulumi up`)."""
    if edge_name not in by_edge:
        known = ", ".join(sorted(by_edge)) or "none"
        raise pulumi.RunError(
            f"site.name: the hub stack {hub_stack} exports no credential for the edge "
            f"{edge_name!r} (it has: {known}). Add {edge_name!r} to the hub's site.edges and "
            "run `pulumi up` on the hub first"
        )
    return by_edge[edge_name]


class HubView:
    """What an edge reads from its hub's stack, typed: the bucket, the prefix, and the hub's
    coordinates and credential for this edge as `EdgeCache` takes them."""

    def __init__(
        self, hub_stack: pulumi.StackReference, edge_name: str, uplink_mbps: float
    ) -> None:
        hub = hub_stack.require_output(HUB_OUTPUT)
        credentials = pulumi.Output.all(
            hub_stack.name, hub_stack.require_output(EDGE_CREDENTIALS_OUTPUT)
        ).apply(lambda named: edge_credential(named[1], edge_name, str(named[0])))
        self.bucket: pulumi.Output[str] = hub.apply(lambda h: str(h["bucket"]))
        self.prefix: pulumi.Output[str] = hub.apply(lambda h: str(h["prefix"]))
        self.hub: EdgeHub = {
            "region": hub.apply(lambda h: str(h["region"])),
            "endpoint": hub.apply(lambda h: str(h["endpoint"])),
            "path_style": hub.apply(lambda h: bool(h["pathStyle"])),
            "replicate": hub.apply(lambda h: list(h["replicate"])),
            "access_key_id": pulumi.Output.secret(
                credentials.apply(lambda c: str(c["accessKeyId"]))
            ),
            "secret_access_key": pulumi.Output.secret(
                credentials.apply(lambda c: str(c["secretAccessKey"]))
            ),
            "uplink_mbps": uplink_mbps,
        }


def stand_in_hub_outputs(
    *,
    name: str,
    bucket: str,
    region: str,
    prefix: str,
    replicate: Sequence[str],
    edges: Sequence[str],
) -> Mapping[str, Any]:
    """A hub stack's outputs as an offline render stands in for them (placeholder keys)."""
    credentials: dict[str, EdgeCredential] = {
        edge: {
            "accessKeyId": f"offline-placeholder-edge-key-{edge}",
            "secretAccessKey": f"offline-placeholder-edge-secret-{edge}",
        }
        for edge in edges
    }
    return {
        HUB_OUTPUT: site_hub(
            name=name, bucket=bucket, region=region, prefix=prefix, replicate=replicate
        ),
        EDGE_CREDENTIALS_OUTPUT: credentials,
    }
