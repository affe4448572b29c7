"""Pull times through the registry mirror: the first (cold) pull versus the second (warm) one.

    python benchmarks/mirror_pull.py --layer-mib 64 --repetitions 5 --upstream-mbit 200

The same machinery as tests/integration/test_registry_mirror.py: an image written as an OCI
layout, a plain `docker-registry` as the upstream, the mirror started with the config.yml
`mirror_config` renders (filesystem storage), skopeo pulling as a node would. Each repetition
starts a mirror with empty storage, pulls twice and times both. `--upstream-mbit` puts a
bandwidth-limited TCP relay between mirror and upstream, standing in for the NAT gateway and the
internet path to Docker Hub. A measurement tool, not a test: it prints figures, asserts nothing
about speed.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.test_registry_mirror import (
    MIB,
    build_image,
    pull,
    push,
    start_mirror,
    start_upstream,
    wait_until_cached,
)

CHUNK = 64 * 1024


class Link:
    """One shared link of `mbit` Mbit/s: every chunk waits for its slot, whatever connection."""

    def __init__(self, mbit: float) -> None:
        self.seconds_per_byte = 8 / (mbit * 1_000_000)
        self.free_at = time.monotonic()
        self.lock = threading.Lock()
        self.bytes_sent = 0

    def send(self, connection: socket.socket, data: bytes) -> None:
        with self.lock:
            start = max(self.free_at, time.monotonic())
            self.free_at = start + len(data) * self.seconds_per_byte
            self.bytes_sent += len(data)
            done = self.free_at
        connection.sendall(data)
        time.sleep(max(0.0, done - time.monotonic()))


def _pump(source: socket.socket, target: socket.socket, link: Link | None) -> None:
    try:
        while data := source.recv(CHUNK):
            if link:
                link.send(target, data)
            else:
                target.sendall(data)
    except OSError:
        pass
    finally:
        for side in (source, target):
            with suppress(OSError):
                side.shutdown(socket.SHUT_RDWR)


@contextmanager
def relay(upstream_port: int, link: Link) -> Iterator[int]:
    """A TCP relay to `upstream_port` over `link` towards the mirror."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])
    stopping = threading.Event()

    def accept() -> None:
        while not stopping.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", upstream_port))
            threading.Thread(target=_pump, args=(client, server, None), daemon=True).start()
            threading.Thread(target=_pump, args=(server, client, link), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield port
    finally:
        stopping.set()
        listener.close()


def measure(layer_mib: int, repetitions: int, upstream_mbit: float) -> None:
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        image = build_image(work / "image", layer_mib * MIB)
        upstream = start_upstream(work)
        try:
            push(work, image, upstream)
            # Unlimited runs count the bytes too, on a link faster than loopback matters.
            link = Link(upstream_mbit or 1_000_000)
            with relay(upstream.port, link) as port:
                cold, warm, cold_bytes, warm_bytes = [], [], [], []
                for repetition in range(repetitions):
                    mirror = start_mirror(
                        work, f"http://127.0.0.1:{port}", name=f"mirror-{repetition}"
                    )
                    try:
                        sent = link.bytes_sent
                        first, first_seconds = pull(work, mirror, work / "pull")
                        assert first.returncode == 0, first.stderr
                        wait_until_cached(mirror, image)
                        cold_bytes.append(link.bytes_sent - sent)
                        sent = link.bytes_sent
                        second, second_seconds = pull(work, mirror, work / "pull")
                        assert second.returncode == 0, second.stderr
                        warm_bytes.append(link.bytes_sent - sent)
                    finally:
                        mirror.stop()
                    cold.append(first_seconds)
                    warm.append(second_seconds)
        finally:
            upstream.stop()
    speed = f"{upstream_mbit:g} Mbit/s" if upstream_mbit else "loopback, unlimited"
    print(f"layer {layer_mib} MiB, {repetitions} repetitions, upstream link {speed}")
    for label, times in (("first pull (cold mirror)", cold), ("second pull (warm mirror)", warm)):
        print(
            f"  {label:26} median {statistics.median(times):7.3f} s"
            f"   min {min(times):7.3f} s   max {max(times):7.3f} s"
        )
    speed_up = statistics.median(cold) / statistics.median(warm)
    print(f"  speed-up of the second pull: {speed_up:.1f}x")
    print(
        f"  upstream bytes per pull: first {statistics.median(cold_bytes) / MIB:.1f} MiB, "
        f"second {statistics.median(warm_bytes) / 1024:.1f} KiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layer-mib", type=int, default=64, help="size of the image's layer")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument(
        "--upstream-mbit",
        type=float,
        default=0,
        help="limit the upstream link to this many Mbit/s (0: loopback speed)",
    )
    arguments = parser.parse_args()
    measure(arguments.layer_mib, arguments.repetitions, arguments.upstream_mbit)


if __name__ == "__main__":
    main()
