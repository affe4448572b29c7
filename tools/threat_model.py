"""What a malicious CI job can and cannot reach, as data, and its Markdown rendering.

docs/threat-model.md is `render()`'s output (`python tools/threat_model.py`);
tests/test_threat_model.py keeps the two equal and checks that every test named here exists and
that every "cannot" names one. Not part of the installed package: only the docs and the tests
need it.
"""

from dataclasses import dataclass
from typing import Literal

Verdict = Literal["cannot", "can"]
TITLE = "Threat model: what a CI job can reach"


def _tests(file: str, *names: str) -> tuple[str, ...]:
    """pytest node ids of tests in one file of tests/."""
    return tuple(f"tests/{file}::{name}" for name in names)


@dataclass(frozen=True)
class Boundary:
    """One thing a malicious job goes after, per build mode."""

    target: str
    rootless: Verdict
    dind: Verdict
    enforced_by: tuple[str, ...]
    """Settings and objects that hold the line (for a "can": what narrows it)."""
    proven_by: tuple[str, ...]
    """pytest node ids of the tests that prove the settings are in place."""
    why: str
    """How it works and where it fails, with the upstream source it rests on."""
    rootless_unless: str = ""
    """A configuration under which a `rootless` job's "cannot" no longer holds."""


BOUNDARIES: tuple[Boundary, ...] = (
    Boundary(
        target="The node's IAM role credentials (instance metadata service)",
        rootless="cannot",
        rootless_unless="a pool sets `imdsHopLimit: 2` and no engine enforces NetworkPolicies",
        dind="can",
        enforced_by=(
            "launch template: IMDSv2 required, hop limit 1 (`pools[i].imdsHopLimit`; at 2 only "
            "the NetworkPolicy is left)",
            "NetworkPolicy `job-egress-no-node-credentials`: no egress to 169.254.169.254/32 "
            "and fd00:ec2::254/128",
            "a network-policy engine: a created cluster's VPC CNI with `enableNetworkPolicy`; "
            "for an existing cluster the `networkPolicyEnforcement` output says",
        ),
        proven_by=(
            *_tests(
                "test_spot_node_group.py", "test_build_nodes_require_imdsv2_with_hop_limit_one"
            ),
            *_tests("test_isolation.py", "test_job_egress_excludes_the_node_credential_endpoints"),
            *_tests(
                "test_job_namespaces.py",
                "test_network_policies_guard_every_job_namespace_and_the_managers",
            ),
            *_tests(
                "test_stacks.py",
                "test_dev_enforces_its_network_policies_with_the_vpc_cni_and_its_own_role",
                "test_an_existing_cluster_without_network_policy_enforcement_is_reported",
            ),
        ),
        why="A pod is one hop further from the metadata service than its node: with a hop "
        "limit of 1 the IMDSv2 token a pod asks for never reaches it, and the NetworkPolicy "
        "drops the packets too where a network-policy engine runs. A pool with hop limit 2 "
        "(for DaemonSets that call IMDS from their own network namespace) keeps only the "
        "NetworkPolicy, which Kubernetes accepts and ignores without an engine. A `dind` job "
        "controls a privileged container: it can enter the node's network namespace, where "
        "one hop is enough, and read the node role's credentials.",
    ),
    Boundary(
        target="IAM roles of other workloads (IRSA, EKS Pod Identity)",
        rootless="cannot",
        dind="can",
        enforced_by=(
            "job ServiceAccount `gitlab-runner-job` without an `eks.amazonaws.com/role-arn` "
            "annotation or Pod Identity association",
            "NetworkPolicy `job-egress-no-node-credentials`: no egress to the Pod Identity "
            "agent (169.254.170.23/32, fd00:ec2::23/128)",
        ),
        proven_by=(
            *_tests(
                "test_isolation.py",
                "test_job_service_account_has_no_token_and_no_iam_role",
                "test_job_egress_excludes_the_node_credential_endpoints",
            ),
        ),
        why="The EKS pod identity webhook projects a web identity token only into pods of an "
        "annotated ServiceAccount, and the Pod Identity agent answers only pods with an "
        "association. Root on a `dind` node reads the tokens projected into every pod on that "
        "node, such as a DaemonSet's (the VPC CNI's role when it uses IRSA).",
    ),
    Boundary(
        target="Every network interface in the account (the VPC CNI's permissions)",
        rootless="cannot",
        dind="can",
        enforced_by=(
            "a created cluster: the VPC CNI's own IRSA role holds `AmazonEKS_CNI_Policy`, no "
            "node role does",
            "an existing cluster: `cluster.nodeCniPolicy: false` once its vpc-cni add-on has "
            "a role of its own (refused before that)",
            "for `rootless` jobs: the rows above (no node role, no other workload's token)",
        ),
        proven_by=(
            *_tests(
                "test_stacks.py",
                "test_dev_enforces_its_network_policies_with_the_vpc_cni_and_its_own_role",
                "test_an_existing_clusters_build_nodes_drop_the_cni_policy_only_when_the_cni_has_a_role",
            ),
            *_tests("test_cluster.py", "test_a_created_clusters_system_nodes_lack_the_cni_policy"),
        ),
        why="`AmazonEKS_CNI_Policy` allows `ec2:ModifyNetworkInterfaceAttribute`, "
        "`DetachNetworkInterface` and `DeleteNetworkInterface` on every interface in the "
        "account. On a node role (an existing cluster's default, `cluster.nodeCniPolicy: "
        "true`) a `dind` job holds it through the node's credentials; with the VPC CNI's own "
        "role it still reads the `aws-node` pod's projected token on its node. Taking the "
        "policy off the node roles closes the metadata service path only.",
    ),
    Boundary(
        target="The runner authentication token (`glrt-...`)",
        rootless="cannot",
        dind="cannot",
        enforced_by=(
            "each pool's token Secret (`gitlab-runner-<pool>-token`) in the managers' namespace, "
            "mounted only by manager pods",
            "chart `runners.jobNamespace`: the executor's Role lives in the job namespace",
            "manager pods never scheduled on build nodes",
        ),
        proven_by=(
            *_tests(
                "test_gitlab_runner.py",
                "test_token_secret_stays_in_manager_namespace",
                "test_manager_runs_on_stable_nodes",
            ),
            *_tests("test_isolation.py", "test_job_service_account_has_no_token_and_no_iam_role"),
        ),
        why="A pod can mount Secrets of its own namespace only, and job pods have no API token "
        "to read any. Even root on a build node gets only what the kubelet's Node "
        "authorizer allows: Secrets of pods bound to that node, and the manager never runs "
        "there (chart templates/role.yaml, role-binding.yaml).",
    ),
    Boundary(
        target="Cache storage credentials",
        rootless="cannot",
        dind="cannot",
        enforced_by=(
            "the manager signs presigned URLs; its IRSA role or its cache Secret "
            "(`gitlab-runner-<pool>-cache`) stays with the manager",
            "no `RoleARN` in `[runners.cache.s3]`",
        ),
        proven_by=(
            *_tests(
                "test_gitlab_runner.py",
                "test_the_manager_uses_the_stacks_service_account_and_mounts_no_cache_secret",
                "test_manager_runs_on_stable_nodes",
            ),
        ),
        why="The helper gets one presigned URL per cache key, for an object under "
        "`<Path>/project/<project id>/` that the manager chose and that refuses `../` "
        "(cache/cache.go GetAdapter). Only `RoleARN`/`UploadRoleARN` would hand the job "
        "temporary credentials (cache/s3v2/adapter.go GetGoCloudURL).",
    ),
    Boundary(
        target="Other projects' cache objects",
        rootless="cannot",
        dind="can",
        enforced_by=(
            "each job's presigned URLs are only in its own pod",
            "job namespace `gitlab-runner-jobs-rootless` enforces Pod Security `baseline`: no "
            "host paths, host namespaces or privileged containers",
        ),
        proven_by=(
            *_tests(
                "test_isolation.py",
                "test_rootless_job_and_pause_pods_pass_baseline",
                "test_baseline_refuses_host_access",
            ),
        ),
        why="The presigned download and upload URLs are `--url` arguments of the helper's "
        "cache commands in the job script (shells/abstract.go), which the runner writes to "
        "the pod's scripts emptyDir (executors/kubernetes/kubernetes.go "
        "saveScriptOnEmptyDir). Root on a `dind` node reads other pods' emptyDirs and "
        "process arguments, so it can fetch and overwrite the cache objects of other "
        "projects' jobs on its node while their URLs are valid.",
    ),
    Boundary(
        target="Its own project's cache from another branch",
        rootless="can",
        dind="can",
        enforced_by=("protected branches use separate `-protected` cache keys (GitLab)",),
        proven_by=(),
        why="Any pipeline of a project, a merge request's included, writes the project's "
        "unprotected cache keys that later unprotected jobs restore: treat restored caches as "
        "untrusted input outside protected branches.",
    ),
    Boundary(
        target="Other jobs' pods over the network",
        rootless="cannot",
        dind="can",
        enforced_by=(
            "NetworkPolicy `job-ingress-deny-all` in every job namespace",
            "a network-policy engine: a created cluster's VPC CNI with `enableNetworkPolicy`; "
            "for an existing cluster the `networkPolicyEnforcement` output says",
        ),
        proven_by=(
            *_tests("test_isolation.py", "test_job_pods_accept_no_ingress"),
            *_tests(
                "test_job_namespaces.py",
                "test_network_policies_guard_every_job_namespace_and_the_managers",
            ),
            *_tests(
                "test_stacks.py",
                "test_dev_enforces_its_network_policies_with_the_vpc_cni_and_its_own_role",
                "test_an_existing_cluster_without_network_policy_enforcement_is_reported",
            ),
        ),
        why="A job's services reach its build over localhost (service aliases map to "
        "127.0.0.1, executors/kubernetes/host_aliases.go) and the manager drives the pod "
        "through the Kubernetes API, so no connection to a job pod is needed. Root on a `dind` "
        "node reaches every pod on it from the host.",
    ),
    Boundary(
        target="Other jobs' files, processes and variables",
        rootless="cannot",
        dind="can",
        enforced_by=(
            "job namespace `gitlab-runner-jobs-rootless` enforces Pod Security `baseline`",
            "config.toml: `privileged = false`, no container privileged",
        ),
        proven_by=(
            *_tests("test_runner_config.py", "test_rootless_pools_privilege_nothing"),
            *_tests(
                "test_isolation.py",
                "test_rootless_job_and_pause_pods_pass_baseline",
                "test_baseline_refuses_host_access",
            ),
            *_tests(
                "test_job_namespaces.py", "test_each_job_namespace_enforces_its_pod_security_level"
            ),
            *_tests("test_stacks.py", "test_staging_runs_a_rootless_pool_at_pod_security_baseline"),
        ),
        why="Each job is its own pod; `baseline` refuses privileged containers, host "
        "namespaces, hostPath volumes and added capabilities, so a job sees nothing of its "
        "neighbours but the shared kernel. On a `dind` node every pod's files and environment "
        "(other projects' CI variables) are open to root.",
    ),
    Boundary(
        target="Root on the node",
        rootless="cannot",
        dind="can",
        enforced_by=(
            "`rootless`: nothing privileged, Pod Security `baseline` enforced",
            "`dind`: every service container is privileged, on the pool's own tainted nodes",
        ),
        proven_by=(
            *_tests(
                "test_runner_config.py",
                "test_rootless_pools_privilege_nothing",
                "test_dind_pools_privilege_only_services",
            ),
            *_tests("test_isolation.py", "test_dind_job_pod_needs_the_privileged_level"),
            *_tests("test_stacks.py", "test_staging_runs_a_rootless_pool_at_pod_security_baseline"),
            *_tests(
                "test_ci_templates.py",
                "test_the_rootless_buildkit_template_passes_its_namespaces_pod_security",
            ),
            *_tests(
                "test_allowed_services.py",
                "test_the_runners_own_images_are_admitted_and_privileged_whatever_the_list_says",
            ),
        ),
        why="A privileged container has every capability and the node's devices. In a `dind` "
        "pool every service container gets the same privileged security context "
        "(executors/kubernetes/kubernetes.go preparePodServices), `docker:dind` and any other: "
        "`allowed_services` narrows the images, but the runner always admits the default job "
        "image, and the helper's repository name without a tag (executors/kubernetes/"
        "kubernetes.go verifyAllowedImages, common/allowed_images.go), and the job chooses a "
        "service's entrypoint and command: count a `dind` job as root on its node. A "
        "`rootless` job is left with kernel vulnerabilities; the runner sets no seccomp "
        "profile, and nodeadm leaves the kubelet's default unconfined, which is what lets "
        "rootless BuildKit create its user namespace and what leaves more of the kernel "
        "exposed. `allowPrivilegeEscalation: true` (a pool setting) lets setuid programs such "
        "as `sudo` work inside the job's own unprivileged container.",
    ),
    Boundary(
        target="The Kubernetes API as a workload",
        rootless="cannot",
        dind="can",
        enforced_by=(
            "`automountServiceAccountToken: false` on the job ServiceAccount and "
            "`automount_service_account_token = false` in config.toml",
            "no Role or RoleBinding for the job ServiceAccount",
        ),
        proven_by=(
            *_tests(
                "test_isolation.py",
                "test_job_service_account_has_no_token_and_no_iam_role",
                "test_job_settings_use_the_tokenless_service_account",
            ),
            *_tests(
                "test_job_namespaces.py",
                "test_every_job_namespace_gets_the_tokenless_service_account_and_no_role",
            ),
        ),
        why="The API server is reachable over the network but a job has no credentials, so it "
        "is anonymous. Root on a `dind` node uses the kubelet's credentials: what the Node "
        "authorizer grants a node (its own pods' Secrets and ConfigMaps, its Node object).",
    ),
    Boundary(
        target="Another namespace, service account or API token for its own pod",
        rootless="cannot",
        dind="cannot",
        enforced_by=(
            "every `*_overwrite_allowed` key unset and `namespace_per_job` off in config.toml",
        ),
        proven_by=(
            *_tests("test_isolation.py", "test_job_settings_use_the_tokenless_service_account"),
        ),
        why="`KUBERNETES_NAMESPACE_OVERWRITE`, `KUBERNETES_SERVICE_ACCOUNT_OVERWRITE` and "
        "`KUBERNETES_BEARER_TOKEN` are ignored while the matching `*_overwrite_allowed` regex "
        "is empty (executors/kubernetes/overwrites.go evaluateOverwrite).",
    ),
    Boundary(
        target="Jobs of the other build mode",
        rootless="cannot",
        dind="cannot",
        enforced_by=(
            "one job namespace per build mode",
            "NetworkPolicy `job-ingress-deny-all`",
            "each pool on its own tainted node group",
        ),
        proven_by=(
            *_tests(
                "test_isolation.py",
                "test_pools_of_different_build_modes_never_share_a_job_namespace",
                "test_job_pods_accept_no_ingress",
            ),
        ),
        why="Traffic from a `dind` node's host to a pod on another node is refused like any "
        "other peer; on a shared node many engines let the host reach local pods, which is "
        "why `dind` and `rootless` pools must never share nodes.",
    ),
    Boundary(
        target="The runner managers (metrics, `/debug/jobs/list`, pprof)",
        rootless="cannot",
        dind="cannot",
        enforced_by=(
            "NetworkPolicy `runner-manager-ingress`: only the metrics port, only from outside "
            "the job namespaces",
            "chart `podLabels` selecting every manager pod",
        ),
        proven_by=(
            *_tests(
                "test_isolation.py",
                "test_manager_accepts_only_metrics_scrapes_from_outside_job_namespaces",
            ),
            *_tests(
                "test_job_namespaces.py",
                "test_network_policies_guard_every_job_namespace_and_the_managers",
            ),
            *_tests("test_gitlab_runner.py", "test_manager_runs_on_stable_nodes"),
        ),
        why="The runner serves `/metrics`, `/debug/jobs/list` (every running job's URL) and "
        "`/debug/pprof/` on one listener (commands/multi.go). An egress allow-list cannot "
        "subtract pods from 0.0.0.0/0, so the managers refuse job namespaces on their side.",
    ),
    Boundary(
        target="The manager's disk through an endless job log",
        rootless="cannot",
        dind="cannot",
        enforced_by=(
            "`output_limit` in config.toml",
            "the manager's /tmp emptyDir sized for `concurrent` full logs",
        ),
        proven_by=(
            *_tests("test_isolation.py", "test_manager_tmp_holds_every_job_log_at_its_limit"),
        ),
        why="The manager buffers each running job's log in a temporary file and stops "
        "writing at the output limit (helpers/trace/buffer.go, network/trace.go).",
    ),
    Boundary(
        target="Feature flags the operator set",
        rootless="cannot",
        dind="cannot",
        enforced_by=("flags in `[runners.feature_flags]`, not in `environment`",),
        proven_by=(
            *_tests("test_runner_config.py", "test_feature_flags_live_in_feature_flags_table"),
        ),
        why="`[runners.feature_flags]` wins over `FF_*` job variables; flags set in "
        "`environment` are ordinary variables a job overrides (common/build_settings.go).",
    ),
    Boundary(
        target="Network services in other namespaces (DNS, registry mirror, cache endpoint)",
        rootless="can",
        dind="can",
        enforced_by=("each service's own authentication and ingress policy",),
        proven_by=(),
        why="Job egress stays open but for the credential endpoints: builds need DNS, GitLab, "
        "registries and the cache. A service in the cluster that must not serve jobs needs "
        "its own authentication or an ingress NetworkPolicy.",
    ),
    Boundary(
        target="Images the registry mirror or a node already holds",
        rootless="can",
        dind="can",
        enforced_by=(
            "the mirror holds only credentials for images every job may pull",
            '`allowed_pull_policies = ["always"]` where private images are used',
        ),
        proven_by=(),
        why="A pull-through cache serves any client whatever its upstream credentials reach, "
        "and the kubelet runs an image already on the node for an `IfNotPresent` pull without "
        "checking the pod's pull secret.",
    ),
)

RECOMMENDATIONS = (
    "Keep `dind` pools on their own tainted node groups, never shared with `rootless` pools, "
    "and use them only for projects you would trust with those nodes.",
    "Build images in `rootless` pools with a daemonless builder (docs/job-isolation.md); "
    "keep `dind` for what truly needs a Docker daemon.",
    "Run a network-policy engine (the VPC CNI with `enableNetworkPolicy`, Calico or Cilium): "
    "without one the NetworkPolicies are accepted and do nothing. A created cluster has it; "
    "for an existing one check the `networkPolicyEnforcement` output.",
    "Give build nodes a role with no more than the EKS worker and ECR read-only policies, and "
    "the VPC CNI a role of its own (`cluster.nodeCniPolicy: false`): a `dind` job holds the "
    "node role.",
    "Keep `imdsHopLimit` at 1 unless a DaemonSet on the build nodes needs IMDS from its own "
    "network namespace, and then only with a network-policy engine.",
)


def _cell(items: tuple[str, ...]) -> str:
    return "<br>".join(items) if items else "-"


def render() -> str:
    """docs/threat-model.md."""
    lines = [
        f"# {TITLE}",
        "",
        "<!-- Generated from tools/threat_model.py by its render(); "
        "tests/test_threat_model.py keeps it in sync. Edit the module, not this file. -->",
        "",
        "A runner fleet runs code from every project that may use it. This table says what "
        "such code can reach in each build mode, what stops it, and which test proves that "
        "the stop is in place. `rootless` pools run nothing privileged; `dind` pools run "
        "privileged Docker-in-Docker services. See docs/job-isolation.md for the settings.",
        "",
        "| A malicious job goes after | `rootless` | `dind` | Enforced by | Proven by |",
        "| --- | --- | --- | --- | --- |",
    ]
    for boundary in BOUNDARIES:
        proven = tuple(f"`{test}`" for test in boundary.proven_by)
        rootless = boundary.rootless + (
            f", unless {boundary.rootless_unless}" if boundary.rootless_unless else ""
        )
        lines.append(
            f"| {boundary.target} | {rootless} | {boundary.dind} "
            f"| {_cell(boundary.enforced_by)} | {_cell(proven)} |"
        )
    lines += ["", "## Why", ""]
    for boundary in BOUNDARIES:
        lines += [f"- **{boundary.target}.** {boundary.why}"]
    lines += ["", "## Recommendations", ""]
    lines += [f"- {recommendation}" for recommendation in RECOMMENDATIONS]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
