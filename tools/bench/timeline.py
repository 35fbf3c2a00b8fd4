"""Where the time of a Compose `up -d --wait` went, told by the engine's own event stream:
when the last container was created, started and reported healthy, and how long after its
start each container's first healthy verdict came, so that the same phases can be compared
between shipslog and Docker in one run (issue 14).

I/O: none; the caller fetches `docker events --format '{{json .}}'` (same CLI, both engines)
and hands the decoded lines in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tools.bench.common import median

PHASES = ("network", "created", "started", "healthy", "exit")


def phases(events: Iterable[Mapping[str, Any]], t0_ns: int, t1_ns: int) -> dict[str, float]:
    """Seconds from `t0_ns` (the command's start) to the last network `create`, the last
    container `create`, the last `start`, the last first `health_status: healthy` and the
    command's exit (`t1_ns`), plus
    `probe` (median over containers of start → first healthy) and `poll` (last healthy →
    exit: the client noticing). A phase with no event is left out."""
    last: dict[str, int] = {}
    started: dict[str, int] = {}
    healthy: dict[str, int] = {}
    for ev in events:
        action = str(ev.get("Action") or ev.get("status") or "")
        cid = str(ev.get("id") or ev.get("Actor", {}).get("ID", ""))
        t = int(ev.get("timeNano", 0))
        if not t or not t0_ns <= t <= t1_ns:
            continue
        if ev.get("Type") == "network":
            if action == "create":
                last["network"] = max(last.get("network", 0), t)
        elif action == "create":
            last["created"] = max(last.get("created", 0), t)
        elif action == "start":
            last["started"] = max(last.get("started", 0), t)
            started.setdefault(cid, t)
        elif action == "health_status: healthy" and cid not in healthy:
            healthy[cid] = t
    if healthy:
        last["healthy"] = max(healthy.values())
    out = {k: (t - t0_ns) / 1e9 for k, t in last.items()}
    out["exit"] = (t1_ns - t0_ns) / 1e9
    probe = median([(healthy[c] - started[c]) / 1e9 for c in healthy if c in started])
    if probe is not None:
        out["probe"] = probe
    if "healthy" in out:
        out["poll"] = out["exit"] - out["healthy"]
    return out
