"""The pool wiring: what each pool of a stack gets, as the arguments of its components.

A pool is one kind of build capacity: a spot node group scaled by cluster-autoscaler or a
Karpenter NodePool (EKS), optionally its runner created in GitLab, and a runner manager (the
gitlab-runner release). Plain functions from the settings to component arguments, so a pool's
wiring is tested without declaring anything.
"""

from __future__ import annotations

from typing import Any

import pulumi

from ..aws.karpenter_pool import KarpenterPoolArgs
from ..aws.spot_node_group import SpotNodeGroupArgs, TaintArgs
from ..gitlab.runner_registration import RunnerRegistrationArgs
from ..naming import TagArgs
from ..settings import FleetSettings, PoolSettings
from ..workloads.alert_rules import CLUSTER_AUTOSCALER, KARPENTER, NO_SCALER
from ..workloads.gitlab_runner import GitlabRunnerArgs
from ..workloads.runner_config import CacheSpec

BUILD_NODES = "build-nodes"
"""Name prefix of every pool's node group (and so, on EKS, of its Auto Scaling group), and
the cost-allocation `component` of every pool's nodes, whichever scaler adds them."""
BUILD_NODE_GROUP_REGEX = f"eks-{BUILD_NODES}-.*"
"""The Auto Scaling groups of the stack's pools: EKS names a managed node group's group
`eks-<node group>-<id>`."""


def node_group_name(pool: PoolSettings) -> str:
    """The resource name of a pool's spot node group."""
    return f"{BUILD_NODES}-{pool.name}"


def spot_node_group_args(
    settings: FleetSettings,
    pool: PoolSettings,
    *,
    cluster_name: pulumi.Input[str],
    subnet_ids: pulumi.Input[list[str]],
    user_data: pulumi.Input[str] | None,
    cni_policy: bool,
) -> SpotNodeGroupArgs:
    """One pool's spot node group; its labels, taints and architecture come from the pool.
    `cni_policy`: whether its node role carries `AmazonEKS_CNI_Policy` (`fleet.network`)."""
    discovery_key, discovery_value = settings.autoscaler_discovery_tag
    args: SpotNodeGroupArgs = {
        "cluster_name": cluster_name,
        "kubernetes_version": str(settings.cluster.version),
        "subnet_ids": subnet_ids,
        "instance_types": pool.instance_types,
        "min_size": pool.min_size,
        "max_size": pool.max_size,
        "disk_size_gib": pool.disk_size_gib,
        "labels": pool.node_labels,
        "taints": _taints(pool),
        "scale_from_zero_ephemeral_storage": pool.advertised_ephemeral_storage,
        "imds_hop_limit": pool.imds_hop_limit,
        "autoscaler_discovery_tag": {"key": discovery_key, "value": discovery_value},
        "instance_tags": {**settings.tags_for(BUILD_NODES), "pool": pool.name},
        "user_data": user_data,
        "tags": settings.tags_for(BUILD_NODES),
    }
    # The CNI policy goes only on a role the group creates; a given role brings its own.
    if pool.node_role_arn:
        args["node_role_arn"] = pool.node_role_arn
    else:
        args["node_cni_policy"] = cni_policy
    return args


def karpenter_pool_name(pool: PoolSettings) -> str:
    """The resource name of a pool's KarpenterPool."""
    return f"karpenter-pool-{pool.name}"


def karpenter_pool_args(
    settings: FleetSettings,
    pool: PoolSettings,
    *,
    node_role_name: pulumi.Input[str],
    subnet_ids: pulumi.Input[list[str]],
    security_group_ids: list[pulumi.Input[str]],
    discovery_tag: TagArgs | None,
    user_data: pulumi.Input[str] | None,
) -> KarpenterPoolArgs:
    """One pool's NodePool and EC2NodeClass; its labels, taints and architecture come from the
    pool as its node group's would, its instance types from its shape and requirements."""
    karpenter = settings.karpenter
    args: KarpenterPoolArgs = {
        "pool": pool.name,
        "node_role_name": node_role_name,
        "architecture": pool.architecture,
        "max_nodes": pool.max_size,
        "labels": pool.node_labels,
        "taints": _taints(pool),
        "on_demand_fallback": pool.on_demand_fallback,
        "disk_size_gib": pool.disk_size_gib,
        "imds_hop_limit": pool.imds_hop_limit,
        "user_data": user_data,
        "consolidate_after": pool.consolidate_after,
        "expire_after": pool.expire_after,
        "termination_grace_period": pool.termination_grace_period,
        "tags": {**settings.tags_for(BUILD_NODES), "pool": pool.name},
    }
    if pool.launches_listed_types_only:
        args["instance_types"] = pool.instance_types
    else:
        requirements = pool.karpenter_requirements
        assert requirements is not None  # the settings refuse a pool without
        categories, min_generation, cpus = requirements
        args["instance_categories"] = categories
        args["min_generation"] = min_generation
        args["cpus"] = cpus
    if karpenter.ami_ids:
        args["ami_ids"] = karpenter.ami_ids
    else:
        args["ami_alias"] = karpenter.ami_alias
    if discovery_tag:
        args["discovery_tag"] = discovery_tag
    else:
        args["subnet_ids"] = subnet_ids
        args["security_group_ids"] = security_group_ids
    return args


def monitored_scaler(settings: FleetSettings, pool: PoolSettings) -> str:
    """What the alerts watch as the pool's scaler: only one the stack runs (and scrapes)."""
    if pool.uses_karpenter:
        return KARPENTER if settings.installs_karpenter else NO_SCALER
    return CLUSTER_AUTOSCALER if settings.installs_cluster_autoscaler else NO_SCALER


def _taints(pool: PoolSettings) -> list[TaintArgs]:
    """The pool's taints as the capacity components take them (Kubernetes casing)."""
    return [
        {"key": taint.key, "value": taint.value, "effect": taint.effect}
        for taint in pool.node_taints
    ]


def runner_registration_args(settings: FleetSettings, pool: PoolSettings) -> RunnerRegistrationArgs:
    """A pool's runner as the stack creates it in GitLab (`gitlab.createRunners`)."""
    gitlab = settings.gitlab
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
    return args


def gitlab_runner_args(
    settings: FleetSettings,
    pool: PoolSettings,
    *,
    namespace: pulumi.Input[str],
    runner_token: pulumi.Input[str],
    cache: pulumi.Input[CacheSpec],
    cache_secret: dict[str, pulumi.Input[str]],
) -> GitlabRunnerArgs:
    """A pool's runner manager: its job pods, its cache, and how it is scraped."""
    runner = settings.runner
    return {
        "pool": pool.name,
        "namespace": namespace,
        "gitlab_url": runner.gitlab_url,
        "runner_token": runner_token,
        "runner_name": settings.runner_name(pool),
        "job": settings.pool_job_spec(pool),
        "cache": cache,
        "service_account_name": runner.service_account_name,
        "all_pool_labels": settings.pool_node_labels,
        "cache_secret": cache_secret,
        "concurrent": pool.concurrent,
        "check_interval": runner.check_interval,
        "termination_grace_period_seconds": runner.termination_grace_period_seconds,
    }


def pool_summary(settings: FleetSettings) -> dict[str, dict[str, Any]]:
    """Each pool's node labels, runner tags, architecture and scaler (the stack output
    `pools`)."""
    return {
        pool.name: {
            "labels": pool.node_labels,
            "tags": settings.runner_tags(pool),
            "architecture": pool.architecture,
            "scaler": pool.scaler,
        }
        for pool in settings.pools
    }
