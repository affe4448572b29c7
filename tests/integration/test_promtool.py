"""The alert rules under promtool.

`promtool check rules` validates the rendered groups; `promtool test rules` replays synthetic
series, labelled exactly as gitlab-runner 19.3, cluster-autoscaler, Karpenter 1.14.1,
kube-state-metrics and the kubelet export them and the Prometheus operator's scrape stores them (runner_metrics.py), through
every alert: each fires for a broken pool (or node group, reason, volume) and stays silent for
a healthy one, counters born with their first event count it, and alerts with a `for` are still
pending before it ends. `promtool check config` takes the PodMonitor's relabelings as the
operator hands them over. tests/integration/test_prometheus.py runs a real server on top.

Never skipped: promtool comes from Debian's `prometheus` package (.ci/run).
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.workloads.alert_rules import (
    ExpectJobs,
    MonitoredPool,
    VolumeClaim,
    alert_names,
    prometheus_rule_spec,
)
from components.workloads.monitoring import managers_pod_monitor_manifest
from components.workloads.runner_metrics import (
    API_ENDPOINT,
    PAUSE_DEPLOYMENT_RUNNER,
    POOL,
    POOL_META_LABEL,
    PROCESS_START,
)
from tests.integration.servers import program
from tests.test_alert_rules import KNOWN_SERIES, labels_of

# promtool starts at the Unix epoch, a Thursday at 00:00 UTC.
WORKING_HOURS: ExpectJobs = {"periods": ["* 0-11 * * thu"], "timezone": "UTC", "within": "30m"}
POOLS: list[MonitoredPool] = [
    *(
        MonitoredPool(
            name=name,
            job_namespace="gitlab-runner-jobs-dind",
            warm_capacity=True,
            queuing_thresholds=True,
            expect_jobs=WORKING_HOURS,
        )
        for name in ("default", "arm64")
    ),
    {"name": "large-memory", "job_namespace": "gitlab-runner-jobs-rootless", "scaler": "karpenter"},
]
CACHE_VOLUME: VolumeClaim = {"namespace": "runner-cache", "name": "runner-cache-data"}
SPEC = prometheus_rule_spec(POOLS, cache_volume=CACHE_VOLUME)
RULES = {rule["alert"]: rule for group in SPEC["groups"] for rule in group["rules"]}
# commands/builds_helper.go: gitlab_runner_job_queue_duration_seconds buckets.
QUEUE_BUCKETS = ("1", "3", "10", "30", "60", "120", "300", "900", "1800", "3600", "+Inf")


# --- Synthetic series, labelled as the scrape stores them -------------------------------------


def manager_target(pool: str) -> dict[str, str]:
    """The target labels of a pool's manager as the operator's PodMonitor scrape sets them:
    job `<namespace>/<PodMonitor>` (the chart names it after the release), the port's name as
    `endpoint`, and the relabelled pool."""
    return {
        "job": f"gitlab-runner/gitlab-runner-{pool}",
        "namespace": "gitlab-runner",
        "pod": f"gitlab-runner-{pool}-6b7c9d-x2k4q",
        "container": "gitlab-runner",
        "endpoint": "metrics",
        "instance": f"10.0.3.{len(pool)}:9252",
        POOL: pool,
    }


def runner_token(pool: str) -> str:
    """The runner's short token: 9 characters of its glrt- token (helpers/shorten_token.go)."""
    return f"{pool[:4]}Xy_8kQ"[:9]


def manager_labels(pool: str) -> dict[str, str]:
    """A runner series' labels: the target's and the runner's own."""
    return {
        **manager_target(pool),
        "runner": runner_token(pool),
        "runner_name": f"gitlab-runner-fleet-prod-{pool}",
        "system_id": "s_0a1b2c3d4e5f",
    }


AUTOSCALER_TARGET = {
    "job": "cluster-autoscaler",
    "namespace": "kube-system",
    "pod": "cluster-autoscaler-7f8d6c-p9zq2",
    "container": "aws-cluster-autoscaler",
    "endpoint": "http",
    "service": "cluster-autoscaler",
    "instance": "10.0.1.4:8085",
}
KARPENTER_TARGET = {
    # The karpenter chart's ServiceMonitor scrapes its Service's http-metrics port.
    "job": "karpenter",
    "namespace": "kube-system",
    "pod": "karpenter-6d5f8b9c7d-x7k2p",
    "container": "controller",
    "endpoint": "http-metrics",
    "service": "karpenter",
    "instance": "10.0.1.7:8080",
}
LARGE_MEMORY_NODE_POOL = "gitlab-runner-fleet-large-memory"
PLATFORM_NODE_POOL = "default"
"""A NodePool of the cluster's own, not a pool's: none of the fleet's alerts concern it."""


def karpenter_series(metric: str, node_pool: str, values: str, /, **labels: str) -> dict[str, str]:
    return series(metric, {**KARPENTER_TARGET, "nodepool": node_pool, **labels}, values)


KUBE_STATE_METRICS_TARGET = {
    "job": "kube-state-metrics",
    "namespace": "monitoring",
    "pod": "kube-prometheus-stack-kube-state-metrics-5d9f7-hx2lm",
    "container": "kube-state-metrics",
    "endpoint": "http",
    "service": "kube-prometheus-stack-kube-state-metrics",
    "instance": "10.0.1.9:8080",
}
KUBELET_TARGET = {
    "job": "kubelet",
    "namespace": "kube-system",
    "node": "ip-10-0-2-8.eu-west-1.compute.internal",
    "endpoint": "https-metrics",
    "service": "kube-prometheus-stack-kubelet",
    "metrics_path": "/metrics",
    "instance": "10.0.2.8:10250",
}


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    """An input series, refused unless its name and labels are ones a scrape stores."""
    assert name in KNOWN_SERIES, name
    assert set(labels) <= labels_of(name), (name, set(labels) - labels_of(name))
    rendered = ", ".join(f"{key}={json.dumps(value)}" for key, value in sorted(labels.items()))
    return {"series": f"{name}{{{rendered}}}", "values": values}


def runner_series(metric: str, pool: str, values: str, /, **labels: str) -> dict[str, str]:
    own = {k: v for k, v in manager_labels(pool).items() if k in labels_of(metric)}
    return series(metric, {**own, **labels}, values)


def up(target: dict[str, str], values: str) -> dict[str, str]:
    """Prometheus's health series of a target: 1 while its scrapes succeed."""
    return series("up", target, values)


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


def version_info(pool: str, values: str) -> dict[str, str]:
    return runner_series(
        "gitlab_runner_version_info",
        pool,
        values,
        name="gitlab-runner",
        version="19.3.0",
        revision="0c9a3f5b",
        branch="19-3-stable",
        go_version="go1.25.1",
        built_at="2026-08-18T10:11:12+0000",
        os="linux",
        architecture="amd64",
    )


def pause_deployment(pool: str) -> dict[str, str]:
    """kube-state-metrics' labels of a pool's pause Deployment (honor_labels: `namespace` is
    the Deployment's); its name is the token and system id lowercased, `_` dropped."""
    token = runner_token(pool)
    name = "runner-pause-" + re.sub("[^-a-z0-9]", "", f"{token}-s_0a1b2c3d4e5f".lower())
    return {**KUBE_STATE_METRICS_TARGET, "namespace": "gitlab-runner-jobs-dind", "deployment": name}


def pause_pods(pool: str, created: dict[str, tuple[str, int | None]]) -> list[dict[str, str]]:
    """A pool's pause Deployment and its pods as kube-state-metrics shows them: per pod (name
    suffix to phase and creation minute, None for before the test) its phase series and
    creation time; a pod created during the test has no series before it existed."""
    deployment = pause_deployment(pool)
    pods = []
    for suffix, (phase, minute) in created.items():
        labels = {
            **KUBE_STATE_METRICS_TARGET,
            "namespace": deployment["namespace"],
            # A Deployment's pod: <deployment>-<pod template hash>-<suffix>.
            "pod": f"{deployment['deployment']}-7d9f8c6b5-{suffix}",
            "uid": f"0f3c{suffix}",
        }
        before = f"_x{minute} " if minute else ""
        steps = 40 - (minute or 0)
        born = 60 * (minute or 0)
        pods += [
            series("kube_pod_status_phase", {**labels, "phase": phase}, f"{before}1x{steps}"),
            series("kube_pod_created", labels, f"{before}{born}x{steps}"),
        ]
    return [
        *pods,
        series(
            "kube_deployment_labels",
            {**deployment, PAUSE_DEPLOYMENT_RUNNER: runner_token(pool)},
            "1x40",
        ),
        runner_series(
            "gitlab_runner_kubernetes_autoscaler_pause_pods_desired", pool, f"{len(created)}x40"
        ),
    ]


def volume(
    namespace: str, claim: str, free_bytes: float, capacity_bytes: float
) -> list[dict[str, str]]:
    labels = {**KUBELET_TARGET, "namespace": namespace, "persistentvolumeclaim": claim}
    return [
        series("kubelet_volume_stats_available_bytes", labels, f"{free_bytes:g}x30"),
        series("kubelet_volume_stats_capacity_bytes", labels, f"{capacity_bytes:g}x30"),
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
    silent_at: str | None = None
    """A time nothing may fire although the broken subject already looks broken."""
    subject_label: str = POOL
    value: str | None = None
    """The `$value` the description shows, where it uses one."""

    def test_group(self) -> dict[str, Any]:
        rule = RULES[self.alert]
        checks: list[dict[str, Any]] = [
            {"eval_time": at, "alertname": self.alert, "exp_alerts": []}
            for at in (self.pending_at, self.silent_at)
            if at
        ]
        checks.append(
            {
                "eval_time": self.fires_at,
                "alertname": self.alert,
                "exp_alerts": [
                    {
                        "exp_labels": {**labels, **rule["labels"]},
                        "exp_annotations": rendered_annotations(rule, labels, self.value),
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


def rendered_annotations(
    rule: dict[str, Any], labels: dict[str, str], value: str | None
) -> dict[str, str]:
    """The annotations as Prometheus expands them for an alert with these labels."""

    def expand(text: str) -> str:
        text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m[1]], text)
        return text.replace("{{ $value }}", value or "")

    return {key: expand(value_) for key, value_ in rule["annotations"].items()}


def every_manager_up(values: str = "1x70") -> list[dict[str, str]]:
    return [up(manager_target(pool["name"]), values) for pool in POOLS]


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
            broken="default (its first job over the runner's threshold, at pick-up)",
            healthy=["arm64 (none)", "large-memory (no threshold configured)"],
            input_series=[
                *every_manager_up(),
                # builds_helper.go evaluateJobQueuingDuration: Add(0) and Inc() in one call,
                # so a first job that waited too long creates the series at 1.
                runner_series(
                    "gitlab_runner_acceptable_job_queuing_duration_exceeded_total",
                    "default",
                    "_x20 1x20",
                ),
                runner_series(
                    "gitlab_runner_acceptable_job_queuing_duration_exceeded_total",
                    "arm64",
                    "0x40",
                ),
                runner_series(
                    "gitlab_runner_acceptable_job_queuing_duration_exceeded_total",
                    "large-memory",
                    "_x20 1x20",
                ),
            ],
            silent_at="19m",
            fires_at="25m",
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
            "GitlabRunnerJobFailureRateHigh",
            broken="default (half its jobs fail with runner_system_failure, a reason new at 5m)",
            healthy=[
                "arm64 (half fail with script_failure or job_canceled, ignored)",
                "large-memory (all fail, but only 3 jobs in 30 minutes)",
            ],
            input_series=[
                *every_manager_up(),
                runner_series("gitlab_runner_jobs_total", "default", "0+2x60"),
                runner_series(
                    "gitlab_runner_failed_jobs_total",
                    "default",
                    "_x5 1+1x55",
                    failure_reason="runner_system_failure",
                    mode="traditional",
                ),
                runner_series(
                    "gitlab_runner_failed_jobs_total",
                    "default",
                    "_x5 1+1x55",
                    failure_reason="script_failure",
                    mode="traditional",
                ),
                runner_series("gitlab_runner_jobs_total", "arm64", "0+2x60"),
                runner_series(
                    "gitlab_runner_failed_jobs_total",
                    "arm64",
                    "1+0.5x60",
                    failure_reason="script_failure",
                    mode="traditional",
                ),
                runner_series(
                    "gitlab_runner_failed_jobs_total",
                    "arm64",
                    "1+0.5x60",
                    failure_reason="job_canceled",
                    mode="traditional",
                ),
                runner_series("gitlab_runner_jobs_total", "large-memory", "0+0.1x60"),
                runner_series(
                    "gitlab_runner_failed_jobs_total",
                    "large-memory",
                    "1+0.1x60",
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
            healthy=["default, large-memory (their managers report)"],
            input_series=[version_info("default", "1x20"), version_info("large-memory", "1x20")],
            pending_at="3m",
            fires_at="10m",
            expected=[{POOL: "arm64"}],
        ),
        AlertCase(
            "GitlabRunnerApiRequestErrors",
            broken="default (token rejected on request_job; update_job 500s from 20m on)",
            healthy=["arm64 (2xx, and 403 on update_job for a canceled job)"],
            input_series=[
                *every_manager_up(),
                *(
                    runner_series(
                        "gitlab_runner_api_request_statuses_total",
                        pool,
                        values,
                        **{API_ENDPOINT: endpoint},
                        status=status,
                        method=method,
                    )
                    for pool, endpoint, status, method, values in (
                        ("default", "request_job", "201", "post", "1+1x40"),
                        ("default", "request_job", "403", "post", "1+19x40"),
                        ("default", "update_job", "200", "put", "1+10x40"),
                        # A status's series appears with its first answer.
                        ("default", "update_job", "500", "put", "_x20 1+10x20"),
                        ("arm64", "request_job", "201", "post", "1+5x40"),
                        ("arm64", "request_job", "204", "post", "1+50x40"),
                        ("arm64", "update_job", "200", "put", "1+10x40"),
                        ("arm64", "update_job", "403", "put", "1+5x40"),
                    )
                ),
            ],
            pending_at="5m",
            fires_at="35m",
            expected=[
                {POOL: "default", API_ENDPOINT: "request_job"},
                {POOL: "default", API_ENDPOINT: "update_job"},
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
            # Working hours from Thursday 00:00 UTC with a 30 minute window: watched from 00:30;
            # at 00:20 the window still reaches into Wednesday night.
            "GitlabRunnerNoJobsPickedUp",
            broken="default (manager up and polling, no job all morning)",
            healthy=[
                "arm64 (a job every few minutes)",
                "large-memory (no jobs either, but no working hours)",
            ],
            input_series=[
                *(version_info(pool["name"], "1x60") for pool in POOLS),
                runner_series("gitlab_runner_jobs_total", "default", "0x60"),
                runner_series("gitlab_runner_jobs_total", "arm64", "0+0.25x60"),
                runner_series("gitlab_runner_jobs_total", "large-memory", "0x60"),
            ],
            silent_at="20m",
            fires_at="40m",
            expected=[{POOL: "default"}],
        ),
        AlertCase(
            "GitlabRunnerPausePodReconcileErrors",
            broken="default (4 failed applies, the reason's series new at 10m)",
            healthy=[
                "arm64 (7 old errors that appeared when its target came back after 12 minutes"
                " down: not new)",
            ],
            input_series=[
                up(manager_target("default"), "1x40"),
                up(manager_target("arm64"), "0x12 1x28"),
                runner_series(
                    "gitlab_runner_kubernetes_autoscaler_reconcile_errors_total",
                    "default",
                    "_x10 4x30",
                    reason="apply_state",
                ),
                runner_series(
                    "gitlab_runner_kubernetes_autoscaler_reconcile_errors_total",
                    "arm64",
                    "_x12 7x28",
                    reason="get_deployment",
                ),
            ],
            silent_at="9m",
            fires_at="20m",
            expected=[{POOL: "default", "reason": "apply_state"}],
        ),
        AlertCase(
            "GitlabRunnerPausePodsUnavailable",
            broken="default (2 pause pods Pending for 20 minutes without a node)",
            healthy=["arm64 (both Running; one Pending pod recreated 2 minutes ago)"],
            input_series=[
                *pause_pods(
                    "default",
                    {
                        "a1b2c": ("Running", None),
                        "d3e4f": ("Pending", None),
                        "g5h6j": ("Pending", None),
                        # Preempted by a job and recreated: its own clock starts again.
                        "k7m8n": ("Pending", 18),
                    },
                ),
                *pause_pods("arm64", {"p9q2r": ("Running", None), "s3t4v": ("Pending", 18)}),
            ],
            # The threshold (15m) has not passed for any pod yet.
            silent_at="10m",
            fires_at="20m",
            expected=[
                {
                    "namespace": "gitlab-runner-jobs-dind",
                    "deployment": pause_deployment("default")["deployment"],
                    "runner": runner_token("default"),
                    POOL: "default",
                }
            ],
            value="2",
        ),
        AlertCase(
            "ClusterAutoscalerNodeGroupBackedOff",
            broken="eks-build-arm64-0ac1 (no spot capacity)",
            healthy=["eks-build-default-77b2 (not backed off)"],
            input_series=[
                series(
                    "cluster_autoscaler_node_group_backoff_status",
                    {
                        **AUTOSCALER_TARGET,
                        "node_group": "eks-build-arm64-0ac1",
                        "reason": "placeholder-cannot-be-fulfilled",
                    },
                    "1x20",
                ),
                # metrics.go UpdateNodeGroupBackOffStatus: an empty reason when not backed off.
                series(
                    "cluster_autoscaler_node_group_backoff_status",
                    {**AUTOSCALER_TARGET, "node_group": "eks-build-default-77b2", "reason": ""},
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
            broken="placeholder-cannot-be-fulfilled (its first failure creates its series)",
            healthy=[
                "timeout (created at 0 by InitMetrics, no failure)",
                "cloudProviderError (failures from before the window)",
            ],
            input_series=[
                up(AUTOSCALER_TARGET, "1x40"),
                series(
                    "cluster_autoscaler_failed_scale_ups_total",
                    {**AUTOSCALER_TARGET, "reason": "placeholder-cannot-be-fulfilled"},
                    "_x18 1x20",
                ),
                series(
                    "cluster_autoscaler_failed_scale_ups_total",
                    {**AUTOSCALER_TARGET, "reason": "timeout"},
                    "0x40",
                ),
                series(
                    "cluster_autoscaler_failed_scale_ups_total",
                    {**AUTOSCALER_TARGET, "reason": "cloudProviderError"},
                    "0 4x40",
                ),
            ],
            silent_at="17m",
            fires_at="20m",
            expected=[{"reason": "placeholder-cannot-be-fulfilled"}],
            subject_label="reason",
        ),
        AlertCase(
            "KarpenterNodePoolAtLimit",
            broken="large-memory (10 of 10 nodes, 80 of 80 vCPUs)",
            healthy=["the cluster's own NodePool default (at its limit, no pool's)"],
            input_series=[
                # pkg/controllers/metrics/nodepool/controller.go: usage from status.resources,
                # limit for each key of spec.limits, cpu in cores.
                *(
                    karpenter_series(metric, LARGE_MEMORY_NODE_POOL, values, resource_type=kind)
                    for metric, kind, values in (
                        ("karpenter_nodepools_usage", "nodes", "6x5 10x25"),
                        ("karpenter_nodepools_limit", "nodes", "10x30"),
                        ("karpenter_nodepools_usage", "cpu", "48x5 80x25"),
                        ("karpenter_nodepools_limit", "cpu", "80x30"),
                        ("karpenter_nodepools_usage", "memory", "412316860416x5 687194767360x25"),
                        ("karpenter_nodepools_limit", "memory", "1374389534720x30"),
                    )
                ),
                karpenter_series(
                    "karpenter_nodepools_usage", PLATFORM_NODE_POOL, "5x30", resource_type="nodes"
                ),
                karpenter_series(
                    "karpenter_nodepools_limit", PLATFORM_NODE_POOL, "5x30", resource_type="nodes"
                ),
            ],
            pending_at="10m",
            fires_at="25m",
            expected=[
                {POOL: "large-memory", "nodepool": LARGE_MEMORY_NODE_POOL, "resource_type": kind}
                for kind in ("cpu", "nodes")
            ],
            subject_label="nodepool",
        ),
        AlertCase(
            "KarpenterNodeLaunchesFailing",
            broken="large-memory (its first insufficient_capacity, at 18m)",
            healthy=["large-memory's expired nodes and the cluster's own NodePool's failures"],
            input_series=[
                up(KARPENTER_TARGET, "1x40"),
                # pkg/controllers/nodeclaim/lifecycle/launch.go: a reason's series is created
                # with its first event, at 1.
                karpenter_series(
                    "karpenter_nodeclaims_disrupted_total",
                    LARGE_MEMORY_NODE_POOL,
                    "_x18 1x22",
                    reason="insufficient_capacity",
                    capacity_type="spot",
                ),
                karpenter_series(
                    "karpenter_nodeclaims_disrupted_total",
                    LARGE_MEMORY_NODE_POOL,
                    "_x5 1+1x35",
                    reason="expired",
                    capacity_type="spot",
                ),
                karpenter_series(
                    "karpenter_nodeclaims_disrupted_total",
                    PLATFORM_NODE_POOL,
                    "_x18 1x22",
                    reason="insufficient_capacity",
                    capacity_type="spot",
                ),
            ],
            silent_at="17m",
            fires_at="20m",
            expected=[
                {
                    POOL: "large-memory",
                    "nodepool": LARGE_MEMORY_NODE_POOL,
                    "reason": "insufficient_capacity",
                }
            ],
            subject_label="nodepool",
        ),
        AlertCase(
            "KarpenterNodesNotRegistering",
            broken="large-memory (an instance that never joined, given up at 15m)",
            healthy=["the cluster's own NodePool default (its nodes, not a pool's)"],
            input_series=[
                up(KARPENTER_TARGET, "1x40"),
                # pkg/controllers/nodeclaim/lifecycle/liveness.go: registration_timeout after
                # 15 minutes without a registered node.
                karpenter_series(
                    "karpenter_nodeclaims_disrupted_total",
                    LARGE_MEMORY_NODE_POOL,
                    "_x15 1x25",
                    reason="registration_timeout",
                    capacity_type="spot",
                ),
                karpenter_series(
                    "karpenter_nodeclaims_disrupted_total",
                    PLATFORM_NODE_POOL,
                    "_x15 1x25",
                    reason="registration_timeout",
                    capacity_type="on-demand",
                ),
            ],
            silent_at="14m",
            fires_at="16m",
            expected=[
                {
                    POOL: "large-memory",
                    "nodepool": LARGE_MEMORY_NODE_POOL,
                    "reason": "registration_timeout",
                }
            ],
            subject_label="nodepool",
        ),
        AlertCase(
            "RunnerCacheVolumeNearlyFull",
            broken="runner-cache/runner-cache-data (5% free)",
            healthy=["registry-mirror/registry-data (1% free, not the cache's)"],
            input_series=[
                *volume("runner-cache", "runner-cache-data", 5e9, 100e9),
                *volume("registry-mirror", "registry-data", 1e9, 100e9),
            ],
            pending_at="5m",
            fires_at="15m",
            expected=[
                {
                    **KUBELET_TARGET,
                    "namespace": "runner-cache",
                    "persistentvolumeclaim": "runner-cache-data",
                }
            ],
            subject_label="persistentvolumeclaim",
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
def rule_files(tmp_path: Path) -> tuple[Path, list[Path]]:
    """The whole rule file, and per alert a test file with a rule file holding only that
    alert: promtool evaluates every rule of its rule files in every test group."""
    rules = tmp_path / "fleet-rules.yaml"
    rules.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    tests = []
    for case in cases():
        alert_rules = tmp_path / f"{case.alert}-rules.yaml"
        group = {"name": case.alert, "rules": [RULES[case.alert]]}
        alert_rules.write_text(yaml.safe_dump({"groups": [group]}, sort_keys=False))
        test = tmp_path / f"{case.alert}-test.yaml"
        test.write_text(
            yaml.safe_dump(
                {
                    "rule_files": [alert_rules.name],
                    "evaluation_interval": "1m",
                    "tests": [case.test_group()],
                },
                sort_keys=False,
            )
        )
        tests.append(test)
    return rules, tests


def test_promtool_checks_the_rules(rule_files: tuple[Path, list[Path]]):
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


def test_promtool_unit_tests_every_alert(rule_files: tuple[Path, list[Path]]):
    rules, tests = rule_files
    result = subprocess.run(
        [program("promtool"), "test", "rules", *(test.name for test in tests)],
        capture_output=True,
        text=True,
        check=False,
        cwd=rules.parent,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(tests), result.stdout


# --- The PodMonitor's relabelings as Prometheus receives them ---------------------------------


def prometheus_relabel_config(relabeling: dict[str, Any]) -> dict[str, Any]:
    """A PodMonitor relabeling as the operator writes it into Prometheus's configuration
    (prometheus-operator v0.93.0 pkg/prometheus/promcfg.go generateRelabelConfig)."""
    names = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    config = {names.get(key, key): value for key, value in relabeling.items()}
    if "action" in config:
        config["action"] = config["action"].lower()
    return config


def test_promtool_accepts_the_pod_monitor_relabelings_as_the_operator_writes_them(tmp_path: Path):
    (pod_monitor,) = managers_pod_monitor_manifest("monitoring", {}, "gitlab-runner")["spec"][
        "podMetricsEndpoints"
    ]
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
                "relabel_configs": [
                    prometheus_relabel_config(r) for r in pod_monitor["relabelings"]
                ],
                "metric_relabel_configs": [
                    prometheus_relabel_config(r) for r in pod_monitor["metricRelabelings"]
                ],
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


def alert_rule(spec: dict[str, Any], alert: str) -> dict[str, Any]:
    """The rule of `alert` in a PrometheusRule spec."""
    return next(
        rule for group in spec["groups"] for rule in group["rules"] if rule.get("alert") == alert
    )


def assert_promtool_passes(tmp_path: Path, rule: dict[str, Any], tests: dict[str, Any]) -> None:
    """promtool's unit tests `tests` (its test file, which names `rules.yaml`) of `rule`
    alone, in `tmp_path`."""
    (tmp_path / "rules.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "one", "rules": [rule]}]}, sort_keys=False)
    )
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run(
        [program("promtool"), "test", "rules", "test.yaml"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_newly_discovered_targets_old_counters_are_no_new_events(tmp_path: Path):
    """A counter seen for the first time is counted whole only where its absence before was
    real: its target was scraped successfully a window ago, or its process started since. A
    target Prometheus only now discovers (resharding, a fixed monitor selector) brings its
    whole history and must not fire; a restarted process's first failure must (found in
    review: both exporters register the process collector, commands/multi.go and
    k8s component-base legacyregistry)."""
    rule = RULES["ClusterAutoscalerScaleUpsFailing"]
    discovered = {
        **AUTOSCALER_TARGET,
        "pod": "cluster-autoscaler-5d4c3-x8k2m",
        "instance": "10.0.1.9:8085",
    }
    restarted = {
        **AUTOSCALER_TARGET,
        "pod": "cluster-autoscaler-9a8b7-c6d5e",
        "instance": "10.0.1.7:8085",
    }
    reason = {"reason": "placeholder-cannot-be-fulfilled"}
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": "old counters of a newly discovered target, and a restart's first failure",
                "interval": "1m",
                "input_series": [
                    up(AUTOSCALER_TARGET, "1x40"),
                    up(discovered, "_x20 1x20"),
                    # Running since before the window (the test clock starts at 0).
                    series(PROCESS_START, discovered, "_x20 0x20"),
                    series(
                        "cluster_autoscaler_failed_scale_ups_total",
                        {**discovered, "reason": "timeout"},
                        "_x20 7x20",
                    ),
                    up(restarted, "_x20 1x20"),
                    # Started at minute 19 of the test clock (time() is seconds since 0).
                    series(PROCESS_START, restarted, "_x20 1140x20"),
                    series(
                        "cluster_autoscaler_failed_scale_ups_total",
                        {**restarted, **reason},
                        "_x22 1x18",
                    ),
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "25m",
                        "alertname": rule["alert"],
                        "exp_alerts": [
                            {
                                "exp_labels": {**reason, **rule["labels"]},
                                "exp_annotations": rendered_annotations(rule, reason, None),
                            }
                        ],
                    }
                ],
            }
        ],
    }
    assert_promtool_passes(tmp_path, rule, tests)


def test_working_hours_in_a_zone_with_daylight_saving_time(tmp_path: Path):
    """`* 7-18 * * mon-fri` in Europe/Berlin is 06:00-17:59 UTC in winter and 05:00-16:59 UTC
    in summer; PromQL's clock is UTC only, so the alert watches 06:00-16:59 UTC, the minutes
    working under both offsets, from the first minute its whole window lies inside them (found
    in review: only a UTC pool had a promtool case). promtool's clock is Thursday 1970-01-01
    UTC; the rule's offsets come from the years the spec is built for."""
    berlin: ExpectJobs = {
        "periods": ["* 7-18 * * mon-fri"],
        "timezone": "Europe/Berlin",
        "within": "30m",
    }
    pool = MonitoredPool(
        name="default", job_namespace="gitlab-runner-jobs-dind", expect_jobs=berlin
    )
    spec = prometheus_rule_spec([pool], years=[2026, 2027])
    rule = alert_rule(spec, "GitlabRunnerNoJobsPickedUp")
    fires = [
        {
            "exp_labels": {POOL: "default", **rule["labels"]},
            "exp_annotations": rendered_annotations(rule, {POOL: "default"}, None),
        }
    ]
    expectations = {
        # Summer's 07:45 but winter's 06:45: not working hours all year.
        "5h45m": [],
        # The window still reaches back before 06:00.
        "6h29m": [],
        "6h31m": fires,
        "16h59m": fires,
        # Summer's 19:00.
        "17h": [],
        # Winter's 18:30, working hours then, but not in summer.
        "17h30m": [],
    }
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": "no job all day in Europe/Berlin",
                "interval": "1m",
                "input_series": [
                    version_info("default", "1x1100"),
                    runner_series("gitlab_runner_jobs_total", "default", "0x1100"),
                ],
                "alert_rule_test": [
                    {"eval_time": at, "alertname": rule["alert"], "exp_alerts": alerts}
                    for at, alerts in expectations.items()
                ],
            }
        ],
    }
    assert_promtool_passes(tmp_path, rule, tests)


def test_a_pool_falling_back_to_on_demand_is_no_launch_failure(tmp_path: Path):
    """With onDemandFallback, Karpenter tries spot first and gives the NodeClaim up as
    insufficient_capacity when spot has none (karpenter-provider-aws pkg/providers/instance/
    instance.go; kubernetes-sigs/karpenter nodeclaim/lifecycle/launch.go), then launches
    on-demand: the fallback working, silent; its other failures still fire (found in review)."""
    burst = MonitoredPool(
        name="burst",
        job_namespace="gitlab-runner-jobs-dind",
        scaler="karpenter",
        on_demand_fallback=True,
    )
    spec = prometheus_rule_spec([burst])
    rule = alert_rule(spec, "KarpenterNodeLaunchesFailing")
    node_pool = "gitlab-runner-fleet-burst"
    labels = {POOL: "burst", "nodepool": node_pool, "reason": "nodeclass_not_ready"}
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": "spot exhausted, then the node class broken",
                "interval": "1m",
                "input_series": [
                    up(KARPENTER_TARGET, "1x40"),
                    karpenter_series(
                        "karpenter_nodeclaims_disrupted_total",
                        node_pool,
                        "_x5 1+1x35",
                        reason="insufficient_capacity",
                        capacity_type="spot",
                    ),
                    karpenter_series(
                        "karpenter_nodeclaims_disrupted_total",
                        node_pool,
                        "_x25 1x15",
                        reason="nodeclass_not_ready",
                        capacity_type="spot",
                    ),
                ],
                "alert_rule_test": [
                    {"eval_time": "20m", "alertname": rule["alert"], "exp_alerts": []},
                    {
                        "eval_time": "28m",
                        "alertname": rule["alert"],
                        "exp_alerts": [
                            {
                                "exp_labels": {**labels, **rule["labels"]},
                                "exp_annotations": rendered_annotations(rule, labels, None),
                            }
                        ],
                    },
                ],
            }
        ],
    }
    assert_promtool_passes(tmp_path, rule, tests)
