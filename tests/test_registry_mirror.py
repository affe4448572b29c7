"""RegistryMirror under Pulumi mocks: the registry, how nodes and dind reach it, its Secrets."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml
from parliament import analyze_policy_string
from pulumi.provider.experimental.analyzer import Analyzer
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

from components.aws.iam_documents import registry_mirror_storage_policy
from components.conventions import (
    CONFIG_CHECKSUM_ANNOTATION,
    MIRROR_OBJECT_ACL,
    SECRETS_VERSION_ANNOTATION,
)
from components.workloads.mirror_config import (
    DAEMON_CONFIG_MAP,
    PROXY_PASSWORD_ENV,
    PROXY_USERNAME_ENV,
    REGISTRY_IMAGE,
    STORAGE_ACCESS_KEY_ENV,
    STORAGE_SECRET_KEY_ENV,
    MirrorStorage,
    daemon_json_volume,
    distribution_config,
)
from components.workloads.registry_mirror import (
    RegistryMirror,
    RegistryMirrorArgs,
    mirror_problems,
)
from tests.harness import ProgramRun, Registered, run_program
from tests.iam_policy import allows
from tests.test_mirror_config import MINIO, S3

ROLE_ARN = "arn:aws:iam::123456789012:role/registry-mirror"
CLUSTER_IP = "172.20.0.50"
PASSWORD = "dckr_pat_NotARealToken"
KEEP_OFF_SPOT = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {
                            "key": "eks.amazonaws.com/capacityType",
                            "operator": "NotIn",
                            "values": ["SPOT"],
                        }
                    ]
                }
            ]
        }
    }
}


def declare(**overrides: Any) -> ProgramRun:
    args: RegistryMirrorArgs = {
        "storage": S3,
        "job_namespaces": ["ci-jobs", "ci-jobs-arm64"],
        "cluster_ip": CLUSTER_IP,
        "service_account_role_arn": ROLE_ARN,
        "affinity": KEEP_OFF_SPOT,
        # CacheBucket's rule on the prefix (other_prefixes) expires the layers on AWS.
        "lifecycle_rule": True,
    }
    args.update(overrides)  # type: ignore[typeddict-item]

    def program() -> None:
        provider = k8s.Provider("cluster", kubeconfig="{}")
        upstream = args.get("upstream_credentials")
        if upstream:
            # Inside the program's loop, as a stack would pass `config.require_secret(...)`.
            args["upstream_credentials"] = {
                "username": upstream["username"],
                "password": pulumi.Output.secret(upstream["password"]),
            }
        mirror = RegistryMirror(
            "registry-mirror", args, pulumi.ResourceOptions(providers=[provider])
        )
        for output in ("namespace", "url", "node_url", "daemon_config_map", "status"):
            pulumi.export(output, getattr(mirror, output))

    return run_program(program)


def named(run: ProgramRun, type_: str, name: str) -> Registered:
    return next(r for r in run.of_type(type_) if r.inputs["metadata"]["name"] == name)


def deployment(run: ProgramRun) -> dict[str, Any]:
    spec: dict[str, Any] = run.one("kubernetes:apps/v1:Deployment").inputs["spec"]
    return spec


def container(run: ProgramRun) -> dict[str, Any]:
    (registry,) = deployment(run)["template"]["spec"]["containers"]
    return dict(registry)


def integers(value: Any) -> Any:
    """Mocks hand numbers over as floats; the API schema wants integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: integers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [integers(item) for item in value]
    return value


def manifest(resource: Registered) -> dict[str, Any]:
    body = {key: value for key, value in resource.inputs.items() if key != "stringData"}
    if "stringData" in resource.inputs:
        body["stringData"] = unwrap_rpc_secret(resource.inputs["stringData"])
    return integers(body)  # type: ignore[no-any-return]


def test_every_object_is_valid_for_kubernetes(
    validate_manifest: Callable[[dict[str, Any]], None],
) -> None:
    run = declare(upstream_credentials={"username": "fleet", "password": PASSWORD})
    kinds = set()
    for resource in run.resources:
        if (
            resource.type.startswith("kubernetes:")
            and resource.type != "pulumi:providers:kubernetes"
        ):
            validate_manifest(manifest(resource))
            kinds.add(resource.inputs["kind"])
    assert kinds == {
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    }


def test_children_use_the_callers_provider_and_parent() -> None:
    run = declare()
    component = run.one("gitlab-runner-fleet:index:RegistryMirror")
    for resource in run.resources:
        if resource.type.startswith("kubernetes:") and "providers" not in resource.type:
            assert resource.parent == component.urn
            assert "pulumi:providers:kubernetes::cluster" in resource.provider


def test_the_registry_runs_its_rendered_config() -> None:
    run = declare()
    config_map = named(run, "kubernetes:core/v1:ConfigMap", "registry-mirror-config")
    text = config_map.inputs["data"]["config.yml"]
    assert yaml.safe_load(text) == distribution_config(S3)
    registry = container(run)
    assert registry["image"] == REGISTRY_IMAGE == "registry:3.1.1"
    # The image's entrypoint serves a *.yml argument (distribution-library-image entrypoint.sh).
    assert registry["args"] == ["/etc/distribution/config.yml"]
    mounts = {m["name"]: m["mountPath"] for m in registry["volumeMounts"]}
    assert mounts["config"] == "/etc/distribution"
    volumes = {v["name"]: v for v in deployment(run)["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "registry-mirror-config"
    # The registry reads its config once: a new config rolls the pods.
    annotations = deployment(run)["template"]["metadata"]["annotations"]
    assert annotations[CONFIG_CHECKSUM_ANNOTATION] == hashlib.sha256(text.encode()).hexdigest()


def test_s3_storage_authenticates_with_the_irsa_role() -> None:
    run = declare()
    account = run.one("kubernetes:core/v1:ServiceAccount")
    assert account.inputs["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": ROLE_ARN}
    pod = deployment(run)["template"]["spec"]
    assert pod["serviceAccountName"] == account.inputs["metadata"]["name"]
    assert "env" not in container(run)
    assert not run.of_type("kubernetes:core/v1:Secret")


def test_upstream_credentials_live_only_in_a_secret() -> None:
    run = declare(upstream_credentials={"username": "fleet", "password": PASSWORD})
    secret = run.one("kubernetes:core/v1:Secret")
    assert is_rpc_secret(secret.inputs["stringData"])
    assert unwrap_rpc_secret(secret.inputs["stringData"]) == {
        "upstream-username": "fleet",
        "upstream-password": PASSWORD,
    }
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container(run)["env"]}
    assert env == {
        PROXY_USERNAME_ENV: {"name": "registry-mirror-credentials", "key": "upstream-username"},
        PROXY_PASSWORD_ENV: {"name": "registry-mirror-credentials", "key": "upstream-password"},
    }
    assert secret.inputs["metadata"]["name"] == "registry-mirror-credentials"
    assert PASSWORD not in repr([r.inputs for r in run.resources if r is not secret])
    assert PASSWORD not in repr(run.outputs)
    # A rotated token restarts the registry, which reads its environment once.
    annotations = deployment(run)["template"]["metadata"]["annotations"]
    assert annotations[SECRETS_VERSION_ANNOTATION] == secret.state["metadata"]["resourceVersion"]
    assert "(authenticated)" in run.outputs["status"]


def declare_on_minio(**overrides: Any) -> ProgramRun:
    return declare(
        storage=MINIO,
        service_account_role_arn=None,
        storage_keys={"access_key_id": "AKIAMINIO", "secret_access_key": "minio-secret"},
        lifecycle_rule=False,
        **overrides,
    )


def test_s3_compatible_store_gets_keys_from_the_secret() -> None:
    run = declare_on_minio()
    secret = run.one("kubernetes:core/v1:Secret")
    assert set(unwrap_rpc_secret(secret.inputs["stringData"])) == {
        "storage-access-key-id",
        "storage-secret-access-key",
    }
    assert [e["name"] for e in container(run)["env"]] == [
        STORAGE_ACCESS_KEY_ENV,
        STORAGE_SECRET_KEY_ENV,
    ]
    assert "annotations" not in run.one("kubernetes:core/v1:ServiceAccount").inputs["metadata"]
    assert "minio-secret" not in repr(deployment(run))


def test_two_replicas_spread_and_keep_one_through_disruptions() -> None:
    run = declare()
    spec = deployment(run)
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    keys = {c["topologyKey"] for c in spec["template"]["spec"]["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    budget = run.one("kubernetes:policy/v1:PodDisruptionBudget").inputs["spec"]
    assert budget["maxUnavailable"] == 1
    assert budget["selector"] == spec["selector"]


def test_a_single_replica_gets_no_budget_that_would_block_drains() -> None:
    run = declare(replicas=1)
    assert deployment(run)["replicas"] == 1
    assert not run.of_type("kubernetes:policy/v1:PodDisruptionBudget")


def test_the_mirror_stays_off_spot_build_nodes() -> None:
    pod = deployment(declare(node_selector={"role": "system"}))["template"]["spec"]
    assert pod["affinity"] == KEEP_OFF_SPOT
    assert pod["nodeSelector"] == {"role": "system"}


def test_the_registry_runs_unprivileged_with_probes_and_resources() -> None:
    run = declare()
    pod = deployment(run)["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    registry = container(run)
    assert registry["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert registry["readinessProbe"]["httpGet"] == {"path": "/v2/", "port": "http"}
    assert registry["livenessProbe"]["tcpSocket"] == {"port": "http"}
    assert registry["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"memory": "512Mi"},
    }
    namespace = run.one("kubernetes:core/v1:Namespace").inputs["metadata"]
    assert namespace["labels"] == {"pod-security.kubernetes.io/enforce": "restricted"}


def test_filesystem_storage_keeps_a_cache_per_replica() -> None:
    storage: MirrorStorage = {"filesystem": {"root_directory": "/var/lib/registry"}}
    run = declare(storage=storage, service_account_role_arn=None, lifecycle_rule=False)
    volumes = {v["name"]: v for v in deployment(run)["template"]["spec"]["volumes"]}
    # The registry expires by age only (proxy.ttl); at its sizeLimit the kubelet evicts the
    # replica (pkg/kubelet/eviction/eviction_manager.go, emptyDirLimitEviction), which starts
    # again empty, rather than let it fill the node's disk under the other pods.
    assert volumes["storage"] == {"name": "storage", "emptyDir": {"sizeLimit": "10Gi"}}
    # The scheduler keeps as much of the node's disk for it (ephemeral-storage is scheduled like
    # CPU and memory); S3 storage asks for none (test_the_registry_runs_unprivileged_...).
    assert container(run)["resources"]["requests"]["ephemeral-storage"] == "10Gi"
    mounts = {m["name"]: m["mountPath"] for m in container(run)["volumeMounts"]}
    assert mounts["storage"] == "/var/lib/registry"
    assert "emptyDir /var/lib/registry per replica, up to 10Gi" in run.outputs["status"]
    # Each replica's own directory: the registry's own expiry works there.
    assert "expired after 30 days by the registry" in run.outputs["status"]
    assert run.of_type("kubernetes:batch/v1:CronJob") == []


def test_a_replicas_directory_is_bounded_as_given(
    validate_manifest: Callable[[dict[str, Any]], None],
) -> None:
    storage: MirrorStorage = {
        "filesystem": {"root_directory": "/var/lib/registry", "size_limit": "40Gi"}
    }
    run = declare(storage=storage, service_account_role_arn=None, lifecycle_rule=False)
    volumes = {v["name"]: v for v in deployment(run)["template"]["spec"]["volumes"]}
    assert volumes["storage"]["emptyDir"] == {"sizeLimit": "40Gi"}
    assert container(run)["resources"]["requests"]["ephemeral-storage"] == "40Gi"
    validate_manifest(manifest(run.one("kubernetes:apps/v1:Deployment")))
    config = yaml.safe_load(
        named(run, "kubernetes:core/v1:ConfigMap", "registry-mirror-config").inputs["data"][
            "config.yml"
        ]
    )
    # Only the pod knows the bound: distribution's filesystem driver has none.
    assert config["storage"]["filesystem"] == {"rootdirectory": "/var/lib/registry"}


def test_on_aws_the_lifecycle_rule_expires_the_layers_and_no_job_runs() -> None:
    run = declare(expiration_days=14)
    config_map = named(run, "kubernetes:core/v1:ConfigMap", "registry-mirror-config")
    config = yaml.safe_load(config_map.inputs["data"]["config.yml"])

    assert config["proxy"]["ttl"] == "0s"
    assert run.of_type("kubernetes:batch/v1:CronJob") == []
    assert "expired after 14 days by the lifecycle rule" in run.outputs["status"]


def test_an_s3_compatible_store_is_expired_by_an_hourly_job_with_the_mirrors_keys(
    validate_manifest: Callable[[dict[str, Any]], None],
) -> None:
    run = declare_on_minio(expiration_days=14)
    (cron_job,) = run.of_type("kubernetes:batch/v1:CronJob")
    body = manifest(cron_job)
    validate_manifest(body)
    pod = body["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (job,) = pod["containers"]

    assert body["spec"]["schedule"] == "43 * * * *"
    assert body["spec"]["concurrencyPolicy"] == "Forbid"
    assert job["command"][:4] == ["rclone", "delete", "mirror:ci/registry-mirror", "--min-age"]
    assert job["command"][4] == "14d"
    keys = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in job["env"] if "valueFrom" in e}
    assert keys == {
        "RCLONE_CONFIG_MIRROR_ACCESS_KEY_ID": {
            "name": "registry-mirror-credentials",
            "key": "storage-access-key-id",
        },
        "RCLONE_CONFIG_MIRROR_SECRET_ACCESS_KEY": {
            "name": "registry-mirror-credentials",
            "key": "storage-secret-access-key",
        },
    }
    assert "minio-secret" not in repr(body)
    # The mirror's namespace enforces `restricted`; the job's pods are not the Service's.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert job["securityContext"]["allowPrivilegeEscalation"] is False
    assert (
        body["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        != (run.one("kubernetes:core/v1:Service").inputs["spec"]["selector"])
    )
    assert pod["affinity"] == KEEP_OFF_SPOT
    assert "expired after 14 days by the expiry job" in run.outputs["status"]


def test_nodes_reach_the_mirror_on_its_fixed_cluster_ip() -> None:
    run = declare()
    service = run.one("kubernetes:core/v1:Service").inputs["spec"]
    assert service["clusterIP"] == CLUSTER_IP
    assert service["ports"] == [
        {"name": "http", "port": 5000, "targetPort": "http", "protocol": "TCP"}
    ]
    assert service["selector"] == deployment(run)["selector"]["matchLabels"]
    assert run.outputs["node_url"] == "http://172.20.0.50:5000"
    assert run.outputs["url"] == "http://172.20.0.50:5000"
    assert "nodes use http://172.20.0.50:5000" in run.outputs["status"]


def test_every_job_namespace_gets_the_daemon_json() -> None:
    run = declare()
    config_maps = [
        r
        for r in run.of_type("kubernetes:core/v1:ConfigMap")
        if r.inputs["metadata"]["name"] == DAEMON_CONFIG_MAP
    ]
    assert sorted(c.inputs["metadata"]["namespace"] for c in config_maps) == [
        "ci-jobs",
        "ci-jobs-arm64",
    ]
    for config_map in config_maps:
        assert json.loads(config_map.inputs["data"]["daemon.json"]) == {
            "registry-mirrors": ["http://172.20.0.50:5000"]
        }
    # The runner mounts the ConfigMap that has the volume's name (executors/kubernetes/kubernetes.go,
    # getVolumesForConfigMaps) with the key the volume lists.
    volume = daemon_json_volume(run.outputs["daemon_config_map"])
    assert volume["name"] == DAEMON_CONFIG_MAP
    assert set(volume["items"]) == set(config_maps[0].inputs["data"])


def test_without_a_cluster_ip_pods_use_the_service_name() -> None:
    run = declare(cluster_ip=None, cluster_domain="ci.internal")
    assert run.outputs["node_url"] is None
    url = "http://registry-mirror.registry-mirror.svc.ci.internal:5000"
    assert run.outputs["url"] == url
    config_map = named(run, "kubernetes:core/v1:ConfigMap", DAEMON_CONFIG_MAP)
    assert json.loads(config_map.inputs["data"]["daemon.json"]) == {"registry-mirrors": [url]}
    assert "clusterIP" not in run.one("kubernetes:core/v1:Service").inputs["spec"]
    assert "nodes not configured" in run.outputs["status"]


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"replicas": 0}, "replicas must be >= 1"),
        ({"cluster_ip": "registry-mirror"}, "cluster_ip must be an IP address"),
        (
            {"storage": {"filesystem": {"root_directory": "/r"}}, "has_role": True},
            "only apply to s3",
        ),
        ({"has_storage_keys": True, "has_role": True}, "not both"),
        ({"storage": {}}, "storage: set exactly one"),
        ({"has_role": True}, "grows without bound: set lifecycle_rule"),
        (
            {"storage": {"filesystem": {"root_directory": "/r"}}, "lifecycle_rule": True},
            "lifecycle_rule only applies to s3",
        ),
        ({"has_storage_keys": True, "expiration_days": 0}, "expiration_days must be"),
        (
            {"storage": {"filesystem": {"root_directory": "/r", "size_limit": "20 GB"}}},
            "filesystem.size_limit must be a Kubernetes quantity such as 20Gi, got '20 GB'",
        ),
        (
            {"storage": {"filesystem": {"root_directory": "/r", "size_limit": "500Mi"}}},
            "filesystem.size_limit must be at least 1Gi, got '500Mi'",
        ),
    ],
)
def test_unusable_arguments_are_refused(arguments: dict[str, Any], problem: str) -> None:
    values: dict[str, Any] = {
        "storage": S3,
        "replicas": 2,
        "cluster_ip": CLUSTER_IP,
        "has_storage_keys": False,
        "has_role": False,
        **arguments,
    }
    storage = values.pop("storage")
    assert any(problem in found for found in mirror_problems(storage, **values))


def test_the_component_refuses_bad_arguments_before_declaring_anything() -> None:
    with pytest.raises(ValueError, match="replicas must be >= 1"):
        declare(replicas=0)


def test_other_languages_get_a_schema_for_the_component() -> None:
    definition = Analyzer("gitlab-runner-fleet").analyze([RegistryMirror])["component_definitions"]
    component = definition["RegistryMirror"]
    assert set(component.inputs) >= {"storage", "jobNamespaces", "clusterIp", "upstreamCredentials"}
    assert set(component.outputs) == {"namespace", "url", "nodeUrl", "daemonConfigMap", "status"}


def parliament_findings_the_mirror_cannot_avoid(document: dict[str, Any]) -> list[str]:
    """Parliament's findings of the mirror's storage policy, minus the one inherent in how the
    driver writes: every write sets an ACL, which takes s3:PutObjectAcl, an action parliament's
    community auditor reports as permissions management whatever its condition
    (community_auditors/permissions_management.py)."""
    policy = analyze_policy_string(json.dumps(document), include_community_auditors=True)
    return [
        f"{finding.issue}: {finding.detail} {finding.location}"
        for finding in policy.findings
        if not (
            finding.issue == "PERMISSIONS_MANAGEMENT_ACTIONS"
            and finding.location["actions"] == ["s3:putobjectacl"]
        )
    ]


def test_the_storage_policy_covers_exactly_the_mirrors_prefix(
    lint_policy: Callable[[dict[str, Any]], list[tuple[str, Any]]],
) -> None:
    bucket = "arn:aws:s3:::fleet-cache"
    policy = registry_mirror_storage_policy(bucket, "registry-mirror")
    assert {issue for issue, _ in lint_policy(policy)} == {"PERMISSIONS_MANAGEMENT_ACTIONS"}
    assert parliament_findings_the_mirror_cannot_avoid(policy) == []
    statements = {s["Sid"]: s for s in policy["Statement"]}
    # The driver keys objects by rootdirectory without its leading '/' (s3-aws/s3.go, s3Path).
    root = distribution_config(S3)["storage"]["s3"]["rootdirectory"].lstrip("/")
    assert statements["MirrorObjects"]["Resource"] == f"{bucket}/{root}/*"
    assert set(statements["MirrorObjects"]["Action"]) == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
    }
    # Every write carries `x-amz-acl: bucket-owner-full-control` (s3-aws/s3.go getACL, the
    # config's `objectacl`); AWS's PutObject reference asks for s3:PutObjectAcl to set an ACL in
    # a request. The role may set that canned ACL on its own objects and no other.
    assert distribution_config(S3)["storage"]["s3"]["objectacl"] == MIRROR_OBJECT_ACL
    layer = f"{bucket}/{root}/docker/registry/v2/blobs/sha256/ab/abcd/data"
    assert allows(policy, "s3:PutObjectAcl", layer, {"s3:x-amz-acl": MIRROR_OBJECT_ACL})
    assert not allows(policy, "s3:PutObjectAcl", layer, {"s3:x-amz-acl": "public-read"})
    assert not allows(policy, "s3:PutObjectAcl", layer)
    assert not allows(
        policy, "s3:PutObjectAcl", f"{bucket}/runner-cache/x", {"s3:x-amz-acl": MIRROR_OBJECT_ACL}
    )
    # The storage health check stats "/", which lists the prefix `<root>/`.
    assert statements["ListMirrorPrefix"]["Condition"] == {
        "StringLike": {"s3:prefix": [f"{root}/", f"{root}/*"]}
    }
    assert "kms:Decrypt" not in repr(policy)
    key = "arn:aws:kms:eu-west-1:123456789012:key/0000"
    with_key = registry_mirror_storage_policy(bucket, "registry-mirror", kms_key_arn=key)
    assert parliament_findings_the_mirror_cannot_avoid(with_key) == []
    (encryption,) = [s for s in with_key["Statement"] if s["Sid"] == "BucketEncryptionKey"]
    assert encryption["Resource"] == key
