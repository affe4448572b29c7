"""Labels, taints, scale-from-zero tags and instance shapes of the build nodes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from components.build_nodes import (
    EKS_TAINT_EFFECTS,
    InstanceShape,
    Taint,
    ami_type_for,
    instance_shape,
    mixed_shape_problem,
    scale_from_zero_tags,
)
from components.kubernetes_names import label_key_problems

PREFIX = "k8s.io/cluster-autoscaler/node-template"


def test_default_recipe_tags() -> None:
    tags = scale_from_zero_tags(
        {"intent": "build", "nodegroup-type": "stateless", "instance-type": "spot"},
        [Taint(key="buildInstance", value="true", effect="NoSchedule")],
    )
    assert tags == {
        f"{PREFIX}/label/intent": "build",
        f"{PREFIX}/label/nodegroup-type": "stateless",
        f"{PREFIX}/label/instance-type": "spot",
        f"{PREFIX}/label/eks.amazonaws.com/capacityType": "SPOT",
        f"{PREFIX}/taint/buildInstance": "true:NoSchedule",
    }


def test_ephemeral_storage_is_advertised_only_when_given() -> None:
    assert f"{PREFIX}/resources/ephemeral-storage" not in scale_from_zero_tags({}, [])
    tags = scale_from_zero_tags({}, [], "90Gi")
    assert tags[f"{PREFIX}/resources/ephemeral-storage"] == "90Gi"


@pytest.mark.parametrize(
    ("effect", "eks_effect"),
    [
        ("NoSchedule", "NO_SCHEDULE"),
        ("PreferNoSchedule", "PREFER_NO_SCHEDULE"),
        ("NoExecute", "NO_EXECUTE"),
    ],
)
def test_taints_use_kubernetes_casing_in_tags_and_eks_casing_on_the_node_group(
    effect: str, eks_effect: str
) -> None:
    taint = Taint.model_validate({"key": "dedicated", "value": "ci", "effect": effect})
    assert taint.eks() == {"key": "dedicated", "value": "ci", "effect": eks_effect}
    assert scale_from_zero_tags({}, [taint])[f"{PREFIX}/taint/dedicated"] == f"ci:{effect}"


label_names = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
label_keys = st.one_of(
    label_names, st.tuples(label_names, label_names).map(lambda p: f"{p[0]}.example.com/{p[1]}")
)
taints = st.builds(
    Taint,
    key=label_keys,
    value=st.one_of(st.just(""), label_names),
    effect=st.sampled_from(sorted(EKS_TAINT_EFFECTS)),
)


@given(
    labels=st.dictionaries(label_keys, label_names, max_size=8),
    taint_list=st.lists(taints, max_size=8, unique_by=lambda t: t.key),
)
def test_tags_are_exactly_what_the_labels_and_taints_imply(
    labels: dict[str, str], taint_list: list[Taint]
) -> None:
    tags = scale_from_zero_tags(labels, taint_list)
    label_tags = {k.removeprefix(f"{PREFIX}/label/"): v for k, v in tags.items() if "/label/" in k}
    taint_tags = {k.removeprefix(f"{PREFIX}/taint/"): v for k, v in tags.items() if "/taint/" in k}
    assert label_tags == {**labels, "eks.amazonaws.com/capacityType": "SPOT"}
    assert taint_tags == {t.key: f"{t.value}:{t.effect}" for t in taint_list}
    assert len(tags) == len(label_tags) + len(taint_tags)


@pytest.mark.parametrize(
    ("instance_type", "shape"),
    [
        ("c5a.2xlarge", InstanceShape(8, 16, "x86_64")),
        ("c5.2xlarge", InstanceShape(8, 16, "x86_64")),
        ("c5ad.2xlarge", InstanceShape(8, 16, "x86_64")),
        ("c5d.2xlarge", InstanceShape(8, 16, "x86_64")),
        ("m5.2xlarge", InstanceShape(8, 32, "x86_64")),
        ("t3.2xlarge", InstanceShape(8, 32, "x86_64")),
        ("t3.large", InstanceShape(2, 8, "x86_64")),
        ("c5.9xlarge", InstanceShape(36, 72, "x86_64")),
        ("r6i.large", InstanceShape(2, 16, "x86_64")),
        ("m7g.xlarge", InstanceShape(4, 16, "arm64")),
        ("t4g.xlarge", InstanceShape(4, 16, "arm64")),
    ],
)
def test_known_instance_shapes(instance_type: str, shape: InstanceShape) -> None:
    assert instance_shape(instance_type) == shape


@pytest.mark.parametrize(
    "instance_type", ["c5n.2xlarge", "x2gd.xlarge", "m7i-flex.large", "t3.medium", "c5.metal"]
)
def test_types_with_irregular_shapes_are_unknown_rather_than_guessed(instance_type: str) -> None:
    assert instance_shape(instance_type) is None


def test_the_commonly_copied_list_mixes_shapes() -> None:
    problem = mixed_shape_problem(
        ["c5a.2xlarge", "t3.2xlarge", "c5.2xlarge", "c5ad.2xlarge", "m5.2xlarge", "c5d.2xlarge"]
    )
    assert problem is not None
    assert "c5a.2xlarge is 8 vCPU/16 GiB/x86_64 but t3.2xlarge is 8 vCPU/32 GiB/x86_64" in problem


def test_one_shape_is_fine_and_unknown_types_are_not_compared() -> None:
    assert mixed_shape_problem(["c5a.2xlarge", "c6i.2xlarge", "c5n.2xlarge"]) is None


def test_ami_type_follows_the_architecture() -> None:
    assert ami_type_for(["c6i.2xlarge"]) == "AL2023_x86_64_STANDARD"
    assert ami_type_for(["c7g.2xlarge"]) == "AL2023_ARM_64_STANDARD"


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        ("intent", True),
        ("example.com/intent", True),
        ("buildInstance", True),
        ("-intent", False),
        ("Example.com/intent", False),
        ("kubernetes.io/role", False),
        ("node.k8s.io/role", False),
        ("a" * 64, False),
    ],
)
def test_label_keys(key: str, valid: bool) -> None:
    assert (label_key_problems(key) == []) is valid
