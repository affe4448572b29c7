"""The mirror's files: registry config.yml, containerd hosts.toml, node user data, daemon.json."""

from __future__ import annotations

import email
import json
import re
import subprocess
import tomllib
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.workloads.mirror_config import (
    CONTAINERD_HOSTS_DIRECTORY,
    DAEMON_JSON_PATH,
    DOCKER_HUB_HOSTS_TOML,
    DOCKER_HUB_URL,
    NODEADM_CONFIG_MEDIA_TYPE,
    PROXY_PASSWORD_ENV,
    PROXY_USERNAME_ENV,
    STORAGE_ACCESS_KEY_ENV,
    STORAGE_SECRET_KEY_ENV,
    USER_DATA_BOUNDARY,
    MirrorStorage,
    S3Storage,
    cluster_ip_problems,
    containerd_hosts_toml,
    credential_environment,
    daemon_json,
    daemon_json_volume,
    distribution_config,
    expiry_command,
    expiry_environment,
    hosts_toml_script,
    mirror_url,
    node_user_data,
    render_distribution_config,
    storage_problems,
)

S3: MirrorStorage = {
    "s3": {"bucket": "fleet-cache", "region": "eu-west-1", "prefix": "registry-mirror"}
}
FILESYSTEM: MirrorStorage = {"filesystem": {"root_directory": "/var/lib/registry"}}
MINIO: dict[str, S3Storage] = {
    "s3": {
        "bucket": "ci",
        "region": "us-east-1",
        "prefix": "registry-mirror",
        "endpoint": "http://minio.minio:9000",
        "force_path_style": True,
    }
}
NODE_URL = "http://172.20.0.50:5000"
NODE_CONFIG = """apiVersion: node.eks.aws/v1alpha1
kind: NodeConfig
spec:
  kubelet:
    config:
      maxPods: 58
"""


def env_name(*config_path: str) -> str:
    """The variable distribution's parser maps onto a config field: REGISTRY_ plus the path in
    upper case, joined by '_' (configuration/parser.go, Parse and overwriteStruct)."""
    return "_".join(("REGISTRY", *config_path)).upper()


def test_s3_storage_leaves_credentials_to_the_aws_sdk() -> None:
    config = distribution_config(S3)
    assert config["proxy"]["remoteurl"] == DOCKER_HUB_URL == "https://registry-1.docker.io"
    driver = config["storage"]["s3"]
    assert driver == {
        "bucket": "fleet-cache",
        "region": "eu-west-1",
        "rootdirectory": "/registry-mirror",
        # The driver sends x-amz-acl on every write, `private` by default (s3-aws/s3.go
        # getACL); CacheBucket disables ACLs (BucketOwnerEnforced) and S3 then refuses any
        # ACL but this one (AccessControlListNotSupported). tests/integration proves it.
        "objectacl": "bucket-owner-full-control",
    }
    # No accesskey/secretkey: the s3-aws driver then builds its session from the SDK's default
    # chain, which reads IRSA's web identity token (registry/storage/driver/s3-aws/s3.go, New).
    assert "accesskey" not in driver
    assert "secretkey" not in driver
    # Blobs stream through the mirror: nodes need no route to the bucket.
    assert config["storage"]["redirect"] == {"disable": True}


def test_shared_storage_turns_the_per_replica_expiry_scheduler_off() -> None:
    # proxy.ttl 0 means no scheduler (registry/proxy/proxyregistry.go,
    # NewRegistryPullThroughCache); each replica would otherwise rewrite the one shared
    # scheduler-state.json (registry/proxy/scheduler/scheduler.go writeState).
    assert distribution_config(S3, expiration_days=14)["proxy"]["ttl"] == "0s"
    # A replica's own directory: its own scheduler expires what it fetched, and may delete.
    filesystem = distribution_config(FILESYSTEM, expiration_days=14)
    assert filesystem["proxy"]["ttl"] == "336h"
    assert filesystem["storage"]["filesystem"] == {"rootdirectory": "/var/lib/registry"}
    assert filesystem["storage"]["delete"] == {"enabled": True}
    with pytest.raises(ValueError, match="expiration_days"):
        distribution_config(FILESYSTEM, expiration_days=0)


@pytest.mark.parametrize("storage", [S3, FILESYSTEM])
def test_no_blob_descriptor_cache_outlives_the_blobs(storage: MirrorStorage) -> None:
    # Without a `cache` section the registry has no blob descriptor cache
    # (registry/handlers/app.go); `inmemory` would answer Stat for blobs a lifecycle rule
    # deleted, and the blob server would stream nothing (tests/integration: unexpected EOF).
    assert "cache" not in distribution_config(storage)["storage"]


def test_the_expiry_job_deletes_old_objects_under_the_prefix_only() -> None:
    storage = MINIO["s3"]
    command = expiry_command(storage, 14)
    # `rclone delete <remote>:<bucket>/<prefix>` treats the prefix as a directory: objects
    # under `registry-mirror/`, never `registry-mirror-x/` (tests/integration proves both).
    assert command == [
        "rclone",
        "delete",
        "mirror:ci/registry-mirror",
        "--min-age",
        "14d",
        "--use-server-modtime",
        "--log-level",
        "INFO",
    ]
    environment = {e["name"]: e.get("value") for e in expiry_environment(storage, "creds")}
    assert environment == {
        "RCLONE_CONFIG_MIRROR_TYPE": "s3",
        "RCLONE_CONFIG_MIRROR_PROVIDER": "Other",
        "RCLONE_CONFIG_MIRROR_REGION": "us-east-1",
        "RCLONE_CONFIG_MIRROR_ENDPOINT": "http://minio.minio:9000",
        "RCLONE_CONFIG_MIRROR_FORCE_PATH_STYLE": "true",
        "RCLONE_CONFIG_MIRROR_ENV_AUTH": "false",
        "RCLONE_CONFIG_MIRROR_ACCESS_KEY_ID": None,
        "RCLONE_CONFIG_MIRROR_SECRET_ACCESS_KEY": None,
    }
    with pytest.raises(ValueError, match="expiration_days"):
        expiry_command(storage, 0)


def test_s3_compatible_store_gets_its_endpoint_and_path_style() -> None:
    storage: MirrorStorage = {
        "s3": {
            "bucket": "ci",
            "region": "us-east-1",
            "prefix": "mirror/hub",
            "endpoint": "http://minio.minio:9000",
            "force_path_style": True,
            "redirect": True,
        }
    }
    config = distribution_config(storage)
    assert config["storage"]["s3"] == {
        "bucket": "ci",
        "region": "us-east-1",
        "rootdirectory": "/mirror/hub",
        "objectacl": "bucket-owner-full-control",
        "regionendpoint": "http://minio.minio:9000",
        "forcepathstyle": True,
    }
    assert config["storage"]["redirect"] == {"disable": False}


def test_the_registry_serves_plain_http_and_reports_storage_health() -> None:
    config = distribution_config(S3)
    assert config["version"] == "0.1"
    assert config["http"]["addr"] == ":5000"
    assert "tls" not in config["http"]
    # A failing storage check makes every request answer 503 (health/health.go, Handler).
    assert config["health"]["storagedriver"]["enabled"] is True
    assert distribution_config(S3, listen_address="127.0.0.1:9")["http"]["addr"] == "127.0.0.1:9"


def test_rendered_file_is_the_config_as_yaml() -> None:
    text = render_distribution_config(S3, remote_url="http://127.0.0.1:5001")
    assert yaml.safe_load(text) == distribution_config(S3, remote_url="http://127.0.0.1:5001")


@pytest.mark.parametrize(
    ("storage", "problem"),
    [
        ({}, "set exactly one of 's3' and 'filesystem', got none"),
        ({**S3, **FILESYSTEM}, "set exactly one of 's3' and 'filesystem'"),
        (
            {"s3": {"bucket": "", "region": "eu-west-1", "prefix": "m"}},
            "s3.bucket must not be empty",
        ),
        ({"s3": {"bucket": "b", "region": "", "prefix": "m"}}, "s3.region must not be empty"),
        ({"s3": {"bucket": "b", "region": "r", "prefix": "/m"}}, "without leading or trailing '/'"),
        ({"s3": {"bucket": "b", "region": "r", "prefix": "m/"}}, "without leading or trailing '/'"),
        ({"s3": {"bucket": "b", "region": "r", "prefix": ""}}, "s3.prefix"),
        (
            {"s3": {"bucket": "b", "region": "r", "prefix": "m", "endpoint": "minio:9000"}},
            "s3.endpoint must be an http(s) URL",
        ),
        ({"filesystem": {"root_directory": "var/lib"}}, "must be an absolute path"),
    ],
)
def test_unusable_storage_is_refused(storage: MirrorStorage, problem: str) -> None:
    assert any(problem in found for found in storage_problems(storage))
    with pytest.raises(ValueError, match="mirror storage"):
        distribution_config(storage)


def test_upstream_must_be_an_http_url() -> None:
    with pytest.raises(ValueError, match="remote_url"):
        distribution_config(S3, remote_url="registry-1.docker.io")


def test_credentials_reach_the_registry_only_through_its_environment() -> None:
    assert env_name("proxy", "username") == PROXY_USERNAME_ENV
    assert env_name("proxy", "password") == PROXY_PASSWORD_ENV
    assert env_name("storage", "s3", "accesskey") == STORAGE_ACCESS_KEY_ENV
    assert env_name("storage", "s3", "secretkey") == STORAGE_SECRET_KEY_ENV
    env = credential_environment("mirror-credentials", upstream_credentials=True, storage_keys=True)
    assert [entry["name"] for entry in env] == [
        PROXY_USERNAME_ENV,
        PROXY_PASSWORD_ENV,
        STORAGE_ACCESS_KEY_ENV,
        STORAGE_SECRET_KEY_ENV,
    ]
    for entry in env:
        assert set(entry) == {"name", "valueFrom"}
        assert entry["valueFrom"]["secretKeyRef"]["name"] == "mirror-credentials"
    assert credential_environment("s", upstream_credentials=False, storage_keys=False) == []
    assert [
        e["name"]
        for e in credential_environment("s", upstream_credentials=True, storage_keys=False)
    ] == [PROXY_USERNAME_ENV, PROXY_PASSWORD_ENV]


def test_config_file_has_no_place_for_secrets() -> None:
    text = render_distribution_config(S3)
    for key in ("username", "password", "accesskey", "secretkey", "secret:"):
        assert key not in text


def test_hosts_toml_tries_the_mirror_then_docker_hub() -> None:
    hosts = tomllib.loads(containerd_hosts_toml(NODE_URL))
    # `server` is tried after every [host] (docs/hosts.md "server field"; the resolver moves to
    # the next host on a connection error or an error status, core/remotes/docker/resolver.go).
    assert hosts["server"] == DOCKER_HUB_URL
    assert list(hosts["host"]) == [NODE_URL]
    mirror = hosts["host"][NODE_URL]
    assert mirror["capabilities"] == ["pull", "resolve"]
    assert "push" not in mirror["capabilities"]
    # containerd 2.1+ bounds each dial to the mirror (core/remotes/docker/config/hosts.go
    # `dial_timeout`); tests/integration measures a pull past an unreachable mirror.
    assert mirror["dial_timeout"] == "500ms"
    assert DOCKER_HUB_HOSTS_TOML == "/etc/containerd/certs.d/docker.io/hosts.toml"
    # The AMI's containerd reads hosts from /etc/containerd/certs.d first (nodeadm
    # internal/containerd/config.template.toml: config_path = "/etc/containerd/certs.d:...").
    assert CONTAINERD_HOSTS_DIRECTORY == "/etc/containerd/certs.d"


@pytest.mark.parametrize(
    "url",
    [
        "172.20.0.50:5000",
        "ftp://172.20.0.50",
        "http://172.20.0.50:5000/v2",
        "http://user:pw@172.20.0.50:5000",
        "http://172.20.0.50:5000?ns=docker.io",
    ],
)
def test_a_mirror_is_the_root_of_an_http_host(url: str) -> None:
    with pytest.raises(ValueError, match="mirror"):
        containerd_hosts_toml(url)
    with pytest.raises(ValueError, match="mirror"):
        daemon_json(url)


def test_mirror_urls_bracket_ipv6_addresses() -> None:
    assert mirror_url("172.20.0.50") == "http://172.20.0.50:5000"
    assert mirror_url("fd00::50") == "http://[fd00::50]:5000"
    assert mirror_url("registry-mirror.registry-mirror.svc.cluster.local", 80) == (
        "http://registry-mirror.registry-mirror.svc.cluster.local:80"
    )
    hosts = tomllib.loads(containerd_hosts_toml(mirror_url("fd00::50")))
    assert list(hosts["host"]) == ["http://[fd00::50]:5000"]


def test_the_node_script_writes_hosts_toml_byte_for_byte(tmp_path: Path) -> None:
    hosts_toml = containerd_hosts_toml(NODE_URL) + '# "$HOME" `id` \\n stays literal\n'
    script = hosts_toml_script(hosts_toml)
    assert script.startswith("#!/bin/bash\n")
    # Only the target directory is moved into tmp_path; the script runs as the node would.
    sandboxed = script.replace(CONTAINERD_HOSTS_DIRECTORY, str(tmp_path / "certs.d"))
    subprocess.run(["bash", "-c", sandboxed], check=True, timeout=10)
    written = tmp_path / "certs.d" / "docker.io" / "hosts.toml"
    assert written.read_text() == hosts_toml
    assert oct(written.stat().st_mode & 0o777) == "0o644"
    assert tomllib.loads(written.read_text())["server"] == DOCKER_HUB_URL


def parts_of(user_data: str) -> list[Message]:
    """The parts as cloud-init sees them (Python's email parser); nodeadm reads the same MIME
    structure with Go's net/mail and mime/multipart (internal/configprovider/mime.go)."""
    message = email.message_from_string(user_data)
    assert message.get_content_type() == "multipart/mixed"
    assert message.get_param("boundary") == USER_DATA_BOUNDARY
    return [part for part in message.walk() if not part.is_multipart()]


def test_user_data_writes_hosts_toml_then_carries_the_callers_parts() -> None:
    hosts_toml = containerd_hosts_toml(NODE_URL)
    user_data = node_user_data(
        hosts_toml,
        [
            {"content_type": NODEADM_CONFIG_MEDIA_TYPE, "body": NODE_CONFIG},
            {"content_type": "text/x-shellscript", "body": "#!/bin/bash\necho tuned\n"},
        ],
    )
    assert user_data.startswith("MIME-Version: 1.0\n")
    parts = parts_of(user_data)
    assert [part.get_content_type() for part in parts] == [
        "text/x-shellscript",
        NODEADM_CONFIG_MEDIA_TYPE,
        "text/x-shellscript",
    ]
    script = parts[0].get_payload()
    assert isinstance(script, str)
    assert script.rstrip("\n") == hosts_toml_script(hosts_toml).rstrip("\n")
    node_config = parts[1].get_payload()
    assert isinstance(node_config, str)
    assert yaml.safe_load(node_config)["kind"] == "NodeConfig"
    assert user_data.rstrip("\n").endswith(f"--{USER_DATA_BOUNDARY}--")


def test_user_data_refuses_a_part_that_would_end_the_document() -> None:
    with pytest.raises(ValueError, match="must not contain"):
        node_user_data(
            containerd_hosts_toml(NODE_URL),
            [{"content_type": "text/plain", "body": f"--{USER_DATA_BOUNDARY}--"}],
        )


def test_daemon_json_names_only_the_mirror() -> None:
    config: dict[str, Any] = json.loads(daemon_json(NODE_URL))
    # The http:// scheme is kept for the mirror endpoint (moby daemon/pkg/registry/service_v2.go
    # lookupV2Endpoints; daemon/hosts.go mirrorsToRegistryHosts for BuildKit and the containerd
    # image store), so no insecure-registries entry is needed.
    assert config == {"registry-mirrors": [NODE_URL]}
    # docker:dind passes --host and --tls* flags itself (dockerd-entrypoint.sh); the same
    # options in daemon.json would make dockerd refuse to start.
    assert not any(key == "hosts" or key.startswith("tls") for key in config)


def test_daemon_json_volume_is_a_runner_config_map_entry() -> None:
    volume = daemon_json_volume()
    # `[[runners.kubernetes.volumes.config_map]]` keys (common/config.go, KubernetesConfigMap);
    # the volume and the ConfigMap share `name`.
    assert set(volume) <= {"name", "mount_path", "sub_path", "read_only", "items"}
    assert volume["mount_path"] == DAEMON_JSON_PATH == "/etc/docker/daemon.json"
    assert volume["items"] == {"daemon.json": "daemon.json"}
    assert volume["sub_path"] == "daemon.json"
    assert volume["read_only"] is True
    # Pod volume names are DNS labels.
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", volume["name"])
    assert daemon_json_volume("other")["name"] == "other"


@pytest.mark.parametrize(
    ("cluster_ip", "service_cidr", "problem"),
    [
        ("172.20.0.50", "172.20.0.0/16", None),
        # KEP-3070's band counts from the first usable address: .1 to .256 in a /16, .1 to
        # .16 in a /24 (the Kubernetes docs' "Service ClusterIP allocation" example).
        ("10.100.1.0", "10.100.0.0/16", None),
        (
            "10.100.1.1",
            "10.100.0.0/16",
            "outside the range's static band (10.100.0.2 to 10.100.1.0)",
        ),
        ("10.96.0.16", "10.96.0.0/24", None),
        ("10.96.0.17", "10.96.0.0/24", "static band (10.96.0.2 to 10.96.0.16)"),
        ("10.100.0.1", "10.100.0.0/16", "the kubernetes Service's"),
        # amazon-eks-ami nodeadm internal/api/net.go GetClusterDns (its test: 10.100.0.10).
        ("172.20.0.10", "172.20.0.0/16", "the cluster DNS Service's address"),
        ("10.0.0.50", "172.20.0.0/16", "outside the service range 172.20.0.0/16"),
        ("fd00::50", "fd00::/108", None),
        ("mirror", "172.20.0.0/16", "must be an IP address"),
    ],
)
def test_fixed_cluster_ip_sits_in_the_static_band(
    cluster_ip: str, service_cidr: str, problem: str | None
) -> None:
    problems = cluster_ip_problems(cluster_ip, service_cidr)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in found for found in problems), problems
