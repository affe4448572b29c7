"""Karpenter: the controller that launches Karpenter pools' nodes, where the stack creates the
cluster. Its IRSA role (scoped to this cluster's tags), the interruption queue fed by
EventBridge, and the official charts from Karpenter's OCI registry."""

import json
from collections.abc import Mapping
from typing import Any, NotRequired, Optional, TypedDict

import pulumi
import pulumi_aws as aws
from pulumi_aws import iam
from pulumi_kubernetes.helm import v3 as helm

from ..arguments import check_arguments
from ..conventions import IRSA_ROLE_ANNOTATION
from ..kubernetes_names import label_key_problems, label_value_problems
from ..versions import (
    KARPENTER_CHART,
    KARPENTER_CHART_REPO,
    KARPENTER_CRD_CHART,
    KARPENTER_KUBERNETES_VERSIONS,
    KARPENTER_VERSION,
)
from .iam_documents import (
    arn_partition_and_account,
    interruption_queue_policy,
    karpenter_controller_policy,
)
from .irsa_role import IrsaRole

NAMESPACE = "kube-system"
RELEASE_NAME = "karpenter"
SERVICE_ACCOUNT = "karpenter"
"""The chart's service account for release `karpenter` (its fullname), which the role trusts."""
METRICS_PORT_NAME = "http-metrics"
"""The chart's Service port of the controller's metrics (templates/service.yaml)."""
DEFAULT_REPLICAS = 2
INTERRUPTION_RETENTION_SECONDS = 300
"""A spot interruption warning is worth nothing after its two minutes (Karpenter's own queue
keeps messages 5 minutes)."""
INTERRUPTION_TARGET_ID = "KarpenterInterruptionQueueTarget"
# The events Karpenter's interruption controller reads, by the source and detail-type its
# parsers accept (pkg/controllers/interruption/messages/*/parser.go). A spot interruption, a
# scheduled change and a stopping instance make it drain and replace the node ahead of time;
# a rebalance recommendation is only recorded as an event.
INTERRUPTION_EVENTS: dict[str, dict[str, list[str]]] = {
    "spot-interruption": {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Spot Instance Interruption Warning"],
    },
    "rebalance": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance Rebalance Recommendation"]},
    "scheduled-change": {"source": ["aws.health"], "detail-type": ["AWS Health Event"]},
    "instance-state-change": {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Instance State-change Notification"],
    },
}


def karpenter_values(
    *,
    cluster_name: str,
    interruption_queue: str,
    role_arn: str,
    replicas: int = DEFAULT_REPLICAS,
    node_selector: Mapping[str, str] | None = None,
    service_monitor_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Helm values of the karpenter chart (keys of its 1.14.1 values.yaml)."""
    values: dict[str, Any] = {
        "settings": {"clusterName": cluster_name, "interruptionQueue": interruption_queue},
        "serviceAccount": {
            "create": True,
            "name": SERVICE_ACCOUNT,
            "annotations": {IRSA_ROLE_ANNOTATION: role_arn},
        },
        # The chart's affinity keeps the controller off nodes it manages (karpenter.sh/nodepool
        # DoesNotExist) and its replicas on different nodes; the selector adds the system nodes.
        "replicas": replicas,
        "nodeSelector": {"kubernetes.io/os": "linux", **(node_selector or {})},
        "controller": {
            "resources": {
                "requests": {"cpu": "250m", "memory": "1Gi"},
                "limits": {"memory": "1Gi"},
            }
        },
    }
    if service_monitor_labels is not None:
        # Rendered only where the cluster serves monitoring.coreos.com/v1
        # (templates/servicemonitor.yaml); it scrapes the Service's http-metrics port.
        values["serviceMonitor"] = {
            "enabled": True,
            "additionalLabels": dict(service_monitor_labels),
        }
    return values


def supports_kubernetes(version: str) -> bool:
    """Whether the pinned Karpenter release supports this Kubernetes minor."""
    oldest, newest = (tuple(map(int, v.split("."))) for v in KARPENTER_KUBERNETES_VERSIONS)
    return oldest <= tuple(map(int, version.split("."))) <= newest


class KarpenterArgs(TypedDict):
    """Inputs of Karpenter."""

    cluster_name: pulumi.Input[str]
    """The EKS cluster whose nodes Karpenter launches."""
    region: str
    """AWS region of the cluster."""
    kubernetes_version: str
    """Kubernetes minor of the cluster; must be one the pinned release supports."""
    oidc_provider_arn: pulumi.Input[str]
    """The cluster's IAM OIDC provider, trusted by the controller's role."""
    node_role_arns: list[pulumi.Input[str]]
    """The roles the EC2NodeClasses name: the only ones the controller may pass to EC2."""
    replicas: NotRequired[int]
    """Controller replicas, each on its own node. Default 2."""
    node_selector: NotRequired[dict[str, str]]
    """Where the controller runs (never on nodes it manages). Default any Linux node."""
    service_monitor_labels: NotRequired[Optional[dict[str, str]]]
    """Create the chart's ServiceMonitor with these labels. Default: none."""
    tags: NotRequired[dict[str, str]]
    """Tags of the AWS resources."""


class Karpenter(pulumi.ComponentResource):
    """Karpenter for an EKS cluster the stack owns: the controller's IRSA role with a policy
    scoped to this cluster's tags, its node roles and its queue; the interruption queue (SQS,
    TLS only, fed only by the stack's EventBridge rules for spot interruptions, rebalance
    recommendations, scheduled changes and instance state changes); and the official
    `karpenter-crd` and `karpenter` charts, pinned, from Karpenter's OCI registry.

    Pass the cluster's Kubernetes provider in `opts.providers`. Declare NodePools with
    `depends_on` this component, so they are deleted before the controller that drains them.
    """

    role_arn: pulumi.Output[str]
    """ARN of the controller's IRSA role."""
    interruption_queue_name: pulumi.Output[str]
    """Name of the interruption queue."""
    release_name: pulumi.Output[Optional[str]]
    """Name of the controller's Helm release."""

    def __init__(
        self, name: str, args: KarpenterArgs, opts: Optional[pulumi.ResourceOptions] = None
    ) -> None:
        check_arguments("Karpenter", name, args, KarpenterArgs, lambda: _problems(args))
        super().__init__("gitlab-runner-fleet:index:Karpenter", name, None, opts)
        tags = args.get("tags", {})
        child = pulumi.ResourceOptions(parent=self)
        queue = aws.sqs.Queue(
            f"{name}-interruptions",
            message_retention_seconds=INTERRUPTION_RETENTION_SECONDS,
            sqs_managed_sse_enabled=True,
            tags=tags,
            opts=child,
        )
        rules = []
        for event, pattern in INTERRUPTION_EVENTS.items():
            rule = aws.cloudwatch.EventRule(
                f"{name}-{event}",
                description=f"Karpenter interruption handling: {event}",
                event_pattern=json.dumps(pattern),
                tags=tags,
                opts=child,
            )
            aws.cloudwatch.EventTarget(
                f"{name}-{event}",
                rule=rule.name,
                arn=queue.arn,
                target_id=INTERRUPTION_TARGET_ID,
                opts=child,
            )
            rules.append(rule)
        aws.sqs.QueuePolicy(
            f"{name}-interruptions",
            queue_url=queue.url,
            policy=pulumi.Output.all(queue.arn, *(rule.arn for rule in rules)).apply(
                lambda arns: json.dumps(interruption_queue_policy(arns[0], list(arns[1:])))
            ),
            opts=child,
        )

        policy = iam.Policy(
            f"{name}-controller",
            description="Karpenter controller: launch and remove this cluster's nodes",
            policy=pulumi.Output.all(
                args["oidc_provider_arn"],
                args["cluster_name"],
                queue.arn,
                pulumi.Output.all(*args["node_role_arns"]),
            ).apply(lambda v: json.dumps(_controller_policy(args["region"], *v))),
            tags=tags,
            opts=child,
        )
        role = IrsaRole(
            f"{name}-controller",
            {
                "oidc_provider_arn": args["oidc_provider_arn"],
                "namespace": NAMESPACE,
                "service_account": SERVICE_ACCOUNT,
                "policy_arn": policy.arn,
                "description": "Karpenter controller (IRSA)",
                "tags": tags,
            },
            opts=child,
        )
        # The CRD chart keeps the CRDs upgraded with the controller (the main chart's crds/
        # are installed once and never upgraded by Helm).
        crds = helm.Release(
            f"{name}-crd",
            name=KARPENTER_CRD_CHART,
            chart=f"{KARPENTER_CHART_REPO}/{KARPENTER_CRD_CHART}",
            version=KARPENTER_VERSION,
            namespace=NAMESPACE,
            opts=child,
        )
        values = pulumi.Output.all(args["cluster_name"], queue.name, role.role_arn).apply(
            lambda resolved: karpenter_values(
                cluster_name=resolved[0],
                interruption_queue=resolved[1],
                role_arn=resolved[2],
                replicas=args.get("replicas", DEFAULT_REPLICAS),
                node_selector=args.get("node_selector"),
                service_monitor_labels=args.get("service_monitor_labels"),
            )
        )
        release = helm.Release(
            name,
            name=RELEASE_NAME,
            chart=f"{KARPENTER_CHART_REPO}/{KARPENTER_CHART}",
            version=KARPENTER_VERSION,
            namespace=NAMESPACE,
            skip_crds=True,
            values=values,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[crds]),
        )
        self.role_arn = role.role_arn
        self.interruption_queue_name = queue.name
        self.release_name = release.name
        self.register_outputs(
            {
                "role_arn": self.role_arn,
                "interruption_queue_name": self.interruption_queue_name,
                "release_name": self.release_name,
            }
        )


def _controller_policy(
    region: str, oidc_provider_arn: str, cluster_name: str, queue_arn: str, roles: list[str]
) -> dict[str, Any]:
    partition, account = arn_partition_and_account(oidc_provider_arn)
    return karpenter_controller_policy(
        partition=partition,
        account=account,
        region=region,
        cluster_name=cluster_name,
        node_role_arns=roles,
        interruption_queue_arn=queue_arn,
    )


def _problems(args: KarpenterArgs) -> list[str]:
    problems = []
    version = args["kubernetes_version"]
    if not supports_kubernetes(version):
        oldest, newest = KARPENTER_KUBERNETES_VERSIONS
        problems.append(
            f"kubernetes_version: Karpenter {KARPENTER_VERSION} supports Kubernetes {oldest} "
            f"to {newest}, got {version!r}"
        )
    if not args["node_role_arns"]:
        problems.append("node_role_arns: at least one (the role the EC2NodeClasses name)")
    if args.get("replicas", DEFAULT_REPLICAS) < 1:
        problems.append("replicas: must be >= 1")
    problems += [
        f"node_selector: {key!r}: {p}"
        for key, value in args.get("node_selector", {}).items()
        for p in label_key_problems(key) + label_value_problems(value)
    ]
    return problems
