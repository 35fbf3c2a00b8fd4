"""Container lifecycle through shipslogd on the real kernel: restart policies, stop and kill,
limits that take effect, --init, attach, exec with a tty, --rm, and rm leaving nothing behind
(the kernel-leak fixture checks mounts, cgroups and processes after every test)."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from engine.testing.dockercli import docker, needs_docker
from events.store import EventStore

pytestmark = [pytest.mark.kernel, needs_docker]


def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def inspect(daemon, name: str, fmt: str) -> str:
    return docker(daemon, "inspect", "-f", fmt, name).stdout.strip()


def test_restart_policy_on_failure_counts_and_stops(daemon) -> None:
    docker(daemon, "run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox",
           "sh", "-c", "exit 3")
    wait_for(lambda: inspect(daemon, "flaky", "{{.RestartCount}} {{.State.Status}}")
             == "2 exited")
    assert inspect(daemon, "flaky", "{{.State.ExitCode}}") == "3"
    store = EventStore.open(daemon.root / "events.db", readonly=True)
    restarts = [e.event for e in store.read(types=["ContainerRestartedByPolicy"])]
    assert [r.restart_count for r in restarts] == [1, 2]
    assert all("exited with code 3" in r.reason for r in restarts)
    docker(daemon, "rm", "flaky")


def test_always_restarts_but_not_after_stop(daemon) -> None:
    docker(daemon, "run", "-d", "--name", "phoenix", "--restart", "always", "busybox",
           "sh", "-c", "sleep 0.2; exit 1")
    wait_for(lambda: int(inspect(daemon, "phoenix", "{{.RestartCount}}")) >= 2)
    docker(daemon, "stop", "-t", "1", "phoenix")
    count = inspect(daemon, "phoenix", "{{.RestartCount}}")
    time.sleep(1.0)  # a restart would have happened within this backoff window
    assert inspect(daemon, "phoenix", "{{.RestartCount}} {{.State.Status}}") == \
        f"{count} exited"
    docker(daemon, "rm", "phoenix")


def test_stop_escalates_to_kill_after_timeout(daemon) -> None:
    docker(daemon, "run", "-d", "--name", "stubborn", "busybox", "sh", "-c",
           "trap '' TERM; trap 'exit 5' USR1; while :; do sleep 0.1; done")
    docker(daemon, "stop", "-t", "1", "stubborn")
    assert inspect(daemon, "stubborn", "{{.State.ExitCode}}") == "137"
    docker(daemon, "start", "stubborn")
    docker(daemon, "kill", "-s", "USR1", "stubborn")  # pid 1 acts only on signals it traps
    wait_for(lambda: inspect(daemon, "stubborn", "{{.State.Status}}") == "exited")
    assert inspect(daemon, "stubborn", "{{.State.ExitCode}}") == "5"
    docker(daemon, "rm", "stubborn")


def test_limits_take_effect(daemon) -> None:
    cid = docker(daemon, "run", "-d", "--name", "limited", "-m", "64m", "--cpus", "0.5",
                 "--pids-limit", "20", "busybox", "sleep", "600").stdout.strip()
    mem = Path(f"/sys/fs/cgroup/memory/shipslog/{cid}/memory.limit_in_bytes")
    assert int(mem.read_text()) == 64 * 1024 * 1024
    quota = Path(f"/sys/fs/cgroup/cpu/shipslog/{cid}/cpu.cfs_quota_us").read_text().strip()
    period = Path(f"/sys/fs/cgroup/cpu/shipslog/{cid}/cpu.cfs_period_us").read_text().strip()
    assert int(quota) * 2 == int(period)
    pids = Path(f"/sys/fs/cgroup/pids/shipslog/{cid}/pids.max").read_text().strip()
    assert pids == "20"
    fork = docker(daemon, "exec", "limited", "sh", "-c",
                  "for i in $(seq 40); do sleep 5 & done; wait", check=False)
    assert "fork" in fork.stderr.lower() or fork.returncode != 0
    docker(daemon, "rm", "-f", "limited")
    assert not mem.parent.exists()  # rm took the cgroup with it


def test_init_runs_as_pid_1_and_reaps(daemon) -> None:
    if not (shutil.which("docker-init") or shutil.which("tini-static")):
        pytest.skip("no static tini on this host")
    out = docker(daemon, "run", "--rm", "--init", "busybox", "sh", "-c",
                 "cat /proc/1/cmdline | tr '\\0' ' '").stdout
    assert "init" in out and "sh" not in out.split()[0]


def test_read_only_rootfs_and_user(daemon) -> None:
    p = docker(daemon, "run", "--rm", "--read-only", "busybox", "touch", "/x", check=False)
    assert p.returncode != 0 and "Read-only file system" in p.stderr
    assert docker(daemon, "run", "--rm", "-u", "nobody", "busybox", "id", "-u").stdout.strip() \
        == "65534"
    assert docker(daemon, "run", "--rm", "-w", "/tmp", "busybox", "pwd").stdout == "/tmp\n"
    assert docker(daemon, "run", "--rm", "--hostname", "box1", "busybox",
                  "hostname").stdout == "box1\n"


def test_exec_with_a_tty_and_attach(daemon) -> None:
    docker(daemon, "run", "-d", "--name", "tty1", "-t", "busybox", "sh")
    # docker exec -t needs a terminal on our side: give it a pty.
    master, slave = pty.openpty()
    p = subprocess.run(["docker", "exec", "-t", "tty1", "tty"], stdin=slave, stdout=slave,
                       stderr=slave, env=daemon.cli_env(), timeout=30)
    os.close(slave)
    out = os.read(master, 4096).decode(errors="replace")
    os.close(master)
    assert p.returncode == 0 and "/dev/pts/" in out
    docker(daemon, "rm", "-f", "tty1")
    # attach: a detached container's output reaches a client that attaches later.
    docker(daemon, "run", "-d", "--name", "talker", "busybox", "sh", "-c",
           "sleep 1; echo after-attach")
    out = docker(daemon, "attach", "talker", timeout=30).stdout
    assert "after-attach" in out
    docker(daemon, "rm", "talker")
