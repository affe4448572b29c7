"""The pull-through mirror for real: Distribution with the config.yml `mirror_config` renders.

An upstream `docker-registry` on loopback stands in for Docker Hub; the image is an OCI layout
this file writes (one layer, a config, a manifest, no network). skopeo pushes it upstream and
pulls it through the mirror the way containerd or dockerd would. Debian's docker-registry is
Distribution 2.8.2; production runs 3.1.1 (see `REGISTRY_IMAGE`), whose proxy code paths used
here (tag lookup, blob cache, upstream auth, environment overrides) work the same way. `proxy.ttl`
is not among them: 2.8's `Proxy` has no such field and its parser drops unknown keys
(configuration/configuration.go, parser.go `yaml.Unmarshal`), so the config's `ttl` is ignored
here and what 2.8 proxies expires after its fixed 7 days (proxymanifeststore.go `repositoryTTL`).

Never skipped: docker-registry and skopeo come from Debian (`.ci/run` installs them), moto_server
from requirements-dev.txt. The helpers are shared with `benchmarks/mirror_pull.py`.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]  # no stubs installed (requirements-dev.txt)
import pytest
import tomli_w
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from components.workloads.mirror_config import (
    MIRROR_DIAL_TIMEOUT,
    PROXY_PASSWORD_ENV,
    PROXY_USERNAME_ENV,
    STORAGE_ACCESS_KEY_ENV,
    STORAGE_SECRET_KEY_ENV,
    MirrorStorage,
    containerd_hosts_toml,
    expiry_command,
    expiry_environment,
    render_distribution_config,
)
from tests.integration.servers import free_port, program, stop

REPOSITORY = "library/demo"
TAG = "1"
MIB = 1024 * 1024
_ACCESS_LINE = re.compile(r'"(GET|HEAD) (/v2/\S*) HTTP/1\.1" (\d{3}) \d+ "[^"]*" "([^"]*)"')
MIRROR_USER_AGENT = "Go-http-client"
"""How the mirror's own requests show in the upstream's access log (skopeo says `skopeo/...`)."""


# --- The image: an OCI layout written here --------------------------------------------------


@dataclass(frozen=True)
class OciImage:
    """An OCI image layout on disk with one tag."""

    layout: Path
    manifest_digest: str
    blob_digests: tuple[str, ...]
    """Config and layer digests: what a pull downloads besides the manifest."""

    @property
    def reference(self) -> str:
        return f"oci:{self.layout}:{TAG}"


def _write_blob(layout: Path, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"sha256:{digest}", len(data)


def build_image(layout: Path, layer_bytes: int) -> OciImage:
    """One layer holding `layer_bytes` of random (incompressible) data."""
    archive = io.BytesIO()
    payload = os.urandom(layer_bytes)
    with tarfile.open(fileobj=archive, mode="w") as tar:
        entry = tarfile.TarInfo("payload.bin")
        entry.size = len(payload)
        tar.addfile(entry, io.BytesIO(payload))
    layer_tar = archive.getvalue()
    layer_digest, layer_size = _write_blob(layout, gzip.compress(layer_tar, compresslevel=1))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {
            "type": "layers",
            "diff_ids": [f"sha256:{hashlib.sha256(layer_tar).hexdigest()}"],
        },
    }
    config_digest, config_size = _write_blob(layout, json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest,
                "size": layer_size,
            }
        ],
    }
    manifest_digest, manifest_size = _write_blob(layout, json.dumps(manifest).encode())
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest_size,
                "annotations": {"org.opencontainers.image.ref.name": TAG},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
    return OciImage(layout, manifest_digest, (config_digest, layer_digest))


def pulled_manifest_digest(layout: Path) -> str:
    (entry,) = json.loads((layout / "index.json").read_text())["manifests"]
    return str(entry["digest"])


# --- Registries -------------------------------------------------------------------------------


@dataclass
class Registry:
    """A running `docker-registry serve <config>`."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path
    storage: Path | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def requests(self) -> list[tuple[str, str, str, str]]:
        """(method, path, status, user agent) of every /v2/ request in the access log."""
        return [match.groups() for match in _ACCESS_LINE.finditer(self.log.read_text())]  # type: ignore[misc]

    def stop(self) -> None:
        if self.process.poll() is None:
            stop(self.process)


def start_registry(
    config_text: str, work: Path, name: str, port: int, env: dict[str, str] | None = None
) -> Registry:
    config = work / f"{name}.yml"
    config.write_text(config_text)
    log = work / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [program("docker-registry"), "serve", str(config)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            # Only what the test hands over: no credentials from the caller's environment.
            env={"PATH": os.environ.get("PATH", ""), "HOME": str(work), **(env or {})},
        )
    registry = Registry(port, process, log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{name} exited:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{registry.url}/v2/", timeout=1):
                return registry
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.02)
    registry.stop()
    raise AssertionError(f"{name} did not answer on {registry.address}:\n{log.read_text()}")


def start_upstream(work: Path) -> Registry:
    """A plain registry standing in for Docker Hub."""
    port = free_port()
    storage = work / "upstream-storage"
    config = (
        "version: 0.1\n"
        f"storage: {{filesystem: {{rootdirectory: {storage}}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    registry = start_registry(config, work, "upstream", port)
    registry.storage = storage
    return registry


def start_mirror(
    work: Path,
    remote_url: str,
    storage: MirrorStorage | None = None,
    env: dict[str, str] | None = None,
    name: str = "mirror",
) -> Registry:
    """The mirror, started with the config.yml the component deploys (storage aside)."""
    port = free_port()
    storage = storage or {"filesystem": {"root_directory": str(work / f"{name}-storage")}}
    config = render_distribution_config(
        storage, remote_url=remote_url, listen_address=f"127.0.0.1:{port}"
    )
    registry = start_registry(config, work, name, port, env)
    if "filesystem" in storage:
        registry.storage = Path(storage["filesystem"]["root_directory"])
    return registry


def wait_until_cached(mirror: Registry, image: OciImage) -> None:
    """Distribution 2.8 stores a missed blob in the background after serving it."""
    assert mirror.storage is not None
    blobs = mirror.storage / "docker" / "registry" / "v2" / "blobs" / "sha256"
    paths = [
        blobs / d.removeprefix("sha256:")[:2] / d.removeprefix("sha256:") / "data"
        for d in image.blob_digests
    ]
    deadline = time.monotonic() + 10
    while not all(path.is_file() for path in paths):
        assert time.monotonic() < deadline, f"blobs never stored:\n{mirror.log.read_text()}"
        time.sleep(0.01)


# --- skopeo -------------------------------------------------------------------------------


def skopeo(work: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    policy = work / "policy.json"
    if not policy.exists():
        policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    return subprocess.run(
        [program("skopeo"), "--policy", str(policy), *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(work)},
        check=False,
    )


def push(work: Path, image: OciImage, registry: Registry) -> None:
    result = skopeo(
        work,
        "copy",
        "--dest-tls-verify=false",
        image.reference,
        f"docker://{registry.address}/{REPOSITORY}:{TAG}",
    )
    assert result.returncode == 0, result.stderr


def pull(
    work: Path, registry: Registry, into: Path
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Copies the image out of `registry` (as a node pulls it); returns the result and seconds."""
    shutil.rmtree(into, ignore_errors=True)
    started = time.perf_counter()
    result = skopeo(
        work,
        "copy",
        "--src-tls-verify=false",
        f"docker://{registry.address}/{REPOSITORY}:{TAG}",
        f"oci:{into}:{TAG}",
    )
    return result, time.perf_counter() - started


# --- An upstream that wants a Docker Hub style token -----------------------------------------


@dataclass
class TokenUpstream:
    """Docker Hub's auth flow in front of a plain registry: 401 with a Bearer challenge, a token
    endpoint that wants HTTP basic credentials, then requests with the token are relayed."""

    username: str
    password: str
    backend: Registry
    port: int = field(default_factory=free_port)
    token_requests: list[str] = field(default_factory=list)
    token: str = "fleet-test-token"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def authorized(self, header: str | None) -> bool:
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return header == f"Basic {expected}"


def _handler(upstream: TokenUpstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _challenge(self) -> None:
            self.send_response(401)
            self.send_header(
                "WWW-Authenticate",
                f'Bearer realm="{upstream.url}/token",service="fleet-test"',
            )
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _relay(self, method: str) -> None:
            if self.path.startswith("/token"):
                header = self.headers.get("Authorization")
                upstream.token_requests.append(header or "")
                if not upstream.authorized(header):
                    self._challenge()
                    return
                body = json.dumps({"token": upstream.token, "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if self.headers.get("Authorization") != f"Bearer {upstream.token}":
                self._challenge()
                return
            connection = http.client.HTTPConnection("127.0.0.1", upstream.backend.port, timeout=30)
            # The mirror sends one Accept header per manifest type it takes.
            accept = ", ".join(self.headers.get_all("Accept", []))
            connection.request(method, self.path, headers={"Accept": accept})
            response = connection.getresponse()
            body = response.read()
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() in ("content-type", "content-length", "docker-content-digest"):
                    self.send_header(name, value)
            self.end_headers()
            if method == "GET":
                self.wfile.write(body)
            connection.close()

        def do_GET(self) -> None:
            self._relay("GET")

        def do_HEAD(self) -> None:
            self._relay("HEAD")

    return Handler


@contextmanager
def serving(upstream: TokenUpstream) -> Iterator[TokenUpstream]:
    server = ThreadingHTTPServer(("127.0.0.1", upstream.port), _handler(upstream))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield upstream
    finally:
        server.shutdown()
        server.server_close()


# --- An S3 bucket with ACLs disabled: moto behind a proxy that enforces BucketOwnerEnforced ----

ALLOWED_ACL = "bucket-owner-full-control"
ACL_REFUSAL = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessControlListNotSupported</Code>'
    b"<Message>The bucket does not allow ACLs</Message></Error>"
)
STORE_KEY_ID = "AKIAMIRRORTEST000001"
STORE_SECRET = "mirror-test-secret"
BUCKET = "fleet-cache"


@dataclass
class AclEnforcingStore:
    """moto's S3, reached through a proxy that answers like a bucket whose object ownership is
    `BucketOwnerEnforced` (CacheBucket's): a write carrying an ACL other than
    bucket-owner-full-control, any grant header, or a PUT of an `acl` subresource fails with
    400 AccessControlListNotSupported and never reaches the bucket (S3 User Guide, "Troubleshooting
    object ownership"). moto alone accepts every ACL."""

    moto: subprocess.Popen[bytes]
    moto_port: int
    server: ThreadingHTTPServer
    writes: list[tuple[str, str, str | None, int]] = field(default_factory=list)
    """(method, path, x-amz-acl, status) of every PUT and POST."""

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=STORE_KEY_ID,
            aws_secret_access_key=STORE_SECRET,
            region_name="us-east-1",
        )

    def keys(self, prefix: str) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return [entry["Key"] for entry in listed.get("Contents", [])]

    def delete(self, keys: list[str]) -> None:
        client = self.client()
        for key in keys:
            client.delete_object(Bucket=BUCKET, Key=key)


def _refuses_acl(method: str, path: str, headers: Any) -> bool:
    if method not in ("PUT", "POST"):
        return False
    acl = headers.get("x-amz-acl")
    grants = [name for name in headers if name.lower().startswith("x-amz-grant-")]
    subresource = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query, keep_blank_values=True)
    return (acl is not None and acl != ALLOWED_ACL) or bool(grants) or "acl" in subresource


def _acl_handler(store: AclEnforcingStore) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive and `Expect: 100-continue`, as S3 does

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    # The registry hung up before reading the answer: a cancelled pull, or a
                    # background write of a test that already stopped it. What the store did
                    # is in store.writes (recorded before answering), which tests assert on; a
                    # traceback from this thread would fail nothing, only clutter the run.
                    self.close_connection = True

        def _relay(self) -> None:
            body = self._body()
            acl = self.headers.get("x-amz-acl")
            if _refuses_acl(self.command, self.path, self.headers):
                if self.command in ("PUT", "POST"):
                    store.writes.append((self.command, self.path, acl, 400))
                self._answer(400, [("Content-Type", "application/xml")], ACL_REFUSAL)
                return
            # The signed headers (Host included) go on unchanged; moto checks no signature.
            headers = {
                name: value
                for name, value in self.headers.items()
                if name.lower() not in ("transfer-encoding", "expect", "connection")
            }
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                headers["Content-Length"] = str(len(body))
            connection = http.client.HTTPConnection("127.0.0.1", store.moto_port, timeout=30)
            try:
                connection.request(self.command, self.path, body=body or None, headers=headers)
                response = connection.getresponse()
                answer = response.read()
                if self.command in ("PUT", "POST"):
                    store.writes.append((self.command, self.path, acl, response.status))
                self._answer(response.status, response.getheaders(), answer)
            finally:
                connection.close()

        def do_GET(self) -> None:
            self._relay()

        def do_HEAD(self) -> None:
            self._relay()

        def do_PUT(self) -> None:
            self._relay()

        def do_POST(self) -> None:
            self._relay()

        def do_DELETE(self) -> None:
            self._relay()

    return Handler


@contextmanager
def acl_enforcing_store(work: Path) -> Iterator[AclEnforcingStore]:
    port = free_port()
    log = work / "moto.log"
    with log.open("wb") as sink:
        moto = subprocess.Popen(
            [program("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.02)
        store = AclEnforcingStore(moto, port, server)
        server.RequestHandlerClass = _acl_handler(store)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        store.client().create_bucket(Bucket=BUCKET)
        yield store
    finally:
        server.shutdown()
        server.server_close()
        stop(moto, timeout=10)


def wait_until_quiet(store: AclEnforcingStore, prefix: str) -> None:
    """Until nothing new appears under `prefix` for half a second (2.8 stores a missed blob
    in the background, after serving it)."""
    deadline = time.monotonic() + 10
    keys = store.keys(prefix)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if (latest := store.keys(prefix)) == keys:
            return
        keys = latest
    raise AssertionError(f"the mirror keeps writing under {prefix}")


def object_writes(store: AclEnforcingStore, prefix: str) -> list[tuple[str, str, str | None, int]]:
    """The PUTs and POSTs on objects under `prefix`."""
    return [write for write in store.writes if write[1].startswith(f"/{BUCKET}/{prefix}")]


def takes_an_acl(path: str) -> bool:
    """Whether an object write can carry an ACL: not UploadPart, not CompleteMultipartUpload
    (their ACL is CreateMultipartUpload's)."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query, keep_blank_values=True)
    return "partNumber" not in query and not ("uploadId" in query and "uploads" not in query)


def s3_storage(store: AclEnforcingStore, prefix: str) -> MirrorStorage:
    return {
        "s3": {
            "bucket": BUCKET,
            "region": "us-east-1",
            "prefix": prefix,
            "endpoint": store.endpoint,
            "force_path_style": True,
        }
    }


def start_s3_mirror(
    work: Path, upstream: Registry, store: AclEnforcingStore, prefix: str
) -> Registry:
    """The mirror with the storage section the component renders, keys from the environment."""
    return start_mirror(
        work,
        upstream.url,
        s3_storage(store, prefix),
        env={STORAGE_ACCESS_KEY_ENV: STORE_KEY_ID, STORAGE_SECRET_KEY_ENV: STORE_SECRET},
        name=f"mirror-{prefix.replace('/', '-')}",
    )


def wait_until_stored(
    store: AclEnforcingStore, prefix: str, image: OciImage, mirror: Registry
) -> None:
    """Every blob of `image` is in the bucket under `prefix` (the driver's blob layout)."""
    wanted = {digest.removeprefix("sha256:") for digest in image.blob_digests}
    deadline = time.monotonic() + 10
    while True:
        stored = {key.split("/")[-2] for key in store.keys(f"{prefix}/") if key.endswith("/data")}
        if wanted <= stored:
            return
        assert time.monotonic() < deadline, mirror.log.read_text()
        time.sleep(0.05)


# --- containerd -------------------------------------------------------------------------------

CONTAINERD_DIRECTORY = Path("/opt/containerd-unstable/usr/bin")
"""Where .ci/run unpacks Debian's containerd 2.1+ (bookworm's own is 1.6, without
`dial_timeout`)."""


def containerd_program(name: str) -> str:
    path = CONTAINERD_DIRECTORY / name
    found = str(path) if path.is_file() else shutil.which(name)
    version = (
        subprocess.run(
            [found or name, "--version"], capture_output=True, text=True, check=False
        ).stdout
        if found
        else ""
    )
    if not re.search(r" v?2\.([1-9]|\d\d)", version):
        pytest.fail(f"{name} 2.1 or newer is missing (found {version.strip()!r}): see .ci/run")
    if os.geteuid() != 0:
        pytest.fail("containerd runs as root: run the integration tests as root, as CI does")
    assert found is not None
    return found


@dataclass
class Containerd:
    address: str
    process: subprocess.Popen[bytes]
    log: Path

    def pull(self, reference: str, hosts_dir: Path) -> subprocess.CompletedProcess[str]:
        """`ctr image pull --hosts-dir`: the transfer service resolves hosts with the same
        `config.ConfigureHosts` as the CRI plugin's pulls with `config_path`
        (core/transfer/registry/registry.go; internal/cri/server/images/image_pull.go)."""
        return subprocess.run(
            [
                containerd_program("ctr"),
                "--address",
                self.address,
                "image",
                "pull",
                "--hosts-dir",
                str(hosts_dir),
                "--snapshotter",
                "native",
                reference,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@contextmanager
def running_containerd(work: Path) -> Iterator[Containerd]:
    # A unix socket path must stay under 108 bytes: pytest's directories are long.
    socket_dir = Path(tempfile.mkdtemp(prefix="ctrd-"))
    config = work / "containerd.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "version": 3,
                "root": str(work / "containerd-root"),
                "state": str(socket_dir / "state"),
                # Pulls need neither the CRI plugins nor their CNI.
                "disabled_plugins": [
                    "io.containerd.grpc.v1.cri",
                    "io.containerd.cri.v1.images",
                    "io.containerd.cri.v1.runtime",
                ],
                "grpc": {"address": str(socket_dir / "containerd.sock")},
                # Unpack with the snapshotter that needs no mounts.
                "plugins": {
                    "io.containerd.transfer.v1.local": {
                        "unpack_config": [{"platform": "linux/amd64", "snapshotter": "native"}]
                    }
                },
            }
        )
    )
    log = work / "containerd.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [containerd_program("containerd"), "--config", str(config)],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    daemon = Containerd(str(socket_dir / "containerd.sock"), process, log)
    try:
        deadline = time.monotonic() + 15
        while not Path(daemon.address).exists():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield daemon
    finally:
        stop(process, timeout=10)
        shutil.rmtree(socket_dir, ignore_errors=True)


@contextmanager
def unreachable_address() -> Iterator[str]:
    """An address whose SYNs go unanswered, like a ClusterIP not yet routable on a new node: a
    listening socket with a full backlog (Linux then drops new SYNs)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        yield f"127.0.0.1:{port}"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


# --- Fixtures -------------------------------------------------------------------------------


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def upstream(work: Path) -> Iterator[Registry]:
    registry = start_upstream(work)
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclEnforcingStore]:
    """One ACL-enforcing bucket per test process; each test keeps to its own prefixes."""
    with acl_enforcing_store(tmp_path_factory.mktemp("store")) as started:
        yield started


@pytest.fixture
def image(work: Path) -> OciImage:
    return build_image(work / "image", 2 * MIB)


# --- Tests ------------------------------------------------------------------------------------


def test_second_pull_comes_from_the_mirror_not_the_upstream(
    work: Path, upstream: Registry, image: OciImage, record_property: Any
) -> None:
    push(work, image, upstream)
    mirror = start_mirror(work, upstream.url)
    try:
        before = len(upstream.requests())
        first, first_seconds = pull(work, mirror, work / "pull-1")
        assert first.returncode == 0, first.stderr + mirror.log.read_text()
        assert pulled_manifest_digest(work / "pull-1") == image.manifest_digest
        fetched = {
            path
            for method, path, _, agent in upstream.requests()[before:]
            if method == "GET" and MIRROR_USER_AGENT in agent
        }
        assert {f"/v2/{REPOSITORY}/blobs/{digest}" for digest in image.blob_digests} <= fetched
        wait_until_cached(mirror, image)

        before = len(upstream.requests())
        second, second_seconds = pull(work, mirror, work / "pull-2")
        assert second.returncode == 0, second.stderr
        assert pulled_manifest_digest(work / "pull-2") == image.manifest_digest
        # The tag is still checked upstream, with a HEAD (proxy/proxytagservice.go, Get; the
        # client's tags.Get sends HEAD first): Docker Hub does not count a HEAD as a pull.
        # Manifest and blobs come from the mirror's storage.
        asked = [(method, path) for method, path, _, _ in upstream.requests()[before:]]
        assert ("HEAD", f"/v2/{REPOSITORY}/manifests/{TAG}") in asked
        assert not [request for request in asked if request[0] == "GET" and request[1] != "/v2/"]

        # With the upstream gone the cached tag is served (tag lookup falls back to local).
        upstream.stop()
        third, third_seconds = pull(work, mirror, work / "pull-3")
        assert third.returncode == 0, third.stderr + mirror.log.read_text()
        assert pulled_manifest_digest(work / "pull-3") == image.manifest_digest
        with urllib.request.urlopen(f"{mirror.url}/v2/", timeout=2) as ready:
            assert ready.status == 200  # the readiness probe does not depend on the upstream
    finally:
        mirror.stop()
    record_property("first_pull_seconds", round(first_seconds, 3))
    record_property("second_pull_seconds", round(second_seconds, 3))
    record_property("offline_pull_seconds", round(third_seconds, 3))


def test_upstream_credentials_come_only_from_the_environment(
    work: Path, upstream: Registry, image: OciImage
) -> None:
    push(work, image, upstream)
    password = "dckr_pat_NotAReal-Token_123"
    with serving(TokenUpstream("fleet-mirror", password, upstream)) as hub:
        mirror = start_mirror(
            work,
            hub.url,
            env={PROXY_USERNAME_ENV: "fleet-mirror", PROXY_PASSWORD_ENV: password},
        )
        anonymous = start_mirror(work, hub.url, name="anonymous-mirror")
        try:
            assert password not in (work / "mirror.yml").read_text()
            result, _ = pull(work, mirror, work / "pull")
            assert result.returncode == 0, result.stderr + mirror.log.read_text()
            assert pulled_manifest_digest(work / "pull") == image.manifest_digest
            assert any(hub.authorized(header) for header in hub.token_requests)
            assert password not in mirror.log.read_text()

            refused, _ = pull(work, anonymous, work / "refused")
            assert refused.returncode != 0
        finally:
            mirror.stop()
            anonymous.stop()


def test_the_enforcing_store_refuses_acls_as_s3_does_with_acls_disabled(
    store: AclEnforcingStore,
) -> None:
    s3 = store.client()
    s3.put_object(Bucket=BUCKET, Key="acl-check/no-acl", Body=b"x")
    s3.put_object(Bucket=BUCKET, Key="acl-check/owner", Body=b"x", ACL=ALLOWED_ACL)
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=BUCKET, Key="acl-check/private", Body=b"x", ACL="private")

    assert refused.value.response["Error"]["Code"] == "AccessControlListNotSupported"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert [
        (path.split("?")[0], status) for _, path, _, status in object_writes(store, "acl-check/")
    ] == [
        (f"/{BUCKET}/acl-check/no-acl", 200),
        (f"/{BUCKET}/acl-check/owner", 200),
        (f"/{BUCKET}/acl-check/private", 400),
    ]
    assert store.keys("acl-check/") == ["acl-check/no-acl", "acl-check/owner"]


def test_the_mirror_stores_layers_in_a_bucket_with_acls_disabled(
    work: Path, upstream: Registry, image: OciImage, store: AclEnforcingStore
) -> None:
    push(work, image, upstream)
    mirror = start_s3_mirror(work, upstream, store, "registry-mirror")
    try:
        assert STORE_SECRET not in (work / "mirror-registry-mirror.yml").read_text()
        result, seconds = pull(work, mirror, work / "pull")
        assert result.returncode == 0, result.stderr + mirror.log.read_text()
        assert pulled_manifest_digest(work / "pull") == image.manifest_digest
        wait_until_stored(store, "registry-mirror", image, mirror)
    finally:
        mirror.stop()
    keys = store.keys("registry-mirror")

    # Every write that can set an ACL carried the one the bucket accepts, and none was refused
    # (2.8's driver sends x-amz-acl on PutObject, CreateMultipartUpload and CopyObject like
    # 3.1.1's, registry/storage/driver/s3-aws/s3.go `getACL`).
    writes = object_writes(store, "registry-mirror/")
    assert writes
    assert {status for *_, status in writes} == {200}
    assert {acl for _, path, acl, _ in writes if takes_an_acl(path)} == {ALLOWED_ACL}
    # Everything under the prefix the IAM policy and the lifecycle rule name.
    assert all(key.startswith("registry-mirror/docker/registry/v2/") for key in keys)
    print(f"\nmeasured: pull through the mirror on the ACL-enforcing store: {seconds:.2f} s")


def test_blobs_deleted_from_the_store_are_fetched_again_by_the_same_mirror(
    work: Path, upstream: Registry, image: OciImage, store: AclEnforcingStore
) -> None:
    """What a lifecycle rule or the expiry job does to a running mirror: first only the blob
    data goes (links written later survive), then everything under the prefix."""
    push(work, image, upstream)
    mirror = start_s3_mirror(work, upstream, store, "expiring")
    try:
        first, _ = pull(work, mirror, work / "pull-1")
        assert first.returncode == 0, first.stderr
        wait_until_stored(store, "expiring", image, mirror)

        store.delete([key for key in store.keys("expiring/") if "/blobs/" in key])
        second, _ = pull(work, mirror, work / "pull-2")
        wait_until_stored(store, "expiring", image, mirror)
        store.delete(store.keys("expiring/"))
        third, _ = pull(work, mirror, work / "pull-3")
    finally:
        mirror.stop()

    # With `cache.blobdescriptor: inmemory` the second pull fails with "unexpected EOF": the
    # registry remembers the blobs and streams objects that are gone.
    for result, layout in ((second, "pull-2"), (third, "pull-3")):
        assert result.returncode == 0, result.stderr + mirror.log.read_text()
        assert pulled_manifest_digest(work / layout) == image.manifest_digest


def test_the_expiry_job_deletes_only_old_objects_under_the_mirrors_prefix(
    work: Path, store: AclEnforcingStore
) -> None:
    # What the job finds: the registry's objects under its prefix, and others beside it. (That a
    # running mirror fetches deleted layers again is test_blobs_deleted_from_the_store_....)
    s3 = store.client()
    old = ["expiry/mirror/docker/registry/v2/blobs/sha256/ab/abcd/data", "expiry/mirror/x"]
    others = ["expiry/runner-cache/project/1/deps-protected", "expiry/mirror-x/kept"]
    for key in old + others:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"stored")
    # moto's LastModified has whole seconds: the old objects are at least 2 s old, the young one
    # at most 1 s (truncated) when the job looks.
    time.sleep(2.2)
    s3.put_object(Bucket=BUCKET, Key="expiry/mirror/young", Body=b"too young")
    storage = s3_storage(store, "expiry/mirror")["s3"]
    command = expiry_command(storage, 30)
    # The job's age in days, scaled to seconds so the test need not wait for days.
    command[command.index("--min-age") + 1] = "2s"
    # The job's environment, its Secret's keys resolved as the kubelet would.
    secret = {"storage-access-key-id": STORE_KEY_ID, "storage-secret-access-key": STORE_SECRET}
    environment = {
        entry["name"]: entry.get("value") or secret[entry["valueFrom"]["secretKeyRef"]["key"]]
        for entry in expiry_environment(storage, "registry-mirror-credentials")
    }

    expired = subprocess.run(
        [program("rclone"), *command[1:]],
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(work), **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert expired.returncode == 0, expired.stderr
    assert sorted(store.keys("expiry/")) == sorted([*others, "expiry/mirror/young"])


def test_the_mirror_does_not_start_while_its_upstream_is_unreachable(work: Path) -> None:
    # NewRegistryPullThroughCache asks the upstream for its auth challenge at start and the app
    # panics on an error (registry/proxy/proxyauth.go getAuthURLs; handlers/app.go): a pod that
    # starts while Docker Hub is unreachable restarts until it is reachable again.
    closed = free_port()
    port = free_port()
    config = render_distribution_config(
        {"filesystem": {"root_directory": str(work / "storage")}},
        remote_url=f"http://127.0.0.1:{closed}",
        listen_address=f"127.0.0.1:{port}",
    )
    (work / "mirror.yml").write_text(config)
    result = subprocess.run(
        [program("docker-registry"), "serve", str(work / "mirror.yml")],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(work)},
        check=False,
    )
    assert result.returncode != 0
    assert "connection refused" in result.stdout + result.stderr


def test_containerd_pulls_past_an_unreachable_mirror_within_its_dial_timeout(
    work: Path, upstream: Registry, image: OciImage
) -> None:
    push(work, image, upstream)
    reference = f"{upstream.address}/{REPOSITORY}:{TAG}"
    with unreachable_address() as mirror, running_containerd(work) as containerd:
        hosts = work / "certs.d" / upstream.address / "hosts.toml"
        hosts.parent.mkdir(parents=True)
        # The node's hosts.toml, with the upstream in Docker Hub's place.
        hosts.write_text(containerd_hosts_toml(f"http://{mirror}", upstream_url=upstream.url))
        started = time.monotonic()
        pulled = containerd.pull(reference, work / "certs.d")
        elapsed = time.monotonic() - started

    assert pulled.returncode == 0, pulled.stdout + pulled.stderr + containerd.log.read_text()
    # containerd tries the mirror first for the tag, the manifest and each blob, and moves on
    # to `server` once the dial times out (core/remotes/docker/resolver.go): three rounds at
    # least (the config and the layer may dial together). Without dial_timeout each would wait
    # the default dialer's 30 s (core/remotes/docker/config/hosts.go).
    dial_timeout = 0.5
    assert MIRROR_DIAL_TIMEOUT == "500ms"
    assert 3 * dial_timeout * 0.9 <= elapsed < 10, pulled.stdout
    fetched = {path for method, path, _, agent in upstream.requests() if "containerd" in agent}
    assert f"/v2/{REPOSITORY}/manifests/{TAG}" in fetched
    assert {f"/v2/{REPOSITORY}/blobs/{digest}" for digest in image.blob_digests} <= fetched
    print(f"\nmeasured: containerd pull past an unreachable mirror: {elapsed:.2f} s")
