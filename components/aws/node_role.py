"""NodeRole: the IAM role EC2 worker nodes of an EKS managed node group run as."""

import json
from typing import NotRequired, Optional, TypedDict

import pulumi
import pulumi_aws as aws
from pulumi_aws import iam

from ..arguments import check_arguments
from .iam_documents import ec2_trust_policy

# What a managed node needs to join the cluster and pull images from ECR.
NODE_MANAGED_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly")
CNI_POLICY = "AmazonEKS_CNI_Policy"
"""Lets the VPC CNI attach, detach, modify and delete any network interface in the account
(ec2:*NetworkInterface* on `*`): needed by the node role only while the CNI has no role of its
own, and then held by every pod that gets the node's credentials."""


def node_managed_policies(*, cni_policy: bool) -> tuple[str, ...]:
    """The AWS managed policies of a node role; the CNI's only where the CNI uses the node's."""
    return (*NODE_MANAGED_POLICIES, CNI_POLICY) if cni_policy else NODE_MANAGED_POLICIES


class NodeRoleArgs(TypedDict):
    """Inputs of NodeRole."""

    description: str
    """What the nodes are for; shown in the IAM console."""
    cni_policy: NotRequired[bool]
    """Attach `AmazonEKS_CNI_Policy`, for a VPC CNI without a role of its own. Default true."""
    tags: NotRequired[dict[str, str]]
    """Tags applied to the role."""


class NodeRole(pulumi.ComponentResource):
    """An EC2-assumable role with the AWS managed policies EKS worker nodes need: the worker
    node and ECR read-only policies, and the CNI policy unless the VPC CNI has its own role."""

    role_arn: pulumi.Output[str]
    """ARN of the role, for `aws.eks.NodeGroup.node_role_arn`."""
    role_name: pulumi.Output[str]
    """Name of the role."""

    def __init__(
        self, name: str, args: NodeRoleArgs, opts: Optional[pulumi.ResourceOptions] = None
    ) -> None:
        check_arguments("NodeRole", name, args, NodeRoleArgs)
        super().__init__("gitlab-runner-fleet:index:NodeRole", name, None, opts)
        role = iam.Role(
            name,
            description=args["description"],
            assume_role_policy=json.dumps(ec2_trust_policy()),
            tags=args.get("tags", {}),
            opts=pulumi.ResourceOptions(parent=self),
        )
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self))
        self._attachments = [
            iam.RolePolicyAttachment(
                f"{name}-{policy}",
                role=role.name,
                policy_arn=partition.partition.apply(
                    lambda part, policy=policy: f"arn:{part}:iam::aws:policy/{policy}"
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for policy in node_managed_policies(cni_policy=args.get("cni_policy", True))
        ]
        self.role_name = role.name
        # Nodes that launch before their policies are attached never join the cluster.
        self.role_arn = pulumi.Output.all(role.arn, *(a.id for a in self._attachments)).apply(
            lambda values: str(values[0])
        )
        self.register_outputs({"role_arn": self.role_arn, "role_name": self.role_name})
