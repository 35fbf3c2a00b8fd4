"""SQLite busy/locked (RELIABILITY F-13): 100 concurrent writers through the API, CLI
commands at the same time, while a long read transaction is open on the log (another
process), an `events` follower streams, and replays (projection rebuilds) run in a loop.
Nobody sees "database is locked" or "busy"; every command succeeds; the oracle holds after.
And when another process holds the write lock past the busy timeout, the error the user
gets names that process.

I/O: a real daemon; threads calling its API; `shipslog` CLI subprocesses; a separate SQLite
connection on the daemon's log (read-only for the reader, a write lock for the holder).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from engine.cli.client import ApiError
from engine.testing import oracle
from engine.testing.daemon import REPO, DaemonProcess

pytestmark = pytest.mark.kernel

WRITERS = 100


def cli(d: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli.main", *args],
                          capture_output=True, text=True, env=d.cli_env(), cwd=REPO, timeout=120)


@pytest.mark.slow
def test_100_writers_with_a_reader_a_follower_and_replays(daemon: DaemonProcess) -> None:
    db = daemon.root / "events.db"
    reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    reader.execute("BEGIN")
    held = reader.execute("SELECT count(*) FROM events").fetchone()[0]  # snapshot held open
    follower = subprocess.Popen([sys.executable, "-m", "engine.cli.main", "events"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=daemon.cli_env(), cwd=REPO)
    stop = threading.Event()
    replay_errors: list[str] = []

    def replays() -> None:
        c = daemon.client()
        while not stop.is_set():
            report = c.get_json("/shipslog/replay")
            if not report["ok"]:
                replay_errors.append(str(report["mismatches"])[:200])

    def writer(i: int) -> str:
        c = daemon.client()
        try:
            cid = c.post_json("/containers/create", {"name": f"w{i}"},
                              {"Image": "busybox", "Cmd": ["true"],
                               "HostConfig": {"NetworkMode": "none"}})["Id"]
            c.post_json("/volumes/create", None, {"Name": f"v{i}"})
            c.delete(f"/containers/{cid}")
            c.delete(f"/volumes/v{i}")
        except ApiError as exc:
            return f"w{i}: {exc.message}"
        return ""

    try:
        rebuild = threading.Thread(target=replays)
        rebuild.start()
        with ThreadPoolExecutor(max_workers=WRITERS) as pool:
            futures = [pool.submit(writer, i) for i in range(WRITERS)]
            clis = [cli(daemon, "volume", "create", f"cli{i}") for i in range(5)]
            errors = [f.result() for f in futures]
        stop.set()
        rebuild.join(120)
    finally:
        stop.set()
        follower.terminate()
        follower.wait(20)
        reader.rollback()
        reader.close()
    assert [e for e in errors if e] == []
    for out in clis:
        assert out.returncode == 0, out.stderr
        assert "locked" not in out.stderr and "busy" not in out.stderr
    assert replay_errors == []
    assert daemon.client().get_json("/shipslog/replay")["compared_with_live"]
    assert held > 0
    assert (follower.stderr.read() or b"") == b""
    state = oracle.check(daemon)
    assert sorted(state.volumes) == [f"cli{i}" for i in range(5)]
    assert not [c for c in state.containers.values() if c.name.startswith("w")]


@pytest.mark.slow
def test_write_lock_held_past_the_timeout_names_the_holder(daemon: DaemonProcess) -> None:
    holder = sqlite3.connect(daemon.root / "events.db", timeout=30, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # this process holds the write lock
    try:
        with pytest.raises(ApiError) as info:
            daemon.client().post_json("/volumes/create", None, {"Name": "blocked"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    message = info.value.message
    assert "database is locked" not in message
    assert f"pid {os.getpid()}" in message, message
    assert "\n" not in message
    # Once the lock is free, the same command works and nothing is half-done.
    daemon.client().post_json("/volumes/create", None, {"Name": "blocked"})
    assert set(oracle.check(daemon).volumes) == {"blocked"}
