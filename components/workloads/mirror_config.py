"""The Docker Hub pull-through mirror's configuration files, as pure functions.

- `distribution_config`: the CNCF Distribution (`registry`) config.yml in proxy mode.
- `expiry_command` and `expiry_environment`: the hourly job that expires the mirror's prefix on
  an S3-compatible store, where no lifecycle rule does.
- `containerd_hosts_toml` and `node_user_data`: containerd on the build nodes pulls Docker Hub
  images through the mirror, with Docker Hub itself as fallback.
- `daemon_json` and `daemon_json_volume`: Docker-in-Docker's dockerd uses the mirror for
  `docker pull` and `FROM`, through a ConfigMap the runner mounts into every job container.

No Pulumi runtime needed. Secrets never appear in any of these files: upstream credentials and
storage keys reach the registry as environment variables from a Kubernetes Secret
(`credential_environment`).
"""

import ipaddress
import json
import re
from collections.abc import Sequence
from typing import Any, NotRequired, TypedDict
from urllib.parse import urlsplit

import tomli_w
import yaml

from ..conventions import MIRROR_OBJECT_ACL
from ..kubernetes_names import quantity_problems, quantity_value

REGISTRY_IMAGE = "registry:3.1.1"
"""The Docker Official Image `library/registry` (CNCF Distribution 3.1.1, May 2026). 3.x streams a
cache miss to the client and the storage in one upstream fetch and has `proxy.ttl`; 2.8
(no longer in the official image) fetches every missed blob twice."""
DOCKER_HUB_URL = "https://registry-1.docker.io"
"""Docker Hub's registry API; `docker.io` is only its name in image references."""
DOCKER_HUB_NAMESPACE = "docker.io"
MIRROR_PORT = 5000
CONFIG_DIRECTORY = "/etc/distribution"
CONFIG_FILE = "config.yml"
"""The 3.x image runs `registry serve /etc/distribution/config.yml` (its Dockerfile's CMD)."""
HEALTH_PATH = "/v2/"
"""Answers 200 without touching the upstream, 503 once the storage health check fails."""

# distribution's configuration parser (configuration/parser.go) overrides any field from
# REGISTRY_<PATH>_<FIELD> variables; these carry the secrets the config file must not.
PROXY_USERNAME_ENV = "REGISTRY_PROXY_USERNAME"
PROXY_PASSWORD_ENV = "REGISTRY_PROXY_PASSWORD"
STORAGE_ACCESS_KEY_ENV = "REGISTRY_STORAGE_S3_ACCESSKEY"
STORAGE_SECRET_KEY_ENV = "REGISTRY_STORAGE_S3_SECRETKEY"
# Keys of the mirror's credentials Secret.
UPSTREAM_USERNAME_KEY = "upstream-username"
UPSTREAM_PASSWORD_KEY = "upstream-password"
STORAGE_ACCESS_KEY_KEY = "storage-access-key-id"
STORAGE_SECRET_KEY_KEY = "storage-secret-access-key"

SHARED_STORAGE_TTL = "0s"
"""`proxy.ttl: 0` turns the expiry scheduler off (registry/proxy/proxyregistry.go). Every replica
would run its own scheduler on one shared `scheduler-state.json`, read at start and overwritten
every 5 s with that replica's entries only (registry/proxy/scheduler/scheduler.go), so entries
of a replica that restarts are lost and their blobs never expire (distribution#3251, #4594). A
shared bucket is expired from outside: a lifecycle rule on the prefix, or `expiry_command`."""
DEFAULT_EXPIRATION_DAYS = 30
FILESYSTEM_SIZE_LIMIT = "10Gi"
"""Default bound of a replica's directory with filesystem storage."""

CONTAINERD_HOSTS_DIRECTORY = "/etc/containerd/certs.d"
"""First entry of `config_path` in the AL2023 EKS AMI's containerd config (nodeadm's
internal/containerd/config.template.toml and config2.template.toml)."""
DOCKER_HUB_HOSTS_TOML = f"{CONTAINERD_HOSTS_DIRECTORY}/{DOCKER_HUB_NAMESPACE}/hosts.toml"
MIRROR_DIAL_TIMEOUT = "500ms"
"""Bounds each connection attempt to the mirror before containerd tries the next host (Docker
Hub). containerd tries the mirror first on every request of a pull (the tag, the manifest,
each blob) and, while the mirror's ClusterIP is not yet routable on a new node, waits this long
each time. Read by containerd 2.1+ (core/remotes/docker/config/hosts.go, `dial_timeout`, since
v2.1.0), ignored by older ones, whose dialer waits 30 s (non-strict TOML decoding)."""
NODEADM_CONFIG_MEDIA_TYPE = "application/node.eks.aws"
USER_DATA_BOUNDARY = "==GITLAB-RUNNER-FLEET=="
_HEREDOC_END = "FLEET_HOSTS_TOML"

DAEMON_JSON_KEY = "daemon.json"
DAEMON_JSON_PATH = "/etc/docker/daemon.json"
"""Where dockerd (root, as in docker:dind) reads its configuration file."""
DAEMON_CONFIG_MAP = "docker-daemon-config"
"""The ConfigMap in each job namespace, and the job pod volume the runner makes of it."""

_S3_PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*$")


class S3Storage(TypedDict):
    """The mirror's storage in an S3 bucket (or an S3-compatible store with `endpoint`)."""

    bucket: str
    """Bucket name (the stack's cache bucket, under its own prefix)."""
    region: str
    """Bucket region; any non-empty name for an S3-compatible store."""
    prefix: str
    """Key prefix of every object the mirror writes, e.g. `registry-mirror`."""
    endpoint: NotRequired[str]
    """S3-compatible stores only: the endpoint URL, e.g. `http://minio.minio:9000`."""
    force_path_style: NotRequired[bool]
    """S3-compatible stores only: path-style requests (MinIO needs them)."""
    redirect: NotRequired[bool]
    """Answer blob requests with a presigned S3 URL instead of streaming them. Default false:
    nodes and job pods then only ever talk to the mirror."""


class FilesystemStorage(TypedDict):
    """The mirror's storage in a local directory (one cache per replica)."""

    root_directory: str
    """Absolute path of the directory."""
    size_limit: NotRequired[str]
    """The bound of each replica's directory, at least 1Gi: its emptyDir's `sizeLimit` and its
    ephemeral-storage request. The registry's own expiry is by age only; a replica whose cache
    outgrows this is evicted by the kubelet and starts again empty, instead of filling its
    node's disk. Size it above the largest image the jobs pull. Default 10Gi."""


class MirrorStorage(TypedDict):
    """Where the mirror keeps what it pulled: exactly one of `s3` and `filesystem`."""

    s3: NotRequired[S3Storage]
    """A bucket shared by every replica."""
    filesystem: NotRequired[FilesystemStorage]
    """A directory per replica."""


class DaemonConfigVolume(TypedDict):
    """A `[[runners.kubernetes.volumes.config_map]]` entry of the runner's config.toml."""

    name: str
    mount_path: str
    sub_path: NotRequired[str]
    read_only: NotRequired[bool]
    items: NotRequired[dict[str, str]]


class UserDataPart(TypedDict):
    """One part of a MIME multi-part user data document."""

    content_type: str
    """e.g. `application/node.eks.aws` (a NodeConfig) or `text/x-shellscript`."""
    body: str


def size_limit_problems(size_limit: str) -> list[str]:
    """Why `size_limit` cannot bound a replica's directory (filesystem storage)."""
    if quantity_problems(size_limit):
        return [f"must be a Kubernetes quantity such as 20Gi, got {size_limit!r}"]
    if quantity_value(size_limit) < 2**30:
        # Single layers of common CI images run to hundreds of megabytes.
        return [f"must be at least 1Gi, got {size_limit!r}"]
    return []


def filesystem_size_limit(filesystem: FilesystemStorage) -> str:
    """The bound of each replica's directory: as given, or FILESYSTEM_SIZE_LIMIT."""
    return filesystem.get("size_limit", FILESYSTEM_SIZE_LIMIT)


def storage_problems(storage: MirrorStorage) -> list[str]:
    """Why `storage` cannot configure the mirror; empty when it can."""
    kinds = [kind for kind in ("s3", "filesystem") if kind in storage]
    if len(kinds) != 1:
        return [f"set exactly one of 's3' and 'filesystem', got {kinds or 'none'}"]
    problems = []
    if s3 := storage.get("s3"):
        if not s3["bucket"]:
            problems.append("s3.bucket must not be empty")
        if not s3["region"]:
            problems.append("s3.region must not be empty")
        if not _S3_PREFIX.match(s3["prefix"]):
            problems.append(
                "s3.prefix must be one or more path segments without leading or trailing '/', "
                f"got {s3['prefix']!r}"
            )
        if "endpoint" in s3 and urlsplit(s3["endpoint"]).scheme not in ("http", "https"):
            problems.append(f"s3.endpoint must be an http(s) URL, got {s3['endpoint']!r}")
    if filesystem := storage.get("filesystem"):
        if not filesystem["root_directory"].startswith("/"):
            problems.append("filesystem.root_directory must be an absolute path")
        problems += [
            f"filesystem.size_limit {problem}"
            for problem in size_limit_problems(filesystem_size_limit(filesystem))
        ]
    return problems


def _storage_section(storage: MirrorStorage) -> dict[str, Any]:
    section: dict[str, Any]
    if s3 := storage.get("s3"):
        # No keys here: with none the AWS SDK's default chain finds IRSA's web identity token;
        # an S3-compatible store gets its keys from STORAGE_*_ENV.
        driver: dict[str, Any] = {
            "bucket": s3["bucket"],
            "region": s3["region"],
            "rootdirectory": f"/{s3['prefix']}",
            "objectacl": MIRROR_OBJECT_ACL,
        }
        if "endpoint" in s3:
            driver["regionendpoint"] = s3["endpoint"]
        if "force_path_style" in s3:
            driver["forcepathstyle"] = s3["force_path_style"]
        section = {"s3": driver, "redirect": {"disable": not s3.get("redirect", False)}}
    else:
        section = {"filesystem": {"rootdirectory": storage["filesystem"]["root_directory"]}}
    # The proxy's expiry scheduler deletes through the storage API, which refuses unless enabled
    # (docs/content/recipes/mirror.md); clients still cannot delete from a cache.
    section["delete"] = {"enabled": True}
    # No `cache` section, so no blob descriptor cache (registry/handlers/app.go): `inmemory`
    # answers Stat from memory with no expiry (registry/storage/cache/cachedblobdescriptorstore.go),
    # and after a lifecycle rule or the expiry job deleted a blob, the blob server streams an
    # object that is gone (skopeo: unexpected EOF) until the pod restarts. Without it every blob
    # request stats the store, which finds the blob missing, and the proxy fetches it again.
    return section


def proxy_ttl(storage: MirrorStorage, expiration_days: int) -> str:
    """`proxy.ttl`: the registry's own expiry for a directory of its own (filesystem storage),
    off for a bucket shared by the replicas (`SHARED_STORAGE_TTL`)."""
    if expiration_days < 1:
        raise ValueError(f"expiration_days must be at least 1, got {expiration_days}")
    return SHARED_STORAGE_TTL if "s3" in storage else f"{expiration_days * 24}h"


def distribution_config(
    storage: MirrorStorage,
    *,
    remote_url: str = DOCKER_HUB_URL,
    listen_address: str = f":{MIRROR_PORT}",
    expiration_days: int = DEFAULT_EXPIRATION_DAYS,
) -> dict[str, Any]:
    """The registry's config.yml as a dict: a pull-through cache of `remote_url`.

    Public upstreams only: the registry serves anything its upstream credentials can read to
    anyone who reaches it, so mirroring a private registry would bypass its access control.
    """
    if problems := storage_problems(storage):
        raise ValueError(f"mirror storage: {'; '.join(problems)}")
    remote = urlsplit(remote_url)
    if remote.scheme not in ("http", "https") or not remote.netloc:
        raise ValueError(f"remote_url must be an http(s) URL, got {remote_url!r}")
    proxy: dict[str, Any] = {
        "remoteurl": remote_url,
        "ttl": proxy_ttl(storage, expiration_days),
    }
    return {
        "version": "0.1",
        "log": {"level": "info", "fields": {"service": "registry-mirror"}},
        "storage": _storage_section(storage),
        "http": {"addr": listen_address, "headers": {"X-Content-Type-Options": ["nosniff"]}},
        "health": {"storagedriver": {"enabled": True, "interval": "10s", "threshold": 3}},
        "proxy": proxy,
    }


def render_distribution_config(
    storage: MirrorStorage,
    *,
    remote_url: str = DOCKER_HUB_URL,
    listen_address: str = f":{MIRROR_PORT}",
    expiration_days: int = DEFAULT_EXPIRATION_DAYS,
) -> str:
    """`distribution_config` as the YAML file the registry reads."""
    config = distribution_config(
        storage,
        remote_url=remote_url,
        listen_address=listen_address,
        expiration_days=expiration_days,
    )
    return yaml.safe_dump(config, sort_keys=False)


EXPIRY_REMOTE = "mirror"
_EXPIRY_REMOTE_ENV = f"RCLONE_CONFIG_{EXPIRY_REMOTE.upper()}"


def expiry_command(storage: S3Storage, expiration_days: int) -> list[str]:
    """`rclone delete` of every object under the mirror's prefix older than `expiration_days`:
    what an S3 lifecycle rule on the prefix does, for a store where the stack creates none (an
    S3-compatible one such as MinIO). The registry fetches a deleted layer again on the next
    pull (no blob descriptor cache). `--use-server-modtime` takes each object's age from the
    listing instead of a HEAD per object (the registry writes no rclone modtime metadata)."""
    if expiration_days < 1:
        raise ValueError(f"expiration_days must be at least 1, got {expiration_days}")
    return [
        "rclone",
        "delete",
        f"{EXPIRY_REMOTE}:{storage['bucket']}/{storage['prefix']}",
        "--min-age",
        f"{expiration_days}d",
        "--use-server-modtime",
        "--log-level",
        "INFO",
    ]


def expiry_environment(storage: S3Storage, secret_name: str) -> list[dict[str, Any]]:
    """The expiry job's `env`: the store as an rclone remote defined by environment variables
    (`RCLONE_CONFIG_<REMOTE>_<OPTION>`), keys from the mirror's credentials Secret."""
    options = {
        "TYPE": "s3",
        "PROVIDER": "Other" if "endpoint" in storage else "AWS",
        "REGION": storage["region"],
        **({"ENDPOINT": storage["endpoint"]} if "endpoint" in storage else {}),
        "FORCE_PATH_STYLE": str(storage.get("force_path_style", False)).lower(),
        "ENV_AUTH": "false",
    }
    environment: list[dict[str, Any]] = [
        {"name": f"{_EXPIRY_REMOTE_ENV}_{option}", "value": value}
        for option, value in options.items()
    ]
    environment += [
        {
            "name": f"{_EXPIRY_REMOTE_ENV}_{option}",
            "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}},
        }
        for option, key in (
            ("ACCESS_KEY_ID", STORAGE_ACCESS_KEY_KEY),
            ("SECRET_ACCESS_KEY", STORAGE_SECRET_KEY_KEY),
        )
    ]
    return environment


def credential_environment(
    secret_name: str, *, upstream_credentials: bool, storage_keys: bool
) -> list[dict[str, Any]]:
    """The registry container's `env`: each credential from a key of the Secret `secret_name`."""
    pairs: list[tuple[str, str]] = []
    if upstream_credentials:
        pairs += [
            (PROXY_USERNAME_ENV, UPSTREAM_USERNAME_KEY),
            (PROXY_PASSWORD_ENV, UPSTREAM_PASSWORD_KEY),
        ]
    if storage_keys:
        pairs += [
            (STORAGE_ACCESS_KEY_ENV, STORAGE_ACCESS_KEY_KEY),
            (STORAGE_SECRET_KEY_ENV, STORAGE_SECRET_KEY_KEY),
        ]
    return [
        {"name": env, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}}
        for env, key in pairs
    ]


def mirror_url(host: str, port: int = MIRROR_PORT) -> str:
    """The mirror's plain-HTTP URL at `host` (a name or an IPv4/IPv6 address)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"http://{host}:{port}"
    return f"http://[{address}]:{port}" if address.version == 6 else f"http://{address}:{port}"


EKS_DNS_SERVICE_OFFSET = 10
"""EKS gives the cluster's DNS Service (kube-dns) the service range's 10th address
(amazon-eks-ami nodeadm internal/api/net.go GetClusterDns: the kubelet's clusterDNS)."""


def static_band_size(service_cidr: str) -> int:
    """How many of the service range's lowest addresses, from its first usable one, Kubernetes
    keeps for fixed ClusterIPs: min(max(16, size/16), 256) (KEP-3070, GA in 1.26; for a /24
    the band is .1 to .16)."""
    network = ipaddress.ip_network(service_cidr, strict=False)
    return min(max(16, network.num_addresses // 16), 256)


def cluster_ip_problems(cluster_ip: str, service_cidr: str) -> list[str]:
    """Why `cluster_ip` is a poor fixed address for the mirror's Service; empty when it is fine.

    Kubernetes hands out ClusterIPs from the top of the service range first and keeps the lowest
    addresses for fixed ones (`static_band_size`); the first address is the `kubernetes`
    Service's.
    """
    try:
        address = ipaddress.ip_address(cluster_ip)
    except ValueError:
        return [f"must be an IP address, got {cluster_ip!r}"]
    network = ipaddress.ip_network(service_cidr, strict=False)
    if address not in network:
        return [f"{cluster_ip} is outside the service range {network}"]
    offset = int(address) - int(network.network_address)
    band = static_band_size(service_cidr)
    problems = []
    if offset <= 1:
        problems.append(f"{cluster_ip} is the range's network address or the kubernetes Service's")
    if offset == EKS_DNS_SERVICE_OFFSET:
        problems.append(
            f"{cluster_ip} is the cluster DNS Service's address (EKS gives kube-dns the range's "
            "10th address); pick another in the static band"
        )
    if offset > band:
        last = network.network_address + band
        problems.append(
            f"{cluster_ip} is outside the range's static band ({network.network_address + 2} to "
            f"{last}), where a dynamically allocated Service may take it first"
        )
    return problems


def _mirror_root(url: str) -> str:
    """`url` checked to be an http(s) scheme and host with nothing else, as a mirror must be."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"mirror URL must be http(s)://host[:port], got {url!r}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"mirror URL must carry no credentials, query or fragment: {url!r}")
    if parts.path not in ("", "/"):
        raise ValueError(f"a pull-through mirror serves the root of its host, got {url!r}")
    return f"{parts.scheme}://{parts.netloc}"


def containerd_hosts_toml(
    url: str, *, dial_timeout: str = MIRROR_DIAL_TIMEOUT, upstream_url: str = DOCKER_HUB_URL
) -> str:
    """containerd's `hosts.toml` for `docker.io`: the mirror first, Docker Hub as fallback.

    containerd tries each `[host]` in order for pull and resolve, and `server` after them all
    when a host fails to connect or answers an error (core/remotes/docker/resolver.go).
    """
    return tomli_w.dumps(
        {
            "server": upstream_url,
            "host": {
                _mirror_root(url): {
                    # Resolving a tag through the mirror means trusting it with the tag's digest:
                    # it is ours, inside the cluster.
                    "capabilities": ["pull", "resolve"],
                    "dial_timeout": dial_timeout,
                }
            },
        }
    )


def hosts_toml_script(hosts_toml: str) -> str:
    """A shell script that writes `hosts_toml` to containerd's docker.io hosts directory."""
    if _HEREDOC_END in hosts_toml:
        raise ValueError(f"hosts.toml must not contain {_HEREDOC_END!r}")
    directory = DOCKER_HUB_HOSTS_TOML.rsplit("/", 1)[0]
    # The quoted here-document delimiter keeps the shell from expanding anything inside.
    return (
        "#!/bin/bash\n"
        "# Docker Hub pulls go through the cluster's registry mirror, Docker Hub as fallback.\n"
        "set -euo pipefail\n"
        f"mkdir -p {directory}\n"
        f"cat > {DOCKER_HUB_HOSTS_TOML} <<'{_HEREDOC_END}'\n"
        f"{hosts_toml}"
        f"{'' if hosts_toml.endswith(chr(10)) else chr(10)}"
        f"{_HEREDOC_END}\n"
        f"chmod 0644 {DOCKER_HUB_HOSTS_TOML}\n"
    )


def node_user_data(hosts_toml: str, extra_parts: Sequence[UserDataPart] = ()) -> str:
    """Launch template user data for AL2023 build nodes (not base64-encoded).

    A MIME multi-part document: a `text/x-shellscript` part that writes containerd's hosts.toml,
    then `extra_parts` in order (e.g. a NodeConfig, `application/node.eks.aws`). cloud-init runs
    the script in cloud-final, and `nodeadm-run.service` starts containerd only after
    cloud-final (amazon-eks-ami templates/al2023/runtime/rootfs/etc/systemd/system). nodeadm
    merges every NodeConfig part and ignores the rest (nodeadm/internal/configprovider/mime.go);
    an EKS managed node group adds its own NodeConfig part.
    """
    parts: list[UserDataPart] = [
        {
            "content_type": 'text/x-shellscript; charset="us-ascii"',
            "body": hosts_toml_script(hosts_toml),
        },
        *extra_parts,
    ]
    lines = [
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{USER_DATA_BOUNDARY}"',
        "",
    ]
    for part in parts:
        if USER_DATA_BOUNDARY in part["body"]:
            raise ValueError(f"a user data part must not contain {USER_DATA_BOUNDARY!r}")
        lines += [f"--{USER_DATA_BOUNDARY}", f"Content-Type: {part['content_type']}", ""]
        lines.append(part["body"].rstrip("\n"))
        lines.append("")
    lines.append(f"--{USER_DATA_BOUNDARY}--")
    return "\n".join(lines) + "\n"


def daemon_json(url: str) -> str:
    """dockerd's daemon.json: Docker Hub pulls (`docker pull`, `FROM`) through the mirror.

    dockerd keeps the mirror URL's scheme, so a plain-HTTP mirror needs no `insecure-registries`
    entry (moby daemon/pkg/registry/service_v2.go, daemon/hosts.go). Docker Hub stays the last
    endpoint after the mirrors.
    """
    return json.dumps({"registry-mirrors": [_mirror_root(url)]}, indent=2) + "\n"


def daemon_json_volume(config_map_name: str = DAEMON_CONFIG_MAP) -> DaemonConfigVolume:
    """The config.toml entry that mounts the daemon.json ConfigMap into the job pods.

    The runner mounts every `volumes.config_map` entry into the build, helper and every service
    container (executors/kubernetes/kubernetes.go, getVolumeMounts), so docker:dind sees it; the
    volume takes the ConfigMap's name. `sub_path` mounts one file, leaving the rest of
    /etc/docker as the image has it.
    """
    return {
        "name": config_map_name,
        "mount_path": DAEMON_JSON_PATH,
        "sub_path": DAEMON_JSON_KEY,
        "read_only": True,
        "items": {DAEMON_JSON_KEY: DAEMON_JSON_KEY},
    }
