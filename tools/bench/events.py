"""Benchmark the event store on this machine; compare with the `eventsourcing` library.

I/O: SQLite files in a temporary directory (removed at the end); prints a table, and as its
LAST line one JSON object with the numbers (for CI to compare over time).

    python3 -m tools.bench.events            # 1,000,000-event log for rebuild/verify
    python3 -m tools.bench.events --quick    # smaller sizes, whole run < 2 minutes
    python3 -m tools.bench.events --appends  # only the append measurements (durable, concurrent)

The durable and concurrent runs are repeated on the PostgreSQL backend (`pg_*`, a private
cluster started and stopped by pid; `--no-postgres` skips them), with ratios to SQLite's.

Measured: durable single appends (file DB, synchronous=FULL, one event per transaction) vs
eventsourcing's `SQLiteApplicationRecorder` with the same payload size and its own durable
settings (WAL, synchronous as reported in `eventsourcing_pragmas`); the fdatasync floor of this
disk beside them (a durable commit cannot be faster than one fdatasync, so
`durable_vs_eventsourcing_bound_*` is the highest ratio any store could reach here); 32
concurrent trio appenders through `StoreWriter` (group commit) with the daemon's inline
projection, each starting and stopping its own container; hash-chain verify (before/after,
sequential and in worker processes); the projection: first open (fold from zero), the
rows-free fold, rebuild from zero, restart from the newest snapshot, time travel (the
middle, and the worst point: just before a snapshot); and the daemon's read handlers over
10,000 containers: `ps` (API warm and cold, `--root` from cold), `history` of one container,
`events --since` (first page, then the whole stream's rate).

Floors, measured beside the store so a target can be checked against what this machine and
this schema allow at all: `fdatasync_*` (one sync), `concurrent_floor_*` (the concurrent run's
own rows and projection rows replayed by SQLite alone, 32 events per commit),
`sqlite_fetch_floor_*` (sqlite3 handing Python every row, the floor under a rebuild) and
`verify_*_floor_*` (building the canonical bytes, and sha256 over them, apart). The issue 17
ratios are printed as `concurrent_vs_floor`, `rebuild_vs_fetch_floor` and
`fold_from_zero_vs_fetch_floor`, and the rebuild's gap to its floor per event in its parts
as `fold_part_*_us` (fetch, decode and envelopes, handlers, what the rebuild adds);
`concurrent_handoff_us_per_append` is what the concurrent
run pays outside the store (the trio round trip of each append, over a store that only
sleeps), which no commit overlaps while every appender waits on the same commit.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import trio

from events.codec import encode_event
from events.envelope import Actor, Envelope, Pending
from events.redact import redact_env
from events.sqlite_backend import SqliteBackend
from events.store import EventStore
from events.values import ContainerConfig, RestartPolicy
from events.vocabulary import (
    ContainerCreated,
    ContainerCreateRequested,
    ContainerExited,
    ContainerStarted,
    ContainerStartRequested,
    ContainerStopRequested,
    NameClaimed,
    OperationCompleted,
    OperationRequested,
)
from events.writer import open_store_writer

ACTOR = Actor(uid=1000, gid=1000, pid=4242, loginuid=1000, command=("shipslog", "start"))
KEY = b"k" * 32


def _cid(i: int) -> str:
    return f"{i:064x}"


def _config(i: int) -> ContainerConfig:
    return ContainerConfig(
        image="busybox:latest",
        image_id="sha256:" + "ab" * 32,
        cmd=("sh", "-c", f"echo {i}; sleep 1000"),
        env=redact_env(KEY, ["PATH=/usr/bin:/bin", f"N={i}"]),
        labels={"app": "bench", "n": str(i)},
        restart_policy=RestartPolicy(name="on-failure", maximum_retry_count=3),
    )


def _create(i: int) -> list[Pending]:
    cid = _cid(i)
    stream = f"container-{cid}"
    return [
        Pending(
            stream=stream,
            event=ContainerCreateRequested(container_id=cid, name=f"c{i}", config=_config(i)),
            expected_version=0,
        ),
        Pending(
            stream=f"name-c{i}",
            event=NameClaimed(name=f"c{i}", container_id=cid),
            expected_version=0,
        ),
        Pending(stream=stream, event=ContainerCreated(container_id=cid, rootfs=f"/r/{cid}")),
    ]


def _cycle(i: int, n: int) -> list[Pending]:
    cid = _cid(i)
    stream = f"container-{cid}"
    op = f"op-{i}-{n}"
    return [
        Pending(
            stream=f"op-{op}",
            event=OperationRequested(op_id=op, kind="container.start", target=stream),
        ),
        Pending(stream=stream, event=ContainerStartRequested(container_id=cid)),
        Pending(
            stream=stream, event=ContainerStarted(container_id=cid, pid=1000 + n, monitor_pid=999)
        ),
        Pending(stream=f"op-{op}", event=OperationCompleted(op_id=op)),
        Pending(stream=stream, event=ContainerStopRequested(container_id=cid)),
        Pending(stream=stream, event=ContainerExited(container_id=cid, exit_code=0, finished_at=n)),
    ]


def _log_batches(total: int, containers: int) -> Iterator[list[Pending]]:
    emitted = 0
    for i in range(containers):
        batch = _create(i)
        emitted += len(batch)
        yield batch
    n = 0
    while emitted < total:
        batch = _cycle(n % containers, n)[: total - emitted]
        emitted += len(batch)
        n += 1
        yield batch


# --- measurements ----------------------------------------------------------------------------


def bench_durable(tmp: Path, n: int) -> dict[str, float]:
    store: EventStore[Any] = EventStore.open(tmp / "durable.db")
    run = _durable_run(store, n)  # the floor replays this run's rows
    return {**bench_durable_floor(tmp / "durable.db", tmp), **run}


def _durable_run(store: EventStore[Any], n: int) -> dict[str, float]:
    """One appender, one event per transaction, each acknowledged once durable."""
    latencies = []
    started = time.perf_counter()
    for i in range(n):
        pending = [
            Pending(
                stream=f"container-{_cid(i)}",
                event=ContainerStarted(container_id=_cid(i), pid=i, monitor_pid=i),
            )
        ]
        t = time.perf_counter()
        store.append(pending, actor=ACTOR, op_id=f"op-{i}", now_ns=i)
        latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    store.close()
    latencies.sort()
    return {
        "durable_appends_per_s": n / elapsed,
        "append_p50_ms": latencies[len(latencies) // 2] * 1e3,
        "append_p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3,
    }


def bench_durable_floor(source: Path, tmp: Path) -> dict[str, float]:
    """p50 of the durable run's own rows inserted one per transaction by SQLite alone, on a
    fresh log with the same schema: the part of an append no Python change can remove."""
    import sqlite3

    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    rows = src.execute("SELECT * FROM events ORDER BY seq").fetchall()
    src.close()
    floor_path = tmp / "durable-floor.db"
    EventStore.open(floor_path).close()
    conn = sqlite3.connect(floor_path, isolation_level=None)
    conn.execute("PRAGMA synchronous=FULL")
    times = []
    for row in rows:
        t = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?)", row)
        conn.execute("COMMIT")
        times.append(time.perf_counter() - t)
    conn.close()
    return {"durable_floor_p50_ms": statistics.median(times) * 1e3}


def bench_fdatasync(tmp: Path, n: int) -> dict[str, float]:
    """The floor under a durable commit: p50 of one fdatasync after a 4 KiB write that extends
    the file (a WAL growing) and after one that overwrites it (a WAL reused after a checkpoint)."""
    fd = os.open(tmp / "fsync-floor", os.O_RDWR | os.O_CREAT, 0o600)
    out: dict[str, float] = {}
    try:
        page = b"x" * 4096
        for name, offset in (("append", lambda i: i * 4096), ("overwrite", lambda i: 0)):
            times = []
            for i in range(n):
                os.pwrite(fd, page, offset(i))
                t = time.perf_counter()
                os.fdatasync(fd)
                times.append(time.perf_counter() - t)
            out[f"fdatasync_{name}_p50_us"] = statistics.median(times) * 1e6
    finally:
        os.close(fd)
    return out


def bench_eventsourcing(tmp: Path, n: int, payload_size: int) -> tuple[float, float, str]:
    """Appends per second, the p50 append in ms, and the journal mode and synchronous level it
    really ran with."""
    from eventsourcing.persistence import StoredEvent
    from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

    datastore = SQLiteDatastore(db_name=str(tmp / "eventsourcing.db"))
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()
    with datastore.transaction(commit=False) as cursor:
        cursor.execute("PRAGMA journal_mode")
        journal = cursor.fetchone()[0]
        cursor.execute("PRAGMA synchronous")
        synchronous = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[cursor.fetchone()[0]]
    state = b"x" * payload_size
    latencies = []
    started = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        recorder.insert_events(
            [
                StoredEvent(
                    originator_id=uuid.UUID(int=i + 1),
                    originator_version=1,
                    topic="bench:ContainerStarted",
                    state=state,
                )
            ]
        )
        latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    datastore.close()
    return n / elapsed, statistics.median(latencies) * 1e3, f"{journal}/{synchronous}"


def bench_concurrent(tmp: Path, per_task: int, tasks: int, *, location: str | None = None,
                     host_name: str | None = None) -> tuple[float, int]:
    """Appends/s of `tasks` trio tasks through the daemon's writer with its inline projection.

    Each task owns a container (created before the clock starts) and appends one event per
    call, alternating ContainerStarted and ContainerExited, each checked against the stream's
    expected version, so every append also rewrites the container's projection row.
    """
    from projections.engine import EngineProjection

    store: EventStore[Any] = EventStore.open(location or tmp / "concurrent.db",
                                             projection=EngineProjection(), host_name=host_name)
    for i in range(tasks):
        store.append(_create(i), actor=ACTOR, op_id=f"create-{i}", now_ns=i)
    first = store.head()

    async def main() -> tuple[float, int]:
        async with open_store_writer(store) as writer:

            async def appender(t: int) -> None:
                cid = _cid(t)
                stream = f"container-{cid}"
                version = store.stream_version(stream)
                for j in range(per_task):
                    event: Any = (
                        ContainerStarted(container_id=cid, pid=j)
                        if j % 2 == 0
                        else ContainerExited(container_id=cid, exit_code=0, finished_at=j)
                    )
                    await writer.append(
                        [Pending(stream=stream, event=event, expected_version=version)],
                        actor=ACTOR,
                        op_id="op",
                        now_ns=j,
                    )
                    version += 1

            started = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for t in range(tasks):
                    nursery.start_soon(appender, t)
            elapsed = time.perf_counter() - started
            return per_task * tasks / elapsed, writer.commits

    rate, commits = trio.run(main)
    assert store.head() == first + per_task * tasks and store.verify().ok
    store.close()
    return rate, commits  # the log stays for bench_concurrent_floor


def bench_handoff(per_task: int, tasks: int) -> dict[str, float]:
    """What the concurrent run pays outside the store: the same `tasks` trio appenders
    through `StoreWriter`, against a store whose `append_group` does nothing but sleep
    (letting go of the GIL, as a commit's fsync does). The wall time minus the sleeps, per
    append, is the trio task's round trip (wake-up, the appender's own code, the hand-off
    to the writer thread), paid between two commits while no commit runs: with 32
    appenders waiting on every commit, no commit overlaps it."""

    class _Sleeper:
        def head(self) -> int:
            return 0

        def append_group(self, batches: list[Any]) -> list[list[Envelope]]:
            time.sleep(0.001)
            return [[] for _ in batches]

        def checkpoint(self) -> bool:
            return True

    async def main() -> tuple[float, int]:
        async with open_store_writer(_Sleeper()) as writer:  # type: ignore[arg-type]
            async def appender(t: int) -> None:
                cid = _cid(t)
                for j in range(per_task):
                    await writer.append(
                        [Pending(stream=f"container-{cid}",
                                 event=ContainerStarted(container_id=cid, pid=j))],
                        actor=ACTOR, op_id="op", now_ns=j)

            started = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for t in range(tasks):
                    nursery.start_soon(appender, t)
            return time.perf_counter() - started, writer.commits

    sleep = statistics.median(_timed_sleep(0.001) for _ in range(50))
    elapsed, groups = trio.run(main)
    return {"concurrent_handoff_us_per_append":
            max(0.0, elapsed - groups * sleep) / (per_task * tasks) * 1e6}


def _timed_sleep(seconds: float) -> float:
    t = time.perf_counter()
    time.sleep(seconds)
    return time.perf_counter() - t


def bench_postgres(n: int, per_task: int, tasks: int) -> dict[str, Any]:
    """The same durable and concurrent runs on the PostgreSQL backend (issue 19): a private
    cluster on this machine (fsync and synchronous_commit on, loopback TCP), the store opened
    as the daemon's SELECT+INSERT-only role. Empty when PostgreSQL 15 is not installed."""
    from engine.testing.postgres import PostgresCluster, postgres_available
    from events.pg_schema import SCHEMA, grant_store_role

    why = postgres_available()
    if why is not None:
        return {"pg_skipped": why}
    with PostgresCluster.start() as pg:
        pg.psql(SCHEMA)
        pg.psql("CREATE ROLE daemon LOGIN")
        pg.psql(grant_store_role("daemon", "shipslog"))
        url = pg.dsn_for("daemon")
        out = {f"pg_{k}": v for k, v in _durable_run(
            EventStore.open(url, host_name="bench-durable"), n).items()}
        rate, commits = bench_concurrent(Path(), per_task, tasks, location=url,
                                         host_name="bench-concurrent")
    out["pg_concurrent_appends_per_s"] = rate
    out["pg_concurrent_events_per_commit"] = per_task * tasks / commits
    return out


def bench_concurrent_floor(source: Path, tmp: Path, tasks: int) -> dict[str, float]:
    """The concurrent run's writes with no Python in the way: the ceiling of any writer.

    Replays, on a fresh log with the same schema, the rows the concurrent run appended,
    `tasks` events per transaction (the largest group 32 waiting appenders can form), each
    with its container's projection row rewritten, as `append_group` writes them: one
    `executemany` for the events, one for the rows, COMMIT. What remains is SQLite's and the
    disk's cost: every event of a group lands in its own stream's leaf of the
    `UNIQUE(stream, stream_version)` index and rewrites its own projection row, so a commit
    writes and syncs about two pages per event. Also reports those WAL frames per commit.
    """
    import sqlite3

    from projections.engine import EngineProjection

    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    first = src.execute("SELECT seq FROM events WHERE type='ContainerStarted' "
                        "ORDER BY seq LIMIT 1").fetchone()[0] - 1
    rows = src.execute("SELECT * FROM events WHERE seq > ? ORDER BY seq", (first,)).fetchall()
    docs = dict(src.execute("SELECT key, doc FROM proj_containers").fetchall())
    src.close()

    floor_path = tmp / "concurrent-floor.db"
    store: EventStore[Any] = EventStore.open(floor_path, projection=EngineProjection())
    for i in range(tasks):
        store.append(_create(i), actor=ACTOR, op_id=f"create-{i}", now_ns=i)
    assert store.head() == first
    store.close()
    conn = sqlite3.connect(floor_path, isolation_level=None)
    conn.execute("PRAGMA synchronous=FULL")
    insert = "INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?)"
    upsert = "INSERT OR REPLACE INTO proj_containers(key, doc) VALUES (?, ?)"
    prefix = len("container-")
    groups = [rows[i : i + tasks] for i in range(0, len(rows), tasks)]

    def commit(group: list[Any]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert, group)
        conn.executemany(upsert, [(r[1][prefix:], docs[r[1][prefix:]]) for r in group])
        conn.execute("COMMIT")

    measured, counted = groups[: len(groups) - 20], groups[len(groups) - 20 :]
    started = time.perf_counter()
    for group in measured:
        commit(group)
    elapsed = time.perf_counter() - started
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    for group in counted:
        commit(group)
    frames = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
    conn.close()
    return {
        "concurrent_floor_events_per_s": sum(map(len, measured)) / elapsed,
        "concurrent_floor_wal_frames_per_commit": frames / len(counted),
    }


def bench_concurrent_pairs(tmp: Path, per_task: int, tasks: int, pairs: int) -> dict[str, float]:
    """The concurrent run and its floor, `pairs` times, each floor right after its run (fresh
    files each time): `concurrent_vs_floor` is the median of the pairs' own ratios, so that a
    change of load between a run and its floor (a shared machine, another disk writer) moves
    one pair, not the verdict. Rates and group sizes are medians too."""
    runs: list[dict[str, float]] = []
    for i in range(pairs):
        here = tmp / f"concurrent-{i}"
        here.mkdir()
        rate, commits = bench_concurrent(here, per_task, tasks)
        floor = bench_concurrent_floor(here / "concurrent.db", here, tasks)
        runs.append({"concurrent_appends_per_s": rate, "concurrent_commits": commits,
                     "concurrent_events_per_commit": per_task * tasks / commits, **floor,
                     "concurrent_vs_floor": rate / floor["concurrent_floor_events_per_s"]})
    out = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    out["concurrent_vs_floor_min"] = min(run["concurrent_vs_floor"] for run in runs)
    out["concurrent_vs_floor_max"] = max(run["concurrent_vs_floor"] for run in runs)
    out["concurrent_pairs"] = pairs
    return out


def build_log(path: Path, total: int, containers: int) -> float:
    store: EventStore[Any] = EventStore.open(path)
    started = time.perf_counter()
    group = []
    for i, pending in enumerate(_log_batches(total, containers)):
        group.append(EventStore.batch(pending, actor=ACTOR, op_id=f"op-{i}", now_ns=i))
        if len(group) == 2000:
            for result in store.append_group(group):
                assert not isinstance(result, Exception), result
            group = []
    for result in store.append_group(group):
        assert not isinstance(result, Exception), result
    elapsed = time.perf_counter() - started
    assert store.head() == total
    store.close()
    return total / elapsed


def _travel_points(total: int, every: int) -> list[int]:
    """Points of time travel: the middle, the end, and the worst ones (just before a
    snapshot, so the most events to fold after the one before)."""
    worst = [k * every - 1 for k in range(1, total // every + 1)]
    return sorted({total // 2, total, *worst[:: max(1, len(worst) // 4)], worst[-1] if worst
                   else total})


def bench_hash_floor(store: EventStore[Any], sample: int) -> dict[str, float]:
    """The two halves of verify's per-event cost, apart: SQLite building and handing over the
    canonical bytes (`verify_fetch_floor`), and sha256 chaining them with the rows already in
    memory (`verify_hash_floor`). One process cannot verify faster than both together."""
    import hashlib

    t = time.perf_counter()
    rows = list(store._r.canonical_rows(sample))
    fetch = sample / (time.perf_counter() - t)
    sha256, prev = hashlib.sha256, b"0" * 64
    t = time.perf_counter()
    for _seq, _stored, canonical in rows:
        prev = sha256(prev + canonical).hexdigest().encode("ascii")
    hashing = sample / (time.perf_counter() - t)
    return {
        "verify_fetch_floor_rows_per_s": fetch,
        "verify_hash_floor_events_per_s": hashing,
        "verify_floor_one_process_events_per_s": 1 / (1 / fetch + 1 / hashing),
    }


def bench_verify(store: EventStore[Any], total: int, repeat: int = 3) -> dict[str, float]:
    """`verify` before this change (one sequential walk, `verify_chain` over every row) and
    now (in one process, and in parallel worker processes), side by side, medians of
    `repeat` runs: events per wall-clock second, and per CPU second (children included),
    which stays meaningful when other work shares the cores."""
    from events.hashing import verify_chain

    def cpu() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
            resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    ways = {
        "verify_sequential_before": lambda: verify_chain(store._r.canonical_rows(total)),
        "verify_one_process": lambda: store.verify(workers=1),
        "verify": lambda: store.verify(),
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
    for _ in range(repeat):
        for name, way in ways.items():
            c, t = cpu(), time.perf_counter()
            result = way()
            wall, used = time.perf_counter() - t, cpu() - c
            assert result.ok and result.checked == total, (name, result)
            runs[name].append((total / wall, total / used))
    out: dict[str, float] = {}
    for name, values in runs.items():
        out[f"{name}_events_per_s"] = statistics.median(v[0] for v in values)
        out[f"{name}_events_per_cpu_s"] = statistics.median(v[1] for v in values)
    return out


def bench_fold_parts(store: EventStore[Any], projection: Any, total: int) -> dict[str, float]:
    """Where the fold's time goes, per event (issue 17), each part timed alone with the
    collector paused as the store pauses it: the fold's own fetch (only the columns it
    reads), then that plus decoding payloads into envelopes. `_run` adds the handlers
    (the rows-free fold from zero minus both) and what a rebuild adds to its fold
    (snapshots, the tables' rows, the swap)."""
    import gc

    who = getattr(projection, "fold_who_types", None)
    backend, lock = store._r, store._rlock
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        t = time.perf_counter()
        for after in range(0, total, 20_000):
            backend.fold_rows(after, min(total, after + 20_000), who)
        fetch = time.perf_counter() - t
        t = time.perf_counter()
        for _ in store._fold_envelopes(backend, lock, 0, total, who):
            pass
        envelopes = time.perf_counter() - t
    finally:
        if was_enabled:
            gc.enable()
    return {"fold_part_fetch_us": fetch / total * 1e6,
            "fold_part_decode_envelope_us": (envelopes - fetch) / total * 1e6}


def bench_log(path: Path, total: int) -> dict[str, float]:
    from projections.engine import EngineProjection, decode_row

    out: dict[str, float] = {}
    store: EventStore[Any] = EventStore.open(path)
    # The floor under verify and rebuild: sqlite3 handing Python the rows and nothing else.
    t = time.perf_counter()
    assert isinstance(store._r, SqliteBackend)
    for _ in store._r.conn.execute("SELECT * FROM events ORDER BY seq"):
        pass
    out["sqlite_fetch_floor_rows_per_s"] = total / (time.perf_counter() - t)
    out.update(bench_hash_floor(store, min(total, 100_000)))
    out.update(bench_verify(store, total))
    store.close()

    projection = EngineProjection()
    t = time.perf_counter()
    # No snapshot yet: folds from zero, writes the tables and a snapshot every 50k events.
    store = EventStore.open(path, projection=projection)
    out["open_with_projection_s"] = time.perf_counter() - t
    t = time.perf_counter()
    reference = store.fold_to(projection, from_zero=True)
    out["fold_from_zero_events_per_s"] = total / (time.perf_counter() - t)
    t = time.perf_counter()
    store.rebuild()  # the reference: from zero, tables swapped in, fresh snapshots
    out["rebuild_events_per_s"] = total / (time.perf_counter() - t)
    assert store.state == reference
    out.update(bench_fold_parts(store, projection, total))
    every = store.snapshot_every
    out["snapshots"] = len(store.snapshot_seqs())
    store.close()

    t = time.perf_counter()
    store = EventStore.open(path, projection=projection)  # newest snapshot, tables current
    restart = time.perf_counter() - t
    out["restart_with_snapshot_s"] = restart
    out["restart_events_per_s"] = total / restart
    assert store.state == reference
    travel = {}
    for seq in _travel_points(total, every):
        t = time.perf_counter()
        store.fold_to(projection, until_seq=seq)
        travel[seq] = (time.perf_counter() - t) * 1e3
    out["time_travel_ms"] = travel[total // 2]
    out["time_travel_worst_ms"] = max(travel.values())
    out["time_travel_worst_seq"] = max(travel, key=lambda k: travel[k])
    t = time.perf_counter()
    store.fold_to(projection, until_seq=total // 2, from_zero=True)
    out["time_travel_from_zero_ms"] = (time.perf_counter() - t) * 1e3
    state = store.state
    store.close()

    reader: EventStore[Any] = EventStore.open(path, readonly=True)
    # Reading and decoding the whole materialised containers table, as `replay` compares it
    # with a rebuild: not a `ps` path (the daemon answers `ps` from its in-memory state,
    # `ps_api_*`; `--root` from the newest snapshot, `ps_root_cold_ms`).
    t = time.perf_counter()
    rows = [decode_row("containers", doc) for _, doc in reader.read_rows("containers")]
    out["containers_table_read_ms"] = (time.perf_counter() - t) * 1e3
    out["ps_containers"] = len(rows)
    out.update(bench_api_reads(path, reader, state, total))
    reader.close()
    return out


def bench_api_reads(path: Path, reader: EventStore[Any], state: Any,
                    total: int) -> dict[str, float]:
    """The daemon's GET handlers over `state` (as it serves them), and `--root` from cold."""
    from engine.api.routes.shipslog import (
        FrozenEngine,
        ReadOnlyContext,
        read_only_router,
        shipslog_routes,
    )
    from engine.api.server.router import Request, Response
    from engine.cli.local import LocalReader
    from projections.fold import apply

    out: dict[str, float] = {}
    ctx = ReadOnlyContext(engine=FrozenEngine(state), store=reader, paths=None,
                          now_ns=time.time_ns())
    router = read_only_router(ctx)
    router.include(shipslog_routes(ctx))

    def timed_ms(target: str, *, repeat: int = 5, before: Any = None, **query: str) -> float:
        """The handler's own time (median), inside one trio run as in the daemon."""
        route, params = router.match("GET", target)
        req = Request(method="GET", path=target, params=params,
                      query={k: [v] for k, v in query.items()}, headers={},
                      api_version="1.43", actor=ACTOR)

        async def run() -> list[float]:
            times = []
            for _ in range(repeat):
                if before is not None:
                    before()
                t = time.perf_counter()
                resp: Response = await route.handler(req)
                times.append(time.perf_counter() - t)
                assert resp.status == 200 and resp.body
            return times

        return statistics.median(trio.run(run)) * 1e3

    out["ps_api_cold_ms"] = timed_ms("/containers/json", repeat=1, all="1")
    out["ps_api_ms"] = timed_ms("/containers/json", all="1")
    out["ps_api_running_ms"] = timed_ms("/containers/json")
    # Under churn: one container changed since the last call (a new state, the same views).
    victim = next(iter(state.containers.values()))
    changes = iter(range(1, 1_000))

    def change_one() -> None:
        ctx.engine.state = apply(ctx.engine.state, Envelope(
            seq=ctx.engine.state.seq + 1, stream=f"container-{victim.id}",
            stream_version=victim.stream_version + next(changes), schema_version=1,
            recorded_at=time.time_ns(), actor=ACTOR, op_id="bench",
            event=ContainerStarted(container_id=victim.id, pid=7, monitor_pid=8)))

    out["ps_api_after_change_ms"] = timed_ms("/containers/json", before=change_one, all="1")
    ctx.engine.state = state

    cids = sorted(state.containers)[:: max(1, len(state.containers) // 5)][:5]
    out["history_ms"] = statistics.median(
        timed_ms(f"/shipslog/history/{cid}", repeat=1) for cid in cids)

    async def first_page_and_rate(since: str) -> tuple[float, float, int]:
        route, params = router.match("GET", "/shipslog/events")
        req = Request(method="GET", path="/shipslog/events", params=params,
                      query={"since": [since]}, headers={}, api_version="1.43", actor=ACTOR)
        t = time.perf_counter()
        resp = await route.handler(req)
        assert resp.stream is not None
        first, lines = 0.0, 0
        async for chunk in resp.stream:
            if not first:
                first = time.perf_counter() - t
            lines += chunk.count(b"\n")
        return first * 1e3, lines / (time.perf_counter() - t), lines

    middle = next(iter(reader.read(total // 2 - 1, limit=1))).recorded_at
    first_ms, rate, lines = trio.run(first_page_and_rate, f"{middle / 1e9:.9f}")
    out["events_since_first_page_ms"] = first_ms
    out["events_stream_per_s"] = rate
    assert lines >= total - total // 2

    root = path.parent / "root"
    root.mkdir(exist_ok=True)
    os.link(path, root / "events.db")  # the writers closed: the WAL is checkpointed
    local = LocalReader(str(root))
    # What `shipslog --root DIR ps -a` does after starting: open, load the newest snapshot,
    # render 10k summaries from cold, decode the JSON.
    t = time.perf_counter()
    listed = local.get_json("/containers/json", {"all": True})
    out["ps_root_cold_ms"] = (time.perf_counter() - t) * 1e3
    assert len(listed) == len(state.containers)
    local.close()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, < 2 minutes")
    parser.add_argument("--appends", action="store_true", help="only the append measurements")
    parser.add_argument("--repeat", type=int, default=1, help="runs; numbers are their medians")
    parser.add_argument("--dir", help="where to put the databases (default: a temp dir)")
    parser.add_argument("--no-postgres", action="store_true",
                        help="skip the PostgreSQL backend's durable and concurrent runs")
    args = parser.parse_args(argv)
    runs = [_run(args) for _ in range(max(1, args.repeat))]
    results = {
        key: value if isinstance(value, str) else statistics.median(run[key] for run in runs)
        for key, value in runs[-1].items()
    }
    if args.repeat > 1:
        results["runs"] = len(runs)

    width = max(map(len, results))
    print(f"{'measure':<{width}}  value")
    for name, value in results.items():
        shown = (
            f"{value:,.2f}" if isinstance(value, float)
            else f"{value:,}" if isinstance(value, int) else value
        )
        print(f"{name:<{width}}  {shown}")
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()}))
    sys.stdout.flush()


def _run(args: argparse.Namespace) -> dict[str, Any]:
    durable_n, conc_per_task, log_total = (
        (300, 300, 200_000) if args.quick else (2000, 1000, 1_000_000)
    )
    containers = 10_000
    payload = len(encode_event(ContainerStarted(container_id=_cid(1), pid=1, monitor_pid=1)))

    with tempfile.TemporaryDirectory(prefix="slg-bench-", dir=args.dir) as d:
        tmp = Path(d)
        results: dict[str, Any] = {}
        results.update(bench_fdatasync(tmp, durable_n))
        results.update(bench_durable(tmp, durable_n))
        es_rate, es_p50_ms, es_pragmas = bench_eventsourcing(tmp, durable_n, payload)
        results["eventsourcing_appends_per_s"] = es_rate
        results["eventsourcing_p50_ms"] = es_p50_ms
        results["eventsourcing_pragmas"] = es_pragmas
        results["durable_vs_eventsourcing"] = results["durable_appends_per_s"] / es_rate
        # The best ratio any store could reach here: eventsourcing's append against an append
        # that costs nothing but one fdatasync, of a growing WAL (as eventsourcing's) or of
        # an overwrite (as ours, whose WAL is preallocated).
        for floor in ("append", "overwrite"):
            results[f"durable_vs_eventsourcing_bound_{floor}"] = es_p50_ms * 1e3 / max(
                results[f"fdatasync_{floor}_p50_us"], 1.0
            )
        # ... and what SQLite itself needs to commit one of our rows (same schema, no Python).
        results["durable_vs_eventsourcing_bound_schema"] = es_p50_ms / max(
            results["durable_floor_p50_ms"], 1e-3
        )
        results.update(bench_concurrent_pairs(tmp, conc_per_task, 32, 3 if args.quick else 5))
        results.update(bench_handoff(conc_per_task, 32))
        if not args.no_postgres:
            pg = bench_postgres(durable_n, conc_per_task, 32)
            results.update(pg)
            if "pg_durable_appends_per_s" in pg:
                results["pg_vs_sqlite_durable"] = (
                    pg["pg_durable_appends_per_s"] / results["durable_appends_per_s"])
                results["pg_vs_sqlite_concurrent"] = (
                    pg["pg_concurrent_appends_per_s"] / results["concurrent_appends_per_s"])
        if not args.appends:
            results["bulk_load_events_per_s"] = build_log(tmp / "log.db", log_total, containers)
            results.update(bench_log(tmp / "log.db", log_total))
            floor = results["sqlite_fetch_floor_rows_per_s"]
            results["rebuild_vs_fetch_floor"] = results["rebuild_events_per_s"] / floor
            results["fold_from_zero_vs_fetch_floor"] = (
                results["fold_from_zero_events_per_s"] / floor)
            # The floor-to-rebuild gap per event, in its parts (`bench_fold_parts`).
            fold_us = 1e6 / results["fold_from_zero_events_per_s"]
            results["fold_part_floor_us"] = 1e6 / floor
            results["fold_part_handlers_us"] = fold_us - (
                results["fold_part_fetch_us"] + results["fold_part_decode_envelope_us"])
            results["fold_part_rebuild_extra_us"] = (
                1e6 / results["rebuild_events_per_s"] - fold_us)
            results["log_events"] = log_total
    return results


if __name__ == "__main__":
    main()
