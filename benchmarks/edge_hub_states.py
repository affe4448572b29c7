"""What a job's cache requests cost at an edge whose hub refuses, drops or hangs.

    python benchmarks/edge_hub_states.py                   # the three hub states side by side
    python benchmarks/edge_hub_states.py --dir-cache-time 10s hung

The same machinery as tests/integration/test_edge_cache.py: `rclone serve s3` with the config
and command line `components/workloads/rclone.py` renders, on a fresh volume, its hub address a
stand-in that refuses, drops or hangs from the start; requests presigned like the runner's. The
store holds one object of project 9, written before the hub failed. For each state, in order: a
local hit in directories listed for the first time (HEAD+GET, as the helper restores a cache),
the same hit again, a PUT into project 9, a PUT into a new project, a miss in project 9, and
after the listings expired (`--dir-cache-time` plus a little) the local hit again. A measurement
tool, not a test: it prints figures and asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components.workloads.rclone import DEFAULT_DIR_CACHE_TIME
from tests.integration.servers import stop
from tests.integration.test_edge_cache import BUCKET, Response, StrickenHub, key, start_edge

STATES = ("refused", "dropped", "hung")
CLIENT_TIMEOUT = 600.0


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for unit in sorted(units, key=len, reverse=True):
        if duration.endswith(unit):
            return float(duration.removesuffix(unit)) * units[unit]
    raise ValueError(f"not a duration: {duration!r}")


def timed(request: Callable[[], Response]) -> str:
    started = time.monotonic()
    try:
        status: int | str = request().status
    except OSError as error:
        status = type(error).__name__
    return f"{status} in {time.monotonic() - started:.2f} s"


def measure(state: str, dir_cache_time: str, results: dict[str, dict[str, str]]) -> None:
    hub = StrickenHub(state)
    directory = Path(tempfile.mkdtemp(prefix=f"edge-{state}-"))
    local = key(9, "build-9-protected")
    (directory / "objects" / BUCKET / local).parent.mkdir(parents=True)
    (directory / "objects" / BUCKET / local).write_bytes(b"made here")
    edge = start_edge(
        directory, hub.endpoint, ("hubkey", "hubsecret"), dir_cache_time=dir_cache_time
    )
    timeout = CLIENT_TIMEOUT
    try:
        results[state] = {
            "first local hit (HEAD+GET)": timed(lambda: edge.restore(local, timeout)),
            "local hit (HEAD+GET)": timed(lambda: edge.restore(local, timeout)),
            "PUT": timed(lambda: edge.put(key(9, "test-9-protected"), b"x", timeout)),
            "PUT into a new project": timed(
                lambda: edge.put(key(10, "x-protected"), b"x", timeout)
            ),
            "miss (HEAD)": timed(lambda: edge.head(key(9, "other-protected"), timeout)),
        }
        time.sleep(seconds(dir_cache_time) + 0.5)
        results[state]["local hit after the listings expired"] = timed(
            lambda: edge.restore(local, timeout)
        )
    finally:
        stop(edge.process)
        hub.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("states", nargs="*", help=f"any of {', '.join(STATES)} (default: all)")
    parser.add_argument("--dir-cache-time", default=DEFAULT_DIR_CACHE_TIME)
    options = parser.parse_args()
    if unknown := set(options.states) - set(STATES):
        parser.error(f"unknown hub states {sorted(unknown)}: choose from {', '.join(STATES)}")
    results: dict[str, dict[str, str]] = {}
    threads = [
        threading.Thread(target=measure, args=(state, options.dir_cache_time, results))
        for state in options.states or STATES
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for state in options.states or STATES:
        print(f"hub {state}:")
        for step, figure in results.get(state, {}).items():
            print(f"  {step}: {figure}")


if __name__ == "__main__":
    main()
