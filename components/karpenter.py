"""Karpenter's v1 API as this project uses it: the names every folder agrees on (label keys, the
do-not-disrupt annotation, NodePool names) and a typed model of the NodePool
(`karpenter.sh/v1`) and EC2NodeClass (`karpenter.k8s.aws/v1`) objects. Pure: no Pulumi runtime.

The model is the project's own, written from the CRDs of Karpenter 1.14.1
(karpenter-provider-aws v1.14.1 `pkg/apis/crds/karpenter.sh_nodepools.yaml` and
`karpenter.k8s.aws_ec2nodeclasses.yaml`): their fields, enums, patterns, bounds and the CEL
rules that refuse an object at admission. `manifest_problems` checks an object against it, so a
field Karpenter does not know, a value it refuses, or a restricted label fails here instead of
at `pulumi up`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

NODE_POOL_API_VERSION = "karpenter.sh/v1"
NODE_POOL_KIND = "NodePool"
NODE_CLASS_GROUP = "karpenter.k8s.aws"
NODE_CLASS_API_VERSION = f"{NODE_CLASS_GROUP}/v1"
NODE_CLASS_KIND = "EC2NodeClass"

DO_NOT_DISRUPT_ANNOTATION = "karpenter.sh/do-not-disrupt"
"""`"true"` on a pod: Karpenter neither consolidates its node nor evicts it while it runs
(kubernetes-sigs/karpenter pkg/apis/v1/labels.go, pkg/utils/pod/scheduling.go)."""
CAPACITY_TYPE_LABEL = "karpenter.sh/capacity-type"
"""What Karpenter labels its nodes with instead of EKS's `eks.amazonaws.com/capacityType`."""
SPOT = "spot"
ON_DEMAND = "on-demand"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
INSTANCE_CATEGORY_LABEL = "karpenter.k8s.aws/instance-category"
INSTANCE_GENERATION_LABEL = "karpenter.k8s.aws/instance-generation"
INSTANCE_CPU_LABEL = "karpenter.k8s.aws/instance-cpu"
INSTANCE_MEMORY_LABEL = "karpenter.k8s.aws/instance-memory"
"""In MiB, as EC2 reports an instance type's memory (pkg/providers/instancetype/types.go)."""

NODE_POOL_NAME_PREFIX = "gitlab-runner-fleet-"
"""A pool's NodePool and EC2NodeClass are named this and the pool's name: apart from the
cluster's own NodePools (Karpenter's guides name theirs `default`)."""


def node_pool_name(pool: str) -> str:
    """The NodePool (and EC2NodeClass) of a pool; Karpenter's metrics carry it as `nodepool`."""
    return f"{NODE_POOL_NAME_PREFIX}{pool}"


# --- Values as the CRDs check them -------------------------------------------------------------

_DURATION = re.compile(r"^(([0-9]+(s|m|h))+|Never)$")
_GRACE_PERIOD = re.compile(r"^([0-9]+(s|m|h))+$")
_BUDGET_NODES = re.compile(r"^((100|[0-9]{1,2})%|[0-9]+)$")
_BUDGET_DURATION = re.compile(r"^((([0-9]+(h|m))|([0-9]+h[0-9]+m))(0s)?)$")
_BUDGET_SCHEDULE = re.compile(
    r"^(@(annually|yearly|monthly|weekly|daily|midnight|hourly))|((.+)\s(.+)\s(.+)\s(.+)\s(.+))$"
)
_QUALIFIED_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*(\/))?"
    r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$"
)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUANTITY = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_VOLUME_SIZE = re.compile(
    r"^((?:[1-9][0-9]{0,3}|[1-4][0-9]{4}|[5][0-8][0-9]{3}|59000)Gi|"
    r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|[6][0-3][0-9]{3}|64000)G|"
    r"([1-9]||[1-5][0-7]|58)Ti|([1-9]||[1-5][0-9]|6[0-3]|64)T)$"
)
_ALIAS = re.compile(r"^[a-zA-Z0-9]+@.+$")
ALIAS_FAMILIES = ("al2", "al2023", "bottlerocket", "windows2019", "windows2022", "windows2025")
AmiFamily = Literal[
    "AL2", "AL2023", "Bottlerocket", "Custom", "Windows2019", "Windows2022", "Windows2025"
]
# The label domains a NodePool's labels and requirements may not use (the CEL rules of
# `template.metadata.labels` and `requirements[].key`); Karpenter sets these itself.
_KARPENTER_SH_ALLOWED = ("karpenter.sh/capacity-type", "karpenter.sh/nodepool")
_KARPENTER_AWS_ALLOWED = tuple(
    f"karpenter.k8s.aws/{name}"
    for name in (
        "instance-tenancy", "capacity-reservation-type", "capacity-reservation-id",
        "capacity-reservation-interruptible", "ec2nodeclass",
        "instance-encryption-in-transit-supported", "instance-category", "instance-hypervisor",
        "instance-family", "instance-generation", "instance-local-nvme", "instance-size",
        "instance-cpu", "instance-cpu-manufacturer", "instance-cpu-sustained-clock-speed-mhz",
        "instance-memory", "instance-ebs-bandwidth", "instance-network-bandwidth",
        "instance-gpu-name", "instance-gpu-manufacturer", "instance-gpu-count",
        "instance-gpu-memory", "instance-accelerator-name", "instance-accelerator-manufacturer",
        "instance-accelerator-count", "instance-capability-flex", "placement-group-id",
        "placement-group-partition",
    )
)  # fmt: skip
NODE_POOL_TAG = "karpenter.sh/nodepool"
"""The tag (and node label) naming the NodePool of what Karpenter launches."""
NODE_CLAIM_TAG = "karpenter.sh/nodeclaim"
"""The tag naming the NodeClaim of an instance Karpenter launched."""
NODE_CLASS_TAG = "karpenter.k8s.aws/ec2nodeclass"
"""The tag naming the EC2NodeClass of an instance profile Karpenter created."""
EKS_CLUSTER_NAME_TAG = "eks:eks-cluster-name"
"""The tag with the cluster's name that Karpenter puts on what it launches."""
_RESTRICTED_TAGS = (EKS_CLUSTER_NAME_TAG, NODE_POOL_TAG, NODE_CLAIM_TAG, NODE_CLASS_TAG)


def duration_problems(value: str) -> list[str]:
    """Why Karpenter refuses `value` as consolidateAfter or expireAfter."""
    if _DURATION.match(value):
        return []
    return [f"must be hours, minutes and seconds such as 10m or 720h, or Never, got {value!r}"]


def grace_period_problems(value: str) -> list[str]:
    """Why Karpenter refuses `value` as terminationGracePeriod (no `Never`: it is a bound)."""
    if _GRACE_PERIOD.match(value):
        return []
    return [f"must be hours, minutes and seconds such as 2h or 90m, got {value!r}"]


def duration_seconds(value: str) -> int | None:
    """The seconds of a Karpenter duration; None for `Never`."""
    if value == "Never":
        return None
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(int(n) * units[unit] for n, unit in re.findall(r"(\d+)([hms])", value))


def restricted_label_problems(key: str) -> list[str]:
    """Why a NodePool may not carry or require the label `key` (Karpenter sets it itself)."""
    domain = key.split("/", 1)[0] if "/" in key else ""
    if key == NODE_POOL_TAG or (
        domain.endswith("karpenter.sh") and key not in _KARPENTER_SH_ALLOWED
    ):
        return [f'label domain "karpenter.sh" is restricted, got {key!r}']
    if key == "kubernetes.io/hostname":
        return ['label "kubernetes.io/hostname" is restricted']
    if domain.endswith("karpenter.k8s.aws") and key not in _KARPENTER_AWS_ALLOWED:
        return [f'label domain "karpenter.k8s.aws" is restricted, got {key!r}']
    return []


def restricted_tag_problems(key: str) -> list[str]:
    """Why an EC2NodeClass may not set the tag `key`: Karpenter tags with it itself and
    scopes its IAM policy by it."""
    if not key:
        return ["empty tag keys are not supported"]
    if key in _RESTRICTED_TAGS or key.startswith("kubernetes.io/cluster"):
        return [f"tag {key!r} is restricted (Karpenter sets it on everything it launches)"]
    return []


def _matching(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"must be {what}, got {value!r}")
        return value

    return AfterValidator(check)


def _no_problems(problems_of: Any) -> AfterValidator:
    def check(value: str) -> str:
        if problems := problems_of(value):
            raise ValueError("; ".join(problems))
        return value

    return AfterValidator(check)


def _not_empty(value: str) -> str:
    if value == "":
        raise ValueError("may not be empty")
    return value


def _quantity(value: str | int) -> str | int:
    if isinstance(value, str) and not _QUANTITY.match(value):
        raise ValueError(f"must be a Kubernetes quantity such as 64 or 128Gi, got {value!r}")
    return value


def _tags(tags: dict[str, str]) -> dict[str, str]:
    if any(key == "" or value == "" for key, value in tags.items()):
        raise ValueError("empty tag keys or values are not supported")
    return tags


Duration = Annotated[str, _no_problems(duration_problems)]
GracePeriod = Annotated[str, _no_problems(grace_period_problems)]
QualifiedName = Annotated[
    str, Field(max_length=316), _matching(_QUALIFIED_NAME, "a qualified name such as a/b")
]
LabelValue = Annotated[str, Field(max_length=63), _matching(_LABEL_VALUE, "a label value")]
RequirementKey = Annotated[QualifiedName, _no_problems(restricted_label_problems)]
QuantityValue = Annotated[str | int, AfterValidator(_quantity)]
NonEmpty = Annotated[str, AfterValidator(_not_empty)]
TagMap = Annotated[dict[str, str], Field(max_length=20), AfterValidator(_tags)]


class _Model(BaseModel):
    """An object of the API: camelCase keys, none but the CRD's own."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Metadata(_Model):
    """Both kinds are cluster-scoped: a name, labels and annotations only."""

    name: Annotated[str, Field(min_length=1, max_length=253)]
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


# --- NodePool (karpenter.sh/v1) ----------------------------------------------------------------


class NodeClassReference(_Model):
    group: Annotated[NonEmpty, _matching(re.compile(r"^[^/]*$"), "an API group without '/'")]
    kind: NonEmpty
    name: NonEmpty


class NodeSelectorRequirement(_Model):
    key: RequirementKey
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt", "Gte", "Lte"]
    values: list[LabelValue] = []
    min_values: Annotated[int, Field(ge=1, le=50)] | None = None

    @model_validator(mode="after")
    def _values_fit_the_operator(self) -> NodeSelectorRequirement:
        if self.operator == "In" and not self.values:
            raise ValueError("requirements with operator 'In' must have a value defined")
        if self.operator in ("Gt", "Lt", "Gte", "Lte") and not (
            len(self.values) == 1 and self.values[0].isdigit()
        ):
            raise ValueError(
                f"operator {self.operator!r} must have a single non-negative integer value"
            )
        if self.operator == "In" and self.min_values and len(self.values) < self.min_values:
            raise ValueError("'minValues' needs at least that many values")
        return self


class NodeTaint(_Model):
    key: Annotated[QualifiedName, Field(min_length=1)]
    value: Annotated[str, _matching(_QUALIFIED_NAME, "a taint value")] | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
    time_added: str | None = None


class NodeClaimTemplateSpec(_Model):
    node_class_ref: NodeClassReference
    requirements: Annotated[list[NodeSelectorRequirement], Field(max_length=100)]
    taints: list[NodeTaint] = []
    startup_taints: list[NodeTaint] = []
    expire_after: Duration = "720h"
    termination_grace_period: GracePeriod | None = None


class NodeClaimTemplateMetadata(_Model):
    labels: Annotated[dict[RequirementKey, LabelValue], Field(max_length=100)] = {}
    annotations: dict[str, str] = {}


class NodeClaimTemplate(_Model):
    metadata: NodeClaimTemplateMetadata = NodeClaimTemplateMetadata()
    spec: NodeClaimTemplateSpec


class Budget(_Model):
    nodes: Annotated[str, _matching(_BUDGET_NODES, "a count or a percentage")] = "10%"
    schedule: Annotated[str, _matching(_BUDGET_SCHEDULE, "a cron schedule")] | None = None
    duration: Annotated[str, _matching(_BUDGET_DURATION, "hours and minutes")] | None = None
    reasons: (
        Annotated[list[Literal["Underutilized", "Empty", "Drifted"]], Field(max_length=50)] | None
    ) = None

    @model_validator(mode="after")
    def _schedule_with_duration(self) -> Budget:
        if (self.schedule is None) != (self.duration is None):
            raise ValueError("'schedule' must be set with 'duration'")
        return self


class Disruption(_Model):
    consolidate_after: Duration
    consolidation_policy: Literal["WhenEmpty", "WhenEmptyOrUnderutilized", "Balanced"] = (
        "WhenEmptyOrUnderutilized"
    )
    budgets: Annotated[list[Budget], Field(max_length=50)] = [Budget()]


class NodePoolSpec(_Model):
    template: NodeClaimTemplate
    disruption: Disruption = Disruption(consolidate_after="0s")
    limits: dict[str, QuantityValue] = {}
    weight: Annotated[int, Field(ge=1, le=100)] | None = None
    replicas: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _static_pools(self) -> NodePoolSpec:
        if self.replicas is not None and (set(self.limits) - {"nodes"} or self.weight):
            raise ValueError("a static NodePool (replicas) takes only limits.nodes, no weight")
        return self


class NodePool(_Model):
    api_version: Literal["karpenter.sh/v1"]
    kind: Literal["NodePool"]
    metadata: Metadata
    spec: NodePoolSpec


# --- EC2NodeClass (karpenter.k8s.aws/v1) -------------------------------------------------------


class AmiSelectorTerm(_Model):
    alias: Annotated[str, Field(max_length=30)] | None = None
    id: Annotated[str, _matching(re.compile(r"ami-[0-9a-z]+"), "an AMI id")] | None = None
    name: str | None = None
    owner: str | None = None
    ssm_parameter: str | None = None
    tags: TagMap | None = None

    @model_validator(mode="after")
    def _one_way_to_select(self) -> AmiSelectorTerm:
        if not (self.tags or self.id or self.name or self.alias or self.ssm_parameter):
            raise ValueError("expected at least one of tags, id, name, alias, ssmParameter")
        others = self.tags or self.name or self.owner
        if self.id and (self.alias or others):
            raise ValueError("'id' is mutually exclusive with the other fields")
        if self.alias is not None:
            if self.id or others:
                raise ValueError("'alias' is mutually exclusive with the other fields")
            if not _ALIAS.match(self.alias):
                raise ValueError(f"alias must be family@version, got {self.alias!r}")
            family, version = self.alias.split("@", 1)
            if family not in ALIAS_FAMILIES:
                raise ValueError(f"alias family must be one of {', '.join(ALIAS_FAMILIES)}")
            if family.startswith("windows") and version != "latest":
                raise ValueError("windows families may only specify version 'latest'")
        return self


class BlockDevice(_Model):
    delete_on_termination: bool | None = None
    encrypted: bool | None = None
    iops: int | None = None
    kms_key_id: str | None = Field(None, alias="kmsKeyID")
    snapshot_id: str | None = Field(None, alias="snapshotID")
    throughput: int | None = None
    volume_initialization_rate: Annotated[int, Field(ge=100, le=300)] | None = None
    volume_size: Annotated[str, _matching(_VOLUME_SIZE, "a size such as 100Gi")] | None = None
    volume_type: Literal["standard", "io1", "io2", "gp2", "sc1", "st1", "gp3"] | None = None

    @model_validator(mode="after")
    def _sized(self) -> BlockDevice:
        if not (self.snapshot_id or self.volume_size):
            raise ValueError("snapshotID or volumeSize must be defined")
        if self.volume_initialization_rate is not None and not self.snapshot_id:
            raise ValueError("snapshotID must be set when volumeInitializationRate is set")
        return self


class BlockDeviceMapping(_Model):
    device_name: str | None = None
    ebs: BlockDevice | None = None
    root_volume: bool | None = None


class MetadataOptions(_Model):
    http_endpoint: Literal["enabled", "disabled"] = "enabled"
    http_protocol_ipv6: Literal["enabled", "disabled"] = Field("disabled", alias="httpProtocolIPv6")
    http_put_response_hop_limit: Annotated[int, Field(ge=1, le=64)] = 1
    http_tokens: Literal["required", "optional"] = "required"


class SubnetSelectorTerm(_Model):
    id: Annotated[str, _matching(re.compile(r"subnet-[0-9a-z]+"), "a subnet id")] | None = None
    tags: TagMap | None = None


class SecurityGroupSelectorTerm(_Model):
    id: Annotated[str, _matching(re.compile(r"sg-[0-9a-z]+"), "a security group id")] | None = None
    name: str | None = None
    tags: TagMap | None = None


def _terms(terms: list[Any], fields: tuple[str, ...]) -> list[Any]:
    """The CRD's list rules of selector terms: not empty, each selecting by something, `id`
    not mixed with other fields."""
    if not terms:
        raise ValueError("selector terms cannot be empty")
    for term in terms:
        if not any(getattr(term, name) for name in fields):
            raise ValueError(f"expected at least one of {', '.join(fields)}")
        if term.id and any(getattr(term, name) for name in fields if name != "id"):
            raise ValueError("'id' is mutually exclusive with the other fields of a term")
    return terms


class EC2NodeClassSpec(_Model):
    ami_family: AmiFamily | None = None
    ami_selector_terms: Annotated[list[AmiSelectorTerm], Field(min_length=1, max_length=30)]
    associate_public_ip_address: bool | None = Field(None, alias="associatePublicIPAddress")
    block_device_mappings: Annotated[list[BlockDeviceMapping], Field(max_length=50)] = []
    detailed_monitoring: bool | None = None
    instance_profile: NonEmpty | None = None
    role: NonEmpty | None = None
    metadata_options: MetadataOptions | None = None
    security_group_selector_terms: Annotated[
        list[SecurityGroupSelectorTerm],
        Field(max_length=30),
        AfterValidator(lambda terms: _terms(terms, ("id", "name", "tags"))),
    ]
    subnet_selector_terms: Annotated[
        list[SubnetSelectorTerm],
        Field(max_length=30),
        AfterValidator(lambda terms: _terms(terms, ("id", "tags"))),
    ]
    tags: dict[str, str] = {}
    user_data: str | None = None
    # Fields this project leaves alone, typed only as far as their shape.
    capacity_reservation_selector_terms: list[dict[str, Any]] | None = None
    connection_tracking: dict[str, Any] | None = None
    context: str | None = None
    cpu_options: dict[str, Any] | None = None
    instance_store_policy: Literal["RAID0"] | None = None
    ip_prefix_count: int | None = None
    kubelet: dict[str, Any] | None = None
    network_interfaces: list[dict[str, Any]] | None = None
    placement_group_selector: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _spec_rules(self) -> EC2NodeClassSpec:
        if (self.role is None) == (self.instance_profile is None):
            raise ValueError("must specify exactly one of ['role', 'instanceProfile']")
        aliases = [term.alias for term in self.ami_selector_terms if term.alias]
        if aliases and len(self.ami_selector_terms) != 1:
            raise ValueError("an 'alias' amiSelectorTerm must be the only term")
        if aliases and self.ami_family not in (None, "Custom"):
            family = aliases[0].split("@", 1)[0]
            if self.ami_family.lower() != family:
                raise ValueError(f"amiFamily must be Custom or match the alias family {family}")
        if not aliases and self.ami_family is None:
            raise ValueError("must specify amiFamily if amiSelectorTerms does not contain an alias")
        if sum(bool(mapping.root_volume) for mapping in self.block_device_mappings) > 1:
            raise ValueError("must have only one blockDeviceMappings with rootVolume")
        for key in self.tags:
            if problems := restricted_tag_problems(key):
                raise ValueError("; ".join(problems))
        return self


class EC2NodeClass(_Model):
    api_version: Literal["karpenter.k8s.aws/v1"]
    kind: Literal["EC2NodeClass"]
    metadata: Metadata
    spec: EC2NodeClassSpec


_MODELS: dict[str, type[_Model]] = {NODE_POOL_KIND: NodePool, NODE_CLASS_KIND: EC2NodeClass}


def manifest_problems(manifest: Mapping[str, Any]) -> list[str]:
    """Why Karpenter's API would refuse a NodePool or EC2NodeClass object, by field path."""
    model = _MODELS.get(str(manifest.get("kind")))
    if model is None:
        return [f"kind: must be one of {', '.join(_MODELS)}, got {manifest.get('kind')!r}"]
    try:
        model.model_validate(manifest)
    except ValidationError as error:
        return [
            f"{'.'.join(str(part) for part in detail['loc']) or '(object)'}: "
            + detail["msg"].removeprefix("Value error, ")
            for detail in error.errors()
        ]
    return []
