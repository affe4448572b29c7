"""ClusterAutoscaler under Pulumi mocks: IRSA role, policy and the Helm release's values."""

from __future__ import annotations

import json

from components.aws.cluster_autoscaler import (
    NAMESPACE,
    ClusterAutoscaler,
    ClusterAutoscalerArgs,
)
from components.naming import TagArgs
from components.versions import (
    CLUSTER_AUTOSCALER_CHART_VERSION,
    CLUSTER_AUTOSCALER_IMAGE_TAGS,
)
from tests.harness import ProgramRun, policy_document, run_program

ISSUER = "oidc.eks.eu-west-1.amazonaws.com/id/ABC"
OIDC_ARN = f"arn:aws:iam::123456789012:oidc-provider/{ISSUER}"
POOL_LABELS = [{"gitlab-runner-fleet/pool": "default"}, {"gitlab-runner-fleet/pool": "arm64"}]
DISCOVERY: TagArgs = {"key": "gitlab-runner-fleet/autoscaler", "value": "gitlab-runner-fleet-prod"}
INSTANCE = "cluster-autoscaler-gitlab-runner-fleet-prod"


def declare(version: str = "1.34") -> ProgramRun:
    args: ClusterAutoscalerArgs = {
        "cluster_name": "ci-prod",
        "region": "eu-west-1",
        "kubernetes_version": version,
        "oidc_provider_arn": OIDC_ARN,
        "discovery_tag": DISCOVERY,
        "pool_labels": POOL_LABELS,
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


def test_values_discover_only_this_stacks_pools_by_their_own_tag() -> None:
    values = declare().one("kubernetes:helm.sh/v3:Release").inputs["values"]
    assert values["cloudProvider"] == "aws"
    assert values["awsRegion"] == "eu-west-1"
    # The chart builds --node-group-auto-discovery=asg:tag=<tags joined by ","> only when
    # clusterName is set, and its default tags are the two EKS puts on every managed group
    # (cluster-autoscaler/charts/cluster-autoscaler values.yaml and templates/deployment.yaml).
    assert values["autoDiscovery"]["clusterName"] == "ci-prod"
    assert values["autoDiscovery"]["tags"] == [
        "gitlab-runner-fleet/autoscaler=gitlab-runner-fleet-prod"
    ]
    assert not any("k8s.io/cluster-autoscaler" in tag for tag in values["autoDiscovery"]["tags"])


def test_discovery_spec_keeps_the_tag_value_as_a_filter() -> None:
    # parseASGAutoDiscoverySpec splits `k=v` into a tag:k = v filter (cloudprovider/aws/
    # aws_manager.go); a bare key would match any value, i.e. every stack's pools.
    values = declare().one("kubernetes:helm.sh/v3:Release").inputs["values"]
    key, value = values["autoDiscovery"]["tags"][0].split("=", 1)
    assert (key, value) == (DISCOVERY["key"], DISCOVERY["value"])


def test_extra_args_keep_ci_nodes_scalable_and_this_instance_apart() -> None:
    values = declare().one("kubernetes:helm.sh/v3:Release").inputs["values"]
    assert values["extraArgs"] == {
        "expander": "least-waste",
        "balance-similar-node-groups": True,
        "skip-nodes-with-local-storage": False,
        "scale-down-unneeded-time": "15m",
        # Defaults `cluster-autoscaler` / `cluster-autoscaler-status` in kube-system (main.go
        # leaderElectionConfiguration, config/flags/flags.go): beside a platform-wide
        # autoscaler, two instances would share one lease and one status ConfigMap.
        "leader-elect-resource-name": INSTANCE,
        "status-config-map-name": f"{INSTANCE}-status",
    }


def test_release_and_service_account_are_named_apart_from_a_platform_autoscaler() -> None:
    run = declare()
    release = run.one("kubernetes:helm.sh/v3:Release")
    values = release.inputs["values"]
    assert release.inputs["name"] == values["fullnameOverride"] == INSTANCE
    assert values["rbac"]["serviceAccount"]["name"] == INSTANCE
    assert "cluster-autoscaler" not in {release.inputs["name"], values["fullnameOverride"]}


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
    assert service_account["name"] == INSTANCE
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
        "ScaleThisStacksPools",
    }
    (scale,) = [
        s for s in policy_document(policy)["Statement"] if s["Sid"] == "ScaleThisStacksPools"
    ]
    assert scale["Condition"] == {
        "StringEquals": {f"aws:ResourceTag/{DISCOVERY['key']}": DISCOVERY["value"]}
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
        {"key": "karpenter.sh/capacity-type", "operator": "NotIn", "values": ["spot"]},
        {"key": "gitlab-runner-fleet/pool", "operator": "NotIn", "values": ["default", "arm64"]},
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
                "discovery_tag": DISCOVERY,
                "pool_labels": [],
            },
        ),
        return_error=True,
    )
    assert "kubernetes_version: no pinned cluster-autoscaler image for '1.20'" in str(run.error)


def test_the_renamed_lease_and_status_configmap_are_within_the_release_rbac() -> None:
    values = declare().one("kubernetes:helm.sh/v3:Release").inputs["values"]
    lease = values["extraArgs"]["leader-elect-resource-name"]
    status = values["extraArgs"]["status-config-map-name"]
    # The chart's own rules name only `cluster-autoscaler` (leases) and
    # `cluster-autoscaler-status` (configmaps) (cluster-autoscaler/charts/cluster-autoscaler
    # templates/role.yaml and clusterrole.yaml); leader election starts with a Get of the lease,
    # and a Forbidden answer means it never becomes leader and never scales anything.
    rules = values["rbac"]["additionalRules"]
    lease_rule = next(r for r in rules if r["resources"] == ["leases"])
    assert lease_rule["apiGroups"] == ["coordination.k8s.io"]
    assert lease_rule["resourceNames"] == [lease]
    assert {"get", "update"} <= set(lease_rule["verbs"])
    status_rule = next(r for r in rules if r["resources"] == ["configmaps"])
    assert status_rule["resourceNames"] == [status]
    assert {"get", "update"} <= set(status_rule["verbs"])
