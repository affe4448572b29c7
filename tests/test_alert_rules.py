"""The PrometheusRule spec: real metric names and labels only, thresholds, runbook sections.

promtool checks and unit-tests the same groups in tests/integration/test_promtool.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from components.workloads.alert_rules import (
    DEFAULT_THRESHOLDS,
    AlertThresholds,
    alert_anchor,
    alert_names,
    prometheus_rule_spec,
    threshold_problems,
)
from components.workloads.runner_metrics import (
    CLUSTER_AUTOSCALER_METRICS,
    KUBE_STATE_METRICS,
    POOL,
    RUNNER_METRICS,
    SCRAPE_TARGET_LABELS,
    Metric,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "observability.md"
POOLS = ["default", "arm64", "large-memory"]

# --- A small PromQL reader: enough to list the selectors and grouping labels of an expression.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_NUMBER = re.compile(r"(?<![a-zA-Z_:])\d+(\.\d+)?([eE][-+]?\d+)?")
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}


@dataclass
class Query:
    """What a PromQL expression reads: each series selector with its matcher labels, and the
    labels named in its by/on/without/ignoring/group_* clauses."""

    selectors: list[tuple[str, set[str]]] = field(default_factory=list)
    grouping_labels: set[str] = field(default_factory=set)

    @property
    def metric_names(self) -> set[str]:
        return {name for name, _ in self.selectors}


def read_promql(expr: str) -> Query:
    query = Query()
    text = _STRING.sub('""', expr)
    text = _RANGE.sub(" ", text)
    for match in _GROUPING.finditer(text):
        query.grouping_labels |= {label.strip() for label in match[2].split(",") if label.strip()}
    text = _GROUPING.sub(" ", text)

    def selector(match: re.Match[str]) -> str:
        query.selectors.append((match[1] or "", set(_MATCHER_LABEL.findall(match[2]))))
        return " "

    text = _SELECTOR.sub(selector, text)
    text = _NUMBER.sub(" ", text)
    for match in _IDENTIFIER.finditer(text):
        is_function = text[match.end() :].lstrip().startswith("(")
        if not is_function and match[0] not in _KEYWORDS:
            query.selectors.append((match[0], set()))
    return query


KNOWN_SERIES: dict[str, Metric] = {
    series: metric
    for metric in (*RUNNER_METRICS, *CLUSTER_AUTOSCALER_METRICS, *KUBE_STATE_METRICS)
    for series in metric.series_names()
}


def labels_of(series: str) -> set[str]:
    """Every label a scraped series can have: the exporter's, the scrape's, and `pool` on the
    runner's (the PodMonitor adds it)."""
    metric = KNOWN_SERIES[series]
    pool = {POOL} if metric in RUNNER_METRICS else set()
    return set(metric.series_labels(series)) | set(SCRAPE_TARGET_LABELS) | pool


def unknown_names_and_labels(expr: str) -> list[str]:
    """Metric names and labels an expression uses that no exporter gives it."""
    query = read_promql(expr)
    problems = [f"unknown metric {name}" for name in query.metric_names - set(KNOWN_SERIES)]
    available: set[str] = set()
    for name, matcher_labels in query.selectors:
        if name in KNOWN_SERIES:
            available |= labels_of(name)
            problems += [
                f"{name} has no label {label}" for label in matcher_labels - labels_of(name)
            ]
    problems += [f"no series has label {label}" for label in query.grouping_labels - available]
    return problems


def rules(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in spec["groups"] for rule in group["rules"]]


def test_the_promql_reader_finds_names_labels_and_skips_functions_and_strings():
    query = read_promql(
        'sum by (pool, le) (rate(gitlab_runner_job_queue_duration_seconds_bucket{pool=~"a|b"}[5m])) '
        '> 1e3 and on (pool) absent(up{job="x"}) or vector(1)'
    )
    assert query.selectors == [
        ("gitlab_runner_job_queue_duration_seconds_bucket", {"pool"}),
        ("up", {"job"}),
    ]
    assert query.grouping_labels == {"pool", "le"}
    assert unknown_names_and_labels('gitlab_runner_jobs{state="x"}') == []
    assert unknown_names_and_labels('gitlab_runner_job{state="x"}') == [
        "unknown metric gitlab_runner_job"
    ]
    assert unknown_names_and_labels("sum by (reason) (gitlab_runner_jobs)") == [
        "no series has label reason"
    ]


def test_every_alert_reads_only_metrics_and_labels_the_exporters_have():
    for rule in rules(prometheus_rule_spec(POOLS)):
        assert unknown_names_and_labels(rule["expr"]) == [], rule["alert"]


def test_the_alerts_cover_what_the_fleet_must_hear_about():
    names = alert_names(prometheus_rule_spec(POOLS))
    assert names == [
        "GitlabRunnerJobsQueuedTooLong",
        "GitlabRunnerQueuingThresholdExceeded",
        "GitlabRunnerConcurrencySaturated",
        "GitlabRunnerLimitSaturated",
        "GitlabRunnerJobFailureRateHigh",
        "GitlabRunnerManagerAbsent",
        "GitlabRunnerApiRequestErrors",
        "GitlabRunnerErrorsLogged",
        "GitlabRunnerPausePodReconcileErrors",
        "GitlabRunnerPausePodsBelowDesired",
        "ClusterAutoscalerNodeGroupBackedOff",
        "ClusterAutoscalerScaleUpsFailing",
    ]
    assert len(set(names)) == len(names)


def test_every_runner_alert_keeps_the_pool_label_so_notifications_name_the_pool():
    spec = prometheus_rule_spec(POOLS)
    runner_rules = spec["groups"][0]["rules"]
    for rule in runner_rules:
        query = read_promql(rule["expr"])
        aggregated_by_pool = POOL in query.grouping_labels
        compares_whole_series = not query.grouping_labels
        absent_per_pool = rule["expr"].startswith("absent(")
        assert aggregated_by_pool or compares_whole_series or absent_per_pool, rule["alert"]
        assert "{{ $labels.pool }}" in rule["annotations"]["summary"], rule["alert"]


def test_every_alert_has_a_severity_a_summary_and_a_runbook_link():
    for rule in rules(prometheus_rule_spec(POOLS, runbook_url="https://git.example.com/o.md")):
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
    for name in alert_names(prometheus_rule_spec(POOLS)):
        section = sections.get(alert_anchor(name))
        assert section is not None, f"docs/observability.md has no section for {name}"
        for part in ("**What it means.**", "**What to check.**", "**What to change.**"):
            assert part in section, f"{name}: runbook lacks {part}"


def test_every_link_inside_the_page_has_its_heading():
    anchors = set(runbook_sections())
    for target in re.findall(r"\]\(#([^)]+)\)", DOCS.read_text()):
        assert target in anchors, target


def test_every_threshold_is_documented_with_its_default():
    text = DOCS.read_text()
    for key in DEFAULT_THRESHOLDS:
        assert f"| `{key}` |" in text, key


def test_the_absent_alert_expects_a_manager_for_every_pool():
    (absent,) = [
        r for r in rules(prometheus_rule_spec(POOLS)) if r["alert"] == "GitlabRunnerManagerAbsent"
    ]
    assert absent["expr"] == (
        'absent(gitlab_runner_version_info{pool="default"}) '
        'or absent(gitlab_runner_version_info{pool="arm64"}) '
        'or absent(gitlab_runner_version_info{pool="large-memory"})'
    )
    assert absent["labels"]["severity"] == "critical"


def expr_of(alert: str, thresholds: AlertThresholds | None = None, **kwargs: str) -> str:
    spec = prometheus_rule_spec(POOLS, thresholds, **kwargs)
    return str(next(r["expr"] for r in rules(spec) if r["alert"] == alert))


def for_of(alert: str, thresholds: AlertThresholds) -> str:
    spec = prometheus_rule_spec(POOLS, thresholds)
    return str(next(r["for"] for r in rules(spec) if r["alert"] == alert))


def test_thresholds_reach_the_expressions_and_durations():
    assert expr_of("GitlabRunnerJobsQueuedTooLong", {"queue_wait_p95_seconds": 120}).endswith(
        "> 120"
    )
    assert expr_of("GitlabRunnerConcurrencySaturated", {"saturation_ratio": 0.75}).endswith(
        ">= 0.75"
    )
    assert expr_of("GitlabRunnerLimitSaturated", {"saturation_ratio": 0.75}).endswith(">= 0.75")
    assert for_of("GitlabRunnerManagerAbsent", {"manager_absent_for": "2m"}) == "2m"
    assert (
        for_of("ClusterAutoscalerNodeGroupBackedOff", {"node_group_backoff_for": "1h30m"})
        == "1h30m"
    )
    failure = expr_of(
        "GitlabRunnerJobFailureRateHigh", {"failure_ratio": 0.2, "failure_min_jobs": 50}
    )
    assert "> 0.2 and on (pool)" in failure
    assert failure.endswith(">= 50")


def test_ignored_failure_reasons_are_left_out_of_the_failure_ratio():
    default = expr_of("GitlabRunnerJobFailureRateHigh")
    assert (
        'gitlab_runner_failed_jobs_total{failure_reason!~"script_failure|job_canceled"}' in default
    )
    counting_all = expr_of("GitlabRunnerJobFailureRateHigh", {"ignored_failure_reasons": []})
    assert "gitlab_runner_failed_jobs_total[30m]" in counting_all


def test_a_limit_of_zero_means_unlimited_and_is_never_a_denominator():
    # commands/multi.go exports each [[runners]] `limit`, 0 when unset (unlimited).
    assert "(gitlab_runner_limit > 0)" in expr_of("GitlabRunnerLimitSaturated")


def test_pause_pods_alert_only_when_fewer_than_desired():
    # executors/kubernetes/autoscaler/pause_pod_manager.go: scale-up is immediate, scale-down
    # waits for idle_time, so `current` above `desired` is the intended cooldown.
    assert expr_of("GitlabRunnerPausePodsBelowDesired") == (
        "gitlab_runner_kubernetes_autoscaler_pause_pods_desired"
        " > gitlab_runner_kubernetes_autoscaler_pause_pods_current"
    )


def test_the_node_group_regex_is_quoted_as_a_promql_string():
    expr = expr_of("ClusterAutoscalerNodeGroupBackedOff", node_group_regex='eks-build-.*"x\\')
    assert '{node_group=~"eks-build-.*\\"x\\\\"}' in expr


@pytest.mark.parametrize(
    ("thresholds", "problem"),
    [
        ({"queue_wait_for": "15 minutes"}, "queue_wait_for must be a Prometheus duration"),
        ({"saturation_for": ""}, "saturation_for must be a Prometheus duration"),
        ({"saturation_ratio": 1.5}, "saturation_ratio must be a ratio above 0 and at most 1"),
        ({"api_error_ratio": 0}, "api_error_ratio must be a ratio above 0 and at most 1"),
        ({"failure_min_jobs": -1}, "failure_min_jobs must be at least 0"),
        ({"failed_scale_ups": "many"}, "failed_scale_ups must be a number"),
        ({"queue_wait_p95_seconds": True}, "queue_wait_p95_seconds must be a number"),
        ({"ignored_failure_reasons": ["flaky"]}, "ignored_failure_reasons: unknown ['flaky']"),
        ({"ignored_failure_reasons": "script_failure"}, "ignored_failure_reasons must be a list"),
        ({"queue_p95": 3}, "unknown threshold 'queue_p95'"),
    ],
)
def test_invalid_thresholds_are_refused_with_their_name(thresholds, problem):
    problems = threshold_problems(thresholds)
    assert len(problems) == 1
    assert problems[0].startswith(problem)
    with pytest.raises(ValueError, match=re.escape(problem)):
        prometheus_rule_spec(POOLS, thresholds)


def test_the_defaults_are_valid_and_a_fleet_needs_a_pool():
    assert threshold_problems(DEFAULT_THRESHOLDS) == []
    with pytest.raises(ValueError, match="at least one pool"):
        prometheus_rule_spec([])
