"""The Kubernetes-side boundaries between CI jobs, the runner managers and the nodes.

Pure functions: no Pulumi runtime needed. They produce the job namespaces' names and Pod
Security labels, the job ServiceAccount, the NetworkPolicies, the gitlab-runner chart values
that let the manager pass the `restricted` Pod Security Standard, and the job pod identity
keys of `[runners.kubernetes]`. `pod_security_violations` transcribes the Pod Security
Admission checks (k8s.io/pod-security-admission `policy/check_*.go`, v0.34) so tests and
reviews can tell which level a pod passes without an API server.
"""

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, get_args

from ..conventions import DEFAULT_RUNNER_NAMESPACE
from ..kubernetes_names import namespace_problems

BuildMode = Literal["dind", "rootless"]
"""`dind`: Docker-in-Docker, the dind service container is privileged; `rootless`: nothing is."""
PodSecurityLevel = Literal["privileged", "baseline", "restricted"]
BUILD_MODES: tuple[BuildMode, ...] = get_args(BuildMode)

JOB_SERVICE_ACCOUNT = "gitlab-runner-job"
"""Job pods run as this ServiceAccount: no API token mounted, no role bound, no IAM role."""
MANAGER_POD_LABELS = {"gitlab-runner-fleet/component": "runner-manager"}
"""Every pool's manager pod carries these (chart `podLabels`): one selector finds them all."""
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
"""Set by the API server on every namespace (Kubernetes 1.22+): selects a namespace by name."""
PART_OF_LABELS = {"app.kubernetes.io/part-of": "gitlab-runner-fleet"}

POD_SECURITY_LABEL_PREFIX = "pod-security.kubernetes.io"
POD_SECURITY_MODES = ("enforce", "warn", "audit")
JOB_POD_SECURITY_LEVELS: dict[BuildMode, PodSecurityLevel] = {
    # Job pods run images as root and pause pods set no securityContext: `restricted` would
    # refuse both, `baseline` refuses privilege, host namespaces and hostPath.
    "rootless": "baseline",
    # The dind service container is privileged, which only the `privileged` level admits.
    "dind": "privileged",
}

INSTANCE_METADATA_ADDRESSES = ("169.254.169.254/32", "fd00:ec2::254/128")
"""EC2 instance metadata service (IMDS), IPv4 and IPv6: the node's IAM role credentials."""
POD_IDENTITY_AGENT_ADDRESSES = ("169.254.170.23/32", "fd00:ec2::23/128")
"""EKS Pod Identity agent on every node (AWS EKS user guide, pod-id-agent-setup)."""
DENIED_EGRESS = (*INSTANCE_METADATA_ADDRESSES, *POD_IDENTITY_AGENT_ADDRESSES)

# gitlab-runner chart 0.92.0 templates/configmap.yaml: a non-root manager keeps its config.toml
# (and the runner its .runner_system_id beside it) in this emptyDir of templates/deployment.yaml.
MANAGER_CONFIG_DIR = "/home/gitlab-runner/.gitlab-runner"
# The runner buffers every running job's log in a temporary file (helpers/trace/buffer.go,
# os.CreateTemp("", "trace")): with a read-only root filesystem /tmp must be a volume.
MANAGER_TMP_DIR = "/tmp"
MANAGER_RUN_AS_USER = 100
"""The alpine runner image's gitlab-runner user (chart values.yaml `podSecurityContext`)."""
MANAGER_FS_GROUP = 65533
DEFAULT_OUTPUT_LIMIT_KIB = 4096
"""The runner's default job log limit (common/consts.go DefaultTraceOutputLimit, 4 MiB)."""
TMP_HEADROOM_MIB = 64


def unprivileged_container_context() -> dict[str, Any]:
    """The securityContext of the fleet's own service containers (mirror, its expiry job, edge
    cache): no escalation, a read-only root, no capabilities; Pod Security `restricted` also
    wants the pod's non-root user and seccomp profile."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def place_pod(
    pod_spec: dict[str, Any],
    affinity: Mapping[str, Any] | None,
    node_selector: Mapping[str, str] | None,
    tolerations: Sequence[Mapping[str, str]] | None,
) -> None:
    """Sets on `pod_spec` the placement it was given (none given, none set)."""
    if affinity:
        pod_spec["affinity"] = affinity
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    if tolerations:
        pod_spec["tolerations"] = tolerations


def job_namespace_name(
    build_mode: BuildMode, manager_namespace: str = DEFAULT_RUNNER_NAMESPACE
) -> str:
    """The namespace every pool of one build mode runs its jobs in: pools of different build
    modes never share one, so each namespace's Pod Security level fits all its pools."""
    return f"{manager_namespace}-jobs-{build_mode}"


def job_pod_security_level(build_mode: BuildMode) -> PodSecurityLevel:
    """The Pod Security level a build mode's job namespace enforces."""
    return JOB_POD_SECURITY_LEVELS[build_mode]


def pod_security_version(kubernetes_minor: str | None) -> str:
    """The policy version to pin (`v1.34`): the cluster's minor, or `latest` when unknown.

    Pinned, an upgrade of the cluster does not tighten the policy under running pools.
    """
    return f"v{kubernetes_minor}" if kubernetes_minor else "latest"


def pod_security_labels(level: PodSecurityLevel, version: str) -> dict[str, str]:
    """Namespace labels that enforce, warn and audit one Pod Security level at one version."""
    labels: dict[str, str] = {}
    for mode in POD_SECURITY_MODES:
        labels[f"{POD_SECURITY_LABEL_PREFIX}/{mode}"] = level
        labels[f"{POD_SECURITY_LABEL_PREFIX}/{mode}-version"] = version
    return labels


def job_namespace_problems(
    job_namespaces: Sequence[Mapping[str, Any]], manager_namespace: str | None = None
) -> list[str]:
    """Why these job namespaces cannot be used (empty when they can).

    Each has a valid name and a level a job pod can pass (`baseline` or `privileged`); no two
    share a name, and none is the managers' namespace, where the token Secret lives.
    """
    problems = []
    seen: set[str] = set()
    for spec in job_namespaces:
        name = str(spec["name"])
        problems += [f"job namespace {name!r} {problem}" for problem in namespace_problems(name)]
        level = spec["pod_security_level"]
        if level not in ("baseline", "privileged"):
            problems.append(
                f"job namespace {name!r}: pod_security_level must be 'baseline' or 'privileged' "
                f"(pause pods and images running as root never pass 'restricted'), got {level!r}"
            )
        if name in seen:
            problems.append(f"job namespace {name!r} is listed twice")
        if name == manager_namespace:
            problems.append(
                f"job namespace {name!r} is the managers' namespace: jobs must not run beside "
                "the runner token"
            )
        seen.add(name)
    return problems


def job_service_account(namespace: str) -> dict[str, Any]:
    """The ServiceAccount job pods run as: its token is never mounted and it carries no
    `eks.amazonaws.com/role-arn` annotation, so the EKS pod identity webhook injects nothing."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": JOB_SERVICE_ACCOUNT, "namespace": namespace, "labels": PART_OF_LABELS},
        # Pause pods (executors/kubernetes/autoscaler/pause_pod_manager.go) set no
        # automountServiceAccountToken of their own: they follow this one.
        "automountServiceAccountToken": False,
    }


def job_kubernetes_settings(service_account: str = JOB_SERVICE_ACCOUNT) -> dict[str, Any]:
    """`[runners.kubernetes]` keys (runner 19.3 common/config.go) for the job pods' identity.

    Leave every `*_overwrite_allowed` key unset: an empty regex disables the job's override
    (executors/kubernetes/overwrites.go evaluateOverwrite), so no job can pick another
    namespace, service account or bearer token.
    """
    return {"service_account": service_account, "automount_service_account_token": False}


JOB_EGRESS_POLICY = "job-egress-no-node-credentials"
JOB_INGRESS_POLICY = "job-ingress-deny-all"
MANAGER_INGRESS_POLICY = "runner-manager-ingress"


def network_policy(name: str, namespace: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """A NetworkPolicy manifest, for review and validation."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(PART_OF_LABELS)},
        "spec": dict(spec),
    }


def job_egress_spec() -> dict[str, Any]:
    """Job pods may open connections anywhere except the node's credential endpoints.

    `ipBlock` covers addresses outside the pod network on every engine; the namespace selector
    adds in-cluster pods explicitly, because some engines (Cilium) never match pod addresses
    with an `ipBlock`. The managers are kept out by their own ingress policy: an allow-list
    cannot subtract pods from `0.0.0.0/0`.
    """
    ipv4 = [cidr for cidr in DENIED_EGRESS if ":" not in cidr]
    ipv6 = [cidr for cidr in DENIED_EGRESS if ":" in cidr]
    return {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [
            {
                "to": [
                    {"ipBlock": {"cidr": "0.0.0.0/0", "except": ipv4}},
                    {"ipBlock": {"cidr": "::/0", "except": ipv6}},
                    {"namespaceSelector": {}},
                ]
            }
        ],
    }


def job_ingress_spec() -> dict[str, Any]:
    """Nothing may connect to a job pod: its services talk to the build over localhost (the
    executor maps service aliases to 127.0.0.1, executors/kubernetes/host_aliases.go) and the
    manager drives the pod through the Kubernetes API (exec/attach), not the pod network."""
    return {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []}


def manager_ingress_spec(
    *,
    manager_pod_labels: Mapping[str, str],
    job_namespaces: Iterable[str],
    metrics_port: int,
    metrics_scraper_namespaces: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Only the managers' metrics port is reachable, and never from a job namespace.

    The runner serves `/metrics`, `/debug/jobs/list` (every running job's URL) and
    `/debug/pprof/` on one listener (commands/multi.go setupMetricsAndDebugServer). Scrapers
    are every namespace except the job namespaces, or only `metrics_scraper_namespaces` when
    given (an empty list admits nobody).
    """
    if metrics_scraper_namespaces is None:
        scrapers = {
            "key": NAMESPACE_NAME_LABEL,
            "operator": "NotIn",
            "values": sorted(job_namespaces),
        }
    else:
        scrapers = {
            "key": NAMESPACE_NAME_LABEL,
            "operator": "In",
            "values": sorted(metrics_scraper_namespaces),
        }
    ingress = []
    if metrics_scraper_namespaces is None or metrics_scraper_namespaces:
        ingress.append(
            {
                "from": [{"namespaceSelector": {"matchExpressions": [scrapers]}}],
                "ports": [{"protocol": "TCP", "port": metrics_port}],
            }
        )
    return {
        "podSelector": {"matchLabels": dict(manager_pod_labels)},
        "policyTypes": ["Ingress"],
        "ingress": ingress,
    }


def manager_tmp_size_limit(
    concurrent: int, output_limit_kib: int = DEFAULT_OUTPUT_LIMIT_KIB
) -> str:
    """Room in /tmp for a full log of every concurrent job (each capped at the output limit,
    network/trace.go), plus headroom: filling a sizeLimit evicts the manager and its jobs."""
    logs_mib = -(-concurrent * output_limit_kib // 1024)
    return f"{logs_mib + TMP_HEADROOM_MIB}Mi"


def manager_chart_values(
    *, concurrent: int, output_limit_kib: int = DEFAULT_OUTPUT_LIMIT_KIB
) -> dict[str, Any]:
    """gitlab-runner chart 0.92.0 values that make the manager pod pass `restricted`.

    The chart's defaults (values.yaml) already run as user 100, drop every capability and
    forbid privilege escalation; they lack a seccomp profile. The root filesystem is read-only:
    the chart mounts an emptyDir at the config directory and /tmp is added here. Helm merges
    these maps into the defaults; `volumes` and `volumeMounts` are lists and replace them.
    """
    runtime_default = {"type": "RuntimeDefault"}
    return {
        "podSecurityContext": {
            "runAsNonRoot": True,
            "runAsUser": MANAGER_RUN_AS_USER,
            "fsGroup": MANAGER_FS_GROUP,
            "seccompProfile": runtime_default,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": runtime_default,
        },
        "volumes": [
            {
                "name": "tmp",
                "emptyDir": {"sizeLimit": manager_tmp_size_limit(concurrent, output_limit_kib)},
            }
        ],
        "volumeMounts": [{"name": "tmp", "mountPath": MANAGER_TMP_DIR}],
    }


# --- Pod Security Standards (k8s.io/pod-security-admission policy/, v0.34) -------------------
# The policy at 1.34, without the user-namespace relaxations (hostUsers: false) a feature gate
# adds. Each check keeps the upstream check ID, which is what the API server names in its error.

_BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
        "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
    }
)  # fmt: skip
_RESTRICTED_VOLUME_SOURCES = frozenset(
    {
        "configMap", "downwardAPI", "emptyDir", "projected", "secret", "csi",
        "persistentVolumeClaim", "ephemeral", "image",
    }
)  # fmt: skip
_SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
    }
)  # fmt: skip
_SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
_CONFINED_PROFILES = ("RuntimeDefault", "Localhost")
_APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"


def _containers(spec: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    # policy/visitor.go visitContainers: init, regular and ephemeral containers.
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


def _context(container: Mapping[str, Any]) -> Mapping[str, Any]:
    return container.get("securityContext") or {}


def _pod_context(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    return spec.get("securityContext") or {}


def _baseline_violations(metadata: Mapping[str, Any], spec: Mapping[str, Any]) -> set[str]:
    contexts = [_context(c) for c in _containers(spec)]
    pod = _pod_context(spec)
    found: set[str] = set()
    if any(spec.get(field) for field in ("hostNetwork", "hostPID", "hostIPC")):
        found.add("hostNamespaces")
    if any(context.get("privileged") for context in contexts):
        found.add("privileged")
    if any(
        set((context.get("capabilities") or {}).get("add") or []) - _BASELINE_CAPABILITIES
        for context in contexts
    ):
        found.add("capabilities_baseline")
    if any("hostPath" in volume for volume in spec.get("volumes") or []):
        found.add("hostPathVolumes")
    if any(port.get("hostPort") for c in _containers(spec) for port in c.get("ports") or []):
        found.add("hostPorts")
    app_armor = [(ctx.get("appArmorProfile") or {}).get("type") for ctx in [pod, *contexts]]
    bad_annotations = [
        value
        for key, value in (metadata.get("annotations") or {}).items()
        if key.startswith(_APPARMOR_ANNOTATION_PREFIX)
        and value not in ("", "runtime/default")
        and not value.startswith("localhost/")
    ]
    if bad_annotations or any(t is not None and t not in _CONFINED_PROFILES for t in app_armor):
        found.add("appArmorProfile")
    selinux = [ctx.get("seLinuxOptions") or {} for ctx in [pod, *contexts]]
    if any(
        options.get("type", "") not in _SELINUX_TYPES or options.get("user") or options.get("role")
        for options in selinux
    ):
        found.add("seLinuxOptions")
    if any(context.get("procMount", "Default") != "Default" for context in contexts):
        found.add("procMount")
    seccomp = [(ctx.get("seccompProfile") or {}).get("type") for ctx in [pod, *contexts]]
    if "Unconfined" in seccomp:
        found.add("seccompProfile_baseline")
    if any(sysctl["name"] not in _SAFE_SYSCTLS for sysctl in pod.get("sysctls") or []):
        found.add("sysctls")
    windows = [(ctx.get("windowsOptions") or {}).get("hostProcess") for ctx in [pod, *contexts]]
    if any(windows):
        found.add("windowsHostProcess")
    if any(_handler_sets_host(container) for container in _containers(spec)):
        found.add("hostProbesAndHostLifecycle")
    return found


def _handler_sets_host(container: Mapping[str, Any]) -> bool:
    lifecycle = container.get("lifecycle") or {}
    handlers = [
        container.get("livenessProbe"),
        container.get("readinessProbe"),
        container.get("startupProbe"),
        lifecycle.get("postStart"),
        lifecycle.get("preStop"),
    ]
    return any(
        ((handler or {}).get(kind) or {}).get("host")
        for handler in handlers
        for kind in ("httpGet", "tcpSocket")
    )


def _restricted_violations(spec: Mapping[str, Any]) -> set[str]:
    containers = list(_containers(spec))
    contexts = [_context(c) for c in containers]
    pod = _pod_context(spec)
    found: set[str] = set()
    if any(
        set(volume) - {"name"} - _RESTRICTED_VOLUME_SOURCES for volume in spec.get("volumes") or []
    ):
        found.add("restrictedVolumes")
    if any(context.get("allowPrivilegeEscalation") is not False for context in contexts):
        found.add("allowPrivilegeEscalation")
    pod_non_root = pod.get("runAsNonRoot")
    if pod_non_root is False or any(
        context.get("runAsNonRoot") is False
        or (context.get("runAsNonRoot") is None and pod_non_root is not True)
        for context in contexts
    ):
        found.add("runAsNonRoot")
    if any(ctx.get("runAsUser") == 0 for ctx in [pod, *contexts]):
        found.add("runAsUser")
    pod_seccomp = (pod.get("seccompProfile") or {}).get("type")
    container_seccomp = [(context.get("seccompProfile") or {}).get("type") for context in contexts]
    if (pod_seccomp is not None and pod_seccomp not in _CONFINED_PROFILES) or any(
        (kind is not None and kind not in _CONFINED_PROFILES)
        or (kind is None and pod_seccomp is None)
        for kind in container_seccomp
    ):
        found.add("seccompProfile_restricted")
    for context in contexts:
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []) or set(capabilities.get("add") or []) - {
            "NET_BIND_SERVICE"
        }:
            found.add("capabilities_restricted")
    return found


# Restricted checks that replace a baseline check of the same concern (OverrideCheckIDs).
_OVERRIDDEN_BY_RESTRICTED = {
    "seccompProfile_restricted": "seccompProfile_baseline",
    "capabilities_restricted": "capabilities_baseline",
}


def pod_security_violations(pod: Mapping[str, Any], level: PodSecurityLevel) -> list[str]:
    """The Pod Security checks a pod (or a pod template: `metadata` and `spec`) fails at a
    level, by their upstream IDs; empty when the level admits it."""
    if level == "privileged":
        return []
    metadata, spec = pod.get("metadata") or {}, pod["spec"]
    found = _baseline_violations(metadata, spec)
    if level == "restricted":
        restricted = _restricted_violations(spec)
        found -= {_OVERRIDDEN_BY_RESTRICTED[check] for check in _OVERRIDDEN_BY_RESTRICTED}
        found |= restricted
    return sorted(found)
