"""The build nodes' labels, taints and instance shapes, and what follows from them.

One definition (`BuildNodeSettings.labels`/`taints` in the stack settings) feeds the node group's
labels and taints, the cluster-autoscaler's scale-from-zero tags on its Auto Scaling group, and
the runner's tolerations and node affinity. Pure functions: no Pulumi runtime needed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .kubernetes_names import LabelKey, LabelValue

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

NODE_TEMPLATE_TAG_PREFIX = "k8s.io/cluster-autoscaler/node-template"
CAPACITY_TYPE_LABEL = "eks.amazonaws.com/capacityType"
"""Set by EKS on managed nodes: `SPOT` or `ON_DEMAND`."""
SPOT = "SPOT"


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
    labels: Mapping[str, str], taints: Sequence[Taint], ephemeral_storage: str | None = None
) -> dict[str, str]:
    """The Auto Scaling group tags that let cluster-autoscaler build a node template at size 0.

    One `node-template/label/<key>` per label (including the spot capacity label EKS adds),
    one `node-template/taint/<key>` = `<value>:<Effect>` per taint, and optionally the
    ephemeral storage a node offers.
    """
    tags = {
        f"{NODE_TEMPLATE_TAG_PREFIX}/label/{key}": value
        for key, value in {**labels, CAPACITY_TYPE_LABEL: SPOT}.items()
    }
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
    architecture: Literal["x86_64", "arm64"]

    def __str__(self) -> str:
        return f"{self.vcpus} vCPU/{self.memory_gib} GiB/{self.architecture}"


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


def instance_shape(instance_type: str) -> InstanceShape | None:
    """vCPU, memory and architecture of a well-known instance type; None when not known here."""
    match = _SIZED_FAMILY.match(instance_type) or _BURSTABLE_FAMILY.match(instance_type)
    if match is None:
        return None
    size = match["size"]
    vcpus = {"large": 2, "xlarge": 4}.get(size) or 4 * int(size.removesuffix("xlarge"))
    graviton = "g" in match.groupdict().get("variant", "") or match["generation"] == "4g"
    return InstanceShape(
        vcpus=vcpus,
        memory_gib=vcpus * _GIB_PER_VCPU[match["kind"]],
        architecture="arm64" if graviton else "x86_64",
    )


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
    """Instance types whose shape this module cannot check."""
    return [t for t in instance_types if instance_shape(t) is None]


def ami_type_for(instance_types: Sequence[str]) -> str:
    """The Amazon Linux 2023 EKS AMI type matching the instance types' architecture."""
    shape = instance_shape(instance_types[0])
    arm = shape is not None and shape.architecture == "arm64"
    return "AL2023_ARM_64_STANDARD" if arm else "AL2023_x86_64_STANDARD"


def keep_off_build_nodes(build_labels: Mapping[str, str]) -> dict[str, Any]:
    """Node affinity that keeps a pod off spot capacity and off nodes carrying build labels."""
    expressions = [{"key": CAPACITY_TYPE_LABEL, "operator": "NotIn", "values": [SPOT]}]
    expressions += [
        {"key": key, "operator": "NotIn", "values": [value]} for key, value in build_labels.items()
    ]
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": expressions}]
            }
        }
    }
