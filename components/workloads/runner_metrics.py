"""The metrics the fleet's alerts and dashboard may use, named and labelled as their exporters
define them, and the labels their series carry once the Prometheus operator's scrape stored them.
Pure data and two small label functions.

Each entry names the upstream file that defines it: gitlab-runner at tag v19.3.0,
kubernetes/autoscaler at tags cluster-autoscaler-1.34.5 and cluster-autoscaler-1.35.2 (the
images the stacks pin, components/versions.py; the metrics used here are identical in both),
kubernetes-sigs/karpenter at tag v1.14.1 (the core the pinned Karpenter 1.14.1 builds on),
kube-state-metrics v2.20.0 (kube-prometheus-stack 88.5.3's subchart 8.4.0), kubelet
(kubernetes `pkg/kubelet/metrics/collectors/volume_stats.go`). The tests refuse any alert or
dashboard query that uses a name or label not listed here, or a label the scrape renames.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..build_nodes import POOL_LABEL

MetricKind = Literal["counter", "gauge", "histogram"]

POOL = "pool"
"""The label every runner series carries once scraped (relabelled from the manager pod's label)."""
API_ENDPOINT = "api_endpoint"
"""Where the PodMonitor's metric relabeling moves the runner's own `endpoint` label (the GitLab
API endpoint of a request), which the scrape would otherwise rename to `exported_endpoint`."""
RUNNER_LABELS = ("runner", "runner_name", "system_id")
"""Most runner metrics carry the runner's short token, its name and the manager's system id."""
PAUSE_DEPLOYMENT_PREFIX = "runner-pause-"
"""The pause Deployment's name is this and the runner's short token and system id, lowercased
with every character a DNS label cannot hold dropped (executors/kubernetes/autoscaler/
pause_pod_manager.go deploymentName, helpers/dns/utils.go): it cannot be joined to the runner's
`runner` label, its `manager.runner.gitlab.com/id-short` label can."""
PAUSE_DEPLOYMENT_RUNNER_LABEL = "manager.runner.gitlab.com/id-short"
"""The pause Deployment's label holding the runner's short token (pause_pod_manager.go)."""


@dataclass(frozen=True)
class Metric:
    """One metric family as exported: its name, type and the labels the exporter sets."""

    name: str
    kind: MetricKind
    labels: tuple[str, ...]
    born_at_first_event: bool = False
    """A counter whose series appear with their first increment, at 1: `increase()` has no
    earlier sample to compare with, so it never counts that first event."""

    def series_names(self) -> tuple[str, ...]:
        """The names its series have in Prometheus (a histogram exports three)."""
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)

    def series_labels(self, series_name: str) -> tuple[str, ...]:
        """The labels of one of its series as exported: a histogram's buckets add `le`."""
        return (*self.labels, "le") if series_name.endswith("_bucket") else self.labels


@dataclass(frozen=True)
class Scrape:
    """How a scrape config the Prometheus operator generates labels a target's series.

    prometheus-operator v0.93.0 `pkg/prometheus/promcfg.go` (generatePodMonitorConfig,
    generateServiceMonitorConfig) gives every target `namespace`, `pod`, `container`, `job`,
    `endpoint` (the port's name) and, for a ServiceMonitor, `service`; Prometheus adds
    `instance`. Without honor_labels an exported label that a target label also names is stored
    as `exported_<name>` (prometheus `scrape/scrape.go` mutateSampleLabels); with it, the
    exported one wins. Metric relabelings run after that, so they can rename `exported_*`.
    """

    target_labels: tuple[str, ...]
    honor_labels: bool
    renamed: Mapping[str, str] = field(default_factory=dict)
    """Metric relabelings of the monitor: a stored label moved to another name."""

    def stored_labels(self, exported: tuple[str, ...]) -> frozenset[str]:
        """The labels a series with these exported labels has in Prometheus."""
        labels = set(self.target_labels)
        for label in exported:
            labels.add(
                f"exported_{label}"
                if label in self.target_labels and not self.honor_labels
                else label
            )
        return frozenset(self.renamed.get(label, label) for label in labels)


_OPERATOR_TARGET_LABELS = ("job", "instance", "namespace", "pod", "container", "endpoint")

RUNNER_SCRAPE = Scrape(
    # The gitlab-runner chart 0.92.0's PodMonitor (templates/podmonitor.yaml) sets no
    # honorLabels; monitoring.py's relabeling adds `pool`, its metric relabeling renames.
    target_labels=(*_OPERATOR_TARGET_LABELS, POOL),
    honor_labels=False,
    renamed={"exported_endpoint": API_ENDPOINT},
)
AUTOSCALER_SCRAPE = Scrape(
    # The cluster-autoscaler chart 9.59.0's ServiceMonitor (templates/servicemonitor.yaml)
    # sets no honorLabels.
    target_labels=(*_OPERATOR_TARGET_LABELS, "service"),
    honor_labels=False,
)
KARPENTER_SCRAPE = Scrape(
    # The karpenter chart 1.14.1's ServiceMonitor (templates/servicemonitor.yaml): the Service's
    # http-metrics port, no honorLabels unless endpointConfig sets it (ours does not).
    target_labels=(*_OPERATOR_TARGET_LABELS, "service"),
    honor_labels=False,
)
KUBE_STATE_METRICS_SCRAPE = Scrape(
    # kube-prometheus-stack 88.5.3 values.yaml: kube-state-metrics.prometheus.monitor.http
    # honorLabels: true, so `namespace` is the object's, not kube-state-metrics' own.
    target_labels=(*_OPERATOR_TARGET_LABELS, "service"),
    honor_labels=True,
)
KUBELET_SCRAPE = Scrape(
    # kube-prometheus-stack 88.5.3 values.yaml: kubelet.serviceMonitor honorLabels: true; its
    # targets are Nodes (`node`) and it relabels `__metrics_path__` into `metrics_path`.
    target_labels=("job", "instance", "namespace", "endpoint", "service", "node", "metrics_path"),
    honor_labels=True,
)

_INVALID_LABEL_CHARACTER = re.compile(r"[^a-zA-Z0-9_]")
_LOWER_BEFORE_UPPER = re.compile(r"([a-z0-9])([A-Z])")


def pod_label_meta_label(key: str) -> str:
    """The discovery label Prometheus's Kubernetes pod discovery gives a pod label: its key
    with every character a label name cannot hold replaced by `_`."""
    return "__meta_kubernetes_pod_label_" + _INVALID_LABEL_CHARACTER.sub("_", key)


def kube_state_metrics_label(key: str) -> str:
    """The label kube-state-metrics gives an allow-listed Kubernetes label: `label_` and the key
    sanitized, then snake-cased (internal/store/utils.go labelName)."""
    sanitized = _INVALID_LABEL_CHARACTER.sub("_", key)
    return "label_" + _LOWER_BEFORE_UPPER.sub(r"\1_\2", sanitized).lower()


POOL_META_LABEL = pod_label_meta_label(POOL_LABEL)
"""`__meta_kubernetes_pod_label_gitlab_runner_fleet_pool`: where relabeling reads the pool."""
NODE_POOL_LABEL = kube_state_metrics_label(POOL_LABEL)
"""`label_gitlab_runner_fleet_pool` on `kube_node_labels`, once kube-state-metrics allows it."""
PAUSE_DEPLOYMENT_RUNNER = kube_state_metrics_label(PAUSE_DEPLOYMENT_RUNNER_LABEL)
"""`label_manager_runner_gitlab_com_id_short` on `kube_deployment_labels`, once allowed."""

RUNNER_METRICS = (
    # commands/builds_helper.go (numBuildsDesc); an `idle` series of 0 per runner is always there.
    Metric("gitlab_runner_jobs", "gauge", (*RUNNER_LABELS, "state", "stage", "executor_stage")),
    # commands/builds_helper.go: created at 0 by the runner's first job request
    # (getRunnerCounter), then counts every job picked up (addBuild).
    Metric("gitlab_runner_jobs_total", "counter", RUNNER_LABELS),
    # commands/builds_helper.go: observed when a job ends (buildsHelper.removeBuild).
    Metric("gitlab_runner_job_duration_seconds", "histogram", (*RUNNER_LABELS, "mode")),
    # commands/builds_helper.go: the time GitLab kept the job queued, observed at pick-up only.
    Metric(
        "gitlab_runner_job_queue_duration_seconds",
        "histogram",
        (*RUNNER_LABELS, "project_jobs_running"),
    ),
    # commands/builds_helper.go, set at pick-up.
    Metric("gitlab_runner_job_queue_size", "gauge", RUNNER_LABELS),
    Metric("gitlab_runner_job_queue_depth", "gauge", RUNNER_LABELS),
    # commands/builds_helper.go (evaluateJobQueuingDuration): created at the first pick-up and
    # incremented in the same call when that job already waited too long; moves only with
    # [[runners.monitoring.job_queuing_durations]] configured.
    Metric(
        "gitlab_runner_acceptable_job_queuing_duration_exceeded_total",
        "counter",
        RUNNER_LABELS,
        born_at_first_event=True,
    ),
    # commands/builds_helper.go (request concurrency descriptors)
    Metric("gitlab_runner_request_concurrency", "gauge", ("runner", "system_id")),
    Metric("gitlab_runner_request_concurrency_exceeded_total", "counter", ("runner", "system_id")),
    # commands/multi.go (concurrentDesc: the global `concurrent`, no labels of its own)
    Metric("gitlab_runner_concurrent", "gauge", ()),
    # commands/multi.go (limitDesc: each [[runners]] `limit`, 0 meaning unlimited)
    Metric("gitlab_runner_limit", "gauge", RUNNER_LABELS),
    # commands/multi.go (setupInternalMetrics), created at 0 per runner.
    Metric("gitlab_runner_worker_feeds_total", "counter", RUNNER_LABELS),
    Metric("gitlab_runner_worker_feed_failures_total", "counter", RUNNER_LABELS),
    # helpers/prometheus/failures_collector.go: a series per reason appears with its first
    # failure; an empty reason is counted as script_failure (network/trace.go).
    Metric(
        "gitlab_runner_failed_jobs_total",
        "counter",
        ("runner", "runner_name", "failure_reason", "mode"),
        born_at_first_event=True,
    ),
    # helpers/prometheus/log_hook.go: every level (panic, fatal, error, warning) from the start.
    Metric("gitlab_runner_errors_total", "counter", ("level",)),
    # network/api_requests_collector.go: a series per endpoint, status and method appears with
    # its first answer; connection failures (clientError) are not counted. Its `endpoint` is
    # the GitLab API endpoint (request_job, update_job, patch_trace, reset_token, discovery).
    Metric(
        "gitlab_runner_api_request_statuses_total",
        "counter",
        ("runner", "system_id", "endpoint", "status", "method"),
        born_at_first_event=True,
    ),
    Metric(
        "gitlab_runner_api_request_duration_seconds",
        "histogram",
        ("runner", "system_id", "endpoint", "status_class", "method"),
    ),
    # executors/kubernetes/autoscaler/metrics.go: set on each pause pod reconcile (every 10 s),
    # only by managers with [runners.kubernetes.autoscaler]. `current` is the pause
    # Deployment's spec.replicas (pause_pod_manager.go getCurrentReplicas), not running pods.
    Metric("gitlab_runner_kubernetes_autoscaler_pause_pods_desired", "gauge", RUNNER_LABELS),
    Metric("gitlab_runner_kubernetes_autoscaler_pause_pods_current", "gauge", RUNNER_LABELS),
    # reason: get_deployment or apply_state (pause_pod_manager.go reconcile), each appearing
    # with its first error.
    Metric(
        "gitlab_runner_kubernetes_autoscaler_reconcile_errors_total",
        "counter",
        (*RUNNER_LABELS, "reason"),
        born_at_first_event=True,
    ),
    Metric(
        "gitlab_runner_kubernetes_autoscaler_scale_operations_total",
        "counter",
        (*RUNNER_LABELS, "direction"),
        born_at_first_event=True,
    ),
    # common/version.go (NewMetricsCollector): constant 1 while the manager runs.
    Metric(
        "gitlab_runner_version_info",
        "gauge",
        ("name", "version", "revision", "branch", "go_version", "built_at", "os", "architecture"),
    ),
)

CLUSTER_AUTOSCALER_METRICS = (
    # cluster-autoscaler/metrics/metrics.go (1.34.5 and 1.35.2): registered always; InitMetrics
    # creates the reasons cloudProviderError, apiCallError and timeout at 0, every other reason
    # (a cloud provider's error code, clusterstate.go) appears with its first failure.
    Metric(
        "cluster_autoscaler_failed_scale_ups_total",
        "counter",
        ("reason",),
        born_at_first_event=True,
    ),
    Metric("cluster_autoscaler_unschedulable_pods_count", "gauge", ("type",)),
    Metric("cluster_autoscaler_nodes_count", "gauge", ("state",)),
    # Registered only with --emit-per-nodegroup-metrics (RegisterAll); node_group is the Auto
    # Scaling group's name on AWS (cloudprovider/aws AwsNodeGroup.Id).
    Metric("cluster_autoscaler_node_group_backoff_status", "gauge", ("node_group", "reason")),
    Metric("cluster_autoscaler_node_group_target_count", "gauge", ("node_group",)),
)
CLUSTER_AUTOSCALER_VERSIONS_READ = ("v1.34.5", "v1.35.2")
"""The cluster-autoscaler images whose metrics.go the table above was read from."""

NODE_POOL = "nodepool"
"""The label of Karpenter's metrics naming the NodePool (pkg/metrics/constants.go)."""
KARPENTER_METRICS = (
    # pkg/controllers/metrics/nodepool/controller.go: per NodePool and resource type, every 10 s.
    # usage is the NodePool's status.resources, the capacity of its nodes (cpu in cores, memory
    # in bytes, `nodes`, pods, ephemeral_storage); limit exists only for keys of spec.limits.
    Metric("karpenter_nodepools_usage", "gauge", ("resource_type", NODE_POOL)),
    Metric("karpenter_nodepools_limit", "gauge", ("resource_type", NODE_POOL)),
    # pkg/metrics/metrics.go NodeClaimsDisruptedTotal: a series per reason appears with its
    # first event. Launch failures delete the NodeClaim as insufficient_capacity or
    # nodeclass_not_ready (pkg/controllers/nodeclaim/lifecycle/launch.go); a NodeClaim whose
    # launch has not succeeded 5 minutes after a failed create (no instance at all, e.g. an IAM
    # denial) is launch_timeout, a node that has not registered after 15 minutes
    # registration_timeout (lifecycle/liveness.go).
    Metric(
        "karpenter_nodeclaims_disrupted_total",
        "counter",
        ("reason", NODE_POOL, "capacity_type"),
        born_at_first_event=True,
    ),
    # pkg/metrics/metrics.go NodeClaimsCreatedTotal, incremented by the provisioner.
    Metric(
        "karpenter_nodeclaims_created_total",
        "counter",
        ("reason", NODE_POOL, "min_values_relaxed"),
        born_at_first_event=True,
    ),
    # pkg/controllers/metrics/pod/controller.go: from when Karpenter first saw a pod it could
    # schedule until the pod ran (the cold start Karpenter adds), no labels.
    Metric("karpenter_pods_provisioning_startup_duration_seconds", "histogram", ()),
)
KARPENTER_VERSION_READ = "v1.14.1"
"""The kubernetes-sigs/karpenter tag the table above was read from."""

KUBE_STATE_METRICS = (
    # internal/store/node.go: no series unless --metric-labels-allowlist lists node labels; each
    # allowed label becomes `label_<sanitized key>` (internal/store/utils.go).
    Metric("kube_node_labels", "gauge", ("node", NODE_POOL_LABEL)),
    # internal/store/deployment.go: spec.replicas, and status.availableReplicas (pods Ready for
    # minReadySeconds: a Pending pause pod is not available).
    Metric("kube_deployment_spec_replicas", "gauge", ("namespace", "deployment")),
    Metric("kube_deployment_status_replicas_available", "gauge", ("namespace", "deployment")),
    # internal/store/pod.go (v2.20.0): one series per phase (1 for the pod's), and creation time
    # in Unix seconds; labels namespace, pod, uid (descPodLabelsDefaultLabels).
    Metric("kube_pod_status_phase", "gauge", ("namespace", "pod", "uid", "phase")),
    Metric("kube_pod_created", "gauge", ("namespace", "pod", "uid")),
    # internal/store/deployment.go: no series unless the allow-list names deployment labels.
    Metric("kube_deployment_labels", "gauge", ("namespace", "deployment", PAUSE_DEPLOYMENT_RUNNER)),
)

KUBELET_METRICS = (
    # kubernetes pkg/kubelet/metrics/collectors/volume_stats.go: per PersistentVolumeClaim of
    # a running pod, from the kubelet's volume stats.
    Metric("kubelet_volume_stats_available_bytes", "gauge", ("namespace", "persistentvolumeclaim")),
    Metric("kubelet_volume_stats_capacity_bytes", "gauge", ("namespace", "persistentvolumeclaim")),
)

SCRAPES: tuple[tuple[Scrape, tuple[Metric, ...]], ...] = (
    (RUNNER_SCRAPE, RUNNER_METRICS),
    (AUTOSCALER_SCRAPE, CLUSTER_AUTOSCALER_METRICS),
    (KARPENTER_SCRAPE, KARPENTER_METRICS),
    (KUBE_STATE_METRICS_SCRAPE, KUBE_STATE_METRICS),
    (KUBELET_SCRAPE, KUBELET_METRICS),
)
TARGET_HEALTH = "up"
"""Prometheus's own series per target (1 scraped, 0 failed), with the target's labels."""
PROCESS_START = "process_start_time_seconds"
"""When the target's process started (Unix seconds): client_golang's process collector, which
the runner registers (commands/multi.go, v19.3.0) and cluster-autoscaler's registry carries
(k8s.io/component-base metrics/legacyregistry)."""


def stored_series() -> dict[str, tuple[Metric | None, frozenset[str]]]:
    """Every series name the rules may read, with its metric (None for `up`) and the labels
    it has in Prometheus."""
    target_labels = frozenset(label for scrape, _ in SCRAPES for label in scrape.target_labels)
    series: dict[str, tuple[Metric | None, frozenset[str]]] = {
        TARGET_HEALTH: (None, target_labels),
        PROCESS_START: (None, target_labels),
    }
    for scrape, metrics in SCRAPES:
        for metric in metrics:
            for name in metric.series_names():
                series[name] = (metric, scrape.stored_labels(metric.series_labels(name)))
    return series


def metric_named(name: str) -> Metric:
    """The metric family of a series name (raises KeyError for names not listed here)."""
    metric = stored_series()[name][0]
    if metric is None:
        raise KeyError(name)
    return metric


FAILURE_REASONS = (
    "script_failure",
    "runner_system_failure",
    "job_execution_timeout",
    "image_pull_failure",
    "unknown_failure",
    "runner_configuration_error",
    "runner_external_dependency_failure",
    "runner_interrupted",
    "job_canceled",
)
"""Every `failure_reason` value of `gitlab_runner_failed_jobs_total` (common/network.go)."""
