"""CacheBucket: the private, encrypted, self-cleaning S3 bucket behind the runners' cache."""

import json
from typing import NotRequired, Optional, TypedDict

import pulumi
from pulumi_aws import s3

from ..arguments import check_arguments
from ..naming import bucket_name_problems, s3_prefix_problems
from .bucket_rules import DEFAULT_ACCESS_LOG_PREFIX, encryption_rule, lifecycle_rules
from .iam_documents import tls_only_bucket_policy

MAX_EXPIRATION_DAYS = 3650


class CacheBucketArgs(TypedDict):
    """Inputs of CacheBucket. A TypedDict so Pulumi's component provider can pass a plain dict."""

    bucket_name: pulumi.Input[str]
    """Globally unique S3 bucket name (see `components.naming.derived_bucket_name`)."""
    cache_prefix: str
    """Key prefix of the cache objects; the lifecycle expiry applies under it."""
    expiration_days: int
    """Days after which cache objects expire."""
    other_prefixes: NotRequired[dict[str, int]]
    """Further key prefixes sharing the bucket (e.g. the registry mirror's) and their expiry
    in days."""
    versioning: NotRequired[bool]
    """Enable versioning (noncurrent versions then expire after 1 day). Default false."""
    kms_key_arn: NotRequired[Optional[pulumi.Input[str]]]
    """KMS key ARN for SSE-KMS. Default: SSE-S3."""
    access_log_bucket: NotRequired[Optional[str]]
    """Existing bucket receiving server access logs. Default: no access logging."""
    access_log_prefix: NotRequired[str]
    """Key prefix of the access logs. Default `gitlab-runner-cache/`."""
    protect: NotRequired[bool]
    """Protect the bucket from deletion and retain it if removed from the program. Default true."""
    force_destroy: NotRequired[bool]
    """Let a delete empty a non-empty bucket. Default false; refused together with `protect`."""
    tags: NotRequired[dict[str, str]]
    """Tags applied to the bucket."""


class CacheBucket(pulumi.ComponentResource):
    """A private S3 bucket for the GitLab Runner distributed cache.

    All four Block Public Access settings on, ACLs disabled (BucketOwnerEnforced), default
    encryption (SSE-S3 or SSE-KMS), a TLS-only bucket policy, lifecycle expiry under the cache
    prefix, and optional server access logging.
    """

    bucket_name: pulumi.Output[str]
    """Name of the bucket."""
    bucket_arn: pulumi.Output[str]
    """ARN of the bucket, in the provider's partition."""
    bucket_region: pulumi.Output[str]
    """Region the bucket lives in (the runner's `BucketLocation`)."""
    cache_prefix: pulumi.Output[str]
    """Key prefix of the cache objects (the runner's `[runners.cache] Path`)."""

    def __init__(
        self, name: str, args: CacheBucketArgs, opts: Optional[pulumi.ResourceOptions] = None
    ) -> None:
        check_arguments("CacheBucket", name, args, CacheBucketArgs, lambda: _problems(args))
        super().__init__("gitlab-runner-fleet:index:CacheBucket", name, None, opts)
        protect = args.get("protect", True)
        force_destroy = args.get("force_destroy", False)
        tags = args.get("tags", {})

        bucket = self._create_bucket(name, args["bucket_name"], protect, force_destroy, tags)
        public_access_block = self._create_access_controls(name, bucket)
        self._create_encryption(name, bucket, args.get("kms_key_arn"))
        self._create_lifecycle(name, bucket, args)
        self._create_tls_only_policy(name, bucket, public_access_block)
        if log_bucket := args.get("access_log_bucket"):
            self._create_access_logging(
                name, bucket, log_bucket, args.get("access_log_prefix", DEFAULT_ACCESS_LOG_PREFIX)
            )

        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.bucket_region = bucket.region
        self.cache_prefix = pulumi.Output.from_input(args["cache_prefix"])
        self.register_outputs(
            {
                "bucket_name": self.bucket_name,
                "bucket_arn": self.bucket_arn,
                "bucket_region": self.bucket_region,
                "cache_prefix": self.cache_prefix,
            }
        )

    def _create_bucket(
        self,
        name: str,
        bucket_name: pulumi.Input[str],
        protect: bool,
        force_destroy: bool,
        tags: dict[str, str],
    ) -> s3.Bucket:
        # Retaining as well as protecting keeps the cache even if the component is removed
        # from the program, which `protect` alone would let Pulumi delete.
        return s3.Bucket(
            name,
            bucket=bucket_name,
            force_destroy=force_destroy,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, protect=protect, retain_on_delete=protect),
        )

    def _create_access_controls(self, name: str, bucket: s3.Bucket) -> s3.BucketPublicAccessBlock:
        s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=pulumi.ResourceOptions(parent=self),
        )
        return s3.BucketPublicAccessBlock(
            f"{name}-public-access-block",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _create_encryption(
        self, name: str, bucket: s3.Bucket, kms_key_arn: Optional[pulumi.Input[str]]
    ) -> None:
        s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[pulumi.Output.from_input(kms_key_arn).apply(encryption_rule)],
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _create_lifecycle(self, name: str, bucket: s3.Bucket, args: CacheBucketArgs) -> None:
        versioning = args.get("versioning", False)
        versioning_resource = None
        if versioning:
            versioning_resource = s3.BucketVersioning(
                f"{name}-versioning",
                bucket=bucket.id,
                versioning_configuration={"status": "Enabled"},
                opts=pulumi.ResourceOptions(parent=self),
            )
        s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            rules=lifecycle_rules(
                args["cache_prefix"],
                args["expiration_days"],
                versioning,
                args.get("other_prefixes"),
            ),
            # AWS rejects noncurrent-version rules racing the versioning change.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[versioning_resource] if versioning_resource else []
            ),
        )

    def _create_tls_only_policy(
        self, name: str, bucket: s3.Bucket, public_access_block: s3.BucketPublicAccessBlock
    ) -> None:
        s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket.id,
            policy=bucket.arn.apply(lambda arn: json.dumps(tls_only_bucket_policy(arn))),
            # S3 answers OperationAborted when two configuration calls hit one bucket at once.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_access_block]),
        )

    def _create_access_logging(
        self, name: str, bucket: s3.Bucket, log_bucket: str, log_prefix: str
    ) -> None:
        s3.BucketLogging(
            f"{name}-access-logging",
            bucket=bucket.id,
            target_bucket=log_bucket,
            target_prefix=log_prefix,
            opts=pulumi.ResourceOptions(parent=self),
        )


def _problems(args: CacheBucketArgs) -> list[str]:
    problems = []
    if isinstance(name := args["bucket_name"], str):
        problems += [f"bucket_name: {p}, got {name!r}" for p in bucket_name_problems(name)]
    for key, prefix in (
        ("cache_prefix", args["cache_prefix"]),
        *((f"other_prefixes[{p!r}]", p) for p in args.get("other_prefixes", {})),
    ):
        problems += [f"{key}: {p}" for p in s3_prefix_problems(prefix)]
    days = {
        "expiration_days": args["expiration_days"],
        **{f"other_prefixes[{p!r}]": d for p, d in args.get("other_prefixes", {}).items()},
    }
    problems += [
        f"{key}: must be 1 to 3650 days, got {value}"
        for key, value in days.items()
        if not 1 <= value <= MAX_EXPIRATION_DAYS
    ]
    if args.get("protect", True) and args.get("force_destroy", False):
        problems.append(
            "force_destroy: cannot be combined with protect (the default); pass "
            "protect: False for a disposable bucket"
        )
    return problems
