"""GitlabRunner under Pulumi mocks: one pool's release, its values and its Secrets."""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Callable
from typing import Any

import pulumi
import pytest
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

from components.versions import GITLAB_RUNNER_CHART_VERSION
from components.workloads.gitlab_runner import (
    GitlabRunner,
    GitlabRunnerArgs,
    cache_secret_data,
    cache_secret_name,
    token_secret_name,
)
from components.workloads.runner_config import CacheSpec, JobSpec
from tests.harness import ProgramRun, Registered, run_program

TOKEN = "glrt-t1_TestToken"
TOKEN_SECRET_NAME = token_secret_name("arm64")
CACHE_SECRET_NAME = cache_secret_name("arm64")
CACHE: CacheSpec = {
    "Type": "s3",
    "Path": "runner-cache",
    "Shared": True,
    "s3": {"BucketName": "b", "BucketLocation": "eu-west-1", "AuthenticationType": "iam"},
}
LABELS = {"gitlab-runner-fleet/pool": "arm64"}
MANAGER_NAMESPACE = "ci-runners"
JOB_NAMESPACE = "ci-runners-jobs-dind"


def job(warm: bool = False) -> JobSpec:
    spec: JobSpec = {
        "namespace": JOB_NAMESPACE,
        "image": "alpine:3.22",
        "build_mode": "dind",
        "request_concurrency": 4,
        "poll_interval": 3,
        "poll_timeout": 600,
        "build": {"cpu_request": "1"},
        "helper": {},
        "service": {},
        "ephemeral_storage_request": "8Gi",
        "ephemeral_storage_max": "89Gi",
        "node_selector": {**LABELS, "kubernetes.io/arch": "arm64"},
        "build_taints": [
            {"key": "gitlab-runner-fleet/pool", "value": "arm64", "effect": "NoSchedule"}
        ],
        "pod_labels": LABELS,
        "environment": [],
        "feature_flags": {},
        "output_limit": 16384,
    }
    if warm:
        spec["warm_capacity"] = {
            "max_pause_pods": 3,
            "priority_class_name": "fleet-pause",
            "policies": [
                {
                    "periods": ["* 8-17 * * *"],
                    "timezone": "UTC",
                    "idle_count": 2,
                    "idle_time": "10m",
                }
            ],
        }
    return spec


def declare(**overrides: Any) -> ProgramRun:
    """Declares the component; the token becomes a secret Output inside the program's loop."""
    args: GitlabRunnerArgs = {
        "pool": "arm64",
        "namespace": MANAGER_NAMESPACE,
        "gitlab_url": "https://gitlab.example.com/",
        "runner_token": TOKEN,
        "runner_name": "fleet-test",
        "job": job(),
        "cache": CACHE,
        "service_account_name": "runner-manager",
        "all_pool_labels": [{"gitlab-runner-fleet/pool": "default"}, LABELS],
        "concurrent": 25,
        "check_interval": 5,
    }
    args.update(overrides)  # type: ignore[typeddict-item]

    def program() -> None:
        runner = GitlabRunner(
            "gitlab-runner", {**args, "runner_token": pulumi.Output.secret(TOKEN)}
        )
        pulumi.export("config_toml", runner.config_toml)
        pulumi.export("config_checksum", runner.config_checksum)

    return run_program(program)


def values_of(run: ProgramRun) -> dict[str, Any]:
    values: dict[str, Any] = run.one("kubernetes:helm.sh/v3:Release").inputs["values"]
    return values


def secret_named(run: ProgramRun, name: str) -> Registered:
    return next(
        s for s in run.of_type("kubernetes:core/v1:Secret") if s.inputs["metadata"]["name"] == name
    )


def test_release_is_the_pinned_official_chart_named_after_its_pool() -> None:
    run = declare()
    release = run.one("kubernetes:helm.sh/v3:Release")
    assert release.inputs["chart"] == "gitlab-runner"
    assert release.inputs["version"] == GITLAB_RUNNER_CHART_VERSION == "0.92.0"
    assert release.inputs["repositoryOpts"] == {"repo": "https://charts.gitlab.io"}
    assert release.inputs["namespace"] == MANAGER_NAMESPACE
    # The chart's fullname is the release name when it starts with the chart name
    # (charts/gitlab-runner/templates/_helpers.tpl "gitlab-runner.fullname").
    assert release.inputs["name"] == "gitlab-runner-arm64"
    assert values_of(run)["fullnameOverride"] == "gitlab-runner-arm64"


def test_token_secret_stays_in_manager_namespace() -> None:
    run = declare()
    for secret in run.of_type("kubernetes:core/v1:Secret"):
        assert secret.inputs["metadata"]["namespace"] == MANAGER_NAMESPACE
    values = values_of(run)
    # The chart puts only its Role and RoleBinding into runners.jobNamespace
    # (charts/gitlab-runner/templates/role.yaml, role-binding.yaml); job pods run there.
    assert values["runners"]["jobNamespace"] == JOB_NAMESPACE
    config = tomllib.loads(values["runners"]["config"])
    assert config["runners"][0]["kubernetes"]["namespace"] == JOB_NAMESPACE != MANAGER_NAMESPACE


def test_token_lives_only_in_a_secret_the_chart_references() -> None:
    run = declare()
    secret = secret_named(run, TOKEN_SECRET_NAME)
    assert secret.inputs["metadata"]["namespace"] == MANAGER_NAMESPACE
    string_data = secret.inputs["stringData"]
    assert is_rpc_secret(string_data)
    assert unwrap_rpc_secret(string_data) == {
        "runner-token": TOKEN,
        "runner-registration-token": "",
    }
    values = values_of(run)
    assert values["runners"]["secret"] == TOKEN_SECRET_NAME
    assert "runnerToken" not in values
    assert "runnerRegistrationToken" not in values
    assert TOKEN not in repr(values)
    assert not any(TOKEN in repr(output) for output in run.outputs.values())
    release = run.one("kubernetes:helm.sh/v3:Release")
    assert secret.urn in release.dependencies


def test_the_manager_restarts_when_its_secrets_change() -> None:
    run = declare(cache_secret={"accesskey": "a", "secretkey": "b"})
    versions = [
        s.state["metadata"]["resourceVersion"] for s in run.of_type("kubernetes:core/v1:Secret")
    ]
    annotations = values_of(run)["podAnnotations"]
    assert annotations["gitlab-runner-fleet/secrets-version"] == "-".join(versions)
    assert not is_rpc_secret(annotations["gitlab-runner-fleet/secrets-version"])


def test_cluster_autoscaler_never_evicts_the_manager() -> None:
    # cluster-autoscaler caps a drained pod's grace at --max-graceful-termination-sec (600 s,
    # config/flags/flags.go) but the manager waits up to 3600 s for its jobs; a pod annotated
    # safe-to-evict "false" is never drained by scale-down (utils/drain/drain.go).
    values = values_of(declare())
    assert values["podAnnotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
    assert values["terminationGracePeriodSeconds"] == 3600


def test_manager_pods_carry_their_pool() -> None:
    assert values_of(declare())["podLabels"] == {
        "gitlab-runner-fleet/component": "runner-manager",
        "gitlab-runner-fleet/pool": "arm64",
    }


def test_values_configure_the_manager() -> None:
    values = values_of(declare())
    assert values["gitlabUrl"] == "https://gitlab.example.com/"
    assert values["concurrent"] == 25
    assert values["checkInterval"] == 5
    assert values["unregisterRunners"] is True
    assert values["terminationGracePeriodSeconds"] == 3600
    assert values["runners"]["name"] == "fleet-test"
    assert values["metrics"] == {
        "enabled": True,
        "portName": "metrics",
        "port": 9252,
        "podMonitor": {"enabled": False},
    }
    # The manager pod carries its pool, which FleetMonitoring's PodMonitor copies to `pool`.
    assert values_of(declare())["podLabels"]["gitlab-runner-fleet/pool"] == "arm64"


def test_manager_runs_on_stable_nodes(validate_manifest: Callable[[dict[str, Any]], None]) -> None:
    affinity = values_of(declare())["affinity"]
    (term,) = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert {
        "key": "eks.amazonaws.com/capacityType",
        "operator": "NotIn",
        "values": ["SPOT"],
    } in term["matchExpressions"]
    assert {
        "key": "gitlab-runner-fleet/pool",
        "operator": "NotIn",
        "values": ["default", "arm64"],
    } in term["matchExpressions"]
    validate_manifest(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "manager"},
            "spec": {
                "containers": [{"name": "runner", "image": "gitlab-runner"}],
                "affinity": affinity,
            },
        }
    )


def test_the_manager_uses_the_stacks_service_account_and_mounts_no_cache_secret() -> None:
    run = declare()
    values = values_of(run)
    # With `create: false` the chart renders no ServiceAccount and binds its Role to this name
    # (charts/gitlab-runner/templates/service-account.yaml, _helpers.tpl serviceAccountName).
    assert values["serviceAccount"] == {"create": False, "name": "runner-manager"}
    assert "cache" not in values["runners"]
    assert [s.inputs["metadata"]["name"] for s in run.of_type("kubernetes:core/v1:Secret")] == [
        TOKEN_SECRET_NAME
    ]


def test_access_keys_go_into_the_cache_secret() -> None:
    credentials = cache_secret_data({"accessKey": "AKIA1", "secretKey": "s3cr3t"})
    run = declare(cache_secret=credentials)
    secret = secret_named(run, CACHE_SECRET_NAME)
    assert is_rpc_secret(secret.inputs["stringData"])
    assert unwrap_rpc_secret(secret.inputs["stringData"]) == {
        "accesskey": "AKIA1",
        "secretkey": "s3cr3t",
    }
    values = values_of(run)
    assert values["runners"]["cache"] == {"secretName": CACHE_SECRET_NAME}
    assert "s3cr3t" not in repr(values)


@pytest.mark.parametrize(
    ("credentials", "keys"),
    [
        ({"credentialsJson": "{}"}, {"gcs-application-credentials-file"}),
        ({"accessId": "id", "privateKey": "pk"}, {"gcs-access-id", "gcs-private-key"}),
        ({"accountName": "acme", "accountKey": "k"}, {"azure-account-name", "azure-account-key"}),
    ],
)
def test_gcs_and_azure_credentials_use_the_charts_key_names(
    credentials: dict[str, str], keys: set[str]
) -> None:
    assert set(cache_secret_data(credentials)) == keys


def test_rbac_is_namespaced_and_limited_to_the_executor() -> None:
    rbac = values_of(declare())["rbac"]
    assert rbac["create"] is True
    assert rbac["clusterWideAccess"] is False
    rules = {
        resource: set(rule["verbs"]) for rule in rbac["rules"] for resource in rule["resources"]
    }
    assert rules == {
        "pods": {"create", "delete", "get", "list", "watch"},
        "pods/exec": {"create", "delete", "get", "patch"},
        "pods/attach": {"create", "delete", "get", "patch"},
        "pods/log": {"get", "list"},
        "secrets": {"create", "delete", "get", "update"},
        "serviceaccounts": {"get"},
        "services": {"create", "get"},
        "events": {"list", "watch"},
        # Job PodDisruptionBudgets (docs/executors/kubernetes/_index.md, runner 19.3).
        "poddisruptionbudgets": {"create", "get"},
    }
    assert {group for rule in rbac["rules"] for group in rule["apiGroups"]} == {"", "policy"}
    assert not any("*" in rule["verbs"] or "*" in rule["resources"] for rule in rbac["rules"])


def test_warm_capacity_adds_deployments_rights_only() -> None:
    run = declare(job=job(warm=True))
    rules = values_of(run)["rbac"]["rules"]
    assert {
        "apiGroups": ["apps"],
        "resources": ["deployments"],
        "verbs": ["create", "delete", "get", "list", "update"],
    } in rules
    assert not any("scheduling.k8s.io" in rule["apiGroups"] for rule in rules)
    config = tomllib.loads(values_of(run)["runners"]["config"])
    assert (
        config["runners"][0]["kubernetes"]["autoscaler"]["pause_pod_priority_class_name"]
        == "fleet-pause"
    )


def test_declared_objects_pass_kubernetes_schema_validation(
    validate_manifest: Callable[[dict[str, Any]], None],
) -> None:
    run = declare(cache_secret={"accesskey": "a", "secretkey": "b"}, job=job(warm=True))
    for secret in run.of_type("kubernetes:core/v1:Secret"):
        inputs = {key: unwrap_rpc_secret(value) for key, value in secret.inputs.items()}
        validate_manifest({"apiVersion": "v1", "kind": "Secret", **inputs})


def test_config_template_is_one_runner_entry_and_the_checksum_follows_it() -> None:
    run = declare()
    template = tomllib.loads(values_of(run)["runners"]["config"])
    assert set(template) == {"runners"}
    assert len(template["runners"]) == 1
    assert template["runners"][0]["cache"] == CACHE
    effective = tomllib.loads(run.outputs["config_toml"])
    assert effective["concurrent"] == 25
    assert effective["check_interval"] == 5
    assert effective["runners"] == template["runners"]
    assert (
        run.outputs["config_checksum"]
        == hashlib.sha256(run.outputs["config_toml"].encode()).hexdigest()
    )
    assert run.secret_outputs == set()


def test_every_child_is_parented_to_the_component() -> None:
    run = declare(job=job(warm=True), cache_secret={"accesskey": "a", "secretkey": "b"})
    component = run.one("gitlab-runner-fleet:index:GitlabRunner")
    children = [r for r in run.resources if r is not component]
    assert len(children) == 3
    assert all(child.parent == component.urn for child in children)
