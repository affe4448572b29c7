"""RunnerShared under Pulumi mocks: the managers' service account and the pause PriorityClass."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from components.workloads.runner_shared import PAUSE_POD_PRIORITY, RunnerShared, RunnerSharedArgs
from tests.harness import ProgramRun, run_program

ROLE_ARN = "arn:aws:iam::123456789012:role/cache-access-irsa"


def declare(**overrides: Any) -> ProgramRun:
    args: RunnerSharedArgs = {
        "namespace": "gitlab-runner",
        "service_account_name": "gitlab-runner",
        "service_account_role_arn": ROLE_ARN,
        "pause_pod_priority_class": "fleet-pause",
    }
    args.update(overrides)  # type: ignore[typeddict-item]
    return run_program(lambda: RunnerShared("runner-shared", args))


def test_one_service_account_carries_the_irsa_role_for_every_manager(
    validate_manifest: Callable[[dict[str, Any]], None],
) -> None:
    account = declare().one("kubernetes:core/v1:ServiceAccount")
    assert account.inputs["metadata"] == {
        "name": "gitlab-runner",
        "namespace": "gitlab-runner",
        "annotations": {"eks.amazonaws.com/role-arn": ROLE_ARN},
    }
    validate_manifest({"apiVersion": "v1", "kind": "ServiceAccount", **account.inputs})


def test_without_irsa_the_account_has_no_role() -> None:
    account = declare(service_account_role_arn=None).one("kubernetes:core/v1:ServiceAccount")
    assert account.inputs["metadata"]["annotations"] == {}


def test_pause_pods_sit_below_jobs_but_above_the_expendable_cutoff(
    validate_manifest: Callable[[dict[str, Any]], None],
) -> None:
    priority_class = declare().one("kubernetes:scheduling.k8s.io/v1:PriorityClass")
    assert priority_class.inputs["metadata"]["name"] == "fleet-pause"
    # cluster-autoscaler never scales up for a pod whose priority is below
    # --expendable-pods-priority-cutoff (-10): `IsExpendablePod` is priority < cutoff
    # (core/utils/expendable.go). -1 is the runner's own pause pod priority.
    assert priority_class.inputs["value"] == PAUSE_POD_PRIORITY == -1
    assert -10 < PAUSE_POD_PRIORITY < 0
    assert priority_class.inputs["globalDefault"] is False
    assert priority_class.inputs["preemptionPolicy"] == "Never"
    validate_manifest(
        {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", **priority_class.inputs}
    )


def test_no_priority_class_without_warm_capacity() -> None:
    run = declare(pause_pod_priority_class=None)
    assert run.of_type("kubernetes:scheduling.k8s.io/v1:PriorityClass") == []


def test_the_managers_namespace_enforces_restricted(
    validate_manifest: Callable[[dict[str, Any]], None],
) -> None:
    namespace = declare(pod_security_version="v1.34").one("kubernetes:core/v1:Namespace")
    labels = namespace.inputs["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
        assert labels[f"pod-security.kubernetes.io/{mode}-version"] == "v1.34"
    validate_manifest({"apiVersion": "v1", "kind": "Namespace", **namespace.inputs})
