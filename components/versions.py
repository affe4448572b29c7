"""Every pinned upstream version, in one place. Upgrade notes live in README.md."""

CLUSTER_AUTOSCALER_CHART_REPO = "https://kubernetes.github.io/autoscaler"
CLUSTER_AUTOSCALER_CHART = "cluster-autoscaler"
CLUSTER_AUTOSCALER_CHART_VERSION = "9.59.0"

# cluster-autoscaler must match the cluster's Kubernetes minor: newest patch of each minor.
CLUSTER_AUTOSCALER_IMAGE_TAGS: dict[str, str] = {
    "1.30": "v1.30.7",
    "1.31": "v1.31.5",
    "1.32": "v1.32.7",
    "1.33": "v1.33.6",
    "1.34": "v1.34.5",
    "1.35": "v1.35.2",
}
SUPPORTED_KUBERNETES_VERSIONS = tuple(CLUSTER_AUTOSCALER_IMAGE_TAGS)

GITLAB_RUNNER_CHART_REPO = "https://charts.gitlab.io"
GITLAB_RUNNER_CHART = "gitlab-runner"
GITLAB_RUNNER_CHART_VERSION = "0.92.0"
# The runner the pinned chart installs (its appVersion); config.toml keys follow this version.
GITLAB_RUNNER_VERSION = "19.3.0"
