"""A pool's build nodes: labels, taints, instance types and architecture, and what follows.

One definition per pool (`pools[i]` in the stack settings) feeds the pool's node group labels
and taints, the cluster-autoscaler's scale-from-zero tags on its Auto Scaling group, and the
runner's node selector, tolerations and affinity, which its pause pods copy. Pure functions:
no Pulumi runtime needed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from .karpenter import CAPACITY_TYPE_LABEL as KARPENTER_CAPACITY_TYPE_LABEL
from .karpenter import SPOT as KARPENTER_SPOT
from .kubernetes_names import (
    LabelKey,
    LabelValue,
    label_key_problems,
    label_value_problems,
    quantity_problems,
    quantity_value,
)

TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
# The EKS API spells effects differently from Kubernetes.
EKS_TAINT_EFFECTS: dict[str, str] = {
    "NoSchedule": "NO_SCHEDULE",
    "PreferNoSchedule": "PREFER_NO_SCHEDULE",
    "NoExecute": "NO_EXECUTE",
}
MAX_TAINTS_PER_NODE_GROUP = 50
# Room for images and Docker-in-Docker layers.
DEFAULT_DISK_SIZE_GIB = 100
POOL_LABEL = "gitlab-runner-fleet/pool"
"""Label (and taint) key whose value is the pool's name: the default that keeps pools apart."""

NODE_TEMPLATE_TAG_PREFIX = "k8s.io/cluster-autoscaler/node-template"
CAPACITY_TYPE_LABEL = "eks.amazonaws.com/capacityType"
"""Set by EKS on managed nodes: `SPOT` or `ON_DEMAND`."""
SPOT = "SPOT"
Architecture = Literal["x86_64", "arm64"]
KUBERNETES_ARCH = {"x86_64": "amd64", "arm64": "arm64"}
"""The `kubernetes.io/arch` label value kubelet sets for each EC2 architecture."""
ARCH_LABEL = "kubernetes.io/arch"
AMI_TYPES = {"x86_64": "AL2023_x86_64_STANDARD", "arm64": "AL2023_ARM_64_STANDARD"}
"""The Amazon Linux 2023 EKS AMI type for each architecture (`aws.eks.NodeGroup.ami_type`)."""


class Taint(BaseModel):
    """A Kubernetes taint on the build nodes, in Kubernetes casing (`NoSchedule`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: LabelKey
    value: LabelValue = ""
    effect: TaintEffect = "NoSchedule"

    def eks(self) -> dict[str, str]:
        """This taint as `aws.eks.NodeGroup` takes it."""
        return {"key": self.key, "value": self.value, "effect": EKS_TAINT_EFFECTS[self.effect]}


def scale_from_zero_tags(
    labels: Mapping[str, str],
    taints: Sequence[Taint],
    architecture: Architecture,
    ephemeral_storage: str | None = None,
) -> dict[str, str]:
    """The Auto Scaling group tags that let cluster-autoscaler build a node template at size 0.

    One `node-template/label/<key>` per label (including the spot capacity label EKS adds and
    the architecture kubelet will set), one `node-template/taint/<key>` = `<value>:<Effect>` per
    taint, and optionally the ephemeral storage a node offers.
    """
    node_labels = {**labels, CAPACITY_TYPE_LABEL: SPOT, ARCH_LABEL: KUBERNETES_ARCH[architecture]}
    tags = {f"{NODE_TEMPLATE_TAG_PREFIX}/label/{key}": value for key, value in node_labels.items()}
    tags.update(
        {f"{NODE_TEMPLATE_TAG_PREFIX}/taint/{t.key}": f"{t.value}:{t.effect}" for t in taints}
    )
    if ephemeral_storage:
        tags[f"{NODE_TEMPLATE_TAG_PREFIX}/resources/ephemeral-storage"] = ephemeral_storage
    return tags


@dataclass(frozen=True)
class InstanceShape:
    """What cluster-autoscaler compares between instance types: CPU, memory and architecture."""

    vcpus: int
    memory_gib: int
    architecture: Architecture

    def __str__(self) -> str:
        return f"{self.vcpus} vCPU/{self.memory_gib} GiB/{self.architecture}"


# EC2 instance type names: family (series letters, generation digit, attribute letters), a dot,
# a size. The processor is an attribute letter: `g` is AWS Graviton (arm64, e.g. c7g, c7gn,
# m7gd, r8g, t4g, x2gd, im4gn, is4gen, g5g, hpc7g), `a` AMD and `i` Intel; with none, Intel.
# Apple `mac*` hosts are not EKS nodes.
_INSTANCE_TYPE = re.compile(
    r"^(?P<series>[a-z]+?)(?P<generation>\d+)(?P<attributes>[a-z]*)(?P<option>(-[a-z0-9]+)*)\."
    r"(?P<size>nano|micro|small|medium|large|\d*xlarge|metal(-\d+xl)?)$"
)
# A1 is the first Graviton generation and the only one without `g` among its attributes.
_GRAVITON_WITHOUT_G = ("a1",)

# Current-generation compute (c), general purpose (m), memory (r) and burstable (t) families
# keep a fixed memory per vCPU across sizes. Variants with other ratios (c5n, x2, z1d, *-flex)
# are not listed, so they are reported as unknown rather than guessed.
_SIZED_FAMILY = re.compile(
    r"^(?P<kind>[cmr])(?P<generation>[5-8])(?P<variant>|a|d|ad|i|id|g|gd)\."
    r"(?P<size>large|xlarge|\d+xlarge)$"
)
_BURSTABLE_FAMILY = re.compile(
    r"^(?P<kind>t)(?P<generation>3|3a|4g)\.(?P<size>large|xlarge|2xlarge)$"
)
_GIB_PER_VCPU = {"c": 2, "m": 4, "r": 8, "t": 4}


def instance_architecture(instance_type: str) -> Architecture | None:
    """The CPU architecture of any EC2 instance type, from its family; None when not a type name.

    The rule reads the processor attribute of the family name, so it needs no table of
    families and covers Graviton generations that do not exist yet.
    """
    match = _INSTANCE_TYPE.match(instance_type)
    if match is None or match["series"] == "mac":
        return None
    family = instance_type.split(".", 1)[0]
    graviton = "g" in match["attributes"] or family in _GRAVITON_WITHOUT_G
    return "arm64" if graviton else "x86_64"


def instance_shape(instance_type: str) -> InstanceShape | None:
    """vCPU, memory and architecture of a well-known instance type; None when not known here."""
    match = _SIZED_FAMILY.match(instance_type) or _BURSTABLE_FAMILY.match(instance_type)
    architecture = instance_architecture(instance_type)
    if match is None or architecture is None:
        return None
    size = match["size"]
    vcpus = {"large": 2, "xlarge": 4}.get(size) or 4 * int(size.removesuffix("xlarge"))
    return InstanceShape(
        vcpus=vcpus, memory_gib=vcpus * _GIB_PER_VCPU[match["kind"]], architecture=architecture
    )


def instance_type_problem(instance_types: Sequence[str]) -> str | None:
    """Why these types cannot form one node group: unknown names, mixed architectures or shapes."""
    if unknown := [t for t in instance_types if instance_architecture(t) is None]:
        return (
            f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not an EC2 instance "
            "type usable by EKS (expected a name such as c6i.2xlarge or c7g.2xlarge)"
        )
    architectures = {t: instance_architecture(t) for t in instance_types}
    if len(set(architectures.values())) > 1:
        arm = [t for t, arch in architectures.items() if arch == "arm64"]
        x86 = [t for t, arch in architectures.items() if arch == "x86_64"]
        return (
            f"must all have one CPU architecture: {', '.join(arm)} arm64 (Graviton) but "
            f"{', '.join(x86)} x86_64; a pool runs one architecture (one node group AMI, its "
            "jobs' node selector and helper image), so put them in separate pools"
        )
    return mixed_shape_problem(instance_types)


def mixed_shape_problem(instance_types: Sequence[str]) -> str | None:
    """Why these types should not share a node group, or None when their known shapes agree."""
    shapes = {t: shape for t in instance_types if (shape := instance_shape(t)) is not None}
    if len(set(shapes.values())) <= 1:
        return None
    first, first_shape = next(iter(shapes.items()))
    other, other_shape = next((t, s) for t, s in shapes.items() if s != first_shape)
    return (
        "must all have the same vCPU, memory and architecture, because cluster-autoscaler "
        f"sizes the whole group from the first type: {first} is {first_shape} but "
        f"{other} is {other_shape}; split them into separate node groups"
    )


def unknown_shapes(instance_types: Sequence[str]) -> list[str]:
    """Instance types whose vCPU/memory shape this module cannot check."""
    return [t for t in instance_types if instance_shape(t) is None]


def group_architecture(instance_types: Sequence[str]) -> Architecture:
    """The one architecture of a validated list of instance types."""
    architecture = instance_architecture(instance_types[0])
    if architecture is None:
        raise ValueError(f"{instance_types[0]} is not an EC2 instance type")
    return architecture


def ami_type_for(instance_types: Sequence[str]) -> str:
    """The Amazon Linux 2023 EKS AMI type matching the instance types' architecture."""
    return AMI_TYPES[group_architecture(instance_types)]


# nodeadm's kubelet configuration (amazon-eks-ami nodeadm/internal/kubelet/config.go):
# evictionHard `nodefs.available: 10%` and `memory.available: 100Mi`; kubeReserved
# `ephemeral-storage: 1Gi`, memory `11 * maxPods + 255` Mi and CPU by a sliding scale of cores.
KUBELET_EVICTION_FRACTION = 0.10
RESERVED_EPHEMERAL_GIB = 1
EVICTION_MEMORY_MIB = 100
# The 10% is of the root filesystem, which is smaller than the EBS volume: partition table and
# boot partitions, and XFS keeps its log inside the filesystem (statfs leaves it out). Measured:
# a 20 GiB disk is a 20959212 KiB filesystem in amazon-eks-ami PR #1126; mkfs.xfs 6.1 takes a
# 64 MiB log of 20 GiB and 100 GiB, 100 MiB of 200 GiB. 1% covers both with room.
ROOT_FILESYSTEM_OVERHEAD_FRACTION = 0.01
GIB = 1024**3
MIB = 1024**2


def allocatable_ephemeral_storage_bytes(filesystem_bytes: int) -> int:
    """What kubelet reports as allocatable ephemeral storage for a root filesystem this size.

    Allocatable is the filesystem's capacity minus kube-reserved and the hard eviction
    threshold (amazon-eks-ami PR #1126: 20959212 KiB give 18242267924 bytes allocatable).
    """
    return int(filesystem_bytes * (1 - KUBELET_EVICTION_FRACTION)) - RESERVED_EPHEMERAL_GIB * GIB


def allocatable_ephemeral_storage_gib(disk_size_gib: int) -> int:
    """Whole GiB of ephemeral storage a build node with this root volume offers pods.

    cluster-autoscaler takes the advertised `node-template/resources/ephemeral-storage` as the
    node's allocatable as is (cloudprovider/aws/aws_manager.go), so advertising more than the
    node really has launches nodes the pending pod can never fit on. Rounded down from the
    allocatable of a filesystem `ROOT_FILESYSTEM_OVERHEAD_FRACTION` smaller than the disk.
    """
    filesystem = int(disk_size_gib * GIB * (1 - ROOT_FILESYSTEM_OVERHEAD_FRACTION))
    return max(1, allocatable_ephemeral_storage_bytes(filesystem) // GIB)


# The memory the kernel of an instance leaves below its nominal size (Karpenter's default
# VM_MEMORY_OVERHEAD_PERCENT, karpenter-provider-aws pkg/operator/options/options.go).
VM_MEMORY_OVERHEAD_FRACTION = 0.075
KUBELET_DEFAULT_MAX_PODS = 110
"""kubelet's default, and nodeadm's when it cannot look the instance type up."""
LARGEST_ENI_MAX_PODS = 15 * (50 - 1) + 2
"""nodeadm's `ENIs * (IPv4 per ENI - 1) + 2` for the largest sizes (15 ENIs of 50 addresses)."""


def assumed_max_pods(shape: InstanceShape) -> int:
    """An upper bound of the max pods nodeadm gives a node of this shape (kube-reserved memory
    grows with it): up to 8 vCPUs the ENI limit stays under kubelet's default 110."""
    return KUBELET_DEFAULT_MAX_PODS if shape.vcpus <= 8 else LARGEST_ENI_MAX_PODS


@dataclass(frozen=True)
class Resources:
    """CPU (millicores) and memory (MiB): requests, reservations or what a node offers."""

    cpu_millis: int
    memory_mib: int

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu_millis + other.cpu_millis, self.memory_mib + other.memory_mib)

    def __str__(self) -> str:
        return f"{self.cpu_millis}m CPU/{self.memory_mib}Mi"

    def at_least(self, other: Resources) -> Resources:
        """Each resource raised to `other`'s where that is larger."""
        return Resources(
            max(self.cpu_millis, other.cpu_millis), max(self.memory_mib, other.memory_mib)
        )

    @classmethod
    def of(cls, cpu: str | None, memory: str | None) -> Resources:
        """From Kubernetes quantities; unset counts as nothing (rounded up)."""
        return cls(
            cpu_millis=math.ceil(quantity_value(cpu) * 1000) if cpu else 0,
            memory_mib=math.ceil(quantity_value(memory) / MIB) if memory else 0,
        )


def kube_reserved_cpu_millis(vcpus: int) -> int:
    """nodeadm's kubeReserved CPU: 6% of the first core, 1% of the second, 0.5% of the next
    two and 0.25% of every further core (getCPUMillicoresToReserve)."""
    total = vcpus * 1000
    reserved = 0
    for start, end, percent_hundredths in ((0, 1000, 600), (1000, 2000, 100), (2000, 4000, 50)):
        reserved += max(0, min(total, end) - start) * percent_hundredths // 10000
    return reserved + max(0, total - 4000) * 25 // 10000


def node_allocatable(shape: InstanceShape, max_pods: int | None = None) -> Resources:
    """CPU and memory kubelet lets pods request on an EKS AL2023 node of this shape.

    Capacity less kube-reserved and the memory eviction threshold; the kernel's share of the
    nominal memory is estimated like Karpenter does. A plain function of the shape, so any
    provisioner's smallest node can be checked.
    """
    pods = max_pods if max_pods is not None else assumed_max_pods(shape)
    memory = shape.memory_gib * 1024 * (1 - VM_MEMORY_OVERHEAD_FRACTION)
    return Resources(
        cpu_millis=shape.vcpus * 1000 - kube_reserved_cpu_millis(shape.vcpus),
        memory_mib=int(memory) - (11 * pods + 255) - EVICTION_MEMORY_MIB,
    )


def job_fit_problem(
    allocatable: Resources,
    daemonsets: Resources,
    helper: Resources,
    build_max: Resources,
    service_max: Resources,
) -> str | None:
    """Why a job using its largest allowed build and service requests fits no node, or None.

    The scheduler adds up the requests of every container of the pod; cluster-autoscaler
    adds a node only if the pending pod fits one, so a pod larger than a node waits until
    the runner's poll_timeout and fails.
    """
    job = helper + build_max + service_max
    room = Resources(
        allocatable.cpu_millis - daemonsets.cpu_millis,
        allocatable.memory_mib - daemonsets.memory_mib,
    )
    if job.cpu_millis <= room.cpu_millis and job.memory_mib <= room.memory_mib:
        return None
    return (
        f"a job at the ceilings requests {job} (build {build_max}, service {service_max}, "
        f"helper {helper}), more than the {room} a node offers after kube-reserved, eviction "
        f"thresholds and DaemonSets ({daemonsets})"
    )


def fitting_request_ceiling(
    allocatable: Resources,
    daemonsets: Resources,
    helper: Resources,
    build: Resources = Resources(0, 0),
    service: Resources = Resources(0, 0),
) -> Resources:
    """The largest ceiling `c` for both the build and the service requests such that a job
    requesting `max(build, c)` and `max(service, c)` (its configured requests, or raised up to
    the ceiling) still fits one node with the helper and the DaemonSets."""

    def largest(room: int, configured: tuple[int, int]) -> int:
        if room // 2 >= max(configured):
            return room // 2
        # The larger configured request stays; the other container gets what is left.
        return max(0, room - max(configured))

    return Resources(
        cpu_millis=largest(
            allocatable.cpu_millis - daemonsets.cpu_millis - helper.cpu_millis,
            (build.cpu_millis, service.cpu_millis),
        ),
        memory_mib=largest(
            allocatable.memory_mib - daemonsets.memory_mib - helper.memory_mib,
            (build.memory_mib, service.memory_mib),
        ),
    )


IMDS_HOP_LIMITS = (1, 2)
"""1: only the node reaches the instance metadata service; 2: containers in pods do too."""
MIN_DISK_SIZE_GIB = 20
MAX_DISK_SIZE_GIB = 16384
"""The gp3 root volume's bounds (EC2 gp3: 1 GiB to 16 TiB; the AL2023 EKS AMI needs 20)."""
MAX_GROUP_SIZE = 1000


def instance_types_problems(instance_types: Sequence[str]) -> list[str]:
    """Why these types cannot make one node group: none, repeated, unknown, or of several
    architectures or shapes."""
    if not instance_types:
        return ["must list at least one instance type"]
    if duplicates := sorted({t for t in instance_types if list(instance_types).count(t) > 1}):
        return [f"must not repeat instance types, repeated: {', '.join(duplicates)}"]
    problem = instance_type_problem(instance_types)
    return [problem] if problem else []


def group_size_problems(min_size: int, max_size: int) -> list[tuple[str, str]]:
    """Why a group cannot have these sizes, by argument (`min_size`, `max_size`)."""
    problems = []
    if min_size < 0:
        problems.append(("min_size", f"must be >= 0, got {min_size}"))
    if not 1 <= max_size <= MAX_GROUP_SIZE:
        problems.append(("max_size", f"must be 1 to {MAX_GROUP_SIZE}, got {max_size}"))
    if not problems and min_size > max_size:
        problems.append(("min_size", f"must be <= max_size ({max_size}), got {min_size}"))
    return problems


def taints_problems(taints: Sequence[Mapping[str, Any] | Taint]) -> list[str]:
    """Why these cannot be a node group's taints: invalid ones, a key and effect twice, or more
    than EKS takes."""
    problems: list[str] = []
    parsed: list[Taint] = []
    for index, taint in enumerate(taints):
        try:
            parsed.append(taint if isinstance(taint, Taint) else Taint.model_validate(taint))
        except ValidationError as error:
            problems += [
                f"[{index}].{'.'.join(map(str, e['loc']))}: {e['msg']}"
                + ("" if isinstance(e["input"], Mapping) else f", got {e['input']!r}")
                for e in error.errors()
            ]
    seen = [(taint.key, taint.effect) for taint in parsed]
    if duplicates := sorted({pair for pair in seen if seen.count(pair) > 1}):
        problems.append(f"each key and effect may appear once, repeated: {duplicates}")
    if len(taints) > MAX_TAINTS_PER_NODE_GROUP:
        problems.append(f"at most {MAX_TAINTS_PER_NODE_GROUP} taints, got {len(taints)}")
    return problems


def advertised_storage_problems(advertised: str, disk_size_gib: int) -> list[str]:
    """Why cluster-autoscaler must not be told a node of this disk has `advertised` storage."""
    if problems := quantity_problems(advertised):
        return problems
    allocatable = allocatable_ephemeral_storage_gib(disk_size_gib)
    if quantity_value(advertised) > allocatable * GIB:
        return [
            f"must be <= {allocatable}Gi, what a {disk_size_gib} GiB disk offers pods after "
            f"kubelet's 10% eviction threshold and reservations, got {advertised}; "
            "cluster-autoscaler would launch nodes the job never fits on"
        ]
    return []


EKS_LABEL_MAX = 63
"""A managed node group's label keys and values, and its taint keys and values, are at most 63
characters each, and its label values at least 1 (EKS API Reference: CreateNodegroup `labels`,
Taint). Kubernetes allows longer prefixed keys and empty values; EKS refuses the node group."""


def eks_label_problems(labels: Mapping[str, str]) -> list[str]:
    """Why EKS refuses these as a managed node group's labels beyond Kubernetes' own rules."""
    problems = [
        f"{key!r}: EKS takes label keys of at most {EKS_LABEL_MAX} characters, got {len(key)}"
        for key in labels
        if len(key) > EKS_LABEL_MAX
    ]
    problems += [
        f"{key!r}: EKS takes no empty label value" for key, value in labels.items() if not value
    ]
    return problems


def eks_taint_problems(taints: Sequence[Mapping[str, Any] | Taint]) -> list[str]:
    """Why EKS refuses these as a managed node group's taints beyond Kubernetes' own rules."""
    problems = []
    for index, taint in enumerate(taints):
        fields = taint.model_dump() if isinstance(taint, Taint) else taint
        for field in ("key", "value"):
            text = fields.get(field)
            if isinstance(text, str) and len(text) > EKS_LABEL_MAX:
                problems.append(
                    f"[{index}].{field}: EKS takes taint {field}s of at most {EKS_LABEL_MAX} "
                    f"characters, got {len(text)}"
                )
    return problems


def spot_group_problems(
    *,
    instance_types: Sequence[str],
    min_size: int,
    max_size: int,
    disk_size_gib: int,
    labels: Mapping[str, str],
    taints: Sequence[Mapping[str, Any] | Taint],
    advertised_storage: str | None,
    imds_hop_limit: int,
) -> list[str]:
    """Every rule of one spot node group, each problem prefixed with its argument's name; the
    stack settings check a pool with the same functions."""
    problems = [f"instance_types: {p}" for p in instance_types_problems(instance_types)]
    problems += [f"{argument}: {p}" for argument, p in group_size_problems(min_size, max_size)]
    if not MIN_DISK_SIZE_GIB <= disk_size_gib <= MAX_DISK_SIZE_GIB:
        bounds = f"{MIN_DISK_SIZE_GIB} to {MAX_DISK_SIZE_GIB}"
        problems.append(f"disk_size_gib: must be {bounds}, got {disk_size_gib}")
    problems += [
        f"labels: {key!r}: {p}"
        for key, value in labels.items()
        for p in label_key_problems(key) + label_value_problems(value)
    ]
    problems += [f"labels: {p}" for p in eks_label_problems(labels)]
    problems += [
        f"taints{p}" if p.startswith("[") else f"taints: {p}" for p in taints_problems(taints)
    ]
    problems += [f"taints{p}" for p in eks_taint_problems(taints)]
    if advertised_storage is not None and not problems:
        problems += [
            f"scale_from_zero_ephemeral_storage: {p}"
            for p in advertised_storage_problems(advertised_storage, disk_size_gib)
        ]
    if imds_hop_limit not in IMDS_HOP_LIMITS:
        # More hops would let traffic relayed by a pod, or from further away, in as well.
        problems.append(f"imds_hop_limit: must be 1 or 2, got {imds_hop_limit}")
    return problems


def node_selector(labels: Mapping[str, str], architecture: Architecture) -> dict[str, str]:
    """What a job pod selects: its pool's labels and the pool's architecture.

    The runner picks the helper image's architecture from the job pod's `kubernetes.io/arch`
    node selector and defaults to amd64 (executors/kubernetes/kubernetes.go, runner 19.3), so
    an arm64 pool without it pulls the amd64 helper and every job fails.
    """
    return {**labels, ARCH_LABEL: KUBERNETES_ARCH[architecture]}


# --- Karpenter pools: which instance types a NodePool may launch --------------------------------

KARPENTER_CATEGORIES = ("c", "m", "r")
"""Instance categories a Karpenter pool may widen to: compute, general purpose and memory
optimised, whose memory per vCPU is fixed (`_GIB_PER_VCPU`). Burstable `t` types would throttle
builds once their CPU credits run out."""
MIN_KARPENTER_GENERATION = 5
"""The oldest generation a Karpenter pool may launch: Nitro instances of the shapes above (a
c4.2xlarge has 15 GiB, less than the shape a job is sized for)."""
NEWEST_KARPENTER_GENERATION = 8
"""The newest c, m and r generation EC2 offers (`_SIZED_FAMILY`): a pool asking for newer ones
would select no type, and Karpenter would launch nothing."""
EC2_SIZE_VCPUS = (2, 4, 8, 16, 32, 36, 48, 64, 72, 96, 128, 192)
"""The vCPU counts c, m and r sizes come in: large 2, xlarge 4, Nxlarge 4N for N in 2, 4, 8, 9,
12, 16, 18, 24, 32, 48. A NodePool asking for another count selects no type."""


def category_and_generation(instance_type: str) -> tuple[str, int] | None:
    """The Karpenter instance category (`c`) and generation (`6`) of a type whose shape is
    known here; None for the others (pkg/providers/instancetype/types.go reads both from the
    type's name)."""
    match = _SIZED_FAMILY.match(instance_type) or _BURSTABLE_FAMILY.match(instance_type)
    if match is None:
        return None
    return match["kind"], int(match["generation"][0])


def karpenter_requirement_problems(
    categories: Sequence[str], min_generation: int, cpus: Sequence[int]
) -> list[str]:
    """Why a Karpenter pool cannot launch from these categories, generations and vCPU counts,
    each problem prefixed with its name."""
    problems = []
    if not categories or not set(categories) <= set(KARPENTER_CATEGORIES):
        problems.append(
            f"categories: must be some of {', '.join(KARPENTER_CATEGORIES)} (memory per vCPU "
            f"known, no CPU credits), got {list(categories)}"
        )
    if min_generation < MIN_KARPENTER_GENERATION:
        problems.append(
            f"min_generation: must be at least {MIN_KARPENTER_GENERATION} (older types are "
            f"smaller than their size name says), got {min_generation}"
        )
    elif min_generation > NEWEST_KARPENTER_GENERATION:
        problems.append(
            f"min_generation: must be at most {NEWEST_KARPENTER_GENERATION}, the newest c, m "
            f"and r generation; newer selects no type, got {min_generation}"
        )
    if not cpus or any(cpu not in EC2_SIZE_VCPUS for cpu in cpus):
        sizes = ", ".join(map(str, EC2_SIZE_VCPUS))
        problems.append(
            f"cpus: must be vCPU counts c, m and r sizes come in ({sizes}); another selects no "
            f"type, got {list(cpus)}"
        )
    return problems


def karpenter_shapes(
    categories: Sequence[str], cpus: Sequence[int], architecture: Architecture
) -> list[InstanceShape]:
    """Every vCPU/memory shape a Karpenter pool of these categories and vCPU counts launches."""
    return sorted(
        {
            InstanceShape(
                vcpus=cpu, memory_gib=cpu * _GIB_PER_VCPU[category], architecture=architecture
            )
            for category in categories
            for cpu in cpus
        },
        key=lambda shape: (shape.vcpus, shape.memory_gib),
    )


def smallest_node(shapes: Sequence[InstanceShape]) -> InstanceShape:
    """The least of both vCPUs and memory among shapes: what every job must fit into."""
    return InstanceShape(
        vcpus=min(shape.vcpus for shape in shapes),
        memory_gib=min(shape.memory_gib for shape in shapes),
        architecture=shapes[0].architecture,
    )


def keep_off_build_nodes(pool_labels: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    """Node affinity that keeps a pod off spot capacity and off every pool's build nodes."""
    excluded: dict[str, list[str]] = {}
    for labels in pool_labels:
        for key, value in labels.items():
            excluded.setdefault(key, [])
            if value not in excluded[key]:
                excluded[key].append(value)
    # Spot nodes carry EKS's capacity label (managed node groups) or Karpenter's own.
    expressions = [
        {"key": CAPACITY_TYPE_LABEL, "operator": "NotIn", "values": [SPOT]},
        {"key": KARPENTER_CAPACITY_TYPE_LABEL, "operator": "NotIn", "values": [KARPENTER_SPOT]},
    ]
    expressions += [
        {"key": key, "operator": "NotIn", "values": values} for key, values in excluded.items()
    ]
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": expressions}]
            }
        }
    }
