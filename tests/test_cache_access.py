"""CacheAccess under Pulumi mocks: the policy, the IRSA role and the access-key user."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest
from pulumi.runtime.rpc import is_rpc_secret

from components.aws.cache_access import CacheAccess, CacheAccessArgs
from tests.harness import ProgramRun, policy_document, run_program

BUCKET_ARN = "arn:aws:s3:::acme-runner-cache"
KMS_KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ISSUER = "oidc.eks.eu-west-1.amazonaws.com/id/ABCDEF0123456789"
OIDC_ARN = f"arn:aws:iam::123456789012:oidc-provider/{ISSUER}"


def declare(**overrides: Any) -> tuple[ProgramRun, dict[str, Any]]:
    args: CacheAccessArgs = {
        "bucket_arn": BUCKET_ARN,
        "cache_prefix": "runner-cache",
        "mode": "irsa",
        "oidc_provider_arn": OIDC_ARN,
        "service_account_namespace": "ci",
        "service_account_name": "runner-manager",
        "tags": {"component": "cache-access"},
    }
    args.update(overrides)  # type: ignore[typeddict-item]
    outputs: dict[str, Any] = {}

    def program() -> None:
        access = CacheAccess("cache-access", args)
        for name in ("policy_arn", "role_arn", "user_name", "access_key_id", "secret_access_key"):
            pulumi.export(name, getattr(access, name))

    run = run_program(program)
    outputs.update(run.outputs)
    return run, outputs


def test_policy_is_the_least_privilege_cache_policy() -> None:
    run, _ = declare()
    policy = run.one("aws:iam/policy:Policy")
    statements = {s["Sid"]: s for s in policy_document(policy)["Statement"]}
    assert set(statements) == {"CacheObjects", "ListCacheBucket"}
    assert statements["CacheObjects"]["Resource"] == f"{BUCKET_ARN}/runner-cache/*"
    assert statements["ListCacheBucket"]["Resource"] == BUCKET_ARN
    assert policy.inputs["tags"] == {"component": "cache-access"}


def test_kms_key_is_granted_when_the_bucket_uses_it() -> None:
    run, _ = declare(kms_key_arn=KMS_KEY_ARN)
    statements = {
        s["Sid"]: s for s in policy_document(run.one("aws:iam/policy:Policy"))["Statement"]
    }
    assert statements["CacheEncryptionKey"]["Resource"] == KMS_KEY_ARN


def test_irsa_role_trusts_only_the_runner_service_account() -> None:
    run, outputs = declare()
    role = run.one("aws:iam/role:Role")
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Federated": OIDC_ARN}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"]["StringEquals"] == {
        f"{ISSUER}:sub": "system:serviceaccount:ci:runner-manager",
        f"{ISSUER}:aud": "sts.amazonaws.com",
    }
    attachment = run.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    policy = run.one("aws:iam/policy:Policy")
    assert attachment.inputs["role"] == role.state["name"]
    assert attachment.inputs["policyArn"] == policy.state["arn"]
    assert outputs["role_arn"] == role.state["arn"]
    assert outputs["policy_arn"] == policy.state["arn"]
    assert outputs["user_name"] is None
    assert outputs["secret_access_key"] is None
    assert run.of_type("aws:iam/user:User") == []
    assert run.of_type("aws:iam/accessKey:AccessKey") == []


def test_access_key_mode_creates_a_user_whose_key_stays_secret() -> None:
    run, outputs = declare(mode="accessKey", oidc_provider_arn=None)
    user = run.one("aws:iam/user:User")
    attachment = run.one("aws:iam/userPolicyAttachment:UserPolicyAttachment")
    key = run.one("aws:iam/accessKey:AccessKey")
    assert attachment.inputs["user"] == user.state["name"]
    assert attachment.inputs["policyArn"] == run.one("aws:iam/policy:Policy").state["arn"]
    assert key.inputs["user"] == user.state["name"]
    assert run.of_type("aws:iam/role:Role") == []
    assert outputs["user_name"] == user.state["name"]
    assert outputs["secret_access_key"] == "mock-secret-access-key"
    assert outputs["role_arn"] is None
    assert {"access_key_id", "secret_access_key"} <= run.secret_outputs
    assert "user_name" not in run.secret_outputs


def test_irsa_mode_exports_no_secret() -> None:
    run, _ = declare()
    assert run.secret_outputs == set()
    assert not any(is_rpc_secret(value) for r in run.resources for value in r.inputs.values())


def test_every_child_is_parented_to_the_component() -> None:
    expected_children = {
        ("irsa", OIDC_ARN): {"Policy", "IrsaRole"},
        ("accessKey", None): {"Policy", "User", "UserPolicyAttachment", "AccessKey"},
    }
    for (mode, oidc), expected in expected_children.items():
        run, _ = declare(mode=mode, oidc_provider_arn=oidc)
        component = run.one("gitlab-runner-fleet:index:CacheAccess")
        children = [r for r in run.resources if r.parent == component.urn]
        assert {child.type.rsplit(":", 1)[-1] for child in children} == expected
        others = [r for r in run.resources if r is not component]
        assert all(run.descends_from(resource, component) for resource in others)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"mode": "instanceProfile"},
            "mode: must be one of irsa, accessKey, got 'instanceProfile'",
        ),
        ({"oidc_provider_arn": None}, "oidc_provider_arn: required in irsa mode"),
    ],
)
def test_direct_use_with_bad_args_is_refused(overrides: dict[str, Any], message: str) -> None:
    args = {
        "bucket_arn": BUCKET_ARN,
        "cache_prefix": "c",
        "mode": "irsa",
        "oidc_provider_arn": OIDC_ARN,
    }
    args.update(overrides)
    run = run_program(lambda: CacheAccess("cache-access", args), return_error=True)  # type: ignore[arg-type]
    assert message in str(run.error)
