"""Read one sample of a container's resource counters from cgroup v1 (this host is v1/hybrid)
and from procfs; `engine/core/stats_shape.py` turns samples into Docker's stats JSON.

I/O: reads `/sys/fs/cgroup/{cpuacct,cpu,memory,pids,blkio}/<cgroups path>/…`, the container's
network counters from `/proc/<pid>/net/dev` (procfs shows the network namespace of that
process, the container's), `/proc/stat` and `/proc/meminfo`. A file that is missing (the
container just exited, a controller absent) reads as zero: stats never fail half-way.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from engine.core.stats_shape import (
    StatsSample,
    parse_blkio,
    parse_int,
    parse_key_values,
    parse_net_dev,
    parse_percpu,
    parse_proc_stat_cpu,
)
from engine.drivers.runtime.cgroups import CGROUP_ROOT

_TICKS = os.sysconf("SC_CLK_TCK")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def host_memory() -> int:
    """MemTotal in bytes (the limit Docker shows for a container without one)."""
    for line in _read(Path("/proc/meminfo")).splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            return int(parts[1]) * 1024 if len(parts) > 1 and parts[1].isdigit() else 0
    return 0


def read_sample(cgroups_path: str, pid: int, *, root: Path = CGROUP_ROOT) -> StatsSample:
    """One reading of everything `docker stats` shows (cgroup v1 layout)."""
    rel = cgroups_path.strip("/")
    cpuacct, cpu = root / "cpuacct" / rel, root / "cpu" / rel
    memory, pids, blkio = root / "memory" / rel, root / "pids" / rel, root / "blkio" / rel
    user_kernel = parse_key_values(_read(cpuacct / "cpuacct.stat"))
    tick_ns = 1_000_000_000 // max(_TICKS, 1)
    bytes_rows = parse_blkio(_read(blkio / "blkio.throttle.io_service_bytes_recursive")) \
        or parse_blkio(_read(blkio / "blkio.io_service_bytes_recursive"))
    ios_rows = parse_blkio(_read(blkio / "blkio.throttle.io_serviced_recursive")) \
        or parse_blkio(_read(blkio / "blkio.io_serviced_recursive"))
    return StatsSample(
        read_ns=time.time_ns(),
        cpu_total_ns=parse_int(_read(cpuacct / "cpuacct.usage")),
        cpu_percpu_ns=parse_percpu(_read(cpuacct / "cpuacct.usage_percpu")),
        cpu_user_ns=user_kernel.get("user", 0) * tick_ns,
        cpu_kernel_ns=user_kernel.get("system", 0) * tick_ns,
        system_cpu_ns=parse_proc_stat_cpu(_read(Path("/proc/stat")), _TICKS),
        online_cpus=os.cpu_count() or 0,
        throttling=parse_key_values(_read(cpu / "cpu.stat")),
        memory_usage=parse_int(_read(memory / "memory.usage_in_bytes")),
        memory_max_usage=parse_int(_read(memory / "memory.max_usage_in_bytes")),
        memory_limit=parse_int(_read(memory / "memory.limit_in_bytes")),
        memory_failcnt=parse_int(_read(memory / "memory.failcnt")),
        memory_stat=parse_key_values(_read(memory / "memory.stat")),
        pids_current=parse_int(_read(pids / "pids.current")),
        pids_limit=parse_int(_read(pids / "pids.max")),
        blkio_bytes=bytes_rows,
        blkio_ios=ios_rows,
        networks=parse_net_dev(_read(Path(f"/proc/{pid}/net/dev"))) if pid > 0 else {},
    )
