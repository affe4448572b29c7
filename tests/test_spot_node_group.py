"""SpotNodeGroup under Pulumi mocks: the node group, its launch template, ASG tags and role."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from components.aws.spot_node_group import SpotNodeGroup, SpotNodeGroupArgs
from components.build_nodes import Taint, scale_from_zero_tags
from tests.harness import ProgramRun, run_program

LABELS = {"intent": "build", "nodegroup-type": "stateless", "instance-type": "spot"}
TAINTS = [{"key": "buildInstance", "value": "true", "effect": "NoSchedule"}]
INSTANCE_TYPES = ["c5a.2xlarge", "c5.2xlarge", "c6i.2xlarge"]


DISCOVERY = {"key": "gitlab-runner-fleet/autoscaler", "value": "gitlab-runner-fleet-prod"}


def declare(**overrides: Any) -> ProgramRun:
    args: SpotNodeGroupArgs = {
        "cluster_name": "ci-prod",
        "kubernetes_version": "1.34",
        "subnet_ids": ["subnet-1", "subnet-2"],
        "instance_types": INSTANCE_TYPES,
        "max_size": 12,
        "labels": LABELS,
        "taints": TAINTS,  # type: ignore[typeddict-item]
        "autoscaler_discovery_tag": DISCOVERY,  # type: ignore[typeddict-item]
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
    assert inputs["scalingConfig"] == {"minSize": 0, "desiredSize": 0, "maxSize": 12}
    assert group.ignore_changes == ["scalingConfig.desiredSize"]


def test_the_group_follows_the_clusters_kubernetes_version() -> None:
    # Without `version` a group stays on the minor it was created with, and EKS refuses the
    # next control-plane upgrade once nodes would fall outside the supported skew.
    assert declare().one("aws:eks/nodeGroup:NodeGroup").inputs["version"] == "1.34"
    assert (
        declare(kubernetes_version="1.35").one("aws:eks/nodeGroup:NodeGroup").inputs["version"]
        == "1.35"
    )


def test_replacement_creates_the_new_group_before_deleting_the_old() -> None:
    # instance types, disk, subnets, AMI and capacity type force a new node group
    # (terraform-provider-aws internal/service/eks/node_group.go ForceNew); with a fixed name
    # create-before-delete would clash, so the name is left to Pulumi's auto-naming.
    group = declare().one("aws:eks/nodeGroup:NodeGroup")
    assert "nodeGroupName" not in group.inputs
    assert "nodeGroupNamePrefix" not in group.inputs


def test_version_updates_finish_although_job_pdbs_block_the_drain() -> None:
    # Job PodDisruptionBudgets block EKS's drain; without force the update fails with
    # PodEvictionFailure after the 15-minute drain window (EKS managed node update behavior).
    inputs = declare().one("aws:eks/nodeGroup:NodeGroup").inputs
    assert inputs["forceUpdateVersion"] is True
    assert inputs["updateConfig"] == {"maxUnavailablePercentage": 33}
    assert (
        declare(force_update_version=False)
        .one("aws:eks/nodeGroup:NodeGroup")
        .inputs["forceUpdateVersion"]
        is False
    )


def test_build_nodes_require_imdsv2_with_hop_limit_one() -> None:
    run = declare()
    template = run.one("aws:ec2/launchTemplate:LaunchTemplate")
    # One hop: a container in a pod's network namespace is a hop further than the node, so
    # its IMDSv2 token request never comes back; IMDSv1 (no token) is refused outright.
    assert template.inputs["metadataOptions"] == {
        "httpEndpoint": "enabled",
        "httpTokens": "required",
        "httpPutResponseHopLimit": 1,
    }
    group = run.one("aws:eks/nodeGroup:NodeGroup")
    assert group.inputs["launchTemplate"]["id"] == "build-nodes-id"
    assert template.urn in group.dependencies


def test_the_disk_moves_into_the_launch_template() -> None:
    # With a launch template EKS refuses the node group's own disk size.
    run = declare(disk_size_gib=200)
    assert "diskSize" not in run.one("aws:eks/nodeGroup:NodeGroup").inputs
    (mapping,) = run.one("aws:ec2/launchTemplate:LaunchTemplate").inputs["blockDeviceMappings"]
    assert mapping["deviceName"] == "/dev/xvda"
    assert mapping["ebs"] == {
        "volumeSize": 200,
        "volumeType": "gp3",
        "encrypted": "true",
        "deleteOnTermination": "true",
    }


def test_instances_and_volumes_carry_the_pools_cost_tags() -> None:
    tags = {"project": "fleet", "stack": "prod", "pool": "arm64"}
    template = declare(instance_tags=tags).one("aws:ec2/launchTemplate:LaunchTemplate")
    assert template.inputs["tagSpecifications"] == [
        {"resourceType": "instance", "tags": tags},
        {"resourceType": "volume", "tags": tags},
    ]


def test_user_data_is_base64_in_the_launch_template() -> None:
    user_data = 'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"\n\n--b--\n'
    template = declare(user_data=user_data).one("aws:ec2/launchTemplate:LaunchTemplate")
    assert base64.b64decode(template.inputs["userData"]).decode() == user_data
    assert "userData" not in declare().one("aws:ec2/launchTemplate:LaunchTemplate").inputs


def test_labels_and_taints_go_on_the_node_group_in_eks_casing() -> None:
    inputs = declare().one("aws:eks/nodeGroup:NodeGroup").inputs
    assert inputs["labels"] == LABELS
    assert inputs["taints"] == [{"key": "buildInstance", "value": "true", "effect": "NO_SCHEDULE"}]


def test_scale_from_zero_tags_are_put_on_the_asg_and_the_node_group() -> None:
    run = declare(scale_from_zero_ephemeral_storage="88Gi")
    expected = scale_from_zero_tags(
        LABELS, [Taint.model_validate(t) for t in TAINTS], "x86_64", "88Gi"
    )
    expected[DISCOVERY["key"]] = DISCOVERY["value"]
    asg_tags = run.of_type("aws:autoscaling/tag:Tag")
    assert {t.inputs["tag"]["key"]: t.inputs["tag"]["value"] for t in asg_tags} == expected
    assert len(asg_tags) == len(expected) == 8
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
                "kubernetes_version": "1.34",
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


def test_a_pool_may_let_pods_reach_imds_with_hop_limit_two() -> None:
    # EKS user guide, launch-templates: containers that use IMDSv2 need a hop limit of 2,
    # one more than the node's own processes (DaemonSets outside the host network included).
    template = declare(imds_hop_limit=2).one("aws:ec2/launchTemplate:LaunchTemplate")
    assert template.inputs["metadataOptions"]["httpPutResponseHopLimit"] == 2
    assert template.inputs["metadataOptions"]["httpTokens"] == "required"


@pytest.mark.parametrize("hop_limit", [0, 3, 64])
def test_hop_limits_other_than_one_or_two_are_refused(hop_limit: int) -> None:
    run = run_program(
        lambda: SpotNodeGroup(
            "build-nodes",
            {
                "cluster_name": "ci",
                "kubernetes_version": "1.34",
                "subnet_ids": ["subnet-1"],
                "instance_types": ["c5.2xlarge"],
                "max_size": 1,
                "imds_hop_limit": hop_limit,
            },
        ),
        return_error=True,
    )
    assert f"imds_hop_limit: must be 1 or 2, got {hop_limit}" in str(run.error)
