"""Benchmark the log-as-product paths (issue 6): the first page of `events --since` over a
1,000,000-event log, the full event stream rate, `history` of one container among 10,000,
`audit verify`, `ps --at`, and `replay`.

I/O: builds a SQLite event log in a temporary directory (removed at the end); runs the
`/shipslog/...` handlers in-process under trio (the daemon's own code, without the socket);
prints a table, and as its LAST line one JSON object with the numbers.

    python3 -m tools.bench.history            # 1,000,000 events, 10,000 containers
    python3 -m tools.bench.history --quick    # 200,000 events

The log is the one `tools/bench/events.py` builds: 10,000 containers created, then start/stop
cycles spread over them (each cycle: an operation request, start request, started, op done,
stop request, exit) until the log holds N events — about 16 cycles per container at 1M.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from engine.api.routes.shipslog import FrozenEngine, ReadOnlyContext, shipslog_routes
from engine.api.server.router import Request, Router
from events.envelope import Actor
from events.store import EventStore
from projections.engine import EngineProjection
from tools.bench.common import fmt_s, format_table, json_line
from tools.bench.events import build_log

ME = Actor(uid=0, gid=0, pid=1, via="cli")


async def _call(router: Router, path: str, query: dict[str, str], *,
                first_only: bool = False) -> tuple[float, float, int]:
    """(seconds to the first body byte, seconds to the end, bytes) of one GET."""
    t = time.perf_counter()
    route, params = router.match("GET", path)
    req = Request(method="GET", path=path, params=params,
                  query={k: [val] for k, val in query.items()}, headers={}, api_version="1.43",
                  actor=ME)
    resp = await route.handler(req)
    size = len(resp.body)
    first = time.perf_counter() - t if resp.body else None
    if resp.stream is not None:
        async for chunk in resp.stream:
            size += len(chunk)
            if first is None:
                first = time.perf_counter() - t
                if first_only:
                    break
    end = time.perf_counter() - t
    return (first if first is not None else end), end, size


def measure(path: Path, total: int, containers: int) -> dict[str, Any]:
    out: dict[str, Any] = {"events": total, "containers": containers}
    store: EventStore[Any] = EventStore.open(path, readonly=True)
    t = time.perf_counter()
    state = store.fold_to(EngineProjection())
    out["fold_s"] = time.perf_counter() - t
    ctx = ReadOnlyContext(engine=FrozenEngine(state), store=store, paths=None,
                          now_ns=time.time_ns())
    router = shipslog_routes(ctx)

    async def run() -> None:
        # First page of `events --since` (100 events) from 90% into the log, by time and by
        # seq — with 1M events behind the point.
        since_ns = int(total * 0.9)  # build_log stamps event i with recorded_at == batch no.
        tries = [await _call(router, "/shipslog/events",
                             {"since": f"{since_ns // 10**9}.{since_ns % 10**9:09d}",
                              "limit": "100"}) for _ in range(5)]
        out["events_since_time_first_page_ms"] = statistics.median(t[1] for t in tries) * 1e3
        tries = [await _call(router, "/shipslog/events",
                             {"since": f"seq:{int(total * 0.9)}", "limit": "100"})
                 for _ in range(5)]
        out["events_since_seq_first_page_ms"] = statistics.median(t[1] for t in tries) * 1e3
        # The whole stream, history only, as JSON lines.
        _, took, size = await _call(router, "/shipslog/events", {"since": "seq:1"})
        out["full_stream_events_per_s"] = total / took
        out["full_stream_mb_per_s"] = size / took / 1e6
        # history of one container among 10,000 (by name; the daemon holds the state).
        times = []
        for i in (1, containers // 2, containers - 1):
            for _ in range(5):
                _, took, _ = await _call(router, f"/shipslog/history/c{i}", {})
                times.append(took)
        out["history_one_container_ms"] = statistics.median(times) * 1e3
        out["history_one_container_max_ms"] = max(times) * 1e3
        # audit verify of the whole log.
        _, took, _ = await _call(router, "/shipslog/audit/verify", {})
        out["verify_events_per_s"] = total / took
        # ps --at the middle of the log (a fold of half the log, then the Docker handler).
        try:
            _, took, _ = await _call(router, "/shipslog/at/containers/json",
                                     {"at": f"seq:{total // 2}", "all": "1"})
            out["ps_at_middle_s"] = took
        except Exception as exc:  # noqa: BLE001 - report, don't die: other figures stand
            print(f"ps --at failed: {exc}", file=sys.stderr)
            out["ps_at_middle_s"] = None

    trio.run(run)
    store.close()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200,000 events")
    parser.add_argument("--events", type=int, default=None)
    args = parser.parse_args(argv)
    total = args.events or (200_000 if args.quick else 1_000_000)
    containers = 10_000
    with tempfile.TemporaryDirectory(prefix="shipslog-bench-history-") as tmp:
        path = Path(tmp) / "events.db"
        print(f"building a {total:,}-event log with {containers:,} containers…", file=sys.stderr)
        out = {"build_events_per_s": build_log(path, total, containers)}
        out.update(measure(path, total, containers))
    rows = [
        ("events --since TIME, first 100 (90% in)", f"{out['events_since_time_first_page_ms']:.1f} ms"),  # noqa: E501
        ("events --since seq:N, first 100", f"{out['events_since_seq_first_page_ms']:.1f} ms"),
        ("full event stream (JSON lines)", f"{out['full_stream_events_per_s']:,.0f} events/s"),
        ("history of 1 container among 10,000", f"{out['history_one_container_ms']:.1f} ms "
         f"(max {out['history_one_container_max_ms']:.1f})"),
        ("audit verify", f"{out['verify_events_per_s']:,.0f} events/s"),
        ("ps --at seq:N/2", fmt_s(out["ps_at_middle_s"])),
        ("fold of the whole log (daemon start)", fmt_s(out["fold_s"])),
    ]
    print(f"shipslog history/audit over {total:,} events, {containers:,} containers")
    print(format_table(["measure", "result"], rows))
    print(json_line(out))


if __name__ == "__main__":
    main()
