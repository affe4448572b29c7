"""Components used as a library check their own arguments, with the settings' rules: one
error naming the component, its resource name and each argument, before anything is declared."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from components.arguments import ArgumentsError
from components.aws.cache_bucket import CacheBucket
from components.aws.spot_node_group import SpotNodeGroup
from provider.__main__ import COMPONENTS
from tests.harness import run_program

POOL: dict[str, Any] = {
    "cluster_name": "ci",
    "kubernetes_version": "1.34",
    "subnet_ids": ["subnet-1"],
    "instance_types": ["c7g.2xlarge", "c6g.2xlarge"],
    "max_size": 10,
}


def declared(component: Any, args: dict[str, Any]) -> Any:
    run = run_program(lambda: component("build-nodes-arm64", args), return_error=True)
    return run


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"instance_types": ["m7g.xlarge", "m6i.xlarge"]},
            "instance_types: must all have one CPU architecture: m7g.xlarge arm64 (Graviton) "
            "but m6i.xlarge x86_64",
        ),
        (
            {"instance_types": ["c7g.2xlarge", "c6g.2xlarg"]},
            "instance_types: c6g.2xlarg is not an EC2 instance type usable by EKS",
        ),
        (
            {"instance_types": ["c7g.2xlarge", "c7g.4xlarge"]},
            "instance_types: must all have the same vCPU, memory and architecture",
        ),
        ({"instance_types": []}, "instance_types: must list at least one instance type"),
        ({"min_size": -3}, "min_size: must be >= 0, got -3"),
        ({"min_size": 12}, "min_size: must be <= max_size (10), got 12"),
        ({"max_size": 0}, "max_size: must be 1 to 1000, got 0"),
        ({"disk_size_gib": 8}, "disk_size_gib: must be 20 to 16384, got 8"),
        (
            {"labels": {"kubernetes.io/role": "ci"}},
            "labels: 'kubernetes.io/role': the kubernetes.io and k8s.io prefixes are reserved",
        ),
        (
            {"taints": [{"key": "pool", "value": "arm64", "effect": "NoScheduled"}]},
            "taints[0].effect: Input should be 'NoSchedule', 'PreferNoSchedule' or 'NoExecute', "
            "got 'NoScheduled'",
        ),
        (
            {"taints": [{"key": "pool", "value": "a"}, {"key": "pool", "value": "b"}]},
            "taints: each key and effect may appear once",
        ),
        (
            {"scale_from_zero_ephemeral_storage": "95Gi"},
            "scale_from_zero_ephemeral_storage: must be <= 88Gi, what a 100 GiB disk offers",
        ),
        (
            {"scale_from_zero_ephemeral_storage": "lots"},
            "scale_from_zero_ephemeral_storage: must be a Kubernetes quantity",
        ),
        ({"imds_hop_limit": 3}, "imds_hop_limit: must be 1 or 2, got 3"),
        # EKS API Reference, CreateNodegroup labels and Taint: 63 characters, no empty label.
        (
            {"taints": [{"key": "ci.example.com/" + "k" * 49, "value": "x"}]},
            "taints[0].key: EKS takes taint keys of at most 63 characters, got 64",
        ),
        ({"labels": {"team": ""}}, "labels: 'team': EKS takes no empty label value"),
        (
            {"instance_tags": {"aws:team": "ci"}},
            "instance_tags['aws:team']: tag keys must be 1-128 characters and not start with 'aws:'",
        ),
        (
            {"node_role_arn": "arn:aws:iam::123456789012:role/nodes", "node_cni_policy": False},
            "node_cni_policy: only for the node role the group creates",
        ),
        ({"max_sizes": 10}, "max_sizes: unknown argument, did you mean max_size?"),
        # Wrong types, named before they reach a comparison deep inside the component.
        ({"max_size": "10"}, "max_size: must be a whole number, got str '10'"),
        ({"min_size": True}, "min_size: must be a number, got bool True"),
        ({"labels": ["a=b"]}, "labels: must be a dict, got list ['a=b']"),
        ({"tags": None}, "tags: must be a dict, got NoneType None"),
        (
            {"instance_types": "c6i.2xlarge"},
            "instance_types: must be a list, got str 'c6i.2xlarge'",
        ),
        ({"taints": {"key": "pool"}}, "taints: must be a list, got dict"),
        ({"taints": [{"key": "pool", "efect": "NoSchedule"}]}, "taints[0].efect: unknown argument"),
    ],
)
def test_a_spot_node_group_refuses_what_the_settings_refuse(
    change: dict[str, Any], message: str
) -> None:
    run = declared(SpotNodeGroup, {**POOL, **change})
    assert isinstance(run.error, ArgumentsError)
    assert str(run.error).startswith("SpotNodeGroup 'build-nodes-arm64': invalid arguments")
    assert message in str(run.error)
    assert run.resources == []


def test_a_missing_argument_is_named() -> None:
    args = {key: value for key, value in POOL.items() if key != "max_size"}
    run = declared(SpotNodeGroup, args)
    assert isinstance(run.error, ArgumentsError)
    assert run.error.problems == ["max_size: required"]


def test_every_problem_is_reported_at_once() -> None:
    run = declared(SpotNodeGroup, {**POOL, "min_size": -1, "disk_size_gib": 1, "imds_hop_limit": 0})
    assert isinstance(run.error, ArgumentsError)
    assert [p.split(":")[0] for p in run.error.problems] == [
        "min_size",
        "disk_size_gib",
        "imds_hop_limit",
    ]


def test_an_unknown_key_does_not_hide_the_other_problems() -> None:
    run = declared(SpotNodeGroup, {**POOL, "instnace_tags": {}, "min_size": -3})
    assert isinstance(run.error, ArgumentsError)
    assert run.error.problems == [
        "instnace_tags: unknown argument, did you mean instance_tags?",
        "min_size: must be >= 0, got -3",
    ]


def test_outputs_pass_where_inputs_are_declared() -> None:
    """Values known only at deployment (another resource's outputs) cannot be checked."""
    run = run_program(
        lambda: SpotNodeGroup(
            "build-nodes-arm64",
            {
                **POOL,  # type: ignore[typeddict-item]
                "cluster_name": pulumi.Output.from_input("ci"),
                "subnet_ids": pulumi.Output.from_input(["subnet-1"]),
                "tags": {"team": pulumi.Output.from_input("ci")},
            },
        ),
        return_error=True,
    )
    assert run.error is None


def test_a_cache_bucket_names_a_wrong_type() -> None:
    wrong: Any = {"expiration_days": "30"}
    run = run_program(lambda: CacheBucket("cache", wrong), return_error=True)
    assert isinstance(run.error, ArgumentsError)
    assert "expiration_days: must be a whole number, got str '30'" in run.error.problems


def test_valid_arguments_declare_the_group() -> None:
    run = declared(SpotNodeGroup, POOL)
    assert run.error is None
    assert run.one("aws:eks/nodeGroup:NodeGroup").inputs["instanceTypes"] == POOL["instance_types"]


@pytest.mark.parametrize("component", COMPONENTS, ids=lambda component: component.__name__)
def test_every_component_names_an_unknown_argument_before_declaring_anything(
    component: Any,
) -> None:
    """Every component the package serves (provider/__main__.py) checks its own arguments as
    an importing repo calls it: an unknown key is named, with the component and its name."""
    run = declared(component, {"not_an_argument": 1})
    assert isinstance(run.error, ArgumentsError), run.error
    assert str(run.error).startswith(f"{component.__name__} ")
    assert "not_an_argument: unknown argument" in str(run.error)
    assert run.resources == []
