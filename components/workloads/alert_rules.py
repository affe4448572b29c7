"""The fleet's alerts: the spec of a Prometheus operator PrometheusRule (monitoring.coreos.com/v1),
generated per stack from what that stack runs.

Built only from metrics the exporters really have, labelled as the operator's scrape stores
them (runner_metrics.py). A pool's alerts follow its facts (`MonitoredPool`): pause pod alerts
only for pools that keep warm capacity, the runner's queuing threshold alert only for pools that
configure one, the stuck-pool alert only for pools with working hours; each scaler a pool uses
adds its own group (`SCALER_GROUPS`), and a stack with the in-cluster cache watches its volume.
A PrometheusRule's `spec.groups` has the layout of a Prometheus rule file, so promtool and a
real Prometheus load the very same groups. Each alert links its section of
docs/observability.md. Pure: no Pulumi runtime needed.
"""

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, NotRequired, TypedDict

from ..karpenter import NODE_POOL_NAME_PREFIX, node_pool_name
from ..kubernetes_names import label_value_problems, namespace_problems
from .rclone import NEARLY_FULL_RATIO
from .runner_metrics import (
    API_ENDPOINT,
    FAILURE_REASONS,
    NODE_POOL,
    PAUSE_DEPLOYMENT_PREFIX,
    PAUSE_DEPLOYMENT_RUNNER,
    POOL,
    PROCESS_START,
    TARGET_HEALTH,
    metric_named,
)
from .working_hours import WorkingHoursError, current_years, promql_condition, utc_windows

RULE_GROUP = "gitlab-runner-fleet"
PAUSE_POD_RULE_GROUP = "gitlab-runner-fleet-pause-pods"
AUTOSCALER_RULE_GROUP = "gitlab-runner-fleet-cluster-autoscaler"
KARPENTER_RULE_GROUP = "gitlab-runner-fleet-karpenter"
CACHE_RULE_GROUP = "gitlab-runner-fleet-cache"
DEFAULT_RUNBOOK_URL = "docs/observability.md"
"""Where the runbook sections live; set the page's browsable URL to make the links clickable."""
DEFAULT_NODE_GROUP_REGEX = ".*"
"""Every node group cluster-autoscaler manages (on EKS, all managed node groups' ASGs)."""
CLUSTER_AUTOSCALER = "cluster-autoscaler"
"""Scaler of pools whose nodes are managed node groups scaled by the stack's cluster-autoscaler."""
KARPENTER = "karpenter"
"""Scaler of pools whose nodes the stack's own Karpenter launches (its chart's ServiceMonitor)."""
LAUNCH_FAILURE_REASONS = ("insufficient_capacity", "nodeclass_not_ready", "launch_timeout")
"""Why Karpenter gives up a NodeClaim before its instance runs (nodeclaim/lifecycle/launch.go,
liveness.go)."""
REGISTRATION_FAILURE_REASON = "registration_timeout"
"""A NodeClaim whose instance ran but never joined the cluster in 15 minutes (liveness.go)."""
NO_SCALER = "none"
"""Scaler of pools on nodes nobody scales (or a scaler this stack does not watch)."""

Severity = Literal["warning", "critical"]
_DURATION = re.compile(r"^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$")
_REGEX_SPECIAL = re.compile(r"([.\\^$*+?()\[\]{}|])")
_DURATION_PART = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_SECONDS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}


class ExpectJobs(TypedDict):
    """When a pool always has work, so a manager that picks up nothing is stuck."""

    periods: list[str]
    """5-field cron periods (minute hour `*` `*` weekday), e.g. `* 8-17 * * mon-fri`."""
    timezone: str
    """IANA time zone of the periods, e.g. `Europe/Berlin`."""
    within: str
    """Prometheus duration: alert when no job was picked up for this long inside the periods."""


class MonitoredPool(TypedDict):
    """What one pool runs, as far as its alerts are concerned."""

    name: str
    """The pool's name: the value of the managers' and jobs' `gitlab-runner-fleet/pool` label."""
    job_namespace: str
    """Namespace of the pool's job pods and of its pause Deployment."""
    scaler: NotRequired[str]
    """What adds the pool's nodes: `cluster-autoscaler` (default), `karpenter` (its NodePool
    `gitlab-runner-fleet-<name>`) or `none` (fixed nodes, or a scaler the stack does not run)."""
    warm_capacity: NotRequired[bool]
    """The runner keeps pause pods (`[runners.kubernetes.autoscaler]`). Default false."""
    queuing_thresholds: NotRequired[bool]
    """The runner has `[[runners.monitoring.job_queuing_durations]]`. Default false."""
    expect_jobs: NotRequired[ExpectJobs]
    """Working hours in which the pool always picks up jobs. Default none."""
    on_demand_fallback: NotRequired[bool]
    """A Karpenter pool may launch on-demand nodes when spot has no capacity. Default false."""


class VolumeClaim(TypedDict):
    """A PersistentVolumeClaim whose free space is alerted on."""

    namespace: str
    name: str


class AlertThresholds(TypedDict):
    """When each alert fires. Every field is optional; `DEFAULT_THRESHOLDS` holds the defaults.
    Durations are Prometheus durations such as `15m` or `1h30m`."""

    rate_window: NotRequired[str]
    """Window of the rates behind quantiles and per-minute rates. Default `10m`."""
    event_window: NotRequired[str]
    """Window over which events (errors, failed requests, threshold breaches) are counted.
    Default `15m`."""
    failure_window: NotRequired[str]
    """Window of the job failure ratio: jobs are minutes long, so shorter windows hold too few.
    Default `30m`."""
    queue_wait_p95_seconds: NotRequired[float]
    """GitlabRunnerJobsQueuedTooLong: p95 of the seconds jobs waited in GitLab's queue before a
    manager of the pool took them. Default 300."""
    queue_wait_for: NotRequired[str]
    """How long that p95 must stay above the threshold. Default `15m`."""
    queuing_threshold_exceeded_jobs: NotRequired[float]
    """GitlabRunnerQueuingThresholdExceeded: jobs over the runner's own
    `[[runners.monitoring.job_queuing_durations]]` threshold in the event window above which to
    alert. Default 0 (any)."""
    saturation_ratio: NotRequired[float]
    """GitlabRunnerConcurrencySaturated: running jobs divided by `concurrent` at or above which
    a pool counts as full. Default 0.9."""
    saturation_for: NotRequired[str]
    """How long a pool must stay full. Default `15m`."""
    failure_ratio: NotRequired[float]
    """GitlabRunnerJobFailureRateHigh: failed jobs of one reason divided by all jobs of the pool
    (over the failure window) above which to alert. Default 0.1."""
    failure_min_jobs: NotRequired[float]
    """Jobs a pool must have taken in the failure window before its failure ratio counts.
    Default 10."""
    failure_for: NotRequired[str]
    """How long the failure ratio must stay high. Default `15m`."""
    ignored_failure_reasons: NotRequired[list[str]]
    """Failure reasons the fleet cannot cause or fix, left out of the failure ratio. Default
    `script_failure` and `job_canceled`."""
    manager_absent_for: NotRequired[str]
    """GitlabRunnerManagerAbsent: how long a pool may have no scraped manager. Default `5m`."""
    api_error_ratio: NotRequired[float]
    """GitlabRunnerApiRequestErrors: share of GitLab API answers that are errors (5xx, 429, and
    401/403 to job requests) per pool and API endpoint above which to alert. Default 0.05."""
    api_errors_for: NotRequired[str]
    """How long the API error share must stay high. Default `10m`."""
    errors_logged_per_minute: NotRequired[float]
    """GitlabRunnerErrorsLogged: error-level log lines per minute of a pool above which to alert.
    Default 1."""
    errors_logged_for: NotRequired[str]
    """How long the error log rate must stay high. Default `15m`."""
    pause_pod_reconcile_errors: NotRequired[float]
    """GitlabRunnerPausePodReconcileErrors: failed pause pod reconciles (one every 10 s) in the
    event window above which to alert. Default 3."""
    pause_pods_unavailable_for: NotRequired[str]
    """GitlabRunnerPausePodsUnavailable: how long one pause pod may stay Pending (a new node
    takes minutes; a pod preempted by a job and recreated starts its clock again). Default
    `15m`."""
    node_group_backoff_for: NotRequired[str]
    """ClusterAutoscalerNodeGroupBackedOff: how long a node group may stay backed off after a
    failed scale-up (the autoscaler's first backoff lasts 5 minutes). Default `3m`."""
    failed_scale_ups: NotRequired[float]
    """ClusterAutoscalerScaleUpsFailing: failed scale-ups in the event window above which to
    alert. Default 0 (any)."""
    node_pool_at_limit_for: NotRequired[str]
    """KarpenterNodePoolAtLimit: how long a pool's NodePool may use all of one of its limits
    (nodes, cpu, memory), so that Karpenter launches nothing more for it. Default `15m`."""
    node_launch_failures: NotRequired[float]
    """KarpenterNodeLaunchesFailing and KarpenterNodesNotRegistering: NodeClaims of a pool
    given up in the event window above which to alert. Default 0 (any)."""
    cache_volume_free_ratio: NotRequired[float]
    """RunnerCacheVolumeNearlyFull: free share of the in-cluster cache's volume below which to
    alert. Default 0.1."""
    cache_volume_for: NotRequired[str]
    """How long the cache volume may stay that full. Default `10m`."""


DEFAULT_THRESHOLDS: Final[AlertThresholds] = {
    "rate_window": "10m",
    "event_window": "15m",
    "failure_window": "30m",
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
    "pause_pods_unavailable_for": "15m",
    "node_group_backoff_for": "3m",
    "failed_scale_ups": 0,
    "node_pool_at_limit_for": "15m",
    "node_launch_failures": 0,
    # The planned shares leave 20% of the volume free; half of that gone is nearly full.
    "cache_volume_free_ratio": round(1 - NEARLY_FULL_RATIO, 2),
    "cache_volume_for": "10m",
}
_RATIOS = ("saturation_ratio", "failure_ratio", "api_error_ratio", "cache_volume_free_ratio")
_RENAMED_THRESHOLDS = {"pause_pods_below_desired_for": "pause_pods_unavailable_for"}


def threshold_problems(thresholds: Mapping[str, Any]) -> list[str]:
    """Why these thresholds cannot build the rules (empty when they can)."""
    problems = []
    for key, value in thresholds.items():
        if key in _RENAMED_THRESHOLDS:
            problems.append(
                f"threshold {key!r} is now {_RENAMED_THRESHOLDS[key]!r} (the pause pod alert "
                "reads the pause Deployment's available pods)"
            )
        elif key not in DEFAULT_THRESHOLDS:
            problems.append(f"unknown threshold {key!r}")
        elif key == "ignored_failure_reasons":
            problems += _reasons_problems(value)
        elif key.endswith(("_window", "_for")):
            # A window of 0 would read no samples; a `for` of 0 fires at once.
            if not (isinstance(value, str) and is_duration(value)) or (
                key.endswith("_window") and not duration_seconds(value)
            ):
                problems.append(f"{key} must be a Prometheus duration such as 15m, got {value!r}")
        elif not _is_number(value):
            problems.append(f"{key} must be a number, got {value!r}")
        elif key in _RATIOS and not 0 < value <= 1:
            problems.append(f"{key} must be a ratio above 0 and at most 1, got {value!r}")
        elif value < 0:
            problems.append(f"{key} must be at least 0, got {value!r}")
    return problems


def _reasons_problems(value: object) -> list[str]:
    if not isinstance(value, list):
        return [f"ignored_failure_reasons must be a list, got {value!r}"]
    if unknown := sorted(set(value) - set(FAILURE_REASONS)):
        return [
            f"ignored_failure_reasons: unknown {unknown}; runner 19.3 reports "
            f"{', '.join(FAILURE_REASONS)}"
        ]
    return []


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_duration(value: str) -> bool:
    """Whether a string is a Prometheus duration (`90s`, `15m`, `1h30m`, `0`)."""
    return value == "0" or (value != "" and bool(_DURATION.match(value)))


def duration_seconds(value: str) -> float:
    """The seconds of a Prometheus duration."""
    return sum(int(n) * _SECONDS[unit] for n, unit in _DURATION_PART.findall(value))


def pool_problems(pools: Sequence[MonitoredPool], years: Sequence[int] | None = None) -> list[str]:
    """Why these pool descriptions cannot build the rules (empty when they can)."""
    problems = []
    names = [pool["name"] for pool in pools]
    if not pools:
        problems.append("pools: at least one pool is needed")
    if len(set(names)) != len(names):
        problems.append(f"pools: names must be unique, got {names}")
    for pool in pools:
        name = pool["name"]
        if name == "":
            problems.append("pools: a pool name must not be empty")
        problems += [f"pool {name!r} {p}" for p in label_value_problems(name)]
        problems += [
            f"pool {name!r}: job_namespace {pool['job_namespace']!r} {p}"
            for p in namespace_problems(pool["job_namespace"])
        ]
        if (scaler := pool_scaler(pool)) not in SCALER_GROUPS:
            problems.append(
                f"pool {name!r}: scaler must be one of {', '.join(SCALER_GROUPS)}, got {scaler!r}"
            )
        if expect := pool.get("expect_jobs"):
            try:
                expect_jobs_condition(expect, years)
            except WorkingHoursError as error:
                problems.append(f"pool {name!r}: expect_jobs: {error}")
    return problems


def pool_scaler(pool: MonitoredPool) -> str:
    """What adds the pool's nodes; cluster-autoscaler unless the pool says otherwise."""
    return pool.get("scaler", CLUSTER_AUTOSCALER)


def expect_jobs_condition(expect: ExpectJobs, years: Sequence[int] | None = None) -> str | None:
    """PromQL that has a value while the pool's whole `within` window lies in its working
    hours (None when that is always so). Raises WorkingHoursError for bad input."""
    within = expect["within"]
    if not (is_duration(within) and duration_seconds(within) > 0):
        raise WorkingHoursError(f"within must be a Prometheus duration such as 1h, got {within!r}")
    windows = utc_windows(
        expect["periods"],
        expect["timezone"],
        within_minutes=-(-int(duration_seconds(within)) // 60),
        years=years or current_years(),
    )
    if not windows:
        raise WorkingHoursError(
            f"within ({within}) is longer than every stretch of working hours the periods "
            "describe (in a zone with daylight saving time, an hour less): shorten within or "
            "widen the periods"
        )
    return promql_condition(windows)


def alert_anchor(alert: str) -> str:
    """The heading anchor of an alert's runbook section (GitLab and GitHub lowercase headings)."""
    return alert.lower()


@dataclass(frozen=True)
class _Context:
    """What every group builder reads."""

    alert: "_AlertFactory"
    thresholds: AlertThresholds
    node_group_regex: str
    years: Sequence[int] | None


def prometheus_rule_spec(
    pools: Sequence[MonitoredPool],
    thresholds: AlertThresholds | None = None,
    *,
    cache_volume: VolumeClaim | None = None,
    node_group_regex: str = DEFAULT_NODE_GROUP_REGEX,
    runbook_url: str = DEFAULT_RUNBOOK_URL,
    years: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The PrometheusRule `spec` (also a Prometheus rule file) for a fleet of these pools.

    `cache_volume` is the in-cluster cache's claim, watched when given. `node_group_regex`
    picks the Auto Scaling groups whose autoscaler backoff is alerted on. `years` are those
    whose UTC offsets working hours are converted with (default this year and the next).
    """
    problems = pool_problems(pools, years) + threshold_problems(thresholds or {})
    if problems:
        raise ValueError(f"prometheus_rule_spec: {'; '.join(problems)}")
    context = _Context(
        alert=_AlertFactory(runbook_url),
        thresholds={**DEFAULT_THRESHOLDS, **(thresholds or {})},
        node_group_regex=node_group_regex,
        years=years,
    )
    groups = [(RULE_GROUP, _runner_alerts(context, pools))]
    if warm := [pool for pool in pools if pool.get("warm_capacity")]:
        groups.append((PAUSE_POD_RULE_GROUP, _pause_pod_alerts(context, warm)))
    for scaler, builder in SCALER_GROUPS.items():
        if builder and (scaled := [pool for pool in pools if pool_scaler(pool) == scaler]):
            groups.append(builder(context, scaled))
    if cache_volume:
        groups.append((CACHE_RULE_GROUP, _cache_alerts(context, cache_volume)))
    return {"groups": [{"name": name, "rules": rules} for name, rules in groups]}


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


def _one_of(label: str, values: Sequence[str]) -> str:
    """A matcher for exactly these label values."""
    if len(values) == 1:
        return f"{label}={_string(values[0])}"
    alternatives = "|".join(_REGEX_SPECIAL.sub(r"\\\1", value) for value in values)
    return f"{label}=~{_string(alternatives)}"


def _pools(pools: Sequence[MonitoredPool]) -> str:
    return _one_of(POOL, [pool["name"] for pool in pools])


def _selector(metric: str, *matchers: str) -> str:
    if present := [matcher for matcher in matchers if matcher]:
        return f"{metric}{{{', '.join(present)}}}"
    return metric


def counted(selector: str, window: str) -> str:
    """PromQL: per series, how much a counter rose in the last `window`.

    A series born within the window (absent `window` ago) counts with its whole value, for
    counters created with their first increment: `increase()` has no sample before that first
    event and would count it as 0. Only where its absence then is known to be real: its target
    was scraped successfully `window` ago, or its process started since. A target Prometheus
    had not scraped then (newly discovered, down, or before Prometheus had data) would
    otherwise count a counter's whole history as new events; those keep `increase()`.
    """
    born = f"({selector} unless {selector} offset {window})"
    seen_then = f"({TARGET_HEALTH} offset {window} == 1)"
    started_since = f"(time() - {PROCESS_START} < {duration_seconds(window):g})"
    trusted = f"({born} and on (job, instance, pod) ({seen_then} or {started_since}))"
    return f"((increase({selector}[{window}]) unless {trusted}) or {trusted})"


def _rise(metric: str, matchers: Sequence[str], window: str) -> str:
    """PromQL: per series, how much a counter rose in the window, first events included
    where its series can be born with them (runner_metrics.py `born_at_first_event`)."""
    selector = _selector(metric, *matchers)
    if metric_named(metric).born_at_first_event:
        return counted(selector, window)
    return f"increase({selector}[{window}])"


def _runner_alerts(context: _Context, pools: Sequence[MonitoredPool]) -> list[dict[str, Any]]:
    alert, t = context.alert, context.thresholds
    every_pool = _pools(pools)
    ignored = t["ignored_failure_reasons"]
    counted_reasons = f"failure_reason!~{_string('|'.join(ignored))}" if ignored else ""
    statuses = "gitlab_runner_api_request_statuses_total"
    server_errors = [every_pool, 'status=~"5..|429"']
    rejected_token = [every_pool, f'{API_ENDPOINT}="request_job"', 'status=~"401|403"']
    api_errors = (
        f"{_rise(statuses, server_errors, t['event_window'])}"
        f" or {_rise(statuses, rejected_token, t['event_window'])}"
    )
    jobs_taken = f"increase(gitlab_runner_jobs_total{{{every_pool}}}[{t['failure_window']}])"
    absent_managers = " or ".join(
        f"absent(gitlab_runner_version_info{{pool={_string(pool['name'])}}})" for pool in pools
    )
    rules = [
        alert(
            "GitlabRunnerJobsQueuedTooLong",
            "histogram_quantile(0.95, sum by (pool, le) (rate("
            f"gitlab_runner_job_queue_duration_seconds_bucket{{{every_pool}}}"
            f"[{t['rate_window']}])))"
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
    ]
    if queuing := [pool for pool in pools if pool.get("queuing_thresholds")]:
        rules.append(
            alert(
                "GitlabRunnerQueuingThresholdExceeded",
                "sum by (pool) ("
                + _rise(
                    "gitlab_runner_acceptable_job_queuing_duration_exceeded_total",
                    [_pools(queuing)],
                    t["event_window"],
                )
                + f") > {t['queuing_threshold_exceeded_jobs']}",
                for_="0m",
                severity="warning",
                summary="Jobs of pool {{ $labels.pool }} waited longer than the runner accepts",
                description=(
                    f"{_more_than(t['queuing_threshold_exceeded_jobs'])} jobs of pool "
                    "{{ $labels.pool }} waited in GitLab's queue longer than the runner's "
                    f"job_queuing_durations threshold in the last {t['event_window']}."
                ),
            )
        )
    rules += [
        alert(
            "GitlabRunnerConcurrencySaturated",
            f"sum by (pool) (gitlab_runner_jobs{{{every_pool}}})"
            f" / sum by (pool) (gitlab_runner_concurrent{{{every_pool}}})"
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
            "GitlabRunnerJobFailureRateHigh",
            "(sum by (pool, failure_reason) ("
            + _rise(
                "gitlab_runner_failed_jobs_total",
                [every_pool, counted_reasons],
                t["failure_window"],
            )
            + f") / on (pool) group_left sum by (pool) ({jobs_taken}))"
            f" > {t['failure_ratio']}"
            f" and on (pool) sum by (pool) ({jobs_taken}) >= {t['failure_min_jobs']}",
            for_=t["failure_for"],
            severity="warning",
            summary="Jobs of pool {{ $labels.pool }} fail with {{ $labels.failure_reason }}",
            description=(
                f"More than {_percent(t['failure_ratio'])} of the jobs of pool "
                "{{ $labels.pool }} failed with reason {{ $labels.failure_reason }} over "
                f"{t['failure_window']}."
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
            f"(sum by (pool, {API_ENDPOINT}) ({api_errors})"
            f" / sum by (pool, {API_ENDPOINT}) ("
            f"{_rise(statuses, [every_pool], t['event_window'])}))"
            f" > {t['api_error_ratio']}",
            for_=t["api_errors_for"],
            severity="warning",
            summary=(
                f"GitLab answers {{{{ $labels.{API_ENDPOINT} }}}} requests of pool "
                "{{ $labels.pool }} with errors"
            ),
            description=(
                f"More than {_percent(t['api_error_ratio'])} of the "
                f"{{{{ $labels.{API_ENDPOINT} }}}} requests of pool {{{{ $labels.pool }}}} got "
                "5xx or 429 answers (or 401/403 to job requests: a rejected runner token) in "
                f"the last {t['event_window']}."
            ),
        ),
        alert(
            "GitlabRunnerErrorsLogged",
            "sum by (pool) (rate(gitlab_runner_errors_total"
            f'{{{every_pool}, level=~"error|fatal|panic"}}[{t["rate_window"]}]))'
            f" * 60 > {t['errors_logged_per_minute']}",
            for_=t["errors_logged_for"],
            severity="warning",
            summary="The managers of pool {{ $labels.pool }} log errors",
            description=(
                "The managers of pool {{ $labels.pool }} log more than "
                f"{t['errors_logged_per_minute']} error lines a minute."
            ),
        ),
    ]
    if expecting := [pool for pool in pools if pool.get("expect_jobs")]:
        rules.append(_no_jobs_alert(context, expecting))
    return rules


def _no_jobs_alert(context: _Context, pools: Sequence[MonitoredPool]) -> dict[str, Any]:
    """Managers that are up but picked up no job in a pool's `within`, inside its hours."""
    parts = []
    for pool in pools:
        expect = pool["expect_jobs"]
        this_pool = _pools([pool])
        within = expect["within"]
        # A manager that never asked for a job has no jobs_total yet: it counts as 0. Only
        # managers already up `within` ago count, so a new pool or Prometheus gets its window.
        idle = (
            f"(sum by (pool) (increase(gitlab_runner_jobs_total{{{this_pool}}}[{within}]))"
            f" or 0 * group by (pool) (gitlab_runner_version_info{{{this_pool}}})) == 0"
            f" and on (pool) group by (pool) "
            f"(gitlab_runner_version_info{{{this_pool}}} offset {within})"
        )
        condition = expect_jobs_condition(expect, context.years)
        parts.append(f"({idle} and on () ({condition}))" if condition else f"({idle})")
    return context.alert(
        "GitlabRunnerNoJobsPickedUp",
        " or ".join(parts),
        for_="0m",
        severity="warning",
        summary="Pool {{ $labels.pool }} picks up no jobs in its working hours",
        description=(
            "The managers of pool {{ $labels.pool }} are up but picked up no job for as long as "
            "its expect_jobs window, inside the hours in which it always has work."
        ),
    )


def _pause_pod_alerts(context: _Context, pools: Sequence[MonitoredPool]) -> list[dict[str, Any]]:
    alert, t = context.alert, context.thresholds
    warm = _pools(pools)
    namespaces = _one_of("namespace", sorted({pool["job_namespace"] for pool in pools}))
    deployments = f"deployment=~{_string(PAUSE_DEPLOYMENT_PREFIX + '.+')}"
    pods = f"pod=~{_string(PAUSE_DEPLOYMENT_PREFIX + '.+')}"
    # Each pause pod Pending longer than a node takes to come: with jobs arriving all day,
    # every job preempts pause pods and their Deployment is short of available replicas most
    # of the time, so the Deployment's count says nothing; one pod's age does.
    long_pending = (
        f'(kube_pod_status_phase{{{namespaces}, {pods}, phase="Pending"}} == 1)'
        f" and on (namespace, pod) (time() - kube_pod_created{{{namespaces}, {pods}}}"
        f" > {duration_seconds(t['pause_pods_unavailable_for']):g})"
    )
    # A Deployment's pod is <deployment>-<pod template hash>-<suffix>.
    per_deployment = (
        "count by (namespace, deployment) (label_replace("
        f'{long_pending}, "deployment", "$1", "pod", "(.+)-[a-z0-9]+-[a-z0-9]+"))'
    )
    # The Deployment's name cannot be mapped back to the runner's short token (it is lowercased
    # and stripped); its label holds the token as is.
    owner = (
        "max by (namespace, deployment, runner) (label_replace("
        f'kube_deployment_labels{{{namespaces}, {deployments}, {PAUSE_DEPLOYMENT_RUNNER}!=""}}, '
        f'"runner", "$1", "{PAUSE_DEPLOYMENT_RUNNER}", "(.+)"))'
    )
    pools_of_runners = (
        "group by (runner, pool) "
        f"(gitlab_runner_kubernetes_autoscaler_pause_pods_desired{{{warm}}})"
    )
    return [
        alert(
            "GitlabRunnerPausePodReconcileErrors",
            "sum by (pool, reason) ("
            + _rise(
                "gitlab_runner_kubernetes_autoscaler_reconcile_errors_total",
                [warm],
                t["event_window"],
            )
            + f") > {t['pause_pod_reconcile_errors']}",
            for_="0m",
            severity="warning",
            summary="Pool {{ $labels.pool }} fails to manage its pause pods",
            description=(
                "The managers of pool {{ $labels.pool }} failed more than "
                f"{t['pause_pod_reconcile_errors']} pause pod reconciles "
                f"({{{{ $labels.reason }}}}) in the last {t['event_window']}."
            ),
        ),
        alert(
            "GitlabRunnerPausePodsUnavailable",
            f"{per_deployment}"
            f" * on (namespace, deployment) group_left (runner) {owner}"
            f" * on (runner) group_left (pool) {pools_of_runners}",
            for_="0m",
            severity="warning",
            summary="Pause pods of pool {{ $labels.pool }} do not run",
            description=(
                "{{ $value }} pause pods of pool {{ $labels.pool }} (Deployment "
                "{{ $labels.namespace }}/{{ $labels.deployment }}) have been Pending for more "
                f"than {t['pause_pods_unavailable_for']}: no node has room for them and none is "
                "added, so the pool's warm capacity is missing."
            ),
        ),
    ]


def _cluster_autoscaler_alerts(
    context: _Context, pools: Sequence[MonitoredPool]
) -> tuple[str, list[dict[str, Any]]]:
    alert, t = context.alert, context.thresholds
    failed = _rise("cluster_autoscaler_failed_scale_ups_total", [], t["event_window"])
    return AUTOSCALER_RULE_GROUP, [
        alert(
            "ClusterAutoscalerNodeGroupBackedOff",
            "max by (node_group, reason) (cluster_autoscaler_node_group_backoff_status"
            f"{{node_group=~{_string(context.node_group_regex)}}}) == 1",
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
            f"sum by (reason) ({failed}) > {t['failed_scale_ups']}",
            for_="0m",
            severity="warning",
            summary="cluster-autoscaler scale-ups fail ({{ $labels.reason }})",
            description=(
                f"{_more_than(t['failed_scale_ups'])} cluster-autoscaler scale-ups failed with "
                f"reason {{{{ $labels.reason }}}} in the last {t['event_window']}."
            ),
        ),
    ]


def _karpenter_alerts(
    context: _Context, pools: Sequence[MonitoredPool]
) -> tuple[str, list[dict[str, Any]]]:
    alert, t = context.alert, context.thresholds
    node_pools = _one_of(NODE_POOL, [node_pool_name(pool["name"]) for pool in pools])
    # A pool that falls back to on-demand loses a spot NodeClaim as insufficient_capacity each
    # time spot has none (instance.go tries spot first; lifecycle/launch.go deletes the claim),
    # then launches on-demand: that is the fallback working, not a failure (found in review).
    falling_back = [node_pool_name(p["name"]) for p in pools if p.get("on_demand_fallback")]
    spot_only = [node_pool_name(p["name"]) for p in pools if not p.get("on_demand_fallback")]

    def per_pool(expr: str) -> str:
        # Karpenter's metrics name the NodePool; the pool's name is its NodePool's suffix.
        prefix = _string(f"{NODE_POOL_NAME_PREFIX}(.+)")
        return f'label_replace({expr}, "{POOL}", "$1", "{NODE_POOL}", {prefix})'

    def given_up(reasons: Sequence[str], names: Sequence[str] = ()) -> str:
        rise = _rise(
            "karpenter_nodeclaims_disrupted_total",
            [_one_of(NODE_POOL, names) if names else node_pools, _one_of("reason", reasons)],
            t["event_window"],
        )
        return per_pool(f"sum by ({NODE_POOL}, reason) ({rise}) > {t['node_launch_failures']}")

    launches = " or ".join(
        given_up(reasons, names)
        for reasons, names in (
            (LAUNCH_FAILURE_REASONS, spot_only),
            ([r for r in LAUNCH_FAILURE_REASONS if r != "insufficient_capacity"], falling_back),
        )
        if names
    )

    # Both controller replicas may export the gauges; max by NodePool keeps one of each.
    usage, limit = (
        f"max by ({NODE_POOL}, resource_type) (karpenter_nodepools_{kind}{{{node_pools}}})"
        for kind in ("usage", "limit")
    )
    return KARPENTER_RULE_GROUP, [
        alert(
            "KarpenterNodePoolAtLimit",
            per_pool(f"{usage} >= on ({NODE_POOL}, resource_type) {limit}"),
            for_=t["node_pool_at_limit_for"],
            severity="warning",
            summary="Pool {{ $labels.pool }} reached its NodePool's {{ $labels.resource_type }} "
            "limit",
            description=(
                "NodePool {{ $labels.nodepool }} uses all of its {{ $labels.resource_type }} "
                "limit (pools[].maxSize): Karpenter launches no further node for it, and its "
                "jobs wait for a free one."
            ),
        ),
        alert(
            "KarpenterNodeLaunchesFailing",
            launches,
            for_="0m",
            severity="warning",
            summary="Karpenter fails to launch nodes for pool {{ $labels.pool }} "
            "({{ $labels.reason }})",
            description=(
                f"{_more_than(t['node_launch_failures'])} nodes of NodePool "
                "{{ $labels.nodepool }} were given up before their instance ran, with reason "
                f"{{{{ $labels.reason }}}}, in the last {t['event_window']}."
            ),
        ),
        alert(
            "KarpenterNodesNotRegistering",
            given_up([REGISTRATION_FAILURE_REASON]),
            for_="0m",
            severity="critical",
            summary="Nodes of pool {{ $labels.pool }} start but never join the cluster",
            description=(
                f"{_more_than(t['node_launch_failures'])} instances launched for NodePool "
                "{{ $labels.nodepool }} ran but did not register as nodes within 15 minutes in "
                f"the last {t['event_window']}: Karpenter terminated them."
            ),
        ),
    ]


SCALER_GROUPS: dict[
    str, Callable[[_Context, Sequence[MonitoredPool]], tuple[str, list[dict[str, Any]]]] | None
] = {
    CLUSTER_AUTOSCALER: _cluster_autoscaler_alerts,
    KARPENTER: _karpenter_alerts,
    NO_SCALER: None,
}
"""Each scaler a pool may name, and the group of alerts its pools add (built once, from the
pools that use it); None for scalers with nothing to watch."""


def _cache_alerts(context: _Context, claim: VolumeClaim) -> list[dict[str, Any]]:
    t = context.thresholds
    volume = (
        f"namespace={_string(claim['namespace'])}, persistentvolumeclaim={_string(claim['name'])}"
    )
    return [
        context.alert(
            "RunnerCacheVolumeNearlyFull",
            f"kubelet_volume_stats_available_bytes{{{volume}}}"
            f" / kubelet_volume_stats_capacity_bytes{{{volume}}}"
            f" < {t['cache_volume_free_ratio']}",
            for_=t["cache_volume_for"],
            severity="warning",
            summary="The runner cache's volume is nearly full",
            description=(
                "Less than "
                f"{_percent(t['cache_volume_free_ratio'])} of the volume "
                "{{ $labels.namespace }}/{{ $labels.persistentvolumeclaim }} is free: cache "
                "uploads will fail once it is full."
            ),
        ),
    ]
