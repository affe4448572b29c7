"""Every stack file evaluates end to end under mocks, with the properties its comments promise."""

from __future__ import annotations

import base64
import json
import logging
import tomllib
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

from offline import FleetMocks
from tests.harness import (
    ACCOUNT_ID,
    DEFAULT_REGION,
    MOCK_ROUTE_TABLES,
    PROJECT,
    RUNNER_TOKEN,
    ProgramRun,
    Registered,
    config_from_stack_file,
    mock_issuer,
    run_stack,
    settings_config,
    stack_names,
)

STACKS = stack_names()
EKS_STACKS = [
    s for s in STACKS if config_from_stack_file(s)[f"{PROJECT}:cluster"].get("mode") != "kubeconfig"
]
IN_CLUSTER_EXPORTS = {
    "clusterName",
    "cachePrefix",
    "runnerNamespace",
    "jobNamespaces",
    "pools",
    "runnerConfigChecksums",
    "registryMirror",
}
NODE_GROUP_EXPORTS = {
    "buildNodeGroups",
    "buildAutoscalingGroups",
    "buildNodeRoleArns",
    "buildScaleFromZeroTags",
    "clusterAutoscalerRoleArn",
    "clusterAutoscalerDiscoveryTag",
}
KARPENTER_EXPORTS = {
    "karpenterNodePools",
    "karpenterNodeRoleArn",
    "karpenterRoleArn",
    "karpenterInterruptionQueue",
}
EXPORTS = {
    *IN_CLUSTER_EXPORTS,
    "cacheBucketName",
    "cacheBucketArn",
    "cacheBucketRegion",
    "cachePolicyArn",
    "cacheRoleArn",
    "networkPolicyEnforcement",
    "registryMirrorNodeUrl",
}
ACCESS_KEY_EXPORTS = {"cacheUserName", "cacheAccessKeyId", "cacheSecretAccessKey"}
TAGGABLE = {
    "aws:s3/bucket:Bucket",
    "aws:iam/policy:Policy",
    "aws:iam/role:Role",
    "aws:iam/user:User",
    "aws:eks/nodeGroup:NodeGroup",
    "aws:ec2/vpcEndpoint:VpcEndpoint",
    "aws:ec2/launchTemplate:LaunchTemplate",
    "aws:sqs/queue:Queue",
    "aws:cloudwatch/eventRule:EventRule",
    "eks:index:Cluster",
}


def scalers(stack: str) -> dict[str, str]:
    """Each pool of a stack file with its scaler."""
    return {
        pool["name"]: pool.get("scaler", "clusterAutoscaler")
        for pool in config_from_stack_file(stack)[f"{PROJECT}:pools"]
    }


def test_every_environment_has_a_stack_file() -> None:
    assert set(STACKS) == {"dev", "staging", "prod", "onprem", "basement"}
    assert EKS_STACKS == ["dev", "prod", "staging"]


def test_onprem_reaches_its_cluster_through_the_secret_kubeconfig_and_creates_nothing_in_aws() -> (
    None
):
    run = run_stack("onprem")
    assert not [r for r in run.resources if r.type.startswith(("aws:", "eks:"))]
    provider = run.one("pulumi:providers:kubernetes")
    assert is_rpc_secret(provider.inputs["kubeconfig"])
    assert provider.inputs["clusterIdentifier"] == "k3s-office"
    in_cluster = [r for r in run.resources if r.type.startswith("kubernetes:")]
    assert all(r.provider.startswith(f"{provider.urn}::") for r in in_cluster)
    assert set(run.outputs) == IN_CLUSTER_EXPORTS
    assert run.outputs["clusterName"] == "k3s-office"


def test_onprem_runner_uses_minio_with_access_keys_from_secrets() -> None:
    run = run_stack("onprem")
    values = runner_values(run, "office")
    account = manager_account(run)
    assert account.inputs["metadata"]["annotations"] == {}
    assert values["runners"]["cache"] == {"secretName": "gitlab-runner-office-cache"}
    cache_secret = next(
        s
        for s in run.of_type("kubernetes:core/v1:Secret")
        if s.inputs["metadata"]["name"] == "gitlab-runner-office-cache"
    )
    assert is_rpc_secret(cache_secret.inputs["stringData"])
    assert set(unwrap_rpc_secret(cache_secret.inputs["stringData"])) == {"accesskey", "secretkey"}
    config = tomllib.loads(values["runners"]["config"])["runners"][0]
    assert config["cache"]["s3"] == {
        "ServerAddress": "minio.office.example.com",
        "BucketName": "gitlab-runner-cache",
        "AuthenticationType": "access-key",
        "Insecure": False,
        "PathStyle": True,
    }
    assert config["kubernetes"]["node_tolerations"] == {"buildInstance=true": "NoSchedule"}
    assert config["kubernetes"]["node_selector"] == {
        "intent": "build",
        "kubernetes.io/arch": "amd64",
    }
    assert config["kubernetes"]["poll_timeout"] == 180


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            {"pools": [{"name": "office", "maxSize": 5, "runUntagged": True}]},
            "pools[0].maxSize: is only used on EKS",
        ),
        (
            {"pools": [{"name": "office", "instanceTypes": ["c6i.xlarge"], "runUntagged": True}]},
            "pools[0].instanceTypes: is only used on EKS",
        ),
        (
            {"clusterAutoscaler": {"enabled": True}},
            "clusterAutoscaler.enabled: is only used on EKS",
        ),
        (
            {"network": {"s3GatewayEndpoint": True}},
            "network.s3GatewayEndpoint: is only used on EKS",
        ),
        (
            {"cache": {"type": "s3"}},
            "cacheAccess.mode: irsa needs an EKS cluster; set cacheAccess.mode: accessKey",
        ),
    ],
)
def test_onprem_refuses_eks_only_settings(override: dict[str, Any], expected: str) -> None:
    run = run_stack("onprem", settings_config(**override), return_error=True)
    assert expected in str(run.error)
    assert run.resources == []


def test_onprem_takes_every_setting_of_its_runner() -> None:
    """What goes into a pool's config.toml and alerts works on any cluster (found trying it as
    a new user: these were refused as EKS-only on k3s)."""
    office = {
        "name": "office",
        "runUntagged": True,
        "buildMode": "rootless",
        "allowPrivilegeEscalation": True,
        "jobQueuingDurations": [{"periods": ["* 7-18 * * mon-fri"], "threshold": "5m"}],
        "expectJobs": {"periods": ["* 8-17 * * mon-fri"], "within": "2h"},
    }
    run = run_stack("onprem", settings_config(pools=[office], monitoring={"enabled": True}))
    config = tomllib.loads(runner_values(run, "office")["runners"]["config"])
    kubernetes = config["runners"][0]["kubernetes"]
    assert kubernetes["build_container_security_context"]["allow_privilege_escalation"] is True
    assert config["runners"][0]["monitoring"]["job_queuing_durations"][0]["threshold"] == "5m"


@pytest.mark.parametrize("monitoring", [None, {"enabled": True, "alerts": False}])
def test_working_hours_without_alerts_are_refused_not_ignored(
    monitoring: dict[str, bool] | None,
) -> None:
    office = {"name": "office", "runUntagged": True, "expectJobs": {"periods": ["* 8-17 * * *"]}}
    sections: dict[str, Any] = {"pools": [office]}
    if monitoring:
        sections["monitoring"] = monitoring
    run = run_stack("onprem", settings_config(**sections), return_error=True)
    assert "pools[0].expectJobs: only raises GitlabRunnerNoJobsPickedUp" in str(run.error)
    assert run.resources == []


def test_onprem_needs_its_kubeconfig_as_a_secret() -> None:
    run = run_stack(
        "onprem", {f"{PROJECT}:kubeconfig": "apiVersion: v1\nclusters: []"}, return_error=True
    )
    assert "kubeconfig: is stored in plain text" in str(run.error)


def test_onprem_with_an_s3_bucket_and_access_keys_needs_a_region() -> None:
    run = run_stack(
        "onprem",
        settings_config(cache={"type": "s3", "protect": False}, cacheAccess={"mode": "accessKey"}),
        return_error=True,
    )
    assert "aws:region: required" in str(run.error)


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_stack_evaluates_and_exports_what_reviewers_need(stack: str) -> None:
    run = run_stack(stack)
    optional = {
        "s3GatewayEndpointId",
        "s3GatewayEndpointStatus",
        "gitlabRunnerId-default",
        "siteHub",
        "siteEdgeCredentials",
        "alerts",
        "dashboardConfigMap",
    }
    pools = scalers(stack)
    node_groups = [pool for pool, scaler in pools.items() if scaler == "clusterAutoscaler"]
    karpenter = [pool for pool, scaler in pools.items() if scaler == "karpenter"]
    config = config_from_stack_file(stack)
    expected = {
        *EXPORTS,
        *(NODE_GROUP_EXPORTS if node_groups else ()),
        *(KARPENTER_EXPORTS if karpenter else ()),
        # The VPC CNI's own role exists only in a cluster the stack creates.
        *(["vpcCniRoleArn"] if config[f"{PROJECT}:cluster"].get("mode") == "create" else ()),
    }
    assert expected <= set(run.outputs) <= expected | optional
    assert run.outputs["clusterName"] == config[f"{PROJECT}:cluster"]["name"]
    if node_groups:
        assert run.outputs["buildAutoscalingGroups"] == {
            pool: f"eks-build-nodes-{pool}-mock-asg" for pool in node_groups
        }
    if karpenter:
        assert run.outputs["karpenterNodePools"] == {
            pool: f"gitlab-runner-fleet-{pool}" for pool in karpenter
        }
    assert set(run.outputs["runnerConfigChecksums"]) == set(pools)
    bucket = run.one("aws:s3/bucket:Bucket")
    assert run.outputs["cacheBucketName"] == bucket.inputs["bucket"]
    assert run.outputs["cacheBucketArn"] == f"arn:aws:s3:::{bucket.inputs['bucket']}"
    assert run.outputs["cacheBucketRegion"] == config_from_stack_file(stack)["aws:region"]
    cache_policy = next(
        p for p in run.of_type("aws:iam/policy:Policy") if p.name == "cache-access-policy"
    )
    assert run.outputs["cachePolicyArn"] == cache_policy.state["arn"]
    cache_role = next(r for r in run.of_type("aws:iam/role:Role") if r.name == "cache-access-irsa")
    assert run.outputs["cacheRoleArn"] == cache_role.state["arn"]
    # Only the hub's per-edge credentials are secret outputs.
    assert run.secret_outputs <= {"siteEdgeCredentials"}


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_every_aws_resource_carries_the_allocation_tags(stack: str) -> None:
    run = run_stack(stack)
    cost_center = config_from_stack_file(stack)["gitlab-runner-fleet:tags"]["cost-center"]
    tagged = [r for r in run.resources if r.type in TAGGABLE]
    capacity = {
        "clusterAutoscaler": "aws:eks/nodeGroup:NodeGroup",
        "karpenter": "aws:sqs/queue:Queue",
    }
    assert {r.type for r in tagged} >= {
        "aws:s3/bucket:Bucket",
        "aws:iam/policy:Policy",
        "aws:iam/role:Role",
        *(capacity[scaler] for scaler in scalers(stack).values()),
    }
    for resource in tagged:
        tags = resource.inputs["tags"]
        assert tags["project"] == "gitlab-runner-fleet", resource.name
        assert tags["stack"] == stack
        assert tags["component"] in {
            "cluster",
            "build-nodes",
            "cluster-autoscaler",
            "karpenter",
            "network",
            "cache-bucket",
            "cache-access",
            "registry-mirror",
            "edge-access",
        }
        assert tags["cost-center"] == cost_center


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_irsa_roles_trust_their_service_accounts_on_the_stacks_cluster(stack: str) -> None:
    run = run_stack(stack)
    cluster_name = config_from_stack_file(stack)[f"{PROJECT}:cluster"]["name"]
    issuer = mock_issuer("eu-west-1", cluster_name)
    oidc_arn = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{issuer}"
    roles = {r.name: r.inputs["assumeRolePolicy"] for r in run.of_type("aws:iam/role:Role")}
    autoscaler = f"cluster-autoscaler-gitlab-runner-fleet-{stack}"
    scaler_roles = {
        "clusterAutoscaler": (
            "cluster-autoscaler-irsa",
            f"system:serviceaccount:kube-system:{autoscaler}",
        ),
        # The karpenter chart's service account (values serviceAccount.name).
        "karpenter": ("karpenter-controller", "system:serviceaccount:kube-system:karpenter"),
    }
    for role_name, subject in (
        ("cache-access-irsa", "system:serviceaccount:gitlab-runner:gitlab-runner"),
        *{scaler_roles[scaler] for scaler in scalers(stack).values()},
    ):
        assert f'"Federated": "{oidc_arn}"' in roles[role_name]
        assert f'"{issuer}:sub": "{subject}"' in roles[role_name]


@pytest.mark.parametrize("stack", STACKS)
def test_every_in_cluster_resource_uses_the_clusters_own_provider(stack: str) -> None:
    run = run_stack(stack)
    provider = run.one("pulumi:providers:kubernetes")
    in_cluster = [r for r in run.resources if r.type.startswith("kubernetes:")]
    assert in_cluster
    assert all(r.provider.startswith(f"{provider.urn}::") for r in in_cluster)


PREFIX = "k8s.io/cluster-autoscaler/node-template"
DISCOVERY = ("gitlab-runner-fleet/autoscaler", "gitlab-runner-fleet-prod")
PROD_POOLS = {
    # pool: (AMI type, kubernetes.io/arch, advertised ephemeral storage)
    "default": ("AL2023_x86_64_STANDARD", "amd64", "88Gi"),
    "arm64": ("AL2023_ARM_64_STANDARD", "arm64", "88Gi"),
    "large-memory": ("AL2023_x86_64_STANDARD", "amd64", "177Gi"),
}


def node_group(run: ProgramRun, pool: str) -> Registered:
    return next(
        g for g in run.of_type("aws:eks/nodeGroup:NodeGroup") if g.name == f"build-nodes-{pool}"
    )


def asg_tags(run: ProgramRun, pool: str) -> dict[str, str]:
    group = run.by_urn(node_group(run, pool).parent)
    return {
        t.inputs["tag"]["key"]: t.inputs["tag"]["value"]
        for t in run.of_type("aws:autoscaling/tag:Tag")
        if t.parent == group.urn
    }


def test_prod_has_three_pools_each_with_its_node_group_and_runner() -> None:
    run = run_stack("prod")
    for pool, (ami_type, arch, storage) in PROD_POOLS.items():
        group = node_group(run, pool)
        assert group.inputs["amiType"] == ami_type
        assert group.inputs["capacityType"] == "SPOT"
        assert group.inputs["version"] == "1.34"
        assert group.inputs["labels"] == {"gitlab-runner-fleet/pool": pool}
        assert group.inputs["taints"] == [
            {"key": "gitlab-runner-fleet/pool", "value": pool, "effect": "NO_SCHEDULE"}
        ]
        assert group.inputs["subnetIds"] == [
            "subnet-0ccccccccccccccc1",
            "subnet-0ccccccccccccccc2",
            "subnet-0ccccccccccccccc3",
        ]
        assert asg_tags(run, pool) == {
            f"{PREFIX}/label/gitlab-runner-fleet/pool": pool,
            f"{PREFIX}/label/eks.amazonaws.com/capacityType": "SPOT",
            f"{PREFIX}/label/kubernetes.io/arch": arch,
            f"{PREFIX}/taint/gitlab-runner-fleet/pool": f"{pool}:NoSchedule",
            f"{PREFIX}/resources/ephemeral-storage": storage,
            DISCOVERY[0]: DISCOVERY[1],
        }
        config = tomllib.loads(runner_values(run, pool)["runners"]["config"])["runners"][0]
        kubernetes = config["kubernetes"]
        assert kubernetes["node_selector"] == {
            "gitlab-runner-fleet/pool": pool,
            "kubernetes.io/arch": arch,
        }
        assert kubernetes["node_tolerations"] == {f"gitlab-runner-fleet/pool={pool}": "NoSchedule"}
        (term,) = kubernetes["affinity"]["node_affinity"][
            "required_during_scheduling_ignored_during_execution"
        ]["node_selector_terms"]
        assert {e["key"]: e["values"] for e in term["match_expressions"]} == {
            "gitlab-runner-fleet/pool": [pool],
            "kubernetes.io/arch": [arch],
        }
    releases = [r.inputs["name"] for r in run.of_type("kubernetes:helm.sh/v3:Release")]
    assert sorted(releases) == sorted(
        [f"gitlab-runner-{pool}" for pool in PROD_POOLS]
        + ["cluster-autoscaler-gitlab-runner-fleet-prod"]
    )
    assert node_group(run, "default").inputs["scalingConfig"] == {
        "minSize": 0,
        "desiredSize": 0,
        "maxSize": 40,
    }


def test_each_pool_has_its_own_token_secret() -> None:
    run = run_stack("prod")
    names = {s.inputs["metadata"]["name"] for s in run.of_type("kubernetes:core/v1:Secret")}
    assert names == {f"gitlab-runner-{pool}-token" for pool in PROD_POOLS}
    for pool in PROD_POOLS:
        assert runner_values(run, pool)["runners"]["secret"] == f"gitlab-runner-{pool}-token"


def test_cluster_autoscaler_discovers_exactly_the_stacks_pools() -> None:
    run = run_stack("prod")
    autoscaler = next(
        r
        for r in run.of_type("kubernetes:helm.sh/v3:Release")
        if r.inputs["chart"] == "cluster-autoscaler"
    )
    (spec,) = autoscaler.inputs["values"]["autoDiscovery"]["tags"]
    key, value = spec.split("=", 1)
    tagged = {
        t.parent
        for t in run.of_type("aws:autoscaling/tag:Tag")
        if (t.inputs["tag"]["key"], t.inputs["tag"]["value"]) == (key, value)
    }
    pool_groups = {run.by_urn(node_group(run, pool).parent).urn for pool in PROD_POOLS}
    assert tagged == pool_groups
    assert run.outputs["clusterAutoscalerDiscoveryTag"] == spec


def test_system_pods_keep_off_every_pool() -> None:
    run = run_stack("prod")
    (term,) = runner_values(run, "arm64")["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert {
        "key": "gitlab-runner-fleet/pool",
        "operator": "NotIn",
        "values": list(PROD_POOLS),
    } in term["matchExpressions"]


def test_build_node_instances_carry_pool_and_stack_cost_tags() -> None:
    run = run_stack("prod")
    templates = run.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert len(templates) == len(PROD_POOLS)
    for pool in PROD_POOLS:
        template = next(t for t in templates if t.name == f"build-nodes-{pool}")
        for specification in template.inputs["tagSpecifications"]:
            assert specification["tags"]["pool"] == pool
            assert specification["tags"]["stack"] == "prod"
            assert specification["tags"]["project"] == "gitlab-runner-fleet"


def test_dev_creates_its_cluster_and_an_s3_endpoint_by_default() -> None:
    run = run_stack("dev")
    assert run.one("eks:index:Cluster").inputs["name"] == "gitlab-runner-fleet-dev"
    endpoint = run.one("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert endpoint.inputs["vpcId"] == "vpc-0123456789abcdef0"
    assert endpoint.inputs["routeTableIds"] == MOCK_ROUTE_TABLES
    assert run.outputs["s3GatewayEndpointStatus"] == "created"


def test_dev_grants_its_deploy_role_cluster_admin() -> None:
    run = run_stack("dev")
    (entry,) = [
        e for e in run.of_type("aws:eks/accessEntry:AccessEntry") if e.inputs["type"] == "STANDARD"
    ]
    assert entry.inputs["principalArn"] == (
        "arn:aws:iam::123456789012:role/gitlab-runner-fleet-deploy"
    )
    policy = run.one("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert policy.inputs["principalArn"] == entry.inputs["principalArn"]


def test_staging_uses_an_existing_cluster_without_touching_its_network() -> None:
    run = run_stack("staging")
    assert run.of_type("eks:index:Cluster") == []
    assert run.of_type("aws:ec2/vpcEndpoint:VpcEndpoint") == []


def test_an_existing_autoscaler_can_be_kept() -> None:
    run = run_stack("prod", settings_config(clusterAutoscaler={"enabled": False}))
    assert {r.inputs["chart"] for r in run.of_type("kubernetes:helm.sh/v3:Release")} == {
        "gitlab-runner"
    }
    assert "clusterAutoscalerRoleArn" not in run.outputs
    assert {r.name for r in run.of_type("aws:iam/role:Role")} == {
        *(f"build-nodes-{pool}-role" for pool in PROD_POOLS),
        "cache-access-irsa",
        "registry-mirror-access-irsa",
    }
    # The platform's autoscaler is scraped (or not) by the platform: no alerts on it here.
    assert not [alert for alert in run.outputs["alerts"] if alert.startswith("ClusterAutoscaler")]


def test_dev_bucket_is_disposable() -> None:
    bucket = run_stack("dev").one("aws:s3/bucket:Bucket")
    assert bucket.inputs["bucket"] == f"gitlab-runner-fleet-dev-cache-{ACCOUNT_ID}"
    assert bucket.protect is False
    assert bucket.inputs["forceDestroy"] is True


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_shared_stacks_cannot_lose_the_bucket(stack: str) -> None:
    bucket = run_stack(stack).one("aws:s3/bucket:Bucket")
    assert bucket.protect is True
    assert bucket.retain_on_delete is True
    assert bucket.inputs.get("forceDestroy", False) is False


def test_prod_versions_and_logs_its_cache() -> None:
    run = run_stack("prod")
    assert run.one("aws:s3/bucketVersioning:BucketVersioning").inputs[
        "versioningConfiguration"
    ] == {"status": "Enabled"}
    logging = run.one("aws:s3/bucketLogging:BucketLogging")
    assert logging.inputs["targetBucket"] == "example-org-s3-access-logs"
    lifecycle = run.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    assert {rule["id"] for rule in lifecycle.inputs["rules"]} == {
        "expire-cache-objects",
        "abort-incomplete-multipart-uploads",
        "expire-noncurrent-versions",
        "remove-expired-delete-markers",
        "expire-registry-mirror",
        "remove-expired-delete-markers-registry-mirror",
    }


def test_access_key_mode_keeps_the_key_secret_in_stack_outputs() -> None:
    run = run_stack("staging", settings_config(cacheAccess={"mode": "accessKey"}))
    assert "cache-access-irsa" not in {r.name for r in run.of_type("aws:iam/role:Role")}
    assert run.outputs["cacheUserName"] == run.one("aws:iam/user:User").state["name"]
    assert run.secret_outputs == {"cacheAccessKeyId", "cacheSecretAccessKey"}
    assert "cacheRoleArn" not in run.outputs


def test_kms_stack_encrypts_with_the_key_and_grants_only_it() -> None:
    key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    run = run_stack("prod", settings_config(cache={"kmsKeyArn": key}))
    policy = next(
        p for p in run.of_type("aws:iam/policy:Policy") if p.name == "cache-access-policy"
    )
    policy = policy.inputs["policy"]
    assert f'"Resource": "{key}"' in policy
    encryption = run.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )
    assert (
        encryption.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"] == key
    )


def runner_values(run: ProgramRun, pool: str = "default") -> dict[str, Any]:
    release = next(
        r
        for r in run.of_type("kubernetes:helm.sh/v3:Release")
        if r.inputs["name"] == f"gitlab-runner-{pool}"
    )
    values: dict[str, Any] = release.inputs["values"]
    return values


def manager_account(run: ProgramRun) -> Registered:
    return next(
        a
        for a in run.of_type("kubernetes:core/v1:ServiceAccount")
        if a.inputs["metadata"]["name"] == "gitlab-runner"
    )


def plain_inputs(value: object) -> str:
    """Every input as text, with secret-wrapped values left out."""
    if is_rpc_secret(value):
        return ""
    if isinstance(value, dict):
        return " ".join(plain_inputs(v) for v in value.values())
    if isinstance(value, list):
        return " ".join(plain_inputs(v) for v in value)
    return str(value)


@pytest.mark.parametrize("stack", STACKS)
def test_the_runner_token_is_never_plain_text_anywhere(stack: str) -> None:
    run = run_stack(stack)
    for resource in run.resources:
        assert RUNNER_TOKEN not in plain_inputs(resource.inputs), resource.name
    assert RUNNER_TOKEN not in repr(run.outputs)
    token_secrets = [
        s
        for s in run.of_type("kubernetes:core/v1:Secret")
        if s.inputs["metadata"]["name"].endswith("-token")
    ]
    assert token_secrets
    created_by_code = {r.state["token"] for r in run.of_type("gitlab:index/userRunner:UserRunner")}
    for token_secret in token_secrets:
        assert is_rpc_secret(token_secret.inputs["stringData"])
        token = unwrap_rpc_secret(token_secret.inputs["stringData"])["runner-token"]
        assert token in {RUNNER_TOKEN, *created_by_code}
        for resource in run.resources:
            assert token not in plain_inputs(resource.inputs), resource.name


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_irsa_cache_role_goes_on_the_managers_service_account(stack: str) -> None:
    run = run_stack(stack)
    values = runner_values(run)
    cache_role = next(r for r in run.of_type("aws:iam/role:Role") if r.name == "cache-access-irsa")
    account = manager_account(run)
    assert account.inputs["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": cache_role.state["arn"]
    }
    assert values["serviceAccount"] == {"create": False, "name": "gitlab-runner"}
    assert account.inputs["metadata"]["name"] == "gitlab-runner"
    assert "cache" not in values["runners"]
    assert (
        f'"system:serviceaccount:gitlab-runner:{values["serviceAccount"]["name"]}"'
        in cache_role.inputs["assumeRolePolicy"]
    )


def test_the_runner_cache_path_is_the_buckets_lifecycle_prefix() -> None:
    run = run_stack("prod")
    config = tomllib.loads(runner_values(run)["runners"]["config"])
    cache = config["runners"][0]["cache"]
    lifecycle = run.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    expire = next(
        rule for rule in lifecycle.inputs["rules"] if rule["id"] == "expire-cache-objects"
    )
    assert expire["filter"]["prefix"] == f"{cache['Path']}/"
    assert cache["s3"]["BucketName"] == run.outputs["cacheBucketName"]
    assert cache["s3"]["BucketLocation"] == "eu-west-1"


def test_prod_warm_capacity_and_metrics() -> None:
    run = run_stack("prod")
    priority_class = run.one("kubernetes:scheduling.k8s.io/v1:PriorityClass")
    assert priority_class.inputs["value"] == -1
    values = runner_values(run)
    assert values["metrics"]["podMonitor"] == {"enabled": False}
    monitor = run.one("kubernetes:monitoring.coreos.com/v1:PodMonitor")
    assert monitor.inputs["metadata"]["labels"] == {"release": "kube-prometheus-stack"}
    assert monitor.inputs["spec"]["namespaceSelector"] == {"matchNames": ["gitlab-runner"]}
    assert any(rule["resources"] == ["deployments"] for rule in values["rbac"]["rules"])
    arm = runner_values(run, "arm64")
    assert not any(rule["resources"] == ["deployments"] for rule in arm["rbac"]["rules"])


def test_access_key_mode_puts_the_generated_keys_in_the_cache_secret() -> None:
    run = run_stack("staging", settings_config(cacheAccess={"mode": "accessKey"}))
    values = runner_values(run)
    assert values["runners"]["cache"] == {"secretName": "gitlab-runner-default-cache"}
    assert manager_account(run).inputs["metadata"]["annotations"] == {}
    cache_secret = next(
        s
        for s in run.of_type("kubernetes:core/v1:Secret")
        if s.inputs["metadata"]["name"] == "gitlab-runner-default-cache"
    )
    assert is_rpc_secret(cache_secret.inputs["stringData"])
    assert unwrap_rpc_secret(cache_secret.inputs["stringData"]) == {
        "accesskey": "AKIAMOCKACCESSKEY000",
        "secretkey": "mock-secret-access-key",
    }


def test_an_s3_compatible_cache_creates_no_bucket_and_keeps_its_keys_secret() -> None:
    run_overrides = {
        **settings_config(
            cache={
                "type": "s3Compatible",
                "serverAddress": "https://minio.example.com",
                "bucketName": "ci-cache",
                "pathStyle": True,
            },
            cacheAccess={},
        ),
        f"{PROJECT}:cacheCredentials": json.dumps(
            {"accessKey": "minio-user", "secretKey": "minio-password"}
        ),
    }
    run = run_stack("staging", run_overrides, secret_keys=[f"{PROJECT}:cacheCredentials"])
    assert run.of_type("aws:s3/bucket:Bucket") == []
    assert "cache-access-irsa" not in {r.name for r in run.of_type("aws:iam/role:Role")}
    for resource in run.resources:
        assert "minio-password" not in plain_inputs(resource.inputs), resource.name
    s3 = tomllib.loads(runner_values(run)["runners"]["config"])["runners"][0]["cache"]["s3"]
    assert s3 == {
        "ServerAddress": "minio.example.com",
        "BucketName": "ci-cache",
        "AuthenticationType": "access-key",
        "Insecure": False,
        "PathStyle": True,
    }


def test_dev_creates_its_runner_by_code_and_the_token_flows_as_a_secret() -> None:
    run = run_stack("dev")
    runner = run.one("gitlab:index/userRunner:UserRunner")
    pool = config_from_stack_file("dev")[f"{PROJECT}:pools"][0]
    assert runner.inputs["tagLists"] == sorted(pool["tags"])
    assert runner.inputs["untagged"] is pool["runUntagged"]
    assert runner.inputs["runnerType"] == "group_type"
    assert runner.inputs["groupId"] == 4242
    assert runner.inputs["locked"] is True
    assert runner.inputs["paused"] is False
    # The provider is configured from the secret API token, against GitLab's API URL.
    provider = run.one("pulumi:providers:gitlab")
    assert provider.inputs["baseUrl"] == "https://gitlab.example.com/api/v4/"
    assert is_rpc_secret(provider.inputs["token"])
    # Its glrt- token reaches the pool's Secret straight from GitLab's answer, as a secret.
    secret = next(
        s
        for s in run.of_type("kubernetes:core/v1:Secret")
        if s.inputs["metadata"]["name"] == "gitlab-runner-default-token"
    )
    assert runner.urn in secret.dependencies
    assert is_rpc_secret(secret.inputs["stringData"])
    token = unwrap_rpc_secret(secret.inputs["stringData"])["runner-token"]
    assert token == runner.state["token"]
    for resource in run.resources:
        assert token not in plain_inputs(resource.inputs), resource.name
    assert token not in repr(run.outputs)
    assert run.outputs["gitlabRunnerId-default"] == "runner-registration-default-id"


def test_dev_rotates_its_runner_token_new_before_old() -> None:
    run = run_stack("dev")
    runner = run.one("gitlab:index/userRunner:UserRunner")
    rotating = run.one("time:index/rotating:Rotating")
    assert rotating.inputs["rotationDays"] == 30
    # The runner is replaced when the rotating resource is: created first, deleted at the end
    # of the update, after the Secret and the release were updated (Pulumi's create-before-
    # delete; the release waits for the rollout).
    release = next(
        r
        for r in run.of_type("kubernetes:helm.sh/v3:Release")
        if r.inputs["name"] == "gitlab-runner-default"
    )
    secret = next(
        s
        for s in run.of_type("kubernetes:core/v1:Secret")
        if s.name == "gitlab-runner-default-token"
    )
    assert secret.urn in release.dependencies
    assert runner.urn in secret.dependencies


def user_data_of(template: Registered) -> str:
    return base64.b64decode(template.inputs["userData"]).decode()


@pytest.mark.parametrize(("stack", "address"), [("prod", "172.20.0.50"), ("dev", "10.100.0.50")])
def test_build_nodes_pull_docker_hub_through_the_mirror_at_its_fixed_address(
    stack: str, address: str
) -> None:
    run = run_stack(stack)
    service = next(
        s for s in run.of_type("kubernetes:core/v1:Service") if s.name == "registry-mirror"
    )
    assert service.inputs["spec"]["clusterIP"] == address
    for template in run.of_type("aws:ec2/launchTemplate:LaunchTemplate"):
        user_data = user_data_of(template)
        # containerd reads /etc/containerd/certs.d (amazon-eks-ami nodeadm containerd config
        # template) and falls back to `server` after every [host] (containerd docs/hosts.md).
        assert "/etc/containerd/certs.d/docker.io/hosts.toml" in user_data
        assert f'[host."http://{address}:5000"]' in user_data
        assert 'server = "https://registry-1.docker.io"' in user_data
    assert run.outputs["registryMirrorNodeUrl"] == f"http://{address}:5000"


def test_a_created_cluster_gets_the_service_range_the_mirror_address_is_taken_from() -> None:
    cluster = run_stack("dev").one("eks:index:Cluster")
    assert cluster.inputs["kubernetesServiceIpAddressRange"] == "10.100.0.0/16"


def test_dind_jobs_get_the_mirror_in_their_daemon_json() -> None:
    run = run_stack("prod")
    daemon_config = next(
        c
        for c in run.of_type("kubernetes:core/v1:ConfigMap")
        if c.inputs["metadata"]["name"] == "docker-daemon-config"
    )
    assert daemon_config.inputs["metadata"]["namespace"] == "gitlab-runner-jobs-dind"
    assert json.loads(daemon_config.inputs["data"]["daemon.json"]) == {
        "registry-mirrors": ["http://172.20.0.50:5000"]
    }
    config = tomllib.loads(runner_values(run)["runners"]["config"])["runners"][0]
    (volume,) = config["kubernetes"]["volumes"]["config_map"]
    assert volume["name"] == "docker-daemon-config"
    assert volume["mount_path"] == "/etc/docker/daemon.json"


def test_prods_mirror_keeps_layers_under_its_own_prefix_with_irsa() -> None:
    run = run_stack("prod")
    mirror_config = next(
        c for c in run.of_type("kubernetes:core/v1:ConfigMap") if c.name == "registry-mirror-config"
    )
    storage = yaml.safe_load(mirror_config.inputs["data"]["config.yml"])["storage"]["s3"]
    assert storage == {
        "bucket": f"gitlab-runner-fleet-prod-cache-{ACCOUNT_ID}",
        "region": "eu-west-1",
        # The S3 driver prefixes every key with rootdirectory (distribution's s3-aws driver);
        # no keys: the AWS SDK's default chain takes the IRSA web identity.
        "rootdirectory": "/registry-mirror",
        # The cache bucket has ACLs disabled; S3 refuses the driver's default `private`.
        "objectacl": "bucket-owner-full-control",
    }
    policy = next(
        p for p in run.of_type("aws:iam/policy:Policy") if p.name == "registry-mirror-access-policy"
    )
    document = json.loads(policy.inputs["policy"])
    resources = json.dumps(document)
    assert f"gitlab-runner-fleet-prod-cache-{ACCOUNT_ID}/registry-mirror/*" in resources
    assert "runner-cache" not in resources
    role = next(
        r for r in run.of_type("aws:iam/role:Role") if r.name == "registry-mirror-access-irsa"
    )
    assert (
        "system:serviceaccount:registry-mirror:registry-mirror" in role.inputs["assumeRolePolicy"]
    )


def test_onprem_gets_the_same_mirror_on_its_minio_with_secret_keys() -> None:
    run = run_stack("onprem")
    mirror_config = next(
        c for c in run.of_type("kubernetes:core/v1:ConfigMap") if c.name == "registry-mirror-config"
    )
    text = mirror_config.inputs["data"]["config.yml"]
    assert "minio.office.example.com" in text
    assert "offline-placeholder" not in text
    secret = next(
        s
        for s in run.of_type("kubernetes:core/v1:Secret")
        if s.inputs["metadata"]["name"] == "registry-mirror-credentials"
    )
    assert is_rpc_secret(secret.inputs["stringData"])
    # No node pulls through it on a cluster whose Service range the stack cannot know.
    assert "registryMirrorNodeUrl" not in run.outputs


@pytest.mark.parametrize(("filesystem_size", "size_limit"), [(None, "10Gi"), ("30Gi", "30Gi")])
def test_an_edges_mirror_keeps_its_directory_within_bounds(
    filesystem_size: str | None, size_limit: str
) -> None:
    """An edge's mirror stores on its replicas' own disks (the hub's bucket is not its to
    write): each directory is bounded, by default or as registryMirror.filesystemSize says."""
    mirror = {"filesystemSize": filesystem_size} if filesystem_size else None
    run = run_stack("basement", {f"{PROJECT}:registryMirror": mirror} if mirror else None)
    deployment = next(
        d for d in run.of_type("kubernetes:apps/v1:Deployment") if d.name == "registry-mirror"
    )
    volumes = {v["name"]: v for v in deployment.inputs["spec"]["template"]["spec"]["volumes"]}
    assert volumes["storage"]["emptyDir"] == {"sizeLimit": size_limit}


def manifest(resource: Registered, api_version: str, kind: str) -> dict[str, Any]:
    inputs = {key: unwrap_rpc_secret(value) for key, value in resource.inputs.items()}
    return {"apiVersion": api_version, "kind": kind, **inputs}


def test_prod_is_the_hub_and_exports_what_its_edges_need(lint_policy: Any) -> None:
    run = run_stack("prod")
    assert run.outputs["siteHub"] == {
        "name": "cloud",
        "bucket": run.outputs["cacheBucketName"],
        "region": "eu-west-1",
        "prefix": "runner-cache",
        "endpoint": "",
        "pathStyle": False,
        "replicate": ["deps-*"],
    }
    assert "siteEdgeCredentials" in run.secret_outputs
    assert set(run.outputs["siteEdgeCredentials"]) == {"basement"}
    policy = next(
        p for p in run.of_type("aws:iam/policy:Policy") if p.name.startswith("edge-access-basement")
    )
    document = json.loads(policy.inputs["policy"])
    assert lint_policy(document) == []
    (write,) = [s for s in document["Statement"] if "s3:PutObject" in s["Action"]]
    # The runner names objects <Path>/project/<id>/<key> with Shared = true (cache/cache.go).
    assert write["Resource"] == [
        f"arn:aws:s3:::{run.outputs['cacheBucketName']}/runner-cache/project/*/deps-*"
    ]
    # Runners of the hub carry its site tag and variable too.
    tags = run.outputs["pools"]["default"]["tags"]
    assert {"site-cloud", "fleet"} <= set(tags)


def test_basement_is_an_edge_reading_through_from_the_hub(
    validate_manifest: Callable[[dict[str, Any]], None],
) -> None:
    run = run_stack("basement")
    assert not [r for r in run.resources if r.type.startswith(("aws:", "eks:"))]
    config = tomllib.loads(runner_values(run, "basement")["runners"]["config"])["runners"][0]
    # Same bucket name, Path and Shared as the hub: a key maps to <Path>/project/<id>/<key> only
    # with Shared = true (cache/cache.go), so both sites find the same objects.
    assert config["cache"] == {
        "Type": "s3",
        "Path": "runner-cache",
        "Shared": True,
        "s3": {
            "ServerAddress": "s3.runner-cache.svc:8080",
            "BucketName": f"gitlab-runner-fleet-prod-cache-{ACCOUNT_ID}",
            "BucketLocation": "us-east-1",
            "AuthenticationType": "access-key",
            "Insecure": True,
            "PathStyle": True,
        },
    }
    assert "RUNNER_SITE=basement" in config["environment"]
    assert {"site-basement", "fleet"} <= set(run.outputs["pools"]["basement"]["tags"])
    cache_secret = next(
        s
        for s in run.of_type("kubernetes:core/v1:Secret")
        if s.inputs["metadata"]["name"] == "gitlab-runner-basement-cache"
    )
    assert is_rpc_secret(cache_secret.inputs["stringData"])
    kinds = {
        "kubernetes:apps/v1:Deployment": ("apps/v1", "Deployment"),
        "kubernetes:core/v1:Service": ("v1", "Service"),
        "kubernetes:core/v1:PersistentVolumeClaim": ("v1", "PersistentVolumeClaim"),
        "kubernetes:batch/v1:CronJob": ("batch/v1", "CronJob"),
        "kubernetes:core/v1:Secret": ("v1", "Secret"),
        "kubernetes:core/v1:ConfigMap": ("v1", "ConfigMap"),
    }
    edge_objects = [r for r in run.resources if r.type in kinds and "site-cache" in r.name]
    assert {r.type for r in edge_objects} == set(kinds)
    for resource in edge_objects:
        validate_manifest(manifest(resource, *kinds[resource.type]))
    push = next(
        r for r in run.of_type("kubernetes:batch/v1:CronJob") if "push" in json.dumps(r.inputs)
    )
    (container,) = push.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    # 80% of the 50 Mbit/s uplink, in bytes per second; only the hub's replicate globs.
    assert command[command.index("--bwlimit") + 1] == "5000000B"
    assert "+ /project/*/deps-*" in command
    for resource in run.resources:
        assert "offline-placeholder-edge-secret" not in plain_inputs(resource.inputs), resource.name


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            {"cache": {"expirationDays": 3}},
            "cache: is not used on an edge site",
        ),
        (
            {"site": {"name": "basement", "role": "edge", "uplinkMbps": 50}},
            "site.hubStack: required for an edge",
        ),
        (
            {
                "site": {
                    "name": "basement",
                    "role": "edge",
                    "hubStack": "org/gitlab-runner-fleet/prod",
                    "uplinkMbps": 50,
                    "replicate": ["deps-*"],
                }
            },
            "site.replicate: is only used when site.role is hub",
        ),
    ],
)
def test_edge_site_problems(override: dict[str, Any], expected: str) -> None:
    run = run_stack("basement", settings_config(**override), return_error=True)
    assert expected in str(run.error)
    assert run.resources == []


def test_replicate_globs_must_match_real_keys_and_hashed_keys_refuse_them() -> None:
    run = run_stack(
        "prod",
        settings_config(
            site={"name": "cloud", "role": "hub", "edges": ["basement"], "replicate": ["deps"]},
            runner={
                "gitlabUrl": "https://gitlab.example.com/",
                "featureFlags": {"FF_HASH_CACHE_KEYS": True},
            },
        ),
        return_error=True,
    )
    message = str(run.error)
    assert "site.replicate:" in message
    assert "FF_HASH_CACHE_KEYS" in message
    assert run.resources == []


def test_an_in_cluster_cache_serves_a_cluster_without_one() -> None:
    run = run_stack("onprem", settings_config(cache={"type": "inCluster", "size": "50Gi"}))
    (server,) = [
        r for r in run.of_type("kubernetes:apps/v1:Deployment") if r.name == "site-cache-server"
    ]
    containers = server.inputs["spec"]["template"]["spec"]["containers"]
    assert [container["name"] for container in containers] == ["rclone", "expiry"]
    claim = run.one("kubernetes:core/v1:PersistentVolumeClaim")
    assert claim.inputs["spec"]["resources"]["requests"]["storage"] == "50Gi"
    config = tomllib.loads(runner_values(run, "office")["runners"]["config"])["runners"][0]
    assert config["cache"]["s3"]["ServerAddress"] == "s3.runner-cache.svc:8080"
    assert config["cache"]["s3"]["BucketName"] == "runner-cache"
    # No push job: there is no hub; the keys are generated and stay secrets.
    assert run.of_type("kubernetes:batch/v1:CronJob") == []
    for password in run.of_type("random:index/randomPassword:RandomPassword"):
        for resource in run.resources:
            assert password.state["result"] not in plain_inputs(resource.inputs), resource.name


def test_prod_is_watched_with_alerts_a_dashboard_and_pool_labels(
    validate_manifest: Callable[[dict[str, Any]], None],
) -> None:
    run = run_stack("prod")
    rule = run.one("kubernetes:monitoring.coreos.com/v1:PrometheusRule")
    assert rule.inputs["metadata"]["namespace"] == "monitoring"
    assert rule.inputs["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = {r["alert"] for g in rule.inputs["spec"]["groups"] for r in g["rules"]}
    assert set(run.outputs["alerts"]) == alerts
    assert len(alerts) == 12  # every alert but the in-cluster cache's (tests/test_stack_alerts.py)
    absent = next(
        r
        for g in rule.inputs["spec"]["groups"]
        for r in g["rules"]
        if r["alert"] == "GitlabRunnerManagerAbsent"
    )
    for pool in PROD_POOLS:
        assert f'pool="{pool}"' in absent["expr"]
    dashboard = next(
        c
        for c in run.of_type("kubernetes:core/v1:ConfigMap")
        if c.inputs["metadata"]["name"] == "gitlab-runner-fleet-dashboard"
    )
    assert dashboard.inputs["metadata"]["labels"] == {"grafana_dashboard": "1"}
    validate_manifest(manifest(dashboard, "v1", "ConfigMap"))
    autoscaler = next(
        r
        for r in run.of_type("kubernetes:helm.sh/v3:Release")
        if r.inputs["chart"] == "cluster-autoscaler"
    )
    values = autoscaler.inputs["values"]
    assert values["serviceMonitor"]["selector"] == {"release": "kube-prometheus-stack"}
    assert values["extraArgs"]["emit-per-nodegroup-metrics"] is True
    # Job pods carry their pool for cost tools (OpenCost aggregate=label:...).
    for pool in PROD_POOLS:
        config = tomllib.loads(runner_values(run, pool)["runners"]["config"])["runners"][0]
        assert config["kubernetes"]["pod_labels"]["gitlab-runner-fleet/pool"] == pool


def test_a_pools_hop_limit_reaches_its_launch_template() -> None:
    pools = config_from_stack_file("staging")[f"{PROJECT}:pools"]
    run = run_stack("staging", settings_config(pools=[{**pools[0], "imdsHopLimit": 2}]))
    (template,) = [
        t
        for t in run.of_type("aws:ec2/launchTemplate:LaunchTemplate")
        if t.name == "build-nodes-default"
    ]
    assert template.inputs["metadataOptions"]["httpPutResponseHopLimit"] == 2


def test_hop_limit_two_without_network_policies_is_refused() -> None:
    """At hop limit 2 only the job NetworkPolicy keeps pods off the instance metadata service
    (docs/threat-model.md, first row): both off would hand every job the node role."""
    pools = config_from_stack_file("staging")[f"{PROJECT}:pools"]
    run = run_stack(
        "staging",
        settings_config(
            pools=[{**pools[0], "imdsHopLimit": 2}, *pools[1:]],
            isolation={"networkPolicies": False},
        ),
        return_error=True,
    )
    assert "pools[0].imdsHopLimit: 2 with isolation.networkPolicies: false lets every job" in (
        str(run.error)
    )
    assert run.resources == []


def build_node_role_policies(run: ProgramRun) -> dict[str, set[str]]:
    """Each node group pool's node role's managed policy names; the Karpenter pools' role as
    `karpenter`."""
    policies: dict[str, set[str]] = {}
    for attachment in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment"):
        if attachment.name.startswith("build-nodes-"):
            pool = attachment.name.removeprefix("build-nodes-").split("-role-")[0]
        elif attachment.name.startswith("karpenter-nodes-"):
            pool = "karpenter"
        else:
            continue
        policies.setdefault(pool, set()).add(attachment.inputs["policyArn"].rsplit("/", 1)[1])
    return policies


@pytest.mark.parametrize("running", ["1.35", "1.33"])
def test_an_existing_cluster_on_another_version_is_refused_before_anything_is_declared(
    running: str,
) -> None:
    # EKS CreateNodegroup: the cluster's version "is the only accepted specified value", so a
    # new pool would fail half-way through `pulumi up` (EKS API reference).
    run = run_stack(
        "staging", return_error=True, mocks=FleetMocks(DEFAULT_REGION, cluster_version=running)
    )
    assert f"cluster.version: is 1.34 but cluster ci-staging runs {running}" in str(run.error)
    assert run.resources == []


def test_a_created_clusters_service_range_must_miss_every_vpc_block() -> None:
    # EKS refuses a Service range overlapping any CIDR block of the VPC, and the range cannot
    # change once the cluster exists (EKS API KubernetesNetworkConfigRequest).
    mocks = FleetMocks(DEFAULT_REGION, vpc_cidr_blocks=["10.0.0.0/16", "10.100.0.0/20"])
    run = run_stack("dev", return_error=True, mocks=mocks)
    assert "cluster.serviceCidr: 10.100.0.0/16 overlaps the VPC's CIDR blocks 10.100.0.0/20" in (
        str(run.error)
    )
    assert run.resources == []


@pytest.mark.parametrize(
    ("service_cidr", "mirror_address"),
    [
        ("172.20.0.0/16", "172.20.0.50"),
        # KEP-3070's static band is min(max(16, size/16), 256) addresses from the first usable
        # one: below /22 the 50th address is outside it, so the mirror takes the band's last
        # (found trying a /23 and a /24, which the settings allow, as a new user).
        ("172.20.0.0/23", "172.20.0.32"),
        ("192.168.0.0/24", "192.168.0.16"),
    ],
)
def test_the_service_range_is_a_setting_and_the_mirror_address_follows_it(
    service_cidr: str, mirror_address: str
) -> None:
    cluster = config_from_stack_file("dev")[f"{PROJECT}:cluster"]
    run = run_stack("dev", settings_config(cluster={**cluster, "serviceCidr": service_cidr}))
    assert run.one("eks:index:Cluster").inputs["kubernetesServiceIpAddressRange"] == service_cidr
    assert run.outputs["registryMirrorNodeUrl"] == f"http://{mirror_address}:5000"


def test_dev_enforces_its_network_policies_with_the_vpc_cni_and_its_own_role() -> None:
    run = run_stack("dev")
    addon = run.one("eks:index:VpcCniAddon")
    assert addon.inputs["enableNetworkPolicy"] is True
    assert run.outputs["vpcCniRoleArn"] == addon.inputs["serviceAccountRoleArn"]
    assert run.outputs["networkPolicyEnforcement"].startswith("enforced")
    # AmazonEKS_CNI_Policy allows ec2:ModifyNetworkInterfaceAttribute, DeleteNetworkInterface
    # and DetachNetworkInterface on every interface; a dind job holds its node's role.
    assert build_node_role_policies(run) == {
        "karpenter": {"AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly"}
    }


def test_an_existing_cluster_without_network_policy_enforcement_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    disabled = {"configurationValues": '{"enableNetworkPolicy": "false"}'}
    with caplog.at_level(logging.WARNING):
        run = run_stack("staging", mocks=FleetMocks(DEFAULT_REGION, vpc_cni_addon=disabled))
    assert run.outputs["networkPolicyEnforcement"].startswith("not enforced by the VPC CNI")
    assert "the job NetworkPolicies are accepted and do nothing" in caplog.text
    # Without a vpc-cni add-on (a self-managed CNI) the lookup fails and nothing is known.
    run = run_stack("staging", mocks=FleetMocks(DEFAULT_REGION, vpc_cni_addon={}))
    assert "no readable vpc-cni add-on" in run.outputs["networkPolicyEnforcement"]
    assert run_stack("staging").outputs["networkPolicyEnforcement"].startswith("enforced")


def test_an_existing_clusters_build_nodes_drop_the_cni_policy_only_when_the_cni_has_a_role() -> (
    None
):
    assert build_node_role_policies(run_stack("staging"))["default"] == {
        "AmazonEKSWorkerNodePolicy",
        "AmazonEC2ContainerRegistryReadOnly",
        "AmazonEKS_CNI_Policy",
    }
    cluster = config_from_stack_file("staging")[f"{PROJECT}:cluster"]
    without = settings_config(cluster={**cluster, "nodeCniPolicy": False})
    # At pulumi up, the real add-on without a role (the offline render assumes one and warns:
    # test_render.py::test_build_nodes_without_the_cni_policy_render_with_a_warning).
    no_role = FleetMocks(DEFAULT_REGION)
    refused = run_stack("staging", without, mocks=no_role, return_error=True)
    assert "cluster.nodeCniPolicy: is false, but the cluster's vpc-cni add-on has no role" in (
        str(refused.error)
    )
    with_role = {
        "configurationValues": '{"enableNetworkPolicy": "true"}',
        "serviceAccountRoleArn": "arn:aws:iam::123456789012:role/vpc-cni",
    }
    run = run_stack("staging", without, mocks=FleetMocks(DEFAULT_REGION, vpc_cni_addon=with_role))
    assert "AmazonEKS_CNI_Policy" not in build_node_role_policies(run)["default"]
    # Nothing to read (a self-managed CNI, or no eks:DescribeAddon): the role is kept.
    unreadable = run_stack(
        "staging", without, mocks=FleetMocks(DEFAULT_REGION, vpc_cni_addon={}), return_error=True
    )
    assert "cluster.nodeCniPolicy: is false, but the cluster's vpc-cni add-on cannot be read" in (
        str(unreadable.error)
    )


def test_staging_runs_a_rootless_pool_at_pod_security_baseline() -> None:
    run = run_stack("staging")
    namespace = next(
        n
        for n in run.of_type("kubernetes:core/v1:Namespace")
        if n.inputs["metadata"]["name"] == "gitlab-runner-jobs-rootless"
    )
    labels = namespace.inputs["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["pod-security.kubernetes.io/enforce-version"] == "v1.34"
    kubernetes = tomllib.loads(runner_values(run, "rootless")["runners"]["config"])["runners"][0][
        "kubernetes"
    ]
    assert kubernetes["namespace"] == "gitlab-runner-jobs-rootless"
    assert kubernetes["privileged"] is False
    assert kubernetes["build_container_security_context"] == {
        "privileged": False,
        "allow_privilege_escalation": True,
    }
    assert kubernetes["helper_container_security_context"]["allow_privilege_escalation"] is False
    assert kubernetes["service_container_security_context"] == {"privileged": False}
    assert "volumes" not in kubernetes
    # Its own nodes: dind and rootless jobs never share a node.
    assert node_group(run, "rootless").inputs["taints"] == [
        {"key": "gitlab-runner-fleet/pool", "value": "rootless", "effect": "NO_SCHEDULE"}
    ]
    assert kubernetes["node_selector"]["gitlab-runner-fleet/pool"] == "rootless"
