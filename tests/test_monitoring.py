"""FleetMonitoring and the monitoring Helm values: objects the Prometheus operator, the charts and
Grafana's sidecar accept, checked against their upstream definitions, and the component under
Pulumi mocks."""

from __future__ import annotations

import re
from typing import Any

import pytest

from components.aws.cluster_autoscaler import autoscaler_monitoring_values
from components.build_nodes import POOL_LABEL
from components.conventions import DEFAULT_PROMETHEUS_SELECTOR_LABELS
from components.workloads.alert_rules import (
    MonitoredPool,
    VolumeClaim,
    alert_names,
    prometheus_rule_spec,
)
from components.workloads.dashboard import dashboard_json
from components.workloads.monitoring import (
    DASHBOARD_CONFIG_MAP_NAME,
    DASHBOARD_FILE,
    DEFAULT_DASHBOARD_LABELS,
    RULE_NAME,
    FleetMonitoring,
    FleetMonitoringArgs,
    dashboard_config_map_manifest,
    managers_pod_monitor_manifest,
    prometheus_rule_manifest,
    runner_monitoring_values,
)
from components.workloads.runner_config import METRICS_PORT
from components.workloads.runner_metrics import API_ENDPOINT, POOL_META_LABEL
from tests.harness import ProgramRun, run_program

POOLS: list[MonitoredPool] = [
    {"name": "default", "job_namespace": "gitlab-runner-jobs-dind", "warm_capacity": True},
    {"name": "arm64", "job_namespace": "gitlab-runner-jobs-dind"},
]
RULE_TYPE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
CONFIG_MAP_TYPE = "kubernetes:core/v1:ConfigMap"

# Field names of the Prometheus operator's monitoring.coreos.com/v1 types, written from its Go
# types at tag v0.93.0 (the operator kube-prometheus-stack 88.5.3 ships, appVersion v0.93.1):
# pkg/apis/monitoring/v1/prometheusrule_types.go (PrometheusRule, PrometheusRuleSpec, RuleGroup,
# Rule), pkg/apis/monitoring/v1/podmonitor_types.go (PodMetricsEndpoint),
# pkg/apis/monitoring/v1/http_config.go and types.go (its inline HTTP and proxy settings),
# pkg/apis/monitoring/v1/prometheus_types.go (RelabelConfig and its action enum).
PROMETHEUS_RULE_FIELDS = {"apiVersion", "kind", "metadata", "spec"}
RULE_SPEC_FIELDS = {"groups"}
RULE_GROUP_FIELDS = {
    "name", "labels", "interval", "query_offset", "rules", "partial_response_strategy", "limit",
}  # fmt: skip
RULE_FIELDS = {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
POD_METRICS_ENDPOINT_FIELDS = {
    "port", "portNumber", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout",
    "honorLabels", "honorTimestamps", "trackTimestampsStaleness", "metricRelabelings",
    "relabelings", "filterRunning", "authorization", "basicAuth", "oauth2", "bearerTokenSecret",
    "followRedirects", "enableHttp2", "tlsConfig", "proxyUrl", "noProxy", "proxyFromEnvironment",
    "proxyConnectHeader",
}  # fmt: skip
RELABEL_CONFIG_FIELDS = {
    "sourceLabels", "separator", "targetLabel", "regex", "modulus", "replacement", "action",
}  # fmt: skip
RELABEL_ACTIONS = {
    "replace", "keep", "drop", "hashmod", "labelmap", "labeldrop", "labelkeep", "lowercase",
    "uppercase", "keepequal", "dropequal",
}  # fmt: skip
# The operator's Duration: units y, w, d, h, m, s, ms, largest first, or "0".
OPERATOR_DURATION = re.compile(r"^(0|(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?)$")

# gitlab-runner chart 0.92.0, templates/podmonitor.yaml: the metrics.podMonitor keys it reads,
# and the keys it writes into the PodMonitor's one podMetricsEndpoints entry.
CHART_POD_MONITOR_KEYS = {
    "enabled", "namespace", "labels", "annotations", "interval", "scheme", "tlsConfig",
    "metricRelabelings", "path", "relabelings", "jobLabel",
}  # fmt: skip
CHART_POD_METRICS_ENDPOINT_KEYS = {
    "port", "interval", "scheme", "tlsConfig", "metricRelabelings", "path", "relabelings",
}  # fmt: skip
# gitlab-runner chart 0.92.0, values.yaml: the top-level `metrics` keys.
CHART_METRICS_KEYS = {"enabled", "portName", "port", "serviceMonitor", "podMonitor"}
# cluster-autoscaler chart 9.59.0, values.yaml and templates/servicemonitor.yaml.
AUTOSCALER_SERVICE_MONITOR_KEYS = {
    "enabled", "interval", "namespace", "selector", "path", "annotations", "relabelings",
    "metricRelabelings",
}  # fmt: skip


def field_problems(obj: dict[str, Any], allowed: set[str], where: str) -> list[str]:
    return [f"{where}.{key}" for key in obj if key not in allowed]


def test_the_prometheus_rule_uses_only_fields_of_the_operators_crd():
    spec = prometheus_rule_spec(POOLS)
    rule = prometheus_rule_manifest("monitoring", DEFAULT_PROMETHEUS_SELECTOR_LABELS, spec)
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    problems = field_problems(rule, PROMETHEUS_RULE_FIELDS, "rule")
    problems += field_problems(rule["spec"], RULE_SPEC_FIELDS, "spec")
    for group in rule["spec"]["groups"]:
        problems += field_problems(group, RULE_GROUP_FIELDS, group["name"])
        for entry in group["rules"]:
            problems += field_problems(entry, RULE_FIELDS, entry["alert"])
            assert OPERATOR_DURATION.match(entry["for"]), entry["alert"]
            assert all(isinstance(v, str) for v in entry["labels"].values())
            assert all(isinstance(v, str) for v in entry["annotations"].values())
    assert problems == []


def test_the_prometheus_rule_is_labelled_for_kube_prometheus_stack_by_default():
    # kube-prometheus-stack templates/prometheus/prometheus.yaml: with
    # ruleSelectorNilUsesHelmValues (default true) the ruleSelector is `release: <release>`.
    assert DEFAULT_PROMETHEUS_SELECTOR_LABELS == {"release": "kube-prometheus-stack"}
    rule = prometheus_rule_manifest("monitoring", DEFAULT_PROMETHEUS_SELECTOR_LABELS, {})
    assert rule["metadata"] == {
        "name": RULE_NAME,
        "namespace": "monitoring",
        "labels": {"release": "kube-prometheus-stack"},
    }


def test_the_dashboard_config_map_is_a_valid_object_for_grafanas_sidecar(validate_manifest):
    # kube-prometheus-stack values.yaml: grafana.sidecar.dashboards label `grafana_dashboard`,
    # labelValue "1", searchNamespace ALL.
    assert DEFAULT_DASHBOARD_LABELS == {"grafana_dashboard": "1"}
    manifest = dashboard_config_map_manifest("monitoring", DEFAULT_DASHBOARD_LABELS, "{}")
    validate_manifest(manifest)
    assert manifest["metadata"]["labels"] == {"grafana_dashboard": "1"}
    assert list(manifest["data"]) == [DASHBOARD_FILE]
    assert DASHBOARD_FILE.endswith(".json")


def test_the_dashboard_fits_in_a_config_map():
    # Kubernetes caps a ConfigMap's data at 1 MiB.
    assert len(dashboard_json().encode()) < 1024 * 1024 // 4


def managers_pod_monitor(labels: dict[str, str] = DEFAULT_PROMETHEUS_SELECTOR_LABELS) -> Any:
    return managers_pod_monitor_manifest("monitoring", labels, "gitlab-runner")


def test_runner_values_label_the_manager_pod_and_relabel_its_pool_into_a_pool_label():
    values = runner_monitoring_values("arm64")
    assert values["podLabels"] == {POOL_LABEL: "arm64"}
    metrics = values["metrics"]
    assert set(metrics) <= CHART_METRICS_KEYS
    assert metrics["enabled"] is True
    assert metrics["port"] == METRICS_PORT  # the runner's listen_address
    # The chart's own PodMonitor stays off: its template writes `release: <release name>`
    # before the labels it is given (templates/podmonitor.yaml), a duplicate key for
    # kube-prometheus-stack's `release` selector.
    assert metrics["podMonitor"] == {"enabled": False}
    endpoint = managers_pod_monitor()["spec"]["podMetricsEndpoints"][0]
    # Prometheus's Kubernetes pod discovery names a pod label __meta_kubernetes_pod_label_<key>
    # with the characters a label name cannot hold as `_`.
    assert POOL_META_LABEL == "__meta_kubernetes_pod_label_gitlab_runner_fleet_pool"
    assert endpoint["relabelings"] == [
        {"sourceLabels": [POOL_META_LABEL], "targetLabel": "pool", "action": "replace"}
    ]


def test_the_pod_monitor_moves_the_runners_renamed_endpoint_label_to_api_endpoint():
    # The operator's target label `endpoint` (pkg/prometheus/promcfg.go) makes Prometheus store
    # the runner's own as `exported_endpoint` (scrape/scrape.go); metric relabelings run after.
    # tests/integration/test_prometheus.py shows the result on a real server.
    endpoint = managers_pod_monitor()["spec"]["podMetricsEndpoints"][0]
    assert endpoint["metricRelabelings"] == [
        {"sourceLabels": ["exported_endpoint"], "targetLabel": API_ENDPOINT, "action": "replace"},
        {"regex": "exported_endpoint", "action": "labeldrop"},
    ]


def test_the_managers_pod_monitor_holds_only_operator_fields(validate_manifest):
    monitor = managers_pod_monitor()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert set(endpoint) <= POD_METRICS_ENDPOINT_FIELDS
    for relabeling in endpoint["relabelings"] + endpoint["metricRelabelings"]:
        assert set(relabeling) <= RELABEL_CONFIG_FIELDS
        assert relabeling["action"].lower() in RELABEL_ACTIONS
    # Every pool's manager, whatever its release: the pods carry MANAGER_POD_LABELS.
    assert monitor["spec"]["selector"] == {
        "matchLabels": {"gitlab-runner-fleet/component": "runner-manager"}
    }
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["gitlab-runner"]}


def test_the_managers_pod_monitor_carries_the_selector_labels_once():
    monitor = managers_pod_monitor({"prometheus": "ci"})
    assert monitor["metadata"]["labels"] == {"prometheus": "ci"}
    assert monitor["metadata"]["name"] == "gitlab-runner-fleet-managers"


def test_autoscaler_values_label_its_service_monitor_and_emit_per_node_group_metrics():
    values = autoscaler_monitoring_values("kube-system")
    # cluster-autoscaler config/flags/flags.go: emit-per-nodegroup-metrics (default false)
    # registers cluster_autoscaler_node_group_* (metrics/metrics.go RegisterAll).
    assert values["extraArgs"] == {"emit-per-nodegroup-metrics": True}
    service_monitor = values["serviceMonitor"]
    assert set(service_monitor) <= AUTOSCALER_SERVICE_MONITOR_KEYS
    assert service_monitor["enabled"] is True
    # The chart's default namespace `monitoring` may not exist; its own namespace does.
    assert service_monitor["namespace"] == "kube-system"
    # templates/servicemonitor.yaml writes `selector` as the ServiceMonitor's metadata.labels.
    assert service_monitor["selector"] == {"release": "kube-prometheus-stack"}
    custom = autoscaler_monitoring_values("kube-system", {"prometheus": "ci"})
    assert custom["serviceMonitor"]["selector"] == {"prometheus": "ci"}


def declare(**overrides: Any) -> ProgramRun:
    args: FleetMonitoringArgs = {"pools": POOLS, "namespace": "monitoring", **overrides}  # type: ignore[typeddict-item]
    return run_program(lambda: FleetMonitoring("fleet", args), return_error=True)


def test_the_component_creates_the_rule_and_the_dashboard_under_itself():
    run = declare()
    assert run.error is None
    component = run.one("gitlab-runner-fleet:index:FleetMonitoring")
    rule = run.one(RULE_TYPE)
    config_map = run.one(CONFIG_MAP_TYPE)
    assert rule.parent == component.urn
    assert config_map.parent == component.urn
    assert rule.inputs["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule.inputs["kind"] == "PrometheusRule"
    assert rule.inputs["metadata"] == {
        "name": RULE_NAME,
        "namespace": "monitoring",
        "labels": DEFAULT_PROMETHEUS_SELECTOR_LABELS,
    }
    assert rule.inputs["spec"] == prometheus_rule_spec(POOLS)
    assert config_map.inputs["metadata"] == {
        "name": DASHBOARD_CONFIG_MAP_NAME,
        "namespace": "monitoring",
        "labels": DEFAULT_DASHBOARD_LABELS,
    }
    # Rows only for the scalers the pools use (cluster-autoscaler by default).
    assert config_map.inputs["data"] == {DASHBOARD_FILE: dashboard_json({"cluster-autoscaler"})}
    monitor = run.one("kubernetes:monitoring.coreos.com/v1:PodMonitor")
    assert monitor.parent == component.urn
    assert monitor.inputs["spec"] == managers_pod_monitor()["spec"]
    assert run.component_outputs[component.urn] == {
        "pod_monitor": "monitoring/gitlab-runner-fleet-managers",
        "rule_name": f"monitoring/{RULE_NAME}",
        "dashboard_config_map": f"monitoring/{DASHBOARD_CONFIG_MAP_NAME}",
        "alerts": alert_names(prometheus_rule_spec(POOLS)),
    }


def test_labels_thresholds_and_runbook_url_reach_the_objects():
    run = declare(
        rule_labels={"prometheus": "ci"},
        dashboard_labels={"dashboards": "ci"},
        thresholds={"saturation_ratio": 0.8},
        node_group_regex="eks-build-.*",
        runbook_url="https://git.example.com/docs/observability.md",
    )
    assert run.error is None
    rule = run.one(RULE_TYPE)
    assert rule.inputs["metadata"]["labels"] == {"prometheus": "ci"}
    assert rule.inputs["spec"] == prometheus_rule_spec(
        POOLS,
        {"saturation_ratio": 0.8},
        node_group_regex="eks-build-.*",
        runbook_url="https://git.example.com/docs/observability.md",
    )
    assert run.one(CONFIG_MAP_TYPE).inputs["metadata"]["labels"] == {"dashboards": "ci"}


def test_rule_and_dashboard_can_each_be_left_out():
    run = declare(create_rule=False, create_dashboard=False)
    assert run.error is None
    assert run.of_type(RULE_TYPE) == []
    assert run.of_type(CONFIG_MAP_TYPE) == []
    component = run.one("gitlab-runner-fleet:index:FleetMonitoring")
    outputs = run.component_outputs[component.urn]
    # Pulumi leaves None outputs out of what the engine records.
    assert "rule_name" not in outputs
    assert "dashboard_config_map" not in outputs
    assert outputs["alerts"] == alert_names(prometheus_rule_spec(POOLS))


def test_a_cache_volume_adds_its_alert():
    volume: VolumeClaim = {"namespace": "runner-cache", "name": "runner-cache-data"}
    run = declare(cache_volume=volume)
    assert run.error is None
    assert run.one(RULE_TYPE).inputs["spec"] == prometheus_rule_spec(POOLS, cache_volume=volume)
    assert (
        "RunnerCacheVolumeNearlyFull"
        in run.component_outputs[run.one("gitlab-runner-fleet:index:FleetMonitoring").urn]["alerts"]
    )


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"pools": []}, "pools: at least one pool is needed"),
        ({"pools": [POOLS[0], POOLS[0]]}, "pools: names must be unique"),
        (
            {"pools": [{"name": "Not a label!", "job_namespace": "jobs"}]},
            "pool 'Not a label!' must be at most 63",
        ),
        (
            {"pools": [{"name": "a", "job_namespace": "jobs", "scaler": "fargate"}]},
            "pool 'a': scaler must be one of cluster-autoscaler, karpenter, none",
        ),
        (
            {"cache_volume": {"namespace": "Runner-Cache", "name": "data"}},
            "cache_volume.namespace 'Runner-Cache' must be a Kubernetes namespace",
        ),
        ({"namespace": "Monitoring"}, "namespace 'Monitoring' must be a Kubernetes namespace"),
        ({"rule_labels": {"release": "a b"}}, "rule_labels: release='a b' must be at most 63"),
        ({"dashboard_labels": {"-bad": "1"}}, "dashboard_labels: key '-bad'"),
        ({"thresholds": {"saturation_ratio": 2}}, "saturation_ratio must be a ratio"),
    ],
)
def test_invalid_arguments_are_refused_before_anything_is_declared(overrides, problem):
    run = declare(**overrides)
    assert isinstance(run.error, ValueError)
    assert problem in str(run.error)
    assert run.of_type(RULE_TYPE) == []
