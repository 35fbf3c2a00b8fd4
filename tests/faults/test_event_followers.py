"""Load, L-05: 500 followers of `GET /events`, a fifth of them stuck (connected, never
reading). The live followers see every event of a burst of container lifecycles; the daemon
keeps answering while they all hang on (the latency of `/_ping` and of a create+start+rm is
printed with and without the followers, never asserted); its memory stays bounded (each
follower's live buffer is bounded by `events.follow`, a stuck one falls back to reading the
log when it reads again); and SIGTERM ends the daemon promptly with every stream open (a
plain exit, not the SIGKILL that `DaemonProcess.stop` falls back to after 20 s).

I/O: a daemon; 500 unix-socket connections from this process (threads for the readers).
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from pathlib import Path

import pytest

from engine.testing.daemon import DaemonProcess
from tests.faults.conftest import wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

FOLLOWERS, STUCK, BURST = 500, 100, 20
REQUEST = b"GET /events HTTP/1.1\r\nHost: d\r\n\r\n"


def open_follower(d: DaemonProcess) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # stuck ones fill up soon
    s.connect(d.sock)
    s.sendall(REQUEST)
    return s


class Reader(threading.Thread):
    """Reads one follower's stream and counts the container events it sees."""

    def __init__(self, s: socket.socket) -> None:
        super().__init__(daemon=True)
        self.s = s
        self.data = bytearray()

    def run(self) -> None:
        try:
            while chunk := self.s.recv(65536):
                self.data += chunk
        except OSError:
            pass

    def seen(self, what: bytes) -> int:
        return self.data.count(what)


def latencies(d: DaemonProcess, rounds: int = 5) -> tuple[float, float]:
    """Median seconds of `/_ping` and of create+start+rm."""
    c = d.client()
    pings, lifecycles = [], []
    for i in range(rounds):
        t0 = time.monotonic()
        c.get_json("/_ping")
        pings.append(time.monotonic() - t0)
        t0 = time.monotonic()
        cid = c.post_json("/containers/create", None,
                          {"Image": "busybox", "Cmd": ["true"], "Labels": {"probe": str(i)}})["Id"]
        c.post_json(f"/containers/{cid}/start")
        c.delete(f"/containers/{cid}", {"force": True})
        lifecycles.append(time.monotonic() - t0)
    return statistics.median(pings), statistics.median(lifecycles)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_500_followers_some_stuck(daemon: DaemonProcess) -> None:
    d = daemon
    pid = d.proc.pid  # type: ignore[union-attr]
    quiet = latencies(d)
    rss_before = rss_kb(pid)
    stuck = [open_follower(d) for _ in range(STUCK)]
    readers = [Reader(open_follower(d)) for _ in range(FOLLOWERS - STUCK)]
    for r in readers:
        r.start()
    # Every live follower has its response head (200, chunked) before the burst.
    wait_until(lambda: all(r.data.startswith(b"HTTP/1.1 200") for r in readers),
               "every follower's stream to open", timeout=120)
    loaded = latencies(d)
    c = d.client()
    for i in range(BURST):
        cid = c.post_json("/containers/create", {"name": f"burst-{i}"},
                          {"Image": "busybox", "Cmd": ["true"]})["Id"]
        c.post_json(f"/containers/{cid}/start")
        c.post_json(f"/containers/{cid}/wait")
        c.delete(f"/containers/{cid}")
    expected = BURST + 5  # the burst's destroys and the loaded probes' (5 rounds)
    wait_until(lambda: all(r.seen(b'"Action":"destroy"') >= expected for r in readers),
               "every live follower to see every destroy", timeout=120)
    counts = {r.seen(b'"Action":"destroy"') for r in readers}
    assert counts == {expected}, counts  # every event exactly once
    rss_after = rss_kb(pid)
    print(f"\n/_ping median {quiet[0] * 1000:.1f} ms alone, {loaded[0] * 1000:.1f} ms with "
          f"{FOLLOWERS} followers; create+start+rm {quiet[1] * 1000:.0f} ms vs "
          f"{loaded[1] * 1000:.0f} ms; RSS {rss_before} -> {rss_after} KiB")

    t0 = time.monotonic()
    d.proc.terminate()  # type: ignore[union-attr]
    code = d.proc.wait(20)  # type: ignore[union-attr]
    print(f"SIGTERM with {FOLLOWERS} open streams: exited {code} after "
          f"{time.monotonic() - t0:.2f} s")
    assert code == 0
    for s in stuck:
        s.close()
    for r in readers:
        r.join(10)
        r.s.close()
    d.start()  # for the fixture's cleanup and leak check
