"""Lifecycle and encryption rules of the cache bucket, in the shape pulumi-aws 7 takes them.

Pure functions returning the `*ArgsDict` shapes of `aws.s3.BucketLifecycleConfiguration` and
`aws.s3.BucketServerSideEncryptionConfiguration`, so the rules can be tested without Pulumi.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Rule = dict[str, Any]

# Parts of a failed multipart upload are billed until removed; a day is ample for any cache upload.
DEFAULT_ACCESS_LOG_PREFIX = "gitlab-runner-cache/"
ABORT_INCOMPLETE_UPLOAD_DAYS = 1
# With versioning on, overwritten cache archives are worthless once the new one is in place.
NONCURRENT_VERSION_DAYS = 1


def lifecycle_rules(
    cache_prefix: str,
    expiration_days: int,
    versioning: bool,
    other_prefixes: Mapping[str, int] | None = None,
) -> list[Rule]:
    """Expire cache objects after `expiration_days`, clean up uploads and old versions.

    `other_prefixes` are further prefixes sharing the bucket (the registry mirror's layers),
    each with its own expiry.
    """
    rules: list[Rule] = [
        {
            "id": "expire-cache-objects",
            "status": "Enabled",
            "filter": {"prefix": f"{cache_prefix}/"},
            "expiration": {"days": expiration_days},
        },
        *(
            {
                "id": f"expire-{prefix.replace('/', '-')}",
                "status": "Enabled",
                "filter": {"prefix": f"{prefix}/"},
                "expiration": {"days": days},
            }
            for prefix, days in (other_prefixes or {}).items()
        ),
        {
            "id": "abort-incomplete-multipart-uploads",
            "status": "Enabled",
            "filter": {"prefix": ""},
            "abort_incomplete_multipart_upload": {
                "days_after_initiation": ABORT_INCOMPLETE_UPLOAD_DAYS
            },
        },
    ]
    if versioning:
        rules.append(
            {
                "id": "expire-noncurrent-versions",
                "status": "Enabled",
                "filter": {"prefix": ""},
                "noncurrent_version_expiration": {"noncurrent_days": NONCURRENT_VERSION_DAYS},
            }
        )
        # Expiring a current version leaves a delete marker; once its noncurrent versions are
        # gone it is alone and slows every listing. S3 refuses this flag beside `days` in one
        # expiration block, hence a rule of its own.
        rules.append(
            {
                "id": "remove-expired-delete-markers",
                "status": "Enabled",
                "filter": {"prefix": f"{cache_prefix}/"},
                "expiration": {"expired_object_delete_marker": True},
            }
        )
        # The same under every other expiring prefix (found trying it as a new user: the
        # mirror's expired layers left their markers).
        rules += [
            {
                "id": f"remove-expired-delete-markers-{prefix.replace('/', '-')}",
                "status": "Enabled",
                "filter": {"prefix": f"{prefix}/"},
                "expiration": {"expired_object_delete_marker": True},
            }
            for prefix in (other_prefixes or {})
        ]
    return rules


def encryption_rule(kms_key_arn: str | None) -> Rule:
    """Default encryption: SSE-S3, or SSE-KMS with the given key and an S3 Bucket Key.

    The Bucket Key cuts KMS requests (and their cost) by orders of magnitude for the many
    small reads and writes a cache makes.
    """
    if kms_key_arn is None:
        return {"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}
    return {
        "apply_server_side_encryption_by_default": {
            "sse_algorithm": "aws:kms",
            "kms_master_key_id": kms_key_arn,
        },
        "bucket_key_enabled": True,
    }
