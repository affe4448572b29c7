"""KarpenterNodeRole: the IAM role of Karpenter's build nodes and their way into the cluster."""

from typing import NotRequired, Optional, TypedDict

import pulumi
from pulumi_aws import eks as aws_eks

from ..arguments import check_arguments
from .node_role import NodeRole

NODE_ACCESS_ENTRY_TYPE = "EC2_LINUX"
"""The access entry of a self-managed Linux node's role: EKS maps it to `system:nodes` itself,
and refuses groups, a username or access policies beside it (EKS CreateAccessEntry)."""


class KarpenterNodeRoleArgs(TypedDict):
    """Inputs of KarpenterNodeRole."""

    cluster_name: pulumi.Input[str]
    """The EKS cluster the nodes join (API or API_AND_CONFIG_MAP authentication)."""
    cni_policy: NotRequired[bool]
    """Attach `AmazonEKS_CNI_Policy`, for a VPC CNI without a role of its own. Default true."""
    tags: NotRequired[dict[str, str]]
    """Tags of the role and the access entry."""


class KarpenterNodeRole(pulumi.ComponentResource):
    """The role Karpenter's nodes run as (EC2NodeClass `role`: Karpenter creates the instance
    profile) and an EKS access entry of type EC2_LINUX, so the nodes may join a cluster that
    authenticates through access entries. Managed node groups get theirs from EKS; nodes that
    Karpenter launches do not."""

    role_arn: pulumi.Output[str]
    """ARN of the role; Karpenter's controller may pass only this one."""
    role_name: pulumi.Output[str]
    """Name of the role, for the EC2NodeClasses."""

    def __init__(
        self, name: str, args: KarpenterNodeRoleArgs, opts: Optional[pulumi.ResourceOptions] = None
    ) -> None:
        check_arguments("KarpenterNodeRole", name, args, KarpenterNodeRoleArgs)
        super().__init__("gitlab-runner-fleet:index:KarpenterNodeRole", name, None, opts)
        tags = args.get("tags", {})
        role = NodeRole(
            name,
            {
                "description": "Karpenter build nodes for GitLab CI jobs",
                "cni_policy": args.get("cni_policy", True),
                "tags": tags,
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        entry = aws_eks.AccessEntry(
            name,
            cluster_name=args["cluster_name"],
            principal_arn=role.role_arn,
            type=NODE_ACCESS_ENTRY_TYPE,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # Nodes launched before their policies and access entry exist never register: both
        # outputs resolve only once those do (the role's ARN waits for its attachments).
        self.role_arn = pulumi.Output.all(role.role_arn, entry.id).apply(lambda v: str(v[0]))
        self.role_name = pulumi.Output.all(role.role_name, self.role_arn).apply(lambda v: str(v[0]))
        self.register_outputs({"role_arn": self.role_arn, "role_name": self.role_name})
