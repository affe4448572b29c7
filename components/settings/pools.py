"""`pools`: the kinds of build capacity a stack runs, each with its node group and runner.

A pool is defined once here; its labels, taints and architecture reach its node group, its
Auto Scaling group's scale-from-zero tags, its runner's node selector, tolerations and
affinity, and its pause pods (which copy the runner's node selector and tolerations).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from ..aws.karpenter_pool import (
    DEFAULT_CONSOLIDATE_AFTER,
    DEFAULT_EXPIRE_AFTER,
    DEFAULT_TERMINATION_GRACE_PERIOD,
)
from ..build_nodes import (
    DEFAULT_DISK_SIZE_GIB,
    KARPENTER_CATEGORIES,
    MAX_DISK_SIZE_GIB,
    MAX_GROUP_SIZE,
    MAX_TAINTS_PER_NODE_GROUP,
    MIN_DISK_SIZE_GIB,
    POOL_LABEL,
    Architecture,
    InstanceShape,
    Resources,
    Taint,
    advertised_storage_problems,
    allocatable_ephemeral_storage_gib,
    category_and_generation,
    eks_label_problems,
    eks_taint_problems,
    fitting_request_ceiling,
    group_architecture,
    group_size_problems,
    instance_shape,
    instance_types_problems,
    job_fit_problem,
    karpenter_requirement_problems,
    karpenter_shapes,
    node_allocatable,
    node_selector,
    smallest_node,
    taints_problems,
    unknown_shapes,
)
from ..karpenter import duration_problems, grace_period_problems, restricted_label_problems
from ..kubernetes_names import Quantity, checked, checked_labels, quantity_value
from ..naming import iam_role_arn_problems
from ..workloads.alert_rules import (
    ExpectJobs,
    MonitoredPool,
    expect_jobs_condition,
    is_duration,
)
from ..workloads.isolation import BuildMode
from ..workloads.runner_config import ContainerResources, JobQueuingDuration, OverwriteCeiling
from ..workloads.working_hours import WorkingHoursError
from .base import (
    ConfigModel,
    GoDuration,
    Problem,
    describe_errors,
)

POOLS_KEY = "pools"
DEFAULT_POOL_NAME = "default"
# Current compute-optimised amd64 types of one shape (8 vCPU, 16 GiB): several spot pools.
DEFAULT_INSTANCE_TYPES = (
    "c5a.2xlarge", "c5.2xlarge", "c5ad.2xlarge", "c5d.2xlarge", "c6a.2xlarge", "c6i.2xlarge",
)  # fmt: skip
_POOL_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,18}[a-z0-9])?$")
Scaler = Literal["clusterAutoscaler", "karpenter"]
CLUSTER_AUTOSCALER_SCALER: Scaler = "clusterAutoscaler"
KARPENTER_SCALER: Scaler = "karpenter"
KarpenterDuration = Annotated[str, checked(duration_problems)]
KarpenterGracePeriod = Annotated[str, checked(grace_period_problems)]
# Keys that shape only one kind of capacity, and why the other kind refuses them.
_NODE_GROUP_ONLY_KEYS = {
    "min_size": "Karpenter keeps no minimum: it launches nodes for pending pods and removes "
    "empty ones; keep capacity warm with warmCapacity (pause pods)",
    "scale_from_zero_ephemeral_storage": "Karpenter reads a node's ephemeral storage from its "
    "root volume (diskSizeGib); there are no node-template tags",
}
_KARPENTER_ONLY_KEYS = {
    "instance_requirements": "a managed node group launches exactly its instanceTypes",
    "on_demand_fallback": "a managed node group of this fleet is spot only",
    "consolidate_after": "cluster-autoscaler removes idle nodes after "
    "clusterAutoscaler.scaleDownUnneededTime",
    "expire_after": "managed node groups replace nodes only on a version or AMI update",
    "termination_grace_period": "EKS drains a managed node group's nodes on its own terms "
    "(force_update_version)",
}
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*?,/-]+$")


class ContainerResourceSettings(ConfigModel):
    """Requests and limits of one kind of job container (Kubernetes quantities)."""

    cpu_request: Quantity | None = None
    cpu_limit: Quantity | None = None
    memory_request: Quantity | None = None
    memory_limit: Quantity | None = None

    def spec(self) -> ContainerResources:
        """The non-empty values, keyed as `runner_config` takes them."""
        return {key: value for key, value in self.model_dump().items() if value}  # type: ignore[return-value]


class OverwriteMaxSettings(ConfigModel):
    """How far a job may raise its build and service containers' CPU and memory requests."""

    cpu: Quantity = Field(
        description="Ceiling of `KUBERNETES_CPU_REQUEST` and `KUBERNETES_SERVICE_CPU_REQUEST`."
    )
    memory: Quantity = Field(
        description="Ceiling of `KUBERNETES_MEMORY_REQUEST` and "
        "`KUBERNETES_SERVICE_MEMORY_REQUEST`."
    )


class DaemonSetRequestSettings(ConfigModel):
    """What the cluster's DaemonSets request on every build node, together."""

    cpu: Quantity = Field(description="CPU requests of the DaemonSet pods on one node.")
    memory: Quantity = Field(description="Memory requests of the DaemonSet pods on one node.")


def _cron_periods(periods: list[str]) -> list[str]:
    for period in periods:
        fields = period.split()
        if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
            raise ValueError(
                "each period must be a 5-field cron expression (minute hour day month "
                f"weekday), e.g. '* 8-18 * * mon-fri', got {period!r}"
            )
    return periods


def _iana_timezone(timezone: str) -> str:
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"must be an IANA time zone such as Europe/Berlin or UTC, got {timezone!r}"
        ) from None
    return timezone


class WarmCapacityPolicySettings(ConfigModel):
    """When to keep jobs' worth of capacity warm, and how much."""

    periods: list[str] = Field(min_length=1)
    timezone: str = "UTC"
    idle_jobs: int = Field(ge=0, le=100)
    idle_time: GoDuration = "10m"

    _valid_cron = field_validator("periods")(_cron_periods)
    _known_timezone = field_validator("timezone")(_iana_timezone)


class JobQueuingDurationSettings(ConfigModel):
    """How long jobs may wait in GitLab's queue during some periods; the runner counts each job
    that waited longer (`[[runners.monitoring.job_queuing_durations]]`)."""

    periods: list[str] = Field(
        min_length=1, description="5-field cron periods, e.g. `* 7-18 * * mon-fri`."
    )
    timezone: str = Field("UTC", description="IANA time zone of the periods.")
    threshold: GoDuration = Field(description="Longest acceptable wait (Go duration), e.g. 5m.")

    _valid_cron = field_validator("periods")(_cron_periods)
    _known_timezone = field_validator("timezone")(_iana_timezone)

    @field_validator("threshold")
    @classmethod
    def _positive(cls, threshold: str) -> str:
        # builds_helper.go evaluateJobQueuingDuration ignores thresholds <= 0.
        if not any(ch in "123456789" for ch in threshold):
            raise ValueError(f"must be above 0 (the runner ignores 0), got {threshold!r}")
        return threshold

    def spec(self) -> JobQueuingDuration:
        """The entry as `runner_config` writes it."""
        return {
            "periods": list(self.periods),
            "timezone": self.timezone,
            "threshold": self.threshold,
        }


class ExpectJobsSettings(ConfigModel):
    """Working hours in which the pool always has work: a manager that is up but picks up no
    job for `within` inside them is stuck (alert GitlabRunnerNoJobsPickedUp)."""

    periods: list[str] = Field(
        min_length=1,
        description="5-field cron periods with `*` day of month and month, e.g. "
        "`* 8-17 * * mon-fri`.",
    )
    timezone: str = Field("UTC", description="IANA time zone of the periods.")
    within: str = Field(
        "1h", description="Prometheus duration without a picked-up job that means stuck."
    )

    _known_timezone = field_validator("timezone")(_iana_timezone)

    @field_validator("within")
    @classmethod
    def _valid_within(cls, within: str) -> str:
        if not is_duration(within) or within == "0":
            raise ValueError(f"must be a Prometheus duration such as 1h or 90m, got {within!r}")
        return within

    @model_validator(mode="after")
    def _watchable(self) -> ExpectJobsSettings:
        try:
            expect_jobs_condition(self.spec())
        except WorkingHoursError as error:
            raise ValueError(str(error)) from None
        return self

    def spec(self) -> ExpectJobs:
        """The working hours as the alert rules take them."""
        return {"periods": list(self.periods), "timezone": self.timezone, "within": self.within}


class WarmCapacitySettings(ConfigModel):
    """Idle capacity for whole jobs, held by pause pods that any job preempts."""

    policies: list[WarmCapacityPolicySettings] = Field(
        min_length=1,
        description="Policies (`{periods, timezone, idleJobs, idleTime}`); the last matching "
        "one wins, none matching means no pause pods.",
    )
    max_idle_jobs: int | None = Field(
        None, ge=1, le=100, description="Upper bound; default: the largest `idleJobs`."
    )


class InstanceRequirementsSettings(ConfigModel):
    """Which instance types a Karpenter pool launches. Unset keys are derived from the pool's
    `instanceTypes`: their categories, their oldest generation and their vCPUs."""

    categories: list[str] | None = Field(
        None, description="Instance categories: some of `c`, `m`, `r`."
    )
    min_generation: int | None = Field(None, description="Oldest instance generation, e.g. 6.")
    cpus: list[int] | None = Field(None, description="vCPU counts (sizes), e.g. `[8, 16]`.")
    listed_types_only: bool = Field(
        False, description="Launch exactly `instanceTypes`, nothing derived from them."
    )


class PoolSettings(ConfigModel):
    """One kind of build capacity: a spot node group and the runner manager that fills it."""

    name: str = Field(description="Pool name; names its node group, runner and defaults.")
    scaler: Scaler = Field(
        CLUSTER_AUTOSCALER_SCALER,
        description="What adds the pool's nodes: `clusterAutoscaler` (a spot managed node "
        "group) or `karpenter` (a NodePool launching any fitting spot type, docs/karpenter.md).",
    )
    instance_types: list[str] = Field(
        default_factory=lambda: list(DEFAULT_INSTANCE_TYPES),
        description="Spot instance types of one vCPU/memory shape and architecture (arm64 for "
        "Graviton types such as c7g). Several types widen the spot pools. A Karpenter pool "
        "launches every type of their shape, categories and generations (see "
        "`instanceRequirements`).",
    )
    min_size: int = Field(
        0, ge=0, description="clusterAutoscaler: minimum nodes; 0 lets the group scale to zero."
    )
    max_size: int = Field(10, ge=1, le=MAX_GROUP_SIZE, description="Maximum nodes.")
    disk_size_gib: int = Field(
        DEFAULT_DISK_SIZE_GIB,
        ge=MIN_DISK_SIZE_GIB,
        le=MAX_DISK_SIZE_GIB,
        description="Root volume of each node.",
    )
    labels: dict[str, str] | None = Field(
        None,
        description=f"Node labels jobs select. Default: `{{{POOL_LABEL}: <name>}}`, so pools "
        "never share nodes.",
    )
    taints: list[Taint] | None = Field(
        None,
        max_length=MAX_TAINTS_PER_NODE_GROUP,
        description=f"Taints keeping other pods off the nodes. Default: `{POOL_LABEL}=<name>:"
        "NoSchedule`.",
    )
    tags: list[str] = Field(
        default_factory=list,
        description="GitLab runner tags this pool serves; jobs pick the pool with `tags:`.",
    )
    run_untagged: bool = Field(False, description="Also take jobs without tags.")
    concurrent: int = Field(10, ge=1, le=1000, description="Jobs the pool's manager runs at once.")
    build_mode: BuildMode | None = Field(
        None, description="`dind` or `rootless`. Default: `runner.buildMode`."
    )
    build_resources: ContainerResourceSettings = Field(
        default_factory=lambda: ContainerResourceSettings(
            cpu_request="250m", memory_request="512Mi", memory_limit="1Gi"
        ),
        description="Build container: with Docker-in-Docker it only runs the docker CLI.",
    )
    helper_resources: ContainerResourceSettings = Field(
        default_factory=lambda: ContainerResourceSettings(
            cpu_request="200m", memory_request="256Mi", memory_limit="2Gi"
        ),
        description="Helper container: git, and archiving multi-GiB caches and artifacts.",
    )
    service_resources: ContainerResourceSettings = Field(
        default_factory=lambda: ContainerResourceSettings(
            cpu_request="2", memory_request="4Gi", memory_limit="8Gi"
        ),
        description="Each service container; `docker:dind` does the actual `docker build`.",
    )
    overwrite_max_allowed: OverwriteMaxSettings | None = Field(
        None,
        description="Ceiling up to which jobs raise build and service CPU/memory requests with "
        "`KUBERNETES_*` variables. Default: half of what a node offers after kube-reserved, "
        "eviction thresholds, DaemonSets and the helper, so a job with both at the ceiling "
        "still fits one node; larger values are refused. Limits may go up to a whole node.",
    )
    daemonset_requests: DaemonSetRequestSettings = Field(
        default_factory=lambda: DaemonSetRequestSettings(cpu="300m", memory="512Mi"),
        description="What the cluster's DaemonSets (aws-node, kube-proxy, log and metrics "
        "agents) request on each build node together; jobs fit in what is left.",
    )
    ephemeral_storage_request: Quantity = Field(
        "8Gi", description="Ephemeral storage each job pod requests (images, layers, workspace)."
    )
    scale_from_zero_ephemeral_storage: Quantity | None = Field(
        None,
        description="Ephemeral storage advertised to cluster-autoscaler for an empty group. "
        "Default: what the disk really offers (disk minus kubelet's 10% eviction threshold and "
        "1Gi reserved); larger values are refused.",
    )
    node_role_arn: str | None = Field(
        None,
        description="Existing IAM role for the nodes. Default: a role with the worker node and "
        "ECR read-only managed policies, and the CNI policy only where `cluster.nodeCniPolicy` "
        "asks for it.",
    )
    imds_hop_limit: int = Field(
        1,
        ge=1,
        le=2,
        description="IMDSv2 hop limit of the nodes. 1: only processes in the node's network "
        "namespace reach the instance metadata service, pods do not. 2: pods too, which "
        "DaemonSets that call IMDS from their own network namespace need; then only the "
        "NetworkPolicy keeps jobs from the node role (docs/job-isolation.md).",
    )
    allow_privilege_escalation: bool = Field(
        False,
        description="`allowPrivilegeEscalation` of the build container. false: setuid binaries "
        "(`sudo`, rootless BuildKit's `newuidmap`) gain nothing; true lets them work.",
    )
    instance_requirements: InstanceRequirementsSettings | None = Field(
        None,
        description="karpenter: which types to launch (`{categories, minGeneration, cpus, "
        "listedTypesOnly}`); memory per vCPU follows the category. Default: derived from "
        "`instanceTypes`.",
    )
    on_demand_fallback: bool = Field(
        False,
        description="karpenter: launch on-demand nodes when no spot offering fits (Karpenter "
        "prefers spot).",
    )
    consolidate_after: KarpenterDuration = Field(
        DEFAULT_CONSOLIDATE_AFTER,
        description="karpenter: how long a node stays empty (no job, no pause pod) before it "
        "is removed.",
    )
    expire_after: KarpenterDuration = Field(
        DEFAULT_EXPIRE_AFTER,
        description="karpenter: a node is replaced after this long, waiting for its jobs up to "
        "`terminationGracePeriod`; `Never` to keep nodes.",
    )
    termination_grace_period: KarpenterGracePeriod = Field(
        DEFAULT_TERMINATION_GRACE_PERIOD,
        description="karpenter: how long an expiring or drifted node waits for its running jobs "
        "before Karpenter deletes them; at least the longest job (gitlab.maximumTimeout, else "
        "runner.terminationGracePeriodSeconds) plus 30 s.",
    )
    warm_capacity: WarmCapacitySettings | None = Field(
        None, description="Keep capacity for whole jobs warm on a schedule (pause pods)."
    )
    job_queuing_durations: list[JobQueuingDurationSettings] = Field(
        default_factory=list,
        description="Longest acceptable waits in GitLab's queue (`{periods, timezone, "
        "threshold}`); the runner counts longer waits and GitlabRunnerQueuingThresholdExceeded "
        "alerts on them. The last entry whose periods match wins.",
    )
    expect_jobs: ExpectJobsSettings | None = Field(
        None,
        description="Working hours in which this pool always has work (`{periods, timezone, "
        "within}`): GitlabRunnerNoJobsPickedUp alerts when its manager picks up no job for "
        "`within` inside them.",
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not _POOL_NAME.match(name):
            raise ValueError(
                "must be 1-20 lowercase letters, digits and '-', starting with a letter and "
                f"ending with a letter or digit (it names Kubernetes and AWS objects), got {name!r}"
            )
        return name

    @field_validator("instance_types")
    @classmethod
    def _valid_instance_types(cls, instance_types: list[str]) -> list[str]:
        if problems := instance_types_problems(instance_types):
            raise ValueError("; ".join(problems))
        return instance_types

    @field_validator("labels")
    @classmethod
    def _valid_labels(cls, labels: dict[str, str] | None) -> dict[str, str] | None:
        if labels is None:
            return None
        if not labels:
            raise ValueError("must hold at least one label, or be left out for the default")
        return checked_labels(labels)

    @field_validator("taints")
    @classmethod
    def _unique_taints(cls, taints: list[Taint] | None) -> list[Taint] | None:
        if taints is not None and (problems := taints_problems(taints)):
            raise ValueError("; ".join(problems))
        return taints

    @field_validator("node_role_arn")
    @classmethod
    def _valid_role_arn(cls, arn: str | None) -> str | None:
        if arn is not None and (problems := iam_role_arn_problems(arn)):
            raise ValueError("; ".join(problems))
        return arn

    @property
    def node_labels(self) -> dict[str, str]:
        """The labels the pool's nodes carry and its jobs require."""
        return dict(self.labels) if self.labels is not None else {POOL_LABEL: self.name}

    @property
    def node_taints(self) -> list[Taint]:
        """The taints the pool's nodes carry and its jobs tolerate."""
        if self.taints is not None:
            return list(self.taints)
        return [Taint(key=POOL_LABEL, value=self.name, effect="NoSchedule")]

    @property
    def architecture(self) -> Architecture:
        """The CPU architecture of the pool's instance types, never guessed."""
        return group_architecture(self.instance_types)

    @property
    def job_node_selector(self) -> dict[str, str]:
        """What the pool's job pods (and pause pods) select: its labels and architecture."""
        return node_selector(self.node_labels, self.architecture)

    @property
    def uses_karpenter(self) -> bool:
        """Whether Karpenter adds the pool's nodes (else cluster-autoscaler's node group)."""
        return self.scaler == KARPENTER_SCALER

    @property
    def launches_listed_types_only(self) -> bool:
        """Whether the pool's nodes are exactly its instance types (every node group's are)."""
        requirements = self.instance_requirements
        return not self.uses_karpenter or bool(requirements and requirements.listed_types_only)

    @property
    def karpenter_requirements(self) -> tuple[list[str], int, list[int]] | None:
        """A Karpenter pool's categories, oldest generation and vCPU counts: as set, else from
        its instance types; None where neither says (a type whose shape is unknown here)."""
        explicit = self.instance_requirements or InstanceRequirementsSettings.model_construct()
        facts = [category_and_generation(t) for t in self.instance_types]
        known = [fact for fact in facts if fact is not None] if None not in facts else []
        shape = instance_shape(self.instance_types[0])
        categories = explicit.categories
        if categories is None and known:
            categories = sorted({category for category, _ in known})
        min_generation = explicit.min_generation
        if min_generation is None and known:
            min_generation = min(generation for _, generation in known)
        cpus = explicit.cpus if explicit.cpus is not None else [shape.vcpus] if shape else None
        if categories is None or min_generation is None or cpus is None:
            return None
        return categories, min_generation, cpus

    def shape_description(self) -> str:
        """The node jobs are sized for, as a message names it: the sizing instance type, or a
        Karpenter pool's smallest shape."""
        if self.uses_karpenter and not self.launches_listed_types_only and self.shape:
            return f"the smallest node: {self.shape.vcpus} vCPUs, {self.shape.memory_gib} GiB"
        return self.instance_types[0]

    def _first_unknown_type(self) -> str:
        """The first instance type whose category, generation or shape is not known here."""
        return next(
            (
                t
                for t in self.instance_types
                if category_and_generation(t) is None or instance_shape(t) is None
            ),
            self.instance_types[0],
        )

    @property
    def shape(self) -> InstanceShape | None:
        """The vCPU/memory shape jobs are sized for: the first (sizing) instance type's, or a
        Karpenter pool's smallest node; None when not known."""
        if self.launches_listed_types_only:
            return instance_shape(self.instance_types[0])
        requirements = self.karpenter_requirements
        # Categories without a known memory per vCPU are refused (_scaler_problems).
        if requirements is None or not set(requirements[0]) <= set(KARPENTER_CATEGORIES):
            return None
        categories, _, cpus = requirements
        return (
            smallest_node(karpenter_shapes(categories, cpus, self.architecture)) if cpus else None
        )

    @property
    def allocatable_ephemeral_storage(self) -> str:
        """The ephemeral storage a node of this pool really offers pods."""
        return f"{allocatable_ephemeral_storage_gib(self.disk_size_gib)}Gi"

    @property
    def advertised_ephemeral_storage(self) -> str:
        """What cluster-autoscaler is told an empty group's nodes offer."""
        return self.scale_from_zero_ephemeral_storage or self.allocatable_ephemeral_storage

    @property
    def node_allocatable(self) -> Resources | None:
        """CPU and memory a node of the pool offers pods (None when its shape is unknown)."""
        return node_allocatable(shape) if (shape := self.shape) is not None else None

    @property
    def daemonsets(self) -> Resources:
        """What the DaemonSets request on each node."""
        return Resources.of(self.daemonset_requests.cpu, self.daemonset_requests.memory)

    @property
    def helper_requests(self) -> Resources:
        """The helper's requests, which jobs cannot raise."""
        return Resources.of(self.helper_resources.cpu_request, self.helper_resources.memory_request)

    @property
    def configured_requests(self) -> tuple[Resources, Resources]:
        """The build container's and each service's requests before a job raises them."""
        build, service = self.build_resources, self.service_resources
        return (
            Resources.of(build.cpu_request, build.memory_request),
            Resources.of(service.cpu_request, service.memory_request),
        )

    @property
    def overwrite_ceiling(self) -> OverwriteCeiling | None:
        """Request ceilings (explicit, else the largest that fit a node with both at the
        ceiling) and limit ceilings (what a node has for one container); None when neither is
        known."""
        allocatable = self.node_allocatable
        if self.overwrite_max_allowed is not None:
            ceiling: OverwriteCeiling = {
                "cpu": self.overwrite_max_allowed.cpu,
                "memory": self.overwrite_max_allowed.memory,
            }
        elif allocatable is not None:
            fitting = fitting_request_ceiling(
                allocatable, self.daemonsets, self.helper_requests, *self.configured_requests
            )
            ceiling = {"cpu": f"{fitting.cpu_millis}m", "memory": f"{fitting.memory_mib}Mi"}
        else:
            return None
        if allocatable is not None:
            one_container = Resources(
                allocatable.cpu_millis
                - self.daemonsets.cpu_millis
                - self.helper_requests.cpu_millis,
                allocatable.memory_mib
                - self.daemonsets.memory_mib
                - self.helper_requests.memory_mib,
            )
            ceiling["cpu_limit"] = f"{one_container.cpu_millis}m"
            ceiling["memory_limit"] = f"{one_container.memory_mib}Mi"
        return ceiling

    def job_fit_problem(self) -> str | None:
        """Why a job at the request ceilings, or with the configured requests, fits no node."""
        allocatable, ceiling = self.node_allocatable, self.overwrite_ceiling
        if allocatable is None or ceiling is None:
            return None
        at_ceiling = Resources.of(ceiling["cpu"], ceiling["memory"])
        build, service = self.configured_requests
        # A job's request is the configured one, or a larger one up to the ceiling.
        return job_fit_problem(
            allocatable,
            self.daemonsets,
            self.helper_requests,
            build.at_least(at_ceiling),
            service.at_least(at_ceiling),
        )

    def monitored(self, job_namespace: str, scaler: str) -> MonitoredPool:
        """What the pool runs, as FleetMonitoring's alerts need it."""
        facts: MonitoredPool = {
            "name": self.name,
            "job_namespace": job_namespace,
            "scaler": scaler,
            "warm_capacity": self.warm_capacity is not None,
            "queuing_thresholds": bool(self.job_queuing_durations),
        }
        if self.expect_jobs is not None:
            facts["expect_jobs"] = self.expect_jobs.spec()
        if self.uses_karpenter and self.on_demand_fallback:
            facts["on_demand_fallback"] = True
        return facts

    def pause_pods_per_job(self) -> int:
        """Pause pods that together hold one job's build, helper and service requests.

        A pause pod requests only the build container's CPU and memory
        (executors/kubernetes/autoscaler/provider.go, runner 19.3), so one job needs several.
        """
        build = self.build_resources
        parts = (self.build_resources, self.helper_resources, self.service_resources)
        per_resource = []
        for request in ("cpu_request", "memory_request"):
            total = sum(quantity_value(getattr(p, request) or "0") for p in parts)
            per_resource.append(math.ceil(total / quantity_value(getattr(build, request) or "1")))
        return max(per_resource)

    def _scaler_problems(self, key: str) -> list[Problem]:
        """Keys of the other kind of capacity, and a Karpenter pool's instance rules."""
        if not self.uses_karpenter:
            # EKS's own limits on a managed node group, as SpotNodeGroup checks them.
            return (
                [
                    Problem(
                        f"{key}.{to_camel(name)}", f"is only used with scaler: karpenter; {why}"
                    )
                    for name, why in _KARPENTER_ONLY_KEYS.items()
                    if name in self.model_fields_set
                ]
                + [
                    Problem(f"{key}.labels", problem)
                    for problem in eks_label_problems(self.node_labels)
                ]
                + [
                    Problem(f"{key}.taints{problem.split(':', 1)[0]}", problem.split(": ", 1)[1])
                    for problem in eks_taint_problems(self.node_taints)
                ]
            )
        problems = [
            Problem(f"{key}.{to_camel(name)}", f"is not used with scaler: karpenter; {why}")
            for name, why in _NODE_GROUP_ONLY_KEYS.items()
            if name in self.model_fields_set
        ]
        problems += [
            Problem(f"{key}.labels", f"{problem}: a NodePool may not set it")
            for label in self.node_labels
            for problem in restricted_label_problems(label)
        ]
        explicit = self.instance_requirements
        requirements_key = f"{key}.instanceRequirements"
        if explicit and explicit.listed_types_only:
            problems += [
                Problem(
                    f"{requirements_key}.{to_camel(name)}",
                    "is not used with listedTypesOnly: true (exactly instanceTypes launch)",
                )
                for name in ("categories", "min_generation", "cpus")
                if getattr(explicit, name) is not None
            ]
        elif (requirements := self.karpenter_requirements) is None:
            problems.append(
                Problem(
                    f"{key}.instanceTypes",
                    f"{self._first_unknown_type()}'s category, generation or vCPUs are not known "
                    "here, so a NodePool cannot be derived from them: set "
                    "instanceRequirements.categories, minGeneration and cpus, or "
                    "listedTypesOnly: true",
                )
            )
        else:
            set_explicitly = explicit.model_fields_set if explicit else set()
            for message in karpenter_requirement_problems(*requirements):
                name, text = message.split(": ", 1)
                if name in set_explicitly:
                    problems.append(Problem(f"{requirements_key}.{to_camel(name)}", text))
                else:
                    # Derived from the listed types: the fix is there, or in the key.
                    problems.append(
                        Problem(
                            f"{key}.instanceTypes",
                            f"their {name.replace('_', ' ')} {text}; list other types or set "
                            f"instanceRequirements.{to_camel(name)}",
                        )
                    )
        return problems

    def problems(self, index: int) -> list[Problem]:
        """Rules that span several keys of this pool."""
        key = f"{POOLS_KEY}[{index}]"
        # The node group's own rules, as SpotNodeGroup checks them (build_nodes.py).
        problems = [
            Problem(f"{key}.{to_camel(argument)}", message.replace("max_size", f"{key}.maxSize"))
            for argument, message in group_size_problems(self.min_size, self.max_size)
        ]
        problems += self._scaler_problems(key)
        if not self.tags and not self.run_untagged:
            problems.append(
                Problem(
                    f"{key}.tags",
                    "must list the GitLab runner tags this pool serves (jobs pick a pool with "
                    "`tags:`), or set runUntagged: true; otherwise no job ever reaches it",
                )
            )
        if advertised := self.scale_from_zero_ephemeral_storage:
            problems += [
                Problem(
                    f"{key}.scaleFromZeroEphemeralStorage",
                    f"{message}. Leave it out to derive it from diskSizeGib",
                )
                for message in advertised_storage_problems(advertised, self.disk_size_gib)
            ]
        if quantity_value(self.ephemeral_storage_request) > quantity_value(
            self.advertised_ephemeral_storage
        ):
            problems.append(
                Problem(
                    f"{key}.ephemeralStorageRequest",
                    f"must fit on one node ({self.advertised_ephemeral_storage}), got "
                    f"{self.ephemeral_storage_request}",
                )
            )
        if fit := self.job_fit_problem():
            if self.overwrite_max_allowed is not None:
                fix = "lower cpu or memory, or leave it out for ceilings that fit"
                fit_key = f"{key}.overwriteMaxAllowed"
            else:
                larger = (
                    "larger instanceRequirements.cpus"
                    if self.uses_karpenter and not self.launches_listed_types_only
                    else "larger instance types"
                )
                fix = f"lower the build and service requests, or pick {larger}"
                fit_key = f"{key}.serviceResources"
            node = self.shape_description()
            problems.append(Problem(fit_key, f"{fit} ({node}); {fix}"))
        build = self.build_resources
        if self.warm_capacity and not (build.cpu_request and build.memory_request):
            problems.append(
                Problem(
                    f"{key}.buildResources",
                    "needs cpuRequest and memoryRequest with warmCapacity: pause pods are sized "
                    "from them",
                )
            )
        return problems

    @property
    def unknown_shape_warning(self) -> str | None:
        """A warning when some instance types' shapes cannot be checked here."""
        if unknown := unknown_shapes(self.instance_types):
            return (
                f"pools[{self.name}].instanceTypes: cannot check the vCPU/memory shape of "
                f"{', '.join(unknown)}; make sure every type matches {self.instance_types[0]}"
            )
        return None


def parse_pools(raw: Any) -> tuple[list[PoolSettings], list[Problem]]:
    """Validate the `pools` list; every problem carries its `pools[i].key` path."""
    if raw is None:
        raw = [{"name": DEFAULT_POOL_NAME, "runUntagged": True}]
    if not isinstance(raw, list) or not raw:
        return [], [
            Problem(POOLS_KEY, f"must be a non-empty list of pools ({{name, ...}}), got {raw!r}")
        ]
    pools: list[PoolSettings] = []
    problems: list[Problem] = []
    for index, item in enumerate(raw):
        key = f"{POOLS_KEY}[{index}]"
        try:
            pool = PoolSettings.model_validate(item)
        except ValidationError as error:
            problems.extend(describe_errors(key, PoolSettings, error))
            continue
        pools.append(pool)
        problems.extend(pool.problems(index))
    if len(pools) == len(raw):
        problems.extend(_cross_pool_problems(pools))
    return pools, problems


def _cross_pool_problems(pools: Sequence[PoolSettings]) -> list[Problem]:
    problems = []
    names = [pool.name for pool in pools]
    for index, pool in enumerate(pools):
        if names.index(pool.name) != index:
            problems.append(
                Problem(f"{POOLS_KEY}[{index}].name", f"repeats pool name {pool.name!r}")
            )
            continue
        for other_index, other in enumerate(pools[:index]):
            if _selects(pool.node_labels, other.node_labels) or _selects(
                other.node_labels, pool.node_labels
            ):
                problems.append(
                    Problem(
                        f"{POOLS_KEY}[{index}].labels",
                        f"overlap with {POOLS_KEY}[{other_index}] ({other.name}): one pool's "
                        "labels all appear on the other's nodes, so its jobs could land there; "
                        "give each pool a label the other lacks",
                    )
                )
    return problems


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())
