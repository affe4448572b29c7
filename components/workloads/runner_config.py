"""The runner's config.toml, built from typed specs and written with a TOML library.

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
# cluster-autoscaler would otherwise drain a node (and kill the job) to consolidate capacity.
SAFE_TO_EVICT_ANNOTATION = "cluster-autoscaler.kubernetes.io/safe-to-evict"
METRICS_PORT = 9252
DEFAULT_NAMESPACE = "gitlab-runner"
DEFAULT_SERVICE_ACCOUNT = "gitlab-runner"
DEFAULT_CONCURRENT = 10
DEFAULT_CHECK_INTERVAL = 3
# Long enough for running jobs to finish when the manager pod is replaced.
DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS = 3600
RUNNER_DEFAULT_PRIORITY_CLASS = "gitlab-runner-idle-capacity"
"""With this name (or none) the runner creates the pause pods' PriorityClass itself."""


class ContainerResources(TypedDict, total=False):
    """Kubernetes quantities for one kind of container; unset keys are left to the cluster."""

    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str


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


class BuildTaint(TypedDict):
    """A build node taint in Kubernetes casing."""

    key: str
    value: str
    effect: str


class JobSpec(TypedDict):
    """How job pods run: the `[runners.kubernetes]` table and the runner's environment."""

    namespace: str
    image: str
    privileged: bool
    request_concurrency: int
    poll_interval: int
    poll_timeout: int
    build: ContainerResources
    helper: ContainerResources
    service: ContainerResources
    build_labels: dict[str, str]
    build_taints: list[BuildTaint]
    environment: list[str]
    """Extra `KEY=value` job variables (cache speed settings and the like)."""
    warm_capacity: NotRequired[WarmCapacity]


class S3CacheSpec(TypedDict, total=False):
    """`[runners.cache.s3]`: AWS S3 (IAM or access keys) or an S3-compatible endpoint."""

    BucketName: str
    BucketLocation: str
    AuthenticationType: str
    ServerAddress: str
    Insecure: bool
    PathStyle: bool
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


def node_affinity(build_labels: Mapping[str, str]) -> dict[str, Any]:
    """Require every build label; prefer spot capacity (the label EKS sets on spot nodes)."""
    return {
        "required_during_scheduling_ignored_during_execution": {
            "node_selector_terms": [
                {
                    "match_expressions": [
                        {"key": key, "operator": "In", "values": [value]}
                        for key, value in build_labels.items()
                    ]
                }
            ]
        },
        "preferred_during_scheduling_ignored_during_execution": [
            {
                "weight": 100,
                "preference": {
                    "match_expressions": [
                        {"key": CAPACITY_TYPE_LABEL, "operator": "In", "values": [SPOT]}
                    ]
                },
            }
        ],
    }


def _resources(prefix: str, resources: ContainerResources) -> dict[str, str]:
    return {f"{prefix}{key}": str(value) for key, value in resources.items() if value}


def kubernetes_section(job: JobSpec) -> dict[str, Any]:
    """The `[runners.kubernetes]` table."""
    section: dict[str, Any] = {
        "namespace": job["namespace"],
        "image": job["image"],
        "privileged": job["privileged"],
        "poll_interval": job["poll_interval"],
        "poll_timeout": job["poll_timeout"],
        **_resources("", job["build"]),
        **_resources("helper_", job["helper"]),
        **_resources("service_", job["service"]),
        # Pause pods copy the node selector and tolerations, not the affinity: with the selector
        # they warm the build nodes rather than whatever node has room.
        "node_selector": dict(job["build_labels"]),
        "node_tolerations": tolerations(job["build_taints"]),
        "affinity": {"node_affinity": node_affinity(job["build_labels"])},
        "pod_annotations": {SAFE_TO_EVICT_ANNOTATION: "false"},
        "volumes": {
            "empty_dir": [
                {"name": "docker-certs", "mount_path": DIND_CERTS_MOUNT, "medium": "Memory"}
            ]
        },
    }
    if warm := job.get("warm_capacity"):
        section["autoscaler"] = {
            "max_pause_pods": warm["max_pause_pods"],
            "pause_pod_priority_class_name": warm["priority_class_name"],
            "policy": [dict(policy) for policy in warm["policies"]],
        }
    return section


def runner_entry(job: JobSpec, cache: CacheSpec) -> dict[str, Any]:
    """The one `[[runners]]` entry the chart registers (no URL or token: the chart sets those)."""
    return {
        "executor": "kubernetes",
        "request_concurrency": job["request_concurrency"],
        "environment": [*DIND_ENVIRONMENT, *job["environment"]],
        "kubernetes": kubernetes_section(job),
        "cache": dict(cache),
    }


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
