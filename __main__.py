"""gitlab-runner-fleet: read the stack's settings, wire the components, export the results."""

import pulumi
import pulumi_aws as aws

from components.cache_access import CacheAccess
from components.cache_bucket import CacheBucket
from components.naming import resource_tags
from components.settings import load_settings

settings = load_settings()

account_id = aws.get_caller_identity_output().account_id
cache = CacheBucket(
    "cache",
    {
        "bucket_name": account_id.apply(settings.cache_bucket_name),
        "cache_prefix": settings.cache.prefix,
        "expiration_days": settings.cache.expiration_days,
        "versioning": settings.cache.versioning,
        "kms_key_arn": settings.cache.kms_key_arn,
        "access_log_bucket": settings.cache.access_log_bucket,
        "access_log_prefix": settings.cache.access_log_prefix,
        "protect": settings.cache.protect,
        "force_destroy": settings.cache.force_destroy,
        "tags": resource_tags(settings.project, settings.stack, "cache-bucket", settings.tags),
    },
)
cache_access = CacheAccess(
    "cache-access",
    {
        "bucket_arn": cache.bucket_arn,
        "cache_prefix": settings.cache.prefix,
        "mode": settings.cache_access.mode,
        "kms_key_arn": settings.cache.kms_key_arn,
        "oidc_provider_arn": settings.cluster.oidc_provider_arn,
        "service_account_namespace": settings.runner.namespace,
        "service_account_name": settings.runner.service_account_name,
        "tags": resource_tags(settings.project, settings.stack, "cache-access", settings.tags),
    },
)

pulumi.export("cacheBucketName", cache.bucket_name)
pulumi.export("cacheBucketArn", cache.bucket_arn)
pulumi.export("cacheBucketRegion", cache.bucket_region)
pulumi.export("cachePrefix", cache.cache_prefix)
pulumi.export("cachePolicyArn", cache_access.policy_arn)
pulumi.export("cacheRoleArn", cache_access.role_arn)
pulumi.export("cacheUserName", cache_access.user_name)
pulumi.export("cacheAccessKeyId", cache_access.access_key_id)
pulumi.export("cacheSecretAccessKey", cache_access.secret_access_key)
