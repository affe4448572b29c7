"""The Grafana dashboard: real metrics only, every runner query per pool, a sound layout."""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.models.dashboard import Dashboard

from components.workloads.dashboard import (
    DASHBOARD_UID,
    DATASOURCE_VARIABLE,
    POOL_VARIABLE,
    dashboard_json,
    fleet_dashboard,
)
from components.workloads.runner_metrics import API_ENDPOINT, NODE_POOL_LABEL, RUNNER_METRICS
from tests.test_alert_rules import KNOWN_SERIES, read_promql, unknown_names_and_labels

RUNNER_SERIES = {series for metric in RUNNER_METRICS for series in metric.series_names()}


def panels() -> list[dict[str, Any]]:
    model = fleet_dashboard()
    flat = []
    for panel in model["panels"]:
        flat.append(panel)
        flat.extend(panel.get("panels", []))
    return flat


def graph_panels() -> list[dict[str, Any]]:
    return [panel for panel in panels() if panel["type"] != "row"]


def queries() -> list[str]:
    return [target["expr"] for panel in graph_panels() for target in panel["targets"]]


def test_every_query_reads_only_metrics_and_labels_the_exporters_have():
    for expr in queries():
        assert unknown_names_and_labels(expr) == [], expr
        assert read_promql(expr).metric_names <= set(KNOWN_SERIES), expr


def test_every_runner_query_is_filtered_by_the_pool_variable():
    pool_filter = f'pool=~"${POOL_VARIABLE}"'
    for expr in queries():
        for selector in read_promql(expr).selectors:
            if selector.metric in RUNNER_SERIES:
                assert selector.matchers.get("pool") == ("=~", f"${POOL_VARIABLE}"), expr
                assert pool_filter in expr


def test_build_nodes_are_counted_by_the_kube_state_metrics_pool_label():
    # kube-state-metrics internal/store/utils.go: `label_` + the key with `-`, `/`, `.` as `_`.
    assert NODE_POOL_LABEL == "label_gitlab_runner_fleet_pool"
    assert (
        f'count by ({NODE_POOL_LABEL}) (kube_node_labels{{{NODE_POOL_LABEL}=~"$pool"}})'
        in queries()
    )


def panel_metrics(panel: dict[str, Any]) -> set[str]:
    return {name for t in panel["targets"] for name in read_promql(t["expr"]).metric_names}


def test_the_panels_the_fleet_needs_are_there():
    by_title = {panel["title"]: panel for panel in graph_panels()}
    running = by_title["Jobs running vs concurrent"]
    assert panel_metrics(running) == {"gitlab_runner_jobs", "gitlab_runner_concurrent"}
    queue = by_title["Queue wait before pick-up (p50, p95)"]
    assert [t["expr"].split(",")[0] for t in queue["targets"]] == [
        "histogram_quantile(0.5",
        "histogram_quantile(0.95",
    ]
    assert panel_metrics(queue) == {"gitlab_runner_job_queue_duration_seconds_bucket"}
    failures = by_title["Failed jobs by reason"]
    assert "failure_reason" in read_promql(failures["targets"][0]["expr"]).grouping_labels
    # The runner's `current` is the pause Deployment's spec.replicas (pause_pod_manager.go);
    # pods stuck Pending show only in kube-state-metrics' available replicas.
    pause = by_title["Pause pods wanted vs available"]
    assert panel_metrics(pause) == {
        "gitlab_runner_kubernetes_autoscaler_pause_pods_desired",
        "kube_deployment_status_replicas_available",
        "kube_deployment_labels",
    }
    # builds_helper.go counts a job in gitlab_runner_jobs_total when a manager picks it up.
    assert panel_metrics(by_title["Jobs picked up per hour"]) == {"gitlab_runner_jobs_total"}
    api = by_title["GitLab API answers other than 2xx"]["targets"][0]
    assert read_promql(api["expr"]).grouping_labels == {"pool", API_ENDPOINT, "status"}
    assert API_ENDPOINT in api["legendFormat"]
    assert panel_metrics(by_title["Build nodes by pool"]) == {"kube_node_labels"}
    # commands/builds_helper.go observes gitlab_runner_job_duration_seconds when a job ends.
    assert panel_metrics(by_title["Job duration (p50, p95)"]) == {
        "gitlab_runner_job_duration_seconds_bucket"
    }


def test_the_pool_variable_lists_the_pools_the_managers_report():
    variables = {v["name"]: v for v in fleet_dashboard()["templating"]["list"]}
    pool = variables[POOL_VARIABLE]
    assert pool["type"] == "query"
    assert pool["query"] == "label_values(gitlab_runner_version_info, pool)"
    assert pool["multi"] is True
    assert pool["includeAll"] is True
    assert pool["allValue"] == ".*"
    assert variables[DATASOURCE_VARIABLE]["type"] == "datasource"
    assert variables[DATASOURCE_VARIABLE]["query"] == "prometheus"


def test_every_panel_queries_the_chosen_data_source():
    for panel in graph_panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": f"${{{DATASOURCE_VARIABLE}}}"}


def test_panels_have_unique_ids_and_do_not_overlap_on_the_grid():
    all_panels = panels()
    ids = [panel["id"] for panel in all_panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in all_panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, panel["title"]
        cells |= area


def test_the_json_is_stable_and_reads_back_as_a_grafana_dashboard():
    text = dashboard_json()
    assert text == dashboard_json()
    model = json.loads(text)
    assert model["uid"] == DASHBOARD_UID
    assert model["editable"] is False
    assert Dashboard.from_json(model).uid == DASHBOARD_UID


def test_rows_of_a_scaler_the_fleet_does_not_run_are_left_out():
    """An empty row would read like a fault (found trying it as a new user: dev showed
    cluster-autoscaler panels without one)."""

    def rows(scalers: set[str]) -> list[str]:
        model = fleet_dashboard(scalers)
        return [p["title"] for p in model["panels"] if p["type"] == "row"]

    assert "cluster-autoscaler" not in rows({"karpenter"})
    assert "Karpenter" in rows({"karpenter"})
    assert "Karpenter" not in rows({"cluster-autoscaler"})
    assert {"cluster-autoscaler", "Karpenter"} <= set(rows({"cluster-autoscaler", "karpenter"}))
