"""Load, L-03: a daemon restart with 200 containers of every kind.

Before the restart (100 running, 100 not): 70 running, 20 running with `--restart always`,
10 running with `--restart always` whose process this test kills while the daemon is down,
10 running plain ones killed likewise, 50 exited with their own exit codes, 10 stopped by
the user with `--restart unless-stopped`, 30 created and never started. After it: the API
answers (the time is printed, not asserted), every container is in the state it must be in —
running ones still running with the same pid and exec-able, the always-ones that died while
the daemon was down running again, the plain ones that died exited with 137 (SIGKILL, read
from the monitor's exit file), the exited ones with their exit codes, the created ones
created — and after removing everything and a second full stop and start, no state is left
behind.

I/O: a daemon (subprocess), API calls from a thread pool, SIGKILL to container processes
this test's daemon started (pids from inspect, checked against /proc first).
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from engine.cli.client import Client
from engine.testing.daemon import DaemonProcess
from tests.faults.conftest import oracle, wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

WORKERS = 8
SLEEP = ["sleep", "600"]
# kind: (count, command, restart policy, what the test does to it)
PLAN: dict[str, tuple[int, list[str], str, str]] = {
    "running": (70, SLEEP, "no", "start"),
    "always": (20, SLEEP, "always", "start"),
    "always-killed": (10, SLEEP, "always", "start"),
    "killed": (10, SLEEP, "no", "start"),
    "exited": (50, [], "no", "run-to-exit"),
    "user-stopped": (10, SLEEP, "unless-stopped", "start-then-stop"),
    "created": (30, SLEEP, "no", "create"),
}


def make(d: DaemonProcess, kind: str, i: int) -> tuple[str, str, int]:
    """Create (and start, stop…) one container; returns (kind, id, expected exit code)."""
    count, cmd, policy, action = PLAN[kind]
    code = i % 7
    c = Client(d.host, timeout=120)
    body: dict[str, Any] = {"Image": "busybox",
                            "Cmd": cmd or ["sh", "-c", f"exit {code}"],
                            "HostConfig": {"RestartPolicy": {"Name": policy}}}
    cid = str(c.post_json("/containers/create", {"name": f"r200-{kind}-{i}"}, body)["Id"])
    if action != "create":
        c.post_json(f"/containers/{cid}/start")
    if action == "run-to-exit":
        c.post_json(f"/containers/{cid}/wait")
    if action == "start-then-stop":
        c.post_json(f"/containers/{cid}/stop", {"t": 0})
    return kind, cid, code


def inspect_all(d: DaemonProcess, ids: list[str]) -> dict[str, dict[str, Any]]:
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        docs = pool.map(lambda cid: Client(d.host).get_json(f"/containers/{cid}/json"), ids)
        return {doc["Id"]: doc for doc in docs}


def kill_container_process(pid: int, exec_root: Path) -> None:
    """SIGKILL a container's init, after checking that it is one of this daemon's (its
    cgroup names the container; its parent is a monitor of this exec root)."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    parent = Path(f"/proc/{stat[1]}/cmdline").read_bytes()
    assert str(exec_root).encode() in parent, parent[:200]
    os.kill(pid, signal.SIGKILL)


def state_dirs(d: DaemonProcess) -> dict[str, list[str]]:
    """Per-container state the daemon keeps on disk and in its exec root."""
    out = {}
    for where in (d.root / "containers", d.exec_root / "runc", d.exec_root / "containers"):
        out[str(where)] = sorted(p.name for p in where.iterdir()) if where.is_dir() else []
    return out


def test_restart_with_200_containers(busybox_tar: Path) -> None:
    from tests.faults.conftest import finish, load_busybox

    d = DaemonProcess.make()
    try:
        d.start()
        load_busybox(d, busybox_tar)
        jobs = [(kind, i) for kind, spec in PLAN.items() for i in range(spec[0])]
        assert len(jobs) == 200
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            made = list(pool.map(lambda job: make(d, *job), jobs))
        print(f"\n200 containers made in {time.monotonic() - t0:.1f} s")
        kinds = {cid: kind for kind, cid, _ in made}
        codes = {cid: code for _, cid, code in made}
        before = inspect_all(d, list(kinds))

        d.stop()  # SIGTERM: the containers stay, under their monitors
        for cid, kind in kinds.items():
            if kind in ("killed", "always-killed"):
                kill_container_process(before[cid]["State"]["Pid"], d.exec_root)

        t0 = time.monotonic()
        d.start(timeout=120)
        answered = time.monotonic() - t0
        listed = d.client().get_json("/containers/json", {"all": True})
        listed_after = time.monotonic() - t0
        print(f"restart: /_ping after {answered:.2f} s, full list after {listed_after:.2f} s")
        print(*[line for line in d.log_text().splitlines() if "recovery:" in line], sep="\n")
        assert len(listed) == 200

        def restarted() -> bool:
            docs = inspect_all(d, [c for c, k in kinds.items() if k == "always-killed"])
            return all(doc["State"]["Running"] for doc in docs.values())

        wait_until(restarted, "the always-containers killed while the daemon was down to run")
        print(f"restart policies done after {time.monotonic() - t0:.2f} s")
        after = inspect_all(d, list(kinds))
        for cid, kind in kinds.items():
            was, now = before[cid]["State"], after[cid]["State"]
            if kind in ("running", "always"):
                assert now["Status"] == "running" and now["Pid"] == was["Pid"], (kind, now)
            elif kind == "always-killed":
                assert now["Status"] == "running" and now["Pid"] != was["Pid"], now
            elif kind == "killed":
                assert now["Status"] == "exited" and now["ExitCode"] == 137, (kind, now)
            elif kind == "exited":
                assert now["Status"] == "exited" and now["ExitCode"] == codes[cid], now
            elif kind == "user-stopped":
                assert now["Status"] == "exited", (kind, now)
            else:
                assert now["Status"] == "created", (kind, now)
        running = [cid for cid, doc in after.items() if doc["State"]["Running"]]
        assert len(running) == 100

        def exec_true(cid: str) -> int:
            c = Client(d.host, timeout=60)
            ex = c.post_json(f"/containers/{cid}/exec", None, {"Cmd": ["true"]})["Id"]
            c.request("POST", f"/exec/{ex}/start", None, b'{"Detach": false}',
                      {"Content-Type": "application/json"})
            return int(c.get_json(f"/exec/{ex}/json")["ExitCode"])

        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            assert set(pool.map(exec_true, running)) == {0}
        status = oracle(d)
        assert sorted(status.values()).count("running") == 100

        # A full stop and start with nothing left: no state behind.
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            list(pool.map(lambda cid: Client(d.host, timeout=60).delete(
                f"/containers/{cid}", {"force": True}), kinds))
        d.stop()
        d.start(timeout=60)
        assert d.client().get_json("/containers/json", {"all": True}) == []
        assert oracle(d) == {}
        assert all(v == [] for v in state_dirs(d).values()), state_dirs(d)
    finally:
        finish(d)
