"""The metrics the fleet's alerts and dashboard may use, named and labelled as their exporters
define them, and how a pool label is spelled once it reaches Prometheus. Pure data.

Each entry names the upstream file that defines it (gitlab-runner at tag v19.3.0,
kubernetes/autoscaler at tag cluster-autoscaler-chart-9.59.0, kube-state-metrics at v2.20.0).
The tests refuse any alert or dashboard query that uses a name or label not listed here.
"""

import re
from dataclasses import dataclass
from typing import Literal

from ..build_nodes import POOL_LABEL

MetricKind = Literal["counter", "gauge", "histogram"]

POOL = "pool"
"""The label every runner series carries once scraped (relabelled from the manager pod's label)."""
RUNNER_LABELS = ("runner", "runner_name", "system_id")
"""Most runner metrics carry the runner's short token, its name and the manager's system id."""


@dataclass(frozen=True)
class Metric:
    """One metric family as exported: its name, type and the labels the exporter sets."""

    name: str
    kind: MetricKind
    labels: tuple[str, ...]

    def series_names(self) -> tuple[str, ...]:
        """The names its series have in Prometheus (a histogram exports three)."""
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)

    def series_labels(self, series_name: str) -> tuple[str, ...]:
        """The labels of one of its series: a histogram's buckets add `le`."""
        return (*self.labels, "le") if series_name.endswith("_bucket") else self.labels


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

RUNNER_METRICS = (
    # commands/builds_helper.go (numBuildsDesc); an `idle` series of 0 per runner is always there.
    Metric("gitlab_runner_jobs", "gauge", (*RUNNER_LABELS, "state", "stage", "executor_stage")),
    # commands/builds_helper.go (newBuildsHelper)
    Metric("gitlab_runner_jobs_total", "counter", RUNNER_LABELS),
    # commands/builds_helper.go: observed when a job ends (buildsHelper.removeBuild).
    Metric("gitlab_runner_job_duration_seconds", "histogram", (*RUNNER_LABELS, "mode")),
    # commands/builds_helper.go: the time GitLab kept the job queued, observed at pick-up.
    Metric(
        "gitlab_runner_job_queue_duration_seconds",
        "histogram",
        (*RUNNER_LABELS, "project_jobs_running"),
    ),
    # commands/builds_helper.go
    Metric("gitlab_runner_job_queue_size", "gauge", RUNNER_LABELS),
    Metric("gitlab_runner_job_queue_depth", "gauge", RUNNER_LABELS),
    # commands/builds_helper.go (evaluateJobQueuingDuration): counts only with
    # [[runners.monitoring.job_queuing_durations]] configured; stays 0 otherwise.
    Metric(
        "gitlab_runner_acceptable_job_queuing_duration_exceeded_total", "counter", RUNNER_LABELS
    ),
    # commands/builds_helper.go (request concurrency descriptors)
    Metric("gitlab_runner_request_concurrency", "gauge", ("runner", "system_id")),
    Metric("gitlab_runner_request_concurrency_exceeded_total", "counter", ("runner", "system_id")),
    # commands/multi.go (concurrentDesc: the global `concurrent`, no labels of its own)
    Metric("gitlab_runner_concurrent", "gauge", ()),
    # commands/multi.go (limitDesc: each [[runners]] `limit`, 0 meaning unlimited)
    Metric("gitlab_runner_limit", "gauge", RUNNER_LABELS),
    # commands/multi.go (setupInternalMetrics)
    Metric("gitlab_runner_worker_feeds_total", "counter", RUNNER_LABELS),
    Metric("gitlab_runner_worker_feed_failures_total", "counter", RUNNER_LABELS),
    # helpers/prometheus/failures_collector.go; an empty reason is counted as script_failure
    # (network/trace.go ensureNonEmptyFailureReason).
    Metric(
        "gitlab_runner_failed_jobs_total",
        "counter",
        ("runner", "runner_name", "failure_reason", "mode"),
    ),
    # helpers/prometheus/log_hook.go: log lines by logrus level (panic, fatal, error, warning).
    Metric("gitlab_runner_errors_total", "counter", ("level",)),
    # network/api_requests_collector.go: one count per answered request; connection failures
    # (clientError) are not counted.
    Metric(
        "gitlab_runner_api_request_statuses_total",
        "counter",
        ("runner", "system_id", "endpoint", "status", "method"),
    ),
    Metric(
        "gitlab_runner_api_request_duration_seconds",
        "histogram",
        ("runner", "system_id", "endpoint", "status_class", "method"),
    ),
    # executors/kubernetes/autoscaler/metrics.go: set on each pause pod reconcile (every 10 s).
    # `current` is the pause Deployment's spec.replicas, read before the new target is applied
    # (pause_pod_manager.go reconcile/getCurrentReplicas).
    Metric("gitlab_runner_kubernetes_autoscaler_pause_pods_desired", "gauge", RUNNER_LABELS),
    Metric("gitlab_runner_kubernetes_autoscaler_pause_pods_current", "gauge", RUNNER_LABELS),
    # reason: get_deployment or apply_state (pause_pod_manager.go reconcile).
    Metric(
        "gitlab_runner_kubernetes_autoscaler_reconcile_errors_total",
        "counter",
        (*RUNNER_LABELS, "reason"),
    ),
    Metric(
        "gitlab_runner_kubernetes_autoscaler_scale_operations_total",
        "counter",
        (*RUNNER_LABELS, "direction"),
    ),
    # common/version.go (NewMetricsCollector): constant 1 while the manager runs.
    Metric(
        "gitlab_runner_version_info",
        "gauge",
        ("name", "version", "revision", "branch", "go_version", "built_at", "os", "architecture"),
    ),
)

CLUSTER_AUTOSCALER_METRICS = (
    # cluster-autoscaler/metrics/metrics.go: registered always (caMetrics.RegisterAll).
    Metric(
        "cluster_autoscaler_failed_scale_ups_total",
        "counter",
        ("reason", "gpu_resource_name", "gpu_name", "dra_drivers"),
    ),
    Metric("cluster_autoscaler_unschedulable_pods_count", "gauge", ("type",)),
    Metric("cluster_autoscaler_nodes_count", "gauge", ("state",)),
    # cluster-autoscaler/metrics/metrics.go: registered only with --emit-per-nodegroup-metrics;
    # node_group is the Auto Scaling group's name on AWS (cloudprovider/aws AwsNodeGroup.Id).
    Metric("cluster_autoscaler_node_group_backoff_status", "gauge", ("node_group", "reason")),
    Metric("cluster_autoscaler_node_group_target_count", "gauge", ("node_group",)),
)

KUBE_STATE_METRICS = (
    # internal/store/node.go: no series unless --metric-labels-allowlist lists node labels; each
    # allowed label becomes `label_<sanitized key>` (internal/store/utils.go). Only the pool
    # label is listed here: the one this project asks operators to allow.
    Metric("kube_node_labels", "gauge", ("node", NODE_POOL_LABEL)),
)

SCRAPE_TARGET_LABELS = ("job", "instance", "namespace", "pod", "container", "endpoint", "service")
"""Labels the Prometheus operator's scrape configs add to every series of a target."""


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
