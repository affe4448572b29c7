"""SpotNodeGroup: spot build capacity that cluster-autoscaler can scale up from zero."""

from typing import NotRequired, Optional, TypedDict

import pulumi
from pulumi_aws import autoscaling
from pulumi_aws import eks as aws_eks

from ..build_nodes import DEFAULT_DISK_SIZE_GIB, Taint, ami_type_for, scale_from_zero_tags
from .node_role import NodeRole


class TaintArgs(TypedDict):
    """A taint in Kubernetes casing: effect is NoSchedule, PreferNoSchedule or NoExecute."""

    key: str
    value: str
    effect: str


class SpotNodeGroupArgs(TypedDict):
    """Inputs of SpotNodeGroup."""

    cluster_name: pulumi.Input[str]
    """EKS cluster the group joins."""
    subnet_ids: pulumi.Input[list[str]]
    """Private subnets for the nodes."""
    instance_types: list[str]
    """Spot instance types, all of one vCPU/memory shape."""
    max_size: int
    """Maximum number of nodes."""
    min_size: NotRequired[int]
    """Minimum number of nodes. Default 0."""
    disk_size_gib: NotRequired[int]
    """Root volume size. Default 100 GiB."""
    labels: NotRequired[dict[str, str]]
    """Node labels."""
    taints: NotRequired[list[TaintArgs]]
    """Node taints."""
    node_role_arn: NotRequired[Optional[pulumi.Input[str]]]
    """Existing node role. Default: a new role with the three EKS worker managed policies."""
    scale_from_zero_ephemeral_storage: NotRequired[Optional[str]]
    """Ephemeral storage to advertise for scale-from-zero, e.g. `90Gi`."""
    tags: NotRequired[dict[str, str]]
    """Tags applied to the node group and the node role."""


class SpotNodeGroup(pulumi.ComponentResource):
    """An EKS managed node group of spot instances, labelled and tainted for CI builds.

    It starts at `min_size` (0 by default) and leaves its desired size to cluster-autoscaler.
    EKS does not copy node group tags to the group's Auto Scaling group, so the
    `k8s.io/cluster-autoscaler/node-template/...` tags that describe a node at size 0 are put
    on the Auto Scaling group itself with `aws.autoscaling.Tag`, and on the node group too.
    """

    node_group_name: pulumi.Output[str]
    """Name of the EKS node group."""
    autoscaling_group_name: pulumi.Output[str]
    """Name of the node group's Auto Scaling group."""
    node_role_arn: pulumi.Output[str]
    """ARN of the nodes' IAM role."""
    scale_from_zero_tags: pulumi.Output[dict[str, str]]
    """The node-template tags put on the Auto Scaling group."""

    def __init__(
        self, name: str, args: SpotNodeGroupArgs, opts: Optional[pulumi.ResourceOptions] = None
    ) -> None:
        super().__init__("gitlab-runner-fleet:index:SpotNodeGroup", name, None, opts)
        labels = args.get("labels", {})
        taints = [Taint.model_validate(taint) for taint in args.get("taints", [])]
        template_tags = scale_from_zero_tags(
            labels, taints, args.get("scale_from_zero_ephemeral_storage")
        )
        tags = args.get("tags", {})
        node_role_arn = (
            args.get("node_role_arn")
            or NodeRole(
                f"{name}-role",
                {"description": "EKS spot build nodes for GitLab CI jobs", "tags": tags},
                opts=pulumi.ResourceOptions(parent=self),
            ).role_arn
        )

        min_size = args.get("min_size", 0)
        node_group = aws_eks.NodeGroup(
            name,
            cluster_name=args["cluster_name"],
            node_role_arn=node_role_arn,
            subnet_ids=args["subnet_ids"],
            capacity_type="SPOT",
            instance_types=args["instance_types"],
            ami_type=ami_type_for(args["instance_types"]),
            disk_size=args.get("disk_size_gib", DEFAULT_DISK_SIZE_GIB),
            scaling_config={
                "min_size": min_size,
                "desired_size": min_size,
                "max_size": args["max_size"],
            },
            labels=labels,
            taints=[taint.eks() for taint in taints],
            tags={**tags, **template_tags},
            # cluster-autoscaler owns the desired size once the group exists.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["scalingConfig.desiredSize"]),
        )
        asg_name = node_group.resources.apply(
            lambda resources: resources[0].autoscaling_groups[0].name
        )
        for key, value in template_tags.items():
            autoscaling.Tag(
                f"{name}-{key}",
                autoscaling_group_name=asg_name,
                tag={"key": key, "value": value, "propagate_at_launch": False},
                opts=pulumi.ResourceOptions(parent=self),
            )

        self.node_group_name = node_group.node_group_name
        self.autoscaling_group_name = asg_name
        self.node_role_arn = pulumi.Output.from_input(node_role_arn)
        self.scale_from_zero_tags = pulumi.Output.from_input(template_tags)
        self.register_outputs(
            {
                "node_group_name": self.node_group_name,
                "autoscaling_group_name": self.autoscaling_group_name,
                "node_role_arn": self.node_role_arn,
                "scale_from_zero_tags": self.scale_from_zero_tags,
            }
        )
