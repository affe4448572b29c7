"""ClusterAutoscaler: the official cluster-autoscaler chart with an IRSA role, on system nodes."""

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NotRequired, Optional, TypedDict, get_args

import pulumi
from pulumi_aws import iam
from pulumi_kubernetes.helm import v3 as helm

from ..arguments import check_arguments
from ..build_nodes import keep_off_build_nodes
from ..conventions import DEFAULT_PROMETHEUS_SELECTOR_LABELS, IRSA_ROLE_ANNOTATION
from ..naming import TagArgs, go_duration_problems
from ..versions import (
    CLUSTER_AUTOSCALER_CHART,
    CLUSTER_AUTOSCALER_CHART_REPO,
    CLUSTER_AUTOSCALER_CHART_VERSION,
    CLUSTER_AUTOSCALER_IMAGE_TAGS,
)
from .iam_documents import cluster_autoscaler_policy
from .irsa_role import IrsaRole

# `price` is not implemented for AWS, and `priority` needs a priorities ConfigMap.
Expander = Literal["least-waste", "random", "most-pods", "least-nodes"]
DEFAULT_EXPANDER: Expander = "least-waste"
DEFAULT_SCALE_DOWN_UNNEEDED_TIME = "10m"
NAMESPACE = "kube-system"
_NAME_PREFIX = "cluster-autoscaler-"


def instance_name(discovery_tag_value: str) -> str:
    """The release, Deployment, service account and leader-election lease of this stack's
    autoscaler: distinct from a platform-wide `cluster-autoscaler` beside it.

    Lowercase, with every other character than `a-z0-9-` a hyphen: Pulumi stack and project
    names may hold capitals, `_` and `.` (tokens/stack_name.go), Kubernetes names may not."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", (_NAME_PREFIX + discovery_tag_value).lower())
    return cleaned[:53].rstrip("-")


def instance_rbac_rules(name: str) -> list[dict[str, list[str]]]:
    """Rights on this instance's own leader-election lease and status ConfigMap."""
    return [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [name],
            "verbs": ["get", "update"],
        },
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [f"{name}-status"],
            "verbs": ["delete", "get", "update"],
        },
    ]


def autoscaler_monitoring_values(
    namespace: str, service_monitor_labels: Mapping[str, str] = DEFAULT_PROMETHEUS_SELECTOR_LABELS
) -> dict[str, Any]:
    """Helm values of the cluster-autoscaler chart 9.59.0: its ServiceMonitor, labelled for
    Prometheus, and the per-node-group metrics the backoff alert reads.

    The ServiceMonitor goes to `namespace` (the release's own): the chart's default, `monitoring`,
    need not exist. Deep-merge into the release's values (`extraArgs` included).
    """
    return {
        "extraArgs": {"emit-per-nodegroup-metrics": True},
        "serviceMonitor": {
            "enabled": True,
            "namespace": namespace,
            # The chart writes `selector` as the ServiceMonitor's own labels.
            "selector": dict(service_monitor_labels),
        },
    }


def discovery_spec(key: str, value: str) -> str:
    """The chart's `autoDiscovery.tags` entry: `key=value` matches the tag's value too.

    cluster-autoscaler turns `asg:tag=k=v` into a `tag:k` = `v` DescribeAutoScalingGroups
    filter, a bare key into a `tag-key` filter (cloudprovider/aws/aws_manager.go,
    parseASGAutoDiscoverySpec; cloudprovider/aws/aws_wrapper.go, getAutoscalingGroupsByTags).
    """
    return f"{key}={value}"


def autoscaler_values(
    *,
    cluster_name: str,
    region: str,
    kubernetes_version: str,
    role_arn: str,
    expander: str,
    scale_down_unneeded_time: str,
    pool_labels: Sequence[Mapping[str, str]],
    discovery_tag: tuple[str, str],
    service_monitor_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Helm values of the cluster-autoscaler chart (keys of its 9.59.0 values.yaml)."""
    name = instance_name(discovery_tag[1])
    values: dict[str, Any] = {
        "fullnameOverride": name,
        "cloudProvider": "aws",
        "awsRegion": region,
        # The chart's default tags are the two EKS puts on EVERY managed node group's Auto
        # Scaling group (values.yaml autoDiscovery.tags); on a shared cluster they would hand
        # other teams' groups to this autoscaler. This stack's own tag selects only its pools.
        "autoDiscovery": {
            "clusterName": cluster_name,
            "tags": [discovery_spec(*discovery_tag)],
        },
        "image": {"tag": CLUSTER_AUTOSCALER_IMAGE_TAGS[kubernetes_version]},
        "rbac": {
            "create": True,
            "serviceAccount": {
                "create": True,
                "name": name,
                "annotations": {IRSA_ROLE_ANNOTATION: role_arn},
            },
            # The chart grants get/update on the lease and the status ConfigMap only by their
            # default names (templates/role.yaml, clusterrole.yaml `resourceNames`); renamed
            # below, they need rules of their own, or leader election is forbidden and the
            # autoscaler never runs a scaling loop. The chart appends these to both roles.
            "additionalRules": instance_rbac_rules(name),
        },
        "extraArgs": {
            "expander": expander,
            "balance-similar-node-groups": True,
            # CI job pods use emptyDir; without this their nodes would never scale down.
            "skip-nodes-with-local-storage": False,
            "scale-down-unneeded-time": scale_down_unneeded_time,
            # Both default to `cluster-autoscaler` in kube-system (main.go
            # leaderElectionConfiguration, config/flags/flags.go): beside a platform-wide
            # autoscaler, one of the two would otherwise never become leader.
            "leader-elect-resource-name": name,
            "status-config-map-name": f"{name}-status",
        },
        "affinity": keep_off_build_nodes(pool_labels),
        "resources": {
            "requests": {"cpu": "100m", "memory": "300Mi"},
            "limits": {"memory": "600Mi"},
        },
    }
    if service_monitor_labels is not None:
        monitoring = autoscaler_monitoring_values(NAMESPACE, service_monitor_labels)
        values["extraArgs"] = {**values["extraArgs"], **monitoring["extraArgs"]}
        values["serviceMonitor"] = monitoring["serviceMonitor"]
    return values


class ClusterAutoscalerArgs(TypedDict):
    """Inputs of ClusterAutoscaler."""

    cluster_name: pulumi.Input[str]
    """EKS cluster whose node groups are auto-discovered."""
    region: str
    """AWS region of the cluster."""
    kubernetes_version: str
    """Kubernetes minor of the cluster; picks the autoscaler image."""
    oidc_provider_arn: pulumi.Input[str]
    """The cluster's IAM OIDC provider, trusted by the autoscaler's role."""
    discovery_tag: TagArgs
    """The Auto Scaling group tag (key and value) this stack's pools carry; nothing else is
    discovered or scaled."""
    pool_labels: list[dict[str, str]]
    """Labels of every pool's build nodes, which the autoscaler itself must never run on."""
    expander: NotRequired[str]
    """Expander strategy. Default `least-waste`."""
    scale_down_unneeded_time: NotRequired[str]
    """How long a node stays unneeded before removal. Default `10m`."""
    service_monitor_labels: NotRequired[Optional[dict[str, str]]]
    """Create a ServiceMonitor with these labels, and per-node-group metrics. Default: none."""
    tags: NotRequired[dict[str, str]]
    """Tags applied to the IAM resources."""


class ClusterAutoscaler(pulumi.ComponentResource):
    """cluster-autoscaler for EKS that discovers and scales only this stack's pools: an IRSA role
    scoped to their discovery tag, and the official Helm chart pinned to the cluster's minor,
    named apart from any other autoscaler in the cluster.

    Pass the cluster's Kubernetes provider in `opts.providers`.
    """

    role_arn: pulumi.Output[str]
    """ARN of the autoscaler's IRSA role."""
    service_account: pulumi.Output[str]
    """`<namespace>/<name>` of the service account the role trusts."""
    release_name: pulumi.Output[Optional[str]]
    """Name of the Helm release."""

    def __init__(
        self,
        name: str,
        args: ClusterAutoscalerArgs,
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        check_arguments(
            "ClusterAutoscaler", name, args, ClusterAutoscalerArgs, lambda: _problems(args)
        )
        super().__init__("gitlab-runner-fleet:index:ClusterAutoscaler", name, None, opts)
        version = args["kubernetes_version"]
        tags = args.get("tags", {})
        discovery = (args["discovery_tag"]["key"], args["discovery_tag"]["value"])
        instance = instance_name(discovery[1])
        policy = iam.Policy(
            f"{name}-policy",
            description="cluster-autoscaler: discover node groups, scale this stack's pools",
            policy=pulumi.Output.all(args["oidc_provider_arn"], args["cluster_name"]).apply(
                lambda v: json.dumps(
                    cluster_autoscaler_policy(v[0], args["region"], v[1], discovery)
                )
            ),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        role = IrsaRole(
            f"{name}-irsa",
            {
                "oidc_provider_arn": args["oidc_provider_arn"],
                "namespace": NAMESPACE,
                "service_account": instance,
                "policy_arn": policy.arn,
                "description": "cluster-autoscaler (IRSA)",
                "tags": tags,
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        values = pulumi.Output.all(args["cluster_name"], role.role_arn).apply(
            lambda resolved: autoscaler_values(
                cluster_name=resolved[0],
                region=args["region"],
                kubernetes_version=version,
                role_arn=resolved[1],
                expander=args.get("expander", DEFAULT_EXPANDER),
                scale_down_unneeded_time=args.get(
                    "scale_down_unneeded_time", DEFAULT_SCALE_DOWN_UNNEEDED_TIME
                ),
                pool_labels=args["pool_labels"],
                discovery_tag=discovery,
                service_monitor_labels=args.get("service_monitor_labels"),
            )
        )
        release = helm.Release(
            name,
            name=instance,
            chart=CLUSTER_AUTOSCALER_CHART,
            version=CLUSTER_AUTOSCALER_CHART_VERSION,
            repository_opts={"repo": CLUSTER_AUTOSCALER_CHART_REPO},
            namespace=NAMESPACE,
            values=values,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.role_arn = role.role_arn
        self.service_account = pulumi.Output.from_input(f"{NAMESPACE}/{instance}")
        self.release_name = release.name
        self.register_outputs(
            {
                "role_arn": self.role_arn,
                "service_account": self.service_account,
                "release_name": self.release_name,
            }
        )


def _problems(args: ClusterAutoscalerArgs) -> list[str]:
    problems = []
    if (version := args["kubernetes_version"]) not in CLUSTER_AUTOSCALER_IMAGE_TAGS:
        problems.append(
            f"kubernetes_version: no pinned cluster-autoscaler image for {version!r}; one of "
            f"{', '.join(CLUSTER_AUTOSCALER_IMAGE_TAGS)}"
        )
    if (expander := args.get("expander", DEFAULT_EXPANDER)) not in get_args(Expander):
        problems.append(
            f"expander: must be one of {', '.join(get_args(Expander))}, got {expander!r}"
        )
    problems += [
        f"scale_down_unneeded_time: {p}"
        for p in go_duration_problems(
            args.get("scale_down_unneeded_time", DEFAULT_SCALE_DOWN_UNNEEDED_TIME)
        )
    ]
    if not (args["discovery_tag"].get("key") and args["discovery_tag"].get("value")):
        problems.append("discovery_tag: needs a key and a value (the stack's own ASG tag)")
    return problems
