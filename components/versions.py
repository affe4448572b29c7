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

# Karpenter: the controller chart and its CRD chart, published together under one version
# (karpenter-provider-aws hack/release/common.sh). One release serves every Kubernetes minor
# above: 1.14.x supports 1.26 to 1.36 (pkg/providers/version/version.go MinK8sVersion,
# MaxK8sVersion).
KARPENTER_CHART_REPO = "oci://public.ecr.aws/karpenter"
KARPENTER_CHART = "karpenter"
KARPENTER_CRD_CHART = "karpenter-crd"
KARPENTER_VERSION = "1.14.1"
KARPENTER_KUBERNETES_VERSIONS = ("1.26", "1.36")
"""The oldest and newest Kubernetes minor KARPENTER_VERSION supports."""
# The EKS-optimized AL2023 AMI release build nodes of Karpenter pools run: an amazon-eks-ami
# release tag (CHANGELOG.md lists its AMIs for Kubernetes 1.30 to 1.36). Never `@latest`:
# every new AMI would drift, and so replace, every node of every Karpenter pool.
KARPENTER_AMI_ALIAS = "al2023@v20260714"
