"""Every stack file evaluates end to end under mocks, with the properties its comments promise."""

from __future__ import annotations

import json
import time
import tomllib
from typing import Any

import pytest
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

from components.settings import reference_table
from tests.harness import (
    ACCOUNT_ID,
    MOCK_ROUTE_TABLES,
    PROJECT,
    REPO,
    RUNNER_TOKEN,
    ProgramRun,
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
EXPORTS = {
    "clusterName",
    "buildNodeGroupName",
    "buildAutoscalingGroupName",
    "buildNodeRoleArn",
    "buildScaleFromZeroTags",
    "clusterAutoscalerRoleArn",
    "runnerNamespace",
    "runnerConfigChecksum",
    "cacheBucketName",
    "cacheBucketArn",
    "cacheBucketRegion",
    "cachePrefix",
    "cachePolicyArn",
    "cacheRoleArn",
    "cacheUserName",
    "cacheAccessKeyId",
    "cacheSecretAccessKey",
}
TAGGABLE = {
    "aws:s3/bucket:Bucket",
    "aws:iam/policy:Policy",
    "aws:iam/role:Role",
    "aws:iam/user:User",
    "aws:eks/nodeGroup:NodeGroup",
    "aws:ec2/vpcEndpoint:VpcEndpoint",
    "eks:index:Cluster",
}


def test_every_environment_has_a_stack_file() -> None:
    assert set(STACKS) == {"dev", "staging", "prod", "onprem"}
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
    assert set(run.outputs) == {
        "clusterName",
        "cachePrefix",
        "runnerNamespace",
        "runnerConfigChecksum",
    }
    assert run.outputs["clusterName"] == "k3s-office"


def test_onprem_runner_uses_minio_with_access_keys_from_secrets() -> None:
    run = run_stack("onprem")
    values = runner_values(run)
    assert "annotations" not in values["serviceAccount"]
    assert values["runners"]["cache"] == {"secretName": "gitlab-runner-cache"}
    cache_secret = next(
        s
        for s in run.of_type("kubernetes:core/v1:Secret")
        if s.inputs["metadata"]["name"] == "gitlab-runner-cache"
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
    assert config["kubernetes"]["poll_timeout"] == 180


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"buildNodes": {"maxSize": 5}}, "buildNodes.maxSize: is only used on EKS"),
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
    assert EXPORTS <= set(run.outputs) <= EXPORTS | {"s3GatewayEndpointId"}
    assert run.outputs["clusterName"] == config_from_stack_file(stack)[f"{PROJECT}:cluster"]["name"]
    assert run.outputs["buildAutoscalingGroupName"] == "eks-build-nodes-mock-asg"
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
    assert run.secret_outputs == set()


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_every_aws_resource_carries_the_allocation_tags(stack: str) -> None:
    run = run_stack(stack)
    cost_center = config_from_stack_file(stack)["gitlab-runner-fleet:tags"]["cost-center"]
    tagged = [r for r in run.resources if r.type in TAGGABLE]
    assert {r.type for r in tagged} >= {
        "aws:s3/bucket:Bucket",
        "aws:iam/policy:Policy",
        "aws:iam/role:Role",
        "aws:eks/nodeGroup:NodeGroup",
    }
    for resource in tagged:
        tags = resource.inputs["tags"]
        assert tags["project"] == "gitlab-runner-fleet", resource.name
        assert tags["stack"] == stack
        assert tags["component"] in {
            "cluster",
            "build-nodes",
            "cluster-autoscaler",
            "network",
            "cache-bucket",
            "cache-access",
        }
        assert tags["cost-center"] == cost_center


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_irsa_roles_trust_their_service_accounts_on_the_stacks_cluster(stack: str) -> None:
    run = run_stack(stack)
    cluster_name = config_from_stack_file(stack)[f"{PROJECT}:cluster"]["name"]
    issuer = mock_issuer("eu-west-1", cluster_name)
    oidc_arn = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{issuer}"
    roles = {r.name: r.inputs["assumeRolePolicy"] for r in run.of_type("aws:iam/role:Role")}
    for role_name, subject in (
        ("cache-access-irsa", "system:serviceaccount:gitlab-runner:gitlab-runner"),
        ("cluster-autoscaler-irsa", "system:serviceaccount:kube-system:cluster-autoscaler"),
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


def test_prod_asg_gets_exactly_the_tags_its_labels_and_taints_imply() -> None:
    run = run_stack("prod")
    prefix = "k8s.io/cluster-autoscaler/node-template"
    expected = {
        f"{prefix}/label/intent": "build",
        f"{prefix}/label/nodegroup-type": "stateless",
        f"{prefix}/label/instance-type": "spot",
        f"{prefix}/label/eks.amazonaws.com/capacityType": "SPOT",
        f"{prefix}/taint/buildInstance": "true:NoSchedule",
        f"{prefix}/resources/ephemeral-storage": "90Gi",
    }
    asg_tags = run.of_type("aws:autoscaling/tag:Tag")
    assert {t.inputs["tag"]["key"]: t.inputs["tag"]["value"] for t in asg_tags} == expected
    assert run.outputs["buildScaleFromZeroTags"] == expected
    build_group = next(
        g for g in run.of_type("aws:eks/nodeGroup:NodeGroup") if g.name == "build-nodes"
    )
    assert build_group.inputs["subnetIds"] == [
        "subnet-0ccccccccccccccc1",
        "subnet-0ccccccccccccccc2",
        "subnet-0ccccccccccccccc3",
    ]
    assert build_group.inputs["scalingConfig"] == {"minSize": 0, "desiredSize": 0, "maxSize": 40}


def test_dev_creates_its_cluster_and_an_s3_endpoint_by_default() -> None:
    run = run_stack("dev")
    assert run.one("eks:index:Cluster").inputs["name"] == "gitlab-runner-fleet-dev"
    endpoint = run.one("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert endpoint.inputs["vpcId"] == "vpc-0123456789abcdef0"
    assert endpoint.inputs["routeTableIds"] == MOCK_ROUTE_TABLES


def test_staging_uses_an_existing_cluster_without_touching_its_network() -> None:
    run = run_stack("staging")
    assert run.of_type("eks:index:Cluster") == []
    assert run.of_type("aws:ec2/vpcEndpoint:VpcEndpoint") == []


def test_an_existing_autoscaler_can_be_kept() -> None:
    run = run_stack("prod", settings_config(clusterAutoscaler={"enabled": False}))
    assert [r.name for r in run.of_type("kubernetes:helm.sh/v3:Release")] == ["gitlab-runner"]
    assert "clusterAutoscalerRoleArn" not in run.outputs
    assert {r.name for r in run.of_type("aws:iam/role:Role")} == {
        "build-nodes-role",
        "cache-access-irsa",
    }


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
    }


def test_access_key_mode_keeps_the_key_secret_in_stack_outputs() -> None:
    run = run_stack("staging", settings_config(cacheAccess={"mode": "accessKey"}))
    assert "cache-access-irsa" not in {r.name for r in run.of_type("aws:iam/role:Role")}
    assert run.outputs["cacheUserName"] == run.one("aws:iam/user:User").state["name"]
    assert run.secret_outputs == {"cacheAccessKeyId", "cacheSecretAccessKey"}
    assert run.outputs["cacheRoleArn"] is None


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


@pytest.mark.parametrize("stack", STACKS)
def test_stack_evaluation_stays_well_under_a_second(stack: str) -> None:
    run_stack(stack)  # the first run pays the SDK imports
    started = time.perf_counter()
    run_stack(stack)
    assert time.perf_counter() - started < 0.5


def runner_values(run: ProgramRun) -> dict[str, Any]:
    release = next(
        r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.name == "gitlab-runner"
    )
    values: dict[str, Any] = release.inputs["values"]
    return values


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
    token_secret = next(
        s
        for s in run.of_type("kubernetes:core/v1:Secret")
        if s.inputs["metadata"]["name"] == "gitlab-runner-token"
    )
    assert unwrap_rpc_secret(token_secret.inputs["stringData"])["runner-token"] == RUNNER_TOKEN


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_irsa_cache_role_goes_on_the_managers_service_account(stack: str) -> None:
    run = run_stack(stack)
    values = runner_values(run)
    cache_role = next(r for r in run.of_type("aws:iam/role:Role") if r.name == "cache-access-irsa")
    assert values["serviceAccount"]["annotations"] == {
        "eks.amazonaws.com/role-arn": cache_role.state["arn"]
    }
    assert values["serviceAccount"]["name"] == "gitlab-runner"
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
    assert priority_class.inputs["value"] == -10
    values = runner_values(run)
    assert values["metrics"]["podMonitor"] == {"enabled": True}
    assert any(rule["resources"] == ["deployments"] for rule in values["rbac"]["rules"])
    assert run.of_type("kubernetes:scheduling.k8s.io/v1:PriorityClass") != []


def test_access_key_mode_puts_the_generated_keys_in_the_cache_secret() -> None:
    run = run_stack("staging", settings_config(cacheAccess={"mode": "accessKey"}))
    values = runner_values(run)
    assert values["runners"]["cache"] == {"secretName": "gitlab-runner-cache"}
    assert "annotations" not in values["serviceAccount"]
    cache_secret = next(
        s
        for s in run.of_type("kubernetes:core/v1:Secret")
        if s.inputs["metadata"]["name"] == "gitlab-runner-cache"
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


def test_readme_config_reference_matches_the_settings_model() -> None:
    assert reference_table() in (REPO / "README.md").read_text()
