"""Benchmark the event store on this machine; compare with the `eventsourcing` library.

I/O: SQLite files in a temporary directory (removed at the end); prints a table, and as its
LAST line one JSON object with the numbers (for CI to compare over time).

    python3 -m tools.bench.events            # 1,000,000-event log for rebuild/verify
    python3 -m tools.bench.events --quick    # smaller sizes, whole run < 2 minutes

Measured: durable single appends (file DB, synchronous=FULL, one event per transaction) vs
eventsourcing's `SQLiteApplicationRecorder` with the same payload size and its own durable
settings (WAL, default synchronous); 32 concurrent trio appenders through `StoreWriter`
(group commit); projection rebuild, hash-chain verify (before/after, sequential and in
worker processes), time travel, and `ps` from the
materialised table with 10,000 containers. The projection is `projections.engine.EngineProjection`.
"""

from __future__ import annotations

import argparse
import json
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
from events.envelope import Actor, Pending
from events.redact import redact_env
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


def bench_eventsourcing(tmp: Path, n: int, payload_size: int) -> float:
    from eventsourcing.persistence import StoredEvent
    from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

    datastore = SQLiteDatastore(db_name=str(tmp / "eventsourcing.db"))
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()
    state = b"x" * payload_size
    started = time.perf_counter()
    for i in range(n):
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
    elapsed = time.perf_counter() - started
    datastore.close()
    return n / elapsed


def bench_concurrent(tmp: Path, per_task: int, tasks: int) -> tuple[float, int]:
    store: EventStore[Any] = EventStore.open(tmp / "concurrent.db")

    async def main() -> tuple[float, int]:
        async with open_store_writer(store) as writer:

            async def appender(t: int) -> None:
                for j in range(per_task):
                    cid = _cid(t * per_task + j)
                    await writer.append(
                        [
                            Pending(
                                stream=f"container-{cid}",
                                event=ContainerStarted(container_id=cid, pid=j),
                            )
                        ],
                        actor=ACTOR,
                        op_id="op",
                        now_ns=j,
                    )

            started = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for t in range(tasks):
                    nursery.start_soon(appender, t)
            elapsed = time.perf_counter() - started
            return per_task * tasks / elapsed, writer.commits

    rate, commits = trio.run(main)
    assert store.head() == per_task * tasks and store.verify().ok
    store.close()
    return rate, commits


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


def bench_log(path: Path, total: int) -> dict[str, float]:
    from projections.engine import EngineProjection, decode_row

    out: dict[str, float] = {}
    store: EventStore[Any] = EventStore.open(path)
    # The floor under verify and rebuild: sqlite3 handing Python the rows and nothing else.
    t = time.perf_counter()
    for _ in store._r.conn.execute("SELECT * FROM events ORDER BY seq"):
        pass
    out["sqlite_fetch_floor_rows_per_s"] = total / (time.perf_counter() - t)
    out.update(bench_verify(store, total))
    store.close()

    t = time.perf_counter()
    store = EventStore.open(path, projection=EngineProjection())  # folds + writes the tables
    out["open_with_projection_s"] = time.perf_counter() - t
    t = time.perf_counter()
    store.rebuild()
    out["rebuild_events_per_s"] = total / (time.perf_counter() - t)
    t = time.perf_counter()
    store.fold_to(EngineProjection(), until_seq=total // 2)
    out["time_travel_ms"] = (time.perf_counter() - t) * 1e3
    store.close()

    reader: EventStore[Any] = EventStore.open(path, readonly=True)
    t = time.perf_counter()
    rows = [decode_row("containers", doc) for _, doc in reader.read_rows("containers")]
    out["ps_query_ms"] = (time.perf_counter() - t) * 1e3
    out["ps_containers"] = len(rows)
    reader.close()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, < 2 minutes")
    parser.add_argument("--dir", help="where to put the databases (default: a temp dir)")
    args = parser.parse_args(argv)
    durable_n, conc_per_task, log_total = (
        (300, 300, 200_000) if args.quick else (2000, 1000, 1_000_000)
    )
    containers = 10_000
    payload = len(encode_event(ContainerStarted(container_id=_cid(1), pid=1, monitor_pid=1)))

    with tempfile.TemporaryDirectory(prefix="slg-bench-", dir=args.dir) as d:
        tmp = Path(d)
        results: dict[str, Any] = {}
        results.update(bench_durable(tmp, durable_n))
        results["eventsourcing_appends_per_s"] = bench_eventsourcing(tmp, durable_n, payload)
        results["durable_vs_eventsourcing"] = (
            results["durable_appends_per_s"] / results["eventsourcing_appends_per_s"]
        )
        rate, commits = bench_concurrent(tmp, conc_per_task, 32)
        results["concurrent_appends_per_s"] = rate
        results["concurrent_commits"] = commits
        results["bulk_load_events_per_s"] = build_log(tmp / "log.db", log_total, containers)
        results.update(bench_log(tmp / "log.db", log_total))
        results["log_events"] = log_total

    width = max(map(len, results))
    print(f"{'measure':<{width}}  value")
    for name, value in results.items():
        shown = f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"
        print(f"{name:<{width}}  {shown}")
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
