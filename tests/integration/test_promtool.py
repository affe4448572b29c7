"""The alert rules under the real Prometheus tools.

`promtool check rules` validates the rendered groups; `promtool test rules` replays synthetic
series, labelled exactly as gitlab-runner 19.3, cluster-autoscaler and the Prometheus operator's
scrape give them, through every alert: each fires for a broken pool (or node group, or reason)
and stays silent for a healthy one, and alerts with a `for` are still pending before it ends.
`promtool check config` takes the PodMonitor's relabeling as the operator hands it over.

Never skipped: promtool and prometheus come from Debian's `prometheus` package (.ci/run).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.workloads.alert_rules import alert_names, prometheus_rule_spec
from components.workloads.monitoring import runner_monitoring_values
from components.workloads.runner_metrics import (
    POOL,
    POOL_META_LABEL,
)
from tests.test_alert_rules import KNOWN_SERIES, labels_of

POOLS = ["default", "arm64"]
SPEC = prometheus_rule_spec(POOLS)
RULES = {rule["alert"]: rule for group in SPEC["groups"] for rule in group["rules"]}
# commands/builds_helper.go: gitlab_runner_job_queue_duration_seconds buckets.
QUEUE_BUCKETS = ("1", "3", "10", "30", "60", "120", "300", "900", "1800", "3600", "+Inf")


def program(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: install Debian's prometheus package (see .ci/run)"
    return path


# --- Synthetic series, labelled like the real ones --------------------------------------------


def manager_labels(pool: str) -> dict[str, str]:
    """A runner series' labels once scraped: the operator's target labels, the relabelled
    pool, and the runner's own (short token, name, system id)."""
    return {
        "job": f"gitlab-runner/gitlab-runner-{pool}",
        "namespace": "gitlab-runner",
        "pod": f"gitlab-runner-{pool}-6b7c9d-x2k4q",
        "container": "gitlab-runner",
        "endpoint": "metrics",
        "instance": "10.0.3.17:9252",
        POOL: pool,
        "runner": f"t1_{pool[:4]}Xy",
        "runner_name": f"{pool}-runner",
        "system_id": "s_0a1b2c3d4e5f",
    }


AUTOSCALER_LABELS = {
    "job": "cluster-autoscaler",
    "namespace": "kube-system",
    "pod": "cluster-autoscaler-7f8d6c-p9zq2",
    "container": "cluster-autoscaler",
    "endpoint": "http",
    "service": "cluster-autoscaler",
    "instance": "10.0.1.4:8085",
}


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    """An input series, refused unless its name and labels are ones the exporters produce."""
    assert name in KNOWN_SERIES, name
    assert set(labels) <= labels_of(name), (name, set(labels) - labels_of(name))
    rendered = ", ".join(f"{key}={json.dumps(value)}" for key, value in sorted(labels.items()))
    return {"series": f"{name}{{{rendered}}}", "values": values}


def runner_series(metric: str, pool: str, values: str, /, **labels: str) -> dict[str, str]:
    own = {k: v for k, v in manager_labels(pool).items() if k in labels_of(metric)}
    return series(metric, {**own, **labels}, values)


def queue_histogram(pool: str, waited_seconds: float, jobs_per_minute: int) -> list[dict[str, str]]:
    """Jobs picked up every minute, each having waited `waited_seconds` in GitLab's queue."""
    return [
        runner_series(
            "gitlab_runner_job_queue_duration_seconds_bucket",
            pool,
            f"0+{jobs_per_minute}x40" if float(le) >= waited_seconds else "0x40",
            le=le,
            project_jobs_running="1",
        )
        for le in QUEUE_BUCKETS
    ]


def job_gauges(pool: str, running: int) -> list[dict[str, str]]:
    return [
        runner_series(
            "gitlab_runner_jobs",
            pool,
            f"{running}x40",
            state="running",
            stage="step_script",
            executor_stage="prepare",
        ),
        # commands/builds_helper.go statesAndStages: an idle series of 0 per runner.
        runner_series(
            "gitlab_runner_jobs", pool, "0x40", state="idle", stage="idle", executor_stage="idle"
        ),
    ]


@dataclass
class AlertCase:
    """One alert replayed on a broken and a healthy subject."""

    alert: str
    broken: str
    healthy: list[str]
    input_series: list[dict[str, str]]
    fires_at: str
    expected: list[dict[str, str]]
    """Labels of each expected alert, without `severity` (taken from the rule)."""
    pending_at: str | None = None
    """A time the condition already holds but `for` has not passed: nothing fires yet."""
    subject_label: str = POOL

    def test_group(self) -> dict[str, Any]:
        rule = RULES[self.alert]
        checks: list[dict[str, Any]] = []
        if self.pending_at:
            checks.append({"eval_time": self.pending_at, "alertname": self.alert, "exp_alerts": []})
        checks.append(
            {
                "eval_time": self.fires_at,
                "alertname": self.alert,
                "exp_alerts": [
                    {
                        "exp_labels": {**labels, **rule["labels"]},
                        "exp_annotations": rendered_annotations(rule, labels),
                    }
                    for labels in self.expected
                ],
            }
        )
        return {
            "name": f"{self.alert} fires for {self.broken}, silent for {', '.join(self.healthy)}",
            "interval": "1m",
            "input_series": self.input_series,
            "alert_rule_test": checks,
        }


def rendered_annotations(rule: dict[str, Any], labels: dict[str, str]) -> dict[str, str]:
    """The annotations as Prometheus expands them for an alert with these labels."""

    def expand(text: str) -> str:
        return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m[1]], text)

    return {key: expand(value) for key, value in rule["annotations"].items()}


def cases() -> list[AlertCase]:
    return [
        AlertCase(
            "GitlabRunnerJobsQueuedTooLong",
            broken="default (jobs waited 10 minutes)",
            healthy=["arm64 (jobs waited 5 s)"],
            input_series=queue_histogram("default", 600, 10) + queue_histogram("arm64", 5, 10),
            pending_at="10m",
            fires_at="30m",
            expected=[{POOL: "default"}],
        ),
        AlertCase(
            "GitlabRunnerQueuingThresholdExceeded",
            broken="default (a job over the runner's threshold)",
            healthy=["arm64 (none)"],
            input_series=[
                runner_series(
                    "gitlab_runner_acceptable_job_queuing_duration_exceeded_total",
                    "default",
                    "0x10 1x30",
                ),
                runner_series(
                    "gitlab_runner_acceptable_job_queuing_duration_exceeded_total", "arm64", "0x40"
                ),
            ],
            fires_at="15m",
            expected=[{POOL: "default"}],
        ),
        AlertCase(
            "GitlabRunnerConcurrencySaturated",
            broken="default (10 of 10 jobs)",
            healthy=["arm64 (8 of 10 jobs)"],
            input_series=[
                *job_gauges("default", 10),
                runner_series("gitlab_runner_concurrent", "default", "10x40"),
                *job_gauges("arm64", 8),
                runner_series("gitlab_runner_concurrent", "arm64", "10x40"),
            ],
            pending_at="10m",
            fires_at="20m",
            expected=[{POOL: "default"}],
        ),
        AlertCase(
            "GitlabRunnerLimitSaturated",
            broken="default (4 jobs, limit 4)",
            healthy=["arm64 (25 jobs, limit 0: unlimited)", "large-memory (5 jobs, limit 10)"],
            input_series=[
                *job_gauges("default", 4),
                runner_series("gitlab_runner_limit", "default", "4x40"),
                *job_gauges("arm64", 25),
                runner_series("gitlab_runner_limit", "arm64", "0x40"),
                *job_gauges("large-memory", 5),
                runner_series("gitlab_runner_limit", "large-memory", "10x40"),
            ],
            pending_at="10m",
            fires_at="20m",
            expected=[{POOL: "default", "runner": manager_labels("default")["runner"]}],
        ),
        AlertCase(
            "GitlabRunnerJobFailureRateHigh",
            broken="default (half its jobs fail with runner_system_failure)",
            healthy=[
                "arm64 (half fail with script_failure or job_canceled, ignored)",
                "large-memory (all fail, but only 3 jobs in 30 minutes)",
            ],
            input_series=[
                runner_series("gitlab_runner_jobs_total", "default", "0+2x60"),
                runner_series(
                    "gitlab_runner_failed_jobs_total",
                    "default",
                    "0+1x60",
                    failure_reason="runner_system_failure",
                    mode="traditional",
                ),
                runner_series(
                    "gitlab_runner_failed_jobs_total",
                    "default",
                    "0+1x60",
                    failure_reason="script_failure",
                    mode="traditional",
                ),
                runner_series("gitlab_runner_jobs_total", "arm64", "0+2x60"),
                runner_series(
                    "gitlab_runner_failed_jobs_total",
                    "arm64",
                    "0+0.5x60",
                    failure_reason="script_failure",
                    mode="traditional",
                ),
                runner_series(
                    "gitlab_runner_failed_jobs_total",
                    "arm64",
                    "0+0.5x60",
                    failure_reason="job_canceled",
                    mode="traditional",
                ),
                runner_series("gitlab_runner_jobs_total", "large-memory", "0+0.1x60"),
                runner_series(
                    "gitlab_runner_failed_jobs_total",
                    "large-memory",
                    "0+0.1x60",
                    failure_reason="runner_system_failure",
                    mode="traditional",
                ),
            ],
            pending_at="10m",
            fires_at="50m",
            expected=[{POOL: "default", "failure_reason": "runner_system_failure"}],
        ),
        AlertCase(
            "GitlabRunnerManagerAbsent",
            broken="arm64 (no manager scraped)",
            healthy=["default (its manager reports)"],
            input_series=[
                runner_series(
                    "gitlab_runner_version_info",
                    "default",
                    "1x20",
                    name="gitlab-runner",
                    version="19.3.0",
                    revision="0c9a3f5b",
                    branch="19-3-stable",
                    go_version="go1.25.1",
                    built_at="2026-08-18T10:11:12+0000",
                    os="linux",
                    architecture="amd64",
                )
            ],
            pending_at="3m",
            fires_at="10m",
            expected=[{POOL: "arm64"}],
        ),
        AlertCase(
            "GitlabRunnerApiRequestErrors",
            broken="default (token rejected on request_job, 5xx on update_job)",
            healthy=["arm64 (2xx, and 403 on update_job for a canceled job)"],
            input_series=[
                *(
                    runner_series(
                        "gitlab_runner_api_request_statuses_total",
                        pool,
                        values,
                        endpoint=endpoint,
                        status=status,
                        method=method,
                    )
                    for pool, endpoint, status, method, values in (
                        ("default", "request_job", "201", "post", "0+1x40"),
                        ("default", "request_job", "403", "post", "0+19x40"),
                        ("default", "update_job", "200", "put", "0+10x40"),
                        ("default", "update_job", "500", "put", "0+10x40"),
                        ("arm64", "request_job", "201", "post", "0+5x40"),
                        ("arm64", "request_job", "204", "post", "0+50x40"),
                        ("arm64", "update_job", "200", "put", "0+10x40"),
                        ("arm64", "update_job", "403", "put", "0+5x40"),
                    )
                )
            ],
            pending_at="5m",
            fires_at="25m",
            expected=[
                {POOL: "default", "endpoint": "request_job"},
                {POOL: "default", "endpoint": "update_job"},
            ],
        ),
        AlertCase(
            "GitlabRunnerErrorsLogged",
            broken="default (5 error lines a minute)",
            healthy=["arm64 (warnings, and an error every other minute)"],
            input_series=[
                runner_series("gitlab_runner_errors_total", "default", "0+5x40", level="error"),
                runner_series("gitlab_runner_errors_total", "default", "0x40", level="fatal"),
                runner_series("gitlab_runner_errors_total", "arm64", "0+30x40", level="warning"),
                runner_series("gitlab_runner_errors_total", "arm64", "0+0.5x40", level="error"),
            ],
            pending_at="10m",
            fires_at="30m",
            expected=[{POOL: "default"}],
        ),
        AlertCase(
            "GitlabRunnerPausePodReconcileErrors",
            broken="default (every reconcile fails to apply)",
            healthy=["arm64 (one failed read, long ago)"],
            input_series=[
                runner_series(
                    "gitlab_runner_kubernetes_autoscaler_reconcile_errors_total",
                    "default",
                    "0+1x30",
                    reason="apply_state",
                ),
                runner_series(
                    "gitlab_runner_kubernetes_autoscaler_reconcile_errors_total",
                    "arm64",
                    "0x5 1x25",
                    reason="get_deployment",
                ),
            ],
            fires_at="20m",
            expected=[{POOL: "default", "reason": "apply_state"}],
        ),
        AlertCase(
            "GitlabRunnerPausePodsBelowDesired",
            broken="default (wants 3, has 1)",
            healthy=["arm64 (wants 1, keeps 3 during idle_time)"],
            input_series=[
                runner_series(
                    "gitlab_runner_kubernetes_autoscaler_pause_pods_desired", "default", "3x30"
                ),
                runner_series(
                    "gitlab_runner_kubernetes_autoscaler_pause_pods_current", "default", "1x30"
                ),
                runner_series(
                    "gitlab_runner_kubernetes_autoscaler_pause_pods_desired", "arm64", "1x30"
                ),
                runner_series(
                    "gitlab_runner_kubernetes_autoscaler_pause_pods_current", "arm64", "3x30"
                ),
            ],
            pending_at="10m",
            fires_at="20m",
            # A plain comparison keeps every label of the series but its name.
            expected=[manager_labels("default")],
        ),
        AlertCase(
            "ClusterAutoscalerNodeGroupBackedOff",
            broken="eks-build-arm64-0ac1 (no spot capacity)",
            healthy=["eks-build-default-77b2 (not backed off)"],
            input_series=[
                series(
                    "cluster_autoscaler_node_group_backoff_status",
                    {
                        **AUTOSCALER_LABELS,
                        "node_group": "eks-build-arm64-0ac1",
                        "reason": "placeholder-cannot-be-fulfilled",
                    },
                    "1x20",
                ),
                series(
                    "cluster_autoscaler_node_group_backoff_status",
                    {**AUTOSCALER_LABELS, "node_group": "eks-build-default-77b2"},
                    "0x20",
                ),
            ],
            pending_at="2m",
            fires_at="10m",
            expected=[
                {"node_group": "eks-build-arm64-0ac1", "reason": "placeholder-cannot-be-fulfilled"}
            ],
            subject_label="node_group",
        ),
        AlertCase(
            "ClusterAutoscalerScaleUpsFailing",
            broken="placeholder-cannot-be-fulfilled (two failures)",
            healthy=["timeout (failures from before the window)"],
            input_series=[
                series(
                    "cluster_autoscaler_failed_scale_ups_total",
                    {**AUTOSCALER_LABELS, "reason": "placeholder-cannot-be-fulfilled"},
                    "0x5 1x5 2x10",
                ),
                series(
                    "cluster_autoscaler_failed_scale_ups_total",
                    {**AUTOSCALER_LABELS, "reason": "timeout"},
                    "4x20",
                ),
            ],
            fires_at="12m",
            expected=[{"reason": "placeholder-cannot-be-fulfilled"}],
            subject_label="reason",
        ),
    ]


def test_every_alert_has_a_case_with_a_broken_and_a_healthy_subject():
    all_cases = cases()
    assert [case.alert for case in all_cases] == alert_names(SPEC)
    for case in all_cases:
        subjects = {
            value
            for entry in case.input_series
            for value in re.findall(rf'\b{case.subject_label}="([^"]*)"', entry["series"])
        }
        if case.alert == "GitlabRunnerManagerAbsent":
            subjects.add("arm64")  # broken by having no series at all
        assert len(subjects) >= 1 + len(case.healthy), case.alert
        assert all(expected[case.subject_label] in subjects for expected in case.expected)
        if RULES[case.alert]["for"] != "0m":
            assert case.pending_at, f"{case.alert}: show that `for` holds it back"


@pytest.fixture
def rule_files(tmp_path: Path) -> tuple[Path, Path]:
    rules = tmp_path / "fleet-rules.yaml"
    rules.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    tests = tmp_path / "fleet-rules-test.yaml"
    tests.write_text(
        yaml.safe_dump(
            {
                "rule_files": [rules.name],
                "evaluation_interval": "1m",
                "tests": [case.test_group() for case in cases()],
            },
            sort_keys=False,
        )
    )
    return rules, tests


def test_promtool_checks_the_rules(rule_files: tuple[Path, Path]):
    rules, _ = rule_files
    result = subprocess.run(
        [program("promtool"), "check", "rules", str(rules)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULES)} rules found" in result.stdout


def test_promtool_unit_tests_every_alert(rule_files: tuple[Path, Path]):
    _, tests = rule_files
    result = subprocess.run(
        [program("promtool"), "test", "rules", str(tests)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tests.parent,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# --- The PodMonitor's relabeling as Prometheus receives it -------------------------------------


def prometheus_relabel_config(relabeling: dict[str, Any]) -> dict[str, Any]:
    """A PodMonitor relabeling as the operator writes it into Prometheus's configuration
    (prometheus-operator v0.93.0 pkg/prometheus/promcfg.go generateRelabelConfig)."""
    names = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    config = {names.get(key, key): value for key, value in relabeling.items()}
    if "action" in config:
        config["action"] = config["action"].lower()
    return config


def test_promtool_accepts_the_pod_monitor_relabeling_as_the_operator_writes_it(tmp_path: Path):
    relabelings = runner_monitoring_values("arm64")["metrics"]["podMonitor"]["relabelings"]
    config = {
        "global": {"scrape_interval": "30s"},
        "rule_files": ["fleet-rules.yaml"],
        "scrape_configs": [
            {
                "job_name": "podMonitor/gitlab-runner/gitlab-runner-arm64/0",
                # What Kubernetes pod discovery would give the manager pod's pool label.
                "static_configs": [
                    {"targets": ["127.0.0.1:9252"], "labels": {POOL_META_LABEL: "arm64"}}
                ],
                "relabel_configs": [prometheus_relabel_config(r) for r in relabelings],
            }
        ],
    }
    (tmp_path / "fleet-rules.yaml").write_text(yaml.safe_dump(SPEC))
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [program("promtool"), "check", "config", str(config_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULES)} rules found" in result.stdout
