"""A runner cache for an existing cluster, built from the imported components."""

import pulumi
from gitlab_runner_fleet.aws.cache_access import CacheAccess
from gitlab_runner_fleet.aws.cache_bucket import CacheBucket

config = pulumi.Config()

cache = CacheBucket(
    "ci-cache",
    {
        "bucket_name": config.require("bucketName"),
        "cache_prefix": "runner-cache",
        "expiration_days": 30,
        "tags": {"team": "platform"},
    },
)
access = CacheAccess(
    "ci-cache-access",
    {
        "bucket_arn": cache.bucket_arn,
        "cache_prefix": "runner-cache",
        "mode": "irsa",
        "oidc_provider_arn": config.require("oidcProviderArn"),
        "service_account_namespace": "gitlab-runner",
        "service_account_name": "gitlab-runner",
    },
)

pulumi.export("bucket", cache.bucket_name)
pulumi.export("roleArn", access.role_arn)
