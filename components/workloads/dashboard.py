"""The fleet's Grafana dashboard, generated with grafana-foundation-sdk. Pure: no Pulumi runtime.

Every runner query filters on the `pool` template variable (the label the managers' PodMonitor
adds, see monitoring.py); build nodes are counted from kube-state-metrics' `kube_node_labels`
and pause pods from its Deployment metrics, which carry the pool's node label and the pause
Deployment's runner label only once those are allow-listed there (docs/observability.md).
Build nodes carry the pool's label under either scaler (a node group's labels, a NodePool's
template labels); Karpenter's own panels read its NodePools, one per pool by name.
"""

import json
from collections.abc import Collection
from typing import Any

from grafana_foundation_sdk.builders import common, dashboard, prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    TooltipDisplayMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    VariableRefresh,
    VariableSort,
)

from ..karpenter import NODE_POOL_NAME_PREFIX
from .alert_rules import (
    CLUSTER_AUTOSCALER,
    KARPENTER,
    LAUNCH_FAILURE_REASONS,
    REGISTRATION_FAILURE_REASON,
)
from .runner_metrics import (
    API_ENDPOINT,
    NODE_POOL,
    NODE_POOL_LABEL,
    PAUSE_DEPLOYMENT_PREFIX,
    PAUSE_DEPLOYMENT_RUNNER,
)

DASHBOARD_UID = "gitlab-runner-fleet"
DASHBOARD_TITLE = "GitLab Runner fleet"
POOL_VARIABLE = "pool"
DATASOURCE_VARIABLE = "datasource"
_DATASOURCE = DataSourceRef(type_val="prometheus", uid=f"${{{DATASOURCE_VARIABLE}}}")
_POOLS = f'pool=~"${POOL_VARIABLE}"'
_HEIGHT = 8
_PAUSE_DEPLOYMENTS = f'deployment=~"{PAUSE_DEPLOYMENT_PREFIX}.+"'
_PAUSE_PODS_AVAILABLE = (
    f"sum by (pool) (kube_deployment_status_replicas_available{{{_PAUSE_DEPLOYMENTS}}}"
    " * on (namespace, deployment) group_left (runner) max by (namespace, deployment, runner) "
    f"(label_replace(kube_deployment_labels{{{_PAUSE_DEPLOYMENTS}}}, "
    f'"runner", "$1", "{PAUSE_DEPLOYMENT_RUNNER}", "(.+)"))'
    " * on (runner) group_left (pool) group by (runner, pool) "
    f"(gitlab_runner_kubernetes_autoscaler_pause_pods_desired{{{_POOLS}}}))"
)
"""Available pause pods per pool: kube-state-metrics' view of the pause Deployments, joined to
the pool through the runner's short token on the Deployment's label."""
_NODE_POOLS = f'{NODE_POOL}=~"{NODE_POOL_NAME_PREFIX}(${POOL_VARIABLE})"'
"""The NodePools of the selected pools (each named after its pool)."""
_GIVEN_UP = "|".join((*LAUNCH_FAILURE_REASONS, REGISTRATION_FAILURE_REASON))


def _per_pool(expr: str) -> str:
    """A Karpenter query with each NodePool's pool as `pool`."""
    return f'label_replace({expr}, "pool", "$1", "{NODE_POOL}", "{NODE_POOL_NAME_PREFIX}(.+)")'


def fleet_dashboard(scalers: Collection[str] = (CLUSTER_AUTOSCALER, KARPENTER)) -> dict[str, Any]:
    """The dashboard model (Grafana's JSON), per pool through the `pool` variable, with a row
    for each of `scalers` the fleet runs and scrapes (an empty row would read like a fault)."""
    builder = (
        dashboard.Dashboard(DASHBOARD_TITLE)
        .uid(DASHBOARD_UID)
        .tags(["gitlab-runner", "ci"])
        .description("GitLab Runner managers, their jobs and their build nodes, per pool.")
        .refresh("1m")
        .time("now-6h", "now")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .readonly()
        .with_variable(
            dashboard.DatasourceVariable(DATASOURCE_VARIABLE)
            .label("Data source")
            .type("prometheus")
        )
        .with_variable(
            dashboard.QueryVariable(POOL_VARIABLE)
            .label("Pool")
            .datasource(_DATASOURCE)
            .query(f"label_values(gitlab_runner_version_info, {POOL_VARIABLE})")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
    )
    panel_id = iter(range(1, 100))

    def panel(title: str, unit: str, width: int, *queries: tuple[str, str]) -> timeseries.Panel:
        built = (
            timeseries.Panel()
            .id(next(panel_id))
            .title(title)
            .datasource(_DATASOURCE)
            .unit(unit)
            .min(0)
            .height(_HEIGHT)
            .span(width)
            .legend(
                common.VizLegendOptions()
                .show_legend(True)
                .display_mode(LegendDisplayMode.LIST)
                .placement(LegendPlacement.BOTTOM)
            )
            .tooltip(
                common.VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING)
            )
        )
        for ref, (expr, legend) in zip("ABCDEFGH", queries, strict=False):
            built.with_target(
                prometheus.Dataquery().ref_id(ref).expr(expr).legend_format(legend).range()
            )
        return built

    def row(title: str) -> dashboard.Row:
        return dashboard.Row(title).id(next(panel_id))

    rate = "[$__rate_interval]"
    builder = (
        builder.with_row(row("Capacity"))
        .with_panel(
            panel(
                "Jobs running vs concurrent",
                "short",
                12,
                (f"sum by (pool) (gitlab_runner_jobs{{{_POOLS}}})", "{{pool}} running"),
                (f"sum by (pool) (gitlab_runner_concurrent{{{_POOLS}}})", "{{pool}} concurrent"),
            )
        )
        .with_panel(
            panel(
                "Queue wait before pick-up (p50, p95)",
                "s",
                12,
                *(
                    (
                        f"histogram_quantile({quantile}, sum by (pool, le) (rate("
                        f"gitlab_runner_job_queue_duration_seconds_bucket{{{_POOLS}}}{rate})))",
                        f"{{{{pool}}}} p{int(quantile * 100)}",
                    )
                    for quantile in (0.5, 0.95)
                ),
            )
        )
        .with_panel(
            panel(
                "Pause pods wanted vs available",
                "short",
                8,
                (
                    "sum by (pool) (gitlab_runner_kubernetes_autoscaler_pause_pods_desired"
                    f"{{{_POOLS}}})",
                    "{{pool}} wanted",
                ),
                (_PAUSE_PODS_AVAILABLE, "{{pool}} available"),
            )
        )
        .with_panel(
            panel(
                "Build nodes by pool",
                "short",
                8,
                (
                    f"count by ({NODE_POOL_LABEL}) "
                    f'(kube_node_labels{{{NODE_POOL_LABEL}=~"${POOL_VARIABLE}"}})',
                    f"{{{{{NODE_POOL_LABEL}}}}}",
                ),
            )
        )
        .with_panel(
            panel(
                "Jobs picked up per hour",
                "short",
                8,
                (f"sum by (pool) (increase(gitlab_runner_jobs_total{{{_POOLS}}}[1h]))", "{{pool}}"),
            )
        )
        .with_panel(
            panel(
                "Job duration (p50, p95)",
                "s",
                24,
                *(
                    (
                        f"histogram_quantile({quantile}, sum by (pool, le) (rate("
                        f"gitlab_runner_job_duration_seconds_bucket{{{_POOLS}}}{rate})))",
                        f"{{{{pool}}}} p{int(quantile * 100)}",
                    )
                    for quantile in (0.5, 0.95)
                ),
            )
        )
        .with_row(row("Failures"))
        .with_panel(
            panel(
                "Failed jobs by reason",
                "cpm",
                12,
                (
                    "sum by (pool, failure_reason) (rate("
                    f"gitlab_runner_failed_jobs_total{{{_POOLS}}}{rate})) * 60",
                    "{{pool}} {{failure_reason}}",
                ),
            )
        )
        .with_panel(
            panel(
                "GitLab API answers other than 2xx",
                "reqps",
                12,
                (
                    f"sum by (pool, {API_ENDPOINT}, status) (rate("
                    f'gitlab_runner_api_request_statuses_total{{{_POOLS}, status!~"2.."}}{rate}))',
                    f"{{{{pool}}}} {{{{{API_ENDPOINT}}}}} {{{{status}}}}",
                ),
            )
        )
    )
    if CLUSTER_AUTOSCALER in scalers:
        builder = (
            builder.with_row(row("cluster-autoscaler"))
            .with_panel(
                panel(
                    "Node groups backed off",
                    "short",
                    8,
                    (
                        "max by (node_group) (cluster_autoscaler_node_group_backoff_status)",
                        "{{node_group}}",
                    ),
                )
            )
            .with_panel(
                panel(
                    "Unschedulable pods",
                    "short",
                    8,
                    ("sum by (type) (cluster_autoscaler_unschedulable_pods_count)", "{{type}}"),
                )
            )
            .with_panel(
                panel(
                    "Failed scale-ups",
                    "short",
                    8,
                    (
                        "sum by (reason) (increase("
                        f"cluster_autoscaler_failed_scale_ups_total{rate}))",
                        "{{reason}}",
                    ),
                )
            )
        )
    if KARPENTER in scalers:
        builder = (
            builder.with_row(row("Karpenter"))
            .with_panel(
                panel(
                    "NodePool nodes vs limit",
                    "short",
                    8,
                    *(
                        (
                            _per_pool(
                                f"max by ({NODE_POOL}) (karpenter_nodepools_{kind}"
                                f'{{{_NODE_POOLS}, resource_type="nodes"}})'
                            ),
                            f"{{{{pool}}}} {legend}",
                        )
                        for kind, legend in (("usage", "nodes"), ("limit", "limit"))
                    ),
                )
            )
            .with_panel(
                panel(
                    "Nodes given up (launch, registration)",
                    "short",
                    8,
                    (
                        _per_pool(
                            f"sum by ({NODE_POOL}, reason) (increase("
                            "karpenter_nodeclaims_disrupted_total"
                            f'{{{_NODE_POOLS}, reason=~"{_GIVEN_UP}"}}{rate}))'
                        ),
                        "{{pool}} {{reason}}",
                    ),
                )
            )
            .with_panel(
                panel(
                    # The controller's histogram has no NodePool label: every pod it provisions.
                    "Pending pod to running, all of Karpenter's pods (p50, p95)",
                    "s",
                    8,
                    *(
                        (
                            f"histogram_quantile({quantile}, sum by (le) (rate("
                            f"karpenter_pods_provisioning_startup_duration_seconds_bucket{rate})))",
                            f"p{int(quantile * 100)}",
                        )
                        for quantile in (0.5, 0.95)
                    ),
                )
            )
        )
    model: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return model


def dashboard_json(scalers: Collection[str] = (CLUSTER_AUTOSCALER, KARPENTER)) -> str:
    """The dashboard as the file Grafana's dashboard sidecar loads."""
    return json.dumps(fleet_dashboard(scalers), indent=2, sort_keys=True)
