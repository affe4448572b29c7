"""`registryMirror`: a pull-through Docker Hub mirror in the cluster, used by nodes and dind."""

from __future__ import annotations

import ipaddress
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from ..workloads.mirror_config import (
    FILESYSTEM_SIZE_LIMIT,
    REGISTRY_IMAGE,
    size_limit_problems,
    static_band_size,
)
from ..workloads.registry_mirror import DEFAULT_REPLICAS
from .base import Section

DOCKER_HUB_TOKEN_KEY = "dockerHubToken"
MIRROR_ADDRESS_OFFSET = 50
"""The mirror's fixed ClusterIP: this far into the service range, inside its static band."""


def default_cluster_ip(service_cidr: str) -> str:
    """A fixed address low in the service range, where Kubernetes assigns nothing by itself:
    the 50th, or in a range below /22, whose static band ends earlier, the band's last."""
    network = ipaddress.ip_network(service_cidr, strict=False)
    offset = min(MIRROR_ADDRESS_OFFSET, static_band_size(service_cidr))
    return str(network.network_address + offset)


class RegistryMirrorSettings(Section):
    """A CNCF Distribution registry caching Docker Hub for the nodes and for Docker-in-Docker."""

    config_key: ClassVar[str] = "registryMirror"

    enabled: bool = Field(
        True,
        description="Run the mirror. Build nodes' containerd and dind pull Docker Hub images "
        "through it, with Docker Hub itself as fallback; `.gitlab-ci.yml` stays as it is.",
    )
    cluster_ip: str | None = Field(
        None,
        description="Fixed ClusterIP of the mirror, which containerd on the nodes can reach "
        "without cluster DNS. Default on EKS: the service range's address + 50, or the last of "
        "its static band in a range smaller than /22 (the range looked up for an existing "
        "cluster). Unset on other clusters: only dind uses the mirror.",
    )
    replicas: int = Field(
        DEFAULT_REPLICAS, ge=1, le=10, description="Registry replicas (a PDB above one)."
    )
    storage: Literal["s3", "filesystem"] | None = Field(
        None,
        description="`s3`: the cache's bucket under `prefix` (IRSA on EKS, the cache keys for "
        "an S3-compatible store). `filesystem`: an emptyDir per replica. Default: `s3` when "
        "the cache is S3 or S3-compatible.",
    )
    prefix: str = Field(
        "registry-mirror", description="Key prefix of the mirrored layers in the bucket."
    )
    filesystem_size: str = Field(
        FILESYSTEM_SIZE_LIMIT,
        description="`filesystem` storage only: the bound of each replica's cache, at least "
        "1Gi (its emptyDir's sizeLimit and ephemeral-storage request). The registry expires "
        "layers by age only; a replica whose cache outgrows this is evicted by the kubelet and "
        "starts again empty, instead of filling its node's disk. Size it above the largest "
        "image your jobs pull.",
    )
    expiration_days: int = Field(
        30,
        ge=1,
        le=3650,
        description="Days after which mirrored layers are deleted: by the bucket's lifecycle "
        "rule on AWS S3, by an hourly CronJob on an S3-compatible store, by the registry itself "
        "with filesystem storage.",
    )
    docker_hub_username: str | None = Field(
        None,
        description="Pull from Docker Hub as this account (higher limits). Its access token is "
        f"the secret `{DOCKER_HUB_TOKEN_KEY}`.",
    )
    image: str = Field(REGISTRY_IMAGE, description="The official `registry` image to run.")

    @field_validator("filesystem_size")
    @classmethod
    def _a_size_limit(cls, size: str) -> str:
        if problems := size_limit_problems(size):
            raise ValueError("; ".join(problems))
        return size

    @field_validator("cluster_ip")
    @classmethod
    def _an_address(cls, cluster_ip: str | None) -> str | None:
        if cluster_ip is not None:
            try:
                ipaddress.ip_address(cluster_ip)
            except ValueError:
                raise ValueError(f"must be an IP address, got {cluster_ip!r}") from None
        return cluster_ip
