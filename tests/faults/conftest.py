"""Fixtures for the fault tests (issue 7, RELIABILITY B and C): the integration fixtures
(`daemon`, `busybox_tar`, the kernel-leak check) re-exported, a daemon whose runc is the
misbehaving shim (`tools/runc_shim.py`), and helpers to plan its faults and read its calls.

I/O: starts daemons (subprocesses), writes the shim's plan file, signals only processes this
test's daemon started (hung shim calls found through the shim's own call log).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.cli.client import ApiError
from engine.testing.daemon import REPO, DaemonProcess, cgroups_of, mounts_under
from tests.integration.conftest import (  # noqa: F401 - fixtures and the skip hook, re-exported
    busybox_tar,
    kernel_left_clean,
    pytest_collection_modifyitems,
)
from tests.integration.test_daemon_crash import oracle

SHIM = REPO / "tools" / "runc_shim.py"

__all__ = ["SHIM", "container_events", "load_busybox", "oracle", "plan_faults", "shim_calls",
           "stop_hung_calls", "wait_until", "zombies_of"]


def plan_faults(d: DaemonProcess, plan: dict[str, Any]) -> None:
    """Tell the shim which runc sub-commands misbehave from now on ({} for none)."""
    path = d.exec_root / "runc-shim.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(plan))
    os.replace(tmp, path)


def shim_calls(d: DaemonProcess) -> list[dict[str, Any]]:
    try:
        text = (d.exec_root / "runc-shim.log").read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def stop_hung_calls(d: DaemonProcess) -> None:
    """SIGKILL the shim calls that are hanging on purpose (pids from the shim's log, checked
    against their command line so a recycled pid is never hit)."""
    for call in shim_calls(d):
        if call["action"] != "hang":
            continue
        try:
            cmdline = Path(f"/proc/{call['pid']}/cmdline").read_bytes()
        except OSError:
            continue
        if b"runc_shim.py" in cmdline and str(d.exec_root).encode() in cmdline:
            os.kill(call["pid"], signal.SIGKILL)


def leftovers_of(d: DaemonProcess, own_mounts: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """What this daemon's containers still hold in the kernel once the daemon has stopped
    (call it after the test removed its containers): mounts under its base, its processes,
    cgroups named by its container ids. Unlike the host-wide check, other test runs on the
    same machine cannot show up here."""
    left: dict[str, list[str]] = {
        "mounts": [m for m in mounts_under(d.base) if m not in own_mounts]}
    ids: set[str] = set()
    if (d.root / "events.db").exists():
        from events.store import EventStore

        try:
            store = EventStore.open(d.root / "events.db", readonly=True)
            try:
                ids = {env.event.container_id  # type: ignore[attr-defined]
                       for env in store.read() if env.type == "ContainerCreated"}
            finally:
                store.close()
        except Exception:  # noqa: BLE001 - a test damaged the log: ids from the disk then
            ids = {p.name for p in (d.root / "containers").glob("*") if p.is_dir()}
    left["cgroups"] = [str(p) for p in cgroups_of(d.root) if p.name in ids]
    procs = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(d.base).encode() in cmd or any(i.encode() in cmd for i in ids):
                procs.append(f"{entry.name} {cmd[:100]!r}")
    left["processes"] = procs
    return {k: v for k, v in left.items() if v}


def finish(d: DaemonProcess, own_mounts: tuple[str, ...] = ()) -> None:
    """Stop the daemon, check that it left nothing of its own (`own_mounts`: the test's own,
    such as a tmpfs state root), and clean up."""
    stop_hung_calls(d)
    if d.exec_root.exists():
        plan_faults(d, {})
    try:
        if d.proc is not None and d.proc.poll() is None:
            d.remove_all_containers()
        d.stop()
        left = leftovers_of(d, own_mounts)
    finally:
        d.cleanup()
    assert not left, f"the daemon's containers left kernel objects behind: {left}"


def load_busybox(d: DaemonProcess, tar: Path) -> None:
    """Load the image; a load refused mid-way answers 200 with an `errorDetail` line in its
    stream, as Docker's does (moby postImagesLoad), raised here as the docker CLI reports it."""
    with open(tar, "rb") as f:
        answer = d.client().upload("POST", "/images/load", f)
    for line in answer.body.splitlines():
        if line.strip() and b"errorDetail" in line:
            raise ApiError(500, json.loads(line)["errorDetail"]["message"])


@pytest.fixture
def shim_daemon(busybox_tar: Path) -> Iterator[DaemonProcess]:  # noqa: F811 - re-exported
    """A daemon whose runc is the shim (no faults planned yet), with busybox loaded."""
    d = DaemonProcess.make()
    d.env["SHIPSLOG_RUNC"] = str(SHIM)
    try:
        d.start()
        load_busybox(d, busybox_tar)
        yield d
    finally:
        finish(d)


@pytest.fixture
def daemon(busybox_tar: Path) -> Iterator[DaemonProcess]:  # noqa: F811
    """The integration `daemon` (busybox loaded), with the per-daemon leak check."""
    d = DaemonProcess.make()
    try:
        d.start()
        load_busybox(d, busybox_tar)
        yield d
    finally:
        finish(d)


def container_events(d: DaemonProcess, cid: str) -> list[str]:
    """The types of the events in the log that name container `cid`, oldest first."""
    from events.store import EventStore

    store = EventStore.open(d.root / "events.db", readonly=True)
    try:
        return [env.type for env in store.read()
                if getattr(env.event, "container_id", None) == cid]
    finally:
        store.close()


def zombies_of(pid: int) -> list[int]:
    """Children of `pid` that exited and were never reaped."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] == "Z" and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def wait_until(predicate: Any, what: str, timeout: float = 30.0) -> Any:
    """Poll `predicate` until it is truthy (a bound for a hung engine, not a timing check)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")
