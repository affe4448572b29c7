"""Policy documents, statement by statement, plus the parliament IAM linter."""

from __future__ import annotations

from typing import Any

import pytest

from components.aws.iam_documents import (
    cache_access_policy,
    cluster_autoscaler_policy,
    ec2_trust_policy,
    irsa_trust_policy,
    oidc_issuer_host_path,
    tls_only_bucket_policy,
)

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
