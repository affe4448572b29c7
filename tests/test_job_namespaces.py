"""JobNamespaces under Pulumi mocks: namespaces, their Pod Security labels, the job ServiceAccount
and the NetworkPolicies, every object valid for Kubernetes 1.34."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
from pulumi.provider.experimental.analyzer import Analyzer

from components.workloads.isolation import (
    DENIED_EGRESS,
    JOB_EGRESS_POLICY,
    JOB_INGRESS_POLICY,
    JOB_SERVICE_ACCOUNT,
    MANAGER_INGRESS_POLICY,
    MANAGER_POD_LABELS,
    job_namespace_name,
    job_pod_security_level,
)
from components.workloads.job_namespaces import (
    PATCH_FORCE_ANNOTATION,
    JobNamespaces,
    JobNamespacesArgs,
    JobNamespaceSpec,
)
from tests.harness import ProgramRun, Registered, run_program

NAMESPACE = "kubernetes:core/v1:Namespace"
PATCH = "kubernetes:core/v1:NamespacePatch"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
KINDS = {
    NAMESPACE: ("v1", "Namespace"),
    SERVICE_ACCOUNT: ("v1", "ServiceAccount"),
    POLICY: ("networking.k8s.io/v1", "NetworkPolicy"),
}
ROOTLESS = job_namespace_name("rootless")
DIND = job_namespace_name("dind")


def spec(mode: str, **extra: Any) -> JobNamespaceSpec:
    namespace: JobNamespaceSpec = {
        "name": job_namespace_name(mode),  # type: ignore[arg-type]
        "pod_security_level": job_pod_security_level(mode),  # type: ignore[arg-type]
    }
    namespace.update(extra)  # type: ignore[typeddict-item]
    return namespace


def declare(manager_from_resource: bool = False, **overrides: Any) -> ProgramRun:
    def program() -> None:
        args: JobNamespacesArgs = {
            "manager_namespace": "gitlab-runner",
            "job_namespaces": [spec("rootless"), spec("dind")],
            "pod_security_version": "v1.34",
        }
        if manager_from_resource:
            manager = k8s.core.v1.Namespace("manager", metadata={"name": "gitlab-runner"})
            args["manager_namespace"] = manager.metadata.apply(lambda meta: str(meta.name))
        args.update(overrides)  # type: ignore[typeddict-item]
        jobs = JobNamespaces("jobs", args)
        pulumi.export("namespaces", jobs.namespaces)
        pulumi.export("serviceAccount", jobs.service_account_name)

    return run_program(program)


def named(resources: list[Registered], name: str, namespace: str | None = None) -> Registered:
    return next(
        r
        for r in resources
        if r.inputs["metadata"]["name"] == name
        and (namespace is None or r.inputs["metadata"].get("namespace") == namespace)
    )


def test_each_job_namespace_enforces_its_pod_security_level() -> None:
    run = declare()
    for name, level in ((ROOTLESS, "baseline"), (DIND, "privileged")):
        labels = named(run.of_type(NAMESPACE), name).inputs["metadata"]["labels"]
        for mode in ("enforce", "warn", "audit"):
            assert labels[f"pod-security.kubernetes.io/{mode}"] == level
            assert labels[f"pod-security.kubernetes.io/{mode}-version"] == "v1.34"
    assert run.outputs["namespaces"] == [ROOTLESS, DIND]


def test_every_job_namespace_gets_the_tokenless_service_account_and_no_role() -> None:
    run = declare()
    accounts = run.of_type(SERVICE_ACCOUNT)
    assert sorted(a.inputs["metadata"]["namespace"] for a in accounts) == [DIND, ROOTLESS]
    for account in accounts:
        assert account.inputs["metadata"]["name"] == JOB_SERVICE_ACCOUNT
        assert account.inputs["automountServiceAccountToken"] is False
        assert "annotations" not in account.inputs["metadata"]
    assert run.outputs["serviceAccount"] == JOB_SERVICE_ACCOUNT
    # Nothing grants the job ServiceAccount any right: no Role, binding or Secret is created.
    assert {r.type for r in run.resources} == {
        "gitlab-runner-fleet:index:JobNamespaces",
        NAMESPACE,
        SERVICE_ACCOUNT,
        POLICY,
    }


def test_network_policies_guard_every_job_namespace_and_the_managers() -> None:
    run = declare()
    policies = run.of_type(POLICY)
    for namespace in (ROOTLESS, DIND):
        egress = named(policies, JOB_EGRESS_POLICY, namespace).inputs["spec"]
        (rule,) = egress["egress"]
        excepted = [
            e for peer in rule["to"] if "ipBlock" in peer for e in peer["ipBlock"]["except"]
        ]
        assert sorted(excepted) == sorted(DENIED_EGRESS)
        ingress = named(policies, JOB_INGRESS_POLICY, namespace).inputs["spec"]
        assert ingress["policyTypes"] == ["Ingress"]
        assert ingress.get("ingress", []) == []
    manager = named(policies, MANAGER_INGRESS_POLICY, "gitlab-runner").inputs["spec"]
    assert manager["podSelector"] == {"matchLabels": MANAGER_POD_LABELS}
    (rule,) = manager["ingress"]
    (peer,) = rule["from"]
    assert peer["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [DIND, ROOTLESS]}
    ]
    assert rule["ports"] == [{"protocol": "TCP", "port": 9252}]
    assert len(policies) == 5


def test_network_policies_can_be_turned_off() -> None:
    run = declare(network_policies=False)
    assert run.of_type(POLICY) == []
    assert len(run.of_type(SERVICE_ACCOUNT)) == 2


def test_named_metrics_scrapers_and_manager_labels_are_used() -> None:
    run = declare(
        manager_pod_labels={"app": "gitlab-runner-default"},
        metrics_scraper_namespaces=["monitoring"],
        metrics_port=9300,
    )
    manager = named(run.of_type(POLICY), MANAGER_INGRESS_POLICY).inputs["spec"]
    assert manager["podSelector"] == {"matchLabels": {"app": "gitlab-runner-default"}}
    (rule,) = manager["ingress"]
    assert rule["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == ["monitoring"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 9300}]


def test_existing_namespace_is_labelled_by_a_forced_patch() -> None:
    run = declare(job_namespaces=[spec("rootless", existing=True)])
    assert run.of_type(NAMESPACE) == []
    patch = run.one(PATCH)
    metadata = patch.inputs["metadata"]
    assert metadata["name"] == ROOTLESS
    assert metadata["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    # Without it, labels another field manager set (kubectl label) would conflict.
    assert metadata["annotations"] == {PATCH_FORCE_ANNOTATION: "true"}
    account = run.one(SERVICE_ACCOUNT)
    assert patch.urn in account.dependencies
    assert run.outputs["namespaces"] == [ROOTLESS]


def test_objects_in_a_namespace_wait_for_it() -> None:
    run = declare(manager_from_resource=True)
    for namespace in run.of_type(NAMESPACE):
        name = namespace.inputs["metadata"]["name"]
        dependents = [
            r
            for r in run.resources
            if r.type in (SERVICE_ACCOUNT, POLICY) and r.inputs["metadata"]["namespace"] == name
        ]
        assert dependents
        assert all(namespace.urn in r.dependencies for r in dependents), name
    manager = next(r for r in run.of_type(NAMESPACE) if r.name == "manager")
    assert manager.urn in named(run.of_type(POLICY), MANAGER_INGRESS_POLICY).dependencies
    component = run.one("gitlab-runner-fleet:index:JobNamespaces")
    children = [r for r in run.resources if r.type in KINDS and r is not manager]
    assert all(run.descends_from(r, component) for r in children)


def test_every_object_is_valid_for_kubernetes(
    validate_manifest: Callable[[dict[str, Any]], None],
) -> None:
    run = declare()
    for resource in run.resources:
        if resource.type in KINDS:
            api_version, kind = KINDS[resource.type]
            validate_manifest({"apiVersion": api_version, "kind": kind, **resource.inputs})


@pytest.mark.parametrize(
    ("job_namespaces", "expected"),
    [
        ([{"name": "gitlab-runner", "pod_security_level": "baseline"}], "beside the runner token"),
        ([{"name": "jobs", "pod_security_level": "restricted"}], "never pass 'restricted'"),
    ],
)
def test_unusable_job_namespaces_are_refused(
    job_namespaces: list[dict[str, str]], expected: str
) -> None:
    run = run_program(
        lambda: JobNamespaces(
            "jobs",
            {"manager_namespace": "gitlab-runner", "job_namespaces": job_namespaces},  # type: ignore[typeddict-item]
        ),
        return_error=True,
    )
    assert isinstance(run.error, ValueError)
    assert expected in str(run.error)
    assert run.resources == [] or {r.type for r in run.resources} == {
        "gitlab-runner-fleet:index:JobNamespaces"
    }


def test_schema_is_inferred_for_other_languages() -> None:
    analyzed = Analyzer("gitlab-runner-fleet").analyze([JobNamespaces])
    (component,) = analyzed["component_definitions"].values()
    assert set(component.inputs) == {
        "managerNamespace",
        "jobNamespaces",
        "podSecurityVersion",
        "networkPolicies",
        "managerPodLabels",
        "metricsPort",
        "metricsScraperNamespaces",
    }
    assert set(component.outputs) == {"namespaces", "serviceAccountName"}
