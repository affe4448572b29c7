"""SpotNodeGroup under Pulumi mocks: the node group, its ASG tags and its node role."""

from __future__ import annotations

from typing import Any

import pytest

from components.aws.spot_node_group import SpotNodeGroup, SpotNodeGroupArgs
from components.build_nodes import Taint, scale_from_zero_tags
from tests.harness import ProgramRun, run_program

LABELS = {"intent": "build", "nodegroup-type": "stateless", "instance-type": "spot"}
TAINTS = [{"key": "buildInstance", "value": "true", "effect": "NoSchedule"}]
INSTANCE_TYPES = ["c5a.2xlarge", "c5.2xlarge", "c6i.2xlarge"]


def declare(**overrides: Any) -> ProgramRun:
    args: SpotNodeGroupArgs = {
        "cluster_name": "ci-prod",
        "subnet_ids": ["subnet-1", "subnet-2"],
        "instance_types": INSTANCE_TYPES,
        "max_size": 12,
        "labels": LABELS,
        "taints": TAINTS,  # type: ignore[typeddict-item]
        "tags": {"component": "build-nodes"},
    }
    args.update(overrides)  # type: ignore[typeddict-item]
    return run_program(lambda: SpotNodeGroup("build-nodes", args))


def test_node_group_is_spot_al2023_scaling_from_zero() -> None:
    group = declare().one("aws:eks/nodeGroup:NodeGroup")
    inputs = group.inputs
    assert inputs["clusterName"] == "ci-prod"
    assert inputs["capacityType"] == "SPOT"
    assert inputs["instanceTypes"] == INSTANCE_TYPES
    assert inputs["amiType"] == "AL2023_x86_64_STANDARD"
    assert inputs["subnetIds"] == ["subnet-1", "subnet-2"]
    assert inputs["diskSize"] == 100
    assert inputs["scalingConfig"] == {"minSize": 0, "desiredSize": 0, "maxSize": 12}
    assert group.ignore_changes == ["scalingConfig.desiredSize"]


def test_labels_and_taints_go_on_the_node_group_in_eks_casing() -> None:
    inputs = declare().one("aws:eks/nodeGroup:NodeGroup").inputs
    assert inputs["labels"] == LABELS
    assert inputs["taints"] == [{"key": "buildInstance", "value": "true", "effect": "NO_SCHEDULE"}]


def test_scale_from_zero_tags_are_put_on_the_asg_and_the_node_group() -> None:
    run = declare(scale_from_zero_ephemeral_storage="90Gi")
    expected = scale_from_zero_tags(LABELS, [Taint.model_validate(t) for t in TAINTS], "90Gi")
    asg_tags = run.of_type("aws:autoscaling/tag:Tag")
    assert {t.inputs["tag"]["key"]: t.inputs["tag"]["value"] for t in asg_tags} == expected
    assert len(asg_tags) == len(expected) == 6
    for tag in asg_tags:
        assert tag.inputs["autoscalingGroupName"] == "eks-build-nodes-mock-asg"
        assert tag.inputs["tag"]["propagateAtLaunch"] is False
    group_tags = run.one("aws:eks/nodeGroup:NodeGroup").inputs["tags"]
    assert group_tags == {"component": "build-nodes", **expected}


def test_a_node_role_with_the_three_worker_policies_is_created() -> None:
    run = declare()
    role = run.one("aws:iam/role:Role")
    assert '"Service": "ec2.amazonaws.com"' in role.inputs["assumeRolePolicy"]
    attachments = run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert sorted(a.inputs["policyArn"] for a in attachments) == [
        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
        "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
        "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    ]
    assert all(a.inputs["role"] == role.state["name"] for a in attachments)
    assert run.one("aws:eks/nodeGroup:NodeGroup").inputs["nodeRoleArn"] == role.state["arn"]


def test_a_given_node_role_is_used_as_is() -> None:
    arn = "arn:aws:iam::123456789012:role/existing-nodes"
    run = declare(node_role_arn=arn)
    assert run.of_type("aws:iam/role:Role") == []
    assert run.one("aws:eks/nodeGroup:NodeGroup").inputs["nodeRoleArn"] == arn


def test_graviton_types_get_the_arm_ami() -> None:
    group = declare(instance_types=["c7g.2xlarge", "c6g.2xlarge"]).one(
        "aws:eks/nodeGroup:NodeGroup"
    )
    assert group.inputs["amiType"] == "AL2023_ARM_64_STANDARD"


def test_everything_is_parented_inside_the_component() -> None:
    run = declare()
    component = run.one("gitlab-runner-fleet:index:SpotNodeGroup")
    role_component = run.one("gitlab-runner-fleet:index:NodeRole")
    for resource in run.resources:
        if resource is component:
            continue
        assert resource.parent in {component.urn, role_component.urn}, resource.name


def test_direct_use_with_an_invalid_taint_is_refused() -> None:
    run = run_program(
        lambda: SpotNodeGroup(
            "build-nodes",
            {
                "cluster_name": "ci",
                "subnet_ids": ["subnet-1"],
                "instance_types": ["c5.2xlarge"],
                "max_size": 1,
                "taints": [{"key": "k", "value": "v", "effect": "NO_SCHEDULE"}],
            },
        ),
        return_error=True,
    )
    assert "effect" in str(run.error)


@pytest.mark.parametrize("min_size", [0, 2])
def test_desired_size_starts_at_the_minimum(min_size: int) -> None:
    group = declare(min_size=min_size).one("aws:eks/nodeGroup:NodeGroup")
    assert group.inputs["scalingConfig"]["desiredSize"] == min_size
