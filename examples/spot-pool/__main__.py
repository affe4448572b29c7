"""One pool of spot build nodes for an existing EKS cluster, from another infra repo.

An EKS managed node group of Graviton spot instances that scales from zero: the launch template
requires IMDSv2, and the Auto Scaling group carries the node-template tags cluster-autoscaler
needs to build a node at size 0 (EKS does not copy node group tags there).

    pulumi config set aws:region eu-west-1
    pulumi config set clusterName platform-prod
    pulumi config set --path 'subnetIds[0]' subnet-0aaaaaaaaaaaaaaa1
"""

import pulumi
from gitlab_runner_fleet.aws.spot_node_group import SpotNodeGroup

config = pulumi.Config()

pool = SpotNodeGroup(
    "arm64-builds",
    {
        "cluster_name": config.require("clusterName"),
        "kubernetes_version": "1.34",
        "subnet_ids": config.require_object("subnetIds"),
        "instance_types": ["c7g.2xlarge", "c6g.2xlarge", "c7gd.2xlarge"],
        "max_size": 10,
        "labels": {"ci.example.com/pool": "arm64"},
        "taints": [{"key": "ci.example.com/pool", "value": "arm64", "effect": "NoSchedule"}],
        "scale_from_zero_ephemeral_storage": "80Gi",
        "tags": {"team": "platform"},
    },
)

pulumi.export("nodeGroup", pool.node_group_name)
pulumi.export("autoscalingGroup", pool.autoscaling_group_name)
pulumi.export("scaleFromZeroTags", pool.scale_from_zero_tags)
