"""Labels, taints, scale-from-zero tags and instance shapes of the build nodes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.build_nodes import (
    EKS_TAINT_EFFECTS,
    GIB,
    InstanceShape,
    Resources,
    Taint,
    allocatable_ephemeral_storage_bytes,
    allocatable_ephemeral_storage_gib,
    ami_type_for,
    fitting_request_ceiling,
    instance_architecture,
    instance_shape,
    instance_type_problem,
    job_fit_problem,
    keep_off_build_nodes,
    kube_reserved_cpu_millis,
    mixed_shape_problem,
    node_allocatable,
    node_selector,
    scale_from_zero_tags,
)
from components.kubernetes_names import label_key_problems, quantity_value

PREFIX = "k8s.io/cluster-autoscaler/node-template"


def test_default_recipe_tags() -> None:
    tags = scale_from_zero_tags(
        {"intent": "build", "nodegroup-type": "stateless", "instance-type": "spot"},
        [Taint(key="buildInstance", value="true", effect="NoSchedule")],
        "x86_64",
    )
    assert tags == {
        f"{PREFIX}/label/intent": "build",
        f"{PREFIX}/label/nodegroup-type": "stateless",
        f"{PREFIX}/label/instance-type": "spot",
        f"{PREFIX}/label/eks.amazonaws.com/capacityType": "SPOT",
        f"{PREFIX}/label/kubernetes.io/arch": "amd64",
        f"{PREFIX}/taint/buildInstance": "true:NoSchedule",
    }


def test_an_arm64_pool_advertises_its_architecture() -> None:
    tags = scale_from_zero_tags({"gitlab-runner-fleet/pool": "arm64"}, [], "arm64")
    assert tags[f"{PREFIX}/label/kubernetes.io/arch"] == "arm64"


def test_ephemeral_storage_is_advertised_only_when_given() -> None:
    assert f"{PREFIX}/resources/ephemeral-storage" not in scale_from_zero_tags({}, [], "x86_64")
    tags = scale_from_zero_tags({}, [], "x86_64", "89Gi")
    assert tags[f"{PREFIX}/resources/ephemeral-storage"] == "89Gi"


@pytest.mark.parametrize(("disk_gib", "allocatable_gib"), [(100, 88), (200, 177), (20, 16)])
def test_allocatable_ephemeral_storage_leaves_kubelets_eviction_threshold(
    disk_gib: int, allocatable_gib: int
) -> None:
    # kubelet's default hard eviction `nodefs.available<10%` of the filesystem plus the 1Gi
    # kube-reserved ephemeral storage of nodeadm (nodeadm/internal/kubelet/config.go).
    assert allocatable_ephemeral_storage_gib(disk_gib) == allocatable_gib


# amazon-eks-ami PR #1126, an empty node with a 20 GiB root volume: `df` shows a filesystem of
# 20959212 KiB, and with kubeReserved ephemeral-storage 1Gi the node reports 18242267924 bytes
# allocatable.
PR_1126_DISK_GIB = 20
PR_1126_FILESYSTEM_BYTES = 20959212 * 1024
PR_1126_ALLOCATABLE_BYTES = 18242267924


def test_the_allocatable_formula_reproduces_a_measured_node() -> None:
    computed = allocatable_ephemeral_storage_bytes(PR_1126_FILESYSTEM_BYTES)
    # `df` rounds to KiB: the formula agrees with kubelet to within one KiB.
    assert abs(computed - PR_1126_ALLOCATABLE_BYTES) < 1024


@pytest.mark.parametrize("disk_gib", [20, 30, 50, 100, 200, 500, 1000, 16384])
def test_scale_from_zero_never_advertises_more_than_the_node_has(disk_gib: int) -> None:
    # cluster-autoscaler builds an empty group's node from the advertised ephemeral storage
    # (cloudprovider/aws/aws_manager.go): a job requesting exactly that value must fit the node
    # that then boots. The filesystem is smaller than the disk at least in PR #1126's ratio.
    filesystem = disk_gib * GIB * PR_1126_FILESYSTEM_BYTES // (PR_1126_DISK_GIB * GIB)
    real_allocatable = allocatable_ephemeral_storage_bytes(filesystem)
    advertised = f"{allocatable_ephemeral_storage_gib(disk_gib)}Gi"
    assert quantity_value(advertised) <= real_allocatable
    # ...and wastes less than 2 GiB of it plus the filesystem margin.
    assert real_allocatable - quantity_value(advertised) < 2 * GIB + 0.01 * disk_gib * GIB


def test_kube_reserved_cpu_follows_nodeadms_sliding_scale() -> None:
    # nodeadm/internal/kubelet/config.go getCPUMillicoresToReserve: 6% of the first core, 1% of
    # the second, 0.5% of the third and fourth, 0.25% above.
    assert [kube_reserved_cpu_millis(v) for v in (1, 2, 4, 8, 16, 96)] == [
        60,
        70,
        80,
        90,
        110,
        310,
    ]


def test_node_allocatable_of_the_default_shape() -> None:
    shape = instance_shape("c5a.2xlarge")
    assert shape is not None
    # 8 vCPU less 90m kube-reserved; 16 GiB less 7.5% kernel share (Karpenter's default
    # VM_MEMORY_OVERHEAD_PERCENT), kube-reserved 11 * 110 + 255 Mi and the 100Mi eviction
    # threshold (nodeadm getMemoryMebibytesToReserve, evictionHard memory.available).
    assert node_allocatable(shape) == Resources(7910, 15155 - 1465 - 100)
    assert node_allocatable(shape, max_pods=58).memory_mib == 15155 - 893 - 100


def test_a_job_at_both_ceilings_must_fit_one_node() -> None:
    shape = instance_shape("c6i.2xlarge")
    assert shape is not None
    allocatable = node_allocatable(shape)
    daemonsets = Resources.of("300m", "512Mi")
    helper = Resources.of("200m", "256Mi")
    ceiling = fitting_request_ceiling(allocatable, daemonsets, helper)
    assert job_fit_problem(allocatable, daemonsets, helper, ceiling, ceiling) is None
    one_more = Resources(ceiling.cpu_millis + 1, ceiling.memory_mib)
    assert job_fit_problem(allocatable, daemonsets, helper, one_more, ceiling) is not None
    # The old default, the node's vCPUs minus one and 75% of its memory for each container.
    old = Resources.of("7", "12Gi")
    problem = job_fit_problem(allocatable, daemonsets, helper, old, old)
    assert problem is not None
    assert "14200m CPU/24832Mi" in problem


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
    tags = scale_from_zero_tags({}, [taint], "x86_64")
    assert tags[f"{PREFIX}/taint/dedicated"] == f"ci:{effect}"


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
@settings(derandomize=True, max_examples=50)  # the same examples on every run, CI included
def test_tags_are_exactly_what_the_labels_and_taints_imply(
    labels: dict[str, str], taint_list: list[Taint]
) -> None:
    tags = scale_from_zero_tags(labels, taint_list, "arm64")
    label_tags = {k.removeprefix(f"{PREFIX}/label/"): v for k, v in tags.items() if "/label/" in k}
    taint_tags = {k.removeprefix(f"{PREFIX}/taint/"): v for k, v in tags.items() if "/taint/" in k}
    assert label_tags == {
        **labels,
        "eks.amazonaws.com/capacityType": "SPOT",
        "kubernetes.io/arch": "arm64",
    }
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


@pytest.mark.parametrize(
    "instance_type",
    [
        # Every current Graviton family: the processor attribute `g` in the family name.
        "c7gn.2xlarge", "c7g.2xlarge", "m7g.medium", "c6g.large", "c6gd.xlarge", "c6gn.large",
        "m6g.large", "m6gd.large", "r6g.large", "r6gd.large", "r7g.large", "r7gd.large",
        "m7gd.large", "c7gd.large", "r8g.large", "c8g.large", "m8g.large", "x8g.large",
        "x2gd.xlarge", "t4g.medium", "im4gn.large", "is4gen.large", "i4g.large", "i8g.large",
        "g5g.xlarge", "hpc7g.4xlarge", "a1.large", "c8gn.large", "m7g.metal",
    ],
)  # fmt: skip
def test_every_graviton_family_is_arm64(instance_type: str) -> None:
    assert instance_architecture(instance_type) == "arm64"
    assert ami_type_for([instance_type]) == "AL2023_ARM_64_STANDARD"


@pytest.mark.parametrize(
    "instance_type",
    [
        "c5.2xlarge", "c5a.2xlarge", "c6i.large", "c6in.large", "c7i.large", "c7a.large",
        "m7i-flex.large", "r7iz.large", "g4dn.xlarge", "g5.xlarge", "g6e.xlarge", "p5.48xlarge",
        "inf2.xlarge", "trn1.2xlarge", "x2iedn.xlarge", "z1d.large", "t3.micro", "t3a.nano",
        "hpc6a.48xlarge", "c5.metal", "u7i-12tb.224xlarge",
    ],
)  # fmt: skip
def test_intel_and_amd_families_are_x86_64(instance_type: str) -> None:
    assert instance_architecture(instance_type) == "x86_64"


@pytest.mark.parametrize("instance_type", ["c6i", "2xlarge", "C6I.2XLARGE", "mac2.metal", ""])
def test_what_is_not_an_eks_instance_type_has_no_architecture(instance_type: str) -> None:
    assert instance_architecture(instance_type) is None


def test_a_list_mixing_architectures_is_refused_with_both_sides_named() -> None:
    problem = instance_type_problem(["c7g.2xlarge", "c6i.2xlarge", "c6g.2xlarge"])
    assert problem is not None
    assert "c7g.2xlarge, c6g.2xlarge arm64 (Graviton) but c6i.2xlarge x86_64" in problem


def test_an_unknown_instance_type_is_refused() -> None:
    problem = instance_type_problem(["c6i.2xlarge", "c6i.huge"])
    assert problem is not None
    assert "c6i.huge is not an EC2 instance type" in problem


def test_node_selector_carries_the_architecture_the_runner_picks_the_helper_by() -> None:
    # The runner chooses the helper image's architecture from the job pod's
    # `kubernetes.io/arch` node selector, default amd64 (executors/kubernetes/kubernetes.go).
    assert node_selector({"gitlab-runner-fleet/pool": "arm64"}, "arm64") == {
        "gitlab-runner-fleet/pool": "arm64",
        "kubernetes.io/arch": "arm64",
    }
    assert node_selector({}, "x86_64") == {"kubernetes.io/arch": "amd64"}


def test_system_pods_keep_off_every_pools_nodes() -> None:
    affinity = keep_off_build_nodes(
        [{"gitlab-runner-fleet/pool": "default"}, {"gitlab-runner-fleet/pool": "arm64", "x": "y"}]
    )
    (term,) = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert term["matchExpressions"] == [
        {"key": "eks.amazonaws.com/capacityType", "operator": "NotIn", "values": ["SPOT"]},
        {"key": "karpenter.sh/capacity-type", "operator": "NotIn", "values": ["spot"]},
        {"key": "gitlab-runner-fleet/pool", "operator": "NotIn", "values": ["default", "arm64"]},
        {"key": "x", "operator": "NotIn", "values": ["y"]},
    ]


def admits(term: dict[str, Any], labels: dict[str, str]) -> bool:
    """A node selector term as the scheduler reads it: NotIn also holds without the label
    (k8s.io/apimachinery labels.Requirement.Matches)."""
    return all(
        labels.get(e["key"]) not in e["values"] if e["operator"] == "NotIn" else False
        for e in term["matchExpressions"]
    )


def test_system_pods_keep_off_spot_nodes_of_either_scaler_and_any_pools_nodes() -> None:
    affinity = keep_off_build_nodes([{"gitlab-runner-fleet/pool": "default"}])
    (term,) = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    # The labels each kind of node carries: EKS labels a managed group's nodes
    # eks.amazonaws.com/capacityType, Karpenter its own nodes karpenter.sh/capacity-type
    # (kubernetes-sigs/karpenter pkg/apis/v1/labels.go) and the NodePool's template labels.
    nodes = {
        "system": {
            "gitlab-runner-fleet/node-role": "system",
            "eks.amazonaws.com/capacityType": "ON_DEMAND",
        },
        "managed spot": {"eks.amazonaws.com/capacityType": "SPOT"},
        "Karpenter spot, another team's": {"karpenter.sh/capacity-type": "spot"},
        "Karpenter on-demand fallback of a pool": {
            "karpenter.sh/capacity-type": "on-demand",
            "gitlab-runner-fleet/pool": "default",
        },
        "Karpenter on-demand, another team's": {"karpenter.sh/capacity-type": "on-demand"},
    }
    assert [name for name, labels in nodes.items() if admits(term, labels)] == [
        "system",
        "Karpenter on-demand, another team's",
    ]


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


def test_default_ceilings_leave_room_for_a_larger_configured_request() -> None:
    shape = instance_shape("c6i.xlarge")
    assert shape is not None
    allocatable, daemonsets = node_allocatable(shape), Resources.of("300m", "512Mi")
    helper, build, service = (
        Resources.of("200m", "256Mi"),
        Resources.of("250m", "512Mi"),
        Resources.of("2", "4Gi"),
    )
    ceiling = fitting_request_ceiling(allocatable, daemonsets, helper, build, service)
    # The service keeps its 4Gi; the build container may grow into what is left.
    assert ceiling.memory_mib == allocatable.memory_mib - 512 - 256 - 4096
    assert (
        job_fit_problem(
            allocatable, daemonsets, helper, build.at_least(ceiling), service.at_least(ceiling)
        )
        is None
    )
