"""RegistryMirror: an in-cluster pull-through cache of Docker Hub for nodes and Docker-in-Docker."""

import hashlib
import ipaddress
from typing import Any, NotRequired, Optional, TypedDict, cast

import pulumi
import pulumi_kubernetes as k8s

from ..arguments import check_arguments
from ..conventions import (
    CONFIG_CHECKSUM_ANNOTATION,
    IRSA_ROLE_ANNOTATION,
    SECRETS_VERSION_ANNOTATION,
)
from .isolation import place_pod, unprivileged_container_context
from .mirror_config import (
    CONFIG_DIRECTORY,
    CONFIG_FILE,
    DAEMON_CONFIG_MAP,
    DAEMON_JSON_KEY,
    DEFAULT_EXPIRATION_DAYS,
    DOCKER_HUB_URL,
    HEALTH_PATH,
    MIRROR_PORT,
    REGISTRY_IMAGE,
    STORAGE_ACCESS_KEY_KEY,
    STORAGE_SECRET_KEY_KEY,
    UPSTREAM_PASSWORD_KEY,
    UPSTREAM_USERNAME_KEY,
    MirrorStorage,
    S3Storage,
    credential_environment,
    daemon_json,
    expiry_command,
    expiry_environment,
    filesystem_size_limit,
    mirror_url,
    render_distribution_config,
    storage_problems,
)
from .rclone import RCLONE_IMAGE, RCLONE_UID

DEFAULT_NAMESPACE = "registry-mirror"
DEFAULT_REPLICAS = 2
DEFAULT_CLUSTER_DOMAIN = "cluster.local"
SERVICE_NAME = "registry-mirror"
CREDENTIALS_SECRET = "registry-mirror-credentials"
EXPIRY_JOB = "registry-mirror-expire"
EXPIRY_SCHEDULE = "43 * * * *"
EXPIRY_DEADLINE_SECONDS = 3600
# `nobody` in the Alpine-based image; the registry needs no privileges and writes nowhere but
# its storage.
RUN_AS_USER = 65534
# Blob storage for a filesystem-backed replica, when its storage is not S3.
STORAGE_VOLUME = "storage"
DEFAULT_RESOURCES: "MirrorResources" = {
    "cpu_request": "100m",
    "memory_request": "128Mi",
    "memory_limit": "512Mi",
}


class UpstreamCredentials(TypedDict):
    """A Docker Hub account the mirror pulls as (raises its pull rate limit)."""

    username: pulumi.Input[str]
    """Docker Hub user name."""
    password: pulumi.Input[str]
    """Its password or, better, a read-only personal access token; pass a Pulumi secret."""


class StorageKeys(TypedDict):
    """Static keys for an S3-compatible store (on EKS use an IRSA role instead)."""

    access_key_id: pulumi.Input[str]
    """Access key id; pass a Pulumi secret."""
    secret_access_key: pulumi.Input[str]
    """Secret access key; pass a Pulumi secret."""


class MirrorResources(TypedDict):
    """Requests and limits of the registry container."""

    cpu_request: str
    """CPU request, e.g. `100m`."""
    memory_request: str
    """Memory request, e.g. `128Mi`."""
    memory_limit: str
    """Memory limit, e.g. `512Mi`."""


def expiry_kind(storage: MirrorStorage, *, lifecycle_rule: bool) -> str:
    """Who deletes what the mirror fetched once it is `expiration_days` old: the bucket's
    `lifecycle rule`, the component's `expiry job` (an S3-compatible store), or the `registry`
    itself (a directory per replica, `proxy.ttl`)."""
    if "filesystem" in storage:
        return "registry"
    return "lifecycle rule" if lifecycle_rule else "expiry job"


def mirror_problems(
    storage: MirrorStorage,
    *,
    replicas: int,
    cluster_ip: Optional[str],
    has_storage_keys: bool,
    has_role: bool,
    lifecycle_rule: bool = False,
    expiration_days: int = DEFAULT_EXPIRATION_DAYS,
) -> list[str]:
    """Why these arguments cannot make a mirror; empty when they can."""
    problems = [f"storage: {problem}" for problem in storage_problems(storage)]
    if expiration_days < 1:
        problems.append(f"expiration_days must be at least 1, got {expiration_days}")
    if lifecycle_rule and "s3" not in storage:
        problems.append("lifecycle_rule only applies to s3 storage")
    if "s3" in storage and not lifecycle_rule and not has_storage_keys:
        problems.append(
            "s3 storage needs something that expires the mirror's prefix, or it grows without "
            "bound: set lifecycle_rule to true once the bucket has a lifecycle rule on the "
            "prefix (CacheBucket's other_prefixes creates one), or give storage_keys, with which "
            "an hourly CronJob deletes what is older than expiration_days"
        )
    if replicas < 1:
        problems.append(f"replicas must be >= 1, got {replicas}")
    if cluster_ip is not None:
        try:
            ipaddress.ip_address(cluster_ip)
        except ValueError:
            problems.append(f"cluster_ip must be an IP address, got {cluster_ip!r}")
    if "s3" not in storage and (has_storage_keys or has_role):
        problems.append("storage keys and an IRSA role only apply to s3 storage")
    if has_storage_keys and has_role:
        problems.append(
            "give either storage keys (S3-compatible stores) or an IRSA role (AWS S3), not both: "
            "static keys would shadow the role"
        )
    return problems


def storage_description(storage: MirrorStorage) -> str:
    """Where the mirror keeps its cache, for the status line."""
    if s3 := storage.get("s3"):
        location = f"s3://{s3['bucket']}/{s3['prefix']}"
        return f"{location} at {s3['endpoint']}" if "endpoint" in s3 else location
    filesystem = storage["filesystem"]
    size_limit = filesystem_size_limit(filesystem)
    return f"emptyDir {filesystem['root_directory']} per replica, up to {size_limit}"


def pod_labels() -> dict[str, str]:
    """Labels of the mirror's pods; the Service, PodDisruptionBudget and spreading select them."""
    return {
        "app.kubernetes.io/name": "registry-mirror",
        "app.kubernetes.io/component": "pull-through-cache",
        "app.kubernetes.io/part-of": "gitlab-runner-fleet",
    }


def _spread(topology_key: str) -> dict[str, Any]:
    return {
        "maxSkew": 1,
        "topologyKey": topology_key,
        # A preference: a zone or node short of room must not keep the mirror from starting.
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": pod_labels()},
    }


def deployment_spec(
    *,
    storage: MirrorStorage,
    replicas: int,
    image: str,
    config_map: str,
    service_account: str,
    resources: MirrorResources,
    credentials_secret: Optional[str],
    has_upstream_credentials: bool,
    has_storage_keys: bool,
    pod_annotations: dict[str, str],
    affinity: Optional[dict[str, Any]],
    node_selector: Optional[dict[str, str]],
    tolerations: Optional[list[dict[str, str]]],
) -> dict[str, Any]:
    """The mirror Deployment's spec, in Kubernetes API form."""
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": config_map}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIRECTORY, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    requests: dict[str, str] = {
        "cpu": resources["cpu_request"],
        "memory": resources["memory_request"],
    }
    if filesystem := storage.get("filesystem"):
        # The kubelet evicts a pod whose emptyDir outgrows its sizeLimit (eviction_manager.go,
        # emptyDirLimitEviction); the Deployment starts the replica again with an empty cache.
        # The request makes the scheduler keep that much of the node's disk for it.
        size_limit = filesystem_size_limit(filesystem)
        volumes.append({"name": STORAGE_VOLUME, "emptyDir": {"sizeLimit": size_limit}})
        mounts.append({"name": STORAGE_VOLUME, "mountPath": filesystem["root_directory"]})
        requests["ephemeral-storage"] = size_limit
    container: dict[str, Any] = {
        "name": "registry",
        "image": image,
        "args": [f"{CONFIG_DIRECTORY}/{CONFIG_FILE}"],
        "ports": [{"name": "http", "containerPort": MIRROR_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": HEALTH_PATH, "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        # Only a hung process is restarted: a failing storage health check makes /v2/ answer 503,
        # which takes the pod out of the Service, while containerd falls back to Docker Hub.
        "livenessProbe": {
            "tcpSocket": {"port": "http"},
            "initialDelaySeconds": 10,
            "periodSeconds": 20,
            "failureThreshold": 3,
        },
        "resources": {"requests": requests, "limits": {"memory": resources["memory_limit"]}},
        "securityContext": unprivileged_container_context(),
        "volumeMounts": mounts,
    }
    if credentials_secret:
        container["env"] = credential_environment(
            credentials_secret,
            upstream_credentials=has_upstream_credentials,
            storage_keys=has_storage_keys,
        )
    pod_spec: dict[str, Any] = {
        "serviceAccountName": service_account,
        # The registry never calls the Kubernetes API; IRSA mounts its own token.
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
        "topologySpreadConstraints": [
            _spread("topology.kubernetes.io/zone"),
            _spread("kubernetes.io/hostname"),
        ],
    }
    place_pod(pod_spec, affinity, node_selector, tolerations)
    return {
        "replicas": replicas,
        "selector": {"matchLabels": pod_labels()},
        # A new pod is ready before an old one goes: the mirror never drops to zero on a rollout.
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        },
        "template": {
            "metadata": {"labels": pod_labels(), "annotations": pod_annotations},
            "spec": pod_spec,
        },
    }


def service_spec(cluster_ip: Optional[str]) -> dict[str, Any]:
    """The mirror Service; a fixed `cluster_ip` is the address build nodes' containerd uses."""
    spec: dict[str, Any] = {
        "type": "ClusterIP",
        "selector": pod_labels(),
        "ports": [{"name": "http", "port": MIRROR_PORT, "targetPort": "http", "protocol": "TCP"}],
    }
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return spec


def disruption_budget_spec(replicas: int) -> Optional[dict[str, Any]]:
    """One replica may be voluntarily disrupted at a time; none with a single replica, whose
    budget would block every node drain (and cluster-autoscaler's scale-down) for good."""
    if replicas < 2:
        return None
    return {"maxUnavailable": 1, "selector": {"matchLabels": pod_labels()}}


def expiry_cron_job_spec(
    *,
    storage: S3Storage,
    expiration_days: int,
    credentials_secret: str,
    affinity: Optional[dict[str, Any]],
    node_selector: Optional[dict[str, str]],
    tolerations: Optional[list[dict[str, str]]],
) -> dict[str, Any]:
    """The hourly job that expires the mirror's prefix on an S3-compatible store
    (`mirror_config.expiry_command`), as the bucket's lifecycle rule does on AWS S3. It meets
    the `restricted` Pod Security Standard of the mirror's namespace."""
    container = {
        "name": "expire",
        "image": RCLONE_IMAGE,
        "command": expiry_command(storage, expiration_days),
        "env": [
            {"name": "HOME", "value": "/tmp"},
            *expiry_environment(storage, credentials_secret),
        ],
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        },
        "securityContext": unprivileged_container_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RCLONE_UID,
            "runAsGroup": RCLONE_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    place_pod(pod_spec, affinity, node_selector, tolerations)
    return {
        "schedule": EXPIRY_SCHEDULE,
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": 600,
        "successfulJobsHistoryLimit": 1,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {
            "spec": {
                "backoffLimit": 0,
                "activeDeadlineSeconds": EXPIRY_DEADLINE_SECONDS,
                "template": {"metadata": {"labels": expiry_labels()}, "spec": pod_spec},
            }
        },
    }


def expiry_labels() -> dict[str, str]:
    """Labels of the expiry job's pods (not the mirror's: the Service must not select them)."""
    return {
        "app.kubernetes.io/name": "registry-mirror",
        "app.kubernetes.io/component": "expiry",
        "app.kubernetes.io/part-of": "gitlab-runner-fleet",
    }


def status_line(
    *,
    replicas: int,
    image: str,
    storage: MirrorStorage,
    url: str,
    node_url: Optional[str],
    authenticated: bool,
    expiry: str = "registry",
    expiration_days: int = DEFAULT_EXPIRATION_DAYS,
) -> str:
    """One line for the stack outputs: what the mirror is, where, and how nodes reach it."""
    nodes = f"nodes use {node_url}" if node_url else "nodes not configured (no cluster_ip)"
    upstream = "authenticated" if authenticated else "anonymous"
    return (
        f"{replicas}x {image} mirroring {DOCKER_HUB_URL} ({upstream}) at {url}; {nodes}; "
        f"cache in {storage_description(storage)}, expired after {expiration_days} days by "
        f"the {expiry}"
    )


class RegistryMirrorArgs(TypedDict):
    """Inputs of RegistryMirror."""

    storage: MirrorStorage
    """Where pulled images are kept: `{"s3": {...}}` (shared by replicas) or
    `{"filesystem": {"root_directory": ...}}` (an emptyDir per replica)."""
    job_namespaces: list[pulumi.Input[str]]
    """Namespaces of the job pods; each gets the `docker-daemon-config` ConfigMap (daemon.json).
    Pass the runner's namespace output so the ConfigMap waits for the namespace."""
    namespace: NotRequired[str]
    """Namespace the component creates for the mirror. Default `registry-mirror`."""
    replicas: NotRequired[int]
    """Replicas of the registry. Default 2 (with a PodDisruptionBudget)."""
    cluster_ip: NotRequired[Optional[str]]
    """A fixed, free ClusterIP in the cluster's service range (its low, static band), which
    build nodes' containerd can reach without cluster DNS. Without it nodes are not mirrored."""
    cluster_domain: NotRequired[str]
    """The cluster's DNS domain. Default `cluster.local`."""
    service_account_role_arn: NotRequired[Optional[pulumi.Input[str]]]
    """IRSA role for the mirror's service account (S3 storage on EKS)."""
    upstream_credentials: NotRequired[UpstreamCredentials]
    """Docker Hub account to pull as; anonymous without."""
    storage_keys: NotRequired[StorageKeys]
    """Static keys for an S3-compatible store."""
    affinity: NotRequired[dict[str, Any]]
    """Pod affinity in Kubernetes API form, e.g. one that keeps the mirror off spot build nodes."""
    node_selector: NotRequired[dict[str, str]]
    """Node selector of the mirror's pods."""
    tolerations: NotRequired[list[dict[str, str]]]
    """Tolerations of the mirror's pods (Kubernetes API form)."""
    resources: NotRequired[MirrorResources]
    """Requests and limits. Default 100m CPU, 128Mi memory, limit 512Mi."""
    image: NotRequired[str]
    """Registry image. Default `registry:3.1.1`."""
    expiration_days: NotRequired[int]
    """Days after which what the mirror fetched is deleted (fetched again on the next pull).
    Filesystem storage: the registry's own expiry (`proxy.ttl`). S3 storage: the bucket's
    lifecycle rule (`lifecycle_rule`), or else an hourly CronJob that deletes older objects
    under the prefix with `storage_keys`. Default 30."""
    lifecycle_rule: NotRequired[bool]
    """The bucket has a lifecycle rule that expires the prefix after `expiration_days` (on AWS,
    CacheBucket's `other_prefixes`): no expiry job. Default false."""


def _argument_problems(args: RegistryMirrorArgs) -> list[str]:
    return mirror_problems(
        args["storage"],
        replicas=args.get("replicas", DEFAULT_REPLICAS),
        cluster_ip=args.get("cluster_ip"),
        has_storage_keys=args.get("storage_keys") is not None,
        has_role=args.get("service_account_role_arn") is not None,
        lifecycle_rule=args.get("lifecycle_rule", False),
        expiration_days=args.get("expiration_days", DEFAULT_EXPIRATION_DAYS),
    )


class RegistryMirror(pulumi.ComponentResource):
    """A CNCF Distribution registry caching Docker Hub for the whole cluster.

    Its namespace, service account (optionally IRSA), config.yml, credentials Secret, Deployment,
    Service (optionally on a fixed ClusterIP for the nodes), PodDisruptionBudget with two or more
    replicas, a daemon.json ConfigMap in every job namespace for Docker-in-Docker, and on an
    S3-compatible store without a lifecycle rule a CronJob that expires the mirror's prefix.
    Pass the cluster's Kubernetes provider in `opts.providers`.
    """

    namespace: pulumi.Output[str]
    """Namespace of the mirror."""
    url: pulumi.Output[str]
    """The mirror's URL for pods (dockerd in Docker-in-Docker)."""
    node_url: pulumi.Output[Optional[str]]
    """The mirror's URL for containerd on the nodes (fixed ClusterIP); None without cluster_ip."""
    daemon_config_map: pulumi.Output[str]
    """Name of the daemon.json ConfigMap in each job namespace."""
    status: pulumi.Output[str]
    """One line describing the mirror, for stack outputs."""

    def __init__(
        self, name: str, args: RegistryMirrorArgs, opts: Optional[pulumi.ResourceOptions] = None
    ) -> None:
        check_arguments(
            "RegistryMirror", name, args, RegistryMirrorArgs, lambda: _argument_problems(args)
        )
        super().__init__("gitlab-runner-fleet:index:RegistryMirror", name, None, opts)
        storage = args["storage"]
        replicas = args.get("replicas", DEFAULT_REPLICAS)
        cluster_ip = args.get("cluster_ip")
        upstream = args.get("upstream_credentials")
        storage_keys = args.get("storage_keys")
        expiration_days = args.get("expiration_days", DEFAULT_EXPIRATION_DAYS)
        image = args.get("image", REGISTRY_IMAGE)
        namespace = args.get("namespace", DEFAULT_NAMESPACE)
        domain = args.get("cluster_domain", DEFAULT_CLUSTER_DOMAIN)
        dns_url = mirror_url(f"{SERVICE_NAME}.{namespace}.svc.{domain}")
        node_url = mirror_url(cluster_ip) if cluster_ip else None
        # One address for everything when the IP is fixed; job pods could use the DNS name too.
        pod_url = node_url or dns_url

        namespace_resource = k8s.core.v1.Namespace(
            name,
            metadata={
                "name": namespace,
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        namespace_name = namespace_resource.metadata.apply(lambda meta: str(meta.name))
        service_account = self._create_service_account(
            name, namespace_name, args.get("service_account_role_arn")
        )
        config_text = render_distribution_config(storage, expiration_days=expiration_days)
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata={"name": f"{SERVICE_NAME}-config", "namespace": namespace_name},
            data={CONFIG_FILE: config_text},
            opts=pulumi.ResourceOptions(parent=self),
        )
        annotations: dict[str, pulumi.Input[str]] = {
            CONFIG_CHECKSUM_ANNOTATION: hashlib.sha256(config_text.encode()).hexdigest()
        }
        secret_name: Optional[str] = None
        secret: Optional[k8s.core.v1.Secret] = None
        depends_on: list[pulumi.Resource] = [config_map, service_account]
        if upstream or storage_keys:
            secret = self._create_credentials_secret(name, namespace_name, upstream, storage_keys)
            secret_name = CREDENTIALS_SECRET
            annotations[SECRETS_VERSION_ANNOTATION] = secret.metadata.apply(
                lambda meta: str(meta.resource_version)
            )
            depends_on.append(secret)

        spec = pulumi.Output.all(**annotations).apply(
            lambda resolved: deployment_spec(
                storage=storage,
                replicas=replicas,
                image=image,
                config_map=f"{SERVICE_NAME}-config",
                service_account=SERVICE_NAME,
                resources=args.get("resources", DEFAULT_RESOURCES),
                credentials_secret=secret_name,
                has_upstream_credentials=upstream is not None,
                has_storage_keys=storage_keys is not None,
                pod_annotations=dict(resolved),
                affinity=args.get("affinity"),
                node_selector=args.get("node_selector"),
                tolerations=args.get("tolerations"),
            )
        )
        k8s.apps.v1.Deployment(
            name,
            metadata={"name": SERVICE_NAME, "namespace": namespace_name, "labels": pod_labels()},
            # The specs are built in Kubernetes API form (camelCase), which the SDK passes through.
            spec=cast(pulumi.Input[k8s.apps.v1.DeploymentSpecArgsDict], spec),
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )
        k8s.core.v1.Service(
            name,
            metadata={"name": SERVICE_NAME, "namespace": namespace_name, "labels": pod_labels()},
            spec=cast(k8s.core.v1.ServiceSpecArgsDict, service_spec(cluster_ip)),
            opts=pulumi.ResourceOptions(parent=self),
        )
        if budget := disruption_budget_spec(replicas):
            k8s.policy.v1.PodDisruptionBudget(
                name,
                metadata={"name": SERVICE_NAME, "namespace": namespace_name},
                spec=cast(k8s.policy.v1.PodDisruptionBudgetSpecArgsDict, budget),
                opts=pulumi.ResourceOptions(parent=self),
            )
        expiry = expiry_kind(storage, lifecycle_rule=args.get("lifecycle_rule", False))
        if (s3 := storage.get("s3")) and expiry == "expiry job" and secret is not None:
            k8s.batch.v1.CronJob(
                f"{name}-expire",
                metadata={
                    "name": EXPIRY_JOB,
                    "namespace": namespace_name,
                    "labels": expiry_labels(),
                },
                spec=cast(
                    k8s.batch.v1.CronJobSpecArgsDict,
                    expiry_cron_job_spec(
                        storage=s3,
                        expiration_days=expiration_days,
                        credentials_secret=CREDENTIALS_SECRET,
                        affinity=args.get("affinity"),
                        node_selector=args.get("node_selector"),
                        tolerations=args.get("tolerations"),
                    ),
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[secret]),
            )
        for index, job_namespace in enumerate(args["job_namespaces"]):
            k8s.core.v1.ConfigMap(
                f"{name}-daemon-json-{index}",
                metadata={"name": DAEMON_CONFIG_MAP, "namespace": job_namespace},
                data={DAEMON_JSON_KEY: daemon_json(pod_url)},
                opts=pulumi.ResourceOptions(parent=self),
            )

        self.namespace = namespace_name
        self.url = pulumi.Output.from_input(pod_url)
        self.node_url = pulumi.Output.from_input(node_url)
        self.daemon_config_map = pulumi.Output.from_input(DAEMON_CONFIG_MAP)
        self.status = pulumi.Output.from_input(
            status_line(
                replicas=replicas,
                image=image,
                storage=storage,
                url=pod_url,
                node_url=node_url,
                authenticated=upstream is not None,
                expiry=expiry,
                expiration_days=expiration_days,
            )
        )
        self.register_outputs(
            {
                "namespace": self.namespace,
                "url": self.url,
                "node_url": self.node_url,
                "daemon_config_map": self.daemon_config_map,
                "status": self.status,
            }
        )

    def _create_service_account(
        self, name: str, namespace: pulumi.Input[str], role_arn: Optional[pulumi.Input[str]]
    ) -> k8s.core.v1.ServiceAccount:
        metadata: k8s.meta.v1.ObjectMetaArgsDict = {"name": SERVICE_NAME, "namespace": namespace}
        if role_arn is not None:
            metadata["annotations"] = {IRSA_ROLE_ANNOTATION: role_arn}
        return k8s.core.v1.ServiceAccount(
            name,
            metadata=metadata,
            automount_service_account_token=False,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _create_credentials_secret(
        self,
        name: str,
        namespace: pulumi.Input[str],
        upstream: Optional[UpstreamCredentials],
        storage_keys: Optional[StorageKeys],
    ) -> k8s.core.v1.Secret:
        data: dict[str, pulumi.Input[str]] = {}
        if upstream:
            data[UPSTREAM_USERNAME_KEY] = upstream["username"]
            data[UPSTREAM_PASSWORD_KEY] = upstream["password"]
        if storage_keys:
            data[STORAGE_ACCESS_KEY_KEY] = storage_keys["access_key_id"]
            data[STORAGE_SECRET_KEY_KEY] = storage_keys["secret_access_key"]
        return k8s.core.v1.Secret(
            f"{name}-credentials",
            metadata={"name": CREDENTIALS_SECRET, "namespace": namespace},
            type="Opaque",
            string_data={key: pulumi.Output.secret(value) for key, value in data.items()},
            opts=pulumi.ResourceOptions(parent=self),
        )
