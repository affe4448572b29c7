"""The rendered config.toml of each pool, parsed with tomllib, per stack and per cache mode."""

from __future__ import annotations

import json
import math
import tomllib
from typing import Any

import pytest

from components.kubernetes_names import quantity_value
from components.settings import (
    PAUSE_POD_PRIORITY_CLASS,
    FleetSettings,
    PoolSettings,
    RawSecret,
    SettingsError,
    parse_settings,
)
from components.settings.cache_plan import runner_cache_spec
from components.workloads.runner_config import (
    DIND_SERVICES,
    RUNNER_DEFAULT_PRIORITY_CLASS,
    effective_config,
    template_toml,
)
from components.workloads.runner_shared import PAUSE_POD_PRIORITY
from tests.harness import CREATED_CLUSTER, PROJECT, config_from_stack_file

CLUSTER = {"cluster": {"name": "ci", "version": "1.34", "nodeSubnetIds": ["subnet-1"]}}
KMS_KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
POOL = {"name": "default", "runUntagged": True}


def tokens(*pools: str) -> dict[str, RawSecret]:
    value = json.dumps({pool: f"glrt-{pool}" for pool in pools})
    return {"runnerTokens": RawSecret(value, stored_as_secret=True)}


def settings_of(raw: dict[str, Any], credentials: dict[str, str] | None = None) -> FleetSettings:
    pools = raw.get("pools") or [POOL]
    secrets = tokens(*(pool["name"] for pool in pools))
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
    pools = [pool["name"] for pool in raw["pools"]]
    secrets = tokens(*pools)
    if raw.get("gitlab", {}).get("createRunners"):
        secrets = {"gitlabApiToken": RawSecret("glpat-test", stored_as_secret=True)}
    return parse_settings(
        raw, project=PROJECT, stack=stack, aws_region=config["aws:region"], secrets=secrets
    )


def rendered(settings: FleetSettings, pool_name: str | None = None) -> dict[str, Any]:
    pool = pool_of(settings, pool_name)
    cache = runner_cache_spec(settings.cache, settings.cache_access, "cache-bucket", "eu-west-1")
    document = tomllib.loads(template_toml(settings.pool_job_spec(pool), cache))
    (runner,) = document["runners"]
    assert set(document) == {"runners"}
    return dict(runner)


def pool_of(settings: FleetSettings, name: str | None = None) -> PoolSettings:
    return next(pool for pool in settings.pools if name in (None, pool.name))


EKS_STACKS = ["dev", "staging", "prod"]


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_kubernetes_executor_runs_dind_over_tls_in_the_job_namespace(stack: str) -> None:
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
    assert kubernetes["namespace"] == "gitlab-runner-jobs-dind"
    assert kubernetes["image"] == "alpine:3.22"
    assert kubernetes["volumes"]["empty_dir"] == [
        {"name": "docker-certs", "mount_path": "/certs/client", "medium": "Memory"}
    ]


def test_dind_pools_privilege_only_services() -> None:
    kubernetes = rendered(stack_settings("prod"))["kubernetes"]
    # `privileged` at [runners.kubernetes] covers every container; each container's own
    # security context wins over it (GetContainerSecurityContext, common/config.go).
    assert kubernetes["privileged"] is False
    assert kubernetes["build_container_security_context"] == {
        "privileged": False,
        "allow_privilege_escalation": False,
    }
    assert kubernetes["helper_container_security_context"] == {
        "privileged": False,
        "allow_privilege_escalation": False,
    }
    assert kubernetes["service_container_security_context"] == {"privileged": True}
    # The service context applies to every service of the job, so dind is all a job may start;
    # the runner matches these doublestar globs against the image as written
    # (common/allowed_images.go); tests/test_allowed_services.py checks real names.
    assert kubernetes["allowed_services"] == list(DIND_SERVICES)


def test_dind_pools_keep_dind_first_in_an_extended_allowlist() -> None:
    settings = settings_of({"runner": {"allowedServices": ["postgres:16", "docker:dind"]}})
    assert rendered(settings)["kubernetes"]["allowed_services"] == [
        *DIND_SERVICES,
        "postgres:16",
    ]


def test_rootless_pools_privilege_nothing() -> None:
    settings = settings_of({"pools": [{**POOL, "buildMode": "rootless"}]})
    runner = rendered(settings)
    kubernetes = runner["kubernetes"]
    assert kubernetes["namespace"] == "gitlab-runner-jobs-rootless"
    assert kubernetes["privileged"] is False
    contexts = [
        kubernetes[f"{kind}_container_security_context"] for kind in ("build", "helper", "service")
    ]
    assert all(context["privileged"] is False for context in contexts)
    assert "allowed_services" not in kubernetes
    assert not any(variable.startswith("DOCKER_") for variable in runner["environment"])
    assert "volumes" not in kubernetes


def test_feature_flags_live_in_feature_flags_table() -> None:
    # [runners.feature_flags] wins over a job's FF_* variables; in `environment` a job could
    # override them (populateFeatureFlags, common/build_settings.go).
    runner = rendered(settings_of({"runner": {"featureFlags": {"FF_SCRIPT_SECTIONS": True}}}))
    assert runner["feature_flags"] == {
        "FF_USE_FASTZIP": True,
        "FF_DISABLE_AUTOMATIC_TOKEN_ROTATION": True,
        "FF_SCRIPT_SECTIONS": True,
    }
    assert not any(variable.startswith("FF_") for variable in runner["environment"])
    assert "CACHE_COMPRESSION_LEVEL=fast" in runner["environment"]
    assert "TRANSFER_METER_FREQUENCY=5s" in runner["environment"]


def test_cache_speed_settings_can_be_tuned() -> None:
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
    assert tuned["feature_flags"]["FF_USE_FASTZIP"] is False
    assert {"CACHE_COMPRESSION_LEVEL=fastest", "TRANSFER_METER_FREQUENCY=10s"} <= set(
        tuned["environment"]
    )


def test_job_policy_settings_reach_the_config() -> None:
    runner = rendered(
        settings_of(
            {
                "runner": {
                    "allowedImages": ["registry.example.com/**"],
                    "allowedPullPolicies": ["if-not-present"],
                    "outputLimitKib": 8192,
                }
            }
        )
    )
    assert runner["output_limit"] == 8192
    assert runner["kubernetes"]["allowed_images"] == ["registry.example.com/**"]
    assert runner["kubernetes"]["allowed_pull_policies"] == ["if-not-present"]
    defaults = rendered(settings_of({}))
    assert defaults["output_limit"] == 16384
    assert "allowed_images" not in defaults["kubernetes"]


def test_dind_does_the_build_so_it_gets_most_of_the_job() -> None:
    kubernetes = rendered(settings_of({}))["kubernetes"]
    # The build container only runs the docker CLI; the dind service builds.
    assert (kubernetes["cpu_request"], kubernetes["memory_request"]) == ("250m", "512Mi")
    assert (kubernetes["service_cpu_request"], kubernetes["service_memory_request"]) == (
        "2",
        "4Gi",
    )
    assert quantity_value(kubernetes["service_memory_request"]) >= 4 * 2**30
    # The helper archives multi-GiB caches and artifacts.
    assert kubernetes["helper_memory_limit"] == "2Gi"


def test_jobs_may_raise_resources_up_to_a_pool_sized_ceiling() -> None:
    kubernetes = rendered(settings_of({}))["kubernetes"]
    # Unset, a job cannot change requests or limits with KUBERNETES_* variables at all
    # (executors/kubernetes/overwrites.go). c5a.2xlarge: 8 vCPU, 16 GiB, 7910m and 13590Mi
    # allocatable; less 300m/512Mi of DaemonSets and the helper's 200m/256Mi, halved.
    for prefix in ("", "service_"):
        assert kubernetes[f"{prefix}cpu_request_overwrite_max_allowed"] == "3705m"
        assert kubernetes[f"{prefix}memory_request_overwrite_max_allowed"] == "6411Mi"
        # Limits do not count for scheduling: one container may use a whole node.
        assert kubernetes[f"{prefix}cpu_limit_overwrite_max_allowed"] == "7410m"
        assert kubernetes[f"{prefix}memory_limit_overwrite_max_allowed"] == "12822Mi"
    large = rendered(stack_settings("prod"), "large-memory")["kubernetes"]
    assert large["service_memory_request_overwrite_max_allowed"] == "29143Mi"
    explicit = settings_of(
        {"pools": [{**POOL, "overwriteMaxAllowed": {"cpu": "3", "memory": "6Gi"}}]}
    )
    assert rendered(explicit)["kubernetes"]["cpu_request_overwrite_max_allowed"] == "3"


@pytest.mark.parametrize(
    "pool",
    [
        # Before issue 19 the default: the node's vCPUs minus one and 75% of its memory, for
        # the build container and each service alike.
        {"overwriteMaxAllowed": {"cpu": "7", "memory": "12Gi"}},
        {"overwriteMaxAllowed": {"cpu": "3706m", "memory": "6Gi"}},
        {"overwriteMaxAllowed": {"cpu": "3", "memory": "6412Mi"}},
        # Configured requests count too: a job cannot go below them.
        {
            "overwriteMaxAllowed": {"cpu": "1", "memory": "6Gi"},
            "serviceResources": {"cpuRequest": "7", "memoryRequest": "4Gi"},
        },
    ],
)
def test_ceilings_a_job_cannot_use_together_are_refused(pool: dict[str, Any]) -> None:
    # A pod larger than every node template never makes cluster-autoscaler add a node; it
    # waits until poll_timeout (executors/kubernetes/kubernetes.go) and fails.
    with pytest.raises(SettingsError, match=r"pools\[0\]\.overwriteMaxAllowed: a job at the"):
        settings_of({"pools": [{**POOL, **pool}]})


def test_configured_requests_that_fit_no_node_are_refused() -> None:
    too_big = {"serviceResources": {"cpuRequest": "7500m", "memoryRequest": "4Gi"}}
    with pytest.raises(SettingsError, match=r"pools\[0\]\.serviceResources: a job at the"):
        settings_of({"pools": [{**POOL, **too_big}]})


def test_ceilings_that_fit_together_are_accepted() -> None:
    settings = settings_of(
        {"pools": [{**POOL, "overwriteMaxAllowed": {"cpu": "3705m", "memory": "6411Mi"}}]}
    )
    assert settings.pools[0].job_fit_problem() is None
    # Busier DaemonSets leave less room: the default ceilings shrink with them.
    busy = settings_of({"pools": [{**POOL, "daemonsetRequests": {"cpu": "1", "memory": "2Gi"}}]})
    ceiling = busy.pools[0].overwrite_ceiling
    assert ceiling is not None
    assert ceiling["cpu"] == "3355m"
    assert ceiling["memory"] == "5643Mi"


def test_jobs_request_ephemeral_storage_so_scale_from_zero_counts_it() -> None:
    kubernetes = rendered(settings_of({}))["kubernetes"]
    assert kubernetes["ephemeral_storage_request"] == "8Gi"
    # A job may ask for more, never more than one node offers (100 GiB disk: 88Gi).
    assert kubernetes["ephemeral_storage_request_overwrite_max_allowed"] == "88Gi"


KARPENTER_POOL = {
    "name": "burst",
    "scaler": "karpenter",
    "runUntagged": True,
    "warmCapacity": {"policies": [{"periods": ["* * * * *"], "idleJobs": 1}]},
}


def runner_pods(runner: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The pods gitlab-runner 19.3 makes from a [[runners]] entry, as far as annotations and
    priority go: a job pod gets its job annotations and `pod_annotations`
    (executors/kubernetes/kubernetes.go buildPodAnnotations, overwrites.go); a pause pod is
    built from PausePodManagerConfig, which has no annotations, with labels of its own and the
    autoscaler's priority class (executors/kubernetes/autoscaler/provider.go, lines 193-208;
    pause_pod_manager.go buildDeployment, lines 476-503)."""
    kubernetes = runner["kubernetes"]
    pods = {
        "job": {
            "annotations": {
                "job.runner.gitlab.com/id": "1",
                **kubernetes.get("pod_annotations", {}),
            }
        }
    }
    if autoscaler := kubernetes.get("autoscaler"):
        pods["pause"] = {
            "annotations": {},
            "priority_class_name": autoscaler.get(
                "pause_pod_priority_class_name", RUNNER_DEFAULT_PRIORITY_CLASS
            ),
            "node_selector": kubernetes["node_selector"],
            "tolerations": kubernetes["node_tolerations"],
        }
    return pods


def test_karpenter_keeps_off_nodes_running_jobs_but_not_nodes_holding_only_pause_pods() -> None:
    settings = settings_of({"cluster": CREATED_CLUSTER, "pools": [KARPENTER_POOL]})
    runner = rendered(settings, "burst")
    pods = runner_pods(runner)
    # Karpenter skips a node with an active pod annotated do-not-disrupt "true" when it looks
    # for nodes to consolidate, and does not evict such a pod when it drains one
    # (kubernetes-sigs/karpenter pkg/controllers/state/statenode.go ValidatePodsDisruptable,
    # pkg/utils/pod/scheduling.go IsDisruptable, IsEvictable).
    assert pods["job"]["annotations"]["karpenter.sh/do-not-disrupt"] == "true"
    assert pods["job"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
    # A job could drop it only with pod_annotations_overwrite_allowed (common/config.go).
    assert "pod_annotations_overwrite_allowed" not in runner["kubernetes"]
    # Pause pods carry nothing that holds a node: WhenEmpty removes it once the runner scales
    # its pause Deployment down; they copy the pool's selector and tolerations, so they warm
    # the pool's NodePool.
    assert "karpenter.sh/do-not-disrupt" not in pods["pause"]["annotations"]
    assert set(runner["kubernetes"]["autoscaler"]) == {
        "max_pause_pods",
        "pause_pod_priority_class_name",
        "policy",
    }
    # Jobs run without a priority class (priority 0, kubernetes.go sets only a configured
    # priority_class_name); the pause pods' class is below it, so the scheduler preempts them
    # for a job. Karpenter has no priority cutoff (kubernetes-sigs/karpenter
    # pkg/utils/pod/scheduling.go IsProvisionable), so an evicted pause pod gets a node again.
    assert pods["pause"]["priority_class_name"] == PAUSE_POD_PRIORITY_CLASS
    assert "priority_class_name" not in runner["kubernetes"]
    assert PAUSE_POD_PRIORITY < 0
    assert pods["pause"]["node_selector"]["gitlab-runner-fleet/pool"] == "burst"
    # Node group pools' jobs need none of it: Karpenter never manages their nodes.
    plain = rendered(settings_of({}))["kubernetes"]["pod_annotations"]
    assert "karpenter.sh/do-not-disrupt" not in plain


def test_job_pods_are_protected_from_drains_and_scale_down() -> None:
    kubernetes = rendered(settings_of({}))["kubernetes"]
    # A PodDisruptionBudget per job pod (executors/kubernetes/kubernetes.go,
    # createPodDisruptionBudget): drains wait for the job.
    assert kubernetes["pod_disruption_budget"] is True
    assert kubernetes["pod_annotations"] == {
        "cluster-autoscaler.kubernetes.io/safe-to-evict": "false"
    }


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_each_pool_is_pinned_to_its_own_nodes_from_the_one_definition(stack: str) -> None:
    settings = stack_settings(stack)
    for pool in settings.pools:
        kubernetes = rendered(settings, pool.name)["kubernetes"]
        assert kubernetes["node_tolerations"] == {
            f"{t.key}={t.value}" if t.value else t.key: t.effect for t in pool.node_taints
        }
        # Pause pods copy the node selector (not the affinity), so they warm this pool.
        assert kubernetes["node_selector"] == {
            **pool.node_labels,
            "kubernetes.io/arch": {"x86_64": "amd64", "arm64": "arm64"}[pool.architecture],
        }
        affinity = kubernetes["affinity"]["node_affinity"]
        (term,) = affinity["required_during_scheduling_ignored_during_execution"][
            "node_selector_terms"
        ]
        assert term["match_expressions"] == [
            {"key": key, "operator": "In", "values": [value]}
            for key, value in kubernetes["node_selector"].items()
        ]
        (preferred,) = affinity["preferred_during_scheduling_ignored_during_execution"]
        # The spot label of the pool's scaler: EKS's on a managed node group's nodes,
        # Karpenter's own on a NodePool's (kubernetes-sigs/karpenter pkg/apis/v1/labels.go).
        spot = (
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]}
            if pool.uses_karpenter
            else {"key": "eks.amazonaws.com/capacityType", "operator": "In", "values": ["SPOT"]}
        )
        assert preferred["preference"]["match_expressions"] == [spot]
        assert kubernetes["pod_labels"] == pool.node_labels
        others = [p for p in settings.pools if p is not pool]
        for other in others:
            assert not all(
                kubernetes["node_selector"].get(k) == v for k, v in other.node_labels.items()
            )


def test_prods_arm64_pool_selects_arm64_so_the_runner_picks_the_arm64_helper() -> None:
    # executors/kubernetes/kubernetes.go: the helper image's architecture comes from the job
    # pod's kubernetes.io/arch node selector, amd64 when it has none.
    settings = stack_settings("prod")
    arm = rendered(settings, "arm64")["kubernetes"]
    assert arm["node_selector"] == {
        "gitlab-runner-fleet/pool": "arm64",
        "kubernetes.io/arch": "arm64",
    }
    assert rendered(settings, "default")["kubernetes"]["node_selector"]["kubernetes.io/arch"] == (
        "amd64"
    )


def test_custom_labels_and_taints_flow_into_tolerations_and_affinity() -> None:
    settings = settings_of(
        {
            "pools": [
                {
                    **POOL,
                    "labels": {"ci.example.com/pool": "builds"},
                    "taints": [
                        {
                            "key": "ci.example.com/dedicated",
                            "value": "builds",
                            "effect": "NoExecute",
                        },
                        {"key": "spot", "value": "", "effect": "PreferNoSchedule"},
                    ],
                }
            ]
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
        {"key": "ci.example.com/pool", "operator": "In", "values": ["builds"]},
        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
    ]


def test_s3_with_irsa_signs_ipv4_urls_the_gateway_endpoint_serves() -> None:
    cache = rendered(settings_of({}))["cache"]
    assert cache == {
        "Type": "s3",
        "Path": "runner-cache",
        "Shared": True,
        "s3": {
            "BucketName": "cache-bucket",
            "BucketLocation": "eu-west-1",
            "AuthenticationType": "iam",
            # DualStack defaults to true in the runner (cache/cacheconfig/cacheconfig.go); it
            # then signs s3.dualstack.<region> URLs, which S3 gateway endpoints do not serve.
            "DualStack": False,
        },
    }
    ipv6 = rendered(settings_of({"cache": {"dualStack": True}}))["cache"]
    assert ipv6["s3"]["DualStack"] is True


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
    assert "DualStack" not in s3


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


def test_prod_warms_whole_jobs_in_office_hours() -> None:
    settings = stack_settings("prod")
    pool = pool_of(settings, "default")
    autoscaler = rendered(settings, "default")["kubernetes"]["autoscaler"]
    # A pause pod requests only the build container's CPU and memory
    # (executors/kubernetes/autoscaler/provider.go): one job's build + helper + service
    # requests take several of them.
    parts = (pool.build_resources, pool.helper_resources, pool.service_resources)
    per_job = max(
        math.ceil(
            sum(quantity_value(getattr(p, key) or "0") for p in parts)
            / quantity_value(getattr(pool.build_resources, key))
        )
        for key in ("cpu_request", "memory_request")
    )
    assert per_job == pool.pause_pods_per_job() == 10
    assert autoscaler["max_pause_pods"] == 4 * per_job
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
            "idle_count": 4 * per_job,
            "idle_time": "30m",
        },
    ]
    held_cpu = autoscaler["policy"][1]["idle_count"] * quantity_value(
        pool.build_resources.cpu_request or "0"
    )
    job_cpu = sum(quantity_value(p.cpu_request or "0") for p in parts)
    assert held_cpu >= 4 * job_cpu


def test_prod_counts_jobs_that_wait_longer_than_five_minutes_in_office_hours() -> None:
    settings = stack_settings("prod")
    # helpers/timeperiod/period.go matches with gorhill/cronexpr, which reads 5 fields as
    # "at second 0" and is in period only within a second of a match: 7 fields with any second
    # and year keep the whole minute (the runner's own tests use `* * 10-17 * * * *`).
    assert rendered(settings, "default")["monitoring"] == {
        "job_queuing_durations": [
            {"periods": ["* * 7-18 * * mon-fri *"], "timezone": "Europe/Berlin", "threshold": "5m"}
        ]
    }
    # Without the section the runner's counter only ever adds 0 (builds_helper.go).
    assert "monitoring" not in rendered(settings, "arm64")


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_no_pause_pods_unless_enabled(stack: str) -> None:
    assert "autoscaler" not in rendered(stack_settings(stack))["kubernetes"]


def test_effective_config_adds_the_global_keys() -> None:
    settings = stack_settings("prod")
    pool = pool_of(settings, "arm64")
    full = tomllib.loads(
        effective_config(
            concurrent=pool.concurrent,
            check_interval=settings.runner.check_interval,
            job=settings.pool_job_spec(pool),
            cache=runner_cache_spec(settings.cache, settings.cache_access, "b", "eu-west-1"),
        )
    )
    assert full["concurrent"] == 40
    assert full["check_interval"] == 3
    assert full["listen_address"] == ":9252"


def test_the_runner_never_rotates_its_token_behind_the_secrets_back() -> None:
    # The runner writes a renewed token only into its own config.toml, an emptyDir in the chart
    # (commands/multi.go resetOneRunnerToken; charts/gitlab-runner templates/configmap.yaml
    # registers from /secrets/runner-token on every start): after a restart the Secret's token
    # would be the revoked one. The stack renews tokens instead (gitlab.rotateTokenDays).
    runner = rendered(settings_of({}))
    assert runner["feature_flags"]["FF_DISABLE_AUTOMATIC_TOKEN_ROTATION"] is True


def test_job_pods_run_as_a_tokenless_service_account() -> None:
    kubernetes = rendered(settings_of({}))["kubernetes"]
    assert kubernetes["service_account"] == "gitlab-runner-job"
    assert kubernetes["automount_service_account_token"] is False


@pytest.mark.parametrize("hop_limit", [3, 0])
def test_a_pool_hop_limit_is_one_or_two(hop_limit: int) -> None:
    with pytest.raises(SettingsError, match=r"pools\[0\]\.imdsHopLimit"):
        settings_of({"pools": [{**POOL, "imdsHopLimit": hop_limit}]})
    assert settings_of({"pools": [{**POOL, "imdsHopLimit": 2}]}).pools[0].imds_hop_limit == 2


def test_privilege_escalation_is_a_pool_choice_for_the_build_container_only() -> None:
    # allowPrivilegeEscalation: false sets no_new_privs, so setuid binaries such as sudo and
    # rootless BuildKit's newuidmap gain nothing (kubernetes.go passes the build context as is).
    default = rendered(settings_of({}))["kubernetes"]
    assert default["build_container_security_context"]["allow_privilege_escalation"] is False
    sudo = settings_of({"pools": [{**POOL, "allowPrivilegeEscalation": True}]})
    kubernetes = rendered(sudo)["kubernetes"]
    assert kubernetes["build_container_security_context"] == {
        "privileged": False,
        "allow_privilege_escalation": True,
    }
    assert kubernetes["helper_container_security_context"]["allow_privilege_escalation"] is False
    assert kubernetes["privileged"] is False
