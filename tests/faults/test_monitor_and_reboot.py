"""The monitor dies (RELIABILITY F-10, F-03) and the host reboots (F-04, F-05).

- conmon killed while the daemon runs: the exit is recorded once (known code, or 255 "lost"
  with a reason), `rm -f` works, and the daemon is left with no zombie child;
- daemon down, container and conmon killed: after the start the container is exited and
  starts again;
- reboot simulation (processes killed, kernel mounts and cgroups gone, the exec root wiped,
  another boot id): running containers are recorded as exited with 255 and a reason, stale
  state is cleaned, they start and are removed again — after a clean stop and after a
  kill -9 (no clean-shutdown marker) alike;
- a plain kill -9 of the daemon (no reboot) wipes nothing.

I/O: real daemons, runc, conmon, cgroups and mounts; signals only this test's daemon's
processes (pids from its own pid files and inspect). Each test ends with the oracle.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from engine.cli.client import Client
from engine.testing.daemon import DaemonProcess, cgroups_of, mounts_under
from tests.faults.conftest import container_events, oracle, wait_until, zombies_of

pytestmark = pytest.mark.kernel

SLEEPER = {"Image": "busybox", "Cmd": ["sleep", "600"]}
EXITS = ("ContainerExited", "ContainerLost")


def run(c: Client, name: str) -> str:
    cid: str = c.post_json("/containers/create", {"name": name}, SLEEPER)["Id"]
    c.post_json(f"/containers/{cid}/start")
    return cid


def conmon_pid(d: DaemonProcess, cid: str) -> int:
    return int((d.exec_root / "containers" / cid / "conmon.pid").read_text().strip())


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def gone(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return True
    return fields[0] in ("Z", "X")


def status(c: Client, cid: str) -> dict[str, object]:
    st: dict[str, object] = c.get_json(f"/containers/{cid}/json")["State"]
    return st


def exits_recorded(d: DaemonProcess, cid: str) -> list[str]:
    return [t for t in container_events(d, cid) if t in EXITS]


@pytest.mark.parametrize("also_kill_container", [False, True])
def test_monitor_killed_while_daemon_runs(daemon: DaemonProcess,
                                          also_kill_container: bool) -> None:
    d, c = daemon, daemon.client()
    cid = run(c, "monitor-dies")
    pid = int(status(c, cid)["Pid"])  # type: ignore[call-overload]
    kill(conmon_pid(d, cid))
    if also_kill_container:
        kill(pid)
        st = wait_until(lambda: (s := status(c, cid))["Status"] == "exited" and s,
                        "the exit of a container whose monitor died")
        # The monitor could not record it: 255 "lost", or the signal's 137 if known.
        assert st["ExitCode"] in (137, 255)
        assert exits_recorded(d, cid) and len(exits_recorded(d, cid)) == 1
        oracle(d)
    c.delete(f"/containers/{cid}", {"force": True})
    wait_until(lambda: gone(pid), "the container process to go")
    assert len(exits_recorded(d, cid)) <= 1  # never twice
    assert zombies_of(d.proc.pid) == []  # type: ignore[union-attr]
    assert not [p for p in cgroups_of(d.root) if p.name == cid]
    assert oracle(d) == {}
    # Nothing blocks the name.
    again = run(c, "monitor-dies")
    c.delete(f"/containers/{again}", {"force": True})
    assert oracle(d) == {}


def test_daemon_down_container_and_monitor_killed(daemon: DaemonProcess) -> None:
    d, c = daemon, daemon.client()
    cid = run(c, "killed-while-down")
    pid = int(status(c, cid)["Pid"])  # type: ignore[call-overload]
    monitor = conmon_pid(d, cid)
    d.stop()
    kill(monitor)
    kill(pid)
    wait_until(lambda: gone(pid) and gone(monitor), "the killed processes to go")
    d.start()
    c = d.client()
    st = status(c, cid)
    assert st["Status"] == "exited" and st["ExitCode"] in (137, 255)
    assert len(exits_recorded(d, cid)) == 1
    oracle(d)
    c.post_json(f"/containers/{cid}/start")
    assert oracle(d) == {cid: "running"}
    c.delete(f"/containers/{cid}", {"force": True})
    assert oracle(d) == {}


def simulate_reboot(d: DaemonProcess, pids: list[int]) -> None:
    """What a reboot does to an engine: every process dies, every mount and cgroup is gone,
    the tmpfs exec root is empty, and the boot id differs."""
    for pid in pids:
        kill(pid)
    wait_until(lambda: all(gone(p) for p in pids), "the killed processes to go")
    for target in reversed(mounts_under(d.base)):
        subprocess.run(["umount", "-l", target], check=False)
    for cg in cgroups_of(d.root):
        shutil.rmtree(cg, ignore_errors=True)  # only the empty cgroup dirs of our containers
        try:
            os.rmdir(cg)
        except OSError:
            pass
    shutil.rmtree(d.exec_root)
    d.exec_root.mkdir(mode=0o700)
    (d.exec_root / "boot-id").write_text("00000000-0000-4000-8000-000000000000\n")


@pytest.mark.parametrize("shutdown", ["clean", "kill9"])
def test_reboot_simulation(daemon: DaemonProcess, shutdown: str) -> None:
    d, c = daemon, daemon.client()
    running = run(c, "up-at-reboot")
    created = c.post_json("/containers/create", {"name": "never-started"}, SLEEPER)["Id"]
    pids = [int(status(c, running)["Pid"]), conmon_pid(d, running)]  # type: ignore[call-overload]
    if shutdown == "clean":
        d.stop()
    else:
        d.kill9()
    simulate_reboot(d, pids)
    d.start()
    c = d.client()
    st = status(c, running)
    assert st["Status"] == "exited" and st["ExitCode"] == 255
    assert "ContainerLost" in container_events(d, running)
    assert status(c, created)["Status"] == "created"  # `created` is never auto-started
    assert oracle(d) == {running: "exited", created: "created"}
    # Stale state is gone and both can run and be removed again.
    c.post_json(f"/containers/{running}/start")
    c.post_json(f"/containers/{created}/start")
    assert oracle(d) == {running: "running", created: "running"}
    for cid in (running, created):
        c.delete(f"/containers/{cid}", {"force": True})
    assert oracle(d) == {}


def test_daemon_kill9_without_reboot_wipes_nothing(daemon: DaemonProcess) -> None:
    d, c = daemon, daemon.client()
    running = run(c, "survives-kill9")
    done = c.post_json("/containers/create", {"name": "exits-7"},
                       {"Image": "busybox", "Cmd": ["sh", "-c", "echo bye; exit 7"]})["Id"]
    c.post_json(f"/containers/{done}/start")
    wait_until(lambda: status(c, done)["Status"] == "exited", "the short container to exit")
    files = sorted(str(p.relative_to(d.root)) for sub in ("layers", "blobs", "containers")
                   for p in (d.root / sub).rglob("*") if "rootfs" not in p.parts)
    pid = status(c, running)["Pid"]
    d.kill9()
    d.start()
    c = d.client()
    st = status(c, running)
    assert st["Status"] == "running" and st["Pid"] == pid
    assert status(c, done)["ExitCode"] == 7
    assert "ContainerLost" not in container_events(d, running)
    after = sorted(str(p.relative_to(d.root)) for sub in ("layers", "blobs", "containers")
                   for p in (d.root / sub).rglob("*") if "rootfs" not in p.parts)
    assert after == files
    assert oracle(d) == {running: "running", done: "exited"}
    for cid in (running, done):
        c.delete(f"/containers/{cid}", {"force": True})
    assert oracle(d) == {}
