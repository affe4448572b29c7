"""gitlab-runner-fleet: read the stack's settings, wire the components, export the results."""

from typing import cast

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.aws.cache_access import CacheAccess
from components.aws.cache_bucket import CacheBucket
from components.aws.cluster import (
    CREATE_MODE,
    CREATED_SERVICE_CIDR,
    ClusterNetwork,
    EksCluster,
    existing_cluster_network,
)
from components.aws.cluster_autoscaler import ClusterAutoscaler
from components.aws.edge_access import EdgeAccess
from components.aws.mirror_access import RegistryMirrorAccess
from components.aws.s3_gateway_endpoint import S3GatewayEndpoint
from components.aws.spot_node_group import SpotNodeGroup
from components.build_nodes import keep_off_build_nodes
from components.gitlab.runner_registration import (
    RunnerRegistration,
    RunnerRegistrationArgs,
    gitlab_provider,
)
from components.naming import resource_tags
from components.settings import PAUSE_POD_PRIORITY_CLASS, PoolSettings, load_settings
from components.workloads.edge_cache import EdgeCache, EdgeCacheArgs, EdgeHub
from components.workloads.edge_cache import runner_cache_spec as edge_runner_cache_spec
from components.workloads.gitlab_runner import GitlabRunner, cache_secret_data
from components.workloads.isolation import MANAGER_POD_LABELS
from components.workloads.job_namespaces import JobNamespaces, JobNamespacesArgs
from components.workloads.mirror_config import (
    MirrorStorage,
    containerd_hosts_toml,
    mirror_url,
    node_user_data,
)
from components.workloads.monitoring import FleetMonitoring
from components.workloads.registry_mirror import (
    DEFAULT_NAMESPACE as MIRROR_NAMESPACE,
)
from components.workloads.registry_mirror import (
    SERVICE_NAME as MIRROR_SERVICE_ACCOUNT,
)
from components.workloads.registry_mirror import (
    RegistryMirror,
    RegistryMirrorArgs,
)
from components.workloads.runner_config import CacheSpec
from components.workloads.runner_shared import RunnerShared

BUILD_NODES = "build-nodes"
"""Name prefix of every pool's node group (and so of its Auto Scaling group)."""
HUB_OUTPUT = "siteHub"
EDGE_CREDENTIALS_OUTPUT = "siteEdgeCredentials"

settings = load_settings()
for warning in settings.warnings:
    pulumi.log.warn(warning)
# Looked up before anything is declared: the S3 endpoint depends on the VPC, the mirror's fixed
# address on the Service range, and a bad address must fail before a half-declared stack.
network: ClusterNetwork | None = None
if settings.cluster.mode == CREATE_MODE:
    network = ClusterNetwork(str(settings.cluster.vpc_id), CREATED_SERVICE_CIDR)
elif settings.on_eks:
    network = existing_cluster_network(settings.cluster.name)
mirror_cluster_ip = settings.mirror_cluster_ip(network.service_cidr if network else None)


def tags(component: str) -> dict[str, str]:
    return resource_tags(settings.project, settings.stack, component, settings.tags)


def eks_cluster_with_capacity(network: ClusterNetwork) -> EksCluster:
    """The EKS cluster, a spot node group per pool, cluster-autoscaler and the S3 endpoint."""
    version = str(settings.cluster.version)
    aws_profile = pulumi.Config("aws").get("profile")
    cluster = EksCluster(
        "cluster",
        {
            "mode": settings.cluster.mode,
            "name": settings.cluster.name,
            "version": version,
            "region": settings.aws_region,
            "aws_profile": aws_profile,
            "vpc_id": settings.cluster.vpc_id,
            "private_subnet_ids": settings.cluster.private_subnet_ids,
            "public_subnet_ids": settings.cluster.public_subnet_ids,
            "node_subnet_ids": settings.cluster.default_node_subnet_ids,
            "system_instance_types": settings.cluster.system_instance_types,
            "system_node_count": settings.cluster.system_node_count,
            "create_oidc_provider": settings.cluster.create_oidc_provider,
            "admin_principal_arns": settings.cluster.admin_principal_arns,
            "tags": tags("cluster"),
        },
    )
    discovery_key, discovery_value = settings.autoscaler_discovery_tag
    node_groups = {
        pool.name: build_pool_nodes(cluster, pool, {"key": discovery_key, "value": discovery_value})
        for pool in settings.pools
    }
    pulumi.export("buildNodeGroups", {p: g.node_group_name for p, g in node_groups.items()})
    pulumi.export(
        "buildAutoscalingGroups", {p: g.autoscaling_group_name for p, g in node_groups.items()}
    )
    pulumi.export("buildNodeRoleArns", {p: g.node_role_arn for p, g in node_groups.items()})
    pulumi.export(
        "buildScaleFromZeroTags", {p: g.scale_from_zero_tags for p, g in node_groups.items()}
    )

    if settings.cluster_autoscaler.enabled:
        autoscaler = ClusterAutoscaler(
            "cluster-autoscaler",
            {
                "cluster_name": cluster.cluster_name,
                "region": settings.aws_region,
                "kubernetes_version": version,
                "oidc_provider_arn": cluster.oidc_provider_arn,
                "discovery_tag": {"key": discovery_key, "value": discovery_value},
                "pool_labels": settings.pool_node_labels,
                "expander": settings.cluster_autoscaler.expander,
                "scale_down_unneeded_time": settings.cluster_autoscaler.scale_down_unneeded_time,
                "service_monitor_labels": (
                    settings.monitoring.selector_labels if settings.monitoring.enabled else None
                ),
                "tags": tags("cluster-autoscaler"),
            },
            opts=pulumi.ResourceOptions(providers=[cluster.kubernetes_provider]),
        )
        pulumi.export("clusterAutoscalerRoleArn", autoscaler.role_arn)
    pulumi.export("clusterAutoscalerDiscoveryTag", f"{discovery_key}={discovery_value}")

    s3_endpoint_wanted = settings.network.s3_gateway_endpoint
    if s3_endpoint_wanted is None:
        s3_endpoint_wanted = settings.cluster.mode == CREATE_MODE
    if s3_endpoint_wanted:
        s3_endpoint = S3GatewayEndpoint(
            "s3-gateway-endpoint",
            {
                "vpc_id": network.vpc_id,
                "route_table_ids": settings.network.route_table_ids,
                "subnet_ids": settings.cluster.default_node_subnet_ids,
                "tags": tags("network"),
            },
        )
        pulumi.export("s3GatewayEndpointId", s3_endpoint.endpoint_id)
        pulumi.export("s3GatewayEndpointStatus", s3_endpoint.status)
    return cluster


def build_pool_nodes(
    cluster: EksCluster, pool: PoolSettings, discovery_tag: dict[str, str]
) -> SpotNodeGroup:
    """One pool's spot node group; its labels, taints and architecture come from the pool."""
    return SpotNodeGroup(
        f"{BUILD_NODES}-{pool.name}",
        {
            "cluster_name": cluster.cluster_name,
            "kubernetes_version": str(settings.cluster.version),
            "subnet_ids": cluster.node_subnet_ids,
            "instance_types": pool.instance_types,
            "min_size": pool.min_size,
            "max_size": pool.max_size,
            "disk_size_gib": pool.disk_size_gib,
            "labels": pool.node_labels,
            "taints": [
                {"key": taint.key, "value": taint.value, "effect": taint.effect}
                for taint in pool.node_taints
            ],
            "node_role_arn": pool.node_role_arn,
            "scale_from_zero_ephemeral_storage": pool.advertised_ephemeral_storage,
            "autoscaler_discovery_tag": {
                "key": discovery_tag["key"],
                "value": discovery_tag["value"],
            },
            "instance_tags": {**tags("build-nodes"), "pool": pool.name},
            # containerd pulls Docker Hub images through the in-cluster mirror, Hub as fallback.
            "user_data": (
                node_user_data(containerd_hosts_toml(mirror_url(mirror_cluster_ip)))
                if mirror_cluster_ip
                else None
            ),
            "tags": tags("build-nodes"),
        },
    )


# Known while the program runs: the registry mirror's config file names the bucket.
cache_bucket_name = (
    settings.cache_bucket_name(aws.get_caller_identity().account_id)
    if settings.creates_cache_bucket
    else settings.cache_bucket
)

CacheForRunner = tuple[
    pulumi.Output[CacheSpec], dict[str, pulumi.Input[str]], pulumi.Input[str | None]
]


def site_cache(
    hub: EdgeHub | None, bucket: pulumi.Input[str], prefix: pulumi.Input[str]
) -> CacheForRunner:
    """A cache in the cluster (rclone): an edge reading through from the hub, or a local one."""
    if hub is None:
        size, storage_class, expire_after = (
            settings.cache.size,
            settings.cache.storage_class_name,
            settings.cache.expire_after,
        )
    else:
        size, storage_class, expire_after = (
            settings.site.edge_cache_size,
            settings.site.storage_class_name,
            settings.site.expire_after,
        )
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
    cache = EdgeCache("site-cache", args, opts=in_cluster)
    pulumi.export("siteCacheEndpoint", cache.endpoint)
    spec = pulumi.Output.all(cache.endpoint, cache.bucket, cache.path).apply(
        lambda resolved: edge_runner_cache_spec(resolved[0], resolved[1], resolved[2])
    )
    credentials: dict[str, pulumi.Input[str]] = {
        "accessKey": cache.access_key_id,
        "secretKey": cache.secret_access_key,
    }
    return spec, credentials, None


def edge_cache() -> CacheForRunner:
    """An edge site's cache: writes stay local, misses read through from the hub's bucket."""
    hub_stack = pulumi.StackReference(str(settings.site.hub_stack))
    hub = hub_stack.require_output(HUB_OUTPUT)
    credentials = hub_stack.require_output(EDGE_CREDENTIALS_OUTPUT).apply(
        lambda by_edge: by_edge[settings.site.name]
    )
    return site_cache(
        {
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
            "uplink_mbps": float(settings.site.uplink_mbps or 0),
        },
        hub.apply(lambda h: str(h["bucket"])),
        hub.apply(lambda h: str(h["prefix"])),
    )


def export_hub_for_edges(bucket_name: pulumi.Output[str], bucket_arn: pulumi.Output[str]) -> None:
    """What edge stacks read through their StackReference: the cache's coordinates, and per
    edge a credential that reads the cache and writes only the replicated keys (secret)."""
    site = settings.site
    credentials = {}
    for edge in site.edges:
        access = EdgeAccess(
            f"edge-access-{edge}",
            {
                "edge_name": edge,
                "bucket_arn": bucket_arn,
                "cache_prefix": settings.cache.prefix,
                "replicate": site.replicate,
                "kms_key_arn": settings.cache.kms_key_arn,
                "tags": tags("edge-access"),
            },
        )
        credentials[edge] = {
            "accessKeyId": access.access_key_id,
            "secretAccessKey": access.secret_access_key,
        }
    pulumi.export(
        HUB_OUTPUT,
        {
            "name": site.name,
            "bucket": bucket_name,
            "region": settings.aws_region,
            "prefix": settings.cache.prefix,
            "endpoint": "",
            "pathStyle": False,
            "replicate": site.replicate,
        },
    )
    pulumi.export(EDGE_CREDENTIALS_OUTPUT, pulumi.Output.secret(credentials))


def cache_for_runner(oidc_provider_arn: pulumi.Input[str] | None) -> CacheForRunner:
    """The runner's cache section, its credentials and the IRSA role for the managers."""
    if settings.site.is_edge:
        return edge_cache()
    if settings.cache.type == "inCluster":
        return site_cache(None, settings.cache_bucket, settings.cache.prefix)
    if settings.cache.type != "s3":
        external: dict[str, pulumi.Input[str]] = {
            name: secret.output() for name, secret in settings.cache_credentials.items()
        }
        return pulumi.Output.from_input(settings.runner_cache_spec()), external, None

    cache = CacheBucket(
        "cache",
        {
            "bucket_name": cache_bucket_name,
            "cache_prefix": settings.cache.prefix,
            "expiration_days": settings.cache.expiration_days,
            "versioning": settings.cache.versioning,
            "kms_key_arn": settings.cache.kms_key_arn,
            "access_log_bucket": settings.cache.access_log_bucket,
            "access_log_prefix": settings.cache.access_log_prefix,
            "protect": settings.cache.protect,
            "force_destroy": settings.cache.force_destroy,
            "other_prefixes": (
                {settings.registry_mirror.prefix: settings.registry_mirror.expiration_days}
                if settings.registry_mirror.enabled and settings.mirror_storage_kind == "s3"
                else {}
            ),
            "tags": tags("cache-bucket"),
        },
    )
    cache_access = CacheAccess(
        "cache-access",
        {
            "bucket_arn": cache.bucket_arn,
            "cache_prefix": settings.cache.prefix,
            "mode": settings.cache_access.mode,
            "kms_key_arn": settings.cache.kms_key_arn,
            "oidc_provider_arn": oidc_provider_arn,
            "service_account_namespace": settings.runner.namespace,
            "service_account_name": settings.runner.service_account_name,
            "tags": tags("cache-access"),
        },
    )
    pulumi.export("cacheBucketName", cache.bucket_name)
    pulumi.export("cacheBucketArn", cache.bucket_arn)
    pulumi.export("cacheBucketRegion", cache.bucket_region)
    pulumi.export("cachePolicyArn", cache_access.policy_arn)
    pulumi.export("cacheRoleArn", cache_access.role_arn)
    pulumi.export("cacheUserName", cache_access.user_name)
    pulumi.export("cacheAccessKeyId", cache_access.access_key_id)
    pulumi.export("cacheSecretAccessKey", cache_access.secret_access_key)
    if settings.site.is_hub:
        export_hub_for_edges(cache.bucket_name, cache.bucket_arn)

    spec = pulumi.Output.all(cache.bucket_name, cache.bucket_region).apply(
        lambda bucket: settings.runner_cache_spec(bucket[0], bucket[1])
    )
    if settings.cache_access.mode == "irsa":
        # The managers sign the presigned cache URLs, so the role goes on their service account;
        # a cache Secret would export keys that shadow IRSA.
        return spec, {}, cache_access.role_arn
    # Both are set in accessKey mode.
    credentials: dict[str, pulumi.Input[str]] = {
        "accessKey": cast(pulumi.Output[str], cache_access.access_key_id),
        "secretKey": cast(pulumi.Output[str], cache_access.secret_access_key),
    }
    return spec, credentials, None


if settings.on_eks:
    assert network is not None
    cluster = eks_cluster_with_capacity(network)
    kubernetes_provider = cluster.kubernetes_provider
    oidc_provider_arn: pulumi.Input[str] | None = cluster.oidc_provider_arn
    pulumi.export("clusterName", cluster.cluster_name)
else:
    assert settings.kubeconfig is not None
    kubernetes_provider = k8s.Provider(
        "cluster-kubernetes",
        kubeconfig=settings.kubeconfig.output(),
        cluster_identifier=settings.cluster.name,
    )
    oidc_provider_arn = None
    pulumi.export("clusterName", settings.cluster.name)

in_cluster = pulumi.ResourceOptions(providers=[kubernetes_provider])
runner_cache, cache_credentials, cache_role_arn = cache_for_runner(oidc_provider_arn)
shared = RunnerShared(
    "runner-shared",
    {
        "namespace": settings.runner.namespace,
        "pod_security_version": settings.pod_security_version,
        "service_account_name": settings.runner.service_account_name,
        "service_account_role_arn": cache_role_arn,
        "pause_pod_priority_class": PAUSE_POD_PRIORITY_CLASS if settings.warms_capacity else None,
    },
    opts=in_cluster,
)
job_namespace_args: JobNamespacesArgs = {
    "manager_namespace": shared.namespace,
    "job_namespaces": settings.job_namespace_specs,
    "pod_security_version": settings.pod_security_version,
    "network_policies": settings.isolation.network_policies,
    "manager_pod_labels": MANAGER_POD_LABELS,
}
if settings.isolation.metrics_scraper_namespaces is not None:
    job_namespace_args["metrics_scraper_namespaces"] = settings.isolation.metrics_scraper_namespaces
job_namespaces = JobNamespaces("job-namespaces", job_namespace_args, opts=in_cluster)


def runner_tokens() -> dict[str, pulumi.Input[str]]:
    """Each pool's runner token: created in GitLab by the stack, or set by hand as a secret."""
    if not settings.gitlab.create_runners:
        return {name: secret.output() for name, secret in settings.runner_tokens.items()}
    assert settings.gitlab_api_token is not None
    gitlab = settings.gitlab
    api_token = settings.gitlab_api_token.output()
    provider = gitlab_provider("gitlab", settings.runner.gitlab_url, api_token)
    tokens: dict[str, pulumi.Input[str]] = {}
    for pool in settings.pools:
        args: RunnerRegistrationArgs = {
            "pool_name": pool.name,
            "runner_type": gitlab.runner_type,
            "tags": settings.runner_tags(pool),
            "run_untagged": pool.run_untagged,
            "locked": gitlab.locked,
            "access_level": gitlab.access_level,
            "maximum_timeout": gitlab.maximum_timeout,
            "description": settings.runner_name(pool),
        }
        if gitlab.group_id:
            args["group_id"] = gitlab.group_id
        if gitlab.project_id:
            args["project_id"] = gitlab.project_id
        if gitlab.rotate_token_days:
            args["rotate_token_days"] = gitlab.rotate_token_days
        registration = RunnerRegistration(
            f"runner-registration-{pool.name}",
            args,
            opts=pulumi.ResourceOptions(providers=[provider]),
        )
        pulumi.export(f"gitlabRunnerId-{pool.name}", registration.runner_id)
        tokens[pool.name] = registration.token
    return tokens


def job_namespace(index: int) -> pulumi.Output[str]:
    """One job namespace's name, once JobNamespaces has created it."""
    return job_namespaces.namespaces.apply(lambda names: names[index])


def registry_mirror() -> RegistryMirror:
    """The pull-through Docker Hub mirror, its storage and (on EKS) its IRSA role."""
    mirror = settings.registry_mirror
    args: RegistryMirrorArgs = {
        "storage": registry_mirror_storage(),
        "job_namespaces": [
            job_namespace(index) for index in range(len(settings.job_namespace_specs))
        ],
        "replicas": mirror.replicas,
        "image": mirror.image,
        "affinity": keep_off_build_nodes(settings.pool_node_labels),
        "expiration_days": mirror.expiration_days,
    }
    if mirror_cluster_ip:
        args["cluster_ip"] = mirror_cluster_ip
    if settings.mirror_storage_kind == "s3" and settings.cache.type == "s3":
        assert oidc_provider_arn is not None
        # CacheBucket's lifecycle rule on the mirror's prefix (other_prefixes) expires layers.
        args["lifecycle_rule"] = settings.creates_cache_bucket
        partition = aws.get_partition().partition
        args["service_account_role_arn"] = RegistryMirrorAccess(
            "registry-mirror-access",
            {
                "bucket_arn": f"arn:{partition}:s3:::{cache_bucket_name}",
                "prefix": mirror.prefix,
                "oidc_provider_arn": oidc_provider_arn,
                "namespace": MIRROR_NAMESPACE,
                "service_account": MIRROR_SERVICE_ACCOUNT,
                "kms_key_arn": settings.cache.kms_key_arn,
                "tags": tags("registry-mirror"),
            },
        ).role_arn
    elif settings.mirror_storage_kind == "s3":
        args["storage_keys"] = {
            "access_key_id": settings.cache_credentials["accessKey"].output(),
            "secret_access_key": settings.cache_credentials["secretKey"].output(),
        }
    if mirror.docker_hub_username and settings.docker_hub_token:
        args["upstream_credentials"] = {
            "username": mirror.docker_hub_username,
            "password": settings.docker_hub_token.output(),
        }
    return RegistryMirror("registry-mirror", args, opts=in_cluster)


def registry_mirror_storage() -> MirrorStorage:
    """The cache's bucket under the mirror's own prefix, or each replica's own disk."""
    if settings.mirror_storage_kind == "filesystem":
        return {"filesystem": {"root_directory": "/var/lib/registry"}}
    cache = settings.cache
    if cache.type == "s3":
        return {
            "s3": {
                "bucket": cache_bucket_name,
                "region": settings.aws_region,
                "prefix": settings.registry_mirror.prefix,
            }
        }
    scheme = "http" if cache.insecure else "https"
    return {
        "s3": {
            "bucket": str(cache.bucket_name),
            "region": cache.bucket_location or "us-east-1",
            "prefix": settings.registry_mirror.prefix,
            "endpoint": f"{scheme}://{cache.server_host}",
            "force_path_style": bool(cache.path_style),
        }
    }


if settings.registry_mirror.enabled:
    mirror = registry_mirror()
    pulumi.export("registryMirror", mirror.status)
    pulumi.export("registryMirrorNodeUrl", mirror.node_url)

tokens = runner_tokens()
runners = {
    pool.name: GitlabRunner(
        f"gitlab-runner-{pool.name}",
        {
            "pool": pool.name,
            "namespace": shared.namespace,
            "gitlab_url": settings.runner.gitlab_url,
            "runner_token": tokens[pool.name],
            "runner_name": settings.runner_name(pool),
            "job": settings.pool_job_spec(pool),
            "cache": runner_cache,
            "service_account_name": settings.runner.service_account_name,
            "all_pool_labels": settings.pool_node_labels,
            "cache_secret": cache_secret_data(cache_credentials),
            "concurrent": pool.concurrent,
            "check_interval": settings.runner.check_interval,
            "termination_grace_period_seconds": settings.runner.termination_grace_period_seconds,
            "pod_monitor_labels": (
                settings.monitoring.selector_labels if settings.monitoring.enabled else None
            ),
        },
        # The chart's Role goes into the job namespace, which must exist first.
        opts=pulumi.ResourceOptions(
            providers=[kubernetes_provider], depends_on=[shared, job_namespaces]
        ),
    )
    for pool in settings.pools
}
if settings.monitoring.enabled:
    monitoring = settings.monitoring
    fleet_monitoring = FleetMonitoring(
        "monitoring",
        {
            "pools": [pool.name for pool in settings.pools],
            "namespace": monitoring.namespace,
            "rule_labels": monitoring.selector_labels,
            "dashboard_labels": monitoring.dashboard_labels,
            "thresholds": monitoring.snake_thresholds(monitoring.thresholds),  # type: ignore[typeddict-item]
            # EKS names a managed node group's Auto Scaling group eks-<node group>-<id>.
            "node_group_regex": f"eks-{BUILD_NODES}-.*",
            "runbook_url": monitoring.runbook_url,
            "create_rule": monitoring.alerts,
            "create_dashboard": monitoring.dashboard,
        },
        opts=pulumi.ResourceOptions(
            providers=[kubernetes_provider], depends_on=list(runners.values())
        ),
    )
    pulumi.export("alerts", fleet_monitoring.alerts)
    pulumi.export("dashboardConfigMap", fleet_monitoring.dashboard_config_map)
pulumi.export("cachePrefix", settings.cache.prefix)
pulumi.export("runnerNamespace", shared.namespace)
pulumi.export("jobNamespaces", job_namespaces.namespaces)
pulumi.export(
    "pools",
    {
        pool.name: {
            "labels": pool.node_labels,
            "tags": settings.runner_tags(pool),
            "architecture": pool.architecture,
        }
        for pool in settings.pools
    },
)
pulumi.export(
    "runnerConfigChecksums", {name: runner.config_checksum for name, runner in runners.items()}
)
