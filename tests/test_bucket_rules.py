"""Lifecycle and encryption rules of the cache bucket."""

from __future__ import annotations

from typing import Any

from components.aws.bucket_rules import encryption_rule, lifecycle_rules

KMS_KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def rules_by_id(rules: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {rule["id"]: rule for rule in rules}


def test_cache_objects_expire_under_the_prefix_only() -> None:
    rules = rules_by_id(lifecycle_rules("runner-cache", 60, versioning=False))
    assert set(rules) == {"expire-cache-objects", "abort-incomplete-multipart-uploads"}
    expire = rules["expire-cache-objects"]
    assert expire["status"] == "Enabled"
    assert expire["filter"] == {"prefix": "runner-cache/"}
    assert expire["expiration"] == {"days": 60}


def test_incomplete_multipart_uploads_are_aborted_after_a_day_bucket_wide() -> None:
    abort = rules_by_id(lifecycle_rules("runner-cache", 60, versioning=False))[
        "abort-incomplete-multipart-uploads"
    ]
    assert abort["status"] == "Enabled"
    assert abort["filter"] == {"prefix": ""}
    assert abort["abort_incomplete_multipart_upload"] == {"days_after_initiation": 1}


def test_noncurrent_versions_expire_after_a_day_when_versioning() -> None:
    rules = rules_by_id(lifecycle_rules("runner-cache", 14, versioning=True))
    noncurrent = rules["expire-noncurrent-versions"]
    assert noncurrent["status"] == "Enabled"
    assert noncurrent["noncurrent_version_expiration"] == {"noncurrent_days": 1}
    assert rules["expire-cache-objects"]["expiration"] == {"days": 14}


def test_versioned_buckets_remove_expired_delete_markers() -> None:
    # Expiring a current version of a versioned object only adds a delete marker; without this
    # rule the markers pile up once their noncurrent versions are gone. S3 refuses
    # `expired_object_delete_marker` beside `days` in one expiration, so it is a rule of its own.
    rules = rules_by_id(lifecycle_rules("runner-cache", 14, versioning=True))
    markers = rules["remove-expired-delete-markers"]
    assert markers["status"] == "Enabled"
    assert markers["filter"] == {"prefix": "runner-cache/"}
    assert markers["expiration"] == {"expired_object_delete_marker": True}
    assert all(
        set(rule.get("expiration", {})) in ({"days"}, {"expired_object_delete_marker"}, set())
        for rule in rules.values()
    )
    unversioned = rules_by_id(lifecycle_rules("runner-cache", 14, versioning=False))
    assert "remove-expired-delete-markers" not in unversioned
    # Every other expiring prefix too (the registry mirror's layers).
    shared = rules_by_id(
        lifecycle_rules("runner-cache", 14, True, other_prefixes={"registry-mirror": 30})
    )
    assert shared["remove-expired-delete-markers-registry-mirror"]["filter"] == {
        "prefix": "registry-mirror/"
    }


def test_default_encryption_is_sse_s3() -> None:
    assert encryption_rule(None) == {
        "apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}
    }


def test_kms_encryption_uses_the_given_key_and_a_bucket_key() -> None:
    rule = encryption_rule(KMS_KEY_ARN)
    assert rule["apply_server_side_encryption_by_default"] == {
        "sse_algorithm": "aws:kms",
        "kms_master_key_id": KMS_KEY_ARN,
    }
    assert rule["bucket_key_enabled"] is True
