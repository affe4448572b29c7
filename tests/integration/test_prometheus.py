"""The alert rules on a real Prometheus server, scraping exporters as the operator's config does.

Debian's `prometheus` runs on 127.0.0.1 with the project's rule groups (the test's copy has
windows of seconds and no `for`), and scrapes small exporters this test serves, one per runner
manager plus cluster-autoscaler, Karpenter, kube-state-metrics and a kubelet. They emit the metric families
the rules read with exactly the labels their upstream code exports (runner_metrics.py), in the
text exposition format. Each pool simulates one failure; the test reads /api/v1/alerts until
every expected alert fired, then checks that no other alert did, and prints which alert fired
for which simulated failure.

Never skipped: `prometheus` comes from Debian's package (.ci/run).
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.aws.cluster_autoscaler import autoscaler_monitoring_values, instance_name
from components.aws.karpenter import METRICS_PORT_NAME as KARPENTER_METRICS_PORT
from components.aws.karpenter import NAMESPACE as KARPENTER_NAMESPACE
from components.aws.karpenter import RELEASE_NAME as KARPENTER_RELEASE
from components.aws.karpenter import karpenter_values
from components.karpenter import node_pool_name
from components.workloads.alert_rules import (
    AlertThresholds,
    ExpectJobs,
    MonitoredPool,
    VolumeClaim,
    alert_names,
    prometheus_rule_spec,
)
from components.workloads.gitlab_runner import release_name
from components.workloads.monitoring import (
    managers_pod_monitor_manifest,
    runner_monitoring_values,
)
from components.workloads.runner_config import METRICS_PORT
from components.workloads.runner_metrics import POOL, metric_named
from tests.integration.servers import free_port, program, stop

SCRAPE_SECONDS = 0.25
"""Scrape and rule evaluation interval."""
WINDOW = "2s"
"""Every window of the test's rules: a few scrapes."""
WINDOW_SECONDS = 2.0
DEADLINE_SECONDS = 20.0
"""Bound on waiting for the expected alerts (they come within ~2 s of the new series)."""
SETTLE_SECONDS = 1.0
"""How long the test keeps watching once every expected alert fired, for unexpected ones."""
MANAGER_NAMESPACE = "gitlab-runner"
JOB_NAMESPACE = "gitlab-runner-jobs-dind"
ALWAYS: ExpectJobs = {"periods": ["* * * * *"], "timezone": "UTC", "within": WINDOW}
CACHE_VOLUME: VolumeClaim = {"namespace": "runner-cache", "name": "runner-cache-data"}
NODE_GROUP_REGEX = "eks-build-nodes-.*"
TEST_THRESHOLDS: AlertThresholds = {
    "rate_window": WINDOW,
    "event_window": WINDOW,
    "failure_window": WINDOW,
    "queue_wait_for": "0s",
    "saturation_for": "0s",
    "failure_for": "0s",
    "failure_min_jobs": 1,
    "manager_absent_for": "0s",
    "api_errors_for": "0s",
    "errors_logged_for": "0s",
    # One failed reconcile must be enough: the only one is its series' first event.
    "pause_pod_reconcile_errors": 0,
    "pause_pods_unavailable_for": "0s",
    "node_group_backoff_for": "0s",
    "node_pool_at_limit_for": "0s",
    "cache_volume_for": "0s",
}


# --- Exporters --------------------------------------------------------------------------------


@dataclass
class Clock:
    """The simulated world's time: seconds since the exporters started, and since the failures
    that create new counter series began (None before)."""

    started: float = field(default_factory=time.monotonic)
    events_began: float | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def since_events(self) -> float | None:
        return None if self.events_began is None else time.monotonic() - self.events_began


Samples = list[tuple[str, dict[str, str], float]]
"""(metric family, its exported labels, value); histogram samples name their bucket series."""


def exposition(samples: Samples) -> str:
    """The text exposition format, each family once with its HELP and TYPE, labels checked
    against what the upstream exporter sets (runner_metrics.py)."""
    families: dict[str, list[str]] = {}
    for family, labels, value in samples:
        metric = metric_named(family)
        assert set(labels) == set(metric.series_labels(family)), (family, sorted(labels))
        lines = families.setdefault(
            metric.name,
            [f"# HELP {metric.name} {metric.name}", f"# TYPE {metric.name} {metric.kind}"],
        )
        rendered = ",".join(f"{key}={json.dumps(val)}" for key, val in labels.items())
        # Enough digits for Unix times (kube_pod_created); `:g` would round them by hours.
        lines.append(f"{family}{{{rendered}}} {value:.15g}")
    return "\n".join(line for lines in families.values() for line in lines) + "\n"


class Exporter:
    """One scrape target: an HTTP server on 127.0.0.1 answering /metrics."""

    def __init__(self, render: Callable[[Clock], Samples], clock: Clock) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exposition(render(clock)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                # Prometheus may stop mid-scrape.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> Exporter:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# --- The simulated fleet ----------------------------------------------------------------------


def short_token(pool: str) -> str:
    """A runner's short token: 9 characters of its glrt- token (helpers/shorten_token.go)."""
    return f"{pool[:5]}_Q8kX"[:9]


SYSTEM_ID = "r_Vb3kQ9xZ2mPa"
"""A random system id, as a manager in a container without machine-id gets (system_id_state.go)."""


def runner_labels(pool: str) -> dict[str, str]:
    return {
        "runner": short_token(pool),
        "runner_name": f"gitlab-runner-fleet-dev-{pool}",
        "system_id": SYSTEM_ID,
    }


def counter(rate_per_second: float, clock: Clock) -> float:
    return float(int(clock.elapsed() * rate_per_second))


@dataclass
class Manager:
    """A runner manager of one pool: what it reports, by the failure it simulates."""

    pool: str
    jobs_per_second: float = 4.0
    queue_wait_seconds: float = 2.0
    running: int = 2
    concurrent: int = 10
    request_job_status: str = "201"
    errors_per_second: float = 0.0
    failing_reason: str | None = None
    queuing_threshold_exceeded: bool = False
    pause_pods: int = 0
    reconcile_error: bool = False

    def samples(self, clock: Clock) -> Samples:
        own = runner_labels(self.pool)
        short = {k: own[k] for k in ("runner", "system_id")}
        named = {k: own[k] for k in ("runner", "runner_name")}
        jobs = counter(self.jobs_per_second, clock)
        born = clock.since_events()
        samples: Samples = [
            (
                "gitlab_runner_version_info",
                {
                    "name": "gitlab-runner",
                    "version": "19.3.0",
                    "revision": "0c9a3f5b",
                    "branch": "19-3-stable",
                    "go_version": "go1.25.1",
                    "built_at": "2026-08-18T10:11:12+0000",
                    "os": "linux",
                    "architecture": "amd64",
                },
                1,
            ),
            ("gitlab_runner_concurrent", {}, self.concurrent),
            ("gitlab_runner_limit", own, 0),
            *(
                ("gitlab_runner_jobs", {**own, "state": s, "stage": s, "executor_stage": s}, n)
                for s, n in (("running", self.running), ("idle", 0))
            ),
            # Created at 0 by the first job request (builds_helper.go getRunnerCounter).
            ("gitlab_runner_jobs_total", own, jobs),
            *(
                ("gitlab_runner_errors_total", {"level": level}, value)
                for level, value in (
                    ("panic", 0),
                    ("fatal", 0),
                    ("error", counter(self.errors_per_second, clock)),
                    ("warning", counter(1, clock)),
                )
            ),
            *(
                (
                    "gitlab_runner_api_request_statuses_total",
                    {**short, "endpoint": endpoint, "status": status, "method": method},
                    counter(rate, clock),
                )
                for endpoint, status, method, rate in (
                    ("request_job", self.request_job_status, "post", 4),
                    ("request_job", "204", "post", 8),
                    ("update_job", "200", "put", 4),
                )
            ),
        ]
        if jobs:
            observed = {**own, "project_jobs_running": "1"}
            samples += [
                (
                    "gitlab_runner_job_queue_duration_seconds_bucket",
                    {**observed, "le": le},
                    jobs if le == "+Inf" or float(le) >= self.queue_wait_seconds else 0,
                )
                for le in ("1", "3", "10", "30", "60", "120", "300", "900", "1800", "3600", "+Inf")
            ]
            samples += [
                (
                    "gitlab_runner_job_queue_duration_seconds_sum",
                    observed,
                    jobs * self.queue_wait_seconds,
                ),
                ("gitlab_runner_job_queue_duration_seconds_count", observed, jobs),
                # Created at the first pick-up; 1 at once when that job already waited too long.
                (
                    "gitlab_runner_acceptable_job_queuing_duration_exceeded_total",
                    own,
                    1 if self.queuing_threshold_exceeded and born is not None else 0,
                ),
            ]
        if self.failing_reason and born is not None:
            samples.append(
                (
                    "gitlab_runner_failed_jobs_total",
                    {**named, "failure_reason": self.failing_reason, "mode": "traditional"},
                    1 + float(int(born * self.jobs_per_second / 2)),
                )
            )
        if self.pause_pods:
            samples += [
                ("gitlab_runner_kubernetes_autoscaler_pause_pods_desired", own, self.pause_pods),
                ("gitlab_runner_kubernetes_autoscaler_pause_pods_current", own, self.pause_pods),
            ]
        if self.reconcile_error and born is not None:
            samples.append(
                (
                    "gitlab_runner_kubernetes_autoscaler_reconcile_errors_total",
                    {**own, "reason": "apply_state"},
                    1,
                )
            )
        return samples


@dataclass(frozen=True)
class Failure:
    """One simulated failure and the alerts it must fire, by the label naming its subject."""

    description: str
    subject: tuple[str, str]
    alerts: tuple[str, ...]


MANAGERS = [
    Manager("healthy", pause_pods=2),
    Manager("slow", queue_wait_seconds=600, queuing_threshold_exceeded=True),
    Manager("full", running=10),
    Manager("failing", failing_reason="runner_system_failure"),
    Manager("rejected", jobs_per_second=0, request_job_status="403", errors_per_second=2),
    Manager("stuck", jobs_per_second=0),
    Manager("warm", pause_pods=4, reconcile_error=True),
]
POOLS: list[MonitoredPool] = [
    {
        "name": "healthy",
        "job_namespace": JOB_NAMESPACE,
        "warm_capacity": True,
        "queuing_thresholds": True,
        "expect_jobs": ALWAYS,
    },
    {
        "name": "slow",
        "job_namespace": JOB_NAMESPACE,
        "queuing_thresholds": True,
        "scaler": "karpenter",
    },
    {"name": "full", "job_namespace": JOB_NAMESPACE, "scaler": "karpenter"},
    {"name": "failing", "job_namespace": JOB_NAMESPACE, "scaler": "karpenter"},
    {"name": "rejected", "job_namespace": JOB_NAMESPACE, "scaler": "karpenter"},
    {"name": "stuck", "job_namespace": JOB_NAMESPACE, "expect_jobs": ALWAYS},
    {"name": "warm", "job_namespace": JOB_NAMESPACE, "warm_capacity": True},
    {"name": "gone", "job_namespace": JOB_NAMESPACE},
]
FAILURES = [
    Failure(
        "none: jobs picked up in seconds, 2xx answers, warm capacity available",
        (POOL, "healthy"),
        (),
    ),
    Failure(
        "jobs wait 10 minutes in GitLab's queue, the first over the runner's threshold; "
        "Karpenter's first insufficient_capacity for its NodePool",
        (POOL, "slow"),
        (
            "GitlabRunnerJobsQueuedTooLong",
            "GitlabRunnerQueuingThresholdExceeded",
            "KarpenterNodeLaunchesFailing",
        ),
    ),
    Failure(
        "10 of 10 jobs running; its NodePool at 10 of 10 nodes",
        (POOL, "full"),
        ("GitlabRunnerConcurrencySaturated", "KarpenterNodePoolAtLimit"),
    ),
    Failure(
        "half the jobs fail with runner_system_failure (a reason new since start); a node "
        "that never registered",
        (POOL, "failing"),
        ("GitlabRunnerJobFailureRateHigh", "KarpenterNodesNotRegistering"),
    ),
    Failure(
        "GitLab answers 403 to request_job (token revoked), errors logged",
        (POOL, "rejected"),
        ("GitlabRunnerApiRequestErrors", "GitlabRunnerErrorsLogged"),
    ),
    Failure(
        "manager up and polling, no job picked up", (POOL, "stuck"), ("GitlabRunnerNoJobsPickedUp",)
    ),
    Failure(
        "pause pods: 3 of 4 Pending for an hour; first failed reconcile (apply_state)",
        (POOL, "warm"),
        ("GitlabRunnerPausePodReconcileErrors", "GitlabRunnerPausePodsUnavailable"),
    ),
    Failure("no manager scraped", (POOL, "gone"), ("GitlabRunnerManagerAbsent",)),
    Failure(
        "node group backed off (placeholder-cannot-be-fulfilled)",
        ("node_group", "eks-build-nodes-warm-0ac1"),
        ("ClusterAutoscalerNodeGroupBackedOff",),
    ),
    Failure(
        "first failed scale-up with reason placeholder-cannot-be-fulfilled",
        ("reason", "placeholder-cannot-be-fulfilled"),
        ("ClusterAutoscalerScaleUpsFailing",),
    ),
    Failure(
        "edge cache volume runner-cache-data 4% free",
        ("persistentvolumeclaim", "runner-cache-data"),
        ("RunnerCacheVolumeNearlyFull",),
    ),
]


def pause_deployment(pool: str) -> str:
    """The pause Deployment's name: `runner-pause-` and the token and system id lowercased,
    every character but `a-z0-9-` dropped (executors/kubernetes/autoscaler/
    pause_pod_manager.go deploymentName, helpers/dns/utils.go MakeRFC1123Compatible)."""
    name = f"{short_token(pool)}-{SYSTEM_ID}".lower()
    return "runner-pause-" + re.sub("[^-a-z0-9]", "", name)[:63]


def kube_state_metrics(clock: Clock) -> Samples:
    samples: Samples = []
    # An hour before the exporters started: long past any Pending threshold.
    created = time.time() - 3600
    for namespace, deployment, runner, phases in (
        (JOB_NAMESPACE, pause_deployment("healthy"), short_token("healthy"), ("Running",) * 2),
        (
            JOB_NAMESPACE,
            pause_deployment("warm"),
            short_token("warm"),
            ("Running", *["Pending"] * 3),
        ),
        # Not a pause Deployment: none of the fleet's alerts concern it.
        ("registry-mirror", "registry-mirror", None, ("Pending",)),
    ):
        identity = {"namespace": namespace, "deployment": deployment}
        samples += [
            ("kube_deployment_spec_replicas", identity, len(phases)),
            ("kube_deployment_status_replicas_available", identity, phases.count("Running")),
        ]
        for index, phase in enumerate(phases):
            # A Deployment's pod: <deployment>-<pod template hash>-<suffix>.
            pod = {
                "namespace": namespace,
                "pod": f"{deployment}-6c8d9f7b4-{index}x2q7",
                "uid": f"9e1{index}",
            }
            samples += [
                ("kube_pod_status_phase", {**pod, "phase": phase}, 1),
                ("kube_pod_created", pod, created),
            ]
        if runner:
            # Needs --metric-labels-allowlist=deployments=[manager.runner.gitlab.com/id-short].
            samples.append(
                (
                    "kube_deployment_labels",
                    {**identity, "label_manager_runner_gitlab_com_id_short": runner},
                    1,
                )
            )
    return samples


def cluster_autoscaler(clock: Clock) -> Samples:
    # metrics.go InitMetrics creates these three reasons at 0.
    samples: Samples = [
        ("cluster_autoscaler_failed_scale_ups_total", {"reason": reason}, 0)
        for reason in ("cloudProviderError", "apiCallError", "timeout")
    ]
    if clock.since_events() is not None:
        samples.append(
            (
                "cluster_autoscaler_failed_scale_ups_total",
                {"reason": "placeholder-cannot-be-fulfilled"},
                1,
            )
        )
    samples += [
        (
            "cluster_autoscaler_node_group_backoff_status",
            {
                "node_group": "eks-build-nodes-warm-0ac1",
                "reason": "placeholder-cannot-be-fulfilled",
            },
            1,
        ),
        # UpdateNodeGroupBackOffStatus: a group not backed off has one series, reason "".
        (
            "cluster_autoscaler_node_group_backoff_status",
            {"node_group": "eks-build-nodes-healthy-77b2", "reason": ""},
            0,
        ),
    ]
    return samples


def karpenter(clock: Clock) -> Samples:
    """The pools' NodePools (and the cluster's own `default`, at its limit, no pool's) as
    Karpenter's controller exports them (kubernetes-sigs/karpenter
    pkg/controllers/metrics/nodepool/controller.go, pkg/metrics/metrics.go)."""
    samples: Samples = []
    for node_pool, nodes in (
        (node_pool_name("slow"), 2),
        (node_pool_name("full"), 10),
        (node_pool_name("failing"), 3),
        (node_pool_name("rejected"), 1),
        ("default", 5),
    ):
        limit = 5 if node_pool == "default" else 10
        for metric, value in (("usage", nodes), ("limit", limit)):
            labels = {"resource_type": "nodes", "nodepool": node_pool}
            samples.append((f"karpenter_nodepools_{metric}", labels, value))
    # Old disruptions that are no failure (expiry), there from the start.
    samples.append(
        (
            "karpenter_nodeclaims_disrupted_total",
            {"reason": "expired", "nodepool": node_pool_name("rejected"), "capacity_type": "spot"},
            3,
        )
    )
    if clock.since_events() is not None:
        for node_pool, reason in (
            (node_pool_name("slow"), "insufficient_capacity"),
            (node_pool_name("failing"), "registration_timeout"),
            ("default", "insufficient_capacity"),
        ):
            labels = {"reason": reason, "nodepool": node_pool, "capacity_type": "spot"}
            samples.append(("karpenter_nodeclaims_disrupted_total", labels, 1))
    return samples


def kubelet(clock: Clock) -> Samples:
    samples: Samples = []
    for namespace, claim, free in (
        ("runner-cache", "runner-cache-data", 4e9),
        # Not the cache's volume: not watched however full.
        ("registry-mirror", "registry-data", 1e9),
    ):
        identity = {"namespace": namespace, "persistentvolumeclaim": claim}
        samples += [
            ("kubelet_volume_stats_available_bytes", identity, free),
            ("kubelet_volume_stats_capacity_bytes", identity, 100e9),
        ]
    return samples


# --- The operator's scrape configuration, with static targets ---------------------------------


def _sanitized(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def relabel_configs(relabelings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Monitor relabelings as the operator writes them (promcfg.go generateRelabelConfig)."""
    names = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    configs = []
    for relabeling in relabelings:
        config = {names.get(key, key): value for key, value in relabeling.items()}
        if "action" in config:
            config["action"] = config["action"].lower()
        configs.append(config)
    return configs


SHARDING = [
    # promcfg.go appendShardingRelabelingWithLabel, one shard ($(SHARD) substituted with 0 by
    # the operator's config reloader).
    {
        "source_labels": ["__address__", "__tmp_hash"],
        "target_label": "__tmp_hash",
        "regex": "(.+);",
        "replacement": "$1",
        "action": "replace",
    },
    {
        "source_labels": ["__tmp_hash"],
        "target_label": "__tmp_hash",
        "modulus": 1,
        "action": "hashmod",
    },
    {
        "source_labels": ["__tmp_hash", "__tmp_disable_sharding"],
        "regex": "0;|.+;.+",
        "action": "keep",
    },
]
RUNNING_FILTER = {
    "action": "drop",
    "source_labels": ["__meta_kubernetes_pod_phase"],
    "regex": "(Failed|Succeeded)",
}


def pod_monitor_job(
    namespace: str,
    name: str,
    endpoint: dict[str, Any],
    *,
    match_labels: Mapping[str, str],
    targets: list[dict[str, Any]],
) -> dict[str, Any]:
    """The scrape config prometheus-operator v0.93.0 generates for a PodMonitor's first
    endpoint (pkg/prometheus/promcfg.go generatePodMonitorConfig), in the same order.

    The operator discovers pods (kubernetes_sd role pod: one target per container port, with
    `__meta_kubernetes_*` labels); here each target is static and carries those same meta
    labels, so the operator's relabel chain runs unchanged: keep running pods matching the
    selector and the port name, then `namespace`, `container`, `pod`, `job`, `endpoint`, the
    monitor's own relabelings (our `pool`), sharding; metric relabelings and honor_labels
    (absent in the chart's PodMonitor: false) as rendered.
    """
    port = endpoint["port"]
    keep_selected = [
        {
            "action": "keep",
            "source_labels": [
                f"__meta_kubernetes_pod_label_{_sanitized(key)}",
                f"__meta_kubernetes_pod_labelpresent_{_sanitized(key)}",
            ],
            "regex": f"({value});true",
        }
        for key, value in sorted(match_labels.items())
    ]
    return {
        "job_name": f"podMonitor/{namespace}/{name}/0",
        "honor_labels": bool(endpoint.get("honorLabels", False)),
        "static_configs": targets,
        "relabel_configs": [
            {"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"},
            RUNNING_FILTER,
            *keep_selected,
            {
                "action": "keep",
                "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                "regex": port,
            },
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {
                "source_labels": ["__meta_kubernetes_pod_container_name"],
                "target_label": "container",
            },
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"target_label": "job", "replacement": f"{namespace}/{name}"},
            {"target_label": "endpoint", "replacement": port},
            *relabel_configs(endpoint.get("relabelings", [])),
            *SHARDING,
        ],
        "metric_relabel_configs": relabel_configs(endpoint.get("metricRelabelings", [])),
    }


def service_monitor_job(
    namespace: str,
    name: str,
    endpoint: dict[str, Any],
    *,
    match_labels: Mapping[str, str],
    targets: list[dict[str, Any]],
    job_label: str | None = None,
) -> dict[str, Any]:
    """The scrape config prometheus-operator v0.93.0 generates for a ServiceMonitor's first
    endpoint (promcfg.go generateServiceMonitorConfig, role endpoints), with static targets
    carrying the endpoints discovery's meta labels."""
    port = endpoint["port"]
    target_kind = [
        "__meta_kubernetes_endpoint_address_target_kind",
        "__meta_kubernetes_endpoint_address_target_name",
    ]
    job_from_label = (
        [
            {
                "source_labels": [f"__meta_kubernetes_service_label_{_sanitized(job_label)}"],
                "target_label": "job",
                "regex": "(.+)",
                "replacement": "${1}",
            }
        ]
        if job_label
        else []
    )
    return {
        "job_name": f"serviceMonitor/{namespace}/{name}/0",
        "honor_labels": bool(endpoint.get("honorLabels", False)),
        "static_configs": targets,
        "relabel_configs": [
            {"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"},
            *(
                {
                    "action": "keep",
                    "source_labels": [
                        f"__meta_kubernetes_service_label_{_sanitized(key)}",
                        f"__meta_kubernetes_service_labelpresent_{_sanitized(key)}",
                    ],
                    "regex": f"({value});true",
                }
                for key, value in sorted(match_labels.items())
            ),
            {
                "action": "keep",
                "source_labels": ["__meta_kubernetes_endpoint_port_name"],
                "regex": port,
            },
            {
                "source_labels": target_kind,
                "separator": ";",
                "regex": "Node;(.*)",
                "replacement": "${1}",
                "target_label": "node",
            },
            {
                "source_labels": target_kind,
                "separator": ";",
                "regex": "Pod;(.*)",
                "replacement": "${1}",
                "target_label": "pod",
            },
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {
                "source_labels": ["__meta_kubernetes_pod_container_name"],
                "target_label": "container",
            },
            RUNNING_FILTER,
            {
                "source_labels": ["__meta_kubernetes_service_name"],
                "target_label": "job",
                "replacement": "${1}",
            },
            *job_from_label,
            {"target_label": "endpoint", "replacement": port},
            *relabel_configs(endpoint.get("relabelings", [])),
            *SHARDING,
        ],
        "metric_relabel_configs": relabel_configs(endpoint.get("metricRelabelings", [])),
    }


def pod_target(
    address: str,
    *,
    namespace: str,
    pod: str,
    container: str,
    port_name: str,
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """A static target labelled as Kubernetes pod discovery labels a container port."""
    meta = {
        "__meta_kubernetes_namespace": namespace,
        "__meta_kubernetes_pod_name": pod,
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_container_name": container,
        "__meta_kubernetes_pod_container_port_name": port_name,
    }
    for key, value in labels.items():
        meta[f"__meta_kubernetes_pod_label_{_sanitized(key)}"] = value
        meta[f"__meta_kubernetes_pod_labelpresent_{_sanitized(key)}"] = "true"
    return {"targets": [address], "labels": meta}


def endpoint_target(
    address: str,
    *,
    namespace: str,
    service: str,
    service_labels: Mapping[str, str],
    port_name: str,
    pod: str | None = None,
    container: str | None = None,
    node: str | None = None,
) -> dict[str, Any]:
    """A static target labelled as Kubernetes endpoints discovery labels a Service's endpoint."""
    meta = {
        "__meta_kubernetes_namespace": namespace,
        "__meta_kubernetes_service_name": service,
        "__meta_kubernetes_endpoint_port_name": port_name,
        "__meta_kubernetes_endpoint_address_target_kind": "Pod" if pod else "Node",
        "__meta_kubernetes_endpoint_address_target_name": pod or node or "",
    }
    if pod:
        meta |= {
            "__meta_kubernetes_pod_name": pod,
            "__meta_kubernetes_pod_phase": "Running",
            "__meta_kubernetes_pod_container_name": container or "",
        }
    for key, value in service_labels.items():
        meta[f"__meta_kubernetes_service_label_{_sanitized(key)}"] = value
        meta[f"__meta_kubernetes_service_labelpresent_{_sanitized(key)}"] = "true"
    return {"targets": [address], "labels": meta}


def managers_scrape_job(addresses: Mapping[str, str]) -> dict[str, Any]:
    """The managers' PodMonitor (one for every pool) as the operator turns it into a scrape
    job, with each pool's manager pod as a target (its metrics port, its labels)."""
    monitor = managers_pod_monitor_manifest("monitoring", {}, MANAGER_NAMESPACE)
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    targets = []
    for pool, address in addresses.items():
        metrics = runner_monitoring_values(pool)["metrics"]
        assert metrics["port"] == METRICS_PORT
        targets.append(
            pod_target(
                address,
                namespace=MANAGER_NAMESPACE,
                pod=f"{release_name(pool)}-6b7c9d-x2k4q",
                container="gitlab-runner",
                port_name=metrics["portName"],
                labels={**selector, **runner_monitoring_values(pool)["podLabels"]},
            )
        )
    return pod_monitor_job(
        "monitoring", monitor["metadata"]["name"], endpoint, match_labels=selector, targets=targets
    )


def prometheus_config(addresses: Mapping[str, str], rule_file: Path) -> dict[str, Any]:
    autoscaler_monitor = autoscaler_monitoring_values("kube-system")["serviceMonitor"]
    autoscaler = instance_name("gitlab-runner-fleet-dev")
    autoscaler_selector = {
        "app.kubernetes.io/instance": autoscaler,
        "app.kubernetes.io/name": "aws-cluster-autoscaler",
    }
    karpenter_monitor = karpenter_values(
        cluster_name="ci",
        interruption_queue="karpenter-interruptions",
        role_arn="arn:aws:iam::123456789012:role/karpenter-controller",
        service_monitor_labels={"release": "kube-prometheus-stack"},
    )["serviceMonitor"]
    karpenter_selector = {
        "app.kubernetes.io/name": "karpenter",
        "app.kubernetes.io/instance": KARPENTER_RELEASE,
    }
    ksm = "kube-prometheus-stack-kube-state-metrics"
    ksm_selector = {
        "app.kubernetes.io/instance": "kube-prometheus-stack",
        "app.kubernetes.io/name": "kube-state-metrics",
    }
    kubelet = "kube-prometheus-stack-kubelet"
    kubelet_selector = {"app.kubernetes.io/name": "kubelet", "k8s-app": "kubelet"}
    jobs = [managers_scrape_job({manager.pool: addresses[manager.pool] for manager in MANAGERS})]
    jobs += [
        # cluster-autoscaler chart 9.59.0 templates/servicemonitor.yaml: port `http`
        # (service.portName), no honorLabels; our values put it in the release's namespace.
        service_monitor_job(
            autoscaler_monitor["namespace"],
            autoscaler,
            {"port": "http"},
            match_labels=autoscaler_selector,
            targets=[
                endpoint_target(
                    addresses["cluster-autoscaler"],
                    namespace="kube-system",
                    service=autoscaler,
                    service_labels=autoscaler_selector,
                    port_name="http",
                    pod=f"{autoscaler}-7f8d6c-p9zq2",
                    container="aws-cluster-autoscaler",
                )
            ],
        ),
        # karpenter chart 1.14.1 templates/servicemonitor.yaml: the Service's http-metrics port,
        # /metrics, in the release's namespace, honorLabels only through endpointConfig.
        service_monitor_job(
            KARPENTER_NAMESPACE,
            KARPENTER_RELEASE,
            {
                "port": KARPENTER_METRICS_PORT,
                "honorLabels": karpenter_monitor.get("endpointConfig", {}).get(
                    "honorLabels", False
                ),
            },
            match_labels=karpenter_selector,
            targets=[
                endpoint_target(
                    addresses["karpenter"],
                    namespace=KARPENTER_NAMESPACE,
                    service=KARPENTER_RELEASE,
                    service_labels=karpenter_selector,
                    port_name=KARPENTER_METRICS_PORT,
                    pod=f"{KARPENTER_RELEASE}-6d5f8b9c7d-x7k2p",
                    container="controller",
                )
            ],
        ),
        # kube-prometheus-stack 88.5.3: kube-state-metrics' ServiceMonitor, honorLabels true,
        # jobLabel app.kubernetes.io/name.
        service_monitor_job(
            "monitoring",
            ksm,
            {"port": "http", "honorLabels": True},
            match_labels=ksm_selector,
            targets=[
                endpoint_target(
                    addresses["kube-state-metrics"],
                    namespace="monitoring",
                    service=ksm,
                    service_labels=ksm_selector,
                    port_name="http",
                    pod=f"{ksm}-5d9f7-hx2lm",
                    container="kube-state-metrics",
                )
            ],
            job_label="app.kubernetes.io/name",
        ),
        # kube-prometheus-stack 88.5.3: the kubelet's ServiceMonitor (its Service's endpoints
        # are Nodes), honorLabels true, jobLabel k8s-app, metrics_path relabelled in.
        service_monitor_job(
            "monitoring",
            kubelet,
            {
                "port": "https-metrics",
                "honorLabels": True,
                "relabelings": [
                    {
                        "sourceLabels": ["__metrics_path__"],
                        "targetLabel": "metrics_path",
                        "action": "replace",
                    }
                ],
            },
            match_labels=kubelet_selector,
            targets=[
                endpoint_target(
                    addresses["kubelet"],
                    namespace="kube-system",
                    service=kubelet,
                    service_labels=kubelet_selector,
                    port_name="https-metrics",
                    node="ip-10-0-2-8.eu-west-1.compute.internal",
                )
            ],
            job_label="k8s-app",
        ),
    ]
    interval = f"{int(SCRAPE_SECONDS * 1000)}ms"
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        "rule_files": [str(rule_file)],
        "scrape_configs": jobs,
    }


# --- The server -------------------------------------------------------------------------------


def api(base: str, path: str, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{base}{path}{query}", timeout=2) as answer:
        return json.load(answer)["data"]


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} within {seconds} s")


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, Clock]]:
    """The exporters and a Prometheus scraping them; yields its URL and the exporters' clock."""
    clock = Clock()
    renders: dict[str, Callable[[Clock], Samples]] = {
        manager.pool: manager.samples for manager in MANAGERS
    }
    renders["cluster-autoscaler"] = cluster_autoscaler
    renders["karpenter"] = karpenter
    renders["kube-state-metrics"] = kube_state_metrics
    renders["kubelet"] = kubelet
    # What the exporters will serve, before and after the failures begin, is checked here: a
    # failed check inside a scrape would only show as a target down.
    for render in renders.values():
        exposition(render(Clock()))
        exposition(render(Clock(events_began=time.monotonic())))
    exporters = {name: Exporter(render, clock) for name, render in renders.items()}
    rule_file = tmp_path / "fleet-rules.yaml"
    spec = prometheus_rule_spec(
        POOLS,
        TEST_THRESHOLDS,
        cache_volume=CACHE_VOLUME,
        node_group_regex=NODE_GROUP_REGEX,
    )
    rule_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(prometheus_config({n: e.address for n, e in exporters.items()}, rule_file))
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    for exporter in exporters.values():
        exporter.__enter__()
    log = (tmp_path / "prometheus.log").open("w")
    server = subprocess.Popen(
        [
            program("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        targets = len(exporters)
        wait_until(
            lambda: len(api(base, "/api/v1/query", query="up == 1")["result"]) == targets,
            15,
            f"Prometheus up and scraping all {targets} targets",
        )
        yield base, clock
    finally:
        stop(server, timeout=10)
        log.close()
        for exporter in exporters.values():
            exporter.__exit__()


def subject_of(labels: Mapping[str, str]) -> tuple[str, str]:
    for label in (POOL, "node_group", "reason", "persistentvolumeclaim"):
        if label in labels and (label != "reason" or "pool" not in labels):
            return label, labels[label]
    raise AssertionError(f"an alert without a subject: {labels}")


def test_a_real_prometheus_fires_each_alert_for_its_failure_and_none_for_the_healthy_pool(
    prometheus: tuple[str, Clock],
):
    base, clock = prometheus
    started = time.monotonic()
    # New counter series must appear once Prometheus has a window of history, as in a cluster
    # whose Prometheus has been running: before, it cannot tell a new series from its own gap.
    time.sleep(WINDOW_SECONDS + SCRAPE_SECONDS)
    clock.events_began = time.monotonic()
    expected = {(alert, failure.subject) for failure in FAILURES for alert in failure.alerts}
    seen: set[tuple[str, tuple[str, str]]] = set()
    deadline = time.monotonic() + DEADLINE_SECONDS
    settled_at: float | None = None
    while time.monotonic() < deadline:
        for alert in api(base, "/api/v1/alerts")["alerts"]:
            if alert["state"] == "firing":
                seen.add((alert["labels"]["alertname"], subject_of(alert["labels"])))
        if expected <= seen:
            settled_at = settled_at or time.monotonic()
            if time.monotonic() - settled_at >= SETTLE_SECONDS:
                break
        time.sleep(0.2)
    elapsed = time.monotonic() - started

    table = ["| simulated failure | subject | alerts fired |", "|---|---|---|"]
    for failure in FAILURES:
        fired = sorted(alert for alert, subject in seen if subject == failure.subject)
        table.append(
            f"| {failure.description} | {failure.subject[0]}={failure.subject[1]} | "
            f"{', '.join(fired) or '(none)'} |"
        )
    print("\n".join(table), f"\n(alerts observed for {elapsed:.1f} s)")

    assert seen - expected == set(), "alerts that no simulated failure should fire"
    assert expected - seen == set(), "expected alerts that never fired"
    rules = alert_names(prometheus_rule_spec(POOLS, TEST_THRESHOLDS, cache_volume=CACHE_VOLUME))
    assert {alert for alert, _ in seen} == set(rules), "every generated alert is exercised"
