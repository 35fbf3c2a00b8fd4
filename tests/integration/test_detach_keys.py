"""Detach keys on the real kernel with Docker's CLI in a real terminal: ctrl-p ctrl-q leaves
`docker run -it` and `docker attach` with the container still running; custom keys work.
(That typing which only starts the sequence reaches the container: tests/unit/test_escape.py.)"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from engine.testing.dockercli import docker, needs_docker

pytestmark = [pytest.mark.kernel, needs_docker]


class Terminal:
    """A docker CLI process on a pty we hold the master of."""

    def __init__(self, daemon: Any, *args: str, argv0: str = "docker") -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([argv0, *args], stdin=slave, stdout=slave,
                                     stderr=slave, env=daemon.cli_env(), close_fds=True)
        os.close(slave)
        self.seen = b""

    def expect(self, text: bytes, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            assert time.monotonic() < deadline, f"never saw {text!r}: {self.seen[-400:]!r}"
            self._read(0.1)

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 4096)
        except OSError:  # the other side closed
            return False
        self.seen += chunk
        return bool(chunk)

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, timeout: float = 20) -> int:
        try:
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None:
                if time.monotonic() > deadline:
                    self.proc.kill()
                    self.proc.wait()
                    raise AssertionError(f"docker did not exit: {self.seen[-400:]!r}")
                self._read(0.1)
            while self._read(0.1):  # what it printed last (an error, if any)
                pass
            return self.proc.returncode
        finally:
            os.close(self.master)


def status(daemon: Any, name: str) -> str:
    return docker(daemon, "inspect", "-f", "{{.State.Status}}", name).stdout.strip()


def test_ctrl_p_ctrl_q_detaches_and_attach_comes_back(daemon: Any) -> None:
    term = Terminal(daemon, "run", "-it", "--name", "dk", "busybox", "sh")
    term.expect(b"# ")
    term.send(b"echo first-session\n")
    term.expect(b"\nfirst-session")
    term.send(b"\x10\x11")
    assert term.wait() == 0
    assert status(daemon, "dk") == "running"

    term = Terminal(daemon, "attach", "--detach-keys", "ctrl-a,x", "dk")
    time.sleep(0.5)  # attached
    term.send(b"\x01x")
    term.wait()  # docker attach reports the detach as "read escape sequence", status 1
    assert b"read escape sequence" in term.seen or term.proc.returncode == 0
    assert status(daemon, "dk") == "running"

    # Our CLI, like Docker's, sees the keys on its side with a terminal and exits 0.
    term = Terminal(daemon, "attach", "dk", argv0=str(Path(sys.executable).parent / "shipslog"))
    time.sleep(0.5)
    term.send(b"\x10\x11")
    assert term.wait() == 0
    assert status(daemon, "dk") == "running"
    docker(daemon, "rm", "-f", "dk")
