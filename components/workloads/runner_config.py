"""A pool's runner config.toml, built from typed specs and written with a TOML library.

Pure functions: no Pulumi runtime needed. Every key is a config.toml key of GitLab Runner
19.3 (`common/config.go`, `cache/cacheconfig/cacheconfig.go`).

The chart (`runners.config`) takes one `[[runners]]` entry as a template and merges it at
registration; global keys (`concurrent`, `check_interval`, `listen_address`) come from Helm
values instead. `effective_config` puts both together for reviewers and the config checksum.
"""

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict

import tomli_w

from ..build_nodes import CAPACITY_TYPE_LABEL, SPOT

# Docker-in-Docker over TLS: the job talks to the `docker` service on 2376 with client certs
# that dind writes to /certs/client, a volume shared by the build and service containers.
DIND_CERTS_MOUNT = "/certs/client"
DIND_ENVIRONMENT = (
    "DOCKER_HOST=tcp://docker:2376",
    "DOCKER_TLS_CERTDIR=/certs",
    "DOCKER_TLS_VERIFY=1",
    f"DOCKER_CERT_PATH={DIND_CERTS_MOUNT}",
)
# The only services a `dind` pool starts, all privileged. The runner matches `allowed_services`
# with doublestar globs, where `*` never crosses a `/`, against the service name after variable
# expansion and without normalising it (common/allowed_images.go, common/build.go): Docker
# Hub's official image is spelled three ways.
DIND_IMAGE = "docker"
DIND_TAGS = ("dind", "*-dind")
DOCKER_HUB_PATHS = ("", "docker.io/", "docker.io/library/")
DIND_SERVICES = tuple(f"{path}{DIND_IMAGE}:{tag}" for path in DOCKER_HUB_PATHS for tag in DIND_TAGS)
GLOB_CHARACTERS = frozenset("*?[]{}\\")
# cluster-autoscaler would otherwise drain a node (and kill the job) to consolidate capacity.
SAFE_TO_EVICT_ANNOTATION = "cluster-autoscaler.kubernetes.io/safe-to-evict"
METRICS_PORT = 9252
DEFAULT_CONCURRENT = 10
DEFAULT_CHECK_INTERVAL = 3
DEFAULT_OUTPUT_LIMIT_KIB = 16384
JOB_POD_TERMINATION_GRACE_SECONDS = 30
"""A job pod's grace period: the runner sets `pod_termination_grace_period_seconds` as is
(executors/kubernetes/kubernetes.go) and the fleet leaves it unset, so Kubernetes' default."""
RUNNER_DEFAULT_PRIORITY_CLASS = "gitlab-runner-idle-capacity"
"""With this name (or none) the runner creates the pause pods' PriorityClass itself."""


class ContainerResources(TypedDict, total=False):
    """Kubernetes quantities for one kind of container; unset keys are left to the cluster."""

    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str


class OverwriteCeiling(TypedDict):
    """How far a job may raise CPU and memory of its build and service containers."""

    cpu: str
    """Ceiling of the CPU requests."""
    memory: str
    """Ceiling of the memory requests."""
    cpu_limit: NotRequired[str]
    """Ceiling of the CPU limits. Default: `cpu`."""
    memory_limit: NotRequired[str]
    """Ceiling of the memory limits. Default: `memory`."""


class WarmCapacityPolicy(TypedDict):
    """One `[[runners.kubernetes.autoscaler.policy]]`: idle pause pods during some periods."""

    periods: list[str]
    timezone: str
    idle_count: int
    idle_time: str


class WarmCapacity(TypedDict):
    """Pause pods that keep build nodes warm (`[runners.kubernetes.autoscaler]`)."""

    max_pause_pods: int
    priority_class_name: str
    policies: list[WarmCapacityPolicy]


class JobQueuingDuration(TypedDict):
    """One `[[runners.monitoring.job_queuing_durations]]`: how long a job may wait in GitLab's
    queue during some periods before the runner counts it as waiting too long."""

    periods: list[str]
    """5-field cron periods (minute hour day-of-month month weekday), as the pool writes them."""
    timezone: str
    threshold: str
    """Go duration, above 0."""


class BuildTaint(TypedDict):
    """A build node taint in Kubernetes casing."""

    key: str
    value: str
    effect: str


class ConfigMapVolume(TypedDict):
    """A `[[runners.kubernetes.volumes.config_map]]` entry (e.g. dind's daemon.json)."""

    name: str
    mount_path: str
    sub_path: NotRequired[str]
    read_only: NotRequired[bool]
    items: NotRequired[dict[str, str]]


class JobSpec(TypedDict):
    """How one pool's job pods run: `[runners.kubernetes]` and the runner-level job policy."""

    namespace: str
    """Namespace of the job pods (not the manager's)."""
    image: str
    build_mode: str
    """`dind` (only dind services privileged) or `rootless` (nothing privileged)."""
    request_concurrency: int
    poll_interval: int
    poll_timeout: int
    build: ContainerResources
    helper: ContainerResources
    service: ContainerResources
    ephemeral_storage_request: str
    ephemeral_storage_max: str
    """Ceiling of `KUBERNETES_EPHEMERAL_STORAGE_REQUEST`: what one node offers."""
    node_selector: dict[str, str]
    """The pool's labels and `kubernetes.io/arch`."""
    build_taints: list[BuildTaint]
    pod_labels: dict[str, str]
    pod_annotations: NotRequired[dict[str, str]]
    """Annotations of the job pods besides cluster-autoscaler's safe-to-evict (e.g. Karpenter's
    do-not-disrupt); pause pods get none of them."""
    spot_node_label: NotRequired[dict[str, str]]
    """The label (one key and value) of spot nodes, which the job pods prefer. Default EKS's
    `eks.amazonaws.com/capacityType: SPOT`."""
    environment: list[str]
    """Extra `KEY=value` job variables (cache speed settings and the like)."""
    feature_flags: dict[str, bool]
    output_limit: int
    overwrite_ceiling: NotRequired[OverwriteCeiling]
    allowed_images: NotRequired[list[str]]
    allowed_services: NotRequired[list[str]]
    dind_registry_prefixes: NotRequired[list[str]]
    """Registry paths (GitLab's dependency proxy) `dind` pools also admit `docker:dind` from."""
    allow_privilege_escalation: NotRequired[bool]
    """`allowPrivilegeEscalation` of the build container. Default false."""
    allowed_pull_policies: NotRequired[list[str]]
    service_account: NotRequired[str]
    """Service account of the job pods (no token mounted, no IAM role)."""
    config_map_volumes: NotRequired[list[ConfigMapVolume]]
    warm_capacity: NotRequired[WarmCapacity]
    job_queuing_durations: NotRequired[list[JobQueuingDuration]]


class S3CacheSpec(TypedDict, total=False):
    """`[runners.cache.s3]`: AWS S3 (IAM or access keys) or an S3-compatible endpoint."""

    BucketName: str
    BucketLocation: str
    AuthenticationType: str
    ServerAddress: str
    Insecure: bool
    PathStyle: bool
    DualStack: bool
    ServerSideEncryption: str
    ServerSideEncryptionKeyID: str


class GcsCacheSpec(TypedDict):
    """`[runners.cache.gcs]`; credentials come from the cache Secret."""

    BucketName: str


class AzureCacheSpec(TypedDict, total=False):
    """`[runners.cache.azure]`; account name and key come from the cache Secret."""

    ContainerName: str
    StorageDomain: str


class CacheSpec(TypedDict):
    """`[runners.cache]` with the section of its type."""

    Type: str
    Path: str
    Shared: bool
    s3: NotRequired[S3CacheSpec]
    gcs: NotRequired[GcsCacheSpec]
    azure: NotRequired[AzureCacheSpec]


def tolerations(taints: Sequence[BuildTaint]) -> dict[str, str]:
    """`node_tolerations`: `"key=value"` (operator Equal) or `"key"` (Exists) to the effect."""
    return {
        (f"{taint['key']}={taint['value']}" if taint["value"] else taint["key"]): taint["effect"]
        for taint in taints
    }


def node_affinity(
    node_selector: Mapping[str, str], spot_node_label: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Require every selected label; prefer spot capacity (by default the label EKS sets on spot
    nodes)."""
    spot = spot_node_label or {CAPACITY_TYPE_LABEL: SPOT}
    return {
        "required_during_scheduling_ignored_during_execution": {
            "node_selector_terms": [
                {
                    "match_expressions": [
                        {"key": key, "operator": "In", "values": [value]}
                        for key, value in node_selector.items()
                    ]
                }
            ]
        },
        "preferred_during_scheduling_ignored_during_execution": [
            {
                "weight": 100,
                "preference": {
                    "match_expressions": [
                        {"key": key, "operator": "In", "values": [value]}
                        for key, value in spot.items()
                    ]
                },
            }
        ],
    }


def _resources(prefix: str, resources: ContainerResources) -> dict[str, str]:
    return {f"{prefix}{key}": str(value) for key, value in resources.items() if value}


def _overwrite_ceilings(ceiling: OverwriteCeiling) -> dict[str, str]:
    """`*_overwrite_max_allowed` for build and service CPU and memory, requests and limits.

    Unset, a job cannot change them with `KUBERNETES_*` variables at all
    (executors/kubernetes/overwrites.go, runner 19.3).
    """
    limits = {
        "cpu": ceiling.get("cpu_limit", ceiling["cpu"]),
        "memory": ceiling.get("memory_limit", ceiling["memory"]),
    }
    return {
        f"{prefix}{resource}_{kind}_overwrite_max_allowed": (
            limits[resource] if kind == "limit" else ceiling[resource]
        )
        for prefix in ("", "service_")
        for resource in ("cpu", "memory")
        for kind in ("request", "limit")
    }


def security_contexts(
    build_mode: str, *, allow_privilege_escalation: bool = False
) -> dict[str, Any]:
    """Privilege only where Docker-in-Docker needs it.

    `privileged` at `[runners.kubernetes]` would cover every container; each container's own
    security context wins over it (`GetContainerSecurityContext`, common/config.go, runner 19.3),
    so build and helper are never privileged and the helper never escalates, and services are
    privileged only in `dind` pools. The build container escalates (setuid `sudo`, rootless
    BuildKit's `newuidmap`) only where the pool allows it.
    """
    return {
        "privileged": False,
        "build_container_security_context": {
            "privileged": False,
            "allow_privilege_escalation": allow_privilege_escalation,
        },
        "helper_container_security_context": {
            "privileged": False,
            "allow_privilege_escalation": False,
        },
        "service_container_security_context": {"privileged": build_mode == "dind"},
    }


def registry_prefix_problems(prefix: str) -> list[str]:
    """Why `prefix` cannot stand before `docker:dind` in an allowed-services glob."""
    problems = []
    if not prefix or prefix != prefix.strip("/") or "://" in prefix:
        problems.append(
            "must be a registry path without scheme or leading/trailing '/', e.g. "
            f"gitlab.example.com:443/my-group/dependency_proxy/containers, got {prefix!r}"
        )
    if used := sorted(GLOB_CHARACTERS & set(prefix)):
        problems.append(
            f"must not hold glob characters ({' '.join(used)}): they would admit other "
            f"images as privileged services, got {prefix!r}"
        )
    if "$" in prefix:
        # The runner matches allowed_services as written, expanding only the image name
        # (common/allowed_images.go VerifyAllowedImage): a variable would never match.
        problems.append(
            "must be the expanded path, not a variable (the runner does not expand "
            "allowed_services): e.g. what $CI_DEPENDENCY_PROXY_GROUP_IMAGE_PREFIX expands to, "
            f"gitlab.example.com:443/my-group/dependency_proxy/containers, got {prefix!r}"
        )
    return problems


def dind_service_patterns(registry_prefixes: Sequence[str] = ()) -> list[str]:
    """The official dind image in every spelling Docker Hub accepts, and under each registry
    prefix (GitLab's dependency proxy); nothing else from those registries."""
    prefixed = [f"{prefix}/{DIND_IMAGE}:{tag}" for prefix in registry_prefixes for tag in DIND_TAGS]
    return [*DIND_SERVICES, *prefixed]


def allowed_services(job: JobSpec) -> list[str] | None:
    """Every service of a `dind` pool runs privileged, so dind is all it starts unless told."""
    extra = job.get("allowed_services")
    if job["build_mode"] == "dind":
        dind = dind_service_patterns(job.get("dind_registry_prefixes", []))
        return [*dind, *(s for s in extra or [] if s not in dind)]
    return extra


def kubernetes_section(job: JobSpec) -> dict[str, Any]:
    """The `[runners.kubernetes]` table."""
    dind = job["build_mode"] == "dind"
    section: dict[str, Any] = {
        "namespace": job["namespace"],
        "image": job["image"],
        **security_contexts(
            job["build_mode"],
            allow_privilege_escalation=job.get("allow_privilege_escalation", False),
        ),
        "poll_interval": job["poll_interval"],
        "poll_timeout": job["poll_timeout"],
        **_resources("", job["build"]),
        **_resources("helper_", job["helper"]),
        **_resources("service_", job["service"]),
        "ephemeral_storage_request": job["ephemeral_storage_request"],
        "ephemeral_storage_request_overwrite_max_allowed": job["ephemeral_storage_max"],
    }
    if ceiling := job.get("overwrite_ceiling"):
        section.update(_overwrite_ceilings(ceiling))
    for key in ("allowed_images", "allowed_pull_policies", "service_account"):
        if key in job:
            section[key] = job[key]
    if services := allowed_services(job):
        section["allowed_services"] = services
    if "service_account" in job:
        section["automount_service_account_token"] = False
    section.update(
        {
            # Pause pods copy the node selector and tolerations, not the affinity: with the
            # selector they warm this pool's nodes rather than whatever node has room.
            "node_selector": dict(job["node_selector"]),
            "node_tolerations": tolerations(job["build_taints"]),
            "affinity": {
                "node_affinity": node_affinity(job["node_selector"], job.get("spot_node_label"))
            },
            "pod_labels": dict(job["pod_labels"]),
            # Job pods only: pause pods get no annotations at all (executors/kubernetes/
            # autoscaler/provider.go, pause_pod_manager.go buildDeployment), so they stay
            # evictable and their nodes removable. No pod_annotations_overwrite_allowed: a job
            # cannot drop these with KUBERNETES_POD_ANNOTATIONS_* (overwrites.go).
            "pod_annotations": {
                SAFE_TO_EVICT_ANNOTATION: "false",
                **job.get("pod_annotations", {}),
            },
            # A PodDisruptionBudget per job pod: node drains (upgrades, consolidation) wait for
            # the job instead of evicting it (executors/kubernetes/kubernetes.go, runner 19.3).
            "pod_disruption_budget": True,
        }
    )
    volumes: dict[str, Any] = {}
    if dind:
        volumes["empty_dir"] = [
            {"name": "docker-certs", "mount_path": DIND_CERTS_MOUNT, "medium": "Memory"}
        ]
    if config_maps := job.get("config_map_volumes"):
        volumes["config_map"] = [dict(volume) for volume in config_maps]
    if volumes:
        section["volumes"] = volumes
    if warm := job.get("warm_capacity"):
        section["autoscaler"] = {
            "max_pause_pods": warm["max_pause_pods"],
            "pause_pod_priority_class_name": warm["priority_class_name"],
            "policy": [dict(policy) for policy in warm["policies"]],
        }
    return section


def runner_period(period: str) -> str:
    """A 5-field cron period as `job_queuing_durations` needs it: 7 fields, any second and year.

    The runner matches these periods with gorhill/cronexpr (helpers/timeperiod/period.go,
    runner 19.3), which reads 5 fields as "second 0" and counts a time as inside only within a
    second of the next match: a 5-field period would be active one second a minute.
    """
    return f"* {period} *"


def monitoring_section(durations: Sequence[JobQueuingDuration]) -> dict[str, Any]:
    """`[runners.monitoring]`; the last entry whose periods match wins (GetActiveConfiguration)."""
    return {
        "job_queuing_durations": [
            {
                "periods": [runner_period(period) for period in duration["periods"]],
                "timezone": duration["timezone"],
                "threshold": duration["threshold"],
            }
            for duration in durations
        ]
    }


def runner_entry(job: JobSpec, cache: CacheSpec) -> dict[str, Any]:
    """The one `[[runners]]` entry the chart registers (no URL or token: the chart sets those)."""
    dind_environment = list(DIND_ENVIRONMENT) if job["build_mode"] == "dind" else []
    entry: dict[str, Any] = {
        "executor": "kubernetes",
        "request_concurrency": job["request_concurrency"],
        "output_limit": job["output_limit"],
        "environment": [*dind_environment, *job["environment"]],
        # Flags here win over `FF_*` job variables; in `environment` a job could override them
        # (common/build_settings.go, runner 19.3).
        "feature_flags": dict(job["feature_flags"]),
        "kubernetes": kubernetes_section(job),
        "cache": dict(cache),
    }
    if durations := job.get("job_queuing_durations"):
        entry["monitoring"] = monitoring_section(durations)
    return entry


def template_toml(job: JobSpec, cache: CacheSpec) -> str:
    """The chart's `runners.config`: a config.toml template with exactly one `[[runners]]`."""
    return tomli_w.dumps({"runners": [runner_entry(job, cache)]})


def effective_config(
    *, concurrent: int, check_interval: int, job: JobSpec, cache: CacheSpec
) -> str:
    """The config.toml the manager ends up with (minus URL and token), for review."""
    return tomli_w.dumps(
        {
            "concurrent": concurrent,
            "check_interval": check_interval,
            "listen_address": f":{METRICS_PORT}",
            "runners": [runner_entry(job, cache)],
        }
    )


def config_checksum(config: str) -> str:
    """A short, stable fingerprint of a rendered config, for stack outputs and review."""
    return hashlib.sha256(config.encode()).hexdigest()
