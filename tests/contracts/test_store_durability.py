"""Crash and WAL tests of the file event store (RELIABILITY F-06, item 7 "Durability").

A writer process appending through the daemon's `StoreWriter` is killed with SIGKILL mid-burst;
the log it leaves must pass `PRAGMA integrity_check`, verify, hold every event the writer
acknowledged and be gap-free. The WAL preallocation (`_SqliteBackend.preallocate_wal`) is
checked to leave a zero tail that recovery ignores, and to back off cleanly when the file
cannot grow. File databases only: the in-memory backend has no WAL and survives no crash.

I/O: SQLite files under pytest's tmp_path; child Python processes it starts and kills by pid.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import trio

from events.envelope import Actor, Pending
from events.store import EventStore
from events.vocabulary import VolumeCreated
from events.writer import open_store_writer

ROOT = Path(__file__).resolve().parents[2]

WRITER = textwrap.dedent(
    """
    import sys
    import trio
    from events.envelope import Actor, Pending
    from events.store import EventStore
    from events.vocabulary import VolumeCreated
    from events.writer import open_store_writer
    from projections.engine import EngineProjection

    store = EventStore.open(sys.argv[1], projection=EngineProjection())
    actor = Actor(uid=0, gid=0, pid=1, via="daemon")

    async def appender(writer, t):
        for j in range(100_000):
            name = f"v{t}-{j}"
            [env] = await writer.append(
                [Pending(stream=f"volume-{name}", event=VolumeCreated(name=name),
                         expected_version=0)],
                actor=actor, op_id=f"op-{t}-{j}", now_ns=j)
            print(env.seq, env.stream, flush=True)  # acknowledged

    async def main():
        async with open_store_writer(store) as writer, trio.open_nursery() as nursery:
            for t in range(8):
                nursery.start_soon(appender, writer, t)

    trio.run(main)
    """
)


def _wal_target(scratch: Path) -> int:
    """The preallocated WAL size, from a scratch database: opening the one under test would
    recover (and, on close, checkpoint and delete) its WAL before the store does."""
    conn = sqlite3.connect(scratch / "probe.db")
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    finally:
        conn.close()
    return 32 + pages * (24 + page_size)


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}


def test_sigkill_mid_burst_keeps_every_acknowledged_event(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)],
        stdout=subprocess.PIPE, text=True, env=_child_env(),
    )
    acknowledged: list[tuple[int, str]] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            seq, stream = line.split()
            acknowledged.append((int(seq), stream))
            if len(acknowledged) == 300:
                os.kill(child.pid, signal.SIGKILL)  # mid-burst: other appends are in flight
                break
        # Acknowledgements printed before the kill landed count too; the kill may cut the last
        # line short, and a line without its newline was never a whole acknowledgement.
        acknowledged += [(int(s), st) for s, st in
                         (ln.split() for ln in child.stdout if ln.endswith("\n"))]
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    wal = Path(f"{db}-wal")
    # The writer died with its WAL preallocated and not outgrown: recovery meets the zero tail.
    assert wal.stat().st_size == _wal_target(tmp_path)

    store: EventStore[object] = EventStore.open(db)
    try:
        integrity = store._r.conn.execute("PRAGMA integrity_check").fetchall()
        assert integrity == [("ok",)]
        head = store.head()
        assert head >= max(seq for seq, _ in acknowledged)
        result = store.verify()
        assert result.ok and result.checked == head  # gap-free and unaltered
        recorded = {e.seq: e.stream for e in store.read()}
        assert all(recorded.get(seq) == stream for seq, stream in acknowledged)
    finally:
        store.close()


def test_wal_is_preallocated_and_a_reopen_reads_through_its_zero_tail(tmp_path: Path) -> None:
    from tests.contracts.test_event_store import append, vol

    db = tmp_path / "events.db"
    store: EventStore[object] = EventStore.open(db)
    try:
        wal = Path(f"{db}-wal")
        assert wal.stat().st_size == _wal_target(tmp_path)
        append(store, vol("a"), vol("b"))
        assert wal.stat().st_size == _wal_target(tmp_path)  # the commit overwrote, not grew
        # A second connection opened now sees the committed frames, not the zeros behind them.
        other: EventStore[object] = EventStore.open(db, readonly=True)
        try:
            assert [e.stream for e in other.read()] == ["volume-a", "volume-b"]
        finally:
            other.close()
    finally:
        store.close()


PREALLOC_BLOCKED = textwrap.dedent(
    """
    import resource, signal, sys
    from events.envelope import Actor, Pending
    from events.store import EventStore
    from events.vocabulary import VolumeCreated

    # Writes past 512 KiB fail (EFBIG) as they would on a full disk (ENOSPC).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (512 * 1024, 512 * 1024))
    store = EventStore.open(sys.argv[1])
    actor = Actor(uid=0, gid=0, pid=1, via="daemon")
    for i in range(20):
        store.append([Pending(stream=f"volume-{i}", event=VolumeCreated(name=str(i)))],
                     actor=actor, op_id="o", now_ns=i)
    assert store.verify().ok and store.head() == 20
    print(__import__("os").path.getsize(sys.argv[1] + "-wal"))
    store.close()
    """
)


def test_a_wal_that_cannot_grow_is_cut_back_and_the_store_works(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    out = subprocess.run(
        [sys.executable, "-c", PREALLOC_BLOCKED, str(db)],
        capture_output=True, text=True, env=_child_env(), check=False,
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) < 512 * 1024  # no half-written zero tail left behind
    store: EventStore[object] = EventStore.open(db, readonly=True)
    try:
        assert store.head() == 20 and store.verify().ok
    finally:
        store.close()


async def test_the_writer_checkpoints_when_idle_and_the_wal_stays_in_its_preallocation(
    tmp_path: Path,
) -> None:
    db = tmp_path / "events.db"
    store: EventStore[object] = EventStore.open(db)
    actor = Actor(uid=0, gid=0, pid=1, via="daemon")
    wal = Path(f"{db}-wal")
    try:
        async with open_store_writer(
            store, idle_checkpoint_s=0.001, idle_checkpoint_commits=1
        ) as writer:
            for burst in range(12):  # ~12 x 40 commits x several frames: past 1000 frames
                for i in range(40):
                    name = f"{burst}-{i}"
                    await writer.append(
                        [Pending(stream=f"volume-{name}", event=VolumeCreated(name=name))],
                        actor=actor, op_id="o", now_ns=i,
                    )
                with trio.fail_after(30):  # a deadline for a hang, not a timing assertion
                    while writer.checkpoints <= burst:
                        await trio.sleep(0.001)
        # Every burst began a fresh WAL at its start: it never outgrew its preallocated size,
        # as it would have at SQLite's automatic checkpoint after 1000 frames.
        assert wal.stat().st_size == _wal_target(tmp_path)
        assert store.checkpoint() is True  # nothing left that an idle checkpoint missed
        assert store.head() == 12 * 40 and store.verify().ok
        integrity = store._r.conn.execute("PRAGMA integrity_check").fetchall()
        assert integrity == [("ok",)]
    finally:
        store.close()


def test_checkpoint_is_a_no_op_without_a_wal() -> None:
    store: EventStore[object] = EventStore.open(":memory:")
    try:
        assert store.checkpoint() is False
    finally:
        store.close()


async def test_sparse_commits_wait_for_enough_work_before_an_idle_checkpoint(
    tmp_path: Path,
) -> None:
    store: EventStore[object] = EventStore.open(tmp_path / "events.db")
    actor = Actor(uid=0, gid=0, pid=1, via="daemon")
    try:
        async with open_store_writer(
            store, idle_checkpoint_s=0.001, idle_checkpoint_commits=3
        ) as writer:
            for i in range(5):
                await writer.append(
                    [Pending(stream=f"volume-{i}", event=VolumeCreated(name=str(i)))],
                    actor=actor, op_id="o", now_ns=i,
                )
                await trio.sleep(0.01)  # idle after every commit
            # Only the third commit made enough work for a checkpoint; the next two wait.
            with trio.fail_after(30):
                while writer.checkpoints < 1:
                    await trio.sleep(0.001)
            assert writer.checkpoints == 1
        assert store.head() == 5 and store.verify().ok
    finally:
        store.close()
