"""kill -9 of the daemon at every step boundary of create, start, stop and rm (failpoints
between each kernel step and its event), then a restart: the rebuilt projection equals the
live one and what the kernel shows, no exit code is lost, nothing leaks, and the container
can be started or removed again. Also: containers outlive the daemon (live restore)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from engine.cli.client import ApiError, DaemonUnreachable
from engine.testing.daemon import REPO, DaemonProcess, mounts_under
from events.store import EventStore
from projections.engine import EngineProjection, decode_row
from projections.fold import fold

pytestmark = pytest.mark.kernel

FAILPOINTS = [
    "create.after_rootfs",
    "start.after_runtime_create",
    "start.after_runtime_start",
    "stop.after_signal",
    "remove.after_runtime_delete",
    "remove.after_rootfs",
]


def oracle(d: DaemonProcess) -> dict[str, str]:
    """rebuild(events) == materialised projection == what the kernel shows."""
    store = EventStore.open(d.root / "events.db", readonly=True, projection=EngineProjection())
    try:
        rebuilt = fold(store.read())
        live = {k: decode_row("containers", doc) for k, doc in store.read_rows("containers")}
        assert dict(rebuilt.containers) == live
        assert store.verify().ok
        assert not rebuilt.operations, dict(rebuilt.operations)
        status = {cid: c.status for cid, c in rebuilt.containers.items()}
    finally:
        store.close()
    out = subprocess.run(["runc", "--root", str(d.exec_root / "runc"), "list", "-f", "json"],
                         capture_output=True, text=True, check=True).stdout
    runc = {c["id"]: c["status"] for c in json.loads(out or "[]") or []}
    running = {cid for cid, s in status.items() if s in ("running", "paused")}
    assert {cid for cid, s in runc.items() if s in ("running", "paused")} == running
    mounted = {m.split("/")[-2] for m in mounts_under(d.root / "containers")}
    assert mounted <= set(status)
    return status


def lifecycle(d: DaemonProcess) -> None:
    c = d.client()
    cid = c.post_json("/containers/create", {"name": "crashy"},
                      {"Image": "busybox", "Cmd": ["sleep", "600"]})["Id"]
    c.post_json(f"/containers/{cid}/start")
    c.post_json(f"/containers/{cid}/stop", {"t": 1})
    c.delete(f"/containers/{cid}")


@pytest.mark.parametrize("point", FAILPOINTS)
def test_kill9_at_each_step_then_restart(daemon, point) -> None:
    daemon.stop()
    daemon.start(failpoints=f"{point}=panic")
    with pytest.raises((DaemonUnreachable, ApiError, OSError, ConnectionError)):
        lifecycle(daemon)
    assert daemon.wait_exit() == -9
    daemon.start()
    status = oracle(daemon)
    c = daemon.client()
    for cid in status:
        c.delete(f"/containers/{cid}", {"force": True})
    # The name is free again and the full lifecycle works without manual cleanup.
    lifecycle(daemon)
    assert oracle(daemon) == {}


def test_containers_outlive_the_daemon_and_exits_are_not_lost(daemon) -> None:
    c = daemon.client()
    keep = c.post_json("/containers/create", {"name": "keeper"},
                       {"Image": "busybox", "Cmd": ["sleep", "600"]})["Id"]
    quit_ = c.post_json("/containers/create", {"name": "quitter"},
                        {"Image": "busybox", "Cmd": ["sh", "-c", "sleep 0.5; exit 42"]})["Id"]
    c.post_json(f"/containers/{keep}/start")
    c.post_json(f"/containers/{quit_}/start")
    daemon.kill9()
    time.sleep(1.0)  # quitter exits while no daemon runs
    daemon.start()
    c = daemon.client()
    assert c.get_json(f"/containers/{keep}/json")["State"]["Status"] == "running"
    q = c.get_json(f"/containers/{quit_}/json")["State"]
    assert q["Status"] == "exited" and q["ExitCode"] == 42
    oracle(daemon)
    c.post_json(f"/containers/{keep}/stop", {"t": 0})
    assert c.get_json(f"/containers/{keep}/json")["State"]["ExitCode"] == 137
    oracle(daemon)


def test_second_daemon_on_same_root_refuses(daemon) -> None:
    second = subprocess.run(
        [sys.executable, "-m", "engine.daemon.main", "--root", str(daemon.root),
         "--exec-root", str(daemon.base / "run2")],
        capture_output=True, text=True, timeout=30, cwd=REPO)
    assert second.returncode == 1
    assert f"another daemon holds {daemon.root}/engine.lock (pid {daemon.proc.pid})" \
        in second.stderr
    assert "Traceback" not in second.stderr
    assert daemon.client().request("GET", "/_ping").status == 200  # the first one is unharmed
