"""CacheBucket under Pulumi mocks: what it declares, with which properties and options."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.aws.cache_bucket import CacheBucket, CacheBucketArgs
from tests.harness import ProgramRun, run_program

KMS_KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
BUCKET = "acme-runner-cache"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"


def declare(**overrides: Any) -> ProgramRun:
    args: CacheBucketArgs = {
        "bucket_name": BUCKET,
        "cache_prefix": "runner-cache",
        "expiration_days": 30,
        "tags": {"project": "p", "stack": "s", "component": "cache-bucket"},
    }
    args.update(overrides)  # type: ignore[typeddict-item]
    return run_program(lambda: CacheBucket("cache", args))


def test_bucket_is_named_tagged_and_kept_by_default() -> None:
    bucket = declare().one("aws:s3/bucket:Bucket")
    assert bucket.inputs["bucket"] == BUCKET
    assert bucket.inputs["tags"] == {"project": "p", "stack": "s", "component": "cache-bucket"}
    assert bucket.inputs.get("forceDestroy", False) is False
    assert bucket.protect is True
    assert bucket.retain_on_delete is True


def test_disposable_bucket_is_unprotected_and_force_destroyable() -> None:
    bucket = declare(protect=False, force_destroy=True).one("aws:s3/bucket:Bucket")
    assert bucket.protect is False
    assert bucket.retain_on_delete is False
    assert bucket.inputs["forceDestroy"] is True


def test_protect_and_force_destroy_together_are_refused() -> None:
    run = run_program(
        lambda: CacheBucket(
            "cache",
            {
                "bucket_name": BUCKET,
                "cache_prefix": "c",
                "expiration_days": 1,
                "force_destroy": True,
            },
        ),
        return_error=True,
    )
    assert "force_destroy: cannot be combined with protect" in str(run.error)


def test_all_four_public_access_blocks_are_on() -> None:
    block = declare().one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert block.inputs["bucket"] == BUCKET
    for setting in (
        "blockPublicAcls",
        "blockPublicPolicy",
        "ignorePublicAcls",
        "restrictPublicBuckets",
    ):
        assert block.inputs[setting] is True, setting


def test_acls_are_disabled_by_bucket_owner_enforced() -> None:
    ownership = declare().one("aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    assert ownership.inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}


def test_default_encryption_is_sse_s3() -> None:
    encryption = declare().one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )
    assert encryption.inputs["rules"] == [
        {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}
    ]


def test_kms_encryption_uses_the_given_key() -> None:
    encryption = declare(kms_key_arn=KMS_KEY_ARN).one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )
    assert encryption.inputs["rules"] == [
        {
            "applyServerSideEncryptionByDefault": {
                "sseAlgorithm": "aws:kms",
                "kmsMasterKeyId": KMS_KEY_ARN,
            },
            "bucketKeyEnabled": True,
        }
    ]


def test_lifecycle_expires_the_cache_prefix() -> None:
    run = declare()
    lifecycle = run.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    rules = {rule["id"]: rule for rule in lifecycle.inputs["rules"]}
    assert rules["expire-cache-objects"]["filter"] == {"prefix": "runner-cache/"}
    assert rules["expire-cache-objects"]["expiration"] == {"days": 30}
    assert rules["abort-incomplete-multipart-uploads"]["abortIncompleteMultipartUpload"] == {
        "daysAfterInitiation": 1
    }
    assert "expire-noncurrent-versions" not in rules
    assert run.of_type("aws:s3/bucketVersioning:BucketVersioning") == []


def test_versioning_adds_noncurrent_expiry_after_versioning_is_on() -> None:
    run = declare(versioning=True)
    versioning = run.one("aws:s3/bucketVersioning:BucketVersioning")
    assert versioning.inputs["versioningConfiguration"] == {"status": "Enabled"}
    lifecycle = run.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    rules = {rule["id"]: rule for rule in lifecycle.inputs["rules"]}
    assert rules["expire-noncurrent-versions"]["noncurrentVersionExpiration"] == {
        "noncurrentDays": 1
    }
    assert versioning.urn in lifecycle.dependencies


def test_bucket_policy_denies_requests_without_tls() -> None:
    run = declare()
    policy = run.one("aws:s3/bucketPolicy:BucketPolicy")
    (statement,) = json.loads(policy.inputs["policy"])["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Resource"] == [BUCKET_ARN, f"{BUCKET_ARN}/*"]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    block = run.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert block.urn in policy.dependencies


def test_access_logging_only_when_asked() -> None:
    assert declare().of_type("aws:s3/bucketLogging:BucketLogging") == []
    logging = declare(access_log_bucket="org-logs", access_log_prefix="ci/").one(
        "aws:s3/bucketLogging:BucketLogging"
    )
    assert logging.inputs["targetBucket"] == "org-logs"
    assert logging.inputs["targetPrefix"] == "ci/"


@pytest.mark.parametrize("overrides", [{}, {"versioning": True, "access_log_bucket": "org-logs"}])
def test_every_child_is_parented_to_the_component(overrides: dict[str, Any]) -> None:
    run = declare(**overrides)
    component = run.one("gitlab-runner-fleet:index:CacheBucket")
    children = [r for r in run.resources if r is not component]
    assert children
    assert all(child.parent == component.urn for child in children)
    assert all(child.inputs.get("bucket") == BUCKET for child in children)
