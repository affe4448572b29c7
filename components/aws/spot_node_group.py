"""SpotNodeGroup: one pool's spot build capacity, which cluster-autoscaler scales from zero."""

import base64
from typing import NotRequired, Optional, TypedDict

import pulumi
from pulumi_aws import autoscaling, ec2
from pulumi_aws import eks as aws_eks

from ..arguments import check_arguments
from ..build_nodes import (
    DEFAULT_DISK_SIZE_GIB,
    Taint,
    ami_type_for,
    group_architecture,
    scale_from_zero_tags,
    spot_group_problems,
)
from ..naming import TagArgs, tag_problems
from .node_role import NodeRole

# AL2023 EKS AMIs boot from /dev/xvda; with a launch template the disk size lives here.
ROOT_DEVICE = "/dev/xvda"
DEFAULT_IMDS_HOP_LIMIT = 1
"""One hop: the node itself reaches the instance metadata service, a pod's network namespace
(one more hop) does not, so jobs cannot take the node role's credentials."""
UPDATE_MAX_UNAVAILABLE_PERCENTAGE = 33


class TaintArgs(TypedDict):
    """A taint in Kubernetes casing."""

    key: str
    value: NotRequired[str]
    """Default empty."""
    # A str, not a Literal: the component provider's schema inference takes no Literal.
    effect: NotRequired[str]
    """`NoSchedule` (default), `PreferNoSchedule` or `NoExecute`."""


class SpotNodeGroupArgs(TypedDict):
    """Inputs of SpotNodeGroup."""

    cluster_name: pulumi.Input[str]
    """EKS cluster the group joins."""
    kubernetes_version: pulumi.Input[str]
    """Kubernetes minor of the nodes, e.g. `1.34`; keep it the cluster's."""
    subnet_ids: pulumi.Input[list[str]]
    """Private subnets for the nodes."""
    instance_types: list[str]
    """Spot instance types, all of one vCPU/memory shape and architecture."""
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
    """Existing node role. Default: a new role with the EKS worker managed policies."""
    node_cni_policy: NotRequired[bool]
    """Give the new node role `AmazonEKS_CNI_Policy` (the VPC CNI has no role of its own).
    Default true."""
    scale_from_zero_ephemeral_storage: NotRequired[Optional[str]]
    """Ephemeral storage to advertise for scale-from-zero, e.g. `89Gi`."""
    autoscaler_discovery_tag: NotRequired[Optional[TagArgs]]
    """The Auto Scaling group tag cluster-autoscaler discovers this stack's groups by."""
    user_data: NotRequired[Optional[pulumi.Input[str]]]
    """MIME multi-part user data for nodeadm (AL2023), e.g. containerd registry mirrors."""
    instance_tags: NotRequired[dict[str, str]]
    """Tags of the EC2 instances and their volumes (cost allocation per pool)."""
    imds_hop_limit: NotRequired[int]
    """IMDSv2 response hop limit: 1 (default) keeps pods off the metadata service, 2 lets
    containers in pods reach it too (EKS user guide, launch-templates: containers that use
    IMDSv2 need 2)."""
    force_update_version: NotRequired[bool]
    """Finish version updates even when job PodDisruptionBudgets block the drain. Default true."""
    tags: NotRequired[dict[str, str]]
    """Tags applied to the node group, its launch template and the node role."""


def _role_and_tag_problems(args: SpotNodeGroupArgs) -> list[str]:
    problems = [
        f"{argument}[{key!r}]: {problem}"
        for argument, tags in (
            ("tags", args.get("tags", {})),
            ("instance_tags", args.get("instance_tags", {})),
        )
        for key, value in tags.items()
        # An Output's value is known only at deployment.
        for problem in tag_problems(key, "" if isinstance(value, pulumi.Output) else value)
    ]
    if args.get("node_role_arn") and "node_cni_policy" in args:
        # The policy goes only on the role the group creates.
        problems.append(
            "node_cni_policy: only for the node role the group creates; with node_role_arn the "
            "given role's own policies decide"
        )
    return problems


class SpotNodeGroup(pulumi.ComponentResource):
    """An EKS managed node group of spot instances for one pool of CI builds.

    A launch template requires IMDSv2 with a hop limit of 1 by default (jobs cannot reach the
    node's credentials), carries the root volume, the nodes' user data and the per-pool cost tags.
    The group starts at `min_size` (0 by default) and leaves its desired size to
    cluster-autoscaler. EKS does not copy node group tags to the group's Auto Scaling group, so
    the `k8s.io/cluster-autoscaler/node-template/...` tags that describe a node at size 0 and the
    stack's discovery tag are put on the Auto Scaling group itself with `aws.autoscaling.Tag`.
    The group has no fixed name, so a change that forces a new group (instance types, subnets,
    AMI or capacity type) creates the new one before deleting the old.
    """

    node_group_name: pulumi.Output[str]
    """Name of the EKS node group."""
    autoscaling_group_name: pulumi.Output[str]
    """Name of the node group's Auto Scaling group."""
    node_role_arn: pulumi.Output[str]
    """ARN of the nodes' IAM role."""
    launch_template_id: pulumi.Output[str]
    """ID of the nodes' launch template."""
    scale_from_zero_tags: pulumi.Output[dict[str, str]]
    """The node-template tags put on the Auto Scaling group."""

    def __init__(
        self, name: str, args: SpotNodeGroupArgs, opts: Optional[pulumi.ResourceOptions] = None
    ) -> None:
        check_arguments(
            "SpotNodeGroup",
            name,
            args,
            SpotNodeGroupArgs,
            lambda: (
                spot_group_problems(
                    instance_types=args["instance_types"],
                    min_size=args.get("min_size", 0),
                    max_size=args["max_size"],
                    disk_size_gib=args.get("disk_size_gib", DEFAULT_DISK_SIZE_GIB),
                    labels=args.get("labels", {}),
                    taints=args.get("taints", []),
                    advertised_storage=args.get("scale_from_zero_ephemeral_storage"),
                    imds_hop_limit=args.get("imds_hop_limit", DEFAULT_IMDS_HOP_LIMIT),
                )
                + _role_and_tag_problems(args)
            ),
        )
        super().__init__("gitlab-runner-fleet:index:SpotNodeGroup", name, None, opts)
        labels = args.get("labels", {})
        taints = [Taint.model_validate(taint) for taint in args.get("taints", [])]
        template_tags = scale_from_zero_tags(
            labels,
            taints,
            group_architecture(args["instance_types"]),
            args.get("scale_from_zero_ephemeral_storage"),
        )
        asg_tags = dict(template_tags)
        if discovery := args.get("autoscaler_discovery_tag"):
            asg_tags[discovery["key"]] = discovery["value"]
        tags = args.get("tags", {})
        node_role_arn = (
            args.get("node_role_arn")
            or NodeRole(
                f"{name}-role",
                {
                    "description": "EKS spot build nodes for GitLab CI jobs",
                    "cni_policy": args.get("node_cni_policy", True),
                    "tags": tags,
                },
                opts=pulumi.ResourceOptions(parent=self),
            ).role_arn
        )
        launch_template = self._create_launch_template(name, args)

        min_size = args.get("min_size", 0)
        node_group = aws_eks.NodeGroup(
            name,
            cluster_name=args["cluster_name"],
            version=args["kubernetes_version"],
            node_role_arn=node_role_arn,
            subnet_ids=args["subnet_ids"],
            capacity_type="SPOT",
            instance_types=args["instance_types"],
            ami_type=ami_type_for(args["instance_types"]),
            launch_template={
                "id": launch_template.id,
                "version": launch_template.latest_version.apply(str),
            },
            scaling_config={
                "min_size": min_size,
                "desired_size": min_size,
                "max_size": args["max_size"],
            },
            update_config={"max_unavailable_percentage": UPDATE_MAX_UNAVAILABLE_PERCENTAGE},
            # Job PodDisruptionBudgets block a drain; without force a version update gives up
            # with PodEvictionFailure after EKS's 15-minute drain window and `pulumi up` fails.
            force_update_version=args.get("force_update_version", True),
            labels=labels,
            taints=[taint.eks() for taint in taints],
            tags={**tags, **asg_tags},
            # cluster-autoscaler owns the desired size once the group exists. Pulumi fills an
            # ignored property from its state, so every operation refreshes first (Pulumi.yaml).
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["scalingConfig.desiredSize"]),
        )
        asg_name = node_group.resources.apply(
            lambda resources: resources[0].autoscaling_groups[0].name
        )
        for key, value in asg_tags.items():
            autoscaling.Tag(
                f"{name}-{key}",
                autoscaling_group_name=asg_name,
                tag={"key": key, "value": value, "propagate_at_launch": False},
                opts=pulumi.ResourceOptions(parent=self),
            )

        self.node_group_name = node_group.node_group_name
        self.autoscaling_group_name = asg_name
        self.node_role_arn = pulumi.Output.from_input(node_role_arn)
        self.launch_template_id = launch_template.id
        self.scale_from_zero_tags = pulumi.Output.from_input(template_tags)
        self.register_outputs(
            {
                "node_group_name": self.node_group_name,
                "autoscaling_group_name": self.autoscaling_group_name,
                "node_role_arn": self.node_role_arn,
                "launch_template_id": self.launch_template_id,
                "scale_from_zero_tags": self.scale_from_zero_tags,
            }
        )

    def _create_launch_template(self, name: str, args: SpotNodeGroupArgs) -> ec2.LaunchTemplate:
        instance_tags = args.get("instance_tags", {})
        user_data = args.get("user_data")
        hop_limit = args.get("imds_hop_limit", DEFAULT_IMDS_HOP_LIMIT)
        return ec2.LaunchTemplate(
            name,
            description=f"GitLab CI build nodes: IMDSv2 only, hop limit {hop_limit}; root volume; "
            "cost tags",
            metadata_options={
                "http_endpoint": "enabled",
                "http_tokens": "required",
                "http_put_response_hop_limit": hop_limit,
            },
            block_device_mappings=[
                {
                    "device_name": ROOT_DEVICE,
                    "ebs": {
                        "volume_size": args.get("disk_size_gib", DEFAULT_DISK_SIZE_GIB),
                        "volume_type": "gp3",
                        "encrypted": "true",
                        "delete_on_termination": "true",
                    },
                }
            ],
            tag_specifications=[
                {"resource_type": kind, "tags": instance_tags} for kind in ("instance", "volume")
            ]
            if instance_tags
            else None,
            user_data=(
                pulumi.Output.from_input(user_data).apply(
                    lambda text: base64.b64encode(text.encode()).decode()
                )
                if user_data is not None
                else None
            ),
            update_default_version=True,
            tags=args.get("tags", {}),
            opts=pulumi.ResourceOptions(parent=self),
        )
