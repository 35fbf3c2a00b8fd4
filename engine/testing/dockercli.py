"""Docker's own CLI against a test daemon (`DaemonProcess`), for tests that check we speak
the Engine API as `docker` expects.

I/O: runs the `docker` binary with DOCKER_HOST pointing at the daemon's socket.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

needs_docker = pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI")


def docker(daemon: Any, *args: str, input: bytes | str | None = None, check: bool = True,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`docker ARGS…` against `daemon`; by default a non-zero exit fails the test."""
    text = input.decode() if isinstance(input, bytes) else input
    p = subprocess.run(["docker", *args], capture_output=True, env=daemon.cli_env(),
                       input=text, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return p
