"""The cache a stack gets: one decision from `cache.type`, the site role and the mirror settings
to the bucket, the credentials, the runner's `[runners.cache]` and the mirror's storage.

The fleet declares what the plan says and nothing else decides it again; the settings parser
asks it which `cacheCredentials` a stack needs (and so the offline render which stand-ins).
Pure: no Pulumi runtime needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..naming import derived_bucket_name
from ..workloads.mirror_config import MirrorStorage
from ..workloads.runner_config import AzureCacheSpec, CacheSpec, S3CacheSpec
from .cache import CacheAccessSettings, CacheSettings
from .mirror import RegistryMirrorSettings
from .site import SiteSettings

CacheKind = Literal["createdBucket", "externalStore", "inCluster", "edge"]
MirrorStorageKind = Literal["s3", "filesystem"]
IN_CLUSTER_BUCKET = "runner-cache"
"""The bucket an in-cluster cache serves unless `cache.bucketName` names another."""
# The secret keys each cache type needs in `cacheCredentials`, as alternatives.
CACHE_CREDENTIAL_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    "s3": (),
    "s3Compatible": (("accessKey", "secretKey"),),
    "gcs": (("credentialsJson",), ("accessId", "privateKey")),
    "azure": (("accountName", "accountKey"),),
    "inCluster": (),
}
MIRROR_STORE_REGION = "us-east-1"
"""The region the mirror signs for on an S3-compatible store that names none (most accept any)."""


@dataclass(frozen=True)
class CachePlan:
    """What the stack's runner cache is, and what follows from it."""

    kind: CacheKind
    """`createdBucket`: an S3 bucket this stack creates, with an IAM identity for the managers.
    `externalStore`: an existing S3-compatible, GCS or Azure store; keys from `cacheCredentials`.
    `inCluster`: an S3-compatible store the stack runs in the cluster (rclone).
    `edge`: an edge site's store in the cluster, reading through from the hub's bucket."""
    credential_keys: tuple[tuple[str, ...], ...]
    """The `cacheCredentials` key sets the stack may hold (alternatives); empty: none."""
    manager_identity: Literal["irsa", "accessKey", "storeKeys"]
    """How the managers sign cache requests: an IRSA role, the created IAM user's key, or the
    keys of the store (`cacheCredentials`, or the in-cluster store's generated keys)."""
    mirror_storage: MirrorStorageKind
    """Where the registry mirror keeps layers: the cache's bucket under its own prefix, or
    each replica's disk."""

    @property
    def creates_bucket(self) -> bool:
        """Whether this stack creates the S3 cache bucket (and its IAM identity)."""
        return self.kind == "createdBucket"

    @property
    def mirror_uses_irsa(self) -> bool:
        """The mirror stores in the bucket this stack creates, through an IRSA role of its own."""
        return self.mirror_storage == "s3" and self.kind == "createdBucket"


def cache_plan(
    cache: CacheSettings,
    access: CacheAccessSettings,
    site: SiteSettings,
    mirror: RegistryMirrorSettings,
) -> CachePlan:
    """The one decision about the stack's cache."""
    kind: CacheKind
    if site.is_edge:
        kind = "edge"
    elif cache.type == "inCluster":
        kind = "inCluster"
    elif cache.type == "s3":
        kind = "createdBucket"
    else:
        kind = "externalStore"
    identity: Literal["irsa", "accessKey", "storeKeys"] = "storeKeys"
    if kind == "createdBucket":
        identity = "irsa" if access.mode == "irsa" else "accessKey"
    s3_api_store = kind in ("createdBucket", "externalStore") and cache.type in (
        "s3",
        "s3Compatible",
    )
    return CachePlan(
        kind=kind,
        credential_keys=CACHE_CREDENTIAL_KEYS[cache.type] if kind != "edge" else (),
        manager_identity=identity,
        mirror_storage=mirror.storage or ("s3" if s3_api_store else "filesystem"),
    )


def cache_bucket_name(cache: CacheSettings, project: str, stack: str, account_id: str) -> str:
    """The bucket a created cache gets: the explicit name, or one derived from project, stack
    and account."""
    return cache.bucket_name or derived_bucket_name(project, stack, account_id)


def in_cluster_bucket(cache: CacheSettings) -> str:
    """The bucket an in-cluster cache serves."""
    return cache.bucket_name or IN_CLUSTER_BUCKET


def runner_cache_spec(
    cache: CacheSettings,
    access: CacheAccessSettings,
    bucket_name: str | None = None,
    bucket_region: str | None = None,
) -> CacheSpec:
    """`[runners.cache]` of a created bucket or an external store; for a created bucket pass
    the name and region CacheBucket gives it."""
    if cache.type == "gcs":
        return {
            "Type": "gcs",
            "Path": cache.prefix,
            "Shared": cache.shared,
            "gcs": {"BucketName": str(cache.bucket_name)},
        }
    if cache.type == "azure":
        azure: AzureCacheSpec = {"ContainerName": str(cache.container_name)}
        if cache.storage_domain:
            azure["StorageDomain"] = cache.storage_domain
        return {"Type": "azure", "Path": cache.prefix, "Shared": cache.shared, "azure": azure}
    s3: S3CacheSpec
    if cache.type == "s3Compatible":
        # Insecure is written even when false, so the template always states the scheme.
        s3 = {
            "ServerAddress": str(cache.server_host),
            "BucketName": str(cache.bucket_name),
            "AuthenticationType": "access-key",
            "Insecure": cache.insecure,
        }
        if cache.bucket_location:
            s3["BucketLocation"] = cache.bucket_location
        if cache.path_style is not None:
            s3["PathStyle"] = cache.path_style
    else:
        s3 = {
            "BucketName": str(bucket_name),
            "BucketLocation": str(bucket_region),
            "AuthenticationType": "iam" if access.mode == "irsa" else "access-key",
            # The runner defaults DualStack to true (cache/cacheconfig/cacheconfig.go, runner
            # 19.3) and then signs s3.dualstack.<region> URLs, which S3 gateway endpoints do
            # not serve: cache traffic would go through the NAT gateway.
            "DualStack": cache.dual_stack,
        }
        if cache.kms_key_arn:
            s3["ServerSideEncryption"] = "KMS"
            s3["ServerSideEncryptionKeyID"] = cache.kms_key_arn
    return {"Type": "s3", "Path": cache.prefix, "Shared": cache.shared, "s3": s3}


def mirror_storage(
    plan: CachePlan,
    cache: CacheSettings,
    mirror: RegistryMirrorSettings,
    *,
    bucket_name: str,
    region: str,
) -> MirrorStorage:
    """The mirror's storage: the cache's bucket under the mirror's own prefix, or each
    replica's own disk. `bucket_name` and `region` are the created bucket's (createdBucket)."""
    if plan.mirror_storage == "filesystem":
        return {
            "filesystem": {
                "root_directory": "/var/lib/registry",
                "size_limit": mirror.filesystem_size,
            }
        }
    if plan.kind == "createdBucket":
        return {"s3": {"bucket": bucket_name, "region": region, "prefix": mirror.prefix}}
    scheme = "http" if cache.insecure else "https"
    return {
        "s3": {
            "bucket": str(cache.bucket_name),
            "region": cache.bucket_location or MIRROR_STORE_REGION,
            "prefix": mirror.prefix,
            "endpoint": f"{scheme}://{cache.server_host}",
            "force_path_style": bool(cache.path_style),
        }
    }
