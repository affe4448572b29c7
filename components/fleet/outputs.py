"""What a stack exports: RunnerFleet's outputs under the names stacks (and StackReferences of
edge sites) have read since 0.1.0."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi

from .runner_fleet import RunnerFleet
from .sites import EDGE_CREDENTIALS_OUTPUT, HUB_OUTPUT

# Stack output name -> RunnerFleet attribute; an attribute that is None is not exported.
STACK_OUTPUTS = {
    "clusterName": "cluster_name",
    "buildNodeGroups": "build_node_groups",
    "buildAutoscalingGroups": "build_autoscaling_groups",
    "buildNodeRoleArns": "build_node_role_arns",
    "buildScaleFromZeroTags": "build_scale_from_zero_tags",
    "karpenterNodePools": "karpenter_node_pools",
    "karpenterNodeRoleArn": "karpenter_node_role_arn",
    "karpenterRoleArn": "karpenter_role_arn",
    "karpenterInterruptionQueue": "karpenter_interruption_queue",
    "networkPolicyEnforcement": "network_policy_enforcement",
    "vpcCniRoleArn": "vpc_cni_role_arn",
    "clusterAutoscalerRoleArn": "cluster_autoscaler_role_arn",
    "clusterAutoscalerDiscoveryTag": "cluster_autoscaler_discovery_tag",
    "s3GatewayEndpointId": "s3_gateway_endpoint_id",
    "s3GatewayEndpointStatus": "s3_gateway_endpoint_status",
    "siteCacheEndpoint": "site_cache_endpoint",
    "cacheBucketName": "cache_bucket_name",
    "cacheBucketArn": "cache_bucket_arn",
    "cacheBucketRegion": "cache_bucket_region",
    "cachePolicyArn": "cache_policy_arn",
    "cacheRoleArn": "cache_role_arn",
    "cacheUserName": "cache_user_name",
    "cacheAccessKeyId": "cache_access_key_id",
    "cacheSecretAccessKey": "cache_secret_access_key",
    HUB_OUTPUT: "site_hub",
    EDGE_CREDENTIALS_OUTPUT: "site_edge_credentials",
    "registryMirror": "registry_mirror_status",
    "registryMirrorNodeUrl": "registry_mirror_node_url",
    "alerts": "alerts",
    "dashboardConfigMap": "dashboard_config_map",
    "cachePrefix": "cache_prefix",
    "runnerNamespace": "runner_namespace",
    "jobNamespaces": "job_namespaces",
    "pools": "pools",
    "runnerConfigChecksums": "runner_config_checksums",
}
RUNNER_ID_OUTPUT_PREFIX = "gitlabRunnerId-"
"""One output per pool whose runner the stack creates: `gitlabRunnerId-<pool>`."""


def stack_outputs(fleet: RunnerFleet, pools: list[str]) -> dict[str, pulumi.Output[Any]]:
    """The outputs a stack of `fleet` exports, by name; `pools` are the fleet's pool names."""
    outputs = {
        name: value
        for name, attribute in STACK_OUTPUTS.items()
        if (value := getattr(fleet, attribute)) is not None
    }
    if (runner_ids := fleet.gitlab_runner_ids) is not None:
        for pool in pools:
            outputs[f"{RUNNER_ID_OUTPUT_PREFIX}{pool}"] = runner_ids.apply(_pick(pool))
    return outputs


def _pick(pool: str) -> Callable[[dict[str, str]], str]:
    return lambda ids: ids[pool]
