"""The network decisions of a fleet: where its cluster's nodes and Services live, whether it
adds an S3 gateway endpoint, and the registry mirror's fixed address.

Looked up before anything is declared: the S3 endpoint depends on the VPC, the mirror's fixed
address on the Service range, and a bad address must fail before a half-declared stack.
"""

from __future__ import annotations

from ..aws.cluster import (
    CREATE_MODE,
    CREATED_SERVICE_CIDR,
    ClusterNetwork,
    existing_cluster_network,
)
from ..settings import FleetSettings, Problem, SettingsError, default_cluster_ip
from ..workloads.mirror_config import cluster_ip_problems


def cluster_network(settings: FleetSettings) -> ClusterNetwork | None:
    """The VPC and Service range of the stack's EKS cluster; None off EKS.

    A created cluster gets its Service range from the stack; an existing one is looked up.
    """
    if settings.cluster.mode == CREATE_MODE:
        return ClusterNetwork(str(settings.cluster.vpc_id), CREATED_SERVICE_CIDR)
    if settings.on_eks:
        return existing_cluster_network(settings.cluster.name)
    return None


def s3_gateway_endpoint_wanted(settings: FleetSettings) -> bool:
    """`network.s3GatewayEndpoint`, by default on only where the stack creates the cluster.

    A created cluster sits in a VPC the stack was pointed at for it; an existing cluster's VPC
    usually has its S3 endpoint already, or a platform team that owns its route tables.
    """
    explicit = settings.network.s3_gateway_endpoint
    return settings.cluster.mode == CREATE_MODE if explicit is None else explicit


def mirror_cluster_ip(settings: FleetSettings, service_cidr: str | None) -> str | None:
    """The mirror's fixed ClusterIP for containerd on the nodes, or None (dind only).

    Raises `SettingsError` when an explicit address cannot serve as one.
    """
    mirror = settings.registry_mirror
    if not mirror.enabled:
        return None
    address = mirror.cluster_ip or (default_cluster_ip(service_cidr) if service_cidr else None)
    if address and service_cidr and (problems := cluster_ip_problems(address, service_cidr)):
        raise SettingsError(
            settings.stack, [Problem("registryMirror.clusterIp", "; ".join(problems))]
        )
    return address
