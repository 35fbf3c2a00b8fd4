"""SIGTERM with sessions open (issue 15, item 8; RELIABILITY L-05): the daemon closes its
exec sessions and followers first, exits, and `DaemonStopped` is the last event of its run.

I/O: a real shipslogd on its own state root (a busybox container, five attached `exec`
sessions and an `events` follower over its unix socket); reads the log after the daemon exits.
"""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import pytest

from engine.cli.client import Client, DaemonUnreachable
from engine.testing.daemon import DaemonProcess
from events.store import EventStore

pytestmark = pytest.mark.kernel

SAFETY = 60.0  # seconds: a hung daemon fails the test instead of hanging CI; not a timing check
SESSIONS = 5


def open_exec_session(c: Client, cid: str) -> socket.socket:
    """An attached `exec sleep 100` (as `docker exec CTR sleep 100` holds it open)."""
    exec_id = c.post_json(f"/containers/{cid}/exec", body={
        "Cmd": ["sleep", "100"], "AttachStdout": True, "AttachStderr": True})["Id"]
    return c.hijack("POST", f"/exec/{exec_id}/start", body={"Detach": False, "Tty": False})


def wait_running_execs(c: Client, cid: str, count: int) -> None:
    """Until `count` execs of `cid` run (ExecStarted is recorded before runc runs them)."""
    deadline = time.monotonic() + SAFETY
    while time.monotonic() < deadline:
        execs = c.get_json(f"/containers/{cid}/json").get("ExecIDs") or []
        running = [x for x in execs if c.get_json(f"/exec/{x}/json")["Running"]]
        if len(running) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} exec sessions started")


def events_of_last_run(root: Path) -> list[str]:
    store = EventStore.open(root / "events.db", readonly=True)
    try:
        types = [env.type for env in store.read()]
    finally:
        store.close()
    last_start = max(i for i, t in enumerate(types) if t == "DaemonStarted")
    return types[last_start:]


def test_sigterm_closes_sessions_first_and_daemon_stopped_is_last(
    daemon: DaemonProcess,
) -> None:
    c = daemon.client()
    cid = c.post_json("/containers/create", {"name": "shutdown"},
                      {"Image": "busybox", "Cmd": ["sleep", "600"]})["Id"]
    c.post_json(f"/containers/{cid}/start")
    sessions = [open_exec_session(c, cid) for _ in range(SESSIONS)]
    try:
        with c.stream("GET", "/events") as chunks:
            wait_running_execs(c, cid, SESSIONS)
            assert daemon.proc is not None
            started = time.monotonic()
            daemon.proc.terminate()  # our own daemon, by its pid
            assert daemon.wait_exit(timeout=SAFETY) == 0
            took = time.monotonic() - started
            with contextlib.suppress(DaemonUnreachable):
                for _ in chunks:  # the follower's stream ends with the daemon
                    pass
        for sock in sessions:
            sock.settimeout(SAFETY)
            while sock.recv(65536):  # the daemon ended the session; it was not left hanging
                pass
    finally:
        for sock in sessions:
            sock.close()
    print(f"shutdown with {SESSIONS} exec sessions and a follower took {took:.2f} s")
    run = events_of_last_run(daemon.root)
    assert run.count("ExecExited") == SESSIONS  # every session's end is on record …
    assert run[-1] == "DaemonStopped", run[-8:]  # … before the daemon's last word
    assert run.count("DaemonStopped") == 1
    daemon.start()  # the fixture removes the container through a running daemon
