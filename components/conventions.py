"""Names and keys that components of several folders agree on. Pure data.

`aws/` and `workloads/` never import each other: what both need lives here (or in the other
shared modules: `build_nodes.py`, `naming.py`, `kubernetes_names.py`, `versions.py`).
"""

IRSA_ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
"""The service account annotation that makes EKS inject an IAM role's web identity (IRSA)."""

DEFAULT_RUNNER_NAMESPACE = "gitlab-runner"
"""The runner managers' namespace unless a stack names another (`runner.namespace`)."""
DEFAULT_RUNNER_SERVICE_ACCOUNT = "gitlab-runner"
"""The service account every pool's manager runs as; the cache's IRSA role trusts it."""
DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS = 3600
"""How long a stopping manager waits for its jobs: also the longest job a runner accepts."""

DEFAULT_PROMETHEUS_SELECTOR_LABELS = {"release": "kube-prometheus-stack"}
"""What kube-prometheus-stack's Prometheus selects PodMonitors, ServiceMonitors and rules by
(`*SelectorNilUsesHelmValues: true`, templates/prometheus/prometheus.yaml), for a release named
`kube-prometheus-stack`."""
