"""The fleet's alerts: the spec of a Prometheus operator PrometheusRule (monitoring.coreos.com/v1).

Built only from metrics gitlab-runner 19.3, cluster-autoscaler 1.35 and kube-state-metrics
export (see runner_metrics.py). A PrometheusRule's `spec.groups` has the layout of a Prometheus
rule file, so promtool checks and unit-tests the very same groups. Each alert links its section
of docs/observability.md. Pure: no Pulumi runtime needed.
"""

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, NotRequired, TypedDict

from .runner_metrics import FAILURE_REASONS

RULE_GROUP = "gitlab-runner-fleet"
AUTOSCALER_RULE_GROUP = "gitlab-runner-fleet-cluster-autoscaler"
DEFAULT_RUNBOOK_URL = "docs/observability.md"
"""Where the runbook sections live; set the page's browsable URL to make the links clickable."""
DEFAULT_NODE_GROUP_REGEX = ".*"
"""Every node group cluster-autoscaler manages (on EKS, all managed node groups' ASGs)."""
RATE_WINDOW = "10m"
"""Window of the rates behind ratios and quantiles: long enough for a few scrapes of rare events."""
COUNT_WINDOW = "15m"
"""Window over which error and failure events are counted."""
FAILURE_WINDOW = "30m"
"""Window of the job failure ratio: jobs are minutes long, so shorter windows hold too few."""

Severity = Literal["warning", "critical"]
_DURATION = re.compile(r"^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$")


class AlertThresholds(TypedDict):
    """When each alert fires. Every field is optional; `DEFAULT_THRESHOLDS` holds the defaults.
    Durations are Prometheus durations such as `15m` or `1h30m`."""

    queue_wait_p95_seconds: NotRequired[float]
    """GitlabRunnerJobsQueuedTooLong: p95 of the seconds jobs waited in GitLab's queue before a
    manager of the pool took them. Default 300."""
    queue_wait_for: NotRequired[str]
    """How long that p95 must stay above the threshold. Default `15m`."""
    queuing_threshold_exceeded_jobs: NotRequired[float]
    """GitlabRunnerQueuingThresholdExceeded: jobs over the runner's own
    `[[runners.monitoring.job_queuing_durations]]` threshold in 15 minutes above which to
    alert. Default 0 (any)."""
    saturation_ratio: NotRequired[float]
    """GitlabRunnerConcurrencySaturated and GitlabRunnerLimitSaturated: running jobs divided by
    `concurrent` (or a runner's `limit`) at or above which a pool counts as full. Default 0.9."""
    saturation_for: NotRequired[str]
    """How long a pool must stay full. Default `15m`."""
    failure_ratio: NotRequired[float]
    """GitlabRunnerJobFailureRateHigh: failed jobs of one reason divided by all jobs of the pool
    (30-minute rates) above which to alert. Default 0.1."""
    failure_min_jobs: NotRequired[float]
    """Jobs a pool must have taken in 30 minutes before its failure ratio counts. Default 10."""
    failure_for: NotRequired[str]
    """How long the failure ratio must stay high. Default `15m`."""
    ignored_failure_reasons: NotRequired[list[str]]
    """Failure reasons the fleet cannot cause or fix, left out of the failure ratio. Default
    `script_failure` and `job_canceled`."""
    manager_absent_for: NotRequired[str]
    """GitlabRunnerManagerAbsent: how long a pool may have no scraped manager. Default `5m`."""
    api_error_ratio: NotRequired[float]
    """GitlabRunnerApiRequestErrors: share of GitLab API answers that are errors (5xx, 429, and
    401/403 to job requests) per pool and endpoint above which to alert. Default 0.05."""
    api_errors_for: NotRequired[str]
    """How long the API error share must stay high. Default `10m`."""
    errors_logged_per_minute: NotRequired[float]
    """GitlabRunnerErrorsLogged: error-level log lines per minute of a pool above which to alert.
    Default 1."""
    errors_logged_for: NotRequired[str]
    """How long the error log rate must stay high. Default `15m`."""
    pause_pod_reconcile_errors: NotRequired[float]
    """GitlabRunnerPausePodReconcileErrors: failed pause pod reconciles (one every 10 s) in 15
    minutes above which to alert. Default 3."""
    pause_pods_below_desired_for: NotRequired[str]
    """GitlabRunnerPausePodsBelowDesired: how long a manager may keep fewer pause pods than it
    wants. Default `15m`."""
    node_group_backoff_for: NotRequired[str]
    """ClusterAutoscalerNodeGroupBackedOff: how long a node group may stay backed off after a
    failed scale-up (the autoscaler's first backoff lasts 5 minutes). Default `3m`."""
    failed_scale_ups: NotRequired[float]
    """ClusterAutoscalerScaleUpsFailing: failed scale-ups in 15 minutes above which to alert.
    Default 0 (any)."""


DEFAULT_THRESHOLDS: Final[AlertThresholds] = {
    "queue_wait_p95_seconds": 300,
    "queue_wait_for": "15m",
    "queuing_threshold_exceeded_jobs": 0,
    "saturation_ratio": 0.9,
    "saturation_for": "15m",
    "failure_ratio": 0.1,
    "failure_min_jobs": 10,
    "failure_for": "15m",
    "ignored_failure_reasons": ["script_failure", "job_canceled"],
    "manager_absent_for": "5m",
    "api_error_ratio": 0.05,
    "api_errors_for": "10m",
    "errors_logged_per_minute": 1,
    "errors_logged_for": "15m",
    "pause_pod_reconcile_errors": 3,
    "pause_pods_below_desired_for": "15m",
    "node_group_backoff_for": "3m",
    "failed_scale_ups": 0,
}
_RATIOS = ("saturation_ratio", "failure_ratio", "api_error_ratio")


def threshold_problems(thresholds: Mapping[str, Any]) -> list[str]:
    """Why these thresholds cannot build the rules (empty when they can)."""
    problems = []
    for key, value in thresholds.items():
        if key not in DEFAULT_THRESHOLDS:
            problems.append(f"unknown threshold {key!r}")
        elif key == "ignored_failure_reasons":
            if not isinstance(value, list):
                problems.append(f"ignored_failure_reasons must be a list, got {value!r}")
            elif unknown := sorted(set(value) - set(FAILURE_REASONS)):
                problems.append(
                    f"ignored_failure_reasons: unknown {unknown}; runner 19.3 reports "
                    f"{', '.join(FAILURE_REASONS)}"
                )
        elif key.endswith("_for"):
            if not (isinstance(value, str) and _is_duration(value)):
                problems.append(f"{key} must be a Prometheus duration such as 15m, got {value!r}")
        elif not _is_number(value):
            problems.append(f"{key} must be a number, got {value!r}")
        elif key in _RATIOS and not 0 < value <= 1:
            problems.append(f"{key} must be a ratio above 0 and at most 1, got {value!r}")
        elif value < 0:
            problems.append(f"{key} must be at least 0, got {value!r}")
    return problems


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_duration(value: str) -> bool:
    return value == "0" or (value != "" and bool(_DURATION.match(value)))


def alert_anchor(alert: str) -> str:
    """The heading anchor of an alert's runbook section (GitLab and GitHub lowercase headings)."""
    return alert.lower()


def prometheus_rule_spec(
    pools: Sequence[str],
    thresholds: AlertThresholds | None = None,
    *,
    node_group_regex: str = DEFAULT_NODE_GROUP_REGEX,
    runbook_url: str = DEFAULT_RUNBOOK_URL,
) -> dict[str, Any]:
    """The PrometheusRule `spec` (also a Prometheus rule file) for a fleet of these pools.

    `node_group_regex` picks the Auto Scaling groups whose autoscaler backoff is alerted on.
    """
    if not pools:
        raise ValueError("prometheus_rule_spec: at least one pool is needed")
    if problems := threshold_problems(thresholds or {}):
        raise ValueError(f"prometheus_rule_spec: {'; '.join(problems)}")
    settings: AlertThresholds = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    alert = _AlertFactory(runbook_url)
    return {
        "groups": [
            {"name": RULE_GROUP, "rules": _runner_alerts(alert, pools, settings)},
            {
                "name": AUTOSCALER_RULE_GROUP,
                "rules": _autoscaler_alerts(alert, node_group_regex, settings),
            },
        ]
    }


def alert_names(spec: Mapping[str, Any]) -> list[str]:
    """Every alert of a rule spec, in order."""
    return [rule["alert"] for group in spec["groups"] for rule in group["rules"]]


class _AlertFactory:
    def __init__(self, runbook_url: str) -> None:
        self.runbook_url = runbook_url

    def __call__(
        self,
        name: str,
        expr: str,
        *,
        for_: str,
        severity: Severity,
        summary: str,
        description: str,
    ) -> dict[str, Any]:
        return {
            "alert": name,
            "expr": expr,
            "for": for_,
            "labels": {"severity": severity},
            "annotations": {
                "summary": summary,
                "description": description,
                "runbook_url": f"{self.runbook_url}#{alert_anchor(name)}",
            },
        }


def _percent(ratio: float) -> str:
    return f"{ratio * 100:g}%"


def _more_than(count: float) -> str:
    return "Some" if count == 0 else f"More than {count:g}"


def _string(value: str) -> str:
    """A PromQL string literal (Go escapes, which JSON's are a subset of)."""
    return json.dumps(value)


def _runner_alerts(
    alert: _AlertFactory, pools: Sequence[str], t: AlertThresholds
) -> list[dict[str, Any]]:
    ignored = t["ignored_failure_reasons"]
    failure_selector = f"{{failure_reason!~{_string('|'.join(ignored))}}}" if ignored else ""
    api_errors = (
        f'rate(gitlab_runner_api_request_statuses_total{{status=~"5..|429"}}[{RATE_WINDOW}]) '
        f"or rate(gitlab_runner_api_request_statuses_total"
        f'{{endpoint="request_job", status=~"401|403"}}[{RATE_WINDOW}])'
    )
    absent_managers = " or ".join(
        f"absent(gitlab_runner_version_info{{pool={_string(pool)}}})" for pool in pools
    )
    return [
        alert(
            "GitlabRunnerJobsQueuedTooLong",
            "histogram_quantile(0.95, sum by (pool, le) ("
            f"rate(gitlab_runner_job_queue_duration_seconds_bucket[{RATE_WINDOW}])))"
            f" > {t['queue_wait_p95_seconds']}",
            for_=t["queue_wait_for"],
            severity="warning",
            summary="Jobs of pool {{ $labels.pool }} wait long for a runner",
            description=(
                "The 95th percentile of the time jobs waited in GitLab's queue before a manager "
                f"of pool {{{{ $labels.pool }}}} took them is above "
                f"{t['queue_wait_p95_seconds']} s."
            ),
        ),
        alert(
            "GitlabRunnerQueuingThresholdExceeded",
            "sum by (pool) (increase("
            f"gitlab_runner_acceptable_job_queuing_duration_exceeded_total[{COUNT_WINDOW}]))"
            f" > {t['queuing_threshold_exceeded_jobs']}",
            for_="0m",
            severity="warning",
            summary="Jobs of pool {{ $labels.pool }} waited longer than the runner accepts",
            description=(
                f"{_more_than(t['queuing_threshold_exceeded_jobs'])} jobs of pool "
                "{{ $labels.pool }} waited in GitLab's queue longer than the runner's "
                f"job_queuing_durations threshold in the last {COUNT_WINDOW}."
            ),
        ),
        alert(
            "GitlabRunnerConcurrencySaturated",
            "sum by (pool) (gitlab_runner_jobs) / sum by (pool) (gitlab_runner_concurrent)"
            f" >= {t['saturation_ratio']}",
            for_=t["saturation_for"],
            severity="warning",
            summary="Pool {{ $labels.pool }} runs as many jobs as its concurrent allows",
            description=(
                "The managers of pool {{ $labels.pool }} run at least "
                f"{_percent(t['saturation_ratio'])} of their `concurrent` jobs; further jobs "
                "wait in GitLab's queue."
            ),
        ),
        alert(
            "GitlabRunnerLimitSaturated",
            "sum by (pool, runner) (gitlab_runner_jobs)"
            " / sum by (pool, runner) (gitlab_runner_limit > 0)"
            f" >= {t['saturation_ratio']}",
            for_=t["saturation_for"],
            severity="warning",
            summary="Runner {{ $labels.runner }} of pool {{ $labels.pool }} is at its limit",
            description=(
                "Runner {{ $labels.runner }} of pool {{ $labels.pool }} runs at least "
                f"{_percent(t['saturation_ratio'])} of the jobs its `limit` allows."
            ),
        ),
        alert(
            "GitlabRunnerJobFailureRateHigh",
            "(sum by (pool, failure_reason) ("
            f"rate(gitlab_runner_failed_jobs_total{failure_selector}[{FAILURE_WINDOW}]))"
            " / on (pool) group_left "
            f"sum by (pool) (rate(gitlab_runner_jobs_total[{FAILURE_WINDOW}])))"
            f" > {t['failure_ratio']}"
            " and on (pool) "
            f"sum by (pool) (increase(gitlab_runner_jobs_total[{FAILURE_WINDOW}]))"
            f" >= {t['failure_min_jobs']}",
            for_=t["failure_for"],
            severity="warning",
            summary="Jobs of pool {{ $labels.pool }} fail with {{ $labels.failure_reason }}",
            description=(
                f"More than {_percent(t['failure_ratio'])} of the jobs of pool "
                "{{ $labels.pool }} failed with reason {{ $labels.failure_reason }} over "
                f"{FAILURE_WINDOW}."
            ),
        ),
        alert(
            "GitlabRunnerManagerAbsent",
            absent_managers,
            for_=t["manager_absent_for"],
            severity="critical",
            summary="No runner manager of pool {{ $labels.pool }} is scraped",
            description=(
                "Prometheus has no gitlab_runner_version_info series with pool "
                "{{ $labels.pool }}: its manager is down, not scraped, or not labelled."
            ),
        ),
        alert(
            "GitlabRunnerApiRequestErrors",
            f"(sum by (pool, endpoint) ({api_errors})"
            " / sum by (pool, endpoint) ("
            f"rate(gitlab_runner_api_request_statuses_total[{RATE_WINDOW}])))"
            f" > {t['api_error_ratio']}",
            for_=t["api_errors_for"],
            severity="warning",
            summary=(
                "GitLab answers {{ $labels.endpoint }} requests of pool {{ $labels.pool }} "
                "with errors"
            ),
            description=(
                f"More than {_percent(t['api_error_ratio'])} of the {{{{ $labels.endpoint }}}} "
                "requests of pool {{ $labels.pool }} get 5xx or 429 answers (or 401/403 to job "
                "requests: a rejected runner token)."
            ),
        ),
        alert(
            "GitlabRunnerErrorsLogged",
            "sum by (pool) ("
            f'rate(gitlab_runner_errors_total{{level=~"error|fatal|panic"}}[{RATE_WINDOW}]))'
            f" * 60 > {t['errors_logged_per_minute']}",
            for_=t["errors_logged_for"],
            severity="warning",
            summary="The managers of pool {{ $labels.pool }} log errors",
            description=(
                "The managers of pool {{ $labels.pool }} log more than "
                f"{t['errors_logged_per_minute']} error lines a minute."
            ),
        ),
        alert(
            "GitlabRunnerPausePodReconcileErrors",
            "sum by (pool, reason) (increase("
            f"gitlab_runner_kubernetes_autoscaler_reconcile_errors_total[{COUNT_WINDOW}]))"
            f" > {t['pause_pod_reconcile_errors']}",
            for_="0m",
            severity="warning",
            summary="Pool {{ $labels.pool }} fails to manage its pause pods",
            description=(
                "The managers of pool {{ $labels.pool }} failed more than "
                f"{t['pause_pod_reconcile_errors']} pause pod reconciles "
                f"({{{{ $labels.reason }}}}) in the last {COUNT_WINDOW}."
            ),
        ),
        alert(
            "GitlabRunnerPausePodsBelowDesired",
            "gitlab_runner_kubernetes_autoscaler_pause_pods_desired"
            " > gitlab_runner_kubernetes_autoscaler_pause_pods_current",
            for_=t["pause_pods_below_desired_for"],
            severity="warning",
            summary="Pool {{ $labels.pool }} keeps fewer pause pods than it wants",
            description=(
                "Manager {{ $labels.pod }} of pool {{ $labels.pool }} wants more pause pods "
                "than its pause Deployment asks for, and does not catch up."
            ),
        ),
    ]


def _autoscaler_alerts(
    alert: _AlertFactory, node_group_regex: str, t: AlertThresholds
) -> list[dict[str, Any]]:
    return [
        alert(
            "ClusterAutoscalerNodeGroupBackedOff",
            "max by (node_group, reason) (cluster_autoscaler_node_group_backoff_status"
            f"{{node_group=~{_string(node_group_regex)}}}) == 1",
            for_=t["node_group_backoff_for"],
            severity="warning",
            summary="cluster-autoscaler stopped scaling up {{ $labels.node_group }}",
            description=(
                "cluster-autoscaler backed off node group {{ $labels.node_group }} after a "
                "failed scale-up ({{ $labels.reason }}); its pending pods wait."
            ),
        ),
        alert(
            "ClusterAutoscalerScaleUpsFailing",
            "sum by (reason) (increase("
            f"cluster_autoscaler_failed_scale_ups_total[{COUNT_WINDOW}]))"
            f" > {t['failed_scale_ups']}",
            for_="0m",
            severity="warning",
            summary="cluster-autoscaler scale-ups fail ({{ $labels.reason }})",
            description=(
                f"{_more_than(t['failed_scale_ups'])} cluster-autoscaler scale-ups failed with "
                f"reason {{{{ $labels.reason }}}} in the last {COUNT_WINDOW}."
            ),
        ),
    ]
