"""`cache` and `cacheAccess`: where the runners' distributed cache lives and how they reach it."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from ..aws.bucket_rules import DEFAULT_ACCESS_LOG_PREFIX
from ..kubernetes_names import checked
from ..naming import bucket_name_problems, s3_prefix_problems
from ..workloads.rclone import DEFAULT_EXPIRE_AFTER, volume_size_problems
from .base import BucketName, Problem, Section

_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$")


CacheVolumeSize = Annotated[str, checked(volume_size_problems)]


class CacheSettings(Section):
    """Where the runners' distributed cache lives: a bucket this stack creates, or your own."""

    config_key: ClassVar[str] = "cache"

    type: Literal["s3", "s3Compatible", "gcs", "azure", "inCluster"] = Field(
        "s3",
        description="`s3`: an S3 bucket this stack creates. `s3Compatible`: an existing "
        "S3-compatible store (MinIO and similar). `gcs`, `azure`: an existing bucket or "
        "container. Credentials of these three come from the secret `cacheCredentials`. "
        "`inCluster`: an S3-compatible store the stack runs in the cluster (rclone, generated "
        "keys), for clusters that have none.",
    )
    bucket_name: str | None = Field(
        None,
        description="`s3`: explicit name of the bucket to create (default "
        "`<project>-<stack>-cache-<account id>`). `s3Compatible`, `gcs`: the existing bucket. "
        "`inCluster`: the bucket to serve (default `runner-cache`).",
    )
    prefix: str = Field(
        "runner-cache",
        description="Key prefix for cache objects: the runner's `[runners.cache] Path`, the "
        "lifecycle rule's filter and the IAM policy's scope.",
    )
    shared: bool = Field(
        True,
        description="`[runners.cache] Shared`: every runner of the fleet shares the cache "
        "(otherwise each runner token gets its own).",
    )
    server_address: str | None = Field(
        None,
        description="`s3Compatible` only: the endpoint, `host[:port]` or a URL such as "
        "`https://minio.example.com:9000`.",
    )
    bucket_location: str | None = Field(
        None, description="`s3Compatible` only: the bucket's region, if the store needs one."
    )
    insecure: bool = Field(
        False, description="`s3Compatible` only: talk plain HTTP to `serverAddress`."
    )
    path_style: bool | None = Field(
        None,
        description="`s3Compatible` only: path-style requests (MinIO usually needs `true`). "
        "Default: the runner detects it.",
    )
    container_name: str | None = Field(
        None, description="`azure` only: the blob container (required)."
    )
    storage_domain: str | None = Field(
        None, description="`azure` only: the storage domain, e.g. `blob.core.chinacloudapi.cn`."
    )
    expiration_days: int = Field(
        60,
        ge=1,
        le=3650,
        description="`s3` only: days after which cache objects under `prefix` expire.",
    )
    versioning: bool = Field(
        False,
        description="`s3` only: enable bucket versioning; noncurrent versions expire after 1 day.",
    )
    kms_key_arn: str | None = Field(
        None,
        description="`s3` only: KMS key ARN for SSE-KMS default encryption. Default: SSE-S3.",
    )
    access_log_bucket: BucketName | None = Field(
        None,
        description="`s3` only: existing bucket that receives server access logs.",
    )
    access_log_prefix: str = Field(
        DEFAULT_ACCESS_LOG_PREFIX,
        description="`s3` only: key prefix of the access logs in `accessLogBucket`.",
    )
    protect: bool = Field(
        True,
        description="`s3` only: protect the bucket from `pulumi destroy` and retain it when "
        "removed from the program. Turn off only for disposable stacks.",
    )
    force_destroy: bool = Field(
        False,
        description="`s3` only: let `pulumi destroy` empty and delete a non-empty bucket.",
    )
    size: CacheVolumeSize = Field(
        "100Gi",
        description="`inCluster` only: the cache volume (a PVC) of the in-cluster store; the "
        "store is trimmed to 80% of it, oldest first.",
    )
    storage_class_name: str | None = Field(
        None,
        description="`inCluster` only: storage class of the cache volume. "
        "RunnerCacheVolumeNearlyFull needs one whose volumes report kubelet volume stats (CSI "
        "drivers do; hostPath-based ones such as k3s's local-path do not).",
    )
    expire_after: str = Field(
        DEFAULT_EXPIRE_AFTER,
        description="`inCluster` only: cache objects older than this are removed (e.g. 7d).",
    )
    dual_stack: bool = Field(
        False,
        description="`s3` only: `[runners.cache.s3] DualStack`. Off, so presigned URLs use the "
        "IPv4 endpoint the S3 gateway endpoint serves; on only for IPv6-only nodes.",
    )

    @field_validator("prefix")
    @classmethod
    def _valid_prefix(cls, prefix: str) -> str:
        if problems := s3_prefix_problems(prefix):
            raise ValueError("; ".join(problems))
        return prefix

    @field_validator("kms_key_arn")
    @classmethod
    def _valid_kms_key_arn(cls, arn: str | None) -> str | None:
        if arn is not None and not _KMS_KEY_ARN.match(arn):
            raise ValueError(
                "must be a KMS key ARN like arn:aws:kms:<region>:<account>:key/<key id> "
                f"(alias ARNs cannot scope an IAM policy to the key), got {arn!r}"
            )
        return arn

    def cross_field_problems(self) -> list[Problem]:
        problems = []
        s3_only = {
            "expiration_days", "versioning", "kms_key_arn", "access_log_bucket",
            "access_log_prefix", "protect", "force_destroy", "dual_stack",
        }  # fmt: skip
        owned_by = {
            "server_address": "s3Compatible", "bucket_location": "s3Compatible",
            "insecure": "s3Compatible", "path_style": "s3Compatible",
            "container_name": "azure", "storage_domain": "azure",
            "size": "inCluster", "storage_class_name": "inCluster", "expire_after": "inCluster",
        }  # fmt: skip
        for field_name in sorted(self.model_fields_set):
            owner = "s3" if field_name in s3_only else owned_by.get(field_name)
            if owner is not None and owner != self.type:
                problems.append(
                    self._problem(field_name, f"is only used when cache.type is {owner}")
                )
        # GCS and Azure name buckets by other rules; S3 and S3-compatible stores by these.
        s3_named = self.type in ("s3", "s3Compatible") and self.bucket_name is not None
        if s3_named and (name_problems := bucket_name_problems(str(self.bucket_name))):
            message = f"{'; '.join(name_problems)}, got {self.bucket_name!r}"
            problems.append(self._problem("bucket_name", message))
        if self.type in ("s3Compatible", "gcs") and self.bucket_name is None:
            problems.append(
                self._problem("bucket_name", f"required when cache.type is {self.type}")
            )
        if self.type == "s3Compatible":
            problems.extend(self._server_address_problems())
        if self.type == "azure" and self.container_name is None:
            problems.append(self._problem("container_name", "required when cache.type is azure"))
        if self.protect and self.force_destroy:
            problems.append(
                self._problem(
                    "force_destroy",
                    "cannot be true while cache.protect is true; set cache.protect: false "
                    "for a disposable bucket, or drop cache.forceDestroy",
                )
            )
        return problems

    def _server_address_problems(self) -> list[Problem]:
        if self.server_address is None:
            return [self._problem("server_address", "required when cache.type is s3Compatible")]
        scheme, _, host = self.server_address.rpartition("://")
        if not host or "/" in host.rstrip("/"):
            field, message = "server_address", "must be host[:port] or a URL without a path"
            message += f", got {self.server_address!r}"
        elif scheme not in ("", "http", "https"):
            field, message = "server_address", f"scheme must be http or https, got {scheme!r}"
        elif scheme == "https" and self.insecure:
            field = "insecure"
            message = "is true but cache.serverAddress is https://; drop insecure or use http://"
        elif scheme == "http" and not self.insecure:
            field = "insecure"
            message = (
                "must be true for the http:// cache.serverAddress; set insecure: true, or "
                "serve the store over https://"
            )
        else:
            return []
        return [self._problem(field, message)]

    @property
    def server_host(self) -> str | None:
        """`serverAddress` without scheme, as the runner's `ServerAddress` wants it."""
        if self.server_address is None:
            return None
        return self.server_address.rpartition("://")[2].rstrip("/")


class CacheAccessSettings(Section):
    """How the runner manager proves its identity to the cache bucket."""

    config_key: ClassVar[str] = "cacheAccess"

    mode: Literal["irsa", "accessKey"] = Field(
        "irsa",
        description="`irsa`: an IAM role the runner's Kubernetes service account assumes (EKS). "
        "`accessKey`: an IAM user with an access key, for clusters without IRSA.",
    )
