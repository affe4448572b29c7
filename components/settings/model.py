"""One typed, validated model of a stack's whole configuration.

Stack files (`stacks/Pulumi.<stack>.yaml`) hold one object per section under the project's
namespace, e.g. `gitlab-runner-fleet:cache: {expirationDays: 7}`. `parse_settings` turns those
raw objects into `FleetSettings` or raises ONE `SettingsError` that lists every problem with
its config key path (the same path `pulumi config set --path` takes) and how to fix it.
`load_settings` reads the raw objects from Pulumi config; nothing else here needs Pulumi.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pulumi
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel
from pydantic_core import to_jsonable_python

from .aws.bucket_rules import DEFAULT_ACCESS_LOG_PREFIX
from .aws.cluster import DEFAULT_SYSTEM_INSTANCE_TYPES, DEFAULT_SYSTEM_NODE_COUNT
from .aws.cluster_autoscaler import DEFAULT_EXPANDER, DEFAULT_SCALE_DOWN_UNNEEDED_TIME, Expander
from .build_nodes import (
    DEFAULT_DISK_SIZE_GIB,
    MAX_TAINTS_PER_NODE_GROUP,
    Taint,
    mixed_shape_problem,
    unknown_shapes,
)
from .kubernetes_names import (
    NamespaceName,
    ObjectName,
    Quantity,
    ServiceAccountName,
    checked,
    label_key_problems,
    label_value_problems,
)
from .naming import ALLOCATION_TAG_KEYS, bucket_name_problems, derived_bucket_name
from .versions import SUPPORTED_KUBERNETES_VERSIONS
from .workloads.runner_config import (
    DEFAULT_CHECK_INTERVAL,
    DEFAULT_CONCURRENT,
    DEFAULT_NAMESPACE,
    DEFAULT_SERVICE_ACCOUNT,
    DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS,
    RUNNER_DEFAULT_PRIORITY_CLASS,
    AzureCacheSpec,
    CacheSpec,
    ContainerResources,
    JobSpec,
    S3CacheSpec,
)

_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$")
_IAM_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_EKS_CLUSTER_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$")
_GO_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$")
_HTTP_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*?,/-]+$")
RUNNER_TOKEN_PREFIX = "glrt-"


def _go_duration_problems(duration: str) -> list[str]:
    return [] if _GO_DURATION.match(duration) else ["must be a duration such as 10m or 1h30m"]


GoDuration = Annotated[str, checked(_go_duration_problems)]
BucketName = Annotated[str, checked(bucket_name_problems)]


_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_CACHE_PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*$")


@dataclass(frozen=True)
class Problem:
    """One invalid setting: where it is and what to do about it."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class SettingsError(pulumi.RunError):
    """Invalid stack configuration. A RunError, so Pulumi prints the message without a traceback."""

    def __init__(self, stack: str, problems: list[Problem]) -> None:
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            f"Invalid configuration for stack '{stack}' ({count}). Fix these in "
            f"stacks/Pulumi.{stack}.yaml or with `pulumi config set --path <key> <value>`; "
            f"README.md lists every key.\n{lines}"
        )


class _Section(BaseModel):
    """A stack config section: camelCase keys, unknown keys refused, immutable once read."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )
    config_key: ClassVar[str]

    def cross_field_problems(self) -> list[Problem]:
        """Rules that span several keys of this section."""
        return []

    def _problem(self, field_name: str, message: str) -> Problem:
        return Problem(f"{self.config_key}.{to_camel(field_name)}", message)


class CacheSettings(_Section):
    """Where the runners' distributed cache lives: a bucket this stack creates, or your own."""

    config_key: ClassVar[str] = "cache"

    type: Literal["s3", "s3Compatible", "gcs", "azure"] = Field(
        "s3",
        description="`s3`: an S3 bucket this stack creates. `s3Compatible`: an existing "
        "S3-compatible store (MinIO and similar). `gcs`, `azure`: an existing bucket or "
        "container. Credentials of the last three come from the secret `cacheCredentials`.",
    )
    bucket_name: str | None = Field(
        None,
        description="`s3`: explicit name of the bucket to create (default "
        "`<project>-<stack>-cache-<account id>`). `s3Compatible`, `gcs`: the existing bucket.",
    )
    prefix: str = Field(
        "runner-cache",
        description="Key prefix for cache objects: the runner's `[runners.cache] Path`, the "
        "lifecycle rule's filter and the IAM policy's scope.",
    )
    shared: bool = Field(
        True,
        description="`[runners.cache] Shared`: every runner of the fleet shares the cache "
        "(otherwise each runner token gets its own).",
    )
    server_address: str | None = Field(
        None,
        description="`s3Compatible` only: the endpoint, `host[:port]` or a URL such as "
        "`https://minio.example.com:9000`.",
    )
    bucket_location: str | None = Field(
        None, description="`s3Compatible` only: the bucket's region, if the store needs one."
    )
    insecure: bool = Field(
        False, description="`s3Compatible` only: talk plain HTTP to `serverAddress`."
    )
    path_style: bool | None = Field(
        None,
        description="`s3Compatible` only: path-style requests (MinIO usually needs `true`). "
        "Default: the runner detects it.",
    )
    container_name: str | None = Field(
        None, description="`azure` only: the blob container (required)."
    )
    storage_domain: str | None = Field(
        None, description="`azure` only: the storage domain, e.g. `blob.core.chinacloudapi.cn`."
    )
    expiration_days: int = Field(
        60,
        ge=1,
        le=3650,
        description="`s3` only: days after which cache objects under `prefix` expire.",
    )
    versioning: bool = Field(
        False,
        description="`s3` only: enable bucket versioning; noncurrent versions expire after 1 day.",
    )
    kms_key_arn: str | None = Field(
        None,
        description="`s3` only: KMS key ARN for SSE-KMS default encryption. Default: SSE-S3.",
    )
    access_log_bucket: BucketName | None = Field(
        None,
        description="`s3` only: existing bucket that receives server access logs.",
    )
    access_log_prefix: str = Field(
        DEFAULT_ACCESS_LOG_PREFIX,
        description="`s3` only: key prefix of the access logs in `accessLogBucket`.",
    )
    protect: bool = Field(
        True,
        description="`s3` only: protect the bucket from `pulumi destroy` and retain it when "
        "removed from the program. Turn off only for disposable stacks.",
    )
    force_destroy: bool = Field(
        False,
        description="`s3` only: let `pulumi destroy` empty and delete a non-empty bucket.",
    )

    @field_validator("prefix")
    @classmethod
    def _valid_prefix(cls, prefix: str) -> str:
        if not _CACHE_PREFIX.match(prefix):
            raise ValueError(
                "must be a non-empty S3 key prefix without leading or trailing '/' and of "
                f"letters, digits and !_.*'()- only, e.g. 'runner-cache', got {prefix!r}"
            )
        return prefix

    @field_validator("kms_key_arn")
    @classmethod
    def _valid_kms_key_arn(cls, arn: str | None) -> str | None:
        if arn is not None and not _KMS_KEY_ARN.match(arn):
            raise ValueError(
                "must be a KMS key ARN like arn:aws:kms:<region>:<account>:key/<key id> "
                f"(alias ARNs cannot scope an IAM policy to the key), got {arn!r}"
            )
        return arn

    def cross_field_problems(self) -> list[Problem]:
        problems = []
        s3_only = {
            "expiration_days", "versioning", "kms_key_arn", "access_log_bucket",
            "access_log_prefix", "protect", "force_destroy",
        }  # fmt: skip
        owned_by = {
            "server_address": "s3Compatible", "bucket_location": "s3Compatible",
            "insecure": "s3Compatible", "path_style": "s3Compatible",
            "container_name": "azure", "storage_domain": "azure",
        }  # fmt: skip
        for field_name in sorted(self.model_fields_set):
            owner = "s3" if field_name in s3_only else owned_by.get(field_name)
            if owner is not None and owner != self.type:
                problems.append(
                    self._problem(field_name, f"is only used when cache.type is {owner}")
                )
        # GCS and Azure name buckets by other rules; S3 and S3-compatible stores by these.
        s3_named = self.type in ("s3", "s3Compatible") and self.bucket_name is not None
        if s3_named and (name_problems := bucket_name_problems(str(self.bucket_name))):
            message = f"{'; '.join(name_problems)}, got {self.bucket_name!r}"
            problems.append(self._problem("bucket_name", message))
        if self.type in ("s3Compatible", "gcs") and self.bucket_name is None:
            problems.append(
                self._problem("bucket_name", f"required when cache.type is {self.type}")
            )
        if self.type == "s3Compatible":
            problems.extend(self._server_address_problems())
        if self.type == "azure" and self.container_name is None:
            problems.append(self._problem("container_name", "required when cache.type is azure"))
        if self.protect and self.force_destroy:
            problems.append(
                self._problem(
                    "force_destroy",
                    "cannot be true while cache.protect is true; set cache.protect: false "
                    "for a disposable bucket, or drop cache.forceDestroy",
                )
            )
        return problems

    def _server_address_problems(self) -> list[Problem]:
        if self.server_address is None:
            return [self._problem("server_address", "required when cache.type is s3Compatible")]
        scheme, _, host = self.server_address.rpartition("://")
        if not host or "/" in host.rstrip("/"):
            field, message = "server_address", "must be host[:port] or a URL without a path"
            message += f", got {self.server_address!r}"
        elif scheme not in ("", "http", "https"):
            field, message = "server_address", f"scheme must be http or https, got {scheme!r}"
        elif scheme == "https" and self.insecure:
            field = "insecure"
            message = "is true but cache.serverAddress is https://; drop insecure or use http://"
        elif scheme == "http" and not self.insecure:
            field = "insecure"
            message = (
                "must be true for the http:// cache.serverAddress; set insecure: true, or "
                "serve the store over https://"
            )
        else:
            return []
        return [self._problem(field, message)]

    @property
    def server_host(self) -> str | None:
        """`serverAddress` without scheme, as the runner's `ServerAddress` wants it."""
        if self.server_address is None:
            return None
        return self.server_address.rpartition("://")[2].rstrip("/")


class CacheAccessSettings(_Section):
    """How the runner manager proves its identity to the cache bucket."""

    config_key: ClassVar[str] = "cacheAccess"

    mode: Literal["irsa", "accessKey"] = Field(
        "irsa",
        description="`irsa`: an IAM role the runner's Kubernetes service account assumes (EKS). "
        "`accessKey`: an IAM user with an access key, for clusters without IRSA.",
    )


class ClusterSettings(_Section):
    """The EKS cluster the fleet runs on: created by this stack, or an existing one by name."""

    config_key: ClassVar[str] = "cluster"

    mode: Literal["create", "existing", "kubeconfig"] = Field(
        "existing",
        description="`create`: a new EKS cluster (pulumi-eks) in an existing VPC. `existing`: "
        "look an EKS cluster up by `name`. `kubeconfig`: any other Kubernetes cluster (k3s, "
        "on-prem, GKE), reached through the secret `kubeconfig`; no AWS capacity is managed.",
    )
    name: str = Field(
        ..., description="EKS cluster name (required); for `kubeconfig`, a label of the cluster."
    )
    version: str | None = Field(
        None,
        description="EKS modes (required): Kubernetes minor of the cluster, e.g. `1.34`; selects "
        "the matching cluster-autoscaler image.",
    )
    vpc_id: str | None = Field(None, description="`create` only: VPC of the new cluster.")
    private_subnet_ids: list[str] = Field(
        default_factory=list,
        description="`create` only: private subnets (at least two AZs) for nodes and the API.",
    )
    public_subnet_ids: list[str] = Field(
        default_factory=list, description="`create` only: public subnets for load balancers."
    )
    node_subnet_ids: list[str] = Field(
        default_factory=list,
        description="Subnets of the build and system nodes. Default: `privateSubnetIds` "
        "(create) or the cluster's own subnets (existing).",
    )
    system_instance_types: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SYSTEM_INSTANCE_TYPES),
        description="`create` only: on-demand instance types of the system node group "
        "(add-ons, cluster-autoscaler, runner manager).",
    )
    system_node_count: int = Field(
        DEFAULT_SYSTEM_NODE_COUNT,
        ge=1,
        le=10,
        description="`create` only: size of the system node group.",
    )
    create_oidc_provider: bool = Field(
        False,
        description="`existing` only: create the cluster's IAM OIDC provider instead of looking "
        "it up (once per cluster and account).",
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not _EKS_CLUSTER_NAME.match(name):
            raise ValueError(
                "must be an EKS cluster name: 1-100 letters, digits, '-' and '_', starting "
                f"with a letter or digit, got {name!r}"
            )
        return name

    @field_validator("version")
    @classmethod
    def _supported_version(cls, version: str | None) -> str | None:
        if version is not None and version not in SUPPORTED_KUBERNETES_VERSIONS:
            raise ValueError(
                f"must be one of {', '.join(SUPPORTED_KUBERNETES_VERSIONS)} (a Kubernetes "
                f"minor with a pinned cluster-autoscaler image), got {version!r}"
            )
        return version

    @field_validator("system_instance_types")
    @classmethod
    def _some_system_types(cls, instance_types: list[str]) -> list[str]:
        return _unique_instance_types(instance_types)

    def cross_field_problems(self) -> list[Problem]:
        only_for = {
            "vpc_id": ("create",),
            "private_subnet_ids": ("create",),
            "public_subnet_ids": ("create",),
            "system_instance_types": ("create",),
            "system_node_count": ("create",),
            "create_oidc_provider": ("existing",),
            "node_subnet_ids": EKS_MODES,
            "version": EKS_MODES,
        }
        problems = [
            self._problem(key, f"is only used when cluster.mode is {' or '.join(modes)}; remove it")
            for key, modes in only_for.items()
            if key in self.model_fields_set and self.mode not in modes
        ]
        if self.mode in EKS_MODES and self.version is None:
            problems.append(
                self._problem("version", f"required when cluster.mode is {self.mode}, e.g. '1.34'")
            )
        if self.mode != "create":
            return problems
        if self.vpc_id is None:
            problems.append(self._problem("vpc_id", "required when cluster.mode is create"))
        if len(self.private_subnet_ids) < 2:
            problems.append(
                self._problem(
                    "private_subnet_ids",
                    "needs at least two private subnets in different availability zones "
                    f"when cluster.mode is create, got {self.private_subnet_ids}",
                )
            )
        return problems

    @property
    def default_node_subnet_ids(self) -> list[str]:
        """Explicit node subnets, else the private subnets of a created cluster (may be empty)."""
        return self.node_subnet_ids or self.private_subnet_ids


class BuildNodeSettings(_Section):
    """The spot node group CI jobs run on, which scales from zero."""

    config_key: ClassVar[str] = "buildNodes"

    instance_types: list[str] = Field(
        default_factory=lambda: [
            "c5a.2xlarge",
            "c5.2xlarge",
            "c5ad.2xlarge",
            "c5d.2xlarge",
            "c6a.2xlarge",
            "c6i.2xlarge",
        ],
        description="Spot instance types, all of one vCPU/memory shape (cluster-autoscaler "
        "sizes the group from the first). Several types widen the spot pools.",
    )
    min_size: int = Field(0, ge=0, description="Minimum nodes; 0 lets the group scale to zero.")
    max_size: int = Field(10, ge=1, le=1000, description="Maximum nodes.")
    disk_size_gib: int = Field(
        DEFAULT_DISK_SIZE_GIB,
        ge=20,
        le=16384,
        description="Root volume of each node (images, DinD layers).",
    )
    labels: dict[str, str] = Field(
        default_factory=lambda: {
            "intent": "build",
            "nodegroup-type": "stateless",
            "instance-type": "spot",
        },
        description="Labels of the build nodes; the runner's node affinity requires them all.",
    )
    taints: list[Taint] = Field(
        default_factory=lambda: [Taint(key="buildInstance", value="true", effect="NoSchedule")],
        max_length=MAX_TAINTS_PER_NODE_GROUP,
        description="Taints (`{key, value, effect}`, effect in Kubernetes casing) keeping other "
        "pods off the build nodes; the runner tolerates them all.",
    )
    node_role_arn: str | None = Field(
        None,
        description="Existing IAM role for the nodes. Default: a role with the worker node, "
        "CNI and ECR read-only managed policies.",
    )
    scale_from_zero_ephemeral_storage: Quantity | None = Field(
        None,
        description="Ephemeral storage a node offers (e.g. `90Gi`), advertised to "
        "cluster-autoscaler for jobs that request ephemeral-storage.",
    )

    @field_validator("instance_types")
    @classmethod
    def _valid_instance_types(cls, instance_types: list[str]) -> list[str]:
        instance_types = _unique_instance_types(instance_types)
        if problem := mixed_shape_problem(instance_types):
            raise ValueError(problem)
        return instance_types

    @field_validator("labels")
    @classmethod
    def _valid_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        problems = [
            f"{key!r}: {problem}"
            for key, value in labels.items()
            for problem in label_key_problems(key) + label_value_problems(value)
        ]
        if problems:
            raise ValueError(f"invalid Kubernetes labels: {'; '.join(problems)}")
        return labels

    @field_validator("taints")
    @classmethod
    def _unique_taints(cls, taints: list[Taint]) -> list[Taint]:
        seen = [(taint.key, taint.effect) for taint in taints]
        if duplicates := sorted({pair for pair in seen if seen.count(pair) > 1}):
            raise ValueError(f"each key and effect may appear once, repeated: {duplicates}")
        return taints

    @field_validator("node_role_arn")
    @classmethod
    def _valid_role_arn(cls, arn: str | None) -> str | None:
        if arn is not None and not _IAM_ROLE_ARN.match(arn):
            raise ValueError(f"must be an IAM role ARN, got {arn!r}")
        return arn

    def cross_field_problems(self) -> list[Problem]:
        if self.min_size > self.max_size:
            return [
                self._problem(
                    "min_size",
                    f"must be <= buildNodes.maxSize ({self.max_size}), got {self.min_size}",
                )
            ]
        return []

    @property
    def unknown_shape_warning(self) -> str | None:
        """A warning when some instance types' shapes cannot be checked here."""
        if unknown := unknown_shapes(self.instance_types):
            return (
                f"buildNodes.instanceTypes: cannot check the vCPU/memory shape of "
                f"{', '.join(unknown)}; make sure every type matches {self.instance_types[0]}"
            )
        return None


class ClusterAutoscalerSettings(_Section):
    """The cluster-autoscaler release that scales the build nodes."""

    config_key: ClassVar[str] = "clusterAutoscaler"

    enabled: bool = Field(
        True, description="Install cluster-autoscaler; turn off when the cluster runs one."
    )
    expander: Expander = Field(
        DEFAULT_EXPANDER, description="How the autoscaler picks a node group to grow."
    )
    scale_down_unneeded_time: GoDuration = Field(
        DEFAULT_SCALE_DOWN_UNNEEDED_TIME,
        description="How long a node stays unneeded before it is removed (Go duration).",
    )


class NetworkSettings(_Section):
    """Network plumbing around the nodes."""

    config_key: ClassVar[str] = "network"

    s3_gateway_endpoint: bool | None = Field(
        None,
        description="Add an S3 gateway VPC endpoint to the node subnets' route tables, so cache "
        "traffic bypasses the NAT gateway. Default: on when cluster.mode is create.",
    )
    route_table_ids: list[str] = Field(
        default_factory=list,
        description="Route tables for the S3 endpoint. Default: the tables explicitly "
        "associated with the node subnets (list the VPC's main table here if it serves them).",
    )


class ContainerResourceSettings(BaseModel):
    """Requests and limits of one kind of job container (Kubernetes quantities)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    cpu_request: Quantity | None = None
    cpu_limit: Quantity | None = None
    memory_request: Quantity | None = None
    memory_limit: Quantity | None = None

    def spec(self) -> ContainerResources:
        """The non-empty values, keyed as `runner_config` takes them."""
        resources: ContainerResources = {}
        if self.cpu_request:
            resources["cpu_request"] = self.cpu_request
        if self.cpu_limit:
            resources["cpu_limit"] = self.cpu_limit
        if self.memory_request:
            resources["memory_request"] = self.memory_request
        if self.memory_limit:
            resources["memory_limit"] = self.memory_limit
        return resources


class RunnerSettings(_Section):
    """The GitLab Runner manager and how its Kubernetes executor runs jobs."""

    config_key: ClassVar[str] = "runner"

    gitlab_url: str = Field(
        "https://gitlab.com/", description="URL of the GitLab instance the runner serves."
    )
    namespace: NamespaceName = Field(
        DEFAULT_NAMESPACE, description="Kubernetes namespace of the runner and its job pods."
    )
    service_account_name: ServiceAccountName = Field(
        DEFAULT_SERVICE_ACCOUNT,
        description="Service account of the runner manager; the cache IRSA role trusts it.",
    )
    concurrent: int = Field(
        DEFAULT_CONCURRENT, ge=1, le=1000, description="Jobs the manager runs at once."
    )
    check_interval: int = Field(
        DEFAULT_CHECK_INTERVAL, ge=1, le=3600, description="Seconds between checks for new jobs."
    )
    request_concurrency: int = Field(
        4, ge=1, le=100, description="Concurrent requests for new jobs to GitLab."
    )
    poll_interval: int = Field(
        3, ge=1, le=300, description="Seconds between checks of a job pod's state."
    )
    poll_timeout: int = Field(
        600,
        ge=30,
        le=3600,
        description="Seconds a job pod may wait to start. Long enough for a spot node to be "
        "launched from zero (2-4 minutes).",
    )
    default_image: str = Field(
        "alpine:3.22", description="Image of jobs that name none (`image:` in .gitlab-ci.yml)."
    )
    privileged: bool = Field(
        True, description="Run job containers privileged, as Docker-in-Docker needs."
    )
    build_resources: ContainerResourceSettings = Field(
        default_factory=lambda: ContainerResourceSettings(
            cpu_request="1", memory_request="2Gi", memory_limit="4Gi"
        ),
        description="Requests and limits of the build container.",
    )
    helper_resources: ContainerResourceSettings = Field(
        default_factory=lambda: ContainerResourceSettings(
            cpu_request="100m", memory_request="128Mi", memory_limit="512Mi"
        ),
        description="Requests and limits of the helper container (git, cache, artifacts).",
    )
    service_resources: ContainerResourceSettings = Field(
        default_factory=lambda: ContainerResourceSettings(
            cpu_request="500m", memory_request="1Gi", memory_limit="2Gi"
        ),
        description="Requests and limits of each service container (e.g. docker:dind).",
    )
    termination_grace_period_seconds: int = Field(
        DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS,
        ge=0,
        le=86400,
        description="How long a stopping manager pod waits for running jobs to finish.",
    )
    pod_monitor: bool = Field(
        False,
        description="Create a PodMonitor for the runner's metrics (needs the Prometheus operator).",
    )
    fast_zip: bool = Field(
        True, description="`FF_USE_FASTZIP`: the faster archiver for cache and artifacts."
    )
    cache_compression_level: Literal["fastest", "fast", "default", "slow", "slowest"] = Field(
        "fast", description="`CACHE_COMPRESSION_LEVEL` with fastzip."
    )
    transfer_meter_frequency: GoDuration = Field(
        "5s", description="`TRANSFER_METER_FREQUENCY`: progress lines during long transfers."
    )

    @field_validator("gitlab_url")
    @classmethod
    def _valid_url(cls, url: str) -> str:
        if not _HTTP_URL.match(url):
            raise ValueError(
                f"must be an http(s) URL such as https://gitlab.example.com/, got {url!r}"
            )
        return url

    def job_environment(self) -> list[str]:
        """Job variables that speed up cache transfers and show their progress."""
        return [
            f"FF_USE_FASTZIP={'true' if self.fast_zip else 'false'}",
            f"CACHE_COMPRESSION_LEVEL={self.cache_compression_level}",
            f"TRANSFER_METER_FREQUENCY={self.transfer_meter_frequency}",
        ]


class WarmCapacityPolicySettings(BaseModel):
    """When to keep idle pause pods, and how many."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    periods: list[str] = Field(min_length=1)
    timezone: str = "UTC"
    idle_count: int = Field(ge=0)
    idle_time: GoDuration = "10m"

    @field_validator("periods")
    @classmethod
    def _valid_cron(cls, periods: list[str]) -> list[str]:
        for period in periods:
            fields = period.split()
            if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
                raise ValueError(
                    "each period must be a 5-field cron expression (minute hour day month "
                    f"weekday), e.g. '* 8-18 * * mon-fri', got {period!r}"
                )
        return periods

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, timezone: str) -> str:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"must be an IANA time zone such as Europe/Berlin or UTC, got {timezone!r}"
            ) from None
        return timezone


class WarmCapacitySettings(_Section):
    """Idle pause pods that keep build nodes running, so jobs start without waiting for one."""

    config_key: ClassVar[str] = "warmCapacity"

    enabled: bool = Field(False, description="Run pause pods on the build nodes.")
    max_pause_pods: int = Field(10, ge=1, le=1000, description="Upper bound on pause pods.")
    priority_class_name: ObjectName = Field(
        "gitlab-runner-fleet-pause-pods",
        description="PriorityClass (value -10) the stack creates for pause pods, so jobs "
        "preempt them and the runner needs no cluster-wide rights.",
    )
    policies: list[WarmCapacityPolicySettings] = Field(
        default_factory=list,
        description="Policies (`{periods, timezone, idleCount, idleTime}`); the last matching "
        "one wins, none matching means no pause pods.",
    )

    @field_validator("priority_class_name")
    @classmethod
    def _not_the_runners_own(cls, name: str) -> str:
        if name == RUNNER_DEFAULT_PRIORITY_CLASS:
            raise ValueError(
                f"must not be {RUNNER_DEFAULT_PRIORITY_CLASS!r}: with that name the runner "
                "creates the class itself and needs cluster-wide rights"
            )
        return name

    def cross_field_problems(self) -> list[Problem]:
        if self.enabled and not self.policies:
            return [
                self._problem("policies", "needs at least one policy when warm capacity is enabled")
            ]
        return []


SectionT = TypeVar("SectionT", bound=_Section)

EKS_MODES = ("create", "existing")
KUBECONFIG_MODE = "kubeconfig"

_SECTIONS: tuple[type[_Section], ...] = (
    ClusterSettings,
    BuildNodeSettings,
    ClusterAutoscalerSettings,
    NetworkSettings,
    CacheSettings,
    CacheAccessSettings,
    RunnerSettings,
    WarmCapacitySettings,
)
TAGS_KEY = "tags"
RUNNER_TOKEN_KEY = "runnerToken"
CACHE_CREDENTIALS_KEY = "cacheCredentials"
KUBECONFIG_KEY = "kubeconfig"
CONFIG_KEYS = (*(section.config_key for section in _SECTIONS), TAGS_KEY)
SECRET_KEYS = (RUNNER_TOKEN_KEY, CACHE_CREDENTIALS_KEY, KUBECONFIG_KEY)
# The secret keys each cache type needs in `cacheCredentials`, as alternatives.
CACHE_CREDENTIAL_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    "s3": (),
    "s3Compatible": (("accessKey", "secretKey"),),
    "gcs": (("credentialsJson",), ("accessId", "privateKey")),
    "azure": (("accountName", "accountKey"),),
}


class Secret:
    """A secret config value. Never printed; handed to Pulumi only as a secret Output."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def __repr__(self) -> str:
        return "Secret(****)"

    def output(self) -> pulumi.Output[str]:
        return pulumi.Output.secret(self._value)


@dataclass(frozen=True)
class RawSecret:
    """A secret-looking config value as read, and whether Pulumi holds it encrypted."""

    value: str
    stored_as_secret: bool


@dataclass(frozen=True)
class FleetSettings:
    """A stack's validated configuration: the one source every component reads from."""

    project: str
    stack: str
    aws_region: str
    cluster: ClusterSettings
    build_nodes: BuildNodeSettings
    cluster_autoscaler: ClusterAutoscalerSettings
    network: NetworkSettings
    cache: CacheSettings
    cache_access: CacheAccessSettings
    runner: RunnerSettings
    warm_capacity: WarmCapacitySettings
    runner_token: Secret
    cache_credentials: Mapping[str, Secret] = field(default_factory=dict)
    kubeconfig: Secret | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def on_eks(self) -> bool:
        """Whether the cluster is EKS, so AWS build capacity and IRSA are managed."""
        return self.cluster.mode in EKS_MODES

    def cache_bucket_name(self, account_id: str) -> str:
        """The explicit bucket name, or the one derived from project, stack and account."""
        return self.cache.bucket_name or derived_bucket_name(self.project, self.stack, account_id)

    @property
    def runner_name(self) -> str:
        """How the runner shows up in GitLab's runner list."""
        return f"{self.project}-{self.stack}"

    def runner_job_spec(self) -> JobSpec:
        """How job pods run, from the runner settings and the build nodes' labels and taints."""
        runner = self.runner
        spec: JobSpec = {
            "namespace": runner.namespace,
            "image": runner.default_image,
            "privileged": runner.privileged,
            "request_concurrency": runner.request_concurrency,
            "poll_interval": runner.poll_interval,
            "poll_timeout": runner.poll_timeout,
            "build": runner.build_resources.spec(),
            "helper": runner.helper_resources.spec(),
            "service": runner.service_resources.spec(),
            "build_labels": dict(self.build_nodes.labels),
            "build_taints": [
                {"key": taint.key, "value": taint.value, "effect": taint.effect}
                for taint in self.build_nodes.taints
            ],
            "environment": runner.job_environment(),
        }
        if self.warm_capacity.enabled:
            spec["warm_capacity"] = {
                "max_pause_pods": self.warm_capacity.max_pause_pods,
                "priority_class_name": self.warm_capacity.priority_class_name,
                "policies": [
                    {
                        "periods": list(policy.periods),
                        "timezone": policy.timezone,
                        "idle_count": policy.idle_count,
                        "idle_time": policy.idle_time,
                    }
                    for policy in self.warm_capacity.policies
                ],
            }
        return spec

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
    """Validate raw config sections (keyed by config key) into `FleetSettings`.

    `secrets` holds the secret config values (`runnerToken`, `cacheCredentials`). Raises
    `SettingsError` listing every problem found, never a partial model; secret values never
    appear in a message.
    """
    secrets = secrets or {}
    problems: list[Problem] = []
    sections: dict[str, _Section] = {}
    for section_type in _SECTIONS:
        key = section_type.config_key
        try:
            section = section_type.model_validate(raw.get(key) or {})
        except ValidationError as error:
            problems.extend(_describe(key, section_type, error))
            continue
        sections[key] = section
        problems.extend(section.cross_field_problems())

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

    runner_token, token_problems = _parse_runner_token(secrets.get(RUNNER_TOKEN_KEY))
    problems.extend(token_problems)
    cache_credentials: dict[str, Secret] = {}
    if CacheSettings.config_key in sections:
        cache_type = _section(sections, CacheSettings).type
        cache_credentials, credential_problems = _parse_cache_credentials(
            cache_type, secrets.get(CACHE_CREDENTIALS_KEY)
        )
        problems.extend(credential_problems)
    kubeconfig, kubeconfig_problems = _parse_kubeconfig(sections, secrets.get(KUBECONFIG_KEY))
    problems.extend(kubeconfig_problems)
    if len(sections) == len(_SECTIONS):
        problems.extend(_cross_section_problems(sections))
    if problems or runner_token is None:
        raise SettingsError(stack, problems)
    build_nodes = _section(sections, BuildNodeSettings)
    return FleetSettings(
        project=project,
        stack=stack,
        aws_region=aws_region or "",
        cluster=_section(sections, ClusterSettings),
        build_nodes=build_nodes,
        cluster_autoscaler=_section(sections, ClusterAutoscalerSettings),
        network=_section(sections, NetworkSettings),
        cache=_section(sections, CacheSettings),
        cache_access=_section(sections, CacheAccessSettings),
        runner=_section(sections, RunnerSettings),
        warm_capacity=_section(sections, WarmCapacitySettings),
        runner_token=runner_token,
        cache_credentials=cache_credentials,
        kubeconfig=kubeconfig,
        tags=tags,
        warnings=tuple(filter(None, [build_nodes.unknown_shape_warning])),
    )


def load_settings() -> FleetSettings:
    """Read and validate the current stack's configuration from Pulumi config."""
    config = pulumi.Config()
    stack = pulumi.get_stack()
    raw: dict[str, Any] = {}
    problems: list[Problem] = []
    for key in CONFIG_KEYS:
        text = config.get(key)
        if text is None:
            continue
        try:
            raw[key] = json.loads(text)
        except json.JSONDecodeError:
            problems.append(Problem(key, f"must be an object of keys, got {text!r}"))
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


def _section(sections: Mapping[str, _Section], section_type: type[SectionT]) -> SectionT:
    section = sections[section_type.config_key]
    assert isinstance(section, section_type)
    return section


def _uses_aws(sections: Mapping[str, _Section]) -> bool:
    cluster = sections.get(ClusterSettings.config_key)
    cache = sections.get(CacheSettings.config_key)
    on_eks = not isinstance(cluster, ClusterSettings) or cluster.mode in EKS_MODES
    return on_eks or not isinstance(cache, CacheSettings) or cache.type == "s3"


def _parse_kubeconfig(
    sections: Mapping[str, _Section], raw: RawSecret | None
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


def _kubeconfig_mode_problems(sections: Mapping[str, _Section]) -> list[Problem]:
    build_nodes = _section(sections, BuildNodeSettings)
    autoscaler = _section(sections, ClusterAutoscalerSettings)
    network = _section(sections, NetworkSettings)
    cache = _section(sections, CacheSettings)
    access = _section(sections, CacheAccessSettings)
    eks_only = "is only used on EKS (cluster.mode create or existing); remove it"
    problems = [
        Problem(f"buildNodes.{to_camel(key)}", eks_only)
        for key in sorted(build_nodes.model_fields_set - {"labels", "taints"})
    ]
    if autoscaler.enabled and "enabled" in autoscaler.model_fields_set:
        problems.append(Problem("clusterAutoscaler.enabled", eks_only))
    if network.s3_gateway_endpoint:
        problems.append(Problem("network.s3GatewayEndpoint", eks_only))
    if cache.type == "s3" and access.mode == "irsa":
        problems.append(
            Problem(
                "cacheAccess.mode",
                "irsa needs an EKS cluster; set cacheAccess.mode: accessKey for an S3 cache, or "
                "use cache.type s3Compatible, gcs or azure",
            )
        )
    return problems


def _cross_section_problems(sections: Mapping[str, _Section]) -> list[Problem]:
    cluster = _section(sections, ClusterSettings)
    network = _section(sections, NetworkSettings)
    problems = []
    if cluster.mode == KUBECONFIG_MODE:
        problems.extend(_kubeconfig_mode_problems(sections))
    if network.route_table_ids and network.s3_gateway_endpoint is False:
        problems.append(
            Problem(
                "network.routeTableIds",
                "is only used with network.s3GatewayEndpoint; remove one of them",
            )
        )
    if (
        cluster.mode == "existing"
        and network.s3_gateway_endpoint
        and not (network.route_table_ids or cluster.node_subnet_ids)
    ):
        problems.append(
            Problem(
                "network.s3GatewayEndpoint",
                "needs cluster.nodeSubnetIds or network.routeTableIds for an existing cluster, "
                "to know which route tables get the endpoint",
            )
        )
    return problems


def _parse_runner_token(raw: RawSecret | None) -> tuple[Secret | None, list[Problem]]:
    create_runner = (
        "create the runner in GitLab (Settings > CI/CD > Runners > New project runner, or the "
        "POST /user/runners API) and store its glrt- authentication token with "
        "`pulumi config set --secret runnerToken <token>`"
    )
    if raw is None:
        return None, [Problem(RUNNER_TOKEN_KEY, f"required; {create_runner}")]
    problems = []
    if not raw.value.startswith(RUNNER_TOKEN_PREFIX):
        problems.append(
            Problem(
                RUNNER_TOKEN_KEY,
                "is not a runner authentication token (glrt-...). Registration tokens are "
                "deprecated, disabled by default since GitLab 17.0 and removed in 20.0; "
                f"{create_runner}",
            )
        )
    if not raw.stored_as_secret:
        problems.append(
            Problem(
                RUNNER_TOKEN_KEY,
                "is stored in plain text; remove it from the stack file and set it with "
                "`pulumi config set --secret runnerToken <token>`",
            )
        )
    return (None if problems else Secret(raw.value)), problems


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


def _unique_instance_types(instance_types: list[str]) -> list[str]:
    if not instance_types:
        raise ValueError("must list at least one instance type")
    if duplicates := sorted({t for t in instance_types if instance_types.count(t) > 1}):
        raise ValueError(f"must not repeat instance types, repeated: {', '.join(duplicates)}")
    return instance_types


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


def _describe(key: str, section_type: type[_Section], error: ValidationError) -> list[Problem]:
    known = ", ".join((info.alias or name) for name, info in section_type.model_fields.items())
    problems = []
    for detail in error.errors():
        path = ".".join([key, *(str(part) for part in detail["loc"])])
        describe = _MESSAGES.get(detail["type"])
        message = describe(detail) if describe else f"{detail['msg']}, got {detail['input']!r}"
        if detail["type"] == "extra_forbidden":
            message += f"; known keys: {known}"
        elif detail["type"] == "model_type":
            path, message = key, f"must be an object with keys {known}, got {detail['input']!r}"
        problems.append(Problem(path, message))
    return problems


_MESSAGES: dict[str, Callable[[Any], str]] = {
    "greater_than_equal": lambda d: f"must be >= {d['ctx']['ge']}, got {d['input']!r}",
    "less_than_equal": lambda d: f"must be <= {d['ctx']['le']}, got {d['input']!r}",
    "extra_forbidden": lambda d: "unknown key (check its spelling)",
    "literal_error": lambda d: f"must be one of {d['ctx']['expected']}, got {d['input']!r}",
    "value_error": lambda d: str(d["ctx"]["error"]),
    "int_parsing": lambda d: f"must be a whole number, got {d['input']!r}",
    "int_from_float": lambda d: f"must be a whole number, got {d['input']!r}",
    "int_type": lambda d: f"must be a whole number, got {d['input']!r}",
    "bool_parsing": lambda d: f"must be true or false, got {d['input']!r}",
    "bool_type": lambda d: f"must be true or false, got {d['input']!r}",
    "string_type": lambda d: f"must be a string, got {d['input']!r}",
    "list_type": lambda d: f"must be a list, got {d['input']!r}",
    "dict_type": lambda d: f"must be an object of keys to values, got {d['input']!r}",
    "missing": lambda d: "required; see the config reference in README.md",
    "too_long": lambda d: (
        f"must have at most {d['ctx']['max_length']} items, got {d['ctx']['actual_length']}"
    ),
}


def reference_table() -> str:
    """The README's config reference as a Markdown table, generated from the model itself."""
    rows = [
        "| key | default | meaning |",
        "| --- | --- | --- |",
        "| `aws:region` | (required) | AWS region of the stack's resources. |",
    ]
    for section_type in _SECTIONS:
        for name, info in section_type.model_fields.items():
            default = info.get_default(call_default_factory=True)
            if info.is_required():
                default = "(required)"
            elif default is None:
                default = "(none)"
            else:
                default = f"`{json.dumps(to_jsonable_python(default), separators=(', ', ': '))}`"
            rows.append(
                f"| `{section_type.config_key}.{info.alias or name}` | {default} "
                f"| {info.description} |"
            )
    rows.append(
        f"| `{TAGS_KEY}` | `{{}}` | Extra cost-allocation tags on every AWS resource; "
        f"{', '.join(ALLOCATION_TAG_KEYS)} are set automatically. |"
    )
    return "\n".join(rows)
