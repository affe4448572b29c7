"""The network decisions of a fleet: where its cluster's nodes and Services live, whether it
adds an S3 gateway endpoint, and the registry mirror's fixed address.

Looked up before anything is declared: the S3 endpoint depends on the VPC, the mirror's fixed
address on the Service range, the node groups on the control plane's version, and a bad value
must fail before a half-declared stack.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..aws.cluster import (
    CREATE_MODE,
    ClusterNetwork,
    ExistingCluster,
    created_cluster_network,
    existing_cluster,
    node_cni_policy_problem,
    version_problem,
)
from ..settings import FleetSettings, Problem, SettingsError, default_cluster_ip
from ..workloads.mirror_config import cluster_ip_problems


@dataclass(frozen=True)
class ClusterLookup:
    """What the stack's EKS cluster is, as far as the stack must know it before declaring."""

    network: ClusterNetwork | None
    """Its VPC and Service range; None off EKS."""
    existing: ExistingCluster | None
    """An existing cluster as looked up (version, VPC CNI add-on); None when created."""


def look_up_cluster(settings: FleetSettings) -> ClusterLookup:
    """The network of a created cluster (its Service range checked against the VPC's blocks)
    or of an existing one (looked up, its version and VPC CNI checked against the settings).

    Raises `SettingsError` naming `cluster.serviceCidr`, `cluster.version` or
    `cluster.nodeCniPolicy` when what AWS has refuses the settings.
    """
    cluster = settings.cluster
    problems: list[Problem] = []
    if cluster.mode == CREATE_MODE:
        network, cidr_problems = created_cluster_network(str(cluster.vpc_id), cluster.service_cidr)
        problems += [Problem("cluster.serviceCidr", problem) for problem in cidr_problems]
        existing = None
    elif settings.on_eks:
        existing = existing_cluster(cluster.name)
        network = existing.network
        # EKS creates node groups only at the control plane's version (CreateNodegroup).
        if problem := version_problem(
            str(cluster.version), existing.kubernetes_version, cluster.name
        ):
            problems.append(Problem("cluster.version", problem))
        if problem := node_cni_policy_problem(cluster.node_cni_policy, existing.vpc_cni):
            problems.append(Problem("cluster.nodeCniPolicy", problem))
    else:
        return ClusterLookup(network=None, existing=None)
    if problems:
        raise SettingsError(settings.stack, problems, settings.source)
    return ClusterLookup(network=network, existing=existing)


def s3_gateway_endpoint_wanted(settings: FleetSettings) -> bool:
    """`network.s3GatewayEndpoint`, by default on only where the stack creates the cluster.

    A created cluster sits in a VPC the stack was pointed at for it; an existing cluster's VPC
    usually has its S3 endpoint already, or a platform team that owns its route tables.
    """
    explicit = settings.network.s3_gateway_endpoint
    return settings.cluster.mode == CREATE_MODE if explicit is None else explicit


def build_nodes_carry_cni_policy(settings: FleetSettings) -> bool:
    """Whether build node roles get `AmazonEKS_CNI_Policy`: never where the stack creates the
    cluster (its VPC CNI has a role of its own), else as `cluster.nodeCniPolicy` says."""
    return settings.cluster.mode != CREATE_MODE and settings.cluster.node_cni_policy


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
            settings.stack,
            [Problem("registryMirror.clusterIp", "; ".join(problems))],
            settings.source,
        )
    return address
