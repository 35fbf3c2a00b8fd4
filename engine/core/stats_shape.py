"""A container's resource counters, parsed from cgroup v1 / procfs text and shaped as Docker's
stats JSON (`GET /containers/{id}/stats`), so `docker stats` computes the same figures.

I/O: none. `engine/drivers/runtime/stats.py` reads the files and hands their text here.

The docker CLI computes, from this JSON:
    memory used  = memory_stats.usage - memory_stats.stats.total_inactive_file (cgroup v1)
    CPU %        = Δ cpu_usage.total_usage / Δ system_cpu_usage * online_cpus * 100
so `precpu_stats` must be the previous sample's `cpu_stats` (zeros for a one-shot read).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NET_FIELDS = ("rx_bytes", "rx_packets", "rx_errors", "rx_dropped",
              "tx_bytes", "tx_packets", "tx_errors", "tx_dropped")
# /proc/net/dev columns: 8 receive then 8 transmit counters, in this order.
_NET_COLUMNS = {"rx_bytes": 0, "rx_packets": 1, "rx_errors": 2, "rx_dropped": 3,
                "tx_bytes": 8, "tx_packets": 9, "tx_errors": 10, "tx_dropped": 11}
UNLIMITED = 1 << 62  # anything this large in memory.limit_in_bytes means "no limit"


@dataclass(frozen=True)
class StatsSample:
    """One reading of a container's counters (all integers as the kernel reports them)."""

    read_ns: int
    cpu_total_ns: int = 0
    cpu_percpu_ns: tuple[int, ...] = ()
    cpu_user_ns: int = 0
    cpu_kernel_ns: int = 0
    system_cpu_ns: int = 0
    online_cpus: int = 0
    throttling: dict[str, int] = field(default_factory=dict)
    memory_usage: int = 0
    memory_max_usage: int = 0
    memory_limit: int = 0
    memory_failcnt: int = 0
    memory_stat: dict[str, int] = field(default_factory=dict)
    pids_current: int = 0
    pids_limit: int = 0
    blkio_bytes: tuple[tuple[int, int, str, int], ...] = ()
    blkio_ios: tuple[tuple[int, int, str, int], ...] = ()
    networks: dict[str, dict[str, int]] = field(default_factory=dict)


# -- parsers (kernel text -> numbers) -----------------------------------------------------


def parse_int(text: str, default: int = 0) -> int:
    """A single-number cgroup file ("123\\n"); "max" and garbage give `default`."""
    word = text.strip()
    return int(word) if word.isdigit() else default


def parse_key_values(text: str) -> dict[str, int]:
    """`memory.stat`, `cpu.stat`, `cpuacct.stat`: "key value" per line; bad lines skipped."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key and value.strip().isdigit():
            out[key] = int(value.strip())
    return out


def parse_blkio(text: str) -> tuple[tuple[int, int, str, int], ...]:
    """`blkio.*_recursive`: "MAJ:MIN Op value" lines; the trailing "Total N" line skipped."""
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or ":" not in parts[0] or not parts[2].isdigit():
            continue
        major, _, minor = parts[0].partition(":")
        if major.isdigit() and minor.isdigit():
            rows.append((int(major), int(minor), parts[1], int(parts[2])))
    return tuple(rows)


def parse_net_dev(text: str) -> dict[str, dict[str, int]]:
    """/proc/<pid>/net/dev as {interface: counters}; the loopback is left out, as Docker does."""
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        name = name.strip()
        values = rest.split()
        if not sep or not name or name == "lo" or len(values) < 16:
            continue
        if not all(v.isdigit() for v in values[:16]):
            continue
        out[name] = {key: int(values[col]) for key, col in _NET_COLUMNS.items()}
    return out


def parse_proc_stat_cpu(text: str, clock_ticks: int) -> int:
    """System CPU time in nanoseconds: the first "cpu" line of /proc/stat, summed."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            ticks = sum(int(p) for p in parts[1:8] if p.isdigit())
            return ticks * 1_000_000_000 // max(clock_ticks, 1)
    return 0


def parse_percpu(text: str) -> tuple[int, ...]:
    return tuple(int(w) for w in text.split() if w.isdigit())


# -- shaping ------------------------------------------------------------------------------


def _cpu(sample: StatsSample | None) -> dict[str, Any]:
    if sample is None:
        return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0,
                              "usage_in_usermode": 0},
                "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
    return {
        "cpu_usage": {"total_usage": sample.cpu_total_ns,
                      "percpu_usage": list(sample.cpu_percpu_ns),
                      "usage_in_kernelmode": sample.cpu_kernel_ns,
                      "usage_in_usermode": sample.cpu_user_ns},
        "system_cpu_usage": sample.system_cpu_ns,
        "online_cpus": sample.online_cpus or len(sample.cpu_percpu_ns),
        "throttling_data": {"periods": sample.throttling.get("nr_periods", 0),
                            "throttled_periods": sample.throttling.get("nr_throttled", 0),
                            "throttled_time": sample.throttling.get("throttled_time", 0)},
    }


def _blkio(rows: tuple[tuple[int, int, str, int], ...]) -> list[dict[str, Any]]:
    return [{"major": ma, "minor": mi, "op": op, "value": val} for ma, mi, op, val in rows]


def shape_stats(sample: StatsSample, previous: StatsSample | None, *, container_id: str,
                name: str, host_memory: int, rfc3339: Any) -> dict[str, Any]:
    """Docker's stats object (cgroup v1 flavour) for one sample and the one before it.

    `rfc3339` formats nanoseconds (passed in to keep this module free of the API's imports).
    A memory limit of "no limit" is reported as the host's memory, as dockerd does.
    """
    limit = sample.memory_limit
    if host_memory and (limit <= 0 or limit >= UNLIMITED or limit > host_memory):
        limit = host_memory
    pids: dict[str, int] = {"current": sample.pids_current}
    if sample.pids_limit:
        pids["limit"] = sample.pids_limit
    return {
        "read": rfc3339(sample.read_ns),
        "preread": rfc3339(previous.read_ns if previous else 0),
        "id": container_id,
        "name": "/" + name,
        "num_procs": 0,
        "pids_stats": pids,
        "blkio_stats": {
            "io_service_bytes_recursive": _blkio(sample.blkio_bytes),
            "io_serviced_recursive": _blkio(sample.blkio_ios),
            "io_queue_recursive": [], "io_service_time_recursive": [],
            "io_wait_time_recursive": [], "io_merged_recursive": [],
            "io_time_recursive": [], "sectors_recursive": [],
        },
        "storage_stats": {},
        "cpu_stats": _cpu(sample),
        "precpu_stats": _cpu(previous),
        "memory_stats": {
            "usage": sample.memory_usage,
            "max_usage": sample.memory_max_usage,
            "stats": dict(sample.memory_stat),
            "failcnt": sample.memory_failcnt,
            "limit": limit,
        },
        "networks": {nic: dict(counters) for nic, counters in sample.networks.items()},
    }


# -- what `stats` shows a human -----------------------------------------------------------


@dataclass(frozen=True)
class StatsRow:
    cpu_percent: float
    memory_used: int
    memory_limit: int
    memory_percent: float
    net_rx: int
    net_tx: int
    block_read: int
    block_write: int
    pids: int


def stats_row(stats: dict[str, Any]) -> StatsRow:
    """The docker CLI's figures from a stats object (cli/command/container/stats_helpers.go)."""
    cpu, pre = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    cpu_delta = ((cpu.get("cpu_usage") or {}).get("total_usage", 0)
                 - (pre.get("cpu_usage") or {}).get("total_usage", 0))
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    cpus = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or [])
    percent = cpu_delta / system_delta * cpus * 100.0 if cpu_delta > 0 and system_delta > 0 \
        else 0.0
    mem = stats.get("memory_stats") or {}
    usage = mem.get("usage", 0)
    inactive = (mem.get("stats") or {}).get("total_inactive_file", 0)
    used = usage - inactive if inactive < usage else usage
    limit = mem.get("limit", 0)
    nets = (stats.get("networks") or {}).values()
    reads = writes = 0
    for row in (stats.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = str(row.get("op", "")).lower()
        if op == "read":
            reads += row.get("value", 0)
        elif op == "write":
            writes += row.get("value", 0)
    return StatsRow(
        cpu_percent=percent, memory_used=used, memory_limit=limit,
        memory_percent=used / limit * 100.0 if limit else 0.0,
        net_rx=sum(n.get("rx_bytes", 0) for n in nets),
        net_tx=sum(n.get("tx_bytes", 0) for n in nets),
        block_read=reads, block_write=writes,
        pids=(stats.get("pids_stats") or {}).get("current", 0))
