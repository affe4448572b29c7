"""`site`: one of several runner sites sharing a cache: the hub, or an edge reading through it."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from ..kubernetes_names import checked
from ..workloads.rclone import DEFAULT_EXPIRE_AFTER, volume_size_problems
from .base import Problem, Section

_SITE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")
_STACK_REFERENCE = re.compile(r"^[\w.-]+/[\w.-]+/[\w.-]+$")
_AGE = re.compile(r"^\d+(s|m|h|d|w)$")
ANY_SITE_TAG = "fleet"
"""The runner tag every site's runners carry: the site-affinity template's first job uses it."""


def site_tag(name: str) -> str:
    """The runner tag that pins a job to one site."""
    return f"site-{name}"


CacheVolumeSize = Annotated[str, checked(volume_size_problems)]


class SiteSettings(Section):
    """Where this stack sits among several runner sites that share one cache."""

    config_key: ClassVar[str] = "site"

    name: str | None = Field(
        None,
        description="Site name; its runners get the tags `site-<name>` and `fleet` and the job "
        "variable RUNNER_SITE. Unset: a single-site fleet.",
    )
    role: Literal["hub", "edge"] = Field(
        "hub",
        description="`hub`: this stack's S3 bucket is the shared cache. `edge`: a local cache "
        "that writes locally and reads through from the hub (`hubStack`).",
    )
    edges: list[str] = Field(
        default_factory=list,
        description="Hub only: the edge sites that get a scoped credential (read the cache, "
        "write only `replicate` keys), exported as a secret for their stacks.",
    )
    replicate: list[str] = Field(
        default_factory=list,
        description="Hub only: cache key globs edges push to the hub, matched against the "
        "runner's key with GitLab's `-protected`/`-non_protected` suffix below "
        "`project/<id>/`, e.g. `deps-*`.",
    )
    hub_stack: str | None = Field(
        None, description="Edge only: the hub's stack, `<org>/<project>/<stack>` (required)."
    )
    uplink_mbps: float | None = Field(
        None,
        gt=0,
        description="Edge only: the site's upload bandwidth; pushes to the hub use 80% of it.",
    )
    edge_cache_size: CacheVolumeSize = Field(
        "200Gi",
        description="Edge only: the local cache volume: 30% rclone's VFS cache (hub reads, and "
        "recent uploads a second time), 50% the local store (trimmed to it, oldest first), 20% "
        "headroom.",
    )
    storage_class_name: str | None = Field(
        None,
        description="Edge only: storage class of the local cache volume. "
        "RunnerCacheVolumeNearlyFull needs one whose volumes report kubelet volume stats (CSI "
        "drivers do; hostPath-based ones such as k3s's local-path do not).",
    )
    expire_after: str = Field(
        DEFAULT_EXPIRE_AFTER, description="Edge only: local objects older than this are removed."
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str | None) -> str | None:
        if name is not None and not _SITE_NAME.match(name):
            raise ValueError(
                f"must be a DNS label of at most 32 characters (a-z, 0-9, '-'), got {name!r}"
            )
        return name

    @field_validator("edges")
    @classmethod
    def _valid_edges(cls, edges: list[str]) -> list[str]:
        for edge in edges:
            cls._valid_name(edge)
        if duplicates := sorted({edge for edge in edges if edges.count(edge) > 1}):
            raise ValueError(f"must not repeat edges, repeated: {', '.join(duplicates)}")
        return edges

    @field_validator("expire_after")
    @classmethod
    def _valid_age(cls, age: str) -> str:
        if not _AGE.match(age):
            raise ValueError(f"must be an age such as 168h or 7d, got {age!r}")
        return age

    @property
    def is_edge(self) -> bool:
        """Whether the stack is an edge site."""
        return self.name is not None and self.role == "edge"

    @property
    def is_hub(self) -> bool:
        """Whether the stack is the hub of several sites."""
        return self.name is not None and self.role == "hub"

    def cross_field_problems(self) -> list[Problem]:
        set_keys = self.model_fields_set - {"name"}
        if self.name is None:
            return [self._problem(key, "needs site.name") for key in sorted(set_keys)]
        hub_only = {"edges", "replicate"}
        edge_only = {"hub_stack", "uplink_mbps", "edge_cache_size", "storage_class_name"}
        edge_only.add("expire_after")
        wrong = edge_only if self.role == "hub" else hub_only
        problems = [
            self._problem(
                key,
                f"is only used when site.role is {'edge' if self.role == 'hub' else 'hub'}"
                + (
                    "; set replicate on the hub stack: edges push what the hub allows"
                    if key == "replicate"
                    else ""
                ),
            )
            for key in sorted(set_keys & wrong)
        ]
        if self.role == "edge":
            if self.hub_stack is None or not _STACK_REFERENCE.match(self.hub_stack):
                problems.append(
                    self._problem(
                        "hub_stack",
                        "required for an edge: the hub's stack as <org>/<project>/<stack>, "
                        f"got {self.hub_stack!r}",
                    )
                )
            if self.uplink_mbps is None:
                problems.append(
                    self._problem("uplink_mbps", "required for an edge: its upload bandwidth")
                )
        return problems
