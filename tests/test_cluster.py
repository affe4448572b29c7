"""EksCluster under Pulumi mocks: created or existing, and the Kubernetes provider it builds."""

from __future__ import annotations

import json
import logging
from typing import Any

import pulumi
import pytest
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

from components.aws.cluster import (
    EksCluster,
    EksClusterArgs,
    VpcCni,
    exec_kubeconfig,
    network_policy_enforcement,
    node_cni_policy_problem,
    service_cidr_problems,
    version_problem,
    vpc_cni_of_addon,
)
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
            "vpc_cni_role_arn",
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
    assert "vpc_id: required in create mode" in str(run.error)


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


def test_a_created_cluster_gives_the_vpc_cni_its_own_role_and_network_policies() -> None:
    run = declare(**CREATE)
    cluster = run.one("eks:index:Cluster")
    # pulumi-eks would create the add-on inside the cluster, where its role cannot trust the
    # cluster's own OIDC provider: the stack declares it next to the cluster instead.
    assert cluster.inputs["useDefaultVpcCni"] is True
    addon = run.one("eks:index:VpcCniAddon")
    # pulumi-eks nodejs/eks/addons/cni-addon.ts: enableNetworkPolicy becomes the add-on's
    # `enableNetworkPolicy: "true"`, without which the VPC CNI enforces no NetworkPolicy.
    assert addon.inputs["enableNetworkPolicy"] is True
    assert addon.inputs["clusterName"] == "fleet-dev"
    assert addon.inputs["clusterVersion"] == "1.34"
    # The cluster's tags, as pulumi-eks gave its own add-on (nodejs/eks/cluster/cluster.ts):
    # a cluster created before keeps them (found in review).
    assert addon.inputs["tags"] == {"component": "cluster"}
    role = next(r for r in run.of_type("aws:iam/role:Role") if r.name == "cluster-vpc-cni")
    assert addon.inputs["serviceAccountRoleArn"] == role.state["arn"]
    trust = json.loads(role.inputs["assumeRolePolicy"])
    (statement,) = trust["Statement"]
    issuer = mock_issuer(REGION, "fleet-dev")
    assert statement["Condition"]["StringEquals"][f"{issuer}:sub"] == (
        "system:serviceaccount:kube-system:aws-node"
    )
    attachments = {
        a.name: a.inputs["policyArn"]
        for a in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    }
    assert attachments["cluster-vpc-cni-policy"] == "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy"
    assert run.outputs["vpc_cni_role_arn"] == role.state["arn"]
    # Nodes join once the CNI can assign addresses with its own role.
    system = run.one("aws:eks/nodeGroup:NodeGroup")
    assert addon.urn in system.dependencies


def test_a_created_clusters_system_nodes_lack_the_cni_policy() -> None:
    run = declare(**CREATE)
    system_attachments = [
        a.inputs["policyArn"]
        for a in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.name.startswith("cluster-system-nodes-")
    ]
    assert sorted(system_attachments) == [
        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
        "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    ]


def test_network_policies_off_leave_the_cni_agent_off() -> None:
    addon = declare(**CREATE, network_policies=False).one("eks:index:VpcCniAddon")
    assert addon.inputs["enableNetworkPolicy"] is False


def test_a_created_cluster_takes_its_service_range_from_the_arguments() -> None:
    cluster = declare(**CREATE, service_cidr="172.20.0.0/16").one("eks:index:Cluster")
    assert cluster.inputs["kubernetesServiceIpAddressRange"] == "172.20.0.0/16"
    run = run_program(
        lambda: EksCluster(
            "cluster",
            {**CREATE, "version": "1.34", "region": REGION, "service_cidr": "8.8.0.0/16"},  # type: ignore[typeddict-item]
        ),
        return_error=True,
    )
    assert "service_cidr: must lie within 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16" in str(
        run.error
    )


@pytest.mark.parametrize(
    ("configured", "running", "expected"),
    [
        ("1.34", "1.34", None),
        # The control plane was upgraded: CreateNodegroup accepts only the cluster's version.
        ("1.33", "1.34", "set cluster.version: '1.34' (the control plane was upgraded)"),
        ("1.35", "1.34", "upgrade the control plane to 1.35 first"),
    ],
)
def test_node_groups_follow_the_running_control_plane(
    configured: str, running: str, expected: str | None
) -> None:
    problem = version_problem(configured, running, "ci-prod")
    if expected is None:
        assert problem is None
    else:
        assert problem is not None
        assert expected in problem


@pytest.mark.parametrize(
    ("cidr", "vpc", "expected"),
    [
        ("10.100.0.0/16", ["10.0.0.0/16"], None),
        ("172.20.0.0/16", ["10.0.0.0/16", "100.64.0.0/16"], None),
        ("192.168.0.0/24", [], None),
        # EKS API KubernetesNetworkConfigRequest serviceIpv4Cidr: private blocks only...
        ("100.64.0.0/16", [], "must lie within 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"),
        # ...between /12 and /24...
        ("10.0.0.0/8", [], "must be between /12 and /24, got /8"),
        ("10.100.0.0/25", [], "must be between /12 and /24, got /25"),
        # ...and overlapping no CIDR block of the VPC, secondary ones included.
        ("10.100.0.0/16", ["10.0.0.0/16", "10.100.128.0/17"], "overlaps the VPC's CIDR blocks"),
        ("10.96.0.0/12", ["10.100.0.0/16"], "overlaps the VPC's CIDR blocks 10.100.0.0/16"),
        ("10.100.0.1/16", [], "must be an IPv4 network"),
    ],
)
def test_service_range_rules(cidr: str, vpc: list[str], expected: str | None) -> None:
    problems = service_cidr_problems(cidr, vpc)
    assert (expected is None) == (not problems)
    if expected:
        assert expected in "; ".join(problems)


@pytest.mark.parametrize(
    ("addon", "expected"),
    [
        (('{"enableNetworkPolicy": "true"}', "", []), VpcCni(True, False)),
        (
            ('{"enableNetworkPolicy":"false","env":{}}', "arn:aws:iam::1:role/cni", []),
            VpcCni(False, True),
        ),
        (("", "", ["aws-node"]), VpcCni(False, True)),
        (("not json", "", ["other"]), VpcCni(False, False)),
    ],
)
def test_the_vpc_cni_add_on_is_read_from_its_configuration(
    addon: tuple[str, str, list[str]], expected: VpcCni
) -> None:
    assert vpc_cni_of_addon(*addon) == expected


def test_what_enforces_network_policies_is_reported() -> None:
    assert network_policy_enforcement(True, created=True, vpc_cni=None)[1] is None
    status, warning = network_policy_enforcement(True, created=False, vpc_cni=VpcCni(True, False))
    assert status.startswith("enforced")
    assert warning is None
    status, warning = network_policy_enforcement(True, created=False, vpc_cni=VpcCni(False, True))
    assert status.startswith("not enforced")
    assert warning is not None
    assert "accepted and do nothing" in warning
    assert network_policy_enforcement(True, created=False, vpc_cni=None)[1] is not None
    assert network_policy_enforcement(False, created=False, vpc_cni=None) == (
        "off: isolation.networkPolicies is false",
        None,
    )


def test_build_nodes_keep_the_cni_policy_while_the_cni_has_no_role() -> None:
    assert node_cni_policy_problem(False, VpcCni(True, False)) is not None
    assert node_cni_policy_problem(False, VpcCni(True, True)) is None
    assert node_cni_policy_problem(True, VpcCni(True, False)) is None
    # Unknown (no readable add-on, a self-managed aws-node): nothing shows a role of its own.
    assert node_cni_policy_problem(False, None) is not None
    assert node_cni_policy_problem(True, None) is None
