"""What the integration tests need to run real programs on loopback: the program, a free
port, a wait for it to listen, and a stop that never hangs."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def program(name: str) -> str:
    """A program this test environment installs: the virtualenv's own first (rclone, moto),
    then the system's (Debian's prometheus, docker-registry, skopeo, containerd)."""
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert path, f"{name} is missing: `bash .ci/run` installs it (see README, Test)"
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until `process` listens on `port` (15 s at most), failing with its log if it exits."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited early:\n{log.read_text()}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"nothing listens on {port}:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes], timeout: float = 5) -> None:
    """Terminate `process`, killing it if it does not exit within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
