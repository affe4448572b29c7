"""One typed, validated model of a stack's whole configuration, and the values derived from it.

`parse.parse_settings` builds it from raw config values and `parse.load_settings` from the
stack's Pulumi config; nothing here needs Pulumi. Decisions derived from several sections have
their own modules beside it (`cache_plan`), so each is made once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..build_nodes import POOL_LABEL
from ..karpenter import CAPACITY_TYPE_LABEL as KARPENTER_CAPACITY_TYPE_LABEL
from ..karpenter import DO_NOT_DISRUPT_ANNOTATION
from ..karpenter import SPOT as KARPENTER_SPOT
from ..naming import resource_tags
from ..workloads.isolation import (
    JOB_SERVICE_ACCOUNT,
    BuildMode,
    job_namespace_name,
    job_pod_security_level,
    pod_security_version,
)
from ..workloads.job_namespaces import JobNamespaceSpec
from ..workloads.mirror_config import daemon_json_volume
from ..workloads.runner_config import JobSpec, WarmCapacity
from .base import Secret
from .cache_plan import CachePlan, cache_plan
from .pools import PoolSettings
from .rules import Sections
from .site import ANY_SITE_TAG, site_tag

PAUSE_POD_PRIORITY_CLASS = "gitlab-runner-fleet-pause-pods"
"""The PriorityClass the stack creates for every pool's pause pods."""


@dataclass(frozen=True)
class FleetSettings(Sections):
    """A stack's validated configuration: the one source every component reads from. Its
    config sections are `Sections`' fields."""

    project: str
    stack: str
    aws_region: str
    pools: tuple[PoolSettings, ...]
    runner_tokens: Mapping[str, Secret]
    """Each pool's hand-made runner token; empty when `gitlab.createRunners` creates them."""
    gitlab_api_token: Secret | None = None
    docker_hub_token: Secret | None = None
    cache_credentials: Mapping[str, Secret] = field(default_factory=dict)
    kubeconfig: Secret | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    stand_ins: tuple[str, ...] = ()
    """Secret keys whose values are offline stand-ins: encrypted in the stack file, or absent
    from it when the parser was asked to stand in (`parse_settings(stand_in_secrets=True)`)."""
    missing_secrets: tuple[str, ...] = ()
    """Of those, the ones the configuration needs and does not set at all."""
    source: str | None = None
    """Where the values came from and how to change them, for errors found later (a looked-up
    cluster's version); None for the stack file."""

    @property
    def cache_plan(self) -> CachePlan:
        """The stack's cache and what follows from it (bucket, credentials, mirror storage)."""
        return cache_plan(self.cache, self.cache_access, self.site, self.registry_mirror)

    def tags_for(self, component: str) -> dict[str, str]:
        """Cost-allocation tags of one component's AWS resources."""
        return resource_tags(self.project, self.stack, component, self.tags)

    @property
    def on_eks(self) -> bool:
        """Whether the cluster is EKS, so AWS build capacity and IRSA are managed."""
        return self.cluster.on_eks

    def runner_name(self, pool: PoolSettings) -> str:
        """How a pool's runner shows up in GitLab's runner list."""
        return f"{self.project}-{self.stack}-{pool.name}"

    @property
    def autoscaler_discovery_tag(self) -> tuple[str, str]:
        """The Auto Scaling group tag that marks this stack's pools for cluster-autoscaler.

        EKS tags every managed node group's group with `k8s.io/cluster-autoscaler/enabled` and
        `.../<cluster>`; discovering by those would scale other teams' groups on a shared cluster.
        """
        return "gitlab-runner-fleet/autoscaler", f"{self.project}-{self.stack}"

    @property
    def node_group_pools(self) -> list[PoolSettings]:
        """The pools on spot managed node groups that cluster-autoscaler scales (EKS)."""
        return [pool for pool in self.pools if self.on_eks and not pool.uses_karpenter]

    @property
    def karpenter_pools(self) -> list[PoolSettings]:
        """The pools whose nodes Karpenter launches (EKS)."""
        return [pool for pool in self.pools if pool.uses_karpenter]

    @property
    def installs_cluster_autoscaler(self) -> bool:
        """Whether the stack runs its own cluster-autoscaler: on EKS, for its node groups."""
        return self.cluster_autoscaler.enabled and bool(self.node_group_pools)

    @property
    def installs_karpenter(self) -> bool:
        """Whether the stack runs Karpenter itself (a created cluster with Karpenter pools), not
        relying on the cluster's own (`karpenter.preinstalled`)."""
        return bool(self.karpenter_pools) and not self.karpenter.preinstalled

    @property
    def pool_node_labels(self) -> list[dict[str, str]]:
        """Every pool's node labels: what system pods keep off and autoscaled groups carry."""
        return [pool.node_labels for pool in self.pools]

    def runner_tags(self, pool: PoolSettings) -> list[str]:
        """The GitLab runner tags of a pool's runner: its own, and its site's."""
        if self.site.name is None:
            return list(pool.tags)
        extra = [site_tag(self.site.name), ANY_SITE_TAG]
        return [*pool.tags, *(tag for tag in extra if tag not in pool.tags)]

    def build_mode(self, pool: PoolSettings) -> BuildMode:
        """The pool's build mode, or the stack's default."""
        return pool.build_mode or self.runner.build_mode

    def job_namespace(self, pool: PoolSettings) -> str:
        """Where a pool's jobs run: one namespace per build mode, never the manager's."""
        return job_namespace_name(self.build_mode(pool), self.runner.namespace)

    @property
    def job_namespace_specs(self) -> list[JobNamespaceSpec]:
        """Every job namespace in use, with the Pod Security level its build mode allows."""
        modes = sorted({self.build_mode(pool) for pool in self.pools})
        return [
            {
                "name": job_namespace_name(mode, self.runner.namespace),
                "pod_security_level": job_pod_security_level(mode),
                "existing": job_namespace_name(mode, self.runner.namespace)
                in self.isolation.existing_namespaces,
            }
            for mode in modes
        ]

    @property
    def pod_security_version(self) -> str:
        """The Pod Security policy version the namespaces pin."""
        return self.isolation.pod_security_version or pod_security_version(self.cluster.version)

    @property
    def warms_capacity(self) -> bool:
        """Whether any pool keeps pause pods."""
        return any(pool.warm_capacity for pool in self.pools)

    def pool_job_spec(self, pool: PoolSettings) -> JobSpec:
        """How a pool's job pods run, from the runner settings and the pool's own facts."""
        runner = self.runner
        spec: JobSpec = {
            "namespace": self.job_namespace(pool),
            "image": runner.default_image,
            "build_mode": self.build_mode(pool),
            "request_concurrency": runner.request_concurrency,
            "poll_interval": runner.poll_interval,
            "poll_timeout": runner.poll_timeout,
            "build": pool.build_resources.spec(),
            "helper": pool.helper_resources.spec(),
            "service": pool.service_resources.spec(),
            "ephemeral_storage_request": pool.ephemeral_storage_request,
            "ephemeral_storage_max": pool.advertised_ephemeral_storage,
            "node_selector": pool.job_node_selector,
            "build_taints": [
                {"key": taint.key, "value": taint.value, "effect": taint.effect}
                for taint in pool.node_taints
            ],
            # Cost tools split job pods' cost by these (docs/observability.md).
            "pod_labels": {**pool.node_labels, POOL_LABEL: pool.name},
            # Its token is never mounted and it has no IAM role (JobNamespaces creates it).
            "service_account": JOB_SERVICE_ACCOUNT,
            "environment": [
                *runner.job_environment(),
                # The site-affinity CI template pins a pipeline to the site its first job ran on.
                *([f"RUNNER_SITE={self.site.name}"] if self.site.name else []),
            ],
            "feature_flags": runner.job_feature_flags(),
            "output_limit": runner.output_limit_kib,
        }
        if pool.uses_karpenter:
            # Karpenter neither consolidates nor drains a node while such a pod runs; node
            # groups' jobs need cluster-autoscaler's safe-to-evict only (runner_config.py).
            spec["pod_annotations"] = {DO_NOT_DISRUPT_ANNOTATION: "true"}
            spec["spot_node_label"] = {KARPENTER_CAPACITY_TYPE_LABEL: KARPENTER_SPOT}
        if ceiling := pool.overwrite_ceiling:
            spec["overwrite_ceiling"] = ceiling
        if runner.allowed_images is not None:
            spec["allowed_images"] = list(runner.allowed_images)
        if runner.allowed_services is not None:
            spec["allowed_services"] = list(runner.allowed_services)
        if runner.dind_registry_prefixes:
            spec["dind_registry_prefixes"] = list(runner.dind_registry_prefixes)
        if pool.allow_privilege_escalation:
            spec["allow_privilege_escalation"] = True
        if runner.allowed_pull_policies is not None:
            spec["allowed_pull_policies"] = list(runner.allowed_pull_policies)
        if warm := self._warm_capacity(pool):
            spec["warm_capacity"] = warm
        if pool.job_queuing_durations:
            spec["job_queuing_durations"] = [d.spec() for d in pool.job_queuing_durations]
        if self.registry_mirror.enabled and spec["build_mode"] == "dind":
            # dind's daemon.json names the mirror; the runner mounts config-map volumes into
            # every container of the job, services included (executors/kubernetes/kubernetes.go).
            spec["config_map_volumes"] = [dict(daemon_json_volume())]  # type: ignore[list-item]
        return spec

    def _warm_capacity(self, pool: PoolSettings) -> WarmCapacity | None:
        warm = pool.warm_capacity
        if warm is None:
            return None
        per_job = pool.pause_pods_per_job()
        max_jobs = warm.max_idle_jobs or max(policy.idle_jobs for policy in warm.policies) or 1
        return {
            "max_pause_pods": max_jobs * per_job,
            "priority_class_name": PAUSE_POD_PRIORITY_CLASS,
            "policies": [
                {
                    "periods": list(policy.periods),
                    "timezone": policy.timezone,
                    "idle_count": min(policy.idle_jobs, max_jobs) * per_job,
                    "idle_time": policy.idle_time,
                }
                for policy in warm.policies
            ],
        }
