"""Slow clients against a real daemon (issue 15, item 4; RELIABILITY I-05): hundreds of
connections trickling request heads or bodies must not lock out `_ping` and `ps`, and a
trickler is closed at its deadline.

I/O: a real shipslogd on its own state root; up to 600 unix-socket connections to it from
this process (loopback only), each sending at most a few hundred bytes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.cli.client import Client
from engine.testing.daemon import DaemonProcess

pytestmark = pytest.mark.kernel

SAFETY = 60.0  # seconds: a bound so a broken server fails the test; never a timing assertion
REPO = Path(__file__).resolve().parents[2]
HEAD = b"GET /_ping HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
BODY = (b"POST /containers/create HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")


class Tricklers:
    """Connections that send a request's first bytes, then one more byte every `every`
    seconds, from one thread; each records what the server said before it closed."""

    def __init__(self, path: str, prefixes: list[bytes], every: float) -> None:
        self.every = every
        self.socks: list[socket.socket] = []
        self.replies: dict[int, bytes] = {}
        self.closed: set[int] = set()
        self._stop = threading.Event()
        for prefix in prefixes:
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(path)
            sock.sendall(prefix)
            sock.setblocking(False)
            self.socks.append(sock)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _poll(self, i: int, sock: socket.socket) -> None:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            data = None
        except OSError:
            data = b""
        if data:
            self.replies[i] = self.replies.get(i, b"") + data
        elif data == b"":
            self.closed.add(i)

    def _run(self) -> None:
        deadline = time.monotonic() + SAFETY
        while not self._stop.is_set() and time.monotonic() < deadline:
            for i, sock in enumerate(self.socks):
                if i in self.closed:
                    continue
                self._poll(i, sock)
                if i not in self.closed:
                    try:
                        sock.send(b"a")
                    except (BlockingIOError, OSError):
                        pass
            self._stop.wait(self.every)

    def wait_closed(self, count: int) -> None:
        deadline = time.monotonic() + SAFETY
        while len(self.closed) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(SAFETY)
        for sock in self.socks:
            sock.close()


def started_daemon(limits: str = "") -> Iterator[DaemonProcess]:
    d = DaemonProcess.make()
    if limits:
        d.env["SHIPSLOG_API_LIMITS"] = limits
    try:
        d.start()
        yield d
    finally:
        d.cleanup()


@pytest.fixture
def plain_daemon() -> Iterator[DaemonProcess]:
    yield from started_daemon()


@pytest.fixture
def short_deadlines() -> Iterator[DaemonProcess]:
    yield from started_daemon("header_timeout=1,body_grace=1,min_body_rate=100")


def test_600_slow_clients_do_not_lock_out_ping_and_ps(plain_daemon: DaemonProcess) -> None:
    # 300 heads and 300 bodies trickling, past the 512-connection cap (issue 15: 512 body
    # tricklers gave every other client 503 indefinitely).
    slow = Tricklers(plain_daemon.sock, [HEAD] * 300 + [BODY] * 300, every=1.0)
    try:
        c = Client(plain_daemon.host, timeout=SAFETY)
        for _ in range(5):
            ping = c.request("GET", "/_ping")
            assert (ping.status, ping.body) == (200, b"OK")
            assert c.get_json("/containers/json", {"all": True}) == []
        cli = subprocess.run(
            [sys.executable, "-m", "engine.cli", "ps"], capture_output=True, text=True,
            env=dict(os.environ, **plain_daemon.cli_env(), PYTHONPATH=str(REPO)),
            cwd=REPO, timeout=SAFETY, check=False)
        assert cli.returncode == 0, cli.stderr
        assert cli.stdout.startswith("CONTAINER ID")
        # The cap held: at least the connections past it were shed (which ones go first is
        # the policy's business: tests/unit/test_admission.py).
        slow.wait_closed(600 - 512)
        assert len(slow.closed) >= 600 - 512
    finally:
        slow.close()


def test_slow_heads_and_bodies_are_closed_at_their_deadlines(
    short_deadlines: DaemonProcess,
) -> None:
    # One byte every 0.2 s never stalls for body_timeout (60 s); it is far below 100 B/s.
    slow = Tricklers(short_deadlines.sock, [HEAD] * 10 + [BODY] * 10, every=0.2)
    try:
        slow.wait_closed(20)
        assert len(slow.closed) == 20, f"still open: {sorted(set(range(20)) - slow.closed)}"
        for i in range(20):
            assert slow.replies.get(i, b"").startswith(b"HTTP/1.1 408 "), (i, slow.replies.get(i))
    finally:
        slow.close()
