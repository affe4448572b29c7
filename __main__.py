"""gitlab-runner-fleet: read the stack's settings, wire the components, export the results."""

from typing import cast

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.aws.cache_access import CacheAccess
from components.aws.cache_bucket import CacheBucket
from components.aws.cluster import CREATE_MODE, EksCluster
from components.aws.cluster_autoscaler import ClusterAutoscaler
from components.aws.s3_gateway_endpoint import S3GatewayEndpoint
from components.aws.spot_node_group import SpotNodeGroup
from components.naming import resource_tags
from components.settings import load_settings
from components.workloads.gitlab_runner import GitlabRunner, cache_secret_data
from components.workloads.runner_config import CacheSpec

settings = load_settings()
for warning in settings.warnings:
    pulumi.log.warn(warning)


def tags(component: str) -> dict[str, str]:
    return resource_tags(settings.project, settings.stack, component, settings.tags)


def eks_cluster_with_capacity() -> EksCluster:
    """The EKS cluster, its spot build nodes, cluster-autoscaler and the S3 endpoint."""
    cluster = EksCluster(
        "cluster",
        {
            "mode": settings.cluster.mode,
            "name": settings.cluster.name,
            "version": str(settings.cluster.version),
            "region": settings.aws_region,
            "vpc_id": settings.cluster.vpc_id,
            "private_subnet_ids": settings.cluster.private_subnet_ids,
            "public_subnet_ids": settings.cluster.public_subnet_ids,
            "node_subnet_ids": settings.cluster.default_node_subnet_ids,
            "system_instance_types": settings.cluster.system_instance_types,
            "system_node_count": settings.cluster.system_node_count,
            "create_oidc_provider": settings.cluster.create_oidc_provider,
            "tags": tags("cluster"),
        },
    )
    build_nodes = SpotNodeGroup(
        "build-nodes",
        {
            "cluster_name": cluster.cluster_name,
            "subnet_ids": cluster.node_subnet_ids,
            "instance_types": settings.build_nodes.instance_types,
            "min_size": settings.build_nodes.min_size,
            "max_size": settings.build_nodes.max_size,
            "disk_size_gib": settings.build_nodes.disk_size_gib,
            "labels": settings.build_nodes.labels,
            "taints": settings.runner_job_spec()["build_taints"],
            "node_role_arn": settings.build_nodes.node_role_arn,
            "scale_from_zero_ephemeral_storage": (
                settings.build_nodes.scale_from_zero_ephemeral_storage
            ),
            "tags": tags("build-nodes"),
        },
    )
    pulumi.export("buildNodeGroupName", build_nodes.node_group_name)
    pulumi.export("buildAutoscalingGroupName", build_nodes.autoscaling_group_name)
    pulumi.export("buildNodeRoleArn", build_nodes.node_role_arn)
    pulumi.export("buildScaleFromZeroTags", build_nodes.scale_from_zero_tags)

    if settings.cluster_autoscaler.enabled:
        autoscaler = ClusterAutoscaler(
            "cluster-autoscaler",
            {
                "cluster_name": cluster.cluster_name,
                "region": settings.aws_region,
                "kubernetes_version": str(settings.cluster.version),
                "oidc_provider_arn": cluster.oidc_provider_arn,
                "build_labels": settings.build_nodes.labels,
                "expander": settings.cluster_autoscaler.expander,
                "scale_down_unneeded_time": settings.cluster_autoscaler.scale_down_unneeded_time,
                "tags": tags("cluster-autoscaler"),
            },
            opts=pulumi.ResourceOptions(providers=[cluster.kubernetes_provider]),
        )
        pulumi.export("clusterAutoscalerRoleArn", autoscaler.role_arn)

    s3_endpoint_wanted = settings.network.s3_gateway_endpoint
    if s3_endpoint_wanted is None:
        s3_endpoint_wanted = settings.cluster.mode == CREATE_MODE
    if s3_endpoint_wanted:
        s3_endpoint = S3GatewayEndpoint(
            "s3-gateway-endpoint",
            {
                "vpc_id": cluster.vpc_id,
                "route_table_ids": settings.network.route_table_ids,
                "subnet_ids": cluster.node_subnet_ids,
                "tags": tags("network"),
            },
        )
        pulumi.export("s3GatewayEndpointId", s3_endpoint.endpoint_id)
    return cluster


CacheForRunner = tuple[
    pulumi.Output[CacheSpec], dict[str, pulumi.Input[str]], pulumi.Input[str | None]
]


def cache_for_runner(oidc_provider_arn: pulumi.Input[str] | None) -> CacheForRunner:
    """The runner's cache section, its credentials and the IRSA role for its service account."""
    if settings.cache.type != "s3":
        external: dict[str, pulumi.Input[str]] = {
            name: secret.output() for name, secret in settings.cache_credentials.items()
        }
        return pulumi.Output.from_input(settings.runner_cache_spec()), external, None

    account_id = aws.get_caller_identity_output().account_id
    cache = CacheBucket(
        "cache",
        {
            "bucket_name": account_id.apply(settings.cache_bucket_name),
            "cache_prefix": settings.cache.prefix,
            "expiration_days": settings.cache.expiration_days,
            "versioning": settings.cache.versioning,
            "kms_key_arn": settings.cache.kms_key_arn,
            "access_log_bucket": settings.cache.access_log_bucket,
            "access_log_prefix": settings.cache.access_log_prefix,
            "protect": settings.cache.protect,
            "force_destroy": settings.cache.force_destroy,
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

    spec = pulumi.Output.all(cache.bucket_name, cache.bucket_region).apply(
        lambda bucket: settings.runner_cache_spec(bucket[0], bucket[1])
    )
    if settings.cache_access.mode == "irsa":
        # The manager signs the presigned cache URLs, so the role goes on its service account;
        # a cache Secret would export keys that shadow IRSA.
        return spec, {}, cache_access.role_arn
    # Both are set in accessKey mode.
    credentials: dict[str, pulumi.Input[str]] = {
        "accessKey": cast(pulumi.Output[str], cache_access.access_key_id),
        "secretKey": cast(pulumi.Output[str], cache_access.secret_access_key),
    }
    return spec, credentials, None


if settings.on_eks:
    cluster = eks_cluster_with_capacity()
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

runner_cache, cache_credentials, cache_role_arn = cache_for_runner(oidc_provider_arn)
runner = GitlabRunner(
    "gitlab-runner",
    {
        "gitlab_url": settings.runner.gitlab_url,
        "runner_token": settings.runner_token.output(),
        "runner_name": settings.runner_name,
        "job": settings.runner_job_spec(),
        "cache": runner_cache,
        "service_account_name": settings.runner.service_account_name,
        "service_account_role_arn": cache_role_arn,
        "cache_secret": cache_secret_data(cache_credentials),
        "concurrent": settings.runner.concurrent,
        "check_interval": settings.runner.check_interval,
        "termination_grace_period_seconds": settings.runner.termination_grace_period_seconds,
        "pod_monitor": settings.runner.pod_monitor,
    },
    opts=pulumi.ResourceOptions(providers=[kubernetes_provider]),
)
pulumi.export("cachePrefix", settings.cache.prefix)
pulumi.export("runnerNamespace", runner.namespace)
pulumi.export("runnerConfigChecksum", runner.config_checksum)
