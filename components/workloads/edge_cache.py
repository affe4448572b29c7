"""EdgeCache: a site's S3-compatible runner cache, local writes and read-through from a hub."""

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, Optional, TypedDict

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from ..arguments import check_arguments
from ..build_nodes import keep_off_build_nodes
from ..cache_keys import replicate_problems
from ..conventions import CONFIG_CHECKSUM_ANNOTATION, SECRETS_VERSION_ANNOTATION
from .isolation import unprivileged_container_context
from .rclone import (
    AUTH_KEY_ENV,
    CONFIG_FILE,
    DATA_DIR,
    DEFAULT_EXPIRE_AFTER,
    HUB_ACCESS_KEY_ENV,
    HUB_SECRET_KEY_ENV,
    RC_CLIENT_PASS_ENV,
    RC_PASS_ENV,
    RCLONE_IMAGE,
    RCLONE_UID,
    SERVE_PORT,
    HubLocation,
    auth_key,
    expiry_loop_command,
    expiry_round_command,
    make_store_command,
    push_command,
    quantity_bytes,
    remote_config,
    serve_command,
    volume_plan,
    volume_size_problems,
)
from .runner_config import CacheSpec

DEFAULT_NAMESPACE = "runner-cache"
SERVICE_NAME = "s3"
SERVER_NAME = "runner-cache"
DATA_CLAIM = "runner-cache-data"
CONFIG_MAP = "runner-cache-rclone"
CREDENTIALS_SECRET = "runner-cache-credentials"
PUSH_JOB = "runner-cache-push"
EXPIRY_CONTAINER = "expiry"
"""The server pod's second container: it deletes old objects from the store and tells the server
which (`rclone.expiry_round_command`), every 10 minutes."""
DEFAULT_PUSH_SCHEDULE = "*/5 * * * *"
PUSH_DEADLINE_SECONDS = 6 * 3600
"""A push may run this long: a 40 GiB backlog at 40 Mbit/s takes about 2.4 hours."""
SIGNING_REGION = "us-east-1"
"""The region the runner signs for. `serve s3` accepts any; setting one spares the manager a
GetBucketLocation call (gitlab-runner v19.3.0 `cache/s3v2/s3.go` `detectBucketLocation`)."""
PART_OF = {"app.kubernetes.io/part-of": "gitlab-runner-fleet"}
HOSTNAME_TOPOLOGY = "kubernetes.io/hostname"
ACCESS_KEY_LENGTH = 20
SECRET_KEY_LENGTH = 40
RC_PASSWORD_LENGTH = 32
_CONFIG_VOLUME = "config"
_DATA_VOLUME = "data"
_TMP_VOLUME = "tmp"
_CONFIG_DIR = CONFIG_FILE.rsplit("/", 1)[0]


class EdgeHub(TypedDict):
    """The hub an edge cache reads through and pushes to, from the hub stack's outputs."""

    region: pulumi.Input[str]
    """Region of the hub's cache bucket."""
    access_key_id: pulumi.Input[str]
    """The hub's credential for this edge (`EdgeAccess`); pass a Pulumi secret."""
    secret_access_key: pulumi.Input[str]
    """Its secret key; pass a Pulumi secret."""
    replicate: pulumi.Input[list[str]]
    """Cache key globs pushed to the hub, the ones the hub's credential may write (see
    `cache_keys.replicate_problems`; a plain list is checked here, the hub checks its own)."""
    uplink_mbps: float
    """The site's uplink in megabits per second; the push uses 80% of it."""
    endpoint: NotRequired[pulumi.Input[str]]
    """The hub's S3 endpoint URL. Default: AWS S3 in `region`."""
    path_style: NotRequired[pulumi.Input[bool]]
    """Path-style requests to `endpoint` (S3-compatible hubs). Default false."""
    push_schedule: NotRequired[str]
    """Cron schedule of the push. Default every 5 minutes."""


class EdgeCacheArgs(TypedDict):
    """Inputs of EdgeCache."""

    bucket: pulumi.Input[str]
    """Bucket name the cache serves: the hub's bucket name for an edge, any valid name without
    a hub. The runner's `BucketName`."""
    prefix: pulumi.Input[str]
    """The runner's `[runners.cache] Path`: the hub's prefix for an edge."""
    size: str
    """Size of the cache volume, a Kubernetes quantity such as `200Gi`. With a hub, 30% of it is
    rclone's VFS cache (objects read from the hub, and a second copy of recent uploads) and 50%
    the local store; without one, 80% the store. The expiry keeps the store under its share,
    oldest objects first; the rest is headroom (`rclone.volume_plan`)."""
    hub: NotRequired[Optional[EdgeHub]]
    """The hub to read through and push to. None: an in-cluster cache of its own."""
    namespace: NotRequired[str]
    """Namespace the cache runs in (created). Default `runner-cache`."""
    storage_class_name: NotRequired[Optional[str]]
    """Storage class of the volume (ReadWriteOnce). Default: the cluster's default class."""
    expire_after: NotRequired[str]
    """Age at which local objects are deleted, an rclone duration. Default `168h`."""
    build_node_labels: NotRequired[list[dict[str, str]]]
    """Labels of every build node pool: the cache keeps off those nodes (spot capacity too)."""


def server_labels() -> dict[str, str]:
    """Labels of the server pod; the Service and the jobs' pod affinity select them."""
    return {"app.kubernetes.io/name": "rclone", "app.kubernetes.io/component": SERVER_NAME}


def _job_labels(job: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "rclone", "app.kubernetes.io/component": job}


def service_endpoint(namespace: str) -> str:
    """The runner's `ServerAddress` (`host:port`): the Service, from any namespace."""
    return f"{SERVICE_NAME}.{namespace}.svc:{SERVE_PORT}"


def runner_cache_spec(endpoint: str, bucket: str, path: str) -> CacheSpec:
    """`[runners.cache]` pointing at the site cache. The keys come from the cache Secret.

    `Shared = true`: without it objects live under `runner/<token>/` (gitlab-runner v19.3.0
    `cache/cache.go`), and no other runner, let alone another site's, would find them.
    """
    return {
        "Type": "s3",
        "Path": path,
        "Shared": True,
        "s3": {
            "ServerAddress": endpoint,
            "BucketName": bucket,
            "BucketLocation": SIGNING_REGION,
            "AuthenticationType": "access-key",
            # In-cluster plain HTTP; the keys still sign every request.
            "Insecure": True,
            "PathStyle": True,
        },
    }


def namespace_manifest(namespace: str) -> dict[str, Any]:
    """The cache's namespace; every pod in it meets the `restricted` Pod Security Standard."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": namespace,
            "labels": {
                **PART_OF,
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/warn": "restricted",
            },
        },
    }


def claim_manifest(namespace: str, size: str, storage_class_name: Optional[str]) -> dict[str, Any]:
    """The volume of the store and the VFS cache. ReadWriteOnce: the push job runs on the
    server's node (pod affinity), where it can mount it too."""
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
    }
    if storage_class_name:
        spec["storageClassName"] = storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": DATA_CLAIM, "namespace": namespace, "labels": dict(PART_OF)},
        "spec": spec,
    }


def config_map_manifest(namespace: str, config: str) -> dict[str, Any]:
    """rclone.conf (no secrets in it)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIG_MAP, "namespace": namespace, "labels": dict(PART_OF)},
        "data": {CONFIG_FILE.rsplit("/", 1)[1]: config},
    }


def service_manifest(namespace: str) -> dict[str, Any]:
    """The S3 endpoint job pods reach (`service_endpoint`)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE_NAME, "namespace": namespace, "labels": dict(PART_OF)},
        "spec": {
            "selector": server_labels(),
            "ports": [{"name": "s3", "port": SERVE_PORT, "targetPort": "s3"}],
        },
    }


def config_checksum(config: str) -> str:
    """SHA-256 of rclone.conf, for the pod annotation that restarts the server on a change."""
    return hashlib.sha256(config.encode()).hexdigest()


def _secret_env(keys: Mapping[str, str]) -> list[dict[str, Any]]:
    """Environment variables (name: key) from the credentials Secret's keys."""
    return [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": CREDENTIALS_SECRET, "key": key}}}
        for name, key in keys.items()
    ]


def _container(
    name: str, command: list[str], env: Mapping[str, str], *, data_read_only: bool
) -> dict[str, Any]:
    return {
        "name": name,
        "image": RCLONE_IMAGE,
        "command": command,
        "env": _secret_env(env),
        "volumeMounts": [
            {"name": _DATA_VOLUME, "mountPath": DATA_DIR, "readOnly": data_read_only},
            {"name": _CONFIG_VOLUME, "mountPath": _CONFIG_DIR, "readOnly": True},
            {"name": _TMP_VOLUME, "mountPath": "/tmp"},
        ],
        "securityContext": unprivileged_container_context(),
    }


def _pod_spec(
    containers: list[dict[str, Any]],
    affinity: dict[str, Any],
    *,
    data_read_only: bool,
    init_containers: Optional[list[dict[str, Any]]] = None,
    restart_policy: Optional[str] = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RCLONE_UID,
            "runAsGroup": RCLONE_UID,
            "fsGroup": RCLONE_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "automountServiceAccountToken": False,
        "containers": containers,
        "volumes": [
            {
                "name": _DATA_VOLUME,
                "persistentVolumeClaim": {"claimName": DATA_CLAIM, "readOnly": data_read_only},
            },
            {"name": _CONFIG_VOLUME, "configMap": {"name": CONFIG_MAP}},
            {"name": _TMP_VOLUME, "emptyDir": {}},
        ],
    }
    if affinity:
        spec["affinity"] = affinity
    if init_containers:
        spec["initContainers"] = init_containers
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    return spec


def deployment_manifest(
    namespace: str,
    *,
    bucket: str,
    prefix: str,
    has_hub: bool,
    size: str,
    config: str,
    secrets_version: str,
    expire_after: str = DEFAULT_EXPIRE_AFTER,
    build_node_labels: Sequence[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """The server: one replica (one writer of the volume and its VFS cache), replaced with
    `Recreate` so the old pod lets go of the ReadWriteOnce volume first. Beside it in the pod,
    the expiry: it deletes local objects older than `expire_after`, then the oldest ones above
    the store's share of the volume, and names them to the server through its remote control
    on the pod's loopback, so the server answers 404 for them at once rather than a cut-off 200
    from its listing (`rclone.expiry_round_command`). Directories stay
    (`rclone.runner_objects_dir`)."""
    server_env = [AUTH_KEY_ENV, RC_PASS_ENV]
    if has_hub:
        server_env += [HUB_ACCESS_KEY_ENV, HUB_SECRET_KEY_ENV]
    server = _container(
        "rclone",
        serve_command(hub=has_hub, cache_size_bytes=quantity_bytes(size)),
        {name: name for name in server_env},
        data_read_only=False,
    )
    server["ports"] = [{"name": "s3", "containerPort": SERVE_PORT}]
    probe = {"tcpSocket": {"port": "s3"}, "periodSeconds": 10}
    server["readinessProbe"] = probe
    server["livenessProbe"] = {**probe, "failureThreshold": 6}
    server["resources"] = {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"memory": "1Gi"},
    }
    store_bytes = volume_plan(quantity_bytes(size), has_hub=has_hub).store_bytes
    expiry = _container(
        EXPIRY_CONTAINER,
        expiry_loop_command(
            expiry_round_command(bucket=bucket, max_bytes=store_bytes, expire_after=expire_after)
        ),
        {RC_CLIENT_PASS_ENV: RC_PASS_ENV},
        data_read_only=False,
    )
    expiry["resources"] = {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"memory": "512Mi"},
    }
    make_store = _container(
        "store", make_store_command(bucket=bucket, prefix=prefix), {}, data_read_only=False
    )
    affinity = keep_off_build_nodes(build_node_labels) if build_node_labels else {}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": SERVER_NAME, "namespace": namespace, "labels": dict(PART_OF)},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": server_labels()},
            "template": {
                "metadata": {
                    "labels": {**server_labels(), **PART_OF},
                    "annotations": {
                        CONFIG_CHECKSUM_ANNOTATION: config_checksum(config),
                        SECRETS_VERSION_ANNOTATION: secrets_version,
                    },
                },
                "spec": _pod_spec(
                    [server, expiry], affinity, data_read_only=False, init_containers=[make_store]
                ),
            },
        },
    }


def _beside_server(build_node_labels: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    affinity: dict[str, Any] = {
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": server_labels()},
                    "topologyKey": HOSTNAME_TOPOLOGY,
                }
            ]
        }
    }
    if build_node_labels:
        affinity.update(keep_off_build_nodes(build_node_labels))
    return affinity


def cron_job_manifest(
    namespace: str,
    name: str,
    *,
    schedule: str,
    container: str,
    command: list[str],
    env_names: Sequence[str],
    data_read_only: bool,
    deadline_seconds: int,
    build_node_labels: Sequence[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """A job beside the server, on its node, with the volume: never two at once."""
    job = {
        **_container(
            container, command, {key: key for key in env_names}, data_read_only=data_read_only
        ),
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"memory": "512Mi"},
        },
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(PART_OF)},
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 300,
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 0,
                    "activeDeadlineSeconds": deadline_seconds,
                    "template": {
                        "metadata": {"labels": {**_job_labels(name), **PART_OF}},
                        "spec": _pod_spec(
                            [job],
                            _beside_server(build_node_labels),
                            data_read_only=data_read_only,
                            restart_policy="Never",
                        ),
                    },
                }
            },
        },
    }


def push_cron_job_manifest(
    namespace: str,
    *,
    bucket: str,
    prefix: str,
    replicate: Sequence[str],
    uplink_mbps: float,
    schedule: str = DEFAULT_PUSH_SCHEDULE,
    build_node_labels: Sequence[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """Pushes the replicated objects to the hub; reads the volume only."""
    return cron_job_manifest(
        namespace,
        PUSH_JOB,
        schedule=schedule,
        container="push",
        command=push_command(
            bucket=bucket, prefix=prefix, replicate=replicate, uplink_mbps=uplink_mbps
        ),
        env_names=[HUB_ACCESS_KEY_ENV, HUB_SECRET_KEY_ENV],
        data_read_only=True,
        deadline_seconds=PUSH_DEADLINE_SECONDS,
        build_node_labels=build_node_labels,
    )


def _field(document: pulumi.Output[Mapping[str, Any]], field: str) -> pulumi.Output[Any]:
    return document.apply(lambda values: values[field])


def _argument_problems(args: EdgeCacheArgs) -> list[str]:
    problems = [f"size: {problem}" for problem in volume_size_problems(args["size"])]
    hub = args.get("hub")
    # Globs from a hub stack's outputs are Outputs, checked where the hub declared them.
    globs = hub["replicate"] if hub is not None else []
    if isinstance(globs, list):
        problems += [f"hub.replicate: {problem}" for problem in replicate_problems(globs)]
    return problems


class EdgeCache(pulumi.ComponentResource):
    """An S3-compatible runner cache inside the cluster, served by `rclone serve s3`.

    With a hub (an edge site): writes land on the site's volume and are acknowledged there; a
    read that misses locally is fetched once from the hub's cache and kept; a CronJob pushes
    only the replicated keys to the hub within 80% of the uplink; a container beside the server
    deletes old local objects. Without a hub: the same server over its volume, a cache for a
    cluster that has no object store. Either way the endpoint requires generated keys (never
    anonymous). Works on any cluster: pass its Kubernetes provider in `opts.providers`.
    """

    namespace: pulumi.Output[str]
    """Namespace of the cache."""
    endpoint: pulumi.Output[str]
    """The runner's `ServerAddress`: the in-cluster Service as `host:port` (plain HTTP)."""
    bucket: pulumi.Output[str]
    """The runner's `BucketName`."""
    path: pulumi.Output[str]
    """The runner's `Path`."""
    access_key_id: pulumi.Output[str]
    """Access key of the endpoint; secret."""
    secret_access_key: pulumi.Output[str]
    """Secret key of the endpoint; secret."""

    def __init__(
        self, name: str, args: EdgeCacheArgs, opts: Optional[pulumi.ResourceOptions] = None
    ) -> None:
        check_arguments("EdgeCache", name, args, EdgeCacheArgs, lambda: _argument_problems(args))
        super().__init__("gitlab-runner-fleet:index:EdgeCache", name, None, opts)
        namespace_name = args.get("namespace", DEFAULT_NAMESPACE)
        size = args["size"]
        hub = args.get("hub")
        build_node_labels = args.get("build_node_labels", [])
        bucket = pulumi.Output.from_input(args["bucket"])
        prefix = pulumi.Output.from_input(args["prefix"])

        namespace = k8s.core.v1.Namespace(
            name,
            metadata=namespace_manifest(namespace_name)["metadata"],
            opts=pulumi.ResourceOptions(parent=self),
        )
        namespace_output = namespace.metadata.apply(lambda meta: str(meta.name))
        access_key, secret_key = self._create_keys(name)
        rc_password = random.RandomPassword(
            f"{name}-rc-password",
            length=RC_PASSWORD_LENGTH,
            special=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        secret = self._create_secret(
            name,
            namespace_output,
            access_key=access_key,
            secret_key=secret_key,
            rc_password=rc_password,
            hub=hub,
        )
        secrets_version = secret.metadata.apply(lambda meta: str(meta.resource_version))

        config = self._config(bucket, prefix, hub)
        config_map = self._declare(
            f"{name}-config",
            k8s.core.v1.ConfigMap,
            config.apply(lambda text: config_map_manifest(namespace_name, text)),
            ("metadata", "data"),
            [namespace],
        )
        claim = self._declare(
            f"{name}-data",
            k8s.core.v1.PersistentVolumeClaim,
            claim_manifest(namespace_name, size, args.get("storage_class_name")),
            ("metadata", "spec"),
            [namespace],
        )
        self._declare(
            f"{name}-service",
            k8s.core.v1.Service,
            service_manifest(namespace_name),
            ("metadata", "spec"),
            [namespace],
        )
        server = self._declare(
            f"{name}-server",
            k8s.apps.v1.Deployment,
            pulumi.Output.all(bucket, prefix, config, secrets_version).apply(
                lambda values: deployment_manifest(
                    namespace_name,
                    bucket=values[0],
                    prefix=values[1],
                    has_hub=hub is not None,
                    size=size,
                    config=values[2],
                    secrets_version=values[3],
                    expire_after=args.get("expire_after", DEFAULT_EXPIRE_AFTER),
                    build_node_labels=build_node_labels,
                )
            ),
            ("metadata", "spec"),
            [config_map, claim, secret],
        )
        if hub is not None:
            replicate = pulumi.Output.from_input(hub["replicate"])
            self._declare(
                f"{name}-push",
                k8s.batch.v1.CronJob,
                pulumi.Output.all(bucket, prefix, replicate).apply(
                    lambda values: push_cron_job_manifest(
                        namespace_name,
                        bucket=values[0],
                        prefix=values[1],
                        replicate=values[2],
                        uplink_mbps=hub["uplink_mbps"],
                        schedule=hub.get("push_schedule", DEFAULT_PUSH_SCHEDULE),
                        build_node_labels=build_node_labels,
                    )
                ),
                ("metadata", "spec"),
                # The push mounts the volume on the server's node: declared after the server.
                [server, config_map, claim, secret],
            )

        self.namespace = namespace_output
        self.endpoint = namespace_output.apply(service_endpoint)
        self.bucket = bucket
        self.path = prefix
        self.access_key_id = pulumi.Output.secret(access_key.result)
        self.secret_access_key = pulumi.Output.secret(secret_key.result)
        self.register_outputs(
            {
                "namespace": self.namespace,
                "endpoint": self.endpoint,
                "bucket": self.bucket,
                "path": self.path,
                "access_key_id": self.access_key_id,
                "secret_access_key": self.secret_access_key,
            }
        )

    def _config(
        self, bucket: pulumi.Output[str], prefix: pulumi.Output[str], hub: Optional[EdgeHub]
    ) -> pulumi.Output[str]:
        if hub is None:
            return pulumi.Output.all(bucket, prefix).apply(
                lambda values: remote_config(values[0], values[1], None)
            )
        return pulumi.Output.all(
            bucket, prefix, hub["region"], hub.get("endpoint", ""), hub.get("path_style", False)
        ).apply(
            lambda values: remote_config(
                values[0],
                values[1],
                HubLocation(region=values[2], endpoint=values[3] or "", path_style=bool(values[4])),
            )
        )

    def _create_keys(self, name: str) -> tuple[random.RandomPassword, random.RandomPassword]:
        # Letters and digits only: the pair travels as CSV in RCLONE_AUTH_KEY.
        access_key = random.RandomPassword(
            f"{name}-access-key",
            length=ACCESS_KEY_LENGTH,
            special=False,
            lower=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        secret_key = random.RandomPassword(
            f"{name}-secret-key",
            length=SECRET_KEY_LENGTH,
            special=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return access_key, secret_key

    def _create_secret(
        self,
        name: str,
        namespace: pulumi.Output[str],
        *,
        access_key: random.RandomPassword,
        secret_key: random.RandomPassword,
        rc_password: random.RandomPassword,
        hub: Optional[EdgeHub],
    ) -> k8s.core.v1.Secret:
        data: dict[str, pulumi.Input[str]] = {
            AUTH_KEY_ENV: pulumi.Output.all(access_key.result, secret_key.result).apply(
                lambda keys: auth_key(keys[0], keys[1])
            ),
            RC_PASS_ENV: rc_password.result,
        }
        if hub is not None:
            data[HUB_ACCESS_KEY_ENV] = hub["access_key_id"]
            data[HUB_SECRET_KEY_ENV] = hub["secret_access_key"]
        return k8s.core.v1.Secret(
            f"{name}-credentials",
            metadata={"name": CREDENTIALS_SECRET, "namespace": namespace, "labels": dict(PART_OF)},
            type="Opaque",
            string_data={key: pulumi.Output.secret(value) for key, value in data.items()},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _declare(
        self,
        name: str,
        kind: Any,
        manifest: pulumi.Input[Mapping[str, Any]],
        fields: Sequence[str],
        depends_on: Sequence[pulumi.Resource],
    ) -> Any:
        """Declares one Kubernetes object from `fields` of its manifest (a dict or an Output)."""
        document = pulumi.Output.from_input(manifest)
        return kind(
            name,
            **{field: _field(document, field) for field in fields},
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )
