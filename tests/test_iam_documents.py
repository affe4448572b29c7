"""Policy documents, statement by statement, plus the parliament IAM linter."""

from __future__ import annotations

import json
from typing import Any

import pytest
from parliament import analyze_policy_string

from components.aws.iam_documents import (
    cache_access_policy,
    cluster_autoscaler_policy,
    ec2_trust_policy,
    interruption_queue_policy,
    irsa_trust_policy,
    karpenter_controller_policy,
    oidc_issuer_host_path,
    tls_only_bucket_policy,
)
from tests.iam_policy import allows

BUCKET_ARN = "arn:aws:s3:::gitlab-runner-fleet-prod-cache-123456789012"
KMS_KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OIDC_ARN = (
    "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABCDEF0123456789"
)
ISSUER = "oidc.eks.eu-west-1.amazonaws.com/id/ABCDEF0123456789"


def statements_by_sid(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {statement["Sid"]: statement for statement in document["Statement"]}


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def test_cache_policy_grants_exactly_the_five_cache_actions() -> None:
    document = cache_access_policy(BUCKET_ARN, "runner-cache")
    assert document["Version"] == "2012-10-17"
    statements = statements_by_sid(document)
    assert set(statements) == {"CacheObjects", "ListCacheBucket"}

    objects = statements["CacheObjects"]
    assert objects["Effect"] == "Allow"
    assert sorted(objects["Action"]) == [
        "s3:DeleteObject",
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:PutObject",
    ]
    assert objects["Resource"] == f"{BUCKET_ARN}/runner-cache/*"
    assert "Condition" not in objects

    # S3 answers a GET of a missing key with 404 only to callers allowed s3:ListBucket on the
    # bucket, else 403 (S3 GetObject docs, "Permissions"); the runner's helper then logs a
    # failed download instead of a cache miss. No s3:prefix condition: S3 decides 404-or-403
    # without one, so a prefix-scoped grant still answers 403.
    listing = statements["ListCacheBucket"]
    assert listing["Action"] == "s3:ListBucket"
    assert listing["Resource"] == BUCKET_ARN
    assert "Condition" not in listing


def test_cache_policy_uses_the_key_only_when_sse_kms_is_on() -> None:
    statements = statements_by_sid(cache_access_policy(BUCKET_ARN, "runner-cache", KMS_KEY_ARN))
    kms = statements["CacheEncryptionKey"]
    assert kms["Effect"] == "Allow"
    assert sorted(kms["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert kms["Resource"] == KMS_KEY_ARN
    assert "CacheEncryptionKey" not in statements_by_sid(cache_access_policy(BUCKET_ARN, "c"))


@pytest.mark.parametrize("kms_key_arn", [None, KMS_KEY_ARN])
def test_cache_policy_has_no_wildcard_action_or_resource(kms_key_arn: str | None) -> None:
    for statement in cache_access_policy(BUCKET_ARN, "runner-cache", kms_key_arn)["Statement"]:
        for action in as_list(statement["Action"]):
            assert "*" not in action
        for resource in as_list(statement["Resource"]):
            assert resource != "*"
            assert resource.startswith((BUCKET_ARN, KMS_KEY_ARN))


def test_cache_policy_keeps_the_partition_of_the_arns_it_is_given() -> None:
    china_bucket = "arn:aws-cn:s3:::cache-bucket"
    document = cache_access_policy(china_bucket, "runner-cache")
    resources = [r for s in document["Statement"] for r in as_list(s["Resource"])]
    assert resources
    assert all(r.startswith("arn:aws-cn:s3:::") for r in resources)


@pytest.mark.parametrize("kms_key_arn", [None, KMS_KEY_ARN])
def test_cache_policy_passes_parliament(lint_policy, kms_key_arn: str | None) -> None:
    assert lint_policy(cache_access_policy(BUCKET_ARN, "runner-cache", kms_key_arn)) == []


def test_parliament_does_flag_a_broad_policy(lint_policy) -> None:
    """Guards the linter itself: the 50-action style of policy this project replaces is flagged."""
    broad = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
    issues = {issue for issue, _ in lint_policy(broad)}
    assert "RESOURCE_STAR" in issues


def test_tls_only_policy_denies_every_request_without_tls(lint_policy) -> None:
    document = tls_only_bucket_policy(BUCKET_ARN)
    (statement,) = document["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Action"] == "s3:*"
    assert statement["Resource"] == [BUCKET_ARN, f"{BUCKET_ARN}/*"]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert lint_policy(document) == []


def test_irsa_trust_pins_service_account_and_audience() -> None:
    document = irsa_trust_policy(OIDC_ARN, "gitlab-runner", "gitlab-runner")
    (statement,) = document["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Federated": OIDC_ARN}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"] == {
        "StringEquals": {
            f"{ISSUER}:sub": "system:serviceaccount:gitlab-runner:gitlab-runner",
            f"{ISSUER}:aud": "sts.amazonaws.com",
        }
    }
    condition_keys = statement["Condition"]["StringEquals"]
    assert not any(key.startswith("https://") for key in condition_keys)


@pytest.mark.parametrize(
    "given",
    [
        OIDC_ARN,
        f"https://{ISSUER}",
        f"https://{ISSUER}/",
        ISSUER,
        "arn:aws-us-gov:iam::123456789012:oidc-provider/" + ISSUER,
    ],
)
def test_issuer_is_written_without_scheme(given: str) -> None:
    assert oidc_issuer_host_path(given) == ISSUER


DISCOVERY = ("gitlab-runner-fleet/autoscaler", "gitlab-runner-fleet-prod")


def test_autoscaler_describes_everything_but_scales_only_this_stacks_pools(lint_policy) -> None:
    document = cluster_autoscaler_policy(OIDC_ARN, "eu-west-1", "ci-prod", DISCOVERY)
    statements = statements_by_sid(document)
    describe = statements["DiscoverNodeGroups"]
    assert describe["Resource"] == "*"
    assert all(":Describe" in a or ":Get" in a for a in describe["Action"])
    assert "ec2:DescribeLaunchTemplateVersions" in describe["Action"]

    nodegroups = statements["DescribeThisClustersNodeGroups"]
    assert nodegroups["Action"] == "eks:DescribeNodegroup"
    assert nodegroups["Resource"] == "arn:aws:eks:eu-west-1:123456789012:nodegroup/ci-prod/*/*"

    scale = statements["ScaleThisStacksPools"]
    assert sorted(scale["Action"]) == [
        "autoscaling:SetDesiredCapacity",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
    ]
    assert scale["Resource"] == (
        "arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:*:autoScalingGroupName/eks-*"
    )
    # Not `k8s.io/cluster-autoscaler/<cluster>`: EKS puts that on every managed node group's
    # Auto Scaling group, other teams' included.
    assert scale["Condition"] == {
        "StringEquals": {
            "aws:ResourceTag/gitlab-runner-fleet/autoscaler": "gitlab-runner-fleet-prod"
        }
    }
    assert lint_policy(document) == []


def test_autoscaler_policy_follows_the_partition_of_the_oidc_provider() -> None:
    china = "arn:aws-cn:iam::123456789012:oidc-provider/oidc.eks.cn-north-1.amazonaws.com.cn/id/X"
    document = cluster_autoscaler_policy(china, "cn-north-1", "ci", DISCOVERY)
    scoped = [s["Resource"] for s in document["Statement"] if s["Resource"] != "*"]
    assert scoped
    assert all(resource.startswith("arn:aws-cn:") for resource in scoped)


def test_ec2_trust_lets_only_ec2_assume_the_node_role() -> None:
    (statement,) = ec2_trust_policy()["Statement"]
    assert statement["Principal"] == {"Service": "ec2.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"


# --- Karpenter's controller ----------------------------------------------------------------------

ACCOUNT = "123456789012"
NODE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/karpenter-nodes-3f2a"
QUEUE = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:karpenter-interruptions-0b1c"
EC2 = f"arn:aws:ec2:eu-west-1:{ACCOUNT}"
# What Karpenter puts on everything it launches for cluster ci (karpenter-provider-aws
# v1.14.1 pkg/utils/utils.go, pkg/providers/instance/instance.go).
LAUNCH_TAGS = {
    "aws:RequestTag/kubernetes.io/cluster/ci": "owned",
    "aws:RequestTag/eks:eks-cluster-name": "ci",
    "aws:RequestTag/karpenter.sh/nodepool": "gitlab-runner-fleet-default",
}
ITS_INSTANCE = {
    "aws:ResourceTag/kubernetes.io/cluster/ci": "owned",
    "aws:ResourceTag/karpenter.sh/nodepool": "gitlab-runner-fleet-default",
}
# Instance profiles Karpenter creates from an EC2NodeClass's role (pkg/apis/v1/
# ec2nodeclass.go InstanceProfileTags): the cluster, the region and the EC2NodeClass.
PROFILE_TAGS = {
    "kubernetes.io/cluster/ci": "owned",
    "topology.kubernetes.io/region": "eu-west-1",
    "karpenter.k8s.aws/ec2nodeclass": "gitlab-runner-fleet-default",
}


def karpenter_policy(partition: str = "aws") -> dict[str, Any]:
    return karpenter_controller_policy(
        partition=partition,
        account=ACCOUNT,
        region="eu-west-1" if partition == "aws" else "cn-north-1",
        cluster_name="ci",
        node_role_arns=[NODE_ROLE],
        interruption_queue_arn=QUEUE,
    )


def tagged(prefix: str, tags: dict[str, str]) -> dict[str, str]:
    return {f"aws:{prefix}/{key}": value for key, value in tags.items()}


@pytest.mark.parametrize(
    ("action", "resource", "context", "allowed"),
    [
        # Launching: only with this cluster's tags and a NodePool in the request.
        ("ec2:CreateFleet", f"{EC2}:fleet/*", LAUNCH_TAGS, True),
        ("ec2:RunInstances", f"{EC2}:instance/*", LAUNCH_TAGS, True),
        (
            "ec2:CreateFleet",
            f"{EC2}:instance/*",
            {**LAUNCH_TAGS, "aws:RequestTag/kubernetes.io/cluster/ci": "shared"},
            False,
        ),
        (
            "ec2:CreateFleet",
            f"{EC2}:instance/*",
            {
                "aws:RequestTag/kubernetes.io/cluster/other": "owned",
                "aws:RequestTag/eks:eks-cluster-name": "other",
                "aws:RequestTag/karpenter.sh/nodepool": "default",
            },
            False,
        ),
        (
            "ec2:CreateFleet",
            f"{EC2}:instance/*",
            {k: v for k, v in LAUNCH_TAGS.items() if "nodepool" not in k},
            False,
        ),
        ("ec2:RunInstances", f"{EC2}:subnet/subnet-0a1", {}, True),
        ("ec2:RunInstances", "arn:aws:ec2:eu-west-1:999999999999:subnet/subnet-0a1", {}, False),
        ("ec2:RunInstances", "arn:aws:ec2:us-east-1::image/ami-0a1", {}, False),
        ("ec2:CreateFleet", f"{EC2}:launch-template/lt-0a1", ITS_INSTANCE, True),
        (
            "ec2:CreateFleet",
            f"{EC2}:launch-template/lt-0a1",
            {"aws:ResourceTag/kubernetes.io/cluster/ci": "owned"},
            False,
        ),
        # Tagging: in the launching call, or only Name and the NodeClaim afterwards.
        (
            "ec2:CreateTags",
            f"{EC2}:volume/vol-0a1",
            {**LAUNCH_TAGS, "ec2:CreateAction": "CreateFleet"},
            True,
        ),
        (
            "ec2:CreateTags",
            f"{EC2}:instance/i-0a1",
            {**ITS_INSTANCE, "aws:TagKeys": ["Name", "karpenter.sh/nodeclaim"]},
            True,
        ),
        (
            "ec2:CreateTags",
            f"{EC2}:instance/i-0a1",
            {**ITS_INSTANCE, "aws:TagKeys": ["kubernetes.io/cluster/other"]},
            False,
        ),
        (
            "ec2:CreateTags",
            f"{EC2}:instance/i-0a1",
            {"aws:ResourceTag/kubernetes.io/cluster/other": "owned", "aws:TagKeys": ["Name"]},
            False,
        ),
        # Terminating: only its own nodes; a managed node group's node of the same cluster
        # carries the cluster tag but no NodePool.
        ("ec2:TerminateInstances", f"{EC2}:instance/i-0a1", ITS_INSTANCE, True),
        (
            "ec2:TerminateInstances",
            f"{EC2}:instance/i-0a1",
            {"aws:ResourceTag/kubernetes.io/cluster/ci": "owned"},
            False,
        ),
        (
            "ec2:TerminateInstances",
            f"{EC2}:instance/i-0a1",
            {
                "aws:ResourceTag/kubernetes.io/cluster/other": "owned",
                "aws:ResourceTag/karpenter.sh/nodepool": "default",
            },
            False,
        ),
        # Roles: only the node role, only to EC2.
        ("iam:PassRole", NODE_ROLE, {"iam:PassedToService": "ec2.amazonaws.com"}, True),
        (
            "iam:PassRole",
            f"arn:aws:iam::{ACCOUNT}:role/admin",
            {"iam:PassedToService": "ec2.amazonaws.com"},
            False,
        ),
        ("iam:PassRole", NODE_ROLE, {"iam:PassedToService": "lambda.amazonaws.com"}, False),
        ("iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/any", {}, False),
        # Instance profiles: created, tagged and changed only with this cluster's and region's
        # tags.
        (
            "iam:CreateInstanceProfile",
            f"arn:aws:iam::{ACCOUNT}:instance-profile/ci_123",
            {**tagged("RequestTag", PROFILE_TAGS), "aws:RequestTag/eks:eks-cluster-name": "ci"},
            True,
        ),
        (
            "iam:CreateInstanceProfile",
            f"arn:aws:iam::{ACCOUNT}:instance-profile/ci_123",
            {
                **tagged("RequestTag", PROFILE_TAGS),
                "aws:RequestTag/eks:eks-cluster-name": "ci",
                "aws:RequestTag/topology.kubernetes.io/region": "us-east-1",
            },
            False,
        ),
        (
            "iam:AddRoleToInstanceProfile",
            f"arn:aws:iam::{ACCOUNT}:instance-profile/ci_123",
            tagged("ResourceTag", PROFILE_TAGS),
            True,
        ),
        (
            "iam:DeleteInstanceProfile",
            f"arn:aws:iam::{ACCOUNT}:instance-profile/other_123",
            tagged("ResourceTag", {**PROFILE_TAGS, "kubernetes.io/cluster/other": "owned"})
            | {"aws:ResourceTag/kubernetes.io/cluster/ci": "shared"},
            False,
        ),
        # Its cluster, its queue, its region, the EKS AMI parameters.
        ("eks:DescribeCluster", f"arn:aws:eks:eu-west-1:{ACCOUNT}:cluster/ci", {}, True),
        ("eks:DescribeCluster", f"arn:aws:eks:eu-west-1:{ACCOUNT}:cluster/prod", {}, False),
        ("sqs:ReceiveMessage", QUEUE, {}, True),
        ("sqs:ReceiveMessage", f"arn:aws:sqs:eu-west-1:{ACCOUNT}:orders", {}, False),
        ("sqs:SendMessage", QUEUE, {}, False),
        ("ec2:DescribeInstanceStatus", "*", {"aws:RequestedRegion": "eu-west-1"}, True),
        ("ec2:DescribeSubnets", "*", {"aws:RequestedRegion": "us-east-1"}, False),
        (
            "ssm:GetParameter",
            "arn:aws:ssm:eu-west-1::parameter/aws/service/eks/optimized-ami/1.34/"
            "amazon-linux-2023/x86_64/standard/amazon-eks-node-al2023-x86_64-standard-1.34-"
            "v20260714/image_id",
            {},
            True,
        ),
        (
            "ssm:GetParameter",
            f"arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/ci/database-password",
            {},
            False,
        ),
    ],
)
def test_karpenters_controller_may_act_only_on_this_clusters_nodes(
    action: str, resource: str, context: dict[str, Any], allowed: bool
) -> None:
    assert allows(karpenter_policy(), action, resource, context) is allowed


def parliament_findings_karpenter_cannot_avoid(document: dict[str, Any]) -> list[str]:
    """The parliament findings of Karpenter's controller policy, minus those inherent in what
    it does: it passes a role and launches instances with it (bounded to the node roles), it
    manages instance profiles (bounded by their tags), one launch needs statements with
    different conditions per resource type (Karpenter's own policy splits them alike), and
    public SSM parameters have no account in their ARN."""
    inherent_actions = {
        "iam:passrole",
        "iam:createinstanceprofile",
        "iam:addroletoinstanceprofile",
        "iam:removerolefrominstanceprofile",
        "iam:deleteinstanceprofile",
    }
    split_launch = {"ec2:RunInstances", "ec2:CreateFleet", "ssm:GetParameter"}
    policy = analyze_policy_string(json.dumps(document), include_community_auditors=True)
    left = []
    for finding in policy.findings:
        issue, detail, location = finding.issue, finding.detail, finding.location
        if issue == "PERMISSIONS_MANAGEMENT_ACTIONS" and set(location["actions"]) <= (
            inherent_actions
        ):
            continue
        if issue == "PRIVILEGE_ESCALATION" and location["type"] == "CreateEC2WithExistingIP":
            continue
        if issue == "RESOURCE_MISMATCH" and {d["action"] for d in detail} <= split_launch:
            continue
        left.append(f"{issue}: {detail} {location}")
    return left


def test_karpenters_controller_policy_passes_parliament_but_for_what_karpenter_is(
    lint_policy,
) -> None:
    assert {issue for issue, _ in lint_policy(karpenter_policy())} == {
        "PERMISSIONS_MANAGEMENT_ACTIONS",
        "PRIVILEGE_ESCALATION",
        "RESOURCE_MISMATCH",
    }
    assert parliament_findings_karpenter_cannot_avoid(karpenter_policy()) == []


def test_karpenters_controller_policy_describes_only_what_it_reads() -> None:
    statements = statements_by_sid(karpenter_policy())
    # pkg/controllers/interruption/instancestatus_controller.go needs DescribeInstanceStatus
    # since 1.12; every describe is limited to the cluster's region.
    describe = statements["DescribeTheRegion"]
    assert "ec2:DescribeInstanceStatus" in describe["Action"]
    assert describe["Condition"] == {"StringEquals": {"aws:RequestedRegion": "eu-west-1"}}
    unscoped = [s["Sid"] for s in statements.values() if s["Resource"] == "*"]
    assert sorted(unscoped) == ["DescribeTheRegion", "ListInstanceProfiles", "ReadPrices"]
    assert statements["PassOnlyTheNodeRoles"]["Resource"] == [NODE_ROLE]


def test_karpenters_controller_policy_follows_the_partition() -> None:
    china = karpenter_policy("aws-cn")
    resources = [r for s in china["Statement"] for r in as_list(s["Resource"])]
    assert all(r.startswith("arn:aws-cn:") or r in ("*", NODE_ROLE, QUEUE) for r in resources)
    passed = statements_by_sid(china)["PassOnlyTheNodeRoles"]["Condition"]
    assert passed == {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com.cn"}}


def test_only_the_stacks_rules_may_feed_the_interruption_queue_and_only_over_tls(
    lint_policy,
) -> None:
    rule = "arn:aws:events:eu-west-1:123456789012:rule/karpenter-spot-interruption-1a2b"
    document = interruption_queue_policy(QUEUE, [rule])
    events = "events.amazonaws.com"
    tls = {"aws:SecureTransport": "true"}
    assert allows(
        document, "sqs:SendMessage", QUEUE, {**tls, "aws:SourceArn": rule}, principal=events
    )
    other = "arn:aws:events:eu-west-1:999999999999:rule/theirs"
    assert not allows(
        document, "sqs:SendMessage", QUEUE, {**tls, "aws:SourceArn": other}, principal=events
    )
    assert not allows(
        document,
        "sqs:SendMessage",
        QUEUE,
        {"aws:SecureTransport": "false", "aws:SourceArn": rule},
        principal=events,
    )
    assert lint_policy(document) == []
