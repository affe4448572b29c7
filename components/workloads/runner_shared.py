"""RunnerShared: what every pool's runner manager shares in the cluster."""

from typing import NotRequired, Optional, TypedDict

import pulumi
import pulumi_kubernetes as k8s

from ..arguments import check_arguments
from ..conventions import IRSA_ROLE_ANNOTATION
from ..kubernetes_names import namespace_problems, object_name_problems
from .isolation import PART_OF_LABELS, pod_security_labels

PAUSE_POD_PRIORITY = -1
"""Below every workload (default 0), so any job preempts a pause pod; the runner's own default.

Not -10: cluster-autoscaler's `--expendable-pods-priority-cutoff` is -10, and a pod below the
cutoff never triggers a scale-up (`IsExpendablePod`: priority < cutoff); -10 sits on the edge.
"""


class RunnerSharedArgs(TypedDict):
    """Inputs of RunnerShared."""

    namespace: str
    """Namespace of the runner managers and their Secrets, created here."""
    pod_security_version: NotRequired[str]
    """Pod Security policy version the namespace pins (`v1.34`). Default `latest`."""
    service_account_name: str
    """Service account every pool's manager runs as."""
    service_account_role_arn: NotRequired[pulumi.Input[Optional[str]]]
    """IRSA role the managers assume to sign cache URLs (S3 cache with IAM authentication)."""
    pause_pod_priority_class: NotRequired[Optional[str]]
    """Name of the PriorityClass to create for pause pods; none when no pool warms capacity."""


class RunnerShared(pulumi.ComponentResource):
    """The managers' namespace, their service account and the pause pods' PriorityClass.

    The namespace enforces the `restricted` Pod Security level: only the managers live there,
    beside the token and cache Secrets, and job pods never do. One service account for every
    pool keeps one IRSA trust subject; the PriorityClass is created here so the runners need no
    cluster-wide `scheduling.k8s.io` rights.
    """

    namespace: pulumi.Output[str]
    """Name of the managers' namespace, once it exists."""
    service_account_name: pulumi.Output[str]
    """Name of the managers' service account, once it exists."""

    def __init__(
        self, name: str, args: RunnerSharedArgs, opts: Optional[pulumi.ResourceOptions] = None
    ) -> None:
        check_arguments(
            "RunnerShared",
            name,
            args,
            RunnerSharedArgs,
            lambda: [
                *(f"namespace: {p}" for p in namespace_problems(args["namespace"])),
                *(
                    f"service_account_name: {p}"
                    for p in object_name_problems("service account")(args["service_account_name"])
                ),
            ],
        )
        super().__init__("gitlab-runner-fleet:index:RunnerShared", name, None, opts)
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={
                "name": args["namespace"],
                "labels": {
                    **PART_OF_LABELS,
                    **pod_security_labels("restricted", args.get("pod_security_version", "latest")),
                },
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.namespace = namespace.metadata.apply(lambda meta: str(meta.name))
        annotations = pulumi.Output.from_input(args.get("service_account_role_arn")).apply(
            lambda arn: {IRSA_ROLE_ANNOTATION: arn} if arn else {}
        )
        account = k8s.core.v1.ServiceAccount(
            f"{name}-managers",
            metadata={
                "name": args["service_account_name"],
                "namespace": self.namespace,
                "annotations": annotations,
            },
            # The manager talks to the Kubernetes API with this account's token.
            automount_service_account_token=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        if class_name := args.get("pause_pod_priority_class"):
            k8s.scheduling.v1.PriorityClass(
                f"{name}-pause-pods",
                metadata={"name": class_name},
                value=PAUSE_POD_PRIORITY,
                global_default=False,
                preemption_policy="Never",
                description="GitLab Runner pause pods: warm build capacity any job preempts.",
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.service_account_name = account.metadata.apply(lambda meta: str(meta.name))
        self.register_outputs(
            {"namespace": self.namespace, "service_account_name": self.service_account_name}
        )
