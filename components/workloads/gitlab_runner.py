"""GitlabRunner: one pool's runner manager, the official gitlab-runner Helm release."""

from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, Optional, TypedDict

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.helm import v3 as helm

from ..arguments import check_arguments
from ..build_nodes import POOL_LABEL, keep_off_build_nodes
from ..conventions import DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS, SECRETS_VERSION_ANNOTATION
from ..karpenter import DO_NOT_DISRUPT_ANNOTATION
from ..kubernetes_names import label_value_problems, namespace_problems
from ..versions import (
    GITLAB_RUNNER_CHART,
    GITLAB_RUNNER_CHART_REPO,
    GITLAB_RUNNER_CHART_VERSION,
)
from .isolation import MANAGER_POD_LABELS, manager_chart_values
from .monitoring import runner_monitoring_values
from .runner_config import (
    DEFAULT_CHECK_INTERVAL,
    DEFAULT_CONCURRENT,
    SAFE_TO_EVICT_ANNOTATION,
    CacheSpec,
    JobSpec,
    config_checksum,
    effective_config,
    template_toml,
)

# The key each cache credential has in the Secret `runners.cache.secretName` names.
CHART_CACHE_SECRET_KEYS = {
    "accessKey": "accesskey",
    "secretKey": "secretkey",
    "credentialsJson": "gcs-application-credentials-file",
    "accessId": "gcs-access-id",
    "privateKey": "gcs-private-key",
    "accountName": "azure-account-name",
    "accountKey": "azure-account-key",
}


def release_name(pool: str) -> str:
    """The pool's Helm release; it starts with the chart name, so the chart uses it as is."""
    return f"gitlab-runner-{pool}"


def token_secret_name(pool: str) -> str:
    """The Secret holding the pool's runner authentication token."""
    return f"{release_name(pool)}-token"


def cache_secret_name(pool: str) -> str:
    """The Secret holding the cache credentials the pool's manager signs URLs with."""
    return f"{release_name(pool)}-cache"


def manager_pod_labels(pool: str) -> dict[str, str]:
    """Labels of a pool's manager pod: metrics are split by pool, policies select managers."""
    return {**MANAGER_POD_LABELS, POOL_LABEL: pool}


def executor_rbac_rules(warm_capacity: bool) -> list[dict[str, list[str]]]:
    """The rights the Kubernetes executor needs in the job namespace (runner 19.3 docs).

    Job PodDisruptionBudgets add `policy/poddisruptionbudgets` create and get (they are owned by
    the job pod and garbage-collected with it); pause pods add `apps/deployments`. The pause
    pods' PriorityClass is created by Pulumi, so no cluster-wide rights are needed.
    """
    core_rules = {
        "pods": ["create", "delete", "get", "list", "watch"],
        "pods/exec": ["create", "delete", "get", "patch"],
        "pods/attach": ["create", "delete", "get", "patch"],
        "pods/log": ["get", "list"],
        "secrets": ["create", "delete", "get", "update"],
        "serviceaccounts": ["get"],
        "services": ["create", "get"],
        "events": ["list", "watch"],
    }
    rules = [
        {"apiGroups": [""], "resources": [resource], "verbs": verbs}
        for resource, verbs in core_rules.items()
    ]
    rules.append(
        {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["create", "get"]}
    )
    if warm_capacity:
        rules.append(
            {
                "apiGroups": ["apps"],
                "resources": ["deployments"],
                "verbs": ["create", "delete", "get", "list", "update"],
            }
        )
    return rules


def chart_values(
    *,
    pool: str,
    gitlab_url: str,
    runner_name: str,
    job: JobSpec,
    config_template: str,
    concurrent: int,
    check_interval: int,
    service_account_name: str,
    termination_grace_period_seconds: int,
    has_cache_secret: bool,
    secrets_version: str,
    all_pool_labels: Sequence[Mapping[str, str]],
) -> dict[str, Any]:
    """Helm values of the gitlab-runner chart (keys of its 0.92.0 values.yaml). No secrets."""
    runners: dict[str, Any] = {
        "name": runner_name,
        "secret": token_secret_name(pool),
        "config": config_template,
        # The chart's Role and RoleBinding go to the job namespace (templates/role.yaml).
        "jobNamespace": job["namespace"],
    }
    if has_cache_secret:
        runners["cache"] = {"secretName": cache_secret_name(pool)}
    return {
        "fullnameOverride": release_name(pool),
        "gitlabUrl": gitlab_url,
        "concurrent": concurrent,
        "checkInterval": check_interval,
        "unregisterRunners": True,
        "terminationGracePeriodSeconds": termination_grace_period_seconds,
        "rbac": {
            "create": True,
            "clusterWideAccess": False,
            "rules": executor_rbac_rules("warm_capacity" in job),
        },
        # The stack creates one service account for every pool's manager (the IRSA role trusts
        # it); with `create: false` the chart binds its Role to that name.
        "serviceAccount": {"create": False, "name": service_account_name},
        # Metrics on; FleetMonitoring's PodMonitor scrapes them (the chart's own stays off).
        "metrics": runner_monitoring_values(pool)["metrics"],
        "runners": runners,
        "podLabels": manager_pod_labels(pool),
        "podAnnotations": {
            # The chart rolls the pod only for Secrets it renders itself; these are ours.
            SECRETS_VERSION_ANNOTATION: secrets_version,
            # cluster-autoscaler gives an evicted pod at most --max-graceful-termination-sec
            # (600 s) but the manager waits up to an hour for its jobs: never evict it.
            SAFE_TO_EVICT_ANNOTATION: "false",
            # The same for Karpenter, wherever the cluster's Karpenter manages the manager's node.
            DO_NOT_DISRUPT_ANNOTATION: "true",
        },
        "affinity": keep_off_build_nodes(all_pool_labels),
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        },
        # Non-root, read-only root filesystem, no capabilities, RuntimeDefault seccomp: the
        # manager passes the `restricted` Pod Security level of its namespace.
        **manager_chart_values(concurrent=concurrent, output_limit_kib=job["output_limit"]),
        # The new manager is ready before the old one stops (the chart leaves `strategy` empty).
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        },
    }


def cache_secret_data(credentials: Mapping[str, pulumi.Input[str]]) -> dict[str, pulumi.Input[str]]:
    """Cache credentials keyed as the chart's cache Secret wants them."""
    return {CHART_CACHE_SECRET_KEYS[name]: value for name, value in credentials.items()}


class GitlabRunnerArgs(TypedDict):
    """Inputs of GitlabRunner."""

    pool: str
    """Name of the pool this manager serves; names the release and its Secrets."""
    namespace: pulumi.Input[str]
    """Namespace of the manager and its Secrets (jobs run in `job.namespace`)."""
    gitlab_url: str
    """URL of the GitLab instance."""
    runner_token: pulumi.Input[str]
    """The runner authentication token (`glrt-...`); pass a Pulumi secret."""
    runner_name: str
    """Name shown in GitLab's runner list."""
    job: JobSpec
    """How job pods run (namespace, image, resources, node selector, taints, warm capacity)."""
    cache: pulumi.Input[CacheSpec]
    """`[runners.cache]` of the config."""
    service_account_name: str
    """The managers' service account (created by the caller; an IRSA role may trust it)."""
    all_pool_labels: NotRequired[list[dict[str, str]]]
    """Labels of every pool's build nodes, which the manager keeps off. Default: this pool's."""
    cache_secret: NotRequired[dict[str, pulumi.Input[str]]]
    """Cache credentials keyed as the chart wants them (see `cache_secret_data`); secret."""
    concurrent: NotRequired[int]
    """Jobs at once. Default 10."""
    check_interval: NotRequired[int]
    """Seconds between job requests. Default 3."""
    termination_grace_period_seconds: NotRequired[int]
    """Grace period of the manager pod. Default 3600."""


class GitlabRunner(pulumi.ComponentResource):
    """One pool's GitLab Runner manager (Kubernetes executor) from the official chart.

    The authentication token in a Kubernetes Secret the chart only references; a config.toml
    rendered from typed specs (privilege only for dind services, jobs pinned to the pool's
    nodes in their own namespace, the cache); the chart's namespaced RBAC in the job namespace,
    limited to what the executor needs. Works on any cluster: pass its Kubernetes provider in
    `opts.providers`.
    """

    release_name: pulumi.Output[Optional[str]]
    """Name of the Helm release."""
    config_toml: pulumi.Output[str]
    """The effective config.toml (without URL and token), for review."""
    config_checksum: pulumi.Output[str]
    """SHA-256 of `config_toml`."""

    def __init__(
        self, name: str, args: GitlabRunnerArgs, opts: Optional[pulumi.ResourceOptions] = None
    ) -> None:
        check_arguments("GitlabRunner", name, args, GitlabRunnerArgs, lambda: _problems(args))
        super().__init__("gitlab-runner-fleet:index:GitlabRunner", name, None, opts)
        pool, job, namespace = args["pool"], args["job"], args["namespace"]
        secrets = [
            self._create_secret(
                f"{name}-token",
                token_secret_name(pool),
                namespace,
                # The chart mounts both keys; the registration token is unused with glrt- tokens.
                {"runner-token": args["runner_token"], "runner-registration-token": ""},
            )
        ]
        cache_secret = args.get("cache_secret")
        if cache_secret:
            secrets.append(
                self._create_secret(
                    f"{name}-cache", cache_secret_name(pool), namespace, cache_secret
                )
            )
        secrets_version = pulumi.Output.all(
            *(secret.metadata.apply(lambda meta: str(meta.resource_version)) for secret in secrets)
        ).apply("-".join)

        cache = pulumi.Output.from_input(args["cache"])
        concurrent = args.get("concurrent", DEFAULT_CONCURRENT)
        check_interval = args.get("check_interval", DEFAULT_CHECK_INTERVAL)
        values = pulumi.Output.all(cache, secrets_version).apply(
            lambda resolved: chart_values(
                pool=pool,
                gitlab_url=args["gitlab_url"],
                runner_name=args["runner_name"],
                job=job,
                config_template=template_toml(job, resolved[0]),
                concurrent=concurrent,
                check_interval=check_interval,
                service_account_name=args["service_account_name"],
                termination_grace_period_seconds=args.get(
                    "termination_grace_period_seconds", DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS
                ),
                has_cache_secret=bool(cache_secret),
                secrets_version=resolved[1],
                all_pool_labels=args.get("all_pool_labels") or [job["node_selector"]],
            )
        )
        release = helm.Release(
            name,
            name=release_name(pool),
            chart=GITLAB_RUNNER_CHART,
            version=GITLAB_RUNNER_CHART_VERSION,
            repository_opts={"repo": GITLAB_RUNNER_CHART_REPO},
            namespace=namespace,
            values=values,
            opts=pulumi.ResourceOptions(parent=self, depends_on=secrets),
        )
        self.release_name = release.name
        self.config_toml = cache.apply(
            lambda resolved: effective_config(
                concurrent=concurrent, check_interval=check_interval, job=job, cache=resolved
            )
        )
        self.config_checksum = self.config_toml.apply(config_checksum)
        self.register_outputs(
            {
                "release_name": self.release_name,
                "config_toml": self.config_toml,
                "config_checksum": self.config_checksum,
            }
        )

    def _create_secret(
        self,
        name: str,
        secret_name: str,
        namespace: pulumi.Input[str],
        data: Mapping[str, pulumi.Input[str]],
    ) -> k8s.core.v1.Secret:
        return k8s.core.v1.Secret(
            name,
            metadata={"name": secret_name, "namespace": namespace},
            type="Opaque",
            string_data={key: pulumi.Output.secret(value) for key, value in data.items()},
            opts=pulumi.ResourceOptions(parent=self),
        )


def _problems(args: GitlabRunnerArgs) -> list[str]:
    pool = args["pool"]
    problems = [f"pool: {p}, got {pool!r}" for p in label_value_problems(pool)]
    if not pool:
        problems.append("pool: must not be empty (it names the release and its Secrets)")
    if isinstance(namespace := args["namespace"], str):
        problems += [f"namespace: {p}" for p in namespace_problems(namespace)]
    for key, value in (
        ("concurrent", args.get("concurrent", DEFAULT_CONCURRENT)),
        ("check_interval", args.get("check_interval", DEFAULT_CHECK_INTERVAL)),
    ):
        if value < 1:
            problems.append(f"{key}: must be >= 1, got {value}")
    if (grace := args.get("termination_grace_period_seconds", 0)) < 0:
        problems.append(f"termination_grace_period_seconds: must be >= 0, got {grace}")
    return problems
