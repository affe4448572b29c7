"""GitlabRunner: the official gitlab-runner Helm release with a rendered config and its Secrets."""

from collections.abc import Mapping
from typing import Any, NotRequired, Optional, TypedDict

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.helm import v3 as helm

from ..aws.irsa_role import IRSA_ROLE_ANNOTATION
from ..build_nodes import keep_off_build_nodes
from ..versions import (
    GITLAB_RUNNER_CHART,
    GITLAB_RUNNER_CHART_REPO,
    GITLAB_RUNNER_CHART_VERSION,
)
from .runner_config import (
    DEFAULT_CHECK_INTERVAL,
    DEFAULT_CONCURRENT,
    DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS,
    METRICS_PORT,
    CacheSpec,
    JobSpec,
    config_checksum,
    effective_config,
    template_toml,
)

TOKEN_SECRET_NAME = "gitlab-runner-token"
CACHE_SECRET_NAME = "gitlab-runner-cache"
SECRETS_VERSION_ANNOTATION = "gitlab-runner-fleet/secrets-version"
"""Changes with the token or cache Secret, so the manager restarts and reads the new values."""
PAUSE_POD_PRIORITY = -10
"""Below every workload (default 0), so any job pod preempts a pause pod."""

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


def executor_rbac_rules(warm_capacity: bool) -> list[dict[str, list[str]]]:
    """The namespaced rights the Kubernetes executor needs (runner 19.3 docs), nothing more.

    Pause pods add `apps/deployments`; their PriorityClass is created by Pulumi, so the runner
    needs no cluster-wide `scheduling.k8s.io` rights.
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
    gitlab_url: str,
    runner_name: str,
    job: JobSpec,
    config_template: str,
    concurrent: int,
    check_interval: int,
    service_account_name: str,
    service_account_role_arn: Optional[str],
    termination_grace_period_seconds: int,
    pod_monitor: bool,
    has_cache_secret: bool,
    secrets_version: str,
) -> dict[str, Any]:
    """Helm values of the gitlab-runner chart (keys of its 0.92.0 values.yaml). No secrets."""
    runners: dict[str, Any] = {
        "name": runner_name,
        "secret": TOKEN_SECRET_NAME,
        "config": config_template,
    }
    if has_cache_secret:
        runners["cache"] = {"secretName": CACHE_SECRET_NAME}
    service_account: dict[str, Any] = {"create": True, "name": service_account_name}
    if service_account_role_arn:
        service_account["annotations"] = {IRSA_ROLE_ANNOTATION: service_account_role_arn}
    return {
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
        "serviceAccount": service_account,
        "metrics": {
            "enabled": True,
            "portName": "metrics",
            "port": METRICS_PORT,
            "podMonitor": {"enabled": pod_monitor},
        },
        "runners": runners,
        # The chart rolls the pod only for Secrets it renders itself; these are ours.
        "podAnnotations": {SECRETS_VERSION_ANNOTATION: secrets_version},
        "affinity": keep_off_build_nodes(job["build_labels"]),
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        },
    }


def cache_secret_data(credentials: Mapping[str, pulumi.Input[str]]) -> dict[str, pulumi.Input[str]]:
    """Cache credentials keyed as the chart's cache Secret wants them."""
    return {CHART_CACHE_SECRET_KEYS[name]: value for name, value in credentials.items()}


class GitlabRunnerArgs(TypedDict):
    """Inputs of GitlabRunner."""

    gitlab_url: str
    """URL of the GitLab instance."""
    runner_token: pulumi.Input[str]
    """The runner authentication token (`glrt-...`); pass a Pulumi secret."""
    runner_name: str
    """Name shown in GitLab's runner list."""
    job: JobSpec
    """How job pods run (namespace, image, resources, build labels and taints, warm capacity)."""
    cache: pulumi.Input[CacheSpec]
    """`[runners.cache]` of the config."""
    service_account_name: str
    """The manager's service account (the one an IRSA role trusts)."""
    service_account_role_arn: NotRequired[pulumi.Input[Optional[str]]]
    """IRSA role for the manager's service account (S3 cache with IAM authentication)."""
    cache_secret: NotRequired[dict[str, pulumi.Input[str]]]
    """Cache credentials keyed as the chart wants them (see `cache_secret_data`); secret."""
    concurrent: NotRequired[int]
    """Jobs at once. Default 10."""
    check_interval: NotRequired[int]
    """Seconds between job requests. Default 3."""
    termination_grace_period_seconds: NotRequired[int]
    """Grace period of the manager pod. Default 3600."""
    pod_monitor: NotRequired[bool]
    """Create a PodMonitor (Prometheus operator). Default false."""


class GitlabRunner(pulumi.ComponentResource):
    """GitLab Runner with the Kubernetes executor, installed from the official chart.

    Its own namespace; the authentication token in a Kubernetes Secret the chart only
    references; a config.toml rendered from typed specs (Docker-in-Docker over TLS, jobs
    pinned to the build nodes, the cache); namespaced RBAC limited to what the executor
    needs; a PriorityClass for pause pods when warm capacity is on. Works on any cluster:
    pass its Kubernetes provider in `opts.providers`.
    """

    namespace: pulumi.Output[str]
    """Namespace of the runner and its jobs."""
    release_name: pulumi.Output[Optional[str]]
    """Name of the Helm release."""
    config_toml: pulumi.Output[str]
    """The effective config.toml (without URL and token), for review."""
    config_checksum: pulumi.Output[str]
    """SHA-256 of `config_toml`."""

    def __init__(
        self, name: str, args: GitlabRunnerArgs, opts: Optional[pulumi.ResourceOptions] = None
    ) -> None:
        super().__init__("gitlab-runner-fleet:index:GitlabRunner", name, None, opts)
        job = args["job"]
        namespace = k8s.core.v1.Namespace(
            name,
            metadata={"name": job["namespace"]},
            opts=pulumi.ResourceOptions(parent=self),
        )
        namespace_name = namespace.metadata.apply(lambda meta: str(meta.name))
        secrets = [
            self._create_secret(
                f"{name}-token",
                TOKEN_SECRET_NAME,
                namespace_name,
                # The chart mounts both keys; the registration token is unused with glrt- tokens.
                {"runner-token": args["runner_token"], "runner-registration-token": ""},
            )
        ]
        cache_secret = args.get("cache_secret")
        if cache_secret:
            secrets.append(
                self._create_secret(
                    f"{name}-cache", CACHE_SECRET_NAME, namespace_name, cache_secret
                )
            )
        secrets_version = pulumi.Output.all(
            *(secret.metadata.apply(lambda meta: str(meta.resource_version)) for secret in secrets)
        ).apply("-".join)
        depends_on: list[pulumi.Resource] = list(secrets)
        if warm := job.get("warm_capacity"):
            depends_on.append(self._create_priority_class(name, warm["priority_class_name"]))

        cache = pulumi.Output.from_input(args["cache"])
        concurrent = args.get("concurrent", DEFAULT_CONCURRENT)
        check_interval = args.get("check_interval", DEFAULT_CHECK_INTERVAL)
        values = pulumi.Output.all(
            cache, args.get("service_account_role_arn"), secrets_version
        ).apply(
            lambda resolved: chart_values(
                gitlab_url=args["gitlab_url"],
                runner_name=args["runner_name"],
                job=job,
                config_template=template_toml(job, resolved[0]),
                concurrent=concurrent,
                check_interval=check_interval,
                service_account_name=args["service_account_name"],
                service_account_role_arn=resolved[1],
                termination_grace_period_seconds=args.get(
                    "termination_grace_period_seconds", DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS
                ),
                pod_monitor=args.get("pod_monitor", False),
                has_cache_secret=bool(cache_secret),
                secrets_version=resolved[2],
            )
        )
        release = helm.Release(
            name,
            chart=GITLAB_RUNNER_CHART,
            version=GITLAB_RUNNER_CHART_VERSION,
            repository_opts={"repo": GITLAB_RUNNER_CHART_REPO},
            namespace=namespace_name,
            values=values,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )
        self.namespace = namespace_name
        self.release_name = release.name
        self.config_toml = cache.apply(
            lambda resolved: effective_config(
                concurrent=concurrent, check_interval=check_interval, job=job, cache=resolved
            )
        )
        self.config_checksum = self.config_toml.apply(config_checksum)
        self.register_outputs(
            {
                "namespace": self.namespace,
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

    def _create_priority_class(self, name: str, class_name: str) -> k8s.scheduling.v1.PriorityClass:
        return k8s.scheduling.v1.PriorityClass(
            f"{name}-pause-pods",
            metadata={"name": class_name},
            value=PAUSE_POD_PRIORITY,
            global_default=False,
            description="GitLab Runner pause pods: warm build capacity any job may preempt.",
            opts=pulumi.ResourceOptions(parent=self),
        )
