"""`docker update` on the real kernel: new limits reach the running container's cgroup,
the restart policy changes, settings that cannot be updated are refused by name (issue 13:
never accepted and ignored), and the log says who changed what."""

from __future__ import annotations

from typing import Any

import pytest

from engine.testing.dockercli import docker, needs_docker
from events.store import EventStore

pytestmark = [pytest.mark.kernel, needs_docker]


def test_update_changes_a_running_containers_limits(daemon: Any) -> None:
    docker(daemon, "run", "-d", "--name", "lim", "--memory", "64m", "--pids-limit", "40",
           "busybox", "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done")
    docker(daemon, "update", "--memory", "96m", "--memory-swap", "160m", "--pids-limit", "25",
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
    docker(daemon, "update", "--cpu-shares", "512", "--cpuset-cpus", "0",
           "--memory-reservation", "32m", "lim")
    applied = docker(daemon, "exec", "lim", "cat", "/sys/fs/cgroup/cpu/cpu.shares",
                     "/sys/fs/cgroup/cpuset/cpuset.cpus",
                     "/sys/fs/cgroup/memory/memory.soft_limit_in_bytes",
                     "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").stdout.split()
    assert applied == ["512", "0", str(32 * 1024 * 1024), str(160 * 1024 * 1024)]
    shown = docker(daemon, "inspect", "-f", "{{.HostConfig.CpuShares}} {{.HostConfig.CpusetCpus}}"
                   " {{.HostConfig.MemoryReservation}} {{.HostConfig.MemorySwap}}", "lim")
    assert shown.stdout.split() == ["512", "0", str(32 * 1024 * 1024), str(160 * 1024 * 1024)]
    p = docker(daemon, "update", "--blkio-weight", "300", "lim", check=False)
    assert p.returncode != 0 and "BlkioWeight cannot be updated by shipslog" in p.stderr
    policy = docker(daemon, "inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", "lim")
    assert policy.stdout.strip() == "on-failure"  # an update without --restart keeps it
    p = docker(daemon, "update", "--memory", "1k", "lim", check=False)
    assert p.returncode != 0 and "6MB" in p.stderr
    with EventStore.open(daemon.root / "events.db", readonly=True) as store:
        updates = [e for e in store.read() if e.type == "ContainerUpdated"]
    assert len(updates) == 2 and updates[0].actor.uid == 0 and updates[0].actor.pid > 0
    assert updates[0].event.memory_swap == 160 * 1024 * 1024  # recorded, not dropped
    assert updates[1].event.cpu_shares == 512
    docker(daemon, "rm", "-f", "lim")
