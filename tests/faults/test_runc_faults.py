"""A runc that misbehaves (RELIABILITY F-09, F-11) through `tools/runc_shim.py`: the error
reaches the user in runc's own words, nothing half-made is left (runtime state, monitor,
cgroup), a retry with the same name works, a failed rollback stays visible as an operation
that needs cleanup and is retried at the next daemon start, and a hung runc is bounded.

I/O: real daemons, runc, conmon and cgroups; the shim's plan and call log under the exec
root. Each test ends with the three-way oracle (tests/integration/test_daemon_crash.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from engine.cli.client import ApiError, Client
from engine.testing.daemon import DaemonProcess, cgroups_of, mounts_under
from tests.faults.conftest import oracle, plan_faults, shim_calls, stop_hung_calls

pytestmark = pytest.mark.kernel

RUNC_WORDS = "container_linux.go:380: starting container process caused: shim says no"
SLEEPER = {"Image": "busybox", "Cmd": ["sleep", "600"]}


def runtime_leftovers(d: DaemonProcess, cid: str) -> dict[str, object]:
    """What the kernel still holds for `cid`: runc state, a live monitor, a cgroup, a network
    namespace (its rootfs stays mounted: a created container keeps its rootfs)."""
    out = subprocess.run(["runc", "--root", str(d.exec_root / "runc"), "list", "-f", "json"],
                         capture_output=True, text=True, check=True).stdout
    runc = [c["id"] for c in json.loads(out or "[]") or [] if c["id"] == cid]
    cgroups = [str(p) for p in cgroups_of(d.root) if p.name == cid]
    monitor = []
    pidfile = d.exec_root / "containers" / cid / "conmon.pid"
    if pidfile.exists():
        pid = pidfile.read_text().strip()
        if Path(f"/proc/{pid}").exists():
            monitor.append(pid)
    netns = [m for m in mounts_under(d.exec_root) if "netns" in m and cid[:12] in m]
    left = {"runc": runc, "cgroups": cgroups, "monitor": monitor, "netns": netns}
    return {k: v for k, v in left.items() if v}


def create(c: Client, name: str) -> str:
    cid: str = c.post_json("/containers/create", {"name": name}, SLEEPER)["Id"]
    return cid


def state(c: Client, cid: str) -> dict[str, object]:
    st: dict[str, object] = c.get_json(f"/containers/{cid}/json")["State"]
    return st


def starts_and_goes_cleanly(d: DaemonProcess, c: Client, cid: str) -> None:
    """After a fault, the container starts for real and `rm -f` leaves nothing (oracle)."""
    c.post_json(f"/containers/{cid}/start")
    assert oracle(d) == {cid: "running"}
    c.delete(f"/containers/{cid}", {"force": True})
    assert oracle(d) == {}


def test_create_fails_with_runc_words_and_leaves_nothing(shim_daemon: DaemonProcess) -> None:
    d, c = shim_daemon, shim_daemon.client()
    plan_faults(d, {"create": {"action": "fail", "stderr": RUNC_WORDS}})
    cid = create(c, "runc-create-fails")
    with pytest.raises(ApiError) as err:
        c.post_json(f"/containers/{cid}/start")
    assert err.value.status >= 500 and RUNC_WORDS in err.value.message
    st = state(c, cid)
    assert st["Status"] == "created" and not st["Running"] and RUNC_WORDS in str(st["Error"])
    assert runtime_leftovers(d, cid) == {}
    oracle(d)
    # Nothing blocks a retry: once runc behaves, the same container starts ...
    plan_faults(d, {})
    c.post_json(f"/containers/{cid}/start")
    assert state(c, cid)["Status"] == "running"
    # ... and after `rm -f`, the same name is free for a new one that runs.
    c.delete(f"/containers/{cid}", {"force": True})
    plan_faults(d, {"create": {"action": "fail", "stderr": RUNC_WORDS, "times": 1}})
    again = create(c, "runc-create-fails")
    with pytest.raises(ApiError):
        c.post_json(f"/containers/{again}/start")
    c.post_json(f"/containers/{again}/start")  # the fault is spent: the retry works
    assert state(c, again)["Status"] == "running"
    assert oracle(d) == {again: "running"}
    c.delete(f"/containers/{again}", {"force": True})
    assert oracle(d) == {}


def test_start_fails(shim_daemon: DaemonProcess) -> None:
    d, c = shim_daemon, shim_daemon.client()
    plan_faults(d, {"start": {"action": "fail", "stderr": RUNC_WORDS, "times": 1}})
    cid = create(c, "runc-start-fails")
    with pytest.raises(ApiError) as err:
        c.post_json(f"/containers/{cid}/start")
    assert RUNC_WORDS in err.value.message
    assert state(c, cid)["Status"] != "running"
    # The created-but-never-started runc container and its monitor were rolled back.
    assert runtime_leftovers(d, cid) == {}
    oracle(d)
    starts_and_goes_cleanly(d, c, cid)


def test_init_killed_after_create(shim_daemon: DaemonProcess) -> None:
    d, c = shim_daemon, shim_daemon.client()
    plan_faults(d, {"create": {"action": "kill-init", "times": 1}})
    cid = create(c, "runc-init-killed")
    with pytest.raises(ApiError) as err:
        c.post_json(f"/containers/{cid}/start")
    # runc's own words (its status: test_init_killed_after_create_is_not_blamed_on_the_caller)
    assert "cannot start a container that has stopped" in err.value.message
    assert state(c, cid)["Status"] != "running"
    assert runtime_leftovers(d, cid) == {}
    oracle(d)
    starts_and_goes_cleanly(d, c, cid)


def test_init_killed_after_create_is_not_blamed_on_the_caller(
        shim_daemon: DaemonProcess) -> None:
    d, c = shim_daemon, shim_daemon.client()
    plan_faults(d, {"create": {"action": "kill-init", "times": 1}})
    cid = create(c, "runc-init-killed")
    try:
        with pytest.raises(ApiError) as err:
            c.post_json(f"/containers/{cid}/start")
        assert err.value.status >= 500
    finally:
        c.delete(f"/containers/{cid}", {"force": True})
        assert oracle(d) == {}


def test_failed_rollback_is_visible_and_retried_at_restart(
        shim_daemon: DaemonProcess) -> None:
    d, c = shim_daemon, shim_daemon.client()
    # `runc start` fails, and so does the `runc delete` of the rollback (F-11).
    plan_faults(d, {"start": {"action": "fail", "stderr": RUNC_WORDS},
                    "delete": {"action": "fail", "stderr": "shim: delete refused"}})
    cid = create(c, "runc-rollback-fails")
    with pytest.raises(ApiError) as err:
        c.post_json(f"/containers/{cid}/start")
    assert RUNC_WORDS in err.value.message
    report = c.post_json("/shipslog/system/check")
    pending = [p for p in report["NeedsCleanup"] if p["Target"].endswith(cid)]
    assert len(pending) == 1 and RUNC_WORDS in pending[0]["Error"]
    assert runtime_leftovers(d, cid).get("runc") == [cid]  # kept, not silently dropped
    # The daemon's next start retries the cleanup once runc behaves again.
    plan_faults(d, {})
    d.stop()
    d.start()
    c = d.client()
    assert c.post_json("/shipslog/system/check")["NeedsCleanup"] == []
    assert runtime_leftovers(d, cid) == {}
    oracle(d)
    starts_and_goes_cleanly(d, c, cid)


def test_hung_runc_is_bounded_with_a_clear_error(shim_daemon: DaemonProcess) -> None:
    d = shim_daemon
    plan_faults(d, {"start": {"action": "hang", "seconds": 3600}})
    c = Client(d.host, timeout=40.0)
    cid = create(c, "runc-hangs")
    try:
        with pytest.raises(ApiError) as err:
            c.post_json(f"/containers/{cid}/start")
        assert "runc start" in err.value.message and "timed out" in err.value.message
    finally:
        stop_hung_calls(d)  # the shim's sleep, so the request ends and cleanup can run
    plan_faults(d, {})
    assert state(d.client(), cid)["Status"] != "running"
    oracle(d)
    assert not [m for m in mounts_under(d.base) if cid in m and "runc" in m]
    assert any(call["cmd"] == "start" for call in shim_calls(d))
