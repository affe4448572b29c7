"""One typed, validated model of a stack's whole configuration.

Stack files (`stacks/Pulumi.<stack>.yaml`) hold one object per section under the project's
namespace, e.g. `gitlab-runner-fleet:cache: {expirationDays: 7}`, and the list `pools`.
`parse_settings` turns those raw values into `FleetSettings` or raises ONE `SettingsError` that
lists every problem with its config key path (the same path `pulumi config set --path` takes)
and how to fix it. `load_settings` reads the raw values from Pulumi config; nothing else here
needs Pulumi.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pulumi
from pydantic import ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import to_jsonable_python

from ..build_nodes import POOL_LABEL
from ..gitlab.runner_spec import registration_problems
from ..naming import ALLOCATION_TAG_KEYS, derived_bucket_name
from ..workloads.isolation import (
    JOB_SERVICE_ACCOUNT,
    BuildMode,
    job_namespace_name,
    job_namespace_problems,
    job_pod_security_level,
    pod_security_version,
)
from ..workloads.job_namespaces import JobNamespaceSpec
from ..workloads.mirror_config import cluster_ip_problems, daemon_json_volume
from ..workloads.rclone import replicate_problems
from ..workloads.runner_config import (
    AzureCacheSpec,
    CacheSpec,
    JobSpec,
    S3CacheSpec,
    WarmCapacity,
)
from .autoscaler import ClusterAutoscalerSettings
from .base import Problem, RawSecret, Secret, Section, SettingsError, describe_errors
from .cache import CacheAccessSettings, CacheSettings
from .cluster import EKS_MODES, KUBECONFIG_MODE, ClusterSettings
from .gitlab import GITLAB_API_TOKEN_KEY, GitlabSettings
from .isolation import IsolationSettings
from .mirror import DOCKER_HUB_TOKEN_KEY, RegistryMirrorSettings, default_cluster_ip
from .monitoring import MonitoringSettings
from .network import NetworkSettings
from .pools import POOLS_KEY, PoolSettings, parse_pools
from .runner import RunnerSettings
from .site import ANY_SITE_TAG, SiteSettings, site_tag

_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
RUNNER_TOKEN_PREFIX = "glrt-"
PAUSE_POD_PRIORITY_CLASS = "gitlab-runner-fleet-pause-pods"
IN_CLUSTER_BUCKET = "runner-cache"
"""The PriorityClass the stack creates for every pool's pause pods."""

SectionT = TypeVar("SectionT", bound=Section)

_SECTIONS: tuple[type[Section], ...] = (
    ClusterSettings,
    ClusterAutoscalerSettings,
    NetworkSettings,
    CacheSettings,
    CacheAccessSettings,
    RunnerSettings,
    GitlabSettings,
    IsolationSettings,
    RegistryMirrorSettings,
    SiteSettings,
    MonitoringSettings,
)
TAGS_KEY = "tags"
RUNNER_TOKENS_KEY = "runnerTokens"
CACHE_CREDENTIALS_KEY = "cacheCredentials"
KUBECONFIG_KEY = "kubeconfig"
CONFIG_KEYS = (*(section.config_key for section in _SECTIONS), POOLS_KEY, TAGS_KEY)
SECRET_KEYS = (
    RUNNER_TOKENS_KEY,
    CACHE_CREDENTIALS_KEY,
    KUBECONFIG_KEY,
    GITLAB_API_TOKEN_KEY,
    DOCKER_HUB_TOKEN_KEY,
)
# Keys of the single-pool settings, and where their values live now.
MOVED_KEYS = {
    "buildNodes": "moved into a pool: put its keys into an entry of `pools` (see README, "
    "'Migrating to pools'); labels and taints default to ones derived from the pool name",
    "warmCapacity": "moved into a pool as `pools[i].warmCapacity` with `idleJobs` (whole jobs) "
    "instead of `idleCount` (see README, 'Migrating to pools')",
    "runnerToken": "moved to one token per pool: `pulumi config rm runnerToken`, then "
    "`pulumi config set --secret --path 'runnerTokens.<pool>' glrt-...`",
}
# The secret keys each cache type needs in `cacheCredentials`, as alternatives.
CACHE_CREDENTIAL_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    "s3": (),
    "s3Compatible": (("accessKey", "secretKey"),),
    "gcs": (("credentialsJson",), ("accessId", "privateKey")),
    "azure": (("accountName", "accountKey"),),
    "inCluster": (),
}


@dataclass(frozen=True)
class FleetSettings:
    """A stack's validated configuration: the one source every component reads from."""

    project: str
    stack: str
    aws_region: str
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
    pools: tuple[PoolSettings, ...]
    runner_tokens: Mapping[str, Secret]
    """Each pool's hand-made runner token; empty when `gitlab.createRunners` creates them."""
    gitlab_api_token: Secret | None = None
    docker_hub_token: Secret | None = None
    cache_credentials: Mapping[str, Secret] = field(default_factory=dict)
    kubeconfig: Secret | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def on_eks(self) -> bool:
        """Whether the cluster is EKS, so AWS build capacity and IRSA are managed."""
        return self.cluster.on_eks

    def cache_bucket_name(self, account_id: str) -> str:
        """The explicit bucket name, or the one derived from project, stack and account."""
        return self.cache.bucket_name or derived_bucket_name(self.project, self.stack, account_id)

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
    def pool_node_labels(self) -> list[dict[str, str]]:
        """Every pool's node labels: what system pods keep off and autoscaled groups carry."""
        return [pool.node_labels for pool in self.pools]

    def runner_tags(self, pool: PoolSettings) -> list[str]:
        """The GitLab runner tags of a pool's runner: its own, and its site's."""
        if self.site.name is None:
            return list(pool.tags)
        extra = [site_tag(self.site.name), ANY_SITE_TAG]
        return [*pool.tags, *(tag for tag in extra if tag not in pool.tags)]

    @property
    def cache_bucket(self) -> str:
        """The bucket the runners' cache objects live in, for cache types that name one here."""
        if self.cache.type == "inCluster":
            return self.cache.bucket_name or IN_CLUSTER_BUCKET
        return str(self.cache.bucket_name)

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

    def mirror_cluster_ip(self, service_cidr: str | None) -> str | None:
        """The mirror's fixed ClusterIP for containerd on the nodes, or None (dind only).

        Raises `SettingsError` when an explicit address cannot serve as one.
        """
        mirror = self.registry_mirror
        if not mirror.enabled:
            return None
        address = mirror.cluster_ip or (default_cluster_ip(service_cidr) if service_cidr else None)
        if address and service_cidr and (problems := cluster_ip_problems(address, service_cidr)):
            raise SettingsError(
                self.stack, [Problem("registryMirror.clusterIp", "; ".join(problems))]
            )
        return address

    @property
    def mirror_storage_kind(self) -> str:
        """Where the mirror keeps layers: the cache's S3(-compatible) bucket, or local disk."""
        if self.registry_mirror.storage:
            return self.registry_mirror.storage
        own_bucket = self.cache.type in ("s3", "s3Compatible") and not self.site.is_edge
        return "s3" if own_bucket else "filesystem"

    @property
    def creates_cache_bucket(self) -> bool:
        """Whether this stack creates the S3 cache bucket (an edge uses its hub's)."""
        return self.cache.type == "s3" and not self.site.is_edge

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
        if ceiling := pool.overwrite_ceiling:
            spec["overwrite_ceiling"] = {"cpu": ceiling.cpu, "memory": ceiling.memory}
        if runner.allowed_images is not None:
            spec["allowed_images"] = list(runner.allowed_images)
        if runner.allowed_services is not None:
            spec["allowed_services"] = list(runner.allowed_services)
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

    def runner_cache_spec(
        self, bucket_name: str | None = None, bucket_region: str | None = None
    ) -> CacheSpec:
        """`[runners.cache]`; for `s3` pass the name and region of the bucket CacheBucket made."""
        cache = self.cache
        if cache.type == "gcs":
            return {
                "Type": "gcs",
                "Path": cache.prefix,
                "Shared": cache.shared,
                "gcs": {"BucketName": str(cache.bucket_name)},
            }
        if cache.type == "azure":
            azure: AzureCacheSpec = {"ContainerName": str(cache.container_name)}
            if cache.storage_domain:
                azure["StorageDomain"] = cache.storage_domain
            return {"Type": "azure", "Path": cache.prefix, "Shared": cache.shared, "azure": azure}
        s3: S3CacheSpec
        if cache.type == "s3Compatible":
            # Insecure is written even when false, so the template always states the scheme.
            s3 = {
                "ServerAddress": str(cache.server_host),
                "BucketName": str(cache.bucket_name),
                "AuthenticationType": "access-key",
                "Insecure": cache.insecure,
            }
            if cache.bucket_location:
                s3["BucketLocation"] = cache.bucket_location
            if cache.path_style is not None:
                s3["PathStyle"] = cache.path_style
        else:
            s3 = {
                "BucketName": str(bucket_name),
                "BucketLocation": str(bucket_region),
                "AuthenticationType": "iam" if self.cache_access.mode == "irsa" else "access-key",
                # The runner defaults DualStack to true (cache/cacheconfig/cacheconfig.go, runner
                # 19.3) and then signs s3.dualstack.<region> URLs, which S3 gateway endpoints do
                # not serve: cache traffic would go through the NAT gateway.
                "DualStack": cache.dual_stack,
            }
            if cache.kms_key_arn:
                s3["ServerSideEncryption"] = "KMS"
                s3["ServerSideEncryptionKeyID"] = cache.kms_key_arn
        return {"Type": "s3", "Path": cache.prefix, "Shared": cache.shared, "s3": s3}


def parse_settings(
    raw: Mapping[str, Any],
    *,
    project: str,
    stack: str,
    aws_region: str | None,
    secrets: Mapping[str, RawSecret] | None = None,
) -> FleetSettings:
    """Validate raw config values (keyed by config key) into `FleetSettings`.

    `secrets` holds the secret config values (`runnerTokens`, `cacheCredentials`,
    `kubeconfig`). Raises `SettingsError` listing every problem found, never a partial model;
    secret values never appear in a message.
    """
    secrets = secrets or {}
    problems = [Problem(key, message) for key, message in MOVED_KEYS.items() if key in raw]
    problems += [Problem(key, message) for key, message in MOVED_KEYS.items() if key in secrets]
    sections: dict[str, Section] = {}
    for section_type in _SECTIONS:
        key = section_type.config_key
        try:
            section = section_type.model_validate(raw.get(key) or {})
        except ValidationError as error:
            problems.extend(describe_errors(key, section_type, error))
            continue
        sections[key] = section
        problems.extend(section.cross_field_problems())
    pools, pool_problems = parse_pools(raw.get(POOLS_KEY))
    problems.extend(pool_problems)

    tags, tag_problems = _parse_tags(raw.get(TAGS_KEY) or {})
    problems.extend(tag_problems)
    uses_aws = _uses_aws(sections)
    if aws_region is None and uses_aws:
        problems.append(
            Problem("aws:region", "required; set it with `pulumi config set aws:region <region>`")
        )
    elif aws_region is not None and not _AWS_REGION.match(aws_region):
        problems.append(
            Problem("aws:region", f"must be an AWS region like eu-west-1, got {aws_region!r}")
        )

    runner_tokens: dict[str, Secret] = {}
    gitlab_api_token: Secret | None = None
    gitlab = sections.get(GitlabSettings.config_key)
    if isinstance(gitlab, GitlabSettings) and gitlab.create_runners:
        gitlab_api_token, api_token_problems = _parse_gitlab_api_token(
            secrets.get(GITLAB_API_TOKEN_KEY), secrets.get(RUNNER_TOKENS_KEY)
        )
        problems.extend(api_token_problems)
    elif not pool_problems:
        runner_tokens, token_problems = _parse_runner_tokens(
            [pool.name for pool in pools], secrets.get(RUNNER_TOKENS_KEY)
        )
        problems.extend(token_problems)
    cache_credentials: dict[str, Secret] = {}
    if CacheSettings.config_key in sections:
        cache_type = _section(sections, CacheSettings).type
        cache_credentials, credential_problems = _parse_cache_credentials(
            cache_type, secrets.get(CACHE_CREDENTIALS_KEY)
        )
        problems.extend(credential_problems)
    docker_hub_token, hub_token_problems = _parse_docker_hub_token(
        sections, secrets.get(DOCKER_HUB_TOKEN_KEY)
    )
    problems.extend(hub_token_problems)
    kubeconfig, kubeconfig_problems = _parse_kubeconfig(sections, secrets.get(KUBECONFIG_KEY))
    problems.extend(kubeconfig_problems)
    if len(sections) == len(_SECTIONS) and not pool_problems:
        problems.extend(_cross_section_problems(sections, pools, raw.get(CacheSettings.config_key)))
    if problems:
        raise SettingsError(stack, problems)
    return FleetSettings(
        project=project,
        stack=stack,
        aws_region=aws_region or "",
        cluster=_section(sections, ClusterSettings),
        cluster_autoscaler=_section(sections, ClusterAutoscalerSettings),
        network=_section(sections, NetworkSettings),
        cache=_section(sections, CacheSettings),
        cache_access=_section(sections, CacheAccessSettings),
        runner=_section(sections, RunnerSettings),
        gitlab=_section(sections, GitlabSettings),
        isolation=_section(sections, IsolationSettings),
        pools=tuple(pools),
        runner_tokens=runner_tokens,
        gitlab_api_token=gitlab_api_token,
        docker_hub_token=docker_hub_token,
        registry_mirror=_section(sections, RegistryMirrorSettings),
        site=_section(sections, SiteSettings),
        monitoring=_section(sections, MonitoringSettings),
        cache_credentials=cache_credentials,
        kubeconfig=kubeconfig,
        tags=tags,
        warnings=tuple(filter(None, (pool.unknown_shape_warning for pool in pools))),
    )


def load_settings() -> FleetSettings:
    """Read and validate the current stack's configuration from Pulumi config."""
    config = pulumi.Config()
    stack = pulumi.get_stack()
    raw: dict[str, Any] = {}
    problems: list[Problem] = []
    for key in (*CONFIG_KEYS, *MOVED_KEYS):
        text = config.get(key)
        if text is None:
            continue
        try:
            raw[key] = json.loads(text)
        except json.JSONDecodeError:
            shape = "a list of pools" if key == POOLS_KEY else "an object of keys"
            problems.append(Problem(key, f"must be {shape}, got {text!r}"))
    if problems:
        raise SettingsError(stack, problems)
    secrets = {}
    for key in SECRET_KEYS:
        full_key = f"{pulumi.get_project()}:{key}"
        value = pulumi.runtime.get_config(full_key)
        if value is not None:
            secrets[key] = RawSecret(str(value), pulumi.runtime.is_config_secret(full_key))
    return parse_settings(
        raw,
        project=pulumi.get_project(),
        stack=stack,
        aws_region=pulumi.Config("aws").get("region"),
        secrets=secrets,
    )


def _section(sections: Mapping[str, Section], section_type: type[SectionT]) -> SectionT:
    section = sections[section_type.config_key]
    assert isinstance(section, section_type)
    return section


def _uses_aws(sections: Mapping[str, Section]) -> bool:
    cluster = sections.get(ClusterSettings.config_key)
    cache = sections.get(CacheSettings.config_key)
    on_eks = not isinstance(cluster, ClusterSettings) or cluster.mode in EKS_MODES
    return on_eks or (_stack_owns_cache(sections) and cache_type_of(cache) == "s3")


def cache_type_of(cache: Section | None) -> str | None:
    return cache.type if isinstance(cache, CacheSettings) else None


def _stack_owns_cache(sections: Mapping[str, Section]) -> bool:
    """An edge site's runners use the edge cache; its own cache section is not used."""
    site = sections.get(SiteSettings.config_key)
    return not (isinstance(site, SiteSettings) and site.is_edge)


def _parse_kubeconfig(
    sections: Mapping[str, Section], raw: RawSecret | None
) -> tuple[Secret | None, list[Problem]]:
    cluster = sections.get(ClusterSettings.config_key)
    if not isinstance(cluster, ClusterSettings) or (
        raw is None and cluster.mode != KUBECONFIG_MODE
    ):
        return None, []
    set_it = "`pulumi config set --secret kubeconfig < path/to/kubeconfig`"
    if cluster.mode != KUBECONFIG_MODE:
        message = "is only used when cluster.mode is kubeconfig"
    elif raw is None:
        message = f"required when cluster.mode is kubeconfig; {set_it}"
    elif not raw.stored_as_secret:
        message = f"is stored in plain text; set it with {set_it}"
    elif "clusters" not in raw.value:
        message = "must be the contents of a kubeconfig file"
    else:
        return Secret(raw.value), []
    return None, [Problem(KUBECONFIG_KEY, message)]


def _kubeconfig_mode_problems(
    sections: Mapping[str, Section], pools: list[PoolSettings]
) -> list[Problem]:
    autoscaler = _section(sections, ClusterAutoscalerSettings)
    network = _section(sections, NetworkSettings)
    cache = _section(sections, CacheSettings)
    access = _section(sections, CacheAccessSettings)
    eks_only = "is only used on EKS (cluster.mode create or existing); remove it"
    node_group_keys = set(PoolSettings.model_fields) - _POOL_KEYS_OFF_EKS
    problems = [
        Problem(f"{POOLS_KEY}[{index}].{to_camel(key)}", eks_only)
        for index, pool in enumerate(pools)
        for key in sorted(pool.model_fields_set & node_group_keys)
    ]
    if autoscaler.enabled and "enabled" in autoscaler.model_fields_set:
        problems.append(Problem("clusterAutoscaler.enabled", eks_only))
    if network.s3_gateway_endpoint:
        problems.append(Problem("network.s3GatewayEndpoint", eks_only))
    if cache.type == "s3" and access.mode == "irsa" and _stack_owns_cache(sections):
        problems.append(
            Problem(
                "cacheAccess.mode",
                "irsa needs an EKS cluster; set cacheAccess.mode: accessKey for an S3 cache, or "
                "use cache.type s3Compatible, gcs or azure",
            )
        )
    return problems


# What a pool means on any cluster; the rest shapes its EKS node group.
_POOL_KEYS_OFF_EKS = {
    "name", "labels", "taints", "tags", "run_untagged", "concurrent", "build_mode",
    "build_resources", "helper_resources", "service_resources", "overwrite_max_allowed",
    "ephemeral_storage_request", "warm_capacity",
}  # fmt: skip


def _cross_section_problems(
    sections: Mapping[str, Section], pools: list[PoolSettings], raw_cache: Any
) -> list[Problem]:
    cluster = _section(sections, ClusterSettings)
    network = _section(sections, NetworkSettings)
    problems = []
    if cluster.mode == KUBECONFIG_MODE:
        problems.extend(_kubeconfig_mode_problems(sections, pools))
    problems.extend(_gitlab_problems(sections, pools))
    problems.extend(_mirror_problems(sections))
    problems.extend(_site_problems(sections, raw_cache_set=bool(raw_cache)))
    problems.extend(_isolation_problems(sections, pools))
    if network.route_table_ids and network.s3_gateway_endpoint is False:
        problems.append(
            Problem(
                "network.routeTableIds",
                "is only used with network.s3GatewayEndpoint; remove one of them",
            )
        )
    return problems


def _gitlab_problems(sections: Mapping[str, Section], pools: list[PoolSettings]) -> list[Problem]:
    gitlab = _section(sections, GitlabSettings)
    if not gitlab.create_runners:
        used = {"create_runners", "runner_type", "group_id", "project_id", "rotate_token_days"}
        return [
            Problem(f"gitlab.{to_camel(key)}", "is only used with gitlab.createRunners: true")
            for key in sorted(gitlab.model_fields_set & used - {"create_runners"})
        ]
    grace = _section(sections, RunnerSettings).termination_grace_period_seconds
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


def _site_problems(sections: Mapping[str, Section], *, raw_cache_set: bool) -> list[Problem]:
    site = _section(sections, SiteSettings)
    cache = _section(sections, CacheSettings)
    runner = _section(sections, RunnerSettings)
    if site.name is None:
        return []
    problems = []
    if site.is_edge and raw_cache_set:
        problems.append(
            Problem(
                "cache",
                "is not used on an edge site: its runners use the edge cache, and bucket and "
                "prefix come from the hub (site.hubStack); remove the cache section",
            )
        )
    if site.is_hub and cache.type != "s3":
        problems.append(
            Problem("site.role", f"a hub needs cache.type s3, got {cache.type}: edges read it")
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


def _mirror_problems(sections: Mapping[str, Section]) -> list[Problem]:
    mirror = _section(sections, RegistryMirrorSettings)
    cache = _section(sections, CacheSettings)
    problems = []
    if mirror.storage == "s3" and cache.type not in ("s3", "s3Compatible"):
        problems.append(
            Problem(
                "registryMirror.storage",
                "s3 keeps layers in the cache's bucket, which needs cache.type s3 or "
                f"s3Compatible (got {cache.type}); use filesystem",
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


def _parse_docker_hub_token(
    sections: Mapping[str, Section], raw: RawSecret | None
) -> tuple[Secret | None, list[Problem]]:
    mirror = sections.get(RegistryMirrorSettings.config_key)
    username = mirror.docker_hub_username if isinstance(mirror, RegistryMirrorSettings) else None
    set_it = f"`pulumi config set --secret {DOCKER_HUB_TOKEN_KEY} <read-only access token>`"
    if raw is None:
        if username is None:
            return None, []
        message = f"required with registryMirror.dockerHubUsername; set it with {set_it}"
    elif username is None:
        message = "is only used with registryMirror.dockerHubUsername; set both or neither"
    elif not raw.stored_as_secret:
        message = f"is stored in plain text; set it with {set_it}"
    else:
        return Secret(raw.value), []
    return None, [Problem(DOCKER_HUB_TOKEN_KEY, message)]


def _isolation_problems(
    sections: Mapping[str, Section], pools: list[PoolSettings]
) -> list[Problem]:
    isolation = _section(sections, IsolationSettings)
    runner = _section(sections, RunnerSettings)
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
    return problems


def _parse_gitlab_api_token(
    raw: RawSecret | None, runner_tokens: RawSecret | None
) -> tuple[Secret | None, list[Problem]]:
    set_it = f"`pulumi config set --secret {GITLAB_API_TOKEN_KEY} <token>`"
    problems = []
    if runner_tokens is not None:
        problems.append(
            Problem(
                RUNNER_TOKENS_KEY,
                "is not used with gitlab.createRunners: true (the stack creates the runners and "
                f"their tokens); `pulumi config rm {RUNNER_TOKENS_KEY}`",
            )
        )
    if raw is None:
        problems.append(
            Problem(
                GITLAB_API_TOKEN_KEY,
                "required with gitlab.createRunners: true: a GitLab access token with the "
                f"create_runner, manage_runner and read_user scopes, set with {set_it}",
            )
        )
    elif not raw.stored_as_secret:
        problems.append(
            Problem(GITLAB_API_TOKEN_KEY, f"is stored in plain text; set it with {set_it}")
        )
    return (None if problems or raw is None else Secret(raw.value)), problems


def _parse_runner_tokens(
    pool_names: list[str], raw: RawSecret | None
) -> tuple[dict[str, Secret], list[Problem]]:
    create_runner = (
        "create each pool's runner in GitLab (Settings > CI/CD > Runners > New project runner, "
        "or the POST /user/runners API) and store its glrt- authentication token with "
        "`pulumi config set --secret --path 'runnerTokens.<pool>' <token>`"
    )
    if raw is None:
        return {}, [Problem(RUNNER_TOKENS_KEY, f"required; {create_runner}")]
    if not raw.stored_as_secret:
        return {}, [
            Problem(
                RUNNER_TOKENS_KEY,
                "is stored in plain text; remove it from the stack file and set each token with "
                "`pulumi config set --secret --path 'runnerTokens.<pool>' <token>`",
            )
        ]
    try:
        values = json.loads(raw.value)
    except json.JSONDecodeError:
        values = None
    if not isinstance(values, dict):
        return {}, [
            Problem(
                RUNNER_TOKENS_KEY, f"must be an object of pool names to tokens; {create_runner}"
            )
        ]
    problems = []
    for name in pool_names:
        token = values.get(name)
        if not isinstance(token, str):
            problems.append(Problem(f"{RUNNER_TOKENS_KEY}.{name}", f"required; {create_runner}"))
        elif not token.startswith(RUNNER_TOKEN_PREFIX):
            problems.append(
                Problem(
                    f"{RUNNER_TOKENS_KEY}.{name}",
                    "is not a runner authentication token (glrt-...). Registration tokens are "
                    "deprecated, disabled by default since GitLab 17.0 and removed in 20.0; "
                    f"{create_runner}",
                )
            )
    problems += [
        Problem(f"{RUNNER_TOKENS_KEY}.{name}", f"names no pool (pools: {', '.join(pool_names)})")
        for name in values
        if name not in pool_names
    ]
    if problems:
        return {}, problems
    return {name: Secret(values[name]) for name in pool_names}, []


def _parse_cache_credentials(
    cache_type: str, raw: RawSecret | None
) -> tuple[dict[str, Secret], list[Problem]]:
    alternatives = CACHE_CREDENTIAL_KEYS[cache_type]
    how = " or ".join("{" + ", ".join(keys) + "}" for keys in alternatives)
    set_it = f"`pulumi config set --secret --path {CACHE_CREDENTIALS_KEY}.<name> <value>`"
    if raw is None or not alternatives:
        if raw is None and alternatives:
            message = f"required when cache.type is {cache_type}: {how}, set with {set_it}"
        elif raw is not None:
            message = f"is not used when cache.type is {cache_type}; remove it"
        else:
            return {}, []
        return {}, [Problem(CACHE_CREDENTIALS_KEY, message)]
    if not raw.stored_as_secret:
        return {}, [
            Problem(CACHE_CREDENTIALS_KEY, f"is stored in plain text; set each value with {set_it}")
        ]
    try:
        values = json.loads(raw.value)
    except json.JSONDecodeError:
        values = None
    if isinstance(values, dict) and all(isinstance(v, str) for v in values.values()):
        for keys in alternatives:
            if set(values) == set(keys):
                return {name: Secret(values[name]) for name in keys}, []
        got = f", got keys {sorted(values)}"
    else:
        got = ""
    message = f"must hold exactly {how} when cache.type is {cache_type}{got}"
    return {}, [Problem(CACHE_CREDENTIALS_KEY, message)]


def _parse_tags(raw: Any) -> tuple[dict[str, str], list[Problem]]:
    if not isinstance(raw, Mapping):
        return {}, [Problem(TAGS_KEY, f"must be an object of tag keys to values, got {raw!r}")]
    problems = []
    for key, value in raw.items():
        path = f"{TAGS_KEY}.{key}"
        if key in ALLOCATION_TAG_KEYS:
            problems.append(Problem(path, "is set by the project itself; drop it or rename it"))
        elif key.lower().startswith("aws:") or not 1 <= len(key) <= 128:
            problems.append(
                Problem(path, "tag keys must be 1-128 characters and not start with 'aws:'")
            )
        if not isinstance(value, str) or len(value) > 256:
            problems.append(
                Problem(path, f"must be a string of at most 256 characters, got {value!r}")
            )
    return {str(key): str(value) for key, value in raw.items()}, problems


def reference_table() -> str:
    """The README's config reference as a Markdown table, generated from the model itself."""
    rows = [
        "| key | default | meaning |",
        "| --- | --- | --- |",
        "| `aws:region` | (required) | AWS region of the stack's resources. |",
    ]
    for section_type in _SECTIONS:
        rows.extend(_reference_rows(section_type.config_key, section_type))
    rows.extend(_reference_rows(f"{POOLS_KEY}[i]", PoolSettings))
    rows.append(
        f"| `{TAGS_KEY}` | `{{}}` | Extra cost-allocation tags on every AWS resource; "
        f"{', '.join(ALLOCATION_TAG_KEYS)} are set automatically. |"
    )
    return "\n".join(rows)


def _reference_rows(prefix: str, model: type[Any]) -> list[str]:
    rows = []
    for name, info in model.model_fields.items():
        default = info.get_default(call_default_factory=True)
        if info.is_required():
            default = "(required)"
        elif default is None:
            default = "(none)"
        else:
            default = f"`{json.dumps(to_jsonable_python(default), separators=(', ', ': '))}`"
        rows.append(f"| `{prefix}.{info.alias or name}` | {default} | {info.description} |")
    return rows
