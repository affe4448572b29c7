"""Every alert a stack generates can fire there: its input metrics are produced by what that
stack's own configuration deploys (issue 20, item 5), for every stack with monitoring on.

A runner metric must come from a pool whose manager pod a PodMonitor of the stack selects, on
its metrics port, with the pool relabeling; pause pod metrics only from managers whose config.toml has
`[runners.kubernetes.autoscaler]`; the queuing-threshold counter only moves with
`[[runners.monitoring.job_queuing_durations]]` (commands/builds_helper.go); cluster-autoscaler's
only from the stack's own release with its ServiceMonitor, per-node-group ones only with
`--emit-per-nodegroup-metrics`, and only from an image whose metrics.go was read; Karpenter's
only from the stack's own karpenter release with its ServiceMonitor, for NodePools the stack
declares, from the release whose metrics were read; the pause
Deployments only in the job namespace of a warm pool; volume stats only for a claim the stack
creates. kube-state-metrics' and the kubelet's own scrape are kube-prometheus-stack's
(docs/observability.md says what it must allow).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from typing import Any

import pytest

from components.workloads.alert_rules import alert_names
from components.workloads.monitoring import api_endpoint_relabelings, pool_relabeling
from components.workloads.runner_metrics import (
    API_ENDPOINT,
    CLUSTER_AUTOSCALER_METRICS,
    CLUSTER_AUTOSCALER_VERSIONS_READ,
    KARPENTER_METRICS,
    KARPENTER_VERSION_READ,
    KUBE_STATE_METRICS,
    KUBELET_METRICS,
    NODE_POOL,
    PAUSE_DEPLOYMENT_RUNNER,
    POOL,
    PROCESS_START,
    RUNNER_METRICS,
    TARGET_HEALTH,
)
from tests.harness import PROJECT, ProgramRun, config_from_stack_file, run_stack, stack_names
from tests.test_alert_rules import DOCS, Selector, read_promql

MONITORING_TURNED_ON = {
    # dev creates its cluster without the Prometheus operator, so ships with monitoring off
    # (its stack file says why); its alerts are those it gets once the operator is installed.
    "dev": {f"{PROJECT}:monitoring": {"enabled": True, "namespace": "monitoring"}},
}
MONITORED = [
    stack
    for stack in stack_names()
    if config_from_stack_file(stack).get(f"{PROJECT}:monitoring", {}).get("enabled")
    or stack in MONITORING_TURNED_ON
]


def run_monitored(stack: str) -> ProgramRun:
    return run_stack(stack, MONITORING_TURNED_ON.get(stack))


RULE_TYPE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
POD_MONITOR_TYPE = "kubernetes:monitoring.coreos.com/v1:PodMonitor"


def series_of(metrics: tuple[Any, ...]) -> set[str]:
    return {name for metric in metrics for name in metric.series_names()}


RUNNER_SERIES = series_of(RUNNER_METRICS)
AUTOSCALER_SERIES = series_of(CLUSTER_AUTOSCALER_METRICS)
KARPENTER_SERIES = series_of(KARPENTER_METRICS)
NODE_POOL_TYPE = "kubernetes:karpenter.sh/v1:NodePool"
PAUSE_POD_SERIES = {
    "gitlab_runner_kubernetes_autoscaler_pause_pods_desired",
    "gitlab_runner_kubernetes_autoscaler_pause_pods_current",
    "gitlab_runner_kubernetes_autoscaler_reconcile_errors_total",
    "gitlab_runner_kubernetes_autoscaler_scale_operations_total",
}


@dataclass
class ScrapedManager:
    """What one pool's gitlab-runner release makes its manager export, and how it is scraped."""

    values: dict[str, Any]
    namespace: str
    config: dict[str, Any]
    pod_monitors: list[dict[str, Any]]

    @property
    def endpoints(self) -> list[dict[str, Any]]:
        """The PodMonitor endpoints that scrape this manager's metrics port (the operator
        selects pods by matchLabels and namespaceSelector, pkg/prometheus/promcfg.go)."""
        metrics = self.values["metrics"]
        if not metrics.get("enabled"):
            return []
        labels = self.values["podLabels"]
        return [
            endpoint
            for monitor in self.pod_monitors
            if monitor["selector"]["matchLabels"].items() <= labels.items()
            and self.namespace in monitor["namespaceSelector"]["matchNames"]
            for endpoint in monitor["podMetricsEndpoints"]
            if endpoint["port"] == metrics["portName"]
        ]

    @property
    def scraped_with_pool(self) -> bool:
        return any(pool_relabeling() in e.get("relabelings", []) for e in self.endpoints)

    @property
    def api_endpoint_renamed(self) -> bool:
        return any(e.get("metricRelabelings") == api_endpoint_relabelings() for e in self.endpoints)

    @property
    def keeps_pause_pods(self) -> bool:
        return "autoscaler" in self.config["kubernetes"]

    @property
    def counts_long_waits(self) -> bool:
        durations = self.config.get("monitoring", {}).get("job_queuing_durations", [])
        return any(duration["threshold"] for duration in durations)

    @property
    def job_namespace(self) -> str:
        namespace: str = self.config["kubernetes"]["namespace"]
        return namespace


@dataclass
class Deployed:
    """What a stack deploys that produces metrics."""

    managers: dict[str, ScrapedManager] = field(default_factory=dict)
    autoscaler: dict[str, Any] | None = None
    karpenter: tuple[str, dict[str, Any]] | None = None
    """The karpenter release's chart version and values."""
    node_pools: set[str] = field(default_factory=set)
    claims: set[tuple[str, str]] = field(default_factory=set)

    @classmethod
    def of(cls, run: ProgramRun) -> Deployed:
        deployed = cls()
        monitors = [m.inputs["spec"] for m in run.of_type(POD_MONITOR_TYPE)]
        for release in run.of_type("kubernetes:helm.sh/v3:Release"):
            values = release.inputs.get("values", {})
            if release.inputs["chart"] == "gitlab-runner":
                pool = values["podLabels"]["gitlab-runner-fleet/pool"]
                (config,) = tomllib.loads(values["runners"]["config"])["runners"]
                namespace = release.inputs["namespace"]
                deployed.managers[pool] = ScrapedManager(values, namespace, config, monitors)
            elif release.inputs["chart"] == "cluster-autoscaler":
                deployed.autoscaler = values
            elif release.inputs["chart"].endswith("/karpenter"):
                deployed.karpenter = (release.inputs["version"], values)
        deployed.node_pools = {
            pool.inputs["metadata"]["name"] for pool in run.of_type(NODE_POOL_TYPE)
        }
        for claim in run.of_type("kubernetes:core/v1:PersistentVolumeClaim"):
            metadata = claim.inputs["metadata"]
            deployed.claims.add((metadata["namespace"], metadata["name"]))
        return deployed

    def runner_problems(self, selector: Selector) -> list[str]:
        operator, value = selector.matchers[POOL]
        pools = [value] if operator == "=" else value.split("|")
        problems = []
        for pool in pools:
            manager = self.managers.get(pool)
            if manager is None or not manager.scraped_with_pool:
                problems.append(f"pool {pool} has no manager scraped with its pool label")
                continue
            if selector.metric in PAUSE_POD_SERIES and not manager.keeps_pause_pods:
                problems.append(f"pool {pool} keeps no pause pods")
            if (
                selector.metric == "gitlab_runner_acceptable_job_queuing_duration_exceeded_total"
                and not manager.counts_long_waits
            ):
                problems.append(f"pool {pool} has no job_queuing_durations threshold")
            if API_ENDPOINT in selector.matchers and not manager.api_endpoint_renamed:
                problems.append(f"pool {pool}'s PodMonitor does not rename the API endpoint")
        return problems

    def autoscaler_problems(self, selector: Selector) -> list[str]:
        values = self.autoscaler
        if values is None or not values.get("serviceMonitor", {}).get("enabled"):
            return ["no cluster-autoscaler of the stack's own is scraped"]
        problems = []
        if values["image"]["tag"] not in CLUSTER_AUTOSCALER_VERSIONS_READ:
            problems.append(f"cluster-autoscaler {values['image']['tag']}'s metrics were not read")
        per_group = selector.metric.startswith("cluster_autoscaler_node_group_")
        if per_group and values["extraArgs"].get("emit-per-nodegroup-metrics") is not True:
            problems.append("per-node-group metrics are not emitted")
        return problems

    def karpenter_problems(self, selector: Selector) -> list[str]:
        if self.karpenter is None or not self.karpenter[1].get("serviceMonitor", {}).get("enabled"):
            return ["no Karpenter of the stack's own is scraped"]
        problems = []
        if f"v{self.karpenter[0]}" != KARPENTER_VERSION_READ:
            problems.append(f"Karpenter {self.karpenter[0]}'s metrics were not read")
        if NODE_POOL in selector.matchers:
            operator, value = selector.matchers[NODE_POOL]
            node_pools = {value} if operator == "=" else set(value.split("|"))
            problems += [
                f"the stack declares no NodePool {n}" for n in node_pools - self.node_pools
            ]
        return problems

    def pause_deployment_problems(self, selector: Selector) -> list[str]:
        warm = {m.job_namespace for m in self.managers.values() if m.keeps_pause_pods}
        operator, value = selector.matchers["namespace"]
        namespaces = {value} if operator == "=" else set(value.split("|"))
        return [f"no warm pool runs jobs in {ns}" for ns in sorted(namespaces - warm)]

    def volume_problems(self, selector: Selector) -> list[str]:
        claim = (selector.matchers["namespace"][1], selector.matchers["persistentvolumeclaim"][1])
        return [] if claim in self.claims else [f"the stack creates no claim {claim}"]

    def problems(self, selector: Selector) -> list[str]:
        producers = (
            (RUNNER_SERIES, self.runner_problems),
            (AUTOSCALER_SERIES, self.autoscaler_problems),
            (KARPENTER_SERIES, self.karpenter_problems),
            (series_of(KUBELET_METRICS), self.volume_problems),
        )
        for series, problems in producers:
            if selector.metric in series:
                return problems(selector)
        if selector.metric.startswith(("kube_deployment_", "kube_pod_")):
            return self.pause_deployment_problems(selector)
        if selector.metric in (TARGET_HEALTH, PROCESS_START, *series_of(KUBE_STATE_METRICS)):
            return []
        return [f"{selector.metric}: no producer known"]


def test_monitoring_is_on_in_the_stacks_whose_alerts_other_issues_add():
    assert MONITORED == ["basement", "dev", "prod"]


@pytest.mark.parametrize("stack", MONITORED)
def test_every_generated_alert_reads_metrics_the_stack_produces(stack: str) -> None:
    run = run_monitored(stack)
    deployed = Deployed.of(run)
    spec = run.one(RULE_TYPE).inputs["spec"]
    problems = [
        f"{rule['alert']}: {problem}"
        for group in spec["groups"]
        for rule in group["rules"]
        for selector in read_promql(rule["expr"]).selectors
        for problem in deployed.problems(selector)
    ]
    assert problems == []
    assert set(run.outputs["alerts"]) == set(alert_names(spec))


def alerts_of(stack: str) -> list[str]:
    return alert_names(run_monitored(stack).one(RULE_TYPE).inputs["spec"])


def test_each_stack_gets_the_alerts_of_what_it_runs() -> None:
    runner = [
        "GitlabRunnerJobsQueuedTooLong",
        "GitlabRunnerConcurrencySaturated",
        "GitlabRunnerJobFailureRateHigh",
        "GitlabRunnerManagerAbsent",
        "GitlabRunnerApiRequestErrors",
        "GitlabRunnerErrorsLogged",
    ]
    autoscaler = ["ClusterAutoscalerNodeGroupBackedOff", "ClusterAutoscalerScaleUpsFailing"]
    # prod: warm capacity, a queuing threshold and office hours on its default pool.
    assert alerts_of("prod") == [
        runner[0],
        "GitlabRunnerQueuingThresholdExceeded",
        *runner[1:],
        "GitlabRunnerNoJobsPickedUp",
        "GitlabRunnerPausePodReconcileErrors",
        "GitlabRunnerPausePodsUnavailable",
        *autoscaler,
    ]
    # dev: one plain pool on Karpenter, which the stack installs into the cluster it creates.
    assert alerts_of("dev") == [
        *runner,
        "KarpenterNodePoolAtLimit",
        "KarpenterNodeLaunchesFailing",
        "KarpenterNodesNotRegistering",
    ]
    # basement: the office's own nodes (nothing scales them) and the edge cache's volume.
    assert alerts_of("basement") == [*runner, "RunnerCacheVolumeNearlyFull"]


def test_the_docs_ask_kube_state_metrics_for_the_labels_the_alerts_join_on() -> None:
    # kube_deployment_labels has no series without an allow-list (internal/store/deployment.go).
    text = DOCS.read_text()
    assert "deployments=[manager.runner.gitlab.com/id-short]" in text
    assert PAUSE_DEPLOYMENT_RUNNER in text
