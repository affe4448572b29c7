"""The cache a stack gets: one decision, tested directly, and what follows from it."""

from __future__ import annotations

from typing import Any

import pytest

from components.settings.cache_plan import (
    cache_bucket_name,
    cache_plan,
    mirror_storage,
    runner_cache_spec,
)
from offline import offline_config
from tests.harness import PROJECT, settings_of

MINIO = {
    "type": "s3Compatible",
    "serverAddress": "https://minio.example.com:9000",
    "bucketName": "ci-cache",
    "pathStyle": True,
}
GCS = {"type": "gcs", "bucketName": "ci-cache"}
AZURE = {"type": "azure", "containerName": "ci-cache"}
EDGE = {
    "name": "basement",
    "role": "edge",
    "hubStack": "org/gitlab-runner-fleet/prod",
    "uplinkMbps": 50,
}
KUBECONFIG = {"mode": "kubeconfig", "name": "k3s"}


@pytest.mark.parametrize(
    ("raw", "kind", "identity", "mirror", "credential_keys"),
    [
        ({}, "createdBucket", "irsa", "s3", ()),
        ({"cacheAccess": {"mode": "accessKey"}}, "createdBucket", "accessKey", "s3", ()),
        ({"cache": MINIO}, "externalStore", "storeKeys", "s3", (("accessKey", "secretKey"),)),
        (
            {"cache": GCS},
            "externalStore",
            "storeKeys",
            "filesystem",
            (("credentialsJson",), ("accessId", "privateKey")),
        ),
        (
            {"cache": AZURE},
            "externalStore",
            "storeKeys",
            "filesystem",
            (("accountName", "accountKey"),),
        ),
        ({"cache": {"type": "inCluster"}}, "inCluster", "storeKeys", "filesystem", ()),
        ({"cluster": KUBECONFIG, "site": EDGE}, "edge", "storeKeys", "filesystem", ()),
        (
            {"cache": MINIO, "registryMirror": {"storage": "filesystem"}},
            "externalStore",
            "storeKeys",
            "filesystem",
            (("accessKey", "secretKey"),),
        ),
    ],
)
def test_each_cache_type_and_site_role_gets_one_plan(
    raw: dict[str, Any], kind: str, identity: str, mirror: str, credential_keys: Any
) -> None:
    plan = settings_of(raw).cache_plan
    assert (plan.kind, plan.manager_identity, plan.mirror_storage) == (kind, identity, mirror)
    assert plan.credential_keys == credential_keys
    assert plan.creates_bucket is (kind == "createdBucket")
    assert plan.mirror_uses_irsa is (kind == "createdBucket" and mirror == "s3")


def test_the_plan_is_a_plain_function_of_the_sections() -> None:
    settings = settings_of({"cache": MINIO})
    assert settings.cache_plan == cache_plan(
        settings.cache, settings.cache_access, settings.site, settings.registry_mirror
    )


def test_a_created_bucket_is_named_after_project_stack_and_account_unless_named() -> None:
    derived = settings_of({}, stack="dev")
    assert (
        cache_bucket_name(derived.cache, PROJECT, "dev", "123456789012")
        == "gitlab-runner-fleet-dev-cache-123456789012"
    )
    named = settings_of({"cache": {"bucketName": "acme-ci-cache"}})
    assert cache_bucket_name(named.cache, PROJECT, "dev", "123456789012") == "acme-ci-cache"


def test_the_mirror_shares_the_created_bucket_under_its_own_prefix() -> None:
    settings = settings_of({})
    storage = mirror_storage(
        settings.cache_plan,
        settings.cache,
        settings.registry_mirror,
        bucket_name="ci-bucket",
        region="eu-west-1",
    )
    assert storage == {
        "s3": {"bucket": "ci-bucket", "region": "eu-west-1", "prefix": "registry-mirror"}
    }


def test_the_mirror_reaches_an_external_store_at_its_endpoint() -> None:
    settings = settings_of({"cache": {**MINIO, "bucketLocation": "office"}})
    storage = mirror_storage(
        settings.cache_plan, settings.cache, settings.registry_mirror, bucket_name="", region=""
    )
    assert storage == {
        "s3": {
            "bucket": "ci-cache",
            "region": "office",
            "prefix": "registry-mirror",
            "endpoint": "https://minio.example.com:9000",
            "force_path_style": True,
        }
    }


def test_without_an_s3_api_store_the_mirror_keeps_layers_on_each_replica() -> None:
    settings = settings_of({"cache": GCS})
    assert mirror_storage(
        settings.cache_plan, settings.cache, settings.registry_mirror, bucket_name="", region=""
    ) == {"filesystem": {"root_directory": "/var/lib/registry", "size_limit": "10Gi"}}


def test_the_runner_signs_a_created_bucket_with_irsa_and_an_external_store_with_keys() -> None:
    created = settings_of({})
    assert runner_cache_spec(created.cache, created.cache_access, "b", "eu-west-1")["s3"] == {
        "BucketName": "b",
        "BucketLocation": "eu-west-1",
        "AuthenticationType": "iam",
        "DualStack": False,
    }
    external = settings_of({"cache": MINIO})
    assert runner_cache_spec(external.cache, external.cache_access)["s3"] == {
        "ServerAddress": "minio.example.com:9000",
        "BucketName": "ci-cache",
        "AuthenticationType": "access-key",
        "Insecure": False,
        "PathStyle": True,
    }


@pytest.mark.parametrize(
    ("cache", "stand_ins"),
    [
        ({}, set()),
        (MINIO, {"accessKey", "secretKey"}),
        (GCS, {"credentialsJson"}),
        (AZURE, {"accountName", "accountKey"}),
    ],
)
def test_the_offline_render_stands_in_for_exactly_the_credentials_the_plan_needs(
    cache: dict[str, Any], stand_ins: set[str]
) -> None:
    config = {
        "aws:region": "eu-west-1",
        f"{PROJECT}:cluster": {"name": "ci", "version": "1.34", "nodeSubnetIds": ["subnet-1"]},
        f"{PROJECT}:cache": cache,
    }
    filled = offline_config(config, stack="test")
    credentials = filled.config.get(f"{PROJECT}:cacheCredentials", {})
    assert set(credentials) == stand_ins
    assert set(filled.missing_secrets) >= {f"cacheCredentials.{key}" for key in stand_ins}
