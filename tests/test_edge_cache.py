"""EdgeCache: its Kubernetes objects (validated against the 1.34 schema) and the component
under Pulumi mocks, with and without a hub."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pulumi
from pulumi.provider.experimental.analyzer import Analyzer
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

from components.workloads.edge_cache import (
    CREDENTIALS_SECRET,
    DATA_CLAIM,
    EXPIRY_CONTAINER,
    PUSH_JOB,
    SERVER_NAME,
    EdgeCache,
    EdgeCacheArgs,
    claim_manifest,
    config_map_manifest,
    deployment_manifest,
    namespace_manifest,
    push_cron_job_manifest,
    runner_cache_spec,
    server_labels,
    service_endpoint,
    service_manifest,
)
from components.workloads.rclone import (
    AUTH_KEY_ENV,
    EXPIRY_INTERVAL_SECONDS,
    HUB_ACCESS_KEY_ENV,
    HUB_SECRET_KEY_ENV,
    RC_ADDR,
    RC_CLIENT_PASS_ENV,
    RC_PASS_ENV,
    RC_USER,
    RCLONE_IMAGE,
    SERVE_PORT,
    HubLocation,
    expiry_loop_command,
    expiry_round_command,
    remote_config,
)
from tests.harness import ProgramRun, Registered, run_program

NAMESPACE = "runner-cache"
HUB_SECRET = "hub-secret-access-key-value"
BUILD_LABELS = [{"intent": "build"}, {"intent": "build-arm"}]
Validate = Callable[[dict[str, Any]], None]


def edge_objects() -> list[dict[str, Any]]:
    config = remote_config("hub-bucket", "runner-cache", HubLocation(region="eu-west-1"))
    return [
        namespace_manifest(NAMESPACE),
        claim_manifest(NAMESPACE, "200Gi", "local-path"),
        config_map_manifest(NAMESPACE, config),
        service_manifest(NAMESPACE),
        deployment_manifest(
            NAMESPACE,
            bucket="hub-bucket",
            prefix="runner-cache",
            has_hub=True,
            size="200Gi",
            config=config,
            secrets_version="101",
            build_node_labels=BUILD_LABELS,
        ),
        push_cron_job_manifest(
            NAMESPACE,
            bucket="hub-bucket",
            prefix="runner-cache",
            replicate=["build-*-protected"],
            uplink_mbps=50,
            build_node_labels=BUILD_LABELS,
        ),
    ]


def test_every_object_is_valid_kubernetes(validate_manifest: Validate) -> None:
    for manifest in edge_objects():
        validate_manifest(manifest)


def pods(manifest: dict[str, Any]) -> dict[str, Any]:
    spec = manifest["spec"]
    if manifest["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return dict(spec["template"]["spec"])


def test_every_pod_meets_the_restricted_pod_security_standard() -> None:
    namespace, *_ = edge_objects()
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for manifest in edge_objects():
        if manifest["kind"] not in ("Deployment", "CronJob"):
            continue
        pod = pods(manifest)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"] + pod.get("initContainers", []):
            assert container["image"] == RCLONE_IMAGE
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }


def test_the_push_runs_on_the_servers_node_where_the_volume_is() -> None:
    *_, deployment, push = edge_objects()
    assert deployment["spec"]["selector"]["matchLabels"] == server_labels()
    assert server_labels().items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    # ReadWriteOnce: one node mounts the volume, so the push joins the server there.
    assert claim_manifest(NAMESPACE, "1Gi", None)["spec"]["accessModes"] == ["ReadWriteOnce"]
    (term,) = pods(push)["affinity"]["podAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term == {
        "labelSelector": {"matchLabels": server_labels()},
        "topologyKey": "kubernetes.io/hostname",
    }
    assert push["spec"]["concurrencyPolicy"] == "Forbid"


def test_the_server_is_replaced_not_rolled_so_one_pod_owns_the_volume() -> None:
    deployment = edge_objects()[4]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_the_cache_keeps_off_build_nodes() -> None:
    *_, deployment, push = edge_objects()
    for manifest in (deployment, push):
        (term,) = pods(manifest)["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]["nodeSelectorTerms"]
        assert {"key": "intent", "operator": "NotIn", "values": ["build", "build-arm"]} in term[
            "matchExpressions"
        ]


def containers(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {container["name"]: container for container in pods(manifest)["containers"]}


def test_the_push_only_reads_the_volume() -> None:
    *_, deployment, push = edge_objects()
    push_pod = pods(push)

    assert push_pod["volumes"][0]["persistentVolumeClaim"] == {
        "claimName": DATA_CLAIM,
        "readOnly": True,
    }
    assert push_pod["containers"][0]["command"][1] == "copy"
    (init,) = pods(deployment)["initContainers"]
    assert init["command"][:3] == [
        "rclone",
        "mkdir",
        "/data/objects/hub-bucket/runner-cache/project",
    ]


def test_the_expiry_runs_beside_the_server_and_tells_it_what_it_deleted() -> None:
    *_, deployment, _ = edge_objects()
    server, expiry = containers(deployment)["rclone"], containers(deployment)[EXPIRY_CONTAINER]

    # Every 10 minutes, by age (168h) then down to the store's bound, half of the 200Gi volume.
    assert expiry["command"] == expiry_loop_command(
        expiry_round_command(bucket="hub-bucket", max_bytes=100 * 1024**3, expire_after="168h")
    )
    assert expiry["command"][4] == str(EXPIRY_INTERVAL_SECONDS) == "600"
    assert {"name": "data", "mountPath": "/data", "readOnly": False} in expiry["volumeMounts"]
    assert expiry["resources"]["limits"] == {"memory": "512Mi"}
    # The server's remote control listens on the pod's loopback, where the expiry calls it,
    # and only with the generated password: rclone 1.75 refuses `vfs/forget` on a server
    # without credentials (fs/rc/rcserver/rcserver.go), and `--rc-no-auth` would open every rc
    # call to anything reaching the port (kubectl port-forward included).
    command = server["command"]
    assert command[command.index("--rc-addr") + 1] == RC_ADDR == "127.0.0.1:5572"
    assert command[command.index("--rc-user") + 1] == RC_USER
    assert "--rc" in command
    assert "--rc-no-auth" not in command
    assert f"http://{RC_ADDR}/" in expiry["command"]
    assert env_names(server)[RC_PASS_ENV] == CREDENTIALS_SECRET
    assert env_keys(expiry) == {RC_CLIENT_PASS_ENV: RC_PASS_ENV}
    # `serve s3` has a `--pass` of its own (lib/http/auth.go): RCLONE_PASS is the expiry's only.
    assert RC_CLIENT_PASS_ENV not in env_names(server)


def env_names(container: dict[str, Any]) -> dict[str, str]:
    return {entry["name"]: entry["valueFrom"]["secretKeyRef"]["name"] for entry in container["env"]}


def env_keys(container: dict[str, Any]) -> dict[str, str]:
    return {entry["name"]: entry["valueFrom"]["secretKeyRef"]["key"] for entry in container["env"]}


def test_keys_come_from_the_secret_and_the_server_always_requires_them() -> None:
    *_, deployment, push = edge_objects()
    server = containers(deployment)["rclone"]
    (pusher,) = pods(push)["containers"]

    # Without RCLONE_AUTH_KEY `serve s3` would be anonymous (cmd/serve/s3/serve_s3.md); a
    # missing Secret key keeps the container from starting instead.
    assert env_names(server) == {
        AUTH_KEY_ENV: CREDENTIALS_SECRET,
        RC_PASS_ENV: CREDENTIALS_SECRET,
        HUB_ACCESS_KEY_ENV: CREDENTIALS_SECRET,
        HUB_SECRET_KEY_ENV: CREDENTIALS_SECRET,
    }
    assert env_names(pusher) == {
        HUB_ACCESS_KEY_ENV: CREDENTIALS_SECRET,
        HUB_SECRET_KEY_ENV: CREDENTIALS_SECRET,
    }
    assert server["ports"] == [{"name": "s3", "containerPort": SERVE_PORT}]


def test_the_runner_reaches_the_cache_through_its_service() -> None:
    service = service_manifest(NAMESPACE)
    assert service["spec"]["selector"] == server_labels()
    assert service_endpoint(NAMESPACE) == f"s3.{NAMESPACE}.svc:{SERVE_PORT}"


def test_the_runner_cache_config_points_at_the_edge_with_shared_objects() -> None:
    spec = runner_cache_spec(service_endpoint(NAMESPACE), "hub-bucket", "runner-cache")

    # gitlab-runner v19.3.0 cache/cacheconfig/cacheconfig.go: `Insecure` makes the endpoint
    # http://, an explicit `PathStyle` skips virtual-host detection, and `BucketLocation`
    # skips GetBucketLocation; `Shared` drops `runner/<token>/` from object names.
    assert spec == {
        "Type": "s3",
        "Path": "runner-cache",
        "Shared": True,
        "s3": {
            "ServerAddress": "s3.runner-cache.svc:8080",
            "BucketName": "hub-bucket",
            "BucketLocation": "us-east-1",
            "AuthenticationType": "access-key",
            "Insecure": True,
            "PathStyle": True,
        },
    }


# --- The component under mocks ---------------------------------------------------------------


def declare(with_hub: bool = True, return_error: bool = False, **overrides: Any) -> ProgramRun:
    def program() -> None:
        args: EdgeCacheArgs = {
            "bucket": "hub-bucket",
            "prefix": "runner-cache",
            "size": "200Gi",
            "build_node_labels": BUILD_LABELS,
        }
        if with_hub:
            args["hub"] = {
                "region": "eu-west-1",
                "access_key_id": pulumi.Output.secret("AKIAHUBEDGEKEY"),
                "secret_access_key": pulumi.Output.secret(HUB_SECRET),
                "replicate": ["build-*-protected"],
                "uplink_mbps": 50,
            }
        args.update(overrides)  # type: ignore[typeddict-item]
        cache = EdgeCache("site", args)
        pulumi.export("endpoint", cache.endpoint)
        pulumi.export("bucket", cache.bucket)
        pulumi.export("path", cache.path)
        pulumi.export("access_key_id", cache.access_key_id)
        pulumi.export("secret_access_key", cache.secret_access_key)

    return run_program(program, region=None, return_error=return_error)


def kinds(run: ProgramRun) -> list[str]:
    return sorted(r.type for r in run.resources if r.type.startswith("kubernetes:"))


def test_an_edge_declares_the_server_its_volume_and_the_push() -> None:
    run = declare()

    assert kinds(run) == [
        "kubernetes:apps/v1:Deployment",
        "kubernetes:batch/v1:CronJob",
        "kubernetes:core/v1:ConfigMap",
        "kubernetes:core/v1:Namespace",
        "kubernetes:core/v1:PersistentVolumeClaim",
        "kubernetes:core/v1:Secret",
        "kubernetes:core/v1:Service",
    ]
    component = run.one("gitlab-runner-fleet:index:EdgeCache")
    for resource in run.resources:
        if resource is not component:
            assert run.descends_from(resource, component), resource.name
    (push,) = run.of_type("kubernetes:batch/v1:CronJob")
    assert push.inputs["metadata"]["name"] == PUSH_JOB


def test_without_a_hub_it_is_a_cache_of_its_own_with_no_push() -> None:
    run = declare(with_hub=False, expire_after="72h")
    server = run.one("kubernetes:apps/v1:Deployment")
    config = run.one("kubernetes:core/v1:ConfigMap").inputs["data"]["rclone.conf"]

    assert run.of_type("kubernetes:batch/v1:CronJob") == []
    assert "[hub]" not in config
    container = containers(server.inputs)["rclone"]
    assert env_names(container) == {
        AUTH_KEY_ENV: CREDENTIALS_SECRET,
        RC_PASS_ENV: CREDENTIALS_SECRET,
    }
    assert "--vfs-cache-mode" not in container["command"]
    # Its store may fill 80% of the volume; the expiry keeps it there.
    assert containers(server.inputs)[EXPIRY_CONTAINER]["command"] == expiry_loop_command(
        expiry_round_command(bucket="hub-bucket", max_bytes=160 * 1024**3, expire_after="72h")
    )


def test_the_objects_it_declares_are_the_validated_manifests(validate_manifest: Validate) -> None:
    run = declare()
    for resource in run.resources:
        if resource.type.startswith("kubernetes:") and resource.type != "kubernetes:core/v1:Secret":
            validate_manifest(resource.inputs)


def secret_values(resource: Registered) -> dict[str, str]:
    data = resource.inputs["stringData"]
    assert is_rpc_secret(data)
    return dict(unwrap_rpc_secret(data))


def test_generated_keys_are_secret_and_only_in_the_secret() -> None:
    run = declare()
    secret = run.one("kubernetes:core/v1:Secret")
    values = secret_values(secret)
    access_key, secret_key = run.outputs["access_key_id"], run.outputs["secret_access_key"]

    assert secret.inputs["metadata"]["name"] == CREDENTIALS_SECRET
    assert values[AUTH_KEY_ENV] == f'"{access_key},{secret_key}"'
    assert values[HUB_SECRET_KEY_ENV] == HUB_SECRET
    rc_password = values[RC_PASS_ENV]
    assert {"access_key_id", "secret_access_key"} <= run.secret_outputs
    # Letters and digits only: the pair travels as CSV in RCLONE_AUTH_KEY.
    lengths = {
        password.name: (password.inputs["length"], password.inputs["special"])
        for password in run.of_type("random:index/randomPassword:RandomPassword")
    }
    assert lengths == {
        "site-access-key": (20, False),
        "site-secret-key": (40, False),
        "site-rc-password": (32, False),
    }
    everything_else = json.dumps([r.inputs for r in run.resources if r is not secret])
    for value in (access_key, secret_key, HUB_SECRET, rc_password):
        assert value not in everything_else


def test_the_server_restarts_when_its_config_or_keys_change() -> None:
    run = declare()
    secret = run.one("kubernetes:core/v1:Secret")
    annotations = run.one("kubernetes:apps/v1:Deployment").inputs["spec"]["template"]["metadata"][
        "annotations"
    ]

    assert (
        annotations["gitlab-runner-fleet/secrets-version"]
        == (secret.state["metadata"]["resourceVersion"])
    )
    assert len(annotations["gitlab-runner-fleet/config-checksum"]) == 64


def test_the_outputs_are_what_the_runner_config_needs() -> None:
    run = declare()

    assert run.outputs["endpoint"] == f"s3.{NAMESPACE}.svc:{SERVE_PORT}"
    assert (run.outputs["bucket"], run.outputs["path"]) == ("hub-bucket", "runner-cache")
    assert run.one("kubernetes:apps/v1:Deployment").inputs["metadata"]["name"] == SERVER_NAME


def test_globs_that_cannot_match_are_refused() -> None:
    run = declare(
        return_error=True,
        hub={
            "region": "eu-west-1",
            "access_key_id": "AKIA",
            "secret_access_key": "secret",
            "replicate": ["build-main"],
            "uplink_mbps": 50,
        },
    )

    assert run.error is not None
    assert "can never match" in str(run.error)


def test_a_malformed_size_is_refused() -> None:
    run = declare(return_error=True, size="200GB")

    assert isinstance(run.error, ValueError)
    assert "quantity" in str(run.error)
    assert run.resources == [] or kinds(run) == []


def test_other_pulumi_languages_get_a_schema_for_it() -> None:
    analyzed = Analyzer("gitlab-runner-fleet").analyze([EdgeCache])
    (definition,) = analyzed["component_definitions"].values()
    assert set(definition.inputs) >= {"bucket", "prefix", "size", "hub"}
    assert set(definition.outputs) == {
        "namespace",
        "endpoint",
        "bucket",
        "path",
        "accessKeyId",
        "secretAccessKey",
    }
