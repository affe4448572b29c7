"""FleetMonitoring: the fleet's alerts (a PrometheusRule) and its Grafana dashboard (a ConfigMap),
plus the Helm values that get the runner managers and cluster-autoscaler scraped, per pool.

Made for kube-prometheus-stack's defaults: its Prometheus selects PodMonitors, ServiceMonitors
and PrometheusRules labelled `release: <its release>`, and its Grafana sidecar loads ConfigMaps
labelled `grafana_dashboard: "1"` from every namespace; both label sets are settable.
"""

from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, Optional, TypedDict

import pulumi
import pulumi_kubernetes as k8s

from ..arguments import check_arguments
from ..build_nodes import POOL_LABEL
from ..conventions import DEFAULT_PROMETHEUS_SELECTOR_LABELS, DEFAULT_RUNNER_NAMESPACE
from ..kubernetes_names import (
    label_key_problems,
    label_value_problems,
    namespace_problems,
)
from .alert_rules import (
    DEFAULT_NODE_GROUP_REGEX,
    DEFAULT_RUNBOOK_URL,
    AlertThresholds,
    MonitoredPool,
    VolumeClaim,
    alert_names,
    pool_problems,
    pool_scaler,
    prometheus_rule_spec,
    threshold_problems,
)
from .dashboard import dashboard_json
from .isolation import MANAGER_POD_LABELS
from .runner_config import METRICS_PORT
from .runner_metrics import API_ENDPOINT, POOL, POOL_META_LABEL

DEFAULT_DASHBOARD_LABELS = {"grafana_dashboard": "1"}
"""What kube-prometheus-stack's Grafana sidecar loads dashboards from (`grafana.sidecar.dashboards`
`label`/`labelValue` in its values.yaml)."""
RULE_NAME = "gitlab-runner-fleet"
DASHBOARD_CONFIG_MAP_NAME = "gitlab-runner-fleet-dashboard"
DASHBOARD_FILE = "gitlab-runner-fleet.json"
"""The sidecar writes each data key as a file; Grafana loads the `.json` ones."""
METRICS_PORT_NAME = "metrics"
"""Name of the manager's metrics container port, which the managers' PodMonitor scrapes."""
MANAGERS_POD_MONITOR = "gitlab-runner-fleet-managers"
"""One PodMonitor for every pool's manager. Not the chart's: its template puts its own
`release: <release name>` label on the PodMonitor before the labels it is given
(charts/gitlab-runner templates/podmonitor.yaml, chart 0.92.0), so selecting it by
kube-prometheus-stack's `release` label would write that key twice, which strict YAML parsers
(kubeconform -strict in the merge request pipeline) refuse; and it skips the PodMonitor
silently when the CRD is missing at install time."""


def pool_relabeling() -> dict[str, Any]:
    """A PodMonitor relabeling (operator field names) that copies the manager pod's pool label
    into a `pool` label on every series scraped from it."""
    return {"sourceLabels": [POOL_META_LABEL], "targetLabel": POOL, "action": "replace"}


def api_endpoint_relabelings() -> list[dict[str, Any]]:
    """PodMonitor metric relabelings (operator field names) that give the runner's own
    `endpoint` label, the GitLab API endpoint of `gitlab_runner_api_request_*`, a clear name.

    The operator sets `endpoint` to the port's name on every target, and without honorLabels
    Prometheus stores the runner's as `exported_endpoint` (prometheus scrape/scrape.go);
    metric relabelings run after that, so they move it to `api_endpoint`.
    """
    return [
        {"sourceLabels": ["exported_endpoint"], "targetLabel": API_ENDPOINT, "action": "replace"},
        {"regex": "exported_endpoint", "action": "labeldrop"},
    ]


def runner_monitoring_values(pool: str) -> dict[str, Any]:
    """Helm values of the gitlab-runner chart 0.92.0 for one pool's manager: the pool label on
    the pod and its metrics port on; the chart's own PodMonitor off (`MANAGERS_POD_MONITOR`
    scrapes every manager). Deep-merge into the release's values."""
    return {
        "podLabels": {POOL_LABEL: pool},
        "metrics": {
            "enabled": True,
            "portName": METRICS_PORT_NAME,
            "port": METRICS_PORT,
            "podMonitor": {"enabled": False},
        },
    }


def managers_pod_monitor_manifest(
    namespace: str, labels: Mapping[str, str], managers_namespace: str
) -> dict[str, Any]:
    """The PodMonitor that scrapes every pool's manager (monitoring.coreos.com/v1), labelled
    for Prometheus: a `pool` label from the manager pod's, the API endpoint label renamed."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": MANAGERS_POD_MONITOR, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "selector": {"matchLabels": dict(MANAGER_POD_LABELS)},
            "namespaceSelector": {"matchNames": [managers_namespace]},
            "podMetricsEndpoints": [
                {
                    "port": METRICS_PORT_NAME,
                    "relabelings": [pool_relabeling()],
                    "metricRelabelings": api_endpoint_relabelings(),
                }
            ],
        },
    }


def prometheus_rule_manifest(
    namespace: str, labels: Mapping[str, str], spec: Mapping[str, Any]
) -> dict[str, Any]:
    """The PrometheusRule object holding the fleet's alerts."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": RULE_NAME, "namespace": namespace, "labels": dict(labels)},
        "spec": dict(spec),
    }


def dashboard_config_map_manifest(
    namespace: str, labels: Mapping[str, str], dashboard: str
) -> dict[str, Any]:
    """The ConfigMap Grafana's dashboard sidecar turns into the fleet's dashboard."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": DASHBOARD_CONFIG_MAP_NAME,
            "namespace": namespace,
            "labels": dict(labels),
        },
        "data": {DASHBOARD_FILE: dashboard},
    }


def monitoring_problems(
    pools: Sequence[MonitoredPool],
    namespace: str,
    labels: Mapping[str, Mapping[str, str]],
    thresholds: Mapping[str, Any],
    cache_volume: VolumeClaim | None = None,
) -> list[str]:
    """Why these arguments cannot make the rule and dashboard (empty when they can); `labels`
    holds each label set by the name of its argument."""
    problems = [f"namespace {namespace!r} {p}" for p in namespace_problems(namespace)]
    problems += pool_problems(pools)
    if cache_volume:
        problems += [
            f"cache_volume.namespace {cache_volume['namespace']!r} {p}"
            for p in namespace_problems(cache_volume["namespace"])
        ]
        problems += [
            f"cache_volume.name {cache_volume['name']!r} {p}"
            for p in label_value_problems(cache_volume["name"])
        ]
    for argument, label_set in labels.items():
        for key, value in label_set.items():
            problems += [f"{argument}: key {key!r}: {p}" for p in label_key_problems(key)]
            problems += [f"{argument}: {key}={value!r} {p}" for p in label_value_problems(value)]
    return problems + threshold_problems(thresholds)


class FleetMonitoringArgs(TypedDict):
    """Inputs of FleetMonitoring."""

    pools: list[MonitoredPool]
    """The runner pools and what each runs (job namespace, scaler, warm capacity, the runner's
    queuing thresholds, working hours): each pool gets the alerts its facts can fire."""
    namespace: str
    """Namespace of the PrometheusRule and the dashboard ConfigMap; it must exist."""
    rule_labels: NotRequired[dict[str, str]]
    """Labels of the PrometheusRule, which Prometheus selects rules by. Default
    `release: kube-prometheus-stack`."""
    dashboard_labels: NotRequired[dict[str, str]]
    """Labels of the dashboard ConfigMap, which Grafana's sidecar selects by. Default
    `grafana_dashboard: "1"`."""
    thresholds: NotRequired[AlertThresholds]
    """When each alert fires; unset fields keep their defaults (see alert_rules.py)."""
    cache_volume: NotRequired[VolumeClaim]
    """The in-cluster cache's PersistentVolumeClaim, when the stack runs that cache: its free
    space is alerted on (kubelet volume stats)."""
    node_group_regex: NotRequired[str]
    """RE2 regex of the Auto Scaling group names whose autoscaler backoff is alerted on.
    Default `.*` (every group cluster-autoscaler manages)."""
    runbook_url: NotRequired[str]
    """URL of docs/observability.md (e.g. its page in your repository); each alert links its
    section there. Default the relative path `docs/observability.md`."""
    managers_namespace: NotRequired[str]
    """Namespace of the runner managers the PodMonitor scrapes. Default `gitlab-runner`."""
    create_pod_monitor: NotRequired[bool]
    """Create the managers' PodMonitor (needs the Prometheus operator's CRDs). Default true."""
    create_rule: NotRequired[bool]
    """Create the PrometheusRule (needs the Prometheus operator's CRDs). Default true."""
    create_dashboard: NotRequired[bool]
    """Create the dashboard ConfigMap. Default true."""


class FleetMonitoring(pulumi.ComponentResource):
    """Alerts and a dashboard for a fleet of runner pools, for the Prometheus operator and
    Grafana's dashboard sidecar (as kube-prometheus-stack installs them).

    Pass the cluster's Kubernetes provider in `opts.providers`. It scrapes every manager with
    one PodMonitor (the managers' pods carry `MANAGER_POD_LABELS` and their pool label, see
    `runner_monitoring_values`); cluster-autoscaler's ServiceMonitor comes from its chart
    (`autoscaler_monitoring_values`, aws/cluster_autoscaler.py).
    """

    rule_name: pulumi.Output[Optional[str]]
    """`<namespace>/<name>` of the PrometheusRule, when created."""
    dashboard_config_map: pulumi.Output[Optional[str]]
    """`<namespace>/<name>` of the dashboard ConfigMap, when created."""
    pod_monitor: pulumi.Output[Optional[str]]
    """`<namespace>/<name>` of the managers' PodMonitor, when created."""
    alerts: pulumi.Output[list[str]]
    """Names of the alerts the rule defines."""

    def __init__(
        self,
        name: str,
        args: FleetMonitoringArgs,
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        namespace = args.get("namespace", "")
        rule_labels = args.get("rule_labels", DEFAULT_PROMETHEUS_SELECTOR_LABELS)
        dashboard_labels = args.get("dashboard_labels", DEFAULT_DASHBOARD_LABELS)
        thresholds = args.get("thresholds", {})
        cache_volume = args.get("cache_volume")
        check_arguments(
            "FleetMonitoring",
            name,
            args,
            FleetMonitoringArgs,
            lambda: monitoring_problems(
                args["pools"],
                namespace,
                {"rule_labels": rule_labels, "dashboard_labels": dashboard_labels},
                thresholds,
                cache_volume,
            ),
        )
        super().__init__("gitlab-runner-fleet:index:FleetMonitoring", name, None, opts)
        spec = prometheus_rule_spec(
            args["pools"],
            thresholds,
            cache_volume=cache_volume,
            node_group_regex=args.get("node_group_regex", DEFAULT_NODE_GROUP_REGEX),
            runbook_url=args.get("runbook_url", DEFAULT_RUNBOOK_URL),
        )

        pod_monitor: Optional[str] = None
        if args.get("create_pod_monitor", True):
            self._create_custom_resource(
                f"{name}-managers",
                managers_pod_monitor_manifest(
                    namespace,
                    rule_labels,
                    args.get("managers_namespace", DEFAULT_RUNNER_NAMESPACE),
                ),
            )
            pod_monitor = f"{namespace}/{MANAGERS_POD_MONITOR}"
        rule_name: Optional[str] = None
        if args.get("create_rule", True):
            self._create_custom_resource(
                f"{name}-rules", prometheus_rule_manifest(namespace, rule_labels, spec)
            )
            rule_name = f"{namespace}/{RULE_NAME}"
        config_map_name: Optional[str] = None
        if args.get("create_dashboard", True):
            self._create_dashboard(
                name,
                dashboard_config_map_manifest(
                    namespace,
                    dashboard_labels,
                    dashboard_json({pool_scaler(pool) for pool in args["pools"]}),
                ),
            )
            config_map_name = f"{namespace}/{DASHBOARD_CONFIG_MAP_NAME}"

        self.pod_monitor = pulumi.Output.from_input(pod_monitor)
        self.rule_name = pulumi.Output.from_input(rule_name)
        self.dashboard_config_map = pulumi.Output.from_input(config_map_name)
        self.alerts = pulumi.Output.from_input(alert_names(spec))
        self.register_outputs(
            {
                "pod_monitor": self.pod_monitor,
                "rule_name": self.rule_name,
                "dashboard_config_map": self.dashboard_config_map,
                "alerts": self.alerts,
            }
        )

    def _create_custom_resource(
        self, name: str, manifest: Mapping[str, Any]
    ) -> k8s.apiextensions.CustomResource:
        return k8s.apiextensions.CustomResource(
            name,
            api_version=manifest["apiVersion"],
            kind=manifest["kind"],
            metadata=manifest["metadata"],
            spec=manifest["spec"],
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _create_dashboard(self, name: str, manifest: Mapping[str, Any]) -> k8s.core.v1.ConfigMap:
        return k8s.core.v1.ConfigMap(
            f"{name}-dashboard",
            metadata=manifest["metadata"],
            data=manifest["data"],
            opts=pulumi.ResourceOptions(parent=self),
        )
