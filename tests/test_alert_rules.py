"""The PrometheusRule spec: real metric names and labels as the scrape stores them, alerts
generated from what the pools run, first events counted, thresholds, runbook sections.

promtool checks and unit-tests the same groups in tests/integration/test_promtool.py; a real
Prometheus scraping exporters evaluates them in tests/integration/test_prometheus.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from components.workloads.alert_rules import (
    AUTOSCALER_RULE_GROUP,
    CACHE_RULE_GROUP,
    DEFAULT_THRESHOLDS,
    KARPENTER,
    KARPENTER_RULE_GROUP,
    NO_SCALER,
    PAUSE_POD_RULE_GROUP,
    RULE_GROUP,
    AlertThresholds,
    ExpectJobs,
    MonitoredPool,
    VolumeClaim,
    alert_anchor,
    alert_names,
    pool_problems,
    prometheus_rule_spec,
    threshold_problems,
)
from components.workloads.runner_metrics import (
    API_ENDPOINT,
    NODE_POOL,
    POOL,
    PROCESS_START,
    RUNNER_METRICS,
    RUNNER_SCRAPE,
    TARGET_HEALTH,
    metric_named,
    stored_series,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "observability.md"
YEARS = (2026, 2027)
OFFICE_HOURS: ExpectJobs = {
    "periods": ["* 7-18 * * mon-fri"],
    "timezone": "Europe/Berlin",
    "within": "1h",
}
FLEET: list[MonitoredPool] = [
    {
        "name": "default",
        "job_namespace": "gitlab-runner-jobs-dind",
        "warm_capacity": True,
        "queuing_thresholds": True,
        "expect_jobs": OFFICE_HOURS,
    },
    {"name": "arm64", "job_namespace": "gitlab-runner-jobs-dind"},
    {"name": "large-memory", "job_namespace": "gitlab-runner-jobs-rootless", "scaler": "karpenter"},
]
"""Pools using every fact and both scalers, so every alert is generated."""
CACHE_VOLUME: VolumeClaim = {"namespace": "runner-cache", "name": "runner-cache-data"}
EVERY_ALERT = [
    "GitlabRunnerJobsQueuedTooLong",
    "GitlabRunnerQueuingThresholdExceeded",
    "GitlabRunnerConcurrencySaturated",
    "GitlabRunnerJobFailureRateHigh",
    "GitlabRunnerManagerAbsent",
    "GitlabRunnerApiRequestErrors",
    "GitlabRunnerErrorsLogged",
    "GitlabRunnerNoJobsPickedUp",
    "GitlabRunnerPausePodReconcileErrors",
    "GitlabRunnerPausePodsUnavailable",
    "ClusterAutoscalerNodeGroupBackedOff",
    "ClusterAutoscalerScaleUpsFailing",
    "KarpenterNodePoolAtLimit",
    "KarpenterNodeLaunchesFailing",
    "KarpenterNodesNotRegistering",
    "RunnerCacheVolumeNearlyFull",
]


def full_spec(thresholds: AlertThresholds | None = None, **kwargs: Any) -> dict[str, Any]:
    return prometheus_rule_spec(FLEET, thresholds, cache_volume=CACHE_VOLUME, years=YEARS, **kwargs)


# --- A small PromQL reader: enough to list the selectors and grouping labels of an expression.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_RANGE = re.compile(r"\[[^\]]*\]|\boffset\s+[0-9a-z]+")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")')
_NUMBER = re.compile(r"(?<![a-zA-Z_:])\d+(\.\d+)?([eE][-+]?\d+)?")
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan",
}  # fmt: skip


@dataclass
class Selector:
    metric: str
    matchers: dict[str, tuple[str, str]]
    """Label to (operator, value as PromQL reads the string)."""


@dataclass
class Query:
    """What a PromQL expression reads: each series selector with its matchers, and the labels
    named in its by/on/without/ignoring/group_* clauses."""

    selectors: list[Selector] = field(default_factory=list)
    grouping_labels: set[str] = field(default_factory=set)

    @property
    def metric_names(self) -> set[str]:
        return {selector.metric for selector in self.selectors}


def promql_string(literal: str) -> str:
    """The value of a PromQL double-quoted string (Go escapes; ours use only \\\\ and \\")."""
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


def read_promql(expr: str) -> Query:
    query = Query()

    def selector(match: re.Match[str]) -> str:
        matchers = {
            label: (operator, promql_string(value))
            for label, operator, value in _MATCHER.findall(match[2])
        }
        query.selectors.append(Selector(match[1] or "", matchers))
        return " "

    text = _SELECTOR.sub(selector, expr)
    text = _STRING.sub('""', text)
    text = _RANGE.sub(" ", text)
    for match in _GROUPING.finditer(text):
        query.grouping_labels |= {label.strip() for label in match[2].split(",") if label.strip()}
    text = _GROUPING.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    for match in _IDENTIFIER.finditer(text):
        is_function = text[match.end() :].lstrip().startswith("(")
        if not is_function and match[0] not in _KEYWORDS:
            query.selectors.append(Selector(match[0], {}))
    return query


STORED = stored_series()
KNOWN_SERIES = set(STORED)
RUNNER_SERIES = {name for metric in RUNNER_METRICS for name in metric.series_names()}
# label_replace in the pause pod alert copies the Deployment's runner label into `runner`.
JOIN_LABELS = {"runner"}


def labels_of(series: str) -> frozenset[str]:
    """Every label a stored series can have: the exporter's as the scrape stores them, and the
    scrape's own target labels."""
    return STORED[series][1]


def unknown_names_and_labels(expr: str) -> list[str]:
    """Metric names and labels an expression uses that no scraped series has."""
    query = read_promql(expr)
    problems = [f"unknown metric {name}" for name in query.metric_names - KNOWN_SERIES]
    available = set(JOIN_LABELS)
    for selector in query.selectors:
        if selector.metric in KNOWN_SERIES:
            available |= labels_of(selector.metric)
            problems += [
                f"{selector.metric} has no label {label}"
                for label in set(selector.matchers) - labels_of(selector.metric)
            ]
    problems += [f"no series has label {label}" for label in query.grouping_labels - available]
    return problems


def rules(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in spec["groups"] for rule in group["rules"]]


def rule_group(spec: dict[str, Any], name: str) -> list[dict[str, Any]]:
    (group,) = [group for group in spec["groups"] if group["name"] == name]
    rules: list[dict[str, Any]] = group["rules"]
    return rules


def rule_of(spec: dict[str, Any], alert: str) -> dict[str, Any]:
    return next(rule for rule in rules(spec) if rule["alert"] == alert)


def test_the_promql_reader_finds_names_matchers_labels_and_skips_functions_and_strings():
    query = read_promql(
        'sum by (pool, le) (rate(gitlab_runner_job_queue_duration_seconds_bucket{pool=~"a|b\\\\.c"}[5m])) '
        '> 1e3 and on (pool) absent(up{job="x"}) or vector(1) or label_replace(up, "a", "$1", "b", "(.+)")'
    )
    assert [(s.metric, s.matchers) for s in query.selectors] == [
        ("gitlab_runner_job_queue_duration_seconds_bucket", {"pool": ("=~", "a|b\\.c")}),
        ("up", {"job": ("=", "x")}),
        ("up", {}),
    ]
    assert query.grouping_labels == {"pool", "le"}
    assert unknown_names_and_labels('gitlab_runner_jobs{state="x"}') == []
    assert unknown_names_and_labels('gitlab_runner_job{state="x"}') == [
        "unknown metric gitlab_runner_job"
    ]
    assert unknown_names_and_labels("sum by (reason) (gitlab_runner_jobs)") == [
        "no series has label reason"
    ]


def test_the_scrape_renames_the_runners_endpoint_label_and_the_monitor_gives_it_a_clear_name():
    # network/api_requests_collector.go exports `endpoint`; the operator's target label
    # `endpoint` (pkg/prometheus/promcfg.go) wins without honorLabels (scrape/scrape.go).
    stored = labels_of("gitlab_runner_api_request_statuses_total")
    assert "endpoint" in stored  # the target's port name, "metrics"
    assert API_ENDPOINT in stored
    assert "exported_endpoint" not in stored
    assert RUNNER_SCRAPE.honor_labels is False
    assert RUNNER_SCRAPE.stored_labels(("endpoint",)) == RUNNER_SCRAPE.stored_labels(()) | {
        API_ENDPOINT
    }


def test_every_alert_reads_only_metrics_and_labels_the_scrape_stores():
    spec = full_spec()
    assert alert_names(spec) == EVERY_ALERT
    for rule in rules(spec):
        assert unknown_names_and_labels(rule["expr"]) == [], rule["alert"]


def test_the_api_alert_splits_by_the_api_endpoint_and_knows_a_rejected_token():
    expr = rule_of(full_spec(), "GitlabRunnerApiRequestErrors")["expr"]
    assert f"sum by (pool, {API_ENDPOINT})" in expr
    rejected = [
        s for s in read_promql(expr).selectors if s.matchers.get("status") == ("=~", "401|403")
    ]
    assert rejected
    assert all(s.matchers[API_ENDPOINT] == ("=", "request_job") for s in rejected)
    assert "by (pool, endpoint)" not in expr


def pools_read(expr: str) -> dict[str, set[str]]:
    """The pools each runner series of an expression is read for."""
    pools: dict[str, set[str]] = {}
    for selector in read_promql(expr).selectors:
        if selector.metric in RUNNER_SERIES:
            operator, value = selector.matchers[POOL]
            names = (
                {value}
                if operator == "="
                else {re.sub(r"\\(.)", r"\1", v) for v in value.split("|")}
            )
            pools.setdefault(selector.metric, set()).update(names)
    return pools


def test_every_runner_series_is_read_for_the_pools_whose_facts_produce_it():
    spec = full_spec()
    every = {"default", "arm64", "large-memory"}
    for rule in rules(spec):
        for metric, pools in pools_read(rule["expr"]).items():
            if rule["alert"] in (
                "GitlabRunnerQueuingThresholdExceeded",
                "GitlabRunnerNoJobsPickedUp",
                "GitlabRunnerPausePodReconcileErrors",
                "GitlabRunnerPausePodsUnavailable",
            ):
                assert pools == {"default"}, (rule["alert"], metric)
            else:
                assert pools == every, (rule["alert"], metric)


def test_pools_without_warm_capacity_queuing_thresholds_or_hours_get_none_of_those_alerts():
    plain: list[MonitoredPool] = [{"name": "office", "job_namespace": "ci-jobs-rootless"}]
    spec = prometheus_rule_spec(plain)
    assert [group["name"] for group in spec["groups"]] == [RULE_GROUP, AUTOSCALER_RULE_GROUP]
    assert alert_names(spec) == [
        "GitlabRunnerJobsQueuedTooLong",
        "GitlabRunnerConcurrencySaturated",
        "GitlabRunnerJobFailureRateHigh",
        "GitlabRunnerManagerAbsent",
        "GitlabRunnerApiRequestErrors",
        "GitlabRunnerErrorsLogged",
        "ClusterAutoscalerNodeGroupBackedOff",
        "ClusterAutoscalerScaleUpsFailing",
    ]


def test_fixed_nodes_get_no_autoscaler_alerts_and_a_cache_volume_gets_its_own():
    static: list[MonitoredPool] = [
        {"name": "basement", "job_namespace": "gitlab-runner-jobs-dind", "scaler": NO_SCALER}
    ]
    spec = prometheus_rule_spec(static, cache_volume=CACHE_VOLUME)
    assert [group["name"] for group in spec["groups"]] == [RULE_GROUP, CACHE_RULE_GROUP]
    mixed = prometheus_rule_spec([*static, FLEET[1]])
    assert AUTOSCALER_RULE_GROUP in [group["name"] for group in mixed["groups"]]


def test_each_scaler_adds_its_group_once_from_its_own_pools():
    spec = prometheus_rule_spec(
        [
            {"name": "a", "job_namespace": "jobs", "scaler": KARPENTER},
            {"name": "b", "job_namespace": "jobs"},
            {"name": "c", "job_namespace": "jobs", "scaler": KARPENTER},
        ]
    )
    assert [group["name"] for group in spec["groups"]] == [
        RULE_GROUP,
        AUTOSCALER_RULE_GROUP,
        KARPENTER_RULE_GROUP,
    ]
    (karpenter,) = [group for group in spec["groups"] if group["name"] == KARPENTER_RULE_GROUP]
    for rule in karpenter["rules"]:
        node_pools = {
            selector.matchers[NODE_POOL][1]
            for selector in read_promql(rule["expr"]).selectors
            if selector.metric.startswith("karpenter_")
        }
        # Each pool's NodePool is named after it (components/karpenter.py node_pool_name).
        assert node_pools == {"gitlab-runner-fleet-a|gitlab-runner-fleet-c"}, rule["alert"]


def test_karpenter_alerts_name_the_pool_of_the_nodepool():
    # Karpenter's metrics carry only `nodepool` (kubernetes-sigs/karpenter pkg/metrics/
    # constants.go); label_replace gives each alert the pool its NodePool is named after.
    for rule in rule_group(full_spec(), KARPENTER_RULE_GROUP):
        assert rule["expr"].startswith("label_replace("), rule["alert"]
        assert rule["expr"].endswith('"pool", "$1", "nodepool", "gitlab-runner-fleet-(.+)")'), rule[
            "alert"
        ]
        assert "{{ $labels.pool }}" in rule["annotations"]["summary"], rule["alert"]


def test_karpenter_alerts_read_the_reasons_karpenter_gives_up_nodes_with():
    spec = full_spec()
    launch = read_promql(rule_of(spec, "KarpenterNodeLaunchesFailing")["expr"])
    register = read_promql(rule_of(spec, "KarpenterNodesNotRegistering")["expr"])
    # nodeclaim/lifecycle/launch.go (insufficient_capacity, nodeclass_not_ready) and
    # liveness.go (launch_timeout after 5 minutes, registration_timeout after 15).
    target_series = (TARGET_HEALTH, PROCESS_START)
    assert {s.matchers["reason"] for s in launch.selectors if s.metric not in target_series} == {
        ("=~", "insufficient_capacity|nodeclass_not_ready|launch_timeout")
    }
    assert {s.matchers["reason"] for s in register.selectors if s.metric not in target_series} == {
        ("=", "registration_timeout")
    }
    limit = rule_of(spec, "KarpenterNodePoolAtLimit")
    # Both controller replicas may export the NodePool gauges: one value per NodePool.
    assert "max by (nodepool, resource_type) (karpenter_nodepools_usage" in limit["expr"]
    assert "max by (nodepool, resource_type) (karpenter_nodepools_limit" in limit["expr"]
    assert limit["for"] == "15m"


def test_the_pause_pod_alerts_watch_only_warm_pools_and_their_job_namespaces():
    spec = full_spec()
    (group,) = [g for g in spec["groups"] if g["name"] == PAUSE_POD_RULE_GROUP]
    unavailable = rule_of(spec, "GitlabRunnerPausePodsUnavailable")["expr"]
    namespaces = {
        s.matchers["namespace"]
        for s in read_promql(unavailable).selectors
        if s.metric.startswith("kube_deployment")
    }
    assert namespaces == {("=", "gitlab-runner-jobs-dind")}
    assert "GitlabRunnerPausePodsBelowDesired" not in alert_names(spec)
    assert len(group["rules"]) == 2


COUNTED = re.compile(
    r"increase\((?P<selector>[a-z_:]+(\{[^}]*\})?)\[(?P<window>[^\]]+)\]\) unless "
    r"\(\((?P=selector) unless (?P=selector) offset (?P=window)\) and on \(job, instance, pod\) "
    r"\(\(up offset (?P=window) == 1\) or \(time\(\) - process_start_time_seconds < \d+\)\)\)\) or "
    r"\(\((?P=selector) unless (?P=selector) offset (?P=window)\)"
)


def test_counters_born_with_their_first_event_count_it():
    # helpers/prometheus/failures_collector.go, network/api_requests_collector.go,
    # executors/kubernetes/autoscaler/metrics.go, cluster-autoscaler metrics/metrics.go: these
    # series start at 1, so increase() alone never sees their first event.
    for rule in rules(full_spec()):
        for match in re.finditer(r"increase\(([a-z_:]+)", rule["expr"]):
            if metric_named(match[1]).born_at_first_event:
                assert COUNTED.match(rule["expr"], match.start()), (rule["alert"], match[1])


def test_the_stuck_pool_alert_reads_picked_up_jobs_inside_working_hours_only():
    expr = rule_of(full_spec(), "GitlabRunnerNoJobsPickedUp")["expr"]
    assert expr.startswith(
        '((sum by (pool) (increase(gitlab_runner_jobs_total{pool="default"}[1h]))'
        ' or 0 * group by (pool) (gitlab_runner_version_info{pool="default"})) == 0'
        ' and on (pool) group by (pool) (gitlab_runner_version_info{pool="default"} offset 1h)'
        " and on () ((day_of_week() * 1440 + hour() * 60 + minute()) >= 1860 < 2460 or "
    )
    # Monday 07:00-17:00 UTC: office hours in Berlin (06:00-16:59 UTC all year) an hour on.
    assert (1860 - 1440, 2460 - 1440) == (7 * 60, 17 * 60)
    always = prometheus_rule_spec(
        [
            {
                "name": "nightly",
                "job_namespace": "jobs",
                "expect_jobs": {"periods": ["* * * * *"], "timezone": "UTC", "within": "2h"},
            }
        ]
    )
    assert "day_of_week" not in rule_of(always, "GitlabRunnerNoJobsPickedUp")["expr"]


def test_every_runner_alert_keeps_the_pool_label_so_notifications_name_the_pool():
    for group in full_spec()["groups"]:
        if group["name"] not in (RULE_GROUP, PAUSE_POD_RULE_GROUP):
            continue
        for rule in group["rules"]:
            query = read_promql(rule["expr"])
            aggregated_by_pool = POOL in query.grouping_labels
            absent_per_pool = rule["expr"].startswith("absent(")
            assert aggregated_by_pool or absent_per_pool, rule["alert"]
            assert "{{ $labels.pool }}" in rule["annotations"]["summary"], rule["alert"]


def test_every_alert_has_a_severity_a_summary_and_a_runbook_link():
    for rule in rules(full_spec(runbook_url="https://git.example.com/o.md")):
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]
        assert rule["annotations"]["runbook_url"] == (
            f"https://git.example.com/o.md#{alert_anchor(rule['alert'])}"
        )


def runbook_sections() -> dict[str, str]:
    """docs/observability.md's sections by heading anchor (GitLab/GitHub slugs)."""
    sections: dict[str, str] = {}
    anchor = None
    for line in DOCS.read_text().splitlines():
        if heading := re.match(r"^#{2,4} (.+)$", line):
            anchor = re.sub(r"[^a-z0-9 _-]", "", heading[1].lower()).replace(" ", "-")
            sections[anchor] = ""
        elif anchor is not None:
            sections[anchor] += line + "\n"
    return sections


def test_every_alert_has_its_runbook_section_saying_what_it_means_what_to_check_and_change():
    sections = runbook_sections()
    for name in EVERY_ALERT:
        section = sections.get(alert_anchor(name))
        assert section is not None, f"docs/observability.md has no section for {name}"
        for part in ("**What it means.**", "**What to check.**", "**What to change.**"):
            assert part in section, f"{name}: runbook lacks {part}"


def test_the_runbook_sends_operators_to_the_job_namespace_for_pause_pods():
    section = runbook_sections()[alert_anchor("GitlabRunnerPausePodsUnavailable")]
    assert "kubectl get deploy -n <job namespace> -l runner.gitlab.com/pause-pod=true" in section


def test_every_link_inside_the_page_has_its_heading():
    anchors = set(runbook_sections())
    for target in re.findall(r"\]\(#([^)]+)\)", DOCS.read_text()):
        assert target in anchors, target


def test_every_threshold_is_documented_with_its_default():
    text = DOCS.read_text()
    for key in DEFAULT_THRESHOLDS:
        assert f"| `{key}` |" in text, key


def test_the_absent_alert_expects_a_manager_for_every_pool():
    absent = rule_of(full_spec(), "GitlabRunnerManagerAbsent")
    assert absent["expr"] == (
        'absent(gitlab_runner_version_info{pool="default"}) '
        'or absent(gitlab_runner_version_info{pool="arm64"}) '
        'or absent(gitlab_runner_version_info{pool="large-memory"})'
    )
    assert absent["labels"]["severity"] == "critical"


def test_thresholds_and_windows_reach_the_expressions_and_durations():
    spec = full_spec(
        {
            "queue_wait_p95_seconds": 120,
            "saturation_ratio": 0.75,
            "manager_absent_for": "2m",
            "node_group_backoff_for": "1h30m",
            "failure_ratio": 0.2,
            "failure_min_jobs": 50,
            "rate_window": "5m",
            "event_window": "20m",
            "cache_volume_free_ratio": 0.2,
        }
    )
    assert rule_of(spec, "GitlabRunnerJobsQueuedTooLong")["expr"].endswith("[5m]))) > 120")
    assert rule_of(spec, "GitlabRunnerConcurrencySaturated")["expr"].endswith(">= 0.75")
    assert rule_of(spec, "GitlabRunnerManagerAbsent")["for"] == "2m"
    assert rule_of(spec, "ClusterAutoscalerNodeGroupBackedOff")["for"] == "1h30m"
    failure = rule_of(spec, "GitlabRunnerJobFailureRateHigh")["expr"]
    assert "> 0.2 and on (pool)" in failure
    assert failure.endswith(">= 50")
    assert "offset 20m" in rule_of(spec, "ClusterAutoscalerScaleUpsFailing")["expr"]
    assert rule_of(spec, "RunnerCacheVolumeNearlyFull")["expr"].endswith("< 0.2")


def test_ignored_failure_reasons_are_left_out_of_the_failure_ratio():
    default = rule_of(full_spec(), "GitlabRunnerJobFailureRateHigh")["expr"]
    assert 'failure_reason!~"script_failure|job_canceled"' in default
    counting_all = rule_of(
        full_spec({"ignored_failure_reasons": []}), "GitlabRunnerJobFailureRateHigh"
    )["expr"]
    assert "gitlab_runner_failed_jobs_total{pool=~" in counting_all
    assert "failure_reason!~" not in counting_all


def test_the_node_group_regex_is_quoted_as_a_promql_string():
    spec = full_spec(node_group_regex='eks-build-.*"x\\')
    expr = rule_of(spec, "ClusterAutoscalerNodeGroupBackedOff")["expr"]
    assert '{node_group=~"eks-build-.*\\"x\\\\"}' in expr


@pytest.mark.parametrize(
    ("thresholds", "problem"),
    [
        ({"queue_wait_for": "15 minutes"}, "queue_wait_for must be a Prometheus duration"),
        ({"saturation_for": ""}, "saturation_for must be a Prometheus duration"),
        ({"event_window": "0"}, "event_window must be a Prometheus duration"),
        ({"saturation_ratio": 1.5}, "saturation_ratio must be a ratio above 0 and at most 1"),
        ({"api_error_ratio": 0}, "api_error_ratio must be a ratio above 0 and at most 1"),
        ({"failure_min_jobs": -1}, "failure_min_jobs must be at least 0"),
        ({"failed_scale_ups": "many"}, "failed_scale_ups must be a number"),
        ({"queue_wait_p95_seconds": True}, "queue_wait_p95_seconds must be a number"),
        ({"ignored_failure_reasons": ["flaky"]}, "ignored_failure_reasons: unknown ['flaky']"),
        ({"ignored_failure_reasons": "script_failure"}, "ignored_failure_reasons must be a list"),
        ({"queue_p95": 3}, "unknown threshold 'queue_p95'"),
        (
            {"pause_pods_below_desired_for": "5m"},
            "threshold 'pause_pods_below_desired_for' is now 'pause_pods_unavailable_for'",
        ),
    ],
)
def test_invalid_thresholds_are_refused_with_their_name(thresholds, problem):
    problems = threshold_problems(thresholds)
    assert len(problems) == 1
    assert problems[0].startswith(problem)
    with pytest.raises(ValueError, match=re.escape(problem)):
        prometheus_rule_spec(FLEET, thresholds)


@pytest.mark.parametrize(
    ("pools", "problem"),
    [
        ([], "pools: at least one pool is needed"),
        ([FLEET[1], FLEET[1]], "pools: names must be unique"),
        ([{"name": "Not a label!", "job_namespace": "jobs"}], "pool 'Not a label!' must be"),
        ([{"name": "a", "job_namespace": "Jobs"}], "pool 'a': job_namespace 'Jobs' must be"),
        (
            [{"name": "a", "job_namespace": "jobs", "scaler": "fargate"}],
            "pool 'a': scaler must be one of cluster-autoscaler, karpenter, none, got 'fargate'",
        ),
        (
            [
                {
                    "name": "a",
                    "job_namespace": "jobs",
                    "expect_jobs": {"periods": ["* 7 * * *"], "timezone": "UTC", "within": "2h"},
                }
            ],
            "pool 'a': expect_jobs: within (2h) is longer than every stretch of working hours",
        ),
        (
            [
                {
                    "name": "a",
                    "job_namespace": "jobs",
                    "expect_jobs": {"periods": ["* 7 * * *"], "timezone": "UTC", "within": "1 h"},
                }
            ],
            "pool 'a': expect_jobs: within must be a Prometheus duration such as 1h",
        ),
    ],
)
def test_invalid_pools_are_refused_with_their_name(pools, problem):
    assert any(p.startswith(problem) for p in pool_problems(pools, YEARS)), pool_problems(pools)
    with pytest.raises(ValueError, match=re.escape(problem)):
        prometheus_rule_spec(pools, years=YEARS)


def test_the_defaults_are_valid():
    assert threshold_problems(DEFAULT_THRESHOLDS) == []
    assert pool_problems(FLEET, YEARS) == []
