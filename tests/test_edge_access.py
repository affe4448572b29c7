"""EdgeAccess: the hub's scoped credential for an edge site, its policy linted and evaluated."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pulumi
import pytest
from pulumi.provider.experimental.analyzer import Analyzer

from components.aws.edge_access import EdgeAccess, EdgeAccessArgs
from components.aws.iam_documents import edge_cache_policy
from components.cache_keys import replicate_object_patterns
from tests.harness import ProgramRun, run_program

BUCKET_ARN = "arn:aws:s3:::fleet-cache-123456789012"
KMS_KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
PREFIX = "runner-cache"
REPLICATE = ["build-*-protected", "deps/**"]
Lint = Callable[[dict[str, Any]], list[tuple[str, Any]]]


def policy(replicate: list[str], kms_key_arn: str | None = None) -> dict[str, Any]:
    return edge_cache_policy(
        BUCKET_ARN, PREFIX, replicate_object_patterns(PREFIX, replicate), kms_key_arn
    )


@pytest.mark.parametrize("replicate", [REPLICATE, []], ids=["read-write", "read-only"])
@pytest.mark.parametrize("kms_key_arn", [None, KMS_KEY_ARN], ids=["sse-s3", "sse-kms"])
def test_the_policy_passes_parliament(
    lint_policy: Lint, replicate: list[str], kms_key_arn: str | None
) -> None:
    assert lint_policy(policy(replicate, kms_key_arn)) == []


def allowed(document: dict[str, Any], action: str, resource: str) -> bool:
    """IAM's answer for an identity policy with Allow statements only, conditions aside:
    `*` in an ARN matches any characters, `/` too, and `?` any one character."""
    for statement in document["Statement"]:
        actions = statement["Action"]
        resources = statement["Resource"]
        if action not in (actions if isinstance(actions, list) else [actions]):
            continue
        for pattern in resources if isinstance(resources, list) else [resources]:
            expression = "".join(
                ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern
            )
            if re.fullmatch(expression, resource):
                return True
    return False


def obj(key: str) -> str:
    return f"{BUCKET_ARN}/{key}"


def test_the_edge_reads_anything_in_the_cache_and_nothing_else() -> None:
    document = policy(REPLICATE)

    assert allowed(document, "s3:GetObject", obj(f"{PREFIX}/project/7/test-1-non_protected"))
    assert not allowed(document, "s3:GetObject", obj("access-logs/2026-11-30"))
    assert not allowed(document, "s3:GetObject", obj(f"{PREFIX}-other/project/7/x"))


def test_the_edge_writes_only_replicated_keys() -> None:
    document = policy(REPLICATE)

    for key in ("project/7/build-12-protected", "project/7/deps/node/x-non_protected"):
        assert allowed(document, "s3:PutObject", obj(f"{PREFIX}/{key}")), key
        assert allowed(document, "s3:AbortMultipartUpload", obj(f"{PREFIX}/{key}")), key
    for key in ("project/7/test-12-protected", "project/7/build-12-non_protected"):
        assert not allowed(document, "s3:PutObject", obj(f"{PREFIX}/{key}")), key
    assert not allowed(document, "s3:PutObject", obj("other/project/7/build-1-protected"))
    assert not allowed(document, "s3:DeleteObject", obj(f"{PREFIX}/project/7/build-1-protected"))


def test_a_read_only_edge_writes_nothing_and_only_decrypts() -> None:
    document = policy([], KMS_KEY_ARN)
    actions = {
        action
        for statement in document["Statement"]
        for action in (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
    }

    assert actions == {"s3:GetObject", "s3:ListBucket", "kms:Decrypt"}


def test_listing_covers_the_bucket_so_a_miss_at_the_hub_is_a_404() -> None:
    (listing,) = [s for s in policy(REPLICATE)["Statement"] if s["Action"] == "s3:ListBucket"]
    # S3 answers a missing key with 404 only to callers allowed s3:ListBucket on the bucket,
    # else 403; it decides without an s3:prefix in the context, so no condition can scope it.
    # The edge's rclone still lists `<prefix>/` and deeper only
    # (tests/integration/test_edge_cache.py checks its requests).
    assert listing["Resource"] == BUCKET_ARN
    assert "Condition" not in listing


def declare(replicate: list[str], kms: bool = False) -> ProgramRun:
    def program() -> None:
        args: EdgeAccessArgs = {
            "edge_name": "basement",
            "bucket_arn": BUCKET_ARN,
            "cache_prefix": PREFIX,
            "replicate": replicate,
            "tags": {"stack": "prod"},
        }
        if kms:
            args["kms_key_arn"] = KMS_KEY_ARN
        access = EdgeAccess("edge-basement", args)
        pulumi.export("access_key_id", access.access_key_id)
        pulumi.export("secret_access_key", access.secret_access_key)
        pulumi.export("user_name", access.user_name)

    return run_program(program, return_error=True)


def test_the_component_attaches_the_policy_to_a_user_with_a_secret_key() -> None:
    run = declare(REPLICATE, kms=True)
    assert run.error is None
    user = run.one("aws:iam/user:User")
    attachment = run.one("aws:iam/userPolicyAttachment:UserPolicyAttachment")
    document = json.loads(run.one("aws:iam/policy:Policy").inputs["policy"])

    assert document == policy(REPLICATE, KMS_KEY_ARN)
    assert attachment.inputs["user"] == user.state["name"]
    assert attachment.inputs["policyArn"] == run.one("aws:iam/policy:Policy").state["arn"]
    assert run.one("aws:iam/accessKey:AccessKey").inputs["user"] == user.state["name"]
    assert {"access_key_id", "secret_access_key"} <= run.secret_outputs
    assert "user_name" not in run.secret_outputs
    component = run.one("gitlab-runner-fleet:index:EdgeAccess")
    for resource in run.resources:
        if resource is not component:
            assert run.descends_from(resource, component)


def test_globs_that_cannot_match_are_refused() -> None:
    run = declare(["build-main"])

    assert run.error is not None
    assert "can never match" in str(run.error)


def test_other_pulumi_languages_get_a_schema_for_it() -> None:
    analyzed = Analyzer("gitlab-runner-fleet").analyze([EdgeAccess])
    (definition,) = analyzed["component_definitions"].values()

    assert set(definition.outputs) == {"userName", "policyArn", "accessKeyId", "secretAccessKey"}
