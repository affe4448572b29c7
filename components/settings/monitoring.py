"""`monitoring`: scraping, alerts and the dashboard for a Prometheus operator setup."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator
from pydantic.alias_generators import to_snake

from ..conventions import DEFAULT_PROMETHEUS_SELECTOR_LABELS
from ..kubernetes_names import NamespaceName, checked_labels
from ..workloads.alert_rules import DEFAULT_RUNBOOK_URL, threshold_problems
from ..workloads.monitoring import DEFAULT_DASHBOARD_LABELS
from .base import Section


class MonitoringSettings(Section):
    """What the Prometheus operator and Grafana get: PodMonitor, ServiceMonitor, rule, dashboard."""

    config_key: ClassVar[str] = "monitoring"

    enabled: bool = Field(
        False,
        description="Scrape the runner managers (PodMonitor with a `pool` label) and "
        "cluster-autoscaler (ServiceMonitor), and create the alert rules and the dashboard. "
        "Needs the Prometheus operator's CRDs (e.g. kube-prometheus-stack).",
    )
    namespace: NamespaceName = Field(
        "monitoring", description="Existing namespace of the PrometheusRule and the dashboard."
    )
    selector_labels: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_PROMETHEUS_SELECTOR_LABELS),
        description="Labels on the PodMonitor, ServiceMonitor and PrometheusRule: what your "
        "Prometheus selects (kube-prometheus-stack: `release: <its release>`).",
    )
    dashboard_labels: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_DASHBOARD_LABELS),
        description="Labels of the dashboard ConfigMap that the Grafana sidecar watches for.",
    )
    alerts: bool = Field(True, description="Create the PrometheusRule with the fleet's alerts.")
    dashboard: bool = Field(True, description="Create the Grafana dashboard ConfigMap.")
    runbook_url: str = Field(
        DEFAULT_RUNBOOK_URL,
        description="Where the alerts' runbook links point: your copy of docs/observability.md.",
    )
    thresholds: dict[str, Any] = Field(
        default_factory=dict,
        description="Alert thresholds in camelCase, e.g. `queueWaitP95Seconds: 300`, "
        "`saturationRatio: 0.9` (docs/observability.md lists them all).",
    )

    @field_validator("selector_labels", "dashboard_labels")
    @classmethod
    def _valid_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        return checked_labels(labels)

    @field_validator("thresholds")
    @classmethod
    def _valid_thresholds(cls, thresholds: dict[str, Any]) -> dict[str, Any]:
        if problems := threshold_problems(cls.snake_thresholds(thresholds)):
            raise ValueError("; ".join(problems))
        return thresholds

    @staticmethod
    def snake_thresholds(thresholds: dict[str, Any]) -> dict[str, Any]:
        """The thresholds keyed as the alert rules take them."""
        return {to_snake(key): value for key, value in thresholds.items()}
