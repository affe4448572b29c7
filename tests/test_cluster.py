"""EksCluster under Pulumi mocks: created or existing, and the Kubernetes provider it builds."""

from __future__ import annotations

import json
import logging
from typing import Any

import pulumi
import pytest
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

from components.aws.cluster import EksCluster, EksClusterArgs, exec_kubeconfig
from tests.harness import ACCOUNT_ID, MOCK_CLUSTER_SUBNETS, mock_issuer, run_program

REGION = "eu-west-1"


def declare(**overrides: Any):
    args: EksClusterArgs = {
        "mode": "existing",
        "name": "ci-prod",
        "version": "1.34",
        "region": REGION,
    }
    args.update(overrides)  # type: ignore[typeddict-item]

    def program() -> None:
        cluster = EksCluster("cluster", args)
        for name in (
            "cluster_name",
            "oidc_provider_arn",
            "oidc_issuer",
            "vpc_id",
            "node_subnet_ids",
            "kubeconfig",
        ):
            pulumi.export(name, getattr(cluster, name))

    return run_program(program, region=REGION)


CREATE = {
    "mode": "create",
    "name": "fleet-dev",
    "vpc_id": "vpc-1",
    "private_subnet_ids": ["subnet-a", "subnet-b"],
    "public_subnet_ids": ["subnet-c"],
    "system_instance_types": ["t3.large", "t3a.large"],
    "system_node_count": 1,
    "tags": {"component": "cluster"},
}


def test_created_cluster_has_irsa_api_auth_and_no_default_node_group() -> None:
    run = declare(**CREATE)
    cluster = run.one("eks:index:Cluster")
    assert cluster.inputs["name"] == "fleet-dev"
    assert cluster.inputs["version"] == "1.34"
    assert cluster.inputs["createOidcProvider"] is True
    assert cluster.inputs["skipDefaultNodeGroup"] is True
    assert cluster.inputs["authenticationMode"] == "API"
    assert cluster.inputs["vpcId"] == "vpc-1"
    assert cluster.inputs["privateSubnetIds"] == ["subnet-a", "subnet-b"]
    assert cluster.inputs["publicSubnetIds"] == ["subnet-c"]
    issuer = mock_issuer(REGION, "fleet-dev")
    assert run.outputs["oidc_provider_arn"] == f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{issuer}"
    assert run.outputs["oidc_issuer"] == issuer
    assert run.outputs["cluster_name"] == "fleet-dev"
    assert run.outputs["node_subnet_ids"] == ["subnet-a", "subnet-b"]


def test_created_cluster_gets_a_small_on_demand_system_node_group() -> None:
    run = declare(**CREATE)
    (system,) = run.of_type("aws:eks/nodeGroup:NodeGroup")
    assert system.inputs["capacityType"] == "ON_DEMAND"
    assert system.inputs["clusterName"] == "fleet-dev"
    assert system.inputs["instanceTypes"] == ["t3.large", "t3a.large"]
    assert system.inputs["scalingConfig"] == {"minSize": 1, "desiredSize": 1, "maxSize": 2}
    assert system.inputs["labels"] == {"gitlab-runner-fleet/node-role": "system"}
    assert "taints" not in system.inputs or not system.inputs["taints"]
    # The node group waits for the cluster: its name comes from the cluster's outputs.
    cluster = run.one("eks:index:Cluster")
    assert cluster.urn in system.dependencies
    # In-cluster resources wait for nodes to schedule on, through the provider.
    assert system.urn in run.one("pulumi:providers:kubernetes").dependencies


def test_existing_cluster_is_looked_up_with_its_oidc_provider() -> None:
    run = declare()
    issuer = mock_issuer(REGION, "ci-prod")
    assert run.outputs["cluster_name"] == "ci-prod"
    assert run.outputs["oidc_provider_arn"] == f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{issuer}"
    assert run.outputs["oidc_issuer"] == issuer
    assert run.outputs["vpc_id"] == "vpc-0cluster000000000"
    assert run.outputs["node_subnet_ids"] == MOCK_CLUSTER_SUBNETS
    assert run.of_type("eks:index:Cluster") == []
    assert run.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider") == []


def test_existing_cluster_can_get_its_oidc_provider_created() -> None:
    run = declare(create_oidc_provider=True, node_subnet_ids=["subnet-x"])
    provider = run.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert provider.inputs["url"] == f"https://{mock_issuer(REGION, 'ci-prod')}"
    assert provider.inputs["clientIdLists"] == ["sts.amazonaws.com"]
    assert run.outputs["oidc_provider_arn"] == provider.state["arn"]
    assert run.outputs["node_subnet_ids"] == ["subnet-x"]


def test_kubernetes_provider_is_built_from_the_clusters_own_endpoint() -> None:
    run = declare()
    provider = run.one("pulumi:providers:kubernetes")
    assert is_rpc_secret(provider.inputs["kubeconfig"])
    kubeconfig = json.loads(unwrap_rpc_secret(provider.inputs["kubeconfig"]))
    assert provider.inputs["clusterIdentifier"] == "ci-prod"
    (cluster,) = kubeconfig["clusters"]
    assert cluster["cluster"]["server"] == "https://CI-PROD.gr7.eu-west-1.eks.amazonaws.com"
    assert cluster["cluster"]["certificate-authority-data"] == "LS0tLS1CRUdJTi1NT0NL"
    (user,) = kubeconfig["users"]
    assert user["user"]["exec"]["command"] == "aws"
    assert user["user"]["exec"]["args"] == [
        "--region",
        "eu-west-1",
        "eks",
        "get-token",
        "--cluster-name",
        "ci-prod",
        "--output",
        "json",
    ]
    assert kubeconfig["current-context"] == "ci-prod"
    assert "kubeconfig" in run.secret_outputs


def test_created_cluster_provider_uses_the_pulumi_eks_kubeconfig() -> None:
    run = declare(**CREATE)
    provider = run.one("pulumi:providers:kubernetes")
    kubeconfig = unwrap_rpc_secret(provider.inputs["kubeconfig"])
    assert json.loads(kubeconfig) == {"clusters": [{"name": "fleet-dev"}]}


def test_version_mismatch_with_an_existing_cluster_is_warned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        declare(version="1.33")
    assert "cluster.version is 1.33 but cluster ci-prod runs 1.34" in caplog.text


def test_exec_kubeconfig_has_no_static_token() -> None:
    config = exec_kubeconfig("c", "https://x", "Q0E=", "us-east-1")
    assert "token" not in json.dumps(config["users"]).replace("get-token", "")


def test_create_without_network_is_refused() -> None:
    run = run_program(
        lambda: EksCluster(
            "cluster", {"mode": "create", "name": "c", "version": "1.34", "region": REGION}
        ),
        return_error=True,
    )
    assert "create mode needs vpc_id and private_subnet_ids" in str(run.error)


def test_the_system_node_group_follows_the_clusters_version() -> None:
    group = declare(**CREATE).one("aws:eks/nodeGroup:NodeGroup")
    assert group.inputs["version"] == "1.34"


ADMINS = [
    "arn:aws:iam::123456789012:role/gitlab-runner-fleet-deploy",
    "arn:aws:iam::123456789012:role/AWSReservedSSO_Admin_abc",
]


def test_admin_principals_get_access_entries_with_cluster_admin() -> None:
    # pulumi-eks grants admin only to the creating principal
    # (bootstrapClusterCreatorAdminPermissions); CI and humans need access entries.
    run = declare(**CREATE, admin_principal_arns=ADMINS)
    entries = run.of_type("aws:eks/accessEntry:AccessEntry")
    # Registrations arrive in whatever order their inputs resolve.
    assert sorted(e.inputs["principalArn"] for e in entries) == sorted(ADMINS)
    assert all(e.inputs["clusterName"] == "fleet-dev" for e in entries)
    assert all(e.inputs["type"] == "STANDARD" for e in entries)
    associations = run.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert sorted(a.inputs["principalArn"] for a in associations) == sorted(ADMINS)
    for association in associations:
        assert association.inputs["policyArn"] == (
            "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
        )
        assert association.inputs["accessScope"] == {"type": "cluster"}
    assert declare(**CREATE).of_type("aws:eks/accessEntry:AccessEntry") == []


def test_the_kubeconfig_fetches_tokens_as_the_stacks_aws_profile() -> None:
    kubeconfig = exec_kubeconfig("ci", "https://x", "ca", "eu-west-1", profile="ci-deployer")
    exec_config = kubeconfig["users"][0]["user"]["exec"]
    assert exec_config["args"][-2:] == ["--profile", "ci-deployer"]
    assert {"name": "AWS_PROFILE", "value": "ci-deployer"} in exec_config["env"]
    assert "--region" in exec_config["args"]
    plain = exec_kubeconfig("ci", "https://x", "ca", "eu-west-1")["users"][0]["user"]["exec"]
    assert "--profile" not in plain["args"]
    assert "env" not in plain


def test_existing_cluster_kubeconfig_and_created_cluster_honour_the_profile() -> None:
    run = declare(aws_profile="ci-deployer")
    kubeconfig = json.loads(run.outputs["kubeconfig"])
    assert "--profile" in kubeconfig["users"][0]["user"]["exec"]["args"]
    created = declare(**CREATE, aws_profile="ci-deployer").one("eks:index:Cluster")
    assert created.inputs["providerCredentialOpts"] == {"profileName": "ci-deployer"}
