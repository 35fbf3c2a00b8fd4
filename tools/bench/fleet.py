"""Benchmark a fleet's central log (issue 19): replication lag from three hosts appending at a
steady rate, and `history` / `events --since` on a large central log.

I/O: a private PostgreSQL cluster (engine/testing/postgres.py) and three SQLite logs in a
temporary directory, all removed at the end; prints a table, and as its LAST line one JSON
object with the numbers.

    python3 -m tools.bench.fleet                 # lag at 1,000 ev/s in all; 1M-event log
    python3 -m tools.bench.fleet --events 10000000 --containers 1000000

1. Lag: three hosts, each an EventStore file appended to by its own thread at RATE/3 events/s
   (one durable append per event, `synchronous=FULL`), each shipped by the daemon's replicator
   (engine/shell/replication.py) in one trio run. The hosts are stores, not whole daemons: the
   daemon adds its API in front of the same append, not to the replication path. Lag of an
   event = the time its batch committed at the center − its `recorded_at`. Median and p99.
2. Queries: a central log of N events (10 per container, C containers on 100 hosts) loaded with
   COPY (chain trigger off for the load: `session_replication_role = replica`, the standard
   bulk-load switch; the rows are not a valid chain, and no query here checks one). Then the
   fleet reader (engine/cli/fleet.py) answers `history ID` of random containers and the first
   page (100 events) of `events --since T` at random T, each timed; EXPLAIN shows the index.

Docker has no counterpart to compare with in the same run: dockerd keeps its last 256 events in
memory, per host, and nothing central (the JSON has `null` for Docker).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import trio

from engine.cli.fleet import FleetReader
from engine.shell.replication import ReplicationStatus, Replicator, SqliteSource
from engine.testing.postgres import PostgresCluster
from events import vocabulary as v
from events.central import CentralLog, ensure_schema
from events.envelope import SYSTEM_ACTOR, Pending
from events.pg_replica import grant_replica
from events.store import EventStore
from tools.bench.common import fmt_s, format_table, json_line, log

HOSTS = ("host-a", "host-b", "host-c")


def p99(xs: list[float]) -> float:
    return sorted(xs)[max(0, int(len(xs) * 0.99) - 1)]


class TimedCenter(CentralLog):
    """The replicator's center, noting when each batch committed (for the lag)."""

    lags: list[float]

    def insert(self, host: str, rows: Any) -> bool:
        stored = super().insert(host, rows)
        now = time.time_ns()
        self.lags.extend((now - r.recorded_at) / 1e9 for r in rows)
        return stored


def lag(pg: PostgresCluster, base: Path, rate: float, seconds: float) -> dict[str, Any]:
    lags: list[float] = []
    dbs = [base / f"{h}.db" for h in HOSTS]
    stop = threading.Event()

    def append(db: Path) -> None:
        per_host = rate / len(HOSTS)
        store: EventStore[Any]
        with EventStore.open(db) as store:
            t0 = time.monotonic()
            n = 0
            while not stop.is_set():
                due = t0 + n / per_host
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
                store.append([Pending(stream="daemon", event=v.DaemonStarted(
                    version="bench", boot_id=str(n), clean_shutdown=True))],
                    actor=SYSTEM_ACTOR, op_id=f"op-{n}", now_ns=time.time_ns())
                n += 1

    def connect() -> TimedCenter:
        c = TimedCenter(pg.dsn_for("replicator"))
        c.lags = lags
        return c.open()  # type: ignore[return-value]

    for db in dbs:
        EventStore.open(db).close()
    threads = [threading.Thread(target=append, args=(db,)) for db in dbs]

    async def main() -> None:
        async with trio.open_nursery() as n:
            for host, db in zip(HOSTS, dbs, strict=True):
                rep = Replicator(SqliteSource(db), connect,
                                 ReplicationStatus(pg.dsn_for("replicator"), host),
                                 clock=time.time_ns,
                                 wait_for_events=lambda t: trio.sleep(min(t, 0.005)))
                await n.start(rep.run)
            for t in threads:
                t.start()
            await trio.sleep(seconds)
            stop.set()
            for t in threads:
                await trio.to_thread.run_sync(t.join)
            await trio.sleep(1.0)  # the tail reaches the center
            n.cancel_scope.cancel()

    trio.run(main)
    with CentralLog(pg.dsn) as c:
        shipped = sum(c.head(h)[0] for h in HOSTS)
        ok = all(c.verify(h).ok for h in HOSTS)
    return {"rate": rate, "events": len(lags), "shipped": shipped, "verified": ok,
            "lag_median_s": statistics.median(lags), "lag_p99_s": p99(lags),
            "achieved_rate": len(lags) / seconds}


def load_big(pg: PostgresCluster, events: int, containers: int) -> list[str]:
    """COPY `events` rows: `containers` containers on 100 hosts, 10 events each."""
    import psycopg

    per = max(1, events // containers)
    rng = random.Random(19)
    ids = [f"{rng.getrandbits(256):064x}" for _ in range(containers)]
    created = b'{"type":"ContainerCreated","container_id":"%s"}'
    renamed = b'{"type":"ContainerRenamed","container_id":"%s","old_name":"a","new_name":"b"}'
    actor = b'{"uid":0,"gid":0,"pid":0,"via":"daemon"}'
    t0 = 1_765_000_000 * 10**9
    with psycopg.connect(pg.dsn) as conn:
        conn.execute("SET session_replication_role = replica")
        hosts = [f"h{i:03d}" for i in range(100)]
        for h in hosts:
            conn.execute("SELECT shipslog.register_host(%s, 'replica', 0)", (h,))
        seqs = dict.fromkeys(hosts, 0)
        with conn.cursor() as cur, cur.copy(
                "COPY shipslog.events (host, seq, stream, stream_version, schema_version, type,"
                " recorded_at, actor, op_id, command_id, payload, hash) FROM STDIN") as copy:
            # containers interleave over time: round r writes event r of every container
            for r in range(per):
                for k, cid in enumerate(ids):
                    h = hosts[k % 100]
                    seqs[h] += 1
                    payload = (created if r == 0 else renamed) % cid.encode()
                    copy.write_row((h, seqs[h], f"container-{cid}", r + 1, 1,
                                    "ContainerCreated" if r == 0 else "ContainerRenamed",
                                    t0 + (r * containers + k) * 1000, actor, f"op-{cid[:12]}",
                                    None, payload, "0" * 64))
                log(f"  copied round {r + 1}/{per}")
        conn.execute("ANALYZE shipslog.events")
    return ids


def queries(pg: PostgresCluster, ids: list[str], containers: int, per: int,
            n: int) -> dict[str, Any]:
    rng = random.Random(7)
    reader = FleetReader(pg.dsn)
    hist: list[float] = []
    for cid in rng.sample(ids, n):
        t = time.perf_counter()
        doc = reader.get_json(f"/shipslog/history/{cid}")
        hist.append(time.perf_counter() - t)
        assert len(doc["entries"]) == per, doc["entries"]
    since: list[float] = []
    t0 = 1_765_000_000 * 10**9
    span = containers * per * 1000
    for _ in range(n):
        at = (t0 + rng.randrange(span)) / 1e9
        t = time.perf_counter()
        with reader.stream_json("GET", "/shipslog/events", {"since": str(at),
                                                            "limit": 100}) as events:
            got = sum(1 for _ in events)
        since.append(time.perf_counter() - t)
        assert got == 100 or at > (t0 + span) / 1e9 - 1
    with CentralLog(pg.dsn) as c:
        plan = c._run(lambda conn: conn.execute(
            "EXPLAIN SELECT * FROM shipslog.events WHERE stream = ANY(%s) AND host = %s "
            "ORDER BY seq", ([f"container-{ids[0]}"], "h000")).fetchall())
        found = c._run(lambda conn: conn.execute(
            "EXPLAIN SELECT DISTINCT host, stream FROM shipslog.events WHERE stream >= %s "
            "AND stream < %s", (f"container-{ids[0]}", f"container-{ids[0]}~")).fetchall())
    reader.close()
    return {"history_median_s": statistics.median(hist), "history_p99_s": p99(hist),
            "events_since_median_s": statistics.median(since), "events_since_p99_s": p99(since),
            "history_plan": " | ".join(str(r[0]).strip() for r in plan),
            "lookup_plan": " | ".join(str(r[0]).strip() for r in found)}


def run_all(args: argparse.Namespace, pg: PostgresCluster, base: Path,
            out: dict[str, Any]) -> None:
    ensure_schema(pg.dsn)
    pg.psql("CREATE ROLE replicator LOGIN; " + grant_replica("replicator"))
    if not args.skip_lag:
        log(f"lag: 3 hosts, {args.rate:.0f} events/s in all, {args.seconds:.0f}s")
        out["lag"] = lag(pg, base, args.rate, args.seconds)
    log(f"loading {args.events:,} events ({args.containers:,} containers, 100 hosts) "
        "with COPY")
    t = time.perf_counter()
    ids = load_big(pg, args.events, args.containers)
    out["load_s"] = time.perf_counter() - t
    per = max(1, args.events // args.containers)
    out["queries"] = queries(pg, ids, args.containers, per, args.queries)
    out["events"], out["containers"] = args.events, args.containers


def main() -> None:
    ap = argparse.ArgumentParser(prog="tools.bench.fleet")
    ap.add_argument("--rate", type=float, default=1000.0, help="events/s from all 3 hosts")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--containers", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--skip-lag", action="store_true")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    out: dict[str, Any] = {"docker": None, "cpus": os.cpu_count()}
    try:
        with PostgresCluster.start() as pg:
            run_all(args, pg, base, out)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    rows = []
    if "lag" in out:
        lg = out["lag"]
        rows += [[f"replication lag, {lg['rate']:.0f} ev/s from 3 hosts (median)",
                  fmt_s(lg["lag_median_s"]), "-"],
                 ["replication lag (p99)", fmt_s(lg["lag_p99_s"]), "-"]]
    q = out["queries"]
    rows += [[f"history ID, {args.events:,} events, {args.containers:,} containers (median)",
              fmt_s(q["history_median_s"]), "-"],
             ["history ID (p99)", fmt_s(q["history_p99_s"]), "-"],
             ["events --since T, first 100 (median)", fmt_s(q["events_since_median_s"]), "-"],
             ["events --since T, first 100 (p99)", fmt_s(q["events_since_p99_s"]), "-"]]
    print(format_table(["measure", "shipslog", "docker"], rows))
    print(f"finding the container on any host: {q['lookup_plan']}")
    print(f"reading its events on that host: {q['history_plan']}")
    print(json_line(out))


if __name__ == "__main__":
    main()
