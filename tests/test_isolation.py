"""Job isolation as pure functions: namespaces, Pod Security levels, NetworkPolicies, the manager's
chart values, and what the Pod Security Standards admit of the pods the runner creates."""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from components.kubernetes_names import namespace_problems
from components.workloads.isolation import (
    BUILD_MODES,
    JOB_EGRESS_POLICY,
    JOB_INGRESS_POLICY,
    JOB_SERVICE_ACCOUNT,
    MANAGER_CONFIG_DIR,
    MANAGER_INGRESS_POLICY,
    MANAGER_POD_LABELS,
    MANAGER_TMP_DIR,
    job_egress_spec,
    job_ingress_spec,
    job_kubernetes_settings,
    job_namespace_name,
    job_namespace_problems,
    job_pod_security_level,
    job_service_account,
    manager_chart_values,
    manager_ingress_spec,
    manager_tmp_size_limit,
    network_policy,
    pod_security_labels,
    pod_security_version,
    pod_security_violations,
)

Validate = Callable[[dict[str, Any]], None]
JOB_NAMESPACES = [job_namespace_name(mode) for mode in BUILD_MODES]

# gitlab-runner chart 0.92.0 values.yaml defaults for the manager pod.
CHART_DEFAULTS: dict[str, Any] = {
    "securityContext": {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": False,
        "runAsNonRoot": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    },
    "podSecurityContext": {"runAsUser": 100, "fsGroup": 65533},
    "podLabels": {},
    "volumes": [],
    "volumeMounts": [],
}


def helm_merge(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of user values into a chart's: maps merge, everything else replaces."""
    merged = copy.deepcopy(dict(defaults))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = helm_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def manager_pod(values: Mapping[str, Any]) -> dict[str, Any]:
    """The manager pod as templates/deployment.yaml (chart 0.92.0) renders it, runner token set."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "gitlab-runner",
            "labels": {"app": "gitlab-runner", "release": "gitlab-runner", **values["podLabels"]},
        },
        "spec": {
            "securityContext": values["podSecurityContext"],
            "containers": [
                {
                    "name": "gitlab-runner",
                    "image": "registry.gitlab.com/gitlab-org/gitlab-runner:alpine-v19.3.0",
                    "securityContext": values["securityContext"],
                    "volumeMounts": [
                        {"name": "projected-secrets", "mountPath": "/secrets"},
                        {"name": "etc-gitlab-runner", "mountPath": MANAGER_CONFIG_DIR},
                        {"name": "configmaps", "mountPath": "/configmaps"},
                        *values["volumeMounts"],
                    ],
                }
            ],
            "volumes": [
                {"name": "runner-secrets", "emptyDir": {"medium": "Memory"}},
                {"name": "etc-gitlab-runner", "emptyDir": {"medium": "Memory"}},
                {
                    "name": "projected-secrets",
                    "projected": {"sources": [{"secret": {"name": "gitlab-runner-token"}}]},
                },
                {"name": "configmaps", "configMap": {"name": "gitlab-runner"}},
                *values["volumes"],
            ],
        },
    }


def unprivileged_context(**extra: Any) -> dict[str, Any]:
    """A job container's securityContext as the runner builds it (common/config.go
    GetContainerSecurityContext): NET_RAW dropped by default (executors/kubernetes/kubernetes.go
    defaultCapDrop), the container's own flags, else the `[runners.kubernetes]` ones."""
    return {"capabilities": {"drop": ["NET_RAW"]}, "privileged": False, **extra}


def job_pod(build_mode: str) -> dict[str, Any]:
    """A job pod of a pool, with the security contexts the lead's config.toml sets: build and
    helper never privileged nor escalating, services privileged only in `dind` pools."""
    build = unprivileged_context(allowPrivilegeEscalation=False)
    service = unprivileged_context(privileged=build_mode == "dind")
    volumes = ["repo", "scripts", "logs", "docker-certs"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "runner-abc-project-1-concurrent-0", "namespace": "jobs"},
        "spec": {
            "serviceAccountName": JOB_SERVICE_ACCOUNT,
            "automountServiceAccountToken": False,
            "hostAliases": [{"ip": "127.0.0.1", "hostnames": ["docker"]}],
            "initContainers": [
                {
                    "name": "init-permissions",
                    "image": "helper",
                    "securityContext": unprivileged_context(),
                }
            ],
            "containers": [
                {"name": "build", "image": "docker:28", "securityContext": build},
                {"name": "helper", "image": "helper", "securityContext": build},
                {"name": "svc-0", "image": "docker:28-dind", "securityContext": service},
            ],
            "volumes": [{"name": name, "emptyDir": {}} for name in volumes],
        },
    }


def pause_pod() -> dict[str, Any]:
    """A pause pod as executors/kubernetes/autoscaler/pause_pod_manager.go builds it: no
    securityContext at all."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "pause"},
        "spec": {
            "containers": [
                {
                    "name": "pause",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "1"}},
                }
            ],
            "terminationGracePeriodSeconds": 0,
            "serviceAccountName": JOB_SERVICE_ACCOUNT,
        },
    }


def admitted_ips(spec: Mapping[str, Any], address: str) -> bool:
    """Whether an egress rule's ipBlocks admit `address` (NetworkPolicy ipBlock semantics)."""
    ip = ipaddress.ip_address(address)
    for rule in spec["egress"]:
        for peer in rule["to"]:
            block = peer.get("ipBlock")
            if block is None:
                continue
            cidr = ipaddress.ip_network(block["cidr"])
            excepted = [ipaddress.ip_network(e) for e in block.get("except", [])]
            if ip.version == cidr.version and ip in cidr and not any(ip in e for e in excepted):
                return True
    return False


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and In/NotIn expressions) against labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        present = labels.get(expression["key"]) in expression["values"]
        if present != (expression["operator"] == "In"):
            return False
    return True


def ingress_admits(spec: Mapping[str, Any], namespace: str, port: int) -> bool:
    """Whether any pod of `namespace` may connect to `port` of the selected pods."""
    namespace_labels = {"kubernetes.io/metadata.name": namespace}
    for rule in spec["ingress"]:
        ports = {p["port"] for p in rule.get("ports", [])}
        if ports and port not in ports:
            continue
        if any(selector_matches(p["namespaceSelector"], namespace_labels) for p in rule["from"]):
            return True
    return False


def test_pools_of_different_build_modes_never_share_a_job_namespace() -> None:
    assert JOB_NAMESPACES == ["gitlab-runner-jobs-dind", "gitlab-runner-jobs-rootless"]
    assert all(namespace_problems(name) == [] for name in JOB_NAMESPACES)
    assert job_pod_security_level("rootless") == "baseline"
    assert job_pod_security_level("dind") == "privileged"


def test_pod_security_labels_enforce_warn_and_audit_one_pinned_level() -> None:
    # pod-security.kubernetes.io/<mode> and <mode>-version, the labels PSA reads.
    assert pod_security_labels("restricted", pod_security_version("1.34")) == {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "v1.34",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/warn-version": "v1.34",
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/audit-version": "v1.34",
    }
    assert pod_security_version(None) == "latest"


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        (
            [{"name": "Jobs", "pod_security_level": "baseline"}],
            "must be a Kubernetes namespace name",
        ),
        ([{"name": "jobs", "pod_security_level": "restricted"}], "never pass 'restricted'"),
        ([{"name": "jobs", "pod_security_level": "baseline"}] * 2, "listed twice"),
        ([{"name": "gitlab-runner", "pod_security_level": "baseline"}], "beside the runner token"),
    ],
)
def test_job_namespace_problems(specs: list[dict[str, str]], expected: str) -> None:
    (problem,) = job_namespace_problems(specs, "gitlab-runner")
    assert expected in problem


def test_job_namespaces_of_both_modes_are_accepted() -> None:
    specs = [
        {"name": job_namespace_name(m), "pod_security_level": job_pod_security_level(m)}
        for m in BUILD_MODES
    ]
    assert job_namespace_problems(specs, "gitlab-runner") == []


def test_job_service_account_has_no_token_and_no_iam_role(validate: Validate) -> None:
    account = job_service_account("gitlab-runner-jobs-rootless")
    validate(account)
    assert account["metadata"]["name"] == JOB_SERVICE_ACCOUNT
    assert account["automountServiceAccountToken"] is False
    # The EKS pod identity webhook acts on this annotation only; none means no web identity.
    assert "annotations" not in account["metadata"]
    assert "secrets" not in account
    assert "imagePullSecrets" not in account


def test_job_settings_use_the_tokenless_service_account() -> None:
    # common/config.go (runner 19.3): `service_account`, `automount_service_account_token`.
    settings = job_kubernetes_settings()
    assert settings == {
        "service_account": JOB_SERVICE_ACCOUNT,
        "automount_service_account_token": False,
    }
    # executors/kubernetes/overwrites.go evaluateOverwrite: an empty regex disables overrides.
    assert not any(key.endswith("_overwrite_allowed") for key in settings)
    assert "namespace_per_job" not in settings
    assert "bearer_token" not in settings


def test_job_egress_excludes_the_node_credential_endpoints(validate: Validate) -> None:
    spec = job_egress_spec()
    validate(network_policy(JOB_EGRESS_POLICY, "gitlab-runner-jobs-dind", spec))
    assert spec["podSelector"] == {}
    assert spec["policyTypes"] == ["Egress"]
    for blocked in ("169.254.169.254", "fd00:ec2::254", "169.254.170.23", "fd00:ec2::23"):
        assert not admitted_ips(spec, blocked), blocked
    # DNS (VPC resolver, NodeLocal DNS), the VPC, the internet, IPv6 alike.
    for open_address in (
        "169.254.169.253",
        "169.254.20.10",
        "10.0.12.7",
        "8.8.8.8",
        "2600:1f18::1",
    ):
        assert admitted_ips(spec, open_address), open_address
    # In-cluster pods stay reachable on engines whose ipBlocks never match pods (Cilium).
    assert {"namespaceSelector": {}} in spec["egress"][0]["to"]
    assert len(spec["egress"]) == 1


def test_job_pods_accept_no_ingress(validate: Validate) -> None:
    spec = job_ingress_spec()
    validate(network_policy(JOB_INGRESS_POLICY, "gitlab-runner-jobs-rootless", spec))
    assert spec == {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []}
    for namespace in [*JOB_NAMESPACES, "gitlab-runner", "monitoring"]:
        assert not ingress_admits(spec, namespace, 2376)


def test_manager_accepts_only_metrics_scrapes_from_outside_job_namespaces(
    validate: Validate,
) -> None:
    spec = manager_ingress_spec(
        manager_pod_labels=MANAGER_POD_LABELS, job_namespaces=JOB_NAMESPACES, metrics_port=9252
    )
    validate(network_policy(MANAGER_INGRESS_POLICY, "gitlab-runner", spec))
    # Every pool's manager pod: the chart adds `podLabels` to the pod's own labels.
    values = helm_merge(CHART_DEFAULTS, {"podLabels": {**MANAGER_POD_LABELS, "pool": "arm64"}})
    assert selector_matches(spec["podSelector"], manager_pod(values)["metadata"]["labels"])
    assert spec["policyTypes"] == ["Ingress"]
    for job_namespace in JOB_NAMESPACES:
        assert not ingress_admits(spec, job_namespace, 9252)
    assert ingress_admits(spec, "monitoring", 9252)
    assert ingress_admits(spec, "gitlab-runner", 9252)
    # Nothing else listens for anyone: the session server port stays closed too.
    assert not ingress_admits(spec, "monitoring", 8093)


def test_metrics_scrapers_can_be_named_or_none() -> None:
    named = manager_ingress_spec(
        manager_pod_labels=MANAGER_POD_LABELS,
        job_namespaces=JOB_NAMESPACES,
        metrics_port=9252,
        metrics_scraper_namespaces=["monitoring"],
    )
    assert ingress_admits(named, "monitoring", 9252)
    assert not ingress_admits(named, "default", 9252)
    nobody = manager_ingress_spec(
        manager_pod_labels=MANAGER_POD_LABELS,
        job_namespaces=JOB_NAMESPACES,
        metrics_port=9252,
        metrics_scraper_namespaces=[],
    )
    assert nobody["ingress"] == []


def test_manager_chart_values_pass_restricted(validate: Validate) -> None:
    pod = manager_pod(helm_merge(CHART_DEFAULTS, manager_chart_values(concurrent=10)))
    validate(pod)
    assert pod_security_violations(pod, "restricted") == []


def test_the_charts_default_manager_pod_lacks_only_a_seccomp_profile() -> None:
    pod = manager_pod(CHART_DEFAULTS)
    assert pod_security_violations(pod, "restricted") == ["seccompProfile_restricted"]
    assert pod_security_violations(pod, "baseline") == []


def test_manager_root_filesystem_is_read_only_and_what_the_runner_writes_is_a_volume() -> None:
    pod = manager_pod(helm_merge(CHART_DEFAULTS, manager_chart_values(concurrent=10)))
    (container,) = pod["spec"]["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    empty_dirs = {v["name"] for v in pod["spec"]["volumes"] if "emptyDir" in v}
    writable = {m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty_dirs}
    # config.toml and .runner_system_id (chart configmap.yaml entrypoint, runner
    # commands/internal/configfile), and each running job's log (helpers/trace/buffer.go).
    assert {MANAGER_CONFIG_DIR, MANAGER_TMP_DIR} <= writable


def test_manager_tmp_holds_every_job_log_at_its_limit() -> None:
    # network/trace.go: each job's buffer stops at output_limit KiB (default 4096).
    assert manager_tmp_size_limit(10) == "104Mi"
    assert manager_tmp_size_limit(25, output_limit_kib=16384) == "464Mi"
    assert manager_tmp_size_limit(3, output_limit_kib=100) == "65Mi"
    values = manager_chart_values(concurrent=25, output_limit_kib=16384)
    assert values["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "464Mi"}}]


def test_rootless_job_and_pause_pods_pass_baseline(validate: Validate) -> None:
    for pod in (job_pod("rootless"), pause_pod()):
        validate(pod)
        assert pod_security_violations(pod, "baseline") == []
    # Images run as root and pause pods set no securityContext: `restricted` would refuse them.
    assert "runAsNonRoot" in pod_security_violations(job_pod("rootless"), "restricted")
    assert "seccompProfile_restricted" in pod_security_violations(pause_pod(), "restricted")


def test_dind_job_pod_needs_the_privileged_level() -> None:
    pod = job_pod("dind")
    assert pod_security_violations(pod, "baseline") == ["privileged"]
    assert pod_security_violations(pod, "privileged") == []


def with_spec(pod: dict[str, Any], **fields: Any) -> dict[str, Any]:
    changed = copy.deepcopy(pod)
    changed["spec"].update(fields)
    return changed


def with_build_context(pod: dict[str, Any], **context: Any) -> dict[str, Any]:
    changed = copy.deepcopy(pod)
    changed["spec"]["containers"][0]["securityContext"].update(context)
    return changed


def test_baseline_refuses_host_access() -> None:
    pod = job_pod("rootless")
    host_path = {"name": "docker-sock", "hostPath": {"path": "/var/run/docker.sock"}}
    refused = {
        "hostPathVolumes": with_spec(pod, volumes=[host_path]),
        "hostNamespaces": with_spec(pod, hostPID=True),
        "capabilities_baseline": with_build_context(pod, capabilities={"add": ["SYS_ADMIN"]}),
        "privileged": with_build_context(pod, privileged=True),
        # What rootless BuildKit asks for (moby/buildkit examples/kubernetes/job.rootless.yaml).
        "seccompProfile_baseline": with_build_context(pod, seccompProfile={"type": "Unconfined"}),
    }
    for check, refused_pod in refused.items():
        assert pod_security_violations(refused_pod, "baseline") == [check]


# One case per upstream check (k8s.io/pod-security-admission policy/check_*.go, v0.34.9).
CONTAINER = {"name": "c", "image": "i"}
RESTRICTED_CONTEXT = {
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def pod_with(
    context: Mapping[str, Any] | None = None,
    pod_context: Mapping[str, Any] | None = None,
    annotations: Mapping[str, str] | None = None,
    **container: Any,
) -> dict[str, Any]:
    return {
        "metadata": {"annotations": dict(annotations or {})},
        "spec": {
            "securityContext": dict(pod_context or {}),
            "containers": [{**CONTAINER, "securityContext": dict(context or {}), **container}],
        },
    }


@pytest.mark.parametrize(
    ("pod", "baseline", "restricted"),
    [
        (pod_with(RESTRICTED_CONTEXT), [], []),
        # runAsNonRoot and seccomp at pod level cover the containers.
        (
            pod_with(
                {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                {
                    "runAsNonRoot": True,
                    "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"},
                },
            ),
            [],
            [],
        ),
        (
            pod_with({**RESTRICTED_CONTEXT, "runAsNonRoot": False}, {"runAsNonRoot": True}),
            [],
            ["runAsNonRoot"],
        ),
        (pod_with({**RESTRICTED_CONTEXT, "runAsUser": 0}), [], ["runAsUser"]),
        (
            pod_with(
                {
                    **RESTRICTED_CONTEXT,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                }
            ),
            [],
            [],
        ),
        (
            pod_with({**RESTRICTED_CONTEXT, "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}}),
            [],
            ["capabilities_restricted"],
        ),
        (
            pod_with({**RESTRICTED_CONTEXT, "capabilities": {"add": ["NET_ADMIN"]}}),
            ["capabilities_baseline"],
            ["capabilities_restricted"],
        ),
        (
            pod_with(
                {k: v for k, v in RESTRICTED_CONTEXT.items() if k != "allowPrivilegeEscalation"}
            ),
            [],
            ["allowPrivilegeEscalation"],
        ),
        (pod_with({**RESTRICTED_CONTEXT, "procMount": "Unmasked"}), ["procMount"], ["procMount"]),
        (
            pod_with({**RESTRICTED_CONTEXT, "appArmorProfile": {"type": "Unconfined"}}),
            ["appArmorProfile"],
            ["appArmorProfile"],
        ),
        (
            pod_with(
                RESTRICTED_CONTEXT,
                annotations={"container.apparmor.security.beta.kubernetes.io/c": "unconfined"},
            ),
            ["appArmorProfile"],
            ["appArmorProfile"],
        ),
        (
            pod_with(RESTRICTED_CONTEXT, {"seLinuxOptions": {"type": "spc_t"}}),
            ["seLinuxOptions"],
            ["seLinuxOptions"],
        ),
        (
            pod_with(RESTRICTED_CONTEXT, {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}),
            ["sysctls"],
            ["sysctls"],
        ),
        (
            pod_with(
                RESTRICTED_CONTEXT, {"sysctls": [{"name": "net.ipv4.tcp_rmem", "value": "4096"}]}
            ),
            [],
            [],
        ),
        (
            pod_with(
                RESTRICTED_CONTEXT, readinessProbe={"httpGet": {"port": 80, "host": "10.0.0.1"}}
            ),
            ["hostProbesAndHostLifecycle"],
            ["hostProbesAndHostLifecycle"],
        ),
        (
            pod_with(RESTRICTED_CONTEXT, ports=[{"containerPort": 80, "hostPort": 80}]),
            ["hostPorts"],
            ["hostPorts"],
        ),
    ],
)
def test_pod_security_checks_follow_the_upstream_policy(
    pod: dict[str, Any], baseline: list[str], restricted: list[str]
) -> None:
    assert pod_security_violations(pod, "baseline") == baseline
    assert pod_security_violations(pod, "restricted") == restricted


def test_restricted_limits_volume_types() -> None:
    pod = pod_with(RESTRICTED_CONTEXT)
    pod["spec"]["volumes"] = [{"name": "share", "nfs": {"server": "nfs", "path": "/"}}]
    assert pod_security_violations(pod, "baseline") == []
    assert pod_security_violations(pod, "restricted") == ["restrictedVolumes"]


@pytest.fixture
def validate(validate_manifest: Validate) -> Validate:
    return validate_manifest
