"""JobNamespaces: where CI jobs run, apart from the runner managers and their Secrets."""

from typing import Any, NotRequired, Optional, TypedDict, cast

import pulumi
import pulumi_kubernetes as k8s

from ..arguments import check_arguments
from .isolation import (
    JOB_EGRESS_POLICY,
    JOB_INGRESS_POLICY,
    JOB_SERVICE_ACCOUNT,
    MANAGER_INGRESS_POLICY,
    MANAGER_POD_LABELS,
    PART_OF_LABELS,
    PodSecurityLevel,
    job_egress_spec,
    job_ingress_spec,
    job_namespace_problems,
    job_service_account,
    manager_ingress_spec,
    pod_security_labels,
)
from .runner_config import METRICS_PORT

PATCH_FORCE_ANNOTATION = "pulumi.com/patchForce"
"""pulumi-kubernetes: a Patch resource takes fields other field managers set (server-side apply)."""


class JobNamespaceSpec(TypedDict):
    """One namespace job pods run in."""

    name: str
    """Namespace name, one per build mode (see `isolation.job_namespace_name`)."""
    pod_security_level: str
    """Pod Security Standard it enforces: `baseline` (rootless pools) or `privileged` (dind
    pools only)."""
    existing: NotRequired[bool]
    """The namespace exists already and is not ours: only label it (a server-side apply patch
    that forces our Pod Security labels) instead of creating it. Default false."""


class JobNamespacesArgs(TypedDict):
    """Inputs of JobNamespaces."""

    manager_namespace: pulumi.Input[str]
    """Namespace of the runner managers, their token and cache Secrets (never a job namespace)."""
    job_namespaces: list[JobNamespaceSpec]
    """The job namespaces, one per build mode in use."""
    pod_security_version: NotRequired[str]
    """Pod Security policy version the labels pin, e.g. `v1.34`. Default `latest`."""
    network_policies: NotRequired[bool]
    """Create the NetworkPolicies (they need a network-policy engine). Default true."""
    manager_pod_labels: NotRequired[dict[str, str]]
    """Labels every manager pod carries (chart `podLabels`). Default
    `isolation.MANAGER_POD_LABELS`."""
    metrics_port: NotRequired[int]
    """The managers' metrics port. Default 9252."""
    metrics_scraper_namespaces: NotRequired[list[str]]
    """Namespaces that may scrape the managers' metrics. Default: every namespace except the
    job namespaces; an empty list admits none."""


def _argument_problems(args: JobNamespacesArgs) -> list[str]:
    manager_namespace = args["manager_namespace"]
    # The manager's namespace may be another resource's output, known only at deployment.
    known_manager = manager_namespace if isinstance(manager_namespace, str) else None
    return [
        f"job_namespaces: {problem}"
        for problem in job_namespace_problems(list(args["job_namespaces"]), known_manager)
    ]


class JobNamespaces(pulumi.ComponentResource):
    """Job namespaces with Pod Security labels, a tokenless job ServiceAccount, and network
    boundaries.

    Each job namespace enforces its Pod Security level, holds the ServiceAccount job pods use
    (no API token, no IAM role) and, with network policies on, two NetworkPolicies: job pods
    reach neither the instance metadata service nor the EKS Pod Identity agent, and nothing
    connects to them. A third policy in the managers' namespace lets only metrics scrapers
    from outside the job namespaces reach the manager pods. Works on any cluster: pass its
    Kubernetes provider in `opts.providers`.
    """

    namespaces: pulumi.Output[list[str]]
    """The job namespaces, in the order given."""
    service_account_name: pulumi.Output[str]
    """The job pods' ServiceAccount, the same name in every job namespace."""

    def __init__(
        self, name: str, args: JobNamespacesArgs, opts: Optional[pulumi.ResourceOptions] = None
    ) -> None:
        check_arguments(
            "JobNamespaces", name, args, JobNamespacesArgs, lambda: _argument_problems(args)
        )
        super().__init__("gitlab-runner-fleet:index:JobNamespaces", name, None, opts)
        specs = args["job_namespaces"]
        version = args.get("pod_security_version", "latest")
        network_policies = args.get("network_policies", True)

        names: list[pulumi.Output[str]] = []
        accounts: list[pulumi.Output[str]] = []
        for spec in specs:
            namespace = self._create_namespace(name, spec, version)
            names.append(namespace)
            accounts.append(self._create_service_account(name, spec["name"], namespace))
            if network_policies:
                self._create_network_policy(
                    f"{name}-{spec['name']}-egress", JOB_EGRESS_POLICY, namespace, job_egress_spec()
                )
                self._create_network_policy(
                    f"{name}-{spec['name']}-ingress",
                    JOB_INGRESS_POLICY,
                    namespace,
                    job_ingress_spec(),
                )
        if network_policies:
            scrapers = args.get("metrics_scraper_namespaces")
            self._create_network_policy(
                f"{name}-manager-ingress",
                MANAGER_INGRESS_POLICY,
                args["manager_namespace"],
                manager_ingress_spec(
                    manager_pod_labels=args.get("manager_pod_labels", MANAGER_POD_LABELS),
                    job_namespaces=[spec["name"] for spec in specs],
                    metrics_port=args.get("metrics_port", METRICS_PORT),
                    metrics_scraper_namespaces=scrapers,
                ),
            )

        self.namespaces = pulumi.Output.all(*names).apply(list)
        self.service_account_name = pulumi.Output.all(*accounts).apply(
            lambda resolved: resolved[0] if resolved else JOB_SERVICE_ACCOUNT
        )
        self.register_outputs(
            {"namespaces": self.namespaces, "service_account_name": self.service_account_name}
        )

    def _create_namespace(
        self, name: str, spec: JobNamespaceSpec, version: str
    ) -> pulumi.Output[str]:
        level = cast(PodSecurityLevel, spec["pod_security_level"])
        labels = pod_security_labels(level, version)
        resource_name = f"{name}-{spec['name']}"
        if spec.get("existing", False):
            patch = k8s.core.v1.NamespacePatch(
                resource_name,
                metadata=k8s.meta.v1.ObjectMetaPatchArgs(
                    name=spec["name"],
                    labels=labels,
                    annotations={PATCH_FORCE_ANNOTATION: "true"},
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            # The patch cannot rename: its name is the one given.
            return patch.urn.apply(lambda _: spec["name"])
        namespace = k8s.core.v1.Namespace(
            resource_name,
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=spec["name"], labels={**PART_OF_LABELS, **labels}
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return namespace.metadata.apply(lambda meta: str(meta.name))

    def _create_service_account(
        self, name: str, namespace_name: str, namespace: pulumi.Output[str]
    ) -> pulumi.Output[str]:
        manifest = job_service_account(namespace_name)
        account = k8s.core.v1.ServiceAccount(
            f"{name}-{namespace_name}-job",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=manifest["metadata"]["name"],
                namespace=namespace,
                labels=manifest["metadata"]["labels"],
            ),
            automount_service_account_token=manifest["automountServiceAccountToken"],
            opts=pulumi.ResourceOptions(parent=self),
        )
        return account.metadata.apply(lambda meta: str(meta.name))

    def _create_network_policy(
        self,
        resource_name: str,
        policy_name: str,
        namespace: pulumi.Input[str],
        spec: dict[str, Any],
    ) -> k8s.networking.v1.NetworkPolicy:
        return k8s.networking.v1.NetworkPolicy(
            resource_name,
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=policy_name, namespace=namespace, labels=dict(PART_OF_LABELS)
            ),
            spec=cast(k8s.networking.v1.NetworkPolicySpecArgsDict, spec),
            opts=pulumi.ResourceOptions(parent=self),
        )
