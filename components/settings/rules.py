"""Rules that span several config sections. Each returns the problems it finds, keyed like
`pulumi config set --path` keys; none of them needs Pulumi."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic.alias_generators import to_camel

from ..cache_keys import replicate_problems
from ..gitlab.runner_spec import registration_problems
from ..karpenter import duration_seconds
from ..naming import ALLOCATION_TAG_KEYS, tag_problems
from ..workloads.isolation import job_namespace_name, job_namespace_problems, job_pod_security_level
from ..workloads.runner_config import JOB_POD_TERMINATION_GRACE_SECONDS
from .autoscaler import ClusterAutoscalerSettings
from .base import Problem
from .cache import CacheAccessSettings, CacheSettings
from .cache_plan import cache_plan
from .cluster import KUBECONFIG_MODE, ClusterSettings
from .gitlab import GitlabSettings
from .isolation import IsolationSettings
from .karpenter import KarpenterSettings
from .mirror import RegistryMirrorSettings
from .monitoring import MonitoringSettings
from .network import NetworkSettings
from .pools import POOLS_KEY, PoolSettings
from .runner import RunnerSettings
from .site import SiteSettings

TAGS_KEY = "tags"


@dataclass(frozen=True)
class Sections:
    """Every config section, each valid on its own."""

    cluster: ClusterSettings
    cluster_autoscaler: ClusterAutoscalerSettings
    network: NetworkSettings
    cache: CacheSettings
    cache_access: CacheAccessSettings
    runner: RunnerSettings
    gitlab: GitlabSettings
    isolation: IsolationSettings
    registry_mirror: RegistryMirrorSettings
    site: SiteSettings
    monitoring: MonitoringSettings
    karpenter: KarpenterSettings

    @property
    def owns_cache(self) -> bool:
        """Whether the `cache` section is used: an edge site's runners use the edge cache."""
        return not self.site.is_edge


def cross_section_problems(
    sections: Sections, pools: list[PoolSettings], *, cache_section_set: bool
) -> list[Problem]:
    """Every rule between sections; `cache_section_set`: the stack file has a `cache` key."""
    problems = []
    if sections.cluster.mode == KUBECONFIG_MODE:
        problems.extend(_kubeconfig_mode_problems(sections, pools))
    problems.extend(_gitlab_problems(sections, pools))
    problems.extend(_mirror_problems(sections))
    problems.extend(_site_problems(sections, cache_section_set=cache_section_set))
    problems.extend(_isolation_problems(sections, pools))
    problems.extend(_scaler_problems(sections, pools))
    if not (sections.monitoring.enabled and sections.monitoring.alerts):
        problems += [
            Problem(
                f"{POOLS_KEY}[{index}].expectJobs",
                "only raises GitlabRunnerNoJobsPickedUp, an alert of the rule monitoring.enabled "
                "and monitoring.alerts (both true) create; turn them on, or remove it",
            )
            for index, pool in enumerate(pools)
            if pool.expect_jobs is not None
        ]
    network = sections.network
    if network.route_table_ids and network.s3_gateway_endpoint is False:
        problems.append(
            Problem(
                "network.routeTableIds",
                "is only used with network.s3GatewayEndpoint; remove one of them",
            )
        )
    return problems


# What a pool means on any cluster (its runner's config.toml and alerts); the rest shapes its
# EKS node group or NodePool.
_POOL_KEYS_OFF_EKS = {
    "name", "labels", "taints", "tags", "run_untagged", "concurrent", "build_mode",
    "build_resources", "helper_resources", "service_resources", "overwrite_max_allowed",
    "ephemeral_storage_request", "warm_capacity", "allow_privilege_escalation",
    "job_queuing_durations", "expect_jobs",
}  # fmt: skip


def _kubeconfig_mode_problems(sections: Sections, pools: list[PoolSettings]) -> list[Problem]:
    eks_only = "is only used on EKS (cluster.mode create or existing); remove it"
    node_group_keys = set(PoolSettings.model_fields) - _POOL_KEYS_OFF_EKS
    problems = [
        Problem(f"{POOLS_KEY}[{index}].{to_camel(key)}", eks_only)
        for index, pool in enumerate(pools)
        for key in sorted(pool.model_fields_set & node_group_keys)
    ]
    autoscaler = sections.cluster_autoscaler
    if autoscaler.enabled and "enabled" in autoscaler.model_fields_set:
        problems.append(Problem("clusterAutoscaler.enabled", eks_only))
    if sections.network.s3_gateway_endpoint:
        problems.append(Problem("network.s3GatewayEndpoint", eks_only))
    cache, access = sections.cache, sections.cache_access
    if cache.type == "s3" and access.mode == "irsa" and sections.owns_cache:
        problems.append(
            Problem(
                "cacheAccess.mode",
                "irsa needs an EKS cluster; set cacheAccess.mode: accessKey for an S3 cache, or "
                "use cache.type s3Compatible, gcs or azure",
            )
        )
    return problems


def _scaler_problems(sections: Sections, pools: list[PoolSettings]) -> list[Problem]:
    """Settings of a scaler no pool uses, Karpenter pools where Karpenter cannot come from, and
    termination grace periods shorter than the jobs they wait for."""
    karpenter, cluster = sections.karpenter, sections.cluster
    karpenter_pools = [(index, pool) for index, pool in enumerate(pools) if pool.uses_karpenter]
    problems = []
    if not karpenter_pools:
        problems += [
            Problem(f"karpenter.{to_camel(key)}", "is only used by pools with scaler: karpenter")
            for key in sorted(karpenter.model_fields_set)
        ]
    elif cluster.mode == "existing" and not karpenter.preinstalled:
        problems += [
            Problem(
                f"{POOLS_KEY}[{index}].scaler",
                "karpenter on an existing cluster needs the cluster's own Karpenter: set "
                "karpenter.preinstalled: true if it runs one (the stack installs Karpenter "
                "only into a cluster it creates, cluster.mode: create)",
            )
            for index, _ in karpenter_pools
        ]
    elif cluster.mode == "create" and karpenter.preinstalled:
        problems.append(
            Problem(
                "karpenter.preinstalled",
                "a cluster this stack creates has no Karpenter but the one the stack installs; "
                "remove it",
            )
        )
    if cluster.on_eks and all(pool.uses_karpenter for pool in pools):
        problems += [
            Problem(
                f"clusterAutoscaler.{to_camel(key)}",
                "no pool uses cluster-autoscaler (every pool has scaler: karpenter); remove it",
            )
            for key in sorted(sections.cluster_autoscaler.model_fields_set)
        ]
    # Karpenter deletes a job pod that still runs this long before the grace period ends.
    gitlab = sections.gitlab
    longest_job = (
        gitlab.maximum_timeout
        if gitlab.create_runners
        else sections.runner.termination_grace_period_seconds
    )
    needed = longest_job + JOB_POD_TERMINATION_GRACE_SECONDS
    source = (
        "gitlab.maximumTimeout"
        if gitlab.create_runners
        else ("runner.terminationGracePeriodSeconds")
    )
    for index, pool in karpenter_pools:
        if (duration_seconds(pool.termination_grace_period) or 0) < needed:
            problems.append(
                Problem(
                    f"{POOLS_KEY}[{index}].terminationGracePeriod",
                    f"must be at least {needed}s: the longest job ({source}, {longest_job}s) and "
                    f"its pod's {JOB_POD_TERMINATION_GRACE_SECONDS}s grace; shorter, a node "
                    f"being replaced kills running jobs, got {pool.termination_grace_period}",
                )
            )
    return problems


def _gitlab_problems(sections: Sections, pools: list[PoolSettings]) -> list[Problem]:
    gitlab = sections.gitlab
    if not gitlab.create_runners:
        used = {"create_runners", "runner_type", "group_id", "project_id", "rotate_token_days"}
        return [
            Problem(f"gitlab.{to_camel(key)}", "is only used with gitlab.createRunners: true")
            for key in sorted(gitlab.model_fields_set & used - {"create_runners"})
        ]
    grace = sections.runner.termination_grace_period_seconds
    problems = []
    for index, pool in enumerate(pools):
        for key, message in registration_problems(
            runner_type=gitlab.runner_type,
            group_id=gitlab.group_id,
            project_id=gitlab.project_id,
            tags=pool.tags,
            run_untagged=pool.run_untagged,
            access_level=gitlab.access_level,
            maximum_timeout=gitlab.maximum_timeout,
            rotate_token_days=gitlab.rotate_token_days,
            termination_grace_period_seconds=grace,
        ):
            pool_key = key in ("tags", "runUntagged")
            problem = Problem(
                f"{POOLS_KEY}[{index}].{key}" if pool_key else f"gitlab.{key}", message
            )
            if problem not in problems:
                problems.append(problem)
    return problems


def _site_problems(sections: Sections, *, cache_section_set: bool) -> list[Problem]:
    site, cache, runner = sections.site, sections.cache, sections.runner
    if site.name is None:
        return []
    problems = []
    if site.is_edge and cache_section_set:
        problems.append(
            Problem(
                "cache",
                "is not used on an edge site: its runners use the edge cache, and bucket and "
                "prefix come from the hub (site.hubStack); remove the cache section",
            )
        )
    if site.is_hub and site.edges and cache.type != "s3":
        # A site without edges only names itself (runner tags, site affinity): any cache.
        problems.append(
            Problem(
                "site.edges",
                f"edges read the hub's cache, which needs cache.type s3, got {cache.type}; "
                "remove site.edges for a site of its own",
            )
        )
    if not cache.shared:
        problems.append(
            Problem(
                "cache.shared",
                "must be true on a site: without Shared objects live under runner/<token>/ "
                "(cache/cache.go) and no other site finds them",
            )
        )
    hashed = runner.feature_flags.get("FF_HASH_CACHE_KEYS", False)
    problems += [
        Problem("site.replicate", problem)
        for problem in replicate_problems(site.replicate, hash_cache_keys=hashed)
    ]
    if site.is_edge and hashed:
        problems.append(
            Problem(
                "runner.featureFlags",
                "FF_HASH_CACHE_KEYS hashes the keys an edge pushes, so they match none of the "
                "hub's replicate globs; leave it off on sites",
            )
        )
    return problems


def _mirror_problems(sections: Sections) -> list[Problem]:
    mirror, cache = sections.registry_mirror, sections.cache
    problems = []
    if mirror.storage == "s3" and sections.site.is_edge:
        # An edge's cache is the hub's bucket, read through its own store; the edge holds no
        # key that may write the mirror's prefix there (found trying it as a new user).
        problems.append(
            Problem(
                "registryMirror.storage",
                "s3 is not available on an edge site (its cache is the hub's bucket, which "
                "the edge may only read and push replicated keys to); use filesystem",
            )
        )
    elif mirror.storage == "s3" and cache.type not in ("s3", "s3Compatible"):
        problems.append(
            Problem(
                "registryMirror.storage",
                "s3 keeps layers in the cache's bucket, which needs cache.type s3 or "
                f"s3Compatible (got {cache.type}); use filesystem",
            )
        )
    storage = cache_plan(cache, sections.cache_access, sections.site, mirror).mirror_storage
    if "filesystem_size" in mirror.model_fields_set and storage != "filesystem":
        chosen_by = "registryMirror.storage" if mirror.storage else f"cache.type {cache.type}"
        problems.append(
            Problem(
                "registryMirror.filesystemSize",
                "only bounds filesystem storage; this stack's mirror keeps its layers in "
                f"{storage} ({chosen_by}), expired by age: drop filesystemSize, or set "
                "registryMirror.storage to filesystem",
            )
        )
    overlap = (
        mirror.prefix == cache.prefix
        or mirror.prefix.startswith(f"{cache.prefix}/")
        or cache.prefix.startswith(f"{mirror.prefix}/")
    )
    if overlap:
        problems.append(
            Problem(
                "registryMirror.prefix",
                f"must not overlap cache.prefix ({cache.prefix}): the cache's lifecycle rule and "
                f"access policy would cover the mirror's layers, got {mirror.prefix!r}",
            )
        )
    return problems


def _isolation_problems(sections: Sections, pools: list[PoolSettings]) -> list[Problem]:
    isolation, runner = sections.isolation, sections.runner
    modes = sorted({pool.build_mode or runner.build_mode for pool in pools})
    job_namespaces = [job_namespace_name(mode, runner.namespace) for mode in modes]
    problems = [
        Problem("runner.namespace", problem)
        for problem in job_namespace_problems(
            [
                {"name": name, "pod_security_level": job_pod_security_level(mode)}
                for name, mode in zip(job_namespaces, modes, strict=True)
            ],
            runner.namespace,
        )
    ]
    problems += [
        Problem(
            "isolation.existingNamespaces",
            f"not a job namespace of this stack ({', '.join(job_namespaces)}): {name}",
        )
        for name in isolation.existing_namespaces
        if name not in job_namespaces
    ]
    problems += [
        Problem(
            "isolation.metricsScraperNamespaces",
            f"a job namespace cannot scrape the runner managers: {name}",
        )
        for name in isolation.metrics_scraper_namespaces or []
        if name in job_namespaces
    ]
    # At hop limit 2 the job NetworkPolicy's egress rule is all that keeps pods off the instance
    # metadata service and the node role's credentials (docs/threat-model.md); found trying it
    # as a new user.
    problems += [
        Problem(
            f"{POOLS_KEY}[{index}].imdsHopLimit",
            "2 with isolation.networkPolicies: false lets every job of the pool reach the node "
            "role's credentials through the instance metadata service: keep networkPolicies on "
            "(its egress policy blocks 169.254.169.254), or the hop limit at 1",
        )
        for index, pool in enumerate(pools)
        if pool.imds_hop_limit == 2
        and not isolation.network_policies
        and sections.cluster.mode != KUBECONFIG_MODE  # refused there as EKS-only already
    ]
    return problems


def parse_tags(raw: Any) -> tuple[dict[str, str], list[Problem]]:
    """`tags`: extra cost-allocation tags on every AWS resource."""
    if not isinstance(raw, Mapping):
        return {}, [Problem(TAGS_KEY, f"must be an object of tag keys to values, got {raw!r}")]
    problems = []
    for key, value in raw.items():
        path = f"{TAGS_KEY}.{key}"
        if key in ALLOCATION_TAG_KEYS:
            problems.append(Problem(path, "is set by the project itself; drop it or rename it"))
        problems += [Problem(path, problem) for problem in tag_problems(key, value)]
    return {str(key): str(value) for key, value in raw.items()}, problems
