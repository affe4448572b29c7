"""ClusterAutoscaler under Pulumi mocks: IRSA role, policy and the Helm release's values."""

from __future__ import annotations

import json

from components.aws.cluster_autoscaler import (
    NAMESPACE,
    SERVICE_ACCOUNT,
    ClusterAutoscaler,
    ClusterAutoscalerArgs,
)
from components.versions import (
    CLUSTER_AUTOSCALER_CHART_VERSION,
    CLUSTER_AUTOSCALER_IMAGE_TAGS,
)
from tests.harness import ProgramRun, policy_document, run_program

ISSUER = "oidc.eks.eu-west-1.amazonaws.com/id/ABC"
OIDC_ARN = f"arn:aws:iam::123456789012:oidc-provider/{ISSUER}"
BUILD_LABELS = {"intent": "build", "nodegroup-type": "stateless"}


def declare(version: str = "1.34") -> ProgramRun:
    args: ClusterAutoscalerArgs = {
        "cluster_name": "ci-prod",
        "region": "eu-west-1",
        "kubernetes_version": version,
        "oidc_provider_arn": OIDC_ARN,
        "build_labels": BUILD_LABELS,
        "expander": "least-waste",
        "scale_down_unneeded_time": "15m",
    }
    return run_program(lambda: ClusterAutoscaler("cluster-autoscaler", args))


def test_release_is_the_pinned_official_chart_in_kube_system() -> None:
    release = declare().one("kubernetes:helm.sh/v3:Release")
    assert release.inputs["chart"] == "cluster-autoscaler"
    assert release.inputs["version"] == CLUSTER_AUTOSCALER_CHART_VERSION == "9.59.0"
    assert release.inputs["repositoryOpts"] == {"repo": "https://kubernetes.github.io/autoscaler"}
    assert release.inputs["namespace"] == "kube-system"


def test_values_discover_this_cluster_in_its_region() -> None:
    values = declare().one("kubernetes:helm.sh/v3:Release").inputs["values"]
    assert values["cloudProvider"] == "aws"
    assert values["autoDiscovery"] == {"clusterName": "ci-prod"}
    assert values["awsRegion"] == "eu-west-1"
    assert values["extraArgs"] == {
        "expander": "least-waste",
        "balance-similar-node-groups": True,
        "skip-nodes-with-local-storage": False,
        "scale-down-unneeded-time": "15m",
    }


def test_image_matches_the_cluster_minor() -> None:
    for version in ("1.30", "1.35"):
        values = declare(version).one("kubernetes:helm.sh/v3:Release").inputs["values"]
        assert values["image"]["tag"] == CLUSTER_AUTOSCALER_IMAGE_TAGS[version]
        assert values["image"]["tag"].startswith(f"v{version}.")


def test_service_account_is_the_one_the_role_trusts() -> None:
    run = declare()
    values = run.one("kubernetes:helm.sh/v3:Release").inputs["values"]
    role = run.one("aws:iam/role:Role")
    service_account = values["rbac"]["serviceAccount"]
    assert service_account["create"] is True
    assert service_account["name"] == SERVICE_ACCOUNT
    assert service_account["annotations"] == {"eks.amazonaws.com/role-arn": role.state["arn"]}
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    conditions = statement["Condition"]["StringEquals"]
    assert conditions[f"{ISSUER}:sub"] == (
        f"system:serviceaccount:{NAMESPACE}:{service_account['name']}"
    )
    assert conditions[f"{ISSUER}:aud"] == "sts.amazonaws.com"


def test_the_release_gets_the_role_only_once_its_policy_is_attached() -> None:
    run = declare()
    attachment = run.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert attachment.urn in run.one("kubernetes:helm.sh/v3:Release").dependencies


def test_role_holds_the_scoped_autoscaler_policy() -> None:
    run = declare()
    policy = run.one("aws:iam/policy:Policy")
    sids = {s["Sid"] for s in policy_document(policy)["Statement"]}
    assert sids == {
        "DiscoverNodeGroups",
        "DescribeThisClustersNodeGroups",
        "ScaleThisClustersGroups",
    }
    attachment = run.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert attachment.inputs["policyArn"] == policy.state["arn"]
    assert attachment.inputs["role"] == run.one("aws:iam/role:Role").state["name"]


def test_autoscaler_stays_off_spot_build_nodes() -> None:
    values = declare().one("kubernetes:helm.sh/v3:Release").inputs["values"]
    (term,) = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert term["matchExpressions"] == [
        {"key": "eks.amazonaws.com/capacityType", "operator": "NotIn", "values": ["SPOT"]},
        {"key": "intent", "operator": "NotIn", "values": ["build"]},
        {"key": "nodegroup-type", "operator": "NotIn", "values": ["stateless"]},
    ]
    assert "tolerations" not in values


def test_an_unpinned_kubernetes_minor_is_refused() -> None:
    run = run_program(
        lambda: ClusterAutoscaler(
            "ca",
            {
                "cluster_name": "c",
                "region": "eu-west-1",
                "kubernetes_version": "1.20",
                "oidc_provider_arn": OIDC_ARN,
                "build_labels": {},
            },
        ),
        return_error=True,
    )
    assert "no pinned image for Kubernetes 1.20" in str(run.error)
