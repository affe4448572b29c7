"""RunnerFleet: a whole GitLab Runner fleet from one validated settings model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NotRequired, Optional, TypedDict, cast

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pulumi_aws import eks as aws_eks

from ..arguments import check_arguments
from ..aws.cache_access import CacheAccess
from ..aws.cache_bucket import CacheBucket
from ..aws.cluster import (
    CREATE_MODE,
    SYSTEM_NODE_LABELS,
    ClusterNetwork,
    EksCluster,
    network_policy_enforcement,
)
from ..aws.cluster_autoscaler import ClusterAutoscaler
from ..aws.edge_access import EdgeAccess
from ..aws.karpenter import DEFAULT_REPLICAS as KARPENTER_REPLICAS
from ..aws.karpenter import Karpenter
from ..aws.karpenter_node_role import NODE_ACCESS_ENTRY_TYPE, KarpenterNodeRole
from ..aws.karpenter_pool import KarpenterPool
from ..aws.mirror_access import RegistryMirrorAccess
from ..aws.s3_gateway_endpoint import S3GatewayEndpoint
from ..aws.spot_node_group import SpotNodeGroup
from ..build_nodes import keep_off_build_nodes
from ..gitlab.runner_registration import RunnerRegistration, gitlab_provider
from ..settings import PAUSE_POD_PRIORITY_CLASS, FleetSettings
from ..settings.cache_plan import (
    cache_bucket_name,
    in_cluster_bucket,
    mirror_storage,
    runner_cache_spec,
)
from ..workloads.edge_cache import DATA_CLAIM as SITE_CACHE_CLAIM
from ..workloads.edge_cache import DEFAULT_NAMESPACE as SITE_CACHE_NAMESPACE
from ..workloads.edge_cache import EdgeCache, EdgeCacheArgs, EdgeHub
from ..workloads.edge_cache import runner_cache_spec as site_cache_spec
from ..workloads.gitlab_runner import GitlabRunner, cache_secret_data
from ..workloads.isolation import MANAGER_POD_LABELS
from ..workloads.job_namespaces import JobNamespaces, JobNamespacesArgs
from ..workloads.mirror_config import containerd_hosts_toml, mirror_url, node_user_data
from ..workloads.monitoring import FleetMonitoring, FleetMonitoringArgs
from ..workloads.registry_mirror import DEFAULT_NAMESPACE as MIRROR_NAMESPACE
from ..workloads.registry_mirror import SERVICE_NAME as MIRROR_SERVICE_ACCOUNT
from ..workloads.registry_mirror import RegistryMirror, RegistryMirrorArgs
from ..workloads.runner_config import CacheSpec
from ..workloads.runner_shared import RunnerShared
from .network import (
    ClusterLookup,
    build_nodes_carry_cni_policy,
    look_up_cluster,
    mirror_cluster_ip,
    s3_gateway_endpoint_wanted,
)
from .pools import (
    BUILD_NODE_GROUP_REGEX,
    BUILD_NODES,
    gitlab_runner_args,
    karpenter_pool_args,
    karpenter_pool_name,
    monitored_scaler,
    node_group_name,
    pool_summary,
    runner_registration_args,
    spot_node_group_args,
)
from .sites import HubView, site_hub

TYPE = "gitlab-runner-fleet:index:RunnerFleet"


class FleetCluster(TypedDict):
    """A cluster the caller's own program manages (e.g. a pulumi-eks `Cluster`), used instead
    of creating or looking one up. `cluster.mode` must be `existing` (EKS) or `kubeconfig`."""

    cluster_name: pulumi.Input[str]
    """The cluster's name (EKS: node groups join it, cluster-autoscaler discovers in it)."""
    kubernetes_provider: k8s.Provider
    """The provider every in-cluster resource of the fleet uses."""
    oidc_provider_arn: NotRequired[pulumi.Input[str]]
    """EKS: the cluster's IAM OIDC provider, trusted by the fleet's IRSA roles."""
    vpc_id: NotRequired[str]
    """EKS: the cluster's VPC (the S3 gateway endpoint's)."""
    service_cidr: NotRequired[str]
    """EKS: the cluster's Service range (the registry mirror's fixed address)."""
    node_subnet_ids: NotRequired[pulumi.Input[list[str]]]
    """EKS: subnets of the build nodes. Default `cluster.nodeSubnetIds` of the settings."""


class RunnerFleetArgs(TypedDict):
    """Inputs of RunnerFleet."""

    settings: FleetSettings
    """The validated settings (`components.settings.parse_settings` or `load_settings`)."""
    cluster: NotRequired[FleetCluster]
    """A cluster from the caller's own program. Default: the settings' `cluster` (created,
    looked up by name, or reached through the secret `kubeconfig`)."""


def _problems(args: RunnerFleetArgs) -> list[str]:
    """What a cluster from the caller's program must bring for these settings."""
    settings, given = args["settings"], args.get("cluster")
    if given is None:
        return []
    if settings.cluster.mode == CREATE_MODE:
        return [
            "cluster: given, but the settings' cluster.mode is create: set cluster.mode to "
            "existing (EKS) or kubeconfig"
        ]
    if not settings.on_eks:
        return []
    plan = settings.cache_plan
    needs_oidc = [
        need
        for need, needed in (
            (
                "cluster-autoscaler (clusterAutoscaler.enabled: false turns it off)",
                settings.installs_cluster_autoscaler,
            ),
            (
                "the registry mirror's S3 access (registryMirror.storage: filesystem avoids it)",
                plan.mirror_uses_irsa,
            ),
            (
                "the cache's IRSA role (cacheAccess.mode: accessKey avoids it)",
                plan.creates_bucket and settings.cache_access.mode == "irsa",
            ),
        )
        if needed
    ]
    problems = []
    if needs_oidc and "oidc_provider_arn" not in given:
        problems.append(
            "cluster.oidc_provider_arn: required for IRSA roles of " + "; ".join(needs_oidc)
        )
    network_keys = [key for key in ("vpc_id", "service_cidr") if key not in given]
    if s3_gateway_endpoint_wanted(settings) and network_keys:
        problems += [
            f"cluster.{key}: required for the S3 gateway endpoint "
            "(network.s3GatewayEndpoint: false turns it off)"
            for key in network_keys
        ]
    return problems


# Declared with 0.1.0's __main__.py as their parent; the alias keeps their URNs (and those of
# everything below them) so existing stacks update in place.
_FORMERLY_TOP_LEVEL = pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)
_CacheForRunner = tuple[
    pulumi.Output[CacheSpec], dict[str, pulumi.Input[str]], pulumi.Input[str | None]
]


class RunnerFleet(pulumi.ComponentResource):
    """A GitLab Runner fleet: its cluster (created, looked up or given), a spot node group and a
    runner manager per pool, cluster-autoscaler, the cache the settings choose (an S3 bucket
    with its IAM identity, an existing store, an in-cluster store, or a site's edge cache),
    job isolation, the registry mirror, and monitoring. Every decision comes from the settings
    model; `stack_outputs` gives what a stack exports.
    """

    cluster_name: pulumi.Output[str]
    """Name of the cluster the fleet runs on."""
    cache_prefix: pulumi.Output[str]
    """Key prefix of the runners' cache objects."""
    runner_namespace: pulumi.Output[str]
    """Namespace of the runner managers and their Secrets."""
    job_namespaces: pulumi.Output[list[str]]
    """Namespaces the jobs run in, one per build mode."""
    pools: pulumi.Output[dict[str, Any]]
    """Each pool's node labels, runner tags and architecture."""
    runner_config_checksums: pulumi.Output[dict[str, str]]
    """SHA-256 of each pool's effective config.toml."""
    build_node_groups: Optional[pulumi.Output[dict[str, str]]]
    """EKS: each pool's node group name."""
    build_autoscaling_groups: Optional[pulumi.Output[dict[str, str]]]
    """EKS: each pool's Auto Scaling group name."""
    build_node_role_arns: Optional[pulumi.Output[dict[str, str]]]
    """EKS: each pool's node role."""
    build_scale_from_zero_tags: Optional[pulumi.Output[dict[str, dict[str, str]]]]
    """EKS: each pool's node-template tags on its Auto Scaling group."""
    karpenter_node_pools: Optional[pulumi.Output[dict[str, str]]]
    """Each Karpenter pool's NodePool (and EC2NodeClass) name."""
    karpenter_node_role_arn: Optional[pulumi.Output[str]]
    """The role of the Karpenter pools' nodes the stack creates (with its EC2_LINUX access
    entry); the cluster's own Karpenter must be allowed to pass it."""
    karpenter_role_arn: Optional[pulumi.Output[str]]
    """The IRSA role of the stack's Karpenter controller, when it installs one."""
    karpenter_interruption_queue: Optional[pulumi.Output[str]]
    """The SQS queue the stack's Karpenter reads interruption events from."""
    network_policy_enforcement: Optional[pulumi.Output[str]]
    """EKS: what enforces the job NetworkPolicies (the stack's VPC CNI add-on, the cluster's,
    or nothing a stack can see)."""
    vpc_cni_role_arn: Optional[pulumi.Output[Optional[str]]]
    """The IRSA role of the VPC CNI a created cluster gets."""
    cluster_autoscaler_discovery_tag: Optional[pulumi.Output[str]]
    """EKS: the Auto Scaling group tag (`key=value`) that marks the stack's pools."""
    cluster_autoscaler_role_arn: Optional[pulumi.Output[str]]
    """The IRSA role of the stack's cluster-autoscaler, when it installs one."""
    s3_gateway_endpoint_id: Optional[pulumi.Output[Optional[str]]]
    """The stack's S3 gateway endpoint, when it adds one."""
    s3_gateway_endpoint_status: Optional[pulumi.Output[str]]
    """What became of the S3 gateway endpoint (created, or left to an existing one)."""
    cache_bucket_name: Optional[pulumi.Output[str]]
    """The created cache bucket."""
    cache_bucket_arn: Optional[pulumi.Output[str]]
    """Its ARN."""
    cache_bucket_region: Optional[pulumi.Output[str]]
    """Its region."""
    cache_policy_arn: Optional[pulumi.Output[str]]
    """The managers' cache policy."""
    cache_role_arn: Optional[pulumi.Output[Optional[str]]]
    """The managers' IRSA role (`cacheAccess.mode: irsa`)."""
    cache_user_name: Optional[pulumi.Output[Optional[str]]]
    """The managers' IAM user (`cacheAccess.mode: accessKey`)."""
    cache_access_key_id: Optional[pulumi.Output[Optional[str]]]
    """Its access key id; secret."""
    cache_secret_access_key: Optional[pulumi.Output[Optional[str]]]
    """Its secret access key; secret."""
    site_cache_endpoint: Optional[pulumi.Output[str]]
    """The in-cluster or edge cache's S3 endpoint."""
    site_hub: Optional[pulumi.Output[dict[str, Any]]]
    """A hub's `siteHub` output for its edges."""
    site_edge_credentials: Optional[pulumi.Output[dict[str, Any]]]
    """A hub's per-edge credentials; secret."""
    gitlab_runner_ids: Optional[pulumi.Output[dict[str, str]]]
    """Each pool's runner id in GitLab (`gitlab.createRunners`)."""
    registry_mirror_status: Optional[pulumi.Output[str]]
    """One line describing the registry mirror."""
    registry_mirror_node_url: Optional[pulumi.Output[Optional[str]]]
    """The mirror's URL for containerd on the nodes."""
    alerts: Optional[pulumi.Output[list[str]]]
    """The alerts of the fleet's PrometheusRule."""
    dashboard_config_map: Optional[pulumi.Output[Optional[str]]]
    """`<namespace>/<name>` of the dashboard ConfigMap."""

    def __init__(
        self, name: str, args: RunnerFleetArgs, opts: Optional[pulumi.ResourceOptions] = None
    ) -> None:
        check_arguments(
            TYPE.rsplit(":", 1)[1], name, args, RunnerFleetArgs, lambda: _problems(args)
        )
        settings = args["settings"]
        given = args.get("cluster")
        # Looked up and checked before anything is declared: a bad mirror address or a missing
        # cluster fails the program before a half-declared stack.
        lookup = (
            ClusterLookup(network=_given_network(given), existing=None)
            if given
            else look_up_cluster(settings)
        )
        network = lookup.network
        self._mirror_ip = mirror_cluster_ip(settings, network.service_cidr if network else None)
        super().__init__(TYPE, name, None, opts)
        self._settings = settings
        self._plan = settings.cache_plan
        for warning in settings.warnings:
            pulumi.log.warn(warning, resource=self)
        for output in _OPTIONAL_OUTPUTS:
            setattr(self, output, None)

        oidc_provider_arn: Optional[pulumi.Input[str]] = None
        if given is not None:
            provider = given["kubernetes_provider"]
            oidc_provider_arn = given.get("oidc_provider_arn")
            self.cluster_name = pulumi.Output.from_input(given["cluster_name"])
            if settings.on_eks:
                self._create_pools(
                    given["cluster_name"],
                    given.get("node_subnet_ids", settings.cluster.default_node_subnet_ids),
                    oidc_provider_arn,
                    network,
                    provider,
                )
        elif settings.on_eks:
            assert network is not None
            cluster = self._create_cluster()
            provider = cluster.kubernetes_provider
            oidc_provider_arn = cluster.oidc_provider_arn
            self.cluster_name = cluster.cluster_name
            # Exported only where there is one: a stack output of null says nothing.
            if settings.cluster.mode == CREATE_MODE:
                self.vpc_cni_role_arn = cluster.vpc_cni_role_arn
            self._report_network_policy_enforcement(lookup)
            self._create_pools(
                cluster.cluster_name, cluster.node_subnet_ids, oidc_provider_arn, network, provider
            )
        else:
            assert settings.kubeconfig is not None
            provider = k8s.Provider(
                "cluster-kubernetes",
                kubeconfig=settings.kubeconfig.output(),
                cluster_identifier=settings.cluster.name,
                opts=self._top_level(),
            )
            self.cluster_name = pulumi.Output.from_input(settings.cluster.name)

        self._in_cluster = self._top_level(providers=[provider])
        self._bucket_name = (
            cache_bucket_name(
                settings.cache,
                settings.project,
                settings.stack,
                aws.get_caller_identity().account_id,
            )
            if self._plan.creates_bucket
            else None
        )
        runner_cache, cache_credentials, cache_role_arn = self._create_cache(oidc_provider_arn)
        shared = RunnerShared(
            "runner-shared",
            {
                "namespace": settings.runner.namespace,
                "pod_security_version": settings.pod_security_version,
                "service_account_name": settings.runner.service_account_name,
                "service_account_role_arn": cache_role_arn,
                "pause_pod_priority_class": (
                    PAUSE_POD_PRIORITY_CLASS if settings.warms_capacity else None
                ),
            },
            opts=self._in_cluster,
        )
        job_namespaces = self._create_job_namespaces(shared)
        if settings.registry_mirror.enabled:
            self._create_registry_mirror(job_namespaces, oidc_provider_arn)
        runners = self._create_runners(
            provider, shared, job_namespaces, runner_cache, cache_credentials
        )
        if settings.monitoring.enabled:
            self._create_monitoring(provider, runners)

        self.cache_prefix = pulumi.Output.from_input(settings.cache.prefix)
        self.runner_namespace = shared.namespace
        self.job_namespaces = job_namespaces.namespaces
        self.pools = pulumi.Output.from_input(pool_summary(settings))
        self.runner_config_checksums = _by_name(
            {pool: runner.config_checksum for pool, runner in runners.items()}
        )
        self.register_outputs(
            {
                output: value
                for output in (*_ALWAYS_OUTPUTS, *_OPTIONAL_OUTPUTS)
                if (value := getattr(self, output)) is not None
            }
        )

    def _top_level(self, **options: Any) -> pulumi.ResourceOptions:
        """Options of a resource that 0.1.0 declared at the top of the stack."""
        return pulumi.ResourceOptions(parent=self, aliases=[_FORMERLY_TOP_LEVEL], **options)

    def _create_cluster(self) -> EksCluster:
        settings = self._settings
        cluster_settings = settings.cluster
        return EksCluster(
            "cluster",
            {
                "mode": cluster_settings.mode,
                "name": cluster_settings.name,
                "version": str(cluster_settings.version),
                "region": settings.aws_region,
                "aws_profile": pulumi.Config("aws").get("profile"),
                "vpc_id": cluster_settings.vpc_id,
                "service_cidr": cluster_settings.service_cidr,
                "network_policies": settings.isolation.network_policies,
                "private_subnet_ids": cluster_settings.private_subnet_ids,
                "public_subnet_ids": cluster_settings.public_subnet_ids,
                "node_subnet_ids": cluster_settings.default_node_subnet_ids,
                "system_instance_types": cluster_settings.system_instance_types,
                "system_node_count": cluster_settings.system_node_count,
                "create_oidc_provider": cluster_settings.create_oidc_provider,
                "admin_principal_arns": cluster_settings.admin_principal_arns,
                "tags": settings.tags_for("cluster"),
            },
            opts=self._top_level(),
        )

    def _report_network_policy_enforcement(self, lookup: ClusterLookup) -> None:
        """What enforces the job NetworkPolicies (an output), and a warning when nothing may."""
        settings = self._settings
        enforcement, warning = network_policy_enforcement(
            settings.isolation.network_policies,
            created=settings.cluster.mode == CREATE_MODE,
            vpc_cni=lookup.existing.vpc_cni if lookup.existing else None,
        )
        if warning:
            pulumi.log.warn(warning, resource=self)
        self.network_policy_enforcement = pulumi.Output.from_input(enforcement)

    def _create_pools(
        self,
        cluster_name: pulumi.Input[str],
        subnet_ids: pulumi.Input[list[str]],
        oidc_provider_arn: Optional[pulumi.Input[str]],
        network: Optional[ClusterNetwork],
        provider: k8s.Provider,
    ) -> None:
        """Each pool's capacity (a spot node group, or a Karpenter NodePool), cluster-autoscaler
        for the node groups, Karpenter for the NodePools, and the S3 gateway endpoint (EKS)."""
        settings = self._settings
        # containerd pulls Docker Hub images through the in-cluster mirror, Hub as fallback.
        user_data = (
            node_user_data(containerd_hosts_toml(mirror_url(self._mirror_ip)))
            if self._mirror_ip
            else None
        )
        if settings.karpenter_pools:
            self._create_karpenter(cluster_name, subnet_ids, oidc_provider_arn, provider, user_data)
        if settings.node_group_pools:
            self._create_node_groups(
                cluster_name, subnet_ids, oidc_provider_arn, provider, user_data
            )
        if s3_gateway_endpoint_wanted(settings):
            assert network is not None, "checked by _problems"
            endpoint = S3GatewayEndpoint(
                "s3-gateway-endpoint",
                {
                    "vpc_id": network.vpc_id,
                    "route_table_ids": settings.network.route_table_ids,
                    "subnet_ids": settings.cluster.default_node_subnet_ids,
                    "tags": settings.tags_for("network"),
                },
                opts=self._top_level(),
            )
            self.s3_gateway_endpoint_id = endpoint.endpoint_id
            self.s3_gateway_endpoint_status = endpoint.status

    def _create_node_groups(
        self,
        cluster_name: pulumi.Input[str],
        subnet_ids: pulumi.Input[list[str]],
        oidc_provider_arn: Optional[pulumi.Input[str]],
        provider: k8s.Provider,
        user_data: Optional[str],
    ) -> None:
        """A spot node group per node group pool, and cluster-autoscaler scaling them."""
        settings = self._settings
        node_groups = {
            pool.name: SpotNodeGroup(
                node_group_name(pool),
                spot_node_group_args(
                    settings,
                    pool,
                    cluster_name=cluster_name,
                    subnet_ids=subnet_ids,
                    user_data=user_data,
                    cni_policy=build_nodes_carry_cni_policy(settings),
                ),
                opts=self._top_level(),
            )
            for pool in settings.node_group_pools
        }
        self.build_node_groups = _by_pool(node_groups, lambda g: g.node_group_name)
        self.build_autoscaling_groups = _by_pool(node_groups, lambda g: g.autoscaling_group_name)
        self.build_node_role_arns = _by_pool(node_groups, lambda g: g.node_role_arn)
        self.build_scale_from_zero_tags = _by_pool(node_groups, lambda g: g.scale_from_zero_tags)

        discovery_key, discovery_value = settings.autoscaler_discovery_tag
        self.cluster_autoscaler_discovery_tag = pulumi.Output.from_input(
            f"{discovery_key}={discovery_value}"
        )
        if settings.installs_cluster_autoscaler:
            assert oidc_provider_arn is not None, "checked by _problems"
            autoscaler = settings.cluster_autoscaler
            self.cluster_autoscaler_role_arn = ClusterAutoscaler(
                "cluster-autoscaler",
                {
                    "cluster_name": cluster_name,
                    "region": settings.aws_region,
                    "kubernetes_version": str(settings.cluster.version),
                    "oidc_provider_arn": oidc_provider_arn,
                    "discovery_tag": {"key": discovery_key, "value": discovery_value},
                    "pool_labels": settings.pool_node_labels,
                    "expander": autoscaler.expander,
                    "scale_down_unneeded_time": autoscaler.scale_down_unneeded_time,
                    "service_monitor_labels": (
                        settings.monitoring.selector_labels if settings.monitoring.enabled else None
                    ),
                    "tags": settings.tags_for("cluster-autoscaler"),
                },
                opts=self._top_level(providers=[provider]),
            ).role_arn

    def _create_karpenter(
        self,
        cluster_name: pulumi.Input[str],
        subnet_ids: pulumi.Input[list[str]],
        oidc_provider_arn: Optional[pulumi.Input[str]],
        provider: k8s.Provider,
        user_data: Optional[str],
    ) -> None:
        """The Karpenter pools' node role (with its access entry), Karpenter itself where the
        stack created the cluster, and a NodePool and EC2NodeClass per pool."""
        settings = self._settings
        karpenter = settings.karpenter
        pools = settings.karpenter_pools
        role_names: dict[str, pulumi.Input[str]] = {
            pool.name: _role_name(pool.node_role_arn) for pool in pools if pool.node_role_arn
        }
        given_roles = sorted({pool.node_role_arn for pool in pools if pool.node_role_arn})
        role_arns: list[pulumi.Input[str]] = [*given_roles]
        if settings.cluster.mode == CREATE_MODE:
            # A cluster this stack creates authenticates nodes by access entries only: a role a
            # pool brings needs its own, or its nodes launch and never join (found trying it
            # as a new user). An existing cluster's Karpenter roles are the platform's to map.
            for arn in given_roles:
                aws_eks.AccessEntry(
                    f"karpenter-nodes-{_role_name(arn)}",
                    cluster_name=cluster_name,
                    principal_arn=arn,
                    type=NODE_ACCESS_ENTRY_TYPE,
                    tags=settings.tags_for(BUILD_NODES),
                    opts=pulumi.ResourceOptions(parent=self),
                )
        if len(role_names) < len(pools):
            node_role = KarpenterNodeRole(
                "karpenter-nodes",
                {
                    "cluster_name": cluster_name,
                    "cni_policy": build_nodes_carry_cni_policy(settings),
                    "tags": settings.tags_for(BUILD_NODES),
                },
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.karpenter_node_role_arn = node_role.role_arn
            role_arns.append(node_role.role_arn)
            for pool in pools:
                role_names.setdefault(pool.name, node_role.role_name)
        controller: list[pulumi.Resource] = []
        if settings.installs_karpenter:
            # Only where the stack creates the cluster (settings rules), so its provider's.
            assert oidc_provider_arn is not None
            installed = Karpenter(
                "karpenter",
                {
                    "cluster_name": cluster_name,
                    "region": settings.aws_region,
                    "kubernetes_version": str(settings.cluster.version),
                    "oidc_provider_arn": oidc_provider_arn,
                    "node_role_arns": role_arns,
                    # Each replica on its own system node (the chart's anti-affinity).
                    "replicas": min(KARPENTER_REPLICAS, settings.cluster.system_node_count),
                    "node_selector": SYSTEM_NODE_LABELS,
                    "service_monitor_labels": (
                        settings.monitoring.selector_labels if settings.monitoring.enabled else None
                    ),
                    "tags": settings.tags_for("karpenter"),
                },
                opts=pulumi.ResourceOptions(parent=self, providers=[provider]),
            )
            self.karpenter_role_arn = installed.role_arn
            self.karpenter_interruption_queue = installed.interruption_queue_name
            controller.append(installed)
        discovery = karpenter.discovery(settings.cluster.name)
        security_groups: list[pulumi.Input[str]] = [*karpenter.security_group_ids]
        if not discovery and not security_groups:
            # The security group EKS made for the cluster, which managed nodes get too: pods
            # on either kind of node reach each other and the control plane.
            found = aws.eks.get_cluster_output(
                name=cluster_name, opts=pulumi.InvokeOutputOptions(parent=self)
            )
            security_groups = [found.vpc_config.cluster_security_group_id]
        node_pools = {
            pool.name: KarpenterPool(
                karpenter_pool_name(pool),
                karpenter_pool_args(
                    settings,
                    pool,
                    node_role_name=role_names[pool.name],
                    subnet_ids=list(karpenter.subnet_ids) or subnet_ids,
                    security_group_ids=security_groups,
                    discovery_tag=discovery,
                    user_data=user_data,
                ),
                # Deleted before the controller, which drains their nodes on deletion.
                opts=pulumi.ResourceOptions(
                    parent=self, providers=[provider], depends_on=controller
                ),
            )
            for pool in pools
        }
        self.karpenter_node_pools = _by_name(
            {pool: node_pool.node_pool_name for pool, node_pool in node_pools.items()}
        )

    def _create_cache(self, oidc_provider_arn: Optional[pulumi.Input[str]]) -> _CacheForRunner:
        """The runner's cache section, its credentials and the IRSA role for the managers."""
        settings, plan = self._settings, self._plan
        if plan.kind == "edge":
            return self._create_edge_cache()
        if plan.kind == "inCluster":
            return self._create_site_cache(
                None, in_cluster_bucket(settings.cache), settings.cache.prefix
            )
        if plan.kind == "externalStore":
            external: dict[str, pulumi.Input[str]] = {
                name: secret.output() for name, secret in settings.cache_credentials.items()
            }
            spec = runner_cache_spec(settings.cache, settings.cache_access)
            return pulumi.Output.from_input(spec), external, None
        return self._create_cache_bucket(oidc_provider_arn)

    def _create_cache_bucket(
        self, oidc_provider_arn: Optional[pulumi.Input[str]]
    ) -> _CacheForRunner:
        settings, plan = self._settings, self._plan
        cache, mirror = settings.cache, settings.registry_mirror
        assert self._bucket_name is not None
        bucket = CacheBucket(
            "cache",
            {
                "bucket_name": self._bucket_name,
                "cache_prefix": cache.prefix,
                "expiration_days": cache.expiration_days,
                "versioning": cache.versioning,
                "kms_key_arn": cache.kms_key_arn,
                "access_log_bucket": cache.access_log_bucket,
                "access_log_prefix": cache.access_log_prefix,
                "protect": cache.protect,
                "force_destroy": cache.force_destroy,
                "other_prefixes": (
                    {mirror.prefix: mirror.expiration_days}
                    if mirror.enabled and plan.mirror_storage == "s3"
                    else {}
                ),
                "tags": settings.tags_for("cache-bucket"),
            },
            opts=self._top_level(),
        )
        access = CacheAccess(
            "cache-access",
            {
                "bucket_arn": bucket.bucket_arn,
                "cache_prefix": cache.prefix,
                "mode": settings.cache_access.mode,
                "kms_key_arn": cache.kms_key_arn,
                "oidc_provider_arn": oidc_provider_arn,
                "service_account_namespace": settings.runner.namespace,
                "service_account_name": settings.runner.service_account_name,
                "tags": settings.tags_for("cache-access"),
            },
            opts=self._top_level(),
        )
        self.cache_bucket_name = bucket.bucket_name
        self.cache_bucket_arn = bucket.bucket_arn
        self.cache_bucket_region = bucket.bucket_region
        self.cache_policy_arn = access.policy_arn
        if settings.cache_access.mode == "irsa":
            self.cache_role_arn = access.role_arn
        else:
            self.cache_user_name = access.user_name
            self.cache_access_key_id = access.access_key_id
            self.cache_secret_access_key = access.secret_access_key
        if settings.site.is_hub:
            self._create_hub_exports(bucket)

        spec = pulumi.Output.all(bucket.bucket_name, bucket.bucket_region).apply(
            lambda resolved: runner_cache_spec(
                settings.cache, settings.cache_access, resolved[0], resolved[1]
            )
        )
        if plan.manager_identity == "irsa":
            # The managers sign the presigned cache URLs, so the role goes on their service
            # account; a cache Secret would export keys that shadow IRSA.
            return spec, {}, access.role_arn
        credentials: dict[str, pulumi.Input[str]] = {
            "accessKey": cast(pulumi.Output[str], access.access_key_id),
            "secretKey": cast(pulumi.Output[str], access.secret_access_key),
        }
        return spec, credentials, None

    def _create_hub_exports(self, bucket: CacheBucket) -> None:
        """What edge stacks read through their StackReference: the cache's coordinates, and per
        edge a credential that reads the cache and writes only the replicated keys (secret)."""
        settings = self._settings
        site = settings.site
        credentials = {}
        for edge in site.edges:
            access = EdgeAccess(
                f"edge-access-{edge}",
                {
                    "edge_name": edge,
                    "bucket_arn": bucket.bucket_arn,
                    "cache_prefix": settings.cache.prefix,
                    "replicate": site.replicate,
                    "kms_key_arn": settings.cache.kms_key_arn,
                    "tags": settings.tags_for("edge-access"),
                },
                opts=self._top_level(),
            )
            credentials[edge] = {
                "accessKeyId": access.access_key_id,
                "secretAccessKey": access.secret_access_key,
            }
        self.site_hub = pulumi.Output.from_input(
            cast(
                dict[str, Any],
                site_hub(
                    name=str(site.name),
                    bucket=bucket.bucket_name,
                    region=settings.aws_region,
                    prefix=settings.cache.prefix,
                    replicate=site.replicate,
                ),
            )
        )
        self.site_edge_credentials = pulumi.Output.secret(credentials)

    def _create_edge_cache(self) -> _CacheForRunner:
        """An edge site's cache: writes stay local, misses read through from the hub's bucket."""
        site = self._settings.site
        hub_stack = pulumi.StackReference(str(site.hub_stack), opts=self._top_level())
        view = HubView(hub_stack, str(site.name), float(site.uplink_mbps or 0))
        return self._create_site_cache(view.hub, view.bucket, view.prefix)

    def _create_site_cache(
        self, hub: Optional[EdgeHub], bucket: pulumi.Input[str], prefix: pulumi.Input[str]
    ) -> _CacheForRunner:
        """A cache in the cluster (rclone): an edge reading through from the hub, or a local one."""
        settings = self._settings
        if hub is None:
            size, storage_class = settings.cache.size, settings.cache.storage_class_name
            expire_after = settings.cache.expire_after
        else:
            size, storage_class = settings.site.edge_cache_size, settings.site.storage_class_name
            expire_after = settings.site.expire_after
        args: EdgeCacheArgs = {
            "bucket": bucket,
            "prefix": prefix,
            "size": size,
            "storage_class_name": storage_class,
            "expire_after": expire_after,
            "build_node_labels": settings.pool_node_labels,
        }
        if hub is not None:
            args["hub"] = hub
        cache = EdgeCache("site-cache", args, opts=self._in_cluster)
        self.site_cache_endpoint = cache.endpoint
        spec = pulumi.Output.all(cache.endpoint, cache.bucket, cache.path).apply(
            lambda resolved: site_cache_spec(resolved[0], resolved[1], resolved[2])
        )
        credentials: dict[str, pulumi.Input[str]] = {
            "accessKey": cache.access_key_id,
            "secretKey": cache.secret_access_key,
        }
        return spec, credentials, None

    def _create_job_namespaces(self, shared: RunnerShared) -> JobNamespaces:
        settings = self._settings
        args: JobNamespacesArgs = {
            "manager_namespace": shared.namespace,
            "job_namespaces": settings.job_namespace_specs,
            "pod_security_version": settings.pod_security_version,
            "network_policies": settings.isolation.network_policies,
            "manager_pod_labels": MANAGER_POD_LABELS,
        }
        if (scrapers := settings.isolation.metrics_scraper_namespaces) is not None:
            args["metrics_scraper_namespaces"] = scrapers
        return JobNamespaces("job-namespaces", args, opts=self._in_cluster)

    def _create_registry_mirror(
        self, job_namespaces: JobNamespaces, oidc_provider_arn: Optional[pulumi.Input[str]]
    ) -> None:
        """The pull-through Docker Hub mirror, its storage and (on EKS) its IRSA role."""
        settings, plan = self._settings, self._plan
        mirror = settings.registry_mirror
        args: RegistryMirrorArgs = {
            "storage": mirror_storage(
                plan,
                settings.cache,
                mirror,
                bucket_name=self._bucket_name or "",
                region=settings.aws_region,
            ),
            "job_namespaces": [
                job_namespaces.namespaces.apply(_item(index))
                for index in range(len(settings.job_namespace_specs))
            ],
            "replicas": mirror.replicas,
            "image": mirror.image,
            "affinity": keep_off_build_nodes(settings.pool_node_labels),
            "expiration_days": mirror.expiration_days,
            # The bucket the stack creates expires the mirror's prefix by a lifecycle rule
            # (CacheBucket's other_prefixes); other S3 stores get the mirror's expiry job.
            "lifecycle_rule": plan.mirror_uses_irsa,
        }
        if self._mirror_ip:
            args["cluster_ip"] = self._mirror_ip
        if plan.mirror_uses_irsa:
            assert oidc_provider_arn is not None, "checked by _problems"
            partition = aws.get_partition().partition
            args["service_account_role_arn"] = RegistryMirrorAccess(
                "registry-mirror-access",
                {
                    "bucket_arn": f"arn:{partition}:s3:::{self._bucket_name}",
                    "prefix": mirror.prefix,
                    "oidc_provider_arn": oidc_provider_arn,
                    "namespace": MIRROR_NAMESPACE,
                    "service_account": MIRROR_SERVICE_ACCOUNT,
                    "kms_key_arn": settings.cache.kms_key_arn,
                    "tags": settings.tags_for("registry-mirror"),
                },
                opts=self._top_level(),
            ).role_arn
        elif plan.mirror_storage == "s3":
            args["storage_keys"] = {
                "access_key_id": settings.cache_credentials["accessKey"].output(),
                "secret_access_key": settings.cache_credentials["secretKey"].output(),
            }
        if mirror.docker_hub_username and settings.docker_hub_token:
            args["upstream_credentials"] = {
                "username": mirror.docker_hub_username,
                "password": settings.docker_hub_token.output(),
            }
        registry = RegistryMirror("registry-mirror", args, opts=self._in_cluster)
        self.registry_mirror_status = registry.status
        if self._mirror_ip:
            self.registry_mirror_node_url = registry.node_url

    def _runner_tokens(self) -> dict[str, pulumi.Input[str]]:
        """Each pool's runner token: created in GitLab by the stack, or set by hand as a secret."""
        settings = self._settings
        if not settings.gitlab.create_runners:
            return {name: secret.output() for name, secret in settings.runner_tokens.items()}
        assert settings.gitlab_api_token is not None
        provider = gitlab_provider(
            "gitlab",
            settings.runner.gitlab_url,
            settings.gitlab_api_token.output(),
            opts=self._top_level(),
        )
        registrations = {
            pool.name: RunnerRegistration(
                f"runner-registration-{pool.name}",
                runner_registration_args(settings, pool),
                opts=self._top_level(providers=[provider]),
            )
            for pool in settings.pools
        }
        self.gitlab_runner_ids = _by_name(
            {pool: registration.runner_id for pool, registration in registrations.items()}
        )
        return {pool: registration.token for pool, registration in registrations.items()}

    def _create_runners(
        self,
        provider: k8s.Provider,
        shared: RunnerShared,
        job_namespaces: JobNamespaces,
        cache: pulumi.Output[CacheSpec],
        cache_credentials: dict[str, pulumi.Input[str]],
    ) -> dict[str, GitlabRunner]:
        settings = self._settings
        tokens = self._runner_tokens()
        return {
            pool.name: GitlabRunner(
                f"gitlab-runner-{pool.name}",
                gitlab_runner_args(
                    settings,
                    pool,
                    namespace=shared.namespace,
                    runner_token=tokens[pool.name],
                    cache=cache,
                    cache_secret=cache_secret_data(cache_credentials),
                ),
                # The chart's Role goes into the job namespace, which must exist first.
                opts=self._top_level(providers=[provider], depends_on=[shared, job_namespaces]),
            )
            for pool in settings.pools
        }

    def _create_monitoring(self, provider: k8s.Provider, runners: dict[str, GitlabRunner]) -> None:
        """Alerts for what this stack runs: each pool with its own facts (scaler, warm
        capacity, queuing thresholds, working hours), and the in-cluster cache's volume."""
        settings = self._settings
        monitoring = settings.monitoring
        args: FleetMonitoringArgs = {
            # Only a scaler the stack runs itself is scraped (its chart's ServiceMonitor).
            "pools": [
                pool.monitored(settings.job_namespace(pool), monitored_scaler(settings, pool))
                for pool in settings.pools
            ],
            "namespace": monitoring.namespace,
            "rule_labels": monitoring.selector_labels,
            "dashboard_labels": monitoring.dashboard_labels,
            "thresholds": monitoring.snake_thresholds(monitoring.thresholds),  # type: ignore[typeddict-item]
            "node_group_regex": BUILD_NODE_GROUP_REGEX,
            "runbook_url": monitoring.runbook_url,
            "managers_namespace": settings.runner.namespace,
            "create_rule": monitoring.alerts,
            "create_dashboard": monitoring.dashboard,
        }
        if self._plan.kind in ("edge", "inCluster"):
            # The in-cluster store keeps its objects on a volume that can fill up.
            args["cache_volume"] = {"namespace": SITE_CACHE_NAMESPACE, "name": SITE_CACHE_CLAIM}
        fleet_monitoring = FleetMonitoring(
            "monitoring",
            args,
            opts=self._top_level(providers=[provider], depends_on=list(runners.values())),
        )
        self.alerts = fleet_monitoring.alerts
        self.dashboard_config_map = fleet_monitoring.dashboard_config_map


_ALWAYS_OUTPUTS = (
    "cluster_name",
    "cache_prefix",
    "runner_namespace",
    "job_namespaces",
    "pools",
    "runner_config_checksums",
)
_OPTIONAL_OUTPUTS = tuple(
    name
    for name in RunnerFleet.__annotations__
    if not name.startswith("_") and name not in _ALWAYS_OUTPUTS
)


def _given_network(cluster: FleetCluster) -> Optional[ClusterNetwork]:
    vpc_id, service_cidr = cluster.get("vpc_id"), cluster.get("service_cidr")
    if vpc_id is None or service_cidr is None:
        return None
    return ClusterNetwork(vpc_id=vpc_id, service_cidr=service_cidr)


def _by_name(outputs: dict[str, pulumi.Output[str]]) -> pulumi.Output[dict[str, str]]:
    return pulumi.Output.all(**outputs).apply(dict)


def _item(index: int) -> Callable[[list[str]], str]:
    return lambda names: names[index]


def _role_name(role_arn: str) -> str:
    """An IAM role's name, from its ARN (`arn:aws:iam::<account>:role/<path>/<name>`)."""
    return role_arn.rsplit("/", 1)[-1]


def _by_pool(
    groups: dict[str, SpotNodeGroup], output: Callable[[SpotNodeGroup], pulumi.Output[Any]]
) -> pulumi.Output[dict[str, Any]]:
    return pulumi.Output.from_input({pool: output(group) for pool, group in groups.items()})
