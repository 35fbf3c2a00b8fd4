"""`docker update` on the real kernel: new limits reach the running container's cgroup,
the restart policy changes, unsupported settings come back as warnings, and the log says
who changed what."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from events.store import EventStore

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI"),
]


def docker(daemon: Any, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(["docker", *args], capture_output=True, env=daemon.cli_env(),
                       text=True, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return p


def test_update_changes_a_running_containers_limits(daemon: Any) -> None:
    docker(daemon, "run", "-d", "--name", "lim", "--memory", "64m", "--pids-limit", "40",
           "busybox", "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done")
    docker(daemon, "update", "--memory", "96m", "--memory-swap", "192m", "--pids-limit", "25",
           "--cpus", "0.5", "--restart", "on-failure:2", "lim")
    limits = docker(daemon, "exec", "lim", "sh", "-c",
                    "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                    "/sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.cfs_quota_us"
                    " 2>/dev/null || cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max"
                    ).stdout.split()
    assert limits[:2] == [str(96 * 1024 * 1024), "25"]
    if len(limits) > 2:
        assert limits[2] == "50000"
    shown = docker(daemon, "inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} "
                   "{{.HostConfig.NanoCpus}} {{.HostConfig.RestartPolicy.Name}}:"
                   "{{.HostConfig.RestartPolicy.MaximumRetryCount}}", "lim").stdout.split()
    assert shown == [str(96 * 1024 * 1024), "25", "500000000", "on-failure:2"]
    p = docker(daemon, "update", "--cpu-shares", "512", "lim")
    assert "not supported" in p.stdout + p.stderr  # a warning, not a silent no-op
    policy = docker(daemon, "inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", "lim")
    assert policy.stdout.strip() == "on-failure"  # an update without --restart keeps it
    p = docker(daemon, "update", "--memory", "1k", "lim", check=False)
    assert p.returncode != 0 and "6MB" in p.stderr
    with EventStore.open(daemon.root / "events.db", readonly=True) as store:
        updates = [e for e in store.read() if e.type == "ContainerUpdated"]
    assert len(updates) == 1 and updates[0].actor.uid == 0 and updates[0].actor.pid > 0
    docker(daemon, "rm", "-f", "lim")
