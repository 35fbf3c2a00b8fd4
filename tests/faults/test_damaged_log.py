"""Damage to the event log at rest (RELIABILITY F-15, the SQLite half): a corrupt page, and
`-wal`/`-shm` deleted while the daemon is stopped.

- A corrupt page: the daemon refuses to start with one line naming the file and a hint (no
  traceback); `shipslog --root R system check` reports the damage with the daemon down;
  `shipslog system reset` stops the containers the root still runs and removes everything,
  and a daemon then starts on the empty root.
- `-wal`/`-shm` deleted after a kill -9: the daemon starts on what the main file holds (a
  prefix of the log: the hash chain verifies), `system check` finds nothing wrong, the
  container recorded only in the lost WAL is found as a kernel object no event owns and is
  removed (a `ReconcileDifferenceFound`), and the three-way oracle holds.

I/O: real daemons on per-test roots, the `shipslog` CLI as a subprocess; files damaged while
the daemon is stopped.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from engine.testing import oracle
from engine.testing.daemon import REPO, DaemonProcess, mounts_under
from events.store import EventStore
from tests.faults.conftest import leftovers_of

pytestmark = pytest.mark.kernel

MARKER = "corrupt-me-marker"
SLEEPER = {"Image": "busybox", "Cmd": ["sleep", "600"], "HostConfig": {"NetworkMode": "none"}}


def cli(d: DaemonProcess, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli.main", *args], input=stdin,
                          capture_output=True, text=True, env=d.cli_env(), cwd=REPO,
                          timeout=120)


def checkpoint(db: Path) -> None:
    """Copy the WAL into the main file (retried while a reader holds it back)."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        for _ in range(100):
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return
        raise AssertionError("the WAL could not be checkpointed")
    finally:
        conn.close()


def corrupt_page_holding(db: Path, needle: bytes) -> int:
    """Overwrite the b-tree page that holds `needle` (in the events table) with garbage."""
    page_size = sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute(
        "PRAGMA page_size").fetchone()[0]
    data = db.read_bytes()
    at = data.index(needle)
    page = at // page_size
    with open(db, "r+b") as f:
        f.seek(page * page_size)
        f.write(b"\xa5" * page_size)
    return page


@pytest.mark.slow
def test_corrupt_page_clear_error_check_and_reset(daemon: DaemonProcess) -> None:
    c = daemon.client()
    for i in range(3):
        cid = c.post_json("/containers/create", {"name": f"{MARKER}-{i}"}, SLEEPER)["Id"]
    c.post_json(f"/containers/{cid}/start")  # it outlives the daemon
    daemon.stop()
    db = daemon.root / "events.db"
    checkpoint(db)  # everything in the main file, as after a clean stop
    corrupt_page_holding(db, MARKER.encode())

    with pytest.raises(RuntimeError) as info:
        daemon.start()
    text = str(info.value)
    assert f"shipslogd: the event log {db} is damaged" in text
    assert "hint: see the damage with `shipslog --root" in text
    assert "Traceback" not in text

    check = cli(daemon, "--root", str(daemon.root), "system", "check", "--exec-root",
                str(daemon.exec_root))
    assert check.returncode == 1, check
    assert f"database {db}" in check.stdout and "Traceback" not in check.stderr

    # Without --force the reset asks, and "no" changes nothing.
    asked = cli(daemon, "--root", str(daemon.root), "system", "reset", "--exec-root",
                str(daemon.exec_root), stdin="n\n")
    assert asked.returncode != 0 and "Are you sure" in asked.stderr
    assert db.exists()
    reset = cli(daemon, "--root", str(daemon.root), "system", "reset", "--exec-root",
                str(daemon.exec_root), "--force")
    assert reset.returncode == 0, reset.stderr
    assert "Traceback" not in reset.stderr
    assert not db.exists() and not mounts_under(daemon.base)
    assert not leftovers_of(daemon)  # the container it ran, its mounts and cgroup: gone
    daemon.start()  # a fresh, empty root
    assert daemon.client().get_json("/containers/json", {"all": True}) == []
    oracle.check(daemon)


def test_reset_refuses_while_the_daemon_runs(daemon: DaemonProcess) -> None:
    out = cli(daemon, "--root", str(daemon.root), "system", "reset", "--exec-root",
              str(daemon.exec_root), "--force")
    assert out.returncode != 0
    assert f"the daemon (pid {daemon.proc.pid}) runs on {daemon.root}" in out.stderr
    assert "hint: stop shipslogd first" in out.stderr
    assert (daemon.root / "events.db").exists()


@pytest.mark.slow
def test_wal_and_shm_deleted_after_kill9(daemon: DaemonProcess) -> None:
    c = daemon.client()
    kept = c.post_json("/containers/create", {"name": "kept"}, SLEEPER)["Id"]
    c.post_json(f"/containers/{kept}/start")
    db = daemon.root / "events.db"
    checkpoint(db)  # as SQLite makes one every 1000 pages
    with EventStore.open(db, readonly=True) as store:
        before = [e.hash for e in store.read()]
    lost = c.post_json("/containers/create", {"name": "lost"}, SLEEPER)["Id"]
    c.post_json(f"/containers/{lost}/start")
    daemon.kill9()
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)

    daemon.start()
    state = oracle.check(daemon)
    with EventStore.open(db, readonly=True) as store:
        after = list(store.read())
    assert [e.hash for e in after][:len(before)] == before  # a prefix survived, chained
    assert set(state.containers) == {kept}
    assert state.containers[kept].status == "running"
    reconciled = [e.event.subject for e in after if e.type == "ReconcileDifferenceFound"]
    assert f"runtime:{lost}" in reconciled
    out = cli(daemon, "system", "check")
    assert out.returncode == 0 and out.stdout == "no damage found\n", out
    assert not [m for m in mounts_under(daemon.base) if lost in m]
    assert not os.path.exists(daemon.exec_root / "runc" / lost)


def test_volume_prune_and_rm_work_on_damaged_volumes(daemon: DaemonProcess) -> None:
    """F-15 for volumes: one volume's directory deleted, another's `_data` replaced by a
    file while the daemon was stopped; `volume prune -a` and `volume rm` still remove them
    (exit 0), and the log agrees with the disk afterwards."""
    c = daemon.client()
    for name in ("gone", "mangled", "fine", "single"):
        c.post_json("/volumes/create", None, {"Name": name})
    daemon.stop()
    vols = daemon.root / "volumes"
    shutil.rmtree(vols / "gone")
    shutil.rmtree(vols / "mangled" / "_data")
    (vols / "mangled" / "_data").write_text("not a directory")
    shutil.rmtree(vols / "single" / "_data")
    daemon.start()
    out = cli(daemon, "volume", "rm", "single")
    assert out.returncode == 0 and "Traceback" not in out.stderr, out
    out = cli(daemon, "volume", "prune", "-a", "-f")
    assert out.returncode == 0 and "Traceback" not in out.stderr, out
    assert c.get_json("/volumes")["Volumes"] in (None, [])
    assert not oracle.check(daemon).volumes
