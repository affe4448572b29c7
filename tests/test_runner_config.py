"""The rendered config.toml, parsed with tomllib, per stack and per cache mode."""

from __future__ import annotations

import json
import tomllib
from typing import Any

import pytest

from components.settings import FleetSettings, RawSecret, parse_settings
from components.workloads.runner_config import effective_config, template_toml
from tests.harness import PROJECT, config_from_stack_file

TOKEN = {"runnerToken": RawSecret("glrt-test", stored_as_secret=True)}
CLUSTER = {"cluster": {"name": "ci", "version": "1.34"}}
KMS_KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def settings_of(raw: dict[str, Any], credentials: dict[str, str] | None = None) -> FleetSettings:
    secrets = dict(TOKEN)
    if credentials is not None:
        secrets["cacheCredentials"] = RawSecret(json.dumps(credentials), stored_as_secret=True)
    return parse_settings(
        {**CLUSTER, **raw}, project=PROJECT, stack="test", aws_region="eu-west-1", secrets=secrets
    )


def stack_settings(stack: str) -> FleetSettings:
    config = config_from_stack_file(stack)
    raw = {
        key.split(":", 1)[1]: value
        for key, value in config.items()
        if key.startswith(f"{PROJECT}:")
    }
    return parse_settings(
        raw, project=PROJECT, stack=stack, aws_region=config["aws:region"], secrets=TOKEN
    )


def rendered(settings: FleetSettings) -> dict[str, Any]:
    cache = settings.runner_cache_spec("cache-bucket", "eu-west-1")
    document = tomllib.loads(template_toml(settings.runner_job_spec(), cache))
    (runner,) = document["runners"]
    assert set(document) == {"runners"}
    return dict(runner)


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_kubernetes_executor_runs_dind_over_tls(stack: str) -> None:
    runner = rendered(stack_settings(stack))
    assert runner["executor"] == "kubernetes"
    assert "token" not in runner
    assert "url" not in runner
    for variable in (
        "DOCKER_HOST=tcp://docker:2376",
        "DOCKER_TLS_CERTDIR=/certs",
        "DOCKER_TLS_VERIFY=1",
        "DOCKER_CERT_PATH=/certs/client",
    ):
        assert variable in runner["environment"]
    kubernetes = runner["kubernetes"]
    assert kubernetes["namespace"] == "gitlab-runner"
    assert kubernetes["privileged"] is True
    assert kubernetes["image"] == "alpine:3.22"
    assert kubernetes["volumes"]["empty_dir"] == [
        {"name": "docker-certs", "mount_path": "/certs/client", "medium": "Memory"}
    ]


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_resources_polling_and_concurrency(stack: str) -> None:
    settings = stack_settings(stack)
    runner = rendered(settings)
    kubernetes = runner["kubernetes"]
    assert runner["request_concurrency"] == 4
    assert (kubernetes["poll_interval"], kubernetes["poll_timeout"]) == (3, 600)
    assert (
        kubernetes["cpu_request"],
        kubernetes["memory_request"],
        kubernetes["memory_limit"],
    ) == ("1", "2Gi", "4Gi")
    assert "cpu_limit" not in kubernetes
    assert (kubernetes["helper_cpu_request"], kubernetes["helper_memory_limit"]) == (
        "100m",
        "512Mi",
    )
    assert (kubernetes["service_cpu_request"], kubernetes["service_memory_limit"]) == (
        "500m",
        "2Gi",
    )
    full = tomllib.loads(
        effective_config(
            concurrent=settings.runner.concurrent,
            check_interval=settings.runner.check_interval,
            job=settings.runner_job_spec(),
            cache=settings.runner_cache_spec("b", "eu-west-1"),
        )
    )
    assert full["concurrent"] == settings.runner.concurrent
    assert full["check_interval"] == 3
    assert full["listen_address"] == ":9252"


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_jobs_are_pinned_to_the_build_nodes_from_the_one_definition(stack: str) -> None:
    settings = stack_settings(stack)
    kubernetes = rendered(settings)["kubernetes"]
    assert kubernetes["node_tolerations"] == {
        f"{t.key}={t.value}" if t.value else t.key: t.effect for t in settings.build_nodes.taints
    }
    affinity = kubernetes["affinity"]["node_affinity"]
    (term,) = affinity["required_during_scheduling_ignored_during_execution"]["node_selector_terms"]
    assert term["match_expressions"] == [
        {"key": key, "operator": "In", "values": [value]}
        for key, value in settings.build_nodes.labels.items()
    ]
    # Pause pods copy the node selector (not the affinity), so they land on build nodes too.
    assert kubernetes["node_selector"] == settings.build_nodes.labels
    (preferred,) = affinity["preferred_during_scheduling_ignored_during_execution"]
    assert preferred["weight"] == 100
    assert preferred["preference"]["match_expressions"] == [
        {"key": "eks.amazonaws.com/capacityType", "operator": "In", "values": ["SPOT"]}
    ]
    assert kubernetes["pod_annotations"] == {
        "cluster-autoscaler.kubernetes.io/safe-to-evict": "false"
    }


def test_custom_labels_and_taints_flow_into_tolerations_and_affinity() -> None:
    settings = settings_of(
        {
            "buildNodes": {
                "labels": {"ci.example.com/pool": "builds"},
                "taints": [
                    {"key": "ci.example.com/dedicated", "value": "builds", "effect": "NoExecute"},
                    {"key": "spot", "value": "", "effect": "PreferNoSchedule"},
                ],
            }
        }
    )
    kubernetes = rendered(settings)["kubernetes"]
    assert kubernetes["node_tolerations"] == {
        "ci.example.com/dedicated=builds": "NoExecute",
        "spot": "PreferNoSchedule",
    }
    terms = kubernetes["affinity"]["node_affinity"][
        "required_during_scheduling_ignored_during_execution"
    ]
    assert terms["node_selector_terms"][0]["match_expressions"] == [
        {"key": "ci.example.com/pool", "operator": "In", "values": ["builds"]}
    ]


def test_cache_speed_defaults() -> None:
    environment = rendered(settings_of({}))["environment"]
    assert "FF_USE_FASTZIP=true" in environment
    assert "CACHE_COMPRESSION_LEVEL=fast" in environment
    assert "TRANSFER_METER_FREQUENCY=5s" in environment
    tuned = rendered(
        settings_of(
            {
                "runner": {
                    "fastZip": False,
                    "cacheCompressionLevel": "fastest",
                    "transferMeterFrequency": "10s",
                }
            }
        )
    )
    assert {
        "FF_USE_FASTZIP=false",
        "CACHE_COMPRESSION_LEVEL=fastest",
        "TRANSFER_METER_FREQUENCY=10s",
    } <= set(tuned["environment"])


def test_s3_with_irsa() -> None:
    cache = rendered(settings_of({}))["cache"]
    assert cache == {
        "Type": "s3",
        "Path": "runner-cache",
        "Shared": True,
        "s3": {
            "BucketName": "cache-bucket",
            "BucketLocation": "eu-west-1",
            "AuthenticationType": "iam",
        },
    }


def test_s3_with_access_keys_and_kms() -> None:
    cache = rendered(
        settings_of({"cacheAccess": {"mode": "accessKey"}, "cache": {"kmsKeyArn": KMS_KEY_ARN}})
    )["cache"]
    assert cache["s3"]["AuthenticationType"] == "access-key"
    assert cache["s3"]["ServerSideEncryption"] == "KMS"
    assert cache["s3"]["ServerSideEncryptionKeyID"] == KMS_KEY_ARN
    assert "AccessKey" not in cache["s3"]
    assert "SecretKey" not in cache["s3"]


@pytest.mark.parametrize(
    ("address", "insecure", "host"),
    [
        ("minio.internal:9000", False, "minio.internal:9000"),
        ("minio.internal:9000", True, "minio.internal:9000"),
        ("https://minio.example.com", False, "minio.example.com"),
        ("http://minio.internal:9000/", True, "minio.internal:9000"),
    ],
)
def test_s3_compatible_endpoint_honours_insecure_both_ways(
    address: str, insecure: bool, host: str
) -> None:
    settings = settings_of(
        {
            "cache": {
                "type": "s3Compatible",
                "serverAddress": address,
                "insecure": insecure,
                "bucketName": "ci-cache",
                "pathStyle": True,
            }
        },
        credentials={"accessKey": "a", "secretKey": "s"},
    )
    s3 = rendered(settings)["cache"]["s3"]
    assert s3["ServerAddress"] == host
    assert s3["Insecure"] is insecure
    assert s3["PathStyle"] is True
    assert s3["BucketName"] == "ci-cache"
    assert s3["AuthenticationType"] == "access-key"


def test_gcs_cache() -> None:
    settings = settings_of(
        {"cache": {"type": "gcs", "bucketName": "acme_ci_cache"}},
        credentials={"credentialsJson": "{}"},
    )
    assert rendered(settings)["cache"] == {
        "Type": "gcs",
        "Path": "runner-cache",
        "Shared": True,
        "gcs": {"BucketName": "acme_ci_cache"},
    }


def test_azure_cache() -> None:
    settings = settings_of(
        {
            "cache": {
                "type": "azure",
                "containerName": "runner-cache",
                "storageDomain": "blob.core.windows.net",
            }
        },
        credentials={"accountName": "acme", "accountKey": "k"},
    )
    assert rendered(settings)["cache"]["azure"] == {
        "ContainerName": "runner-cache",
        "StorageDomain": "blob.core.windows.net",
    }


def test_prod_keeps_warm_capacity_in_office_hours() -> None:
    kubernetes = rendered(stack_settings("prod"))["kubernetes"]
    autoscaler = kubernetes["autoscaler"]
    assert autoscaler["max_pause_pods"] == 6
    assert autoscaler["pause_pod_priority_class_name"] == "gitlab-runner-fleet-pause-pods"
    assert autoscaler["policy"] == [
        {
            "periods": ["* * * * *"],
            "timezone": "Europe/Berlin",
            "idle_count": 0,
            "idle_time": "10m",
        },
        {
            "periods": ["* 7-18 * * mon-fri"],
            "timezone": "Europe/Berlin",
            "idle_count": 4,
            "idle_time": "30m",
        },
    ]


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_no_pause_pods_unless_enabled(stack: str) -> None:
    assert "autoscaler" not in rendered(stack_settings(stack))["kubernetes"]
