"""Contract tests for compaction in the event store, on every backend (memory and file SQLite).

`EventStore.compact` archives whole streams (here picked by name: the selection of real logs
is engine/core/compaction.py's, tested in tests/property/test_compaction_properties.py), and
`verify` keeps proving the chain: live events, tombstones, archive files, and the
ChainCompacted events that tie them together. Every tampering names its first bad seq.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
import trio

from engine.shell.compaction import DurableArchive
from events.envelope import Actor, Envelope, Pending
from events.follow import follow
from events.store import CompactionView, EventStore, StoreError
from events.vocabulary import ChainCompacted, VolumeCreated, VolumeRemoved
from events.writer import Published, open_store_writer
from tests.contracts.conftest import DAEMON_ROLE, fresh_host

ALICE = Actor(uid=1000, gid=1000, pid=4242)


@pytest.fixture(params=["memory", "file", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore[Any]]:
    host = None
    if request.param == "postgresql":
        path = request.getfixturevalue("pg_cluster").dsn_for(DAEMON_ROLE)
        host = fresh_host(request.node.name)
    else:
        path = ":memory:" if request.param == "memory" else str(tmp_path / "events.db")
    opened: EventStore[Any] = EventStore.open(path, host_name=host)
    yield opened
    try:
        opened.close()
    except sqlite3.ProgrammingError:
        pass


def _add(store: EventStore[Any], stream: str, event: Any, now_ns: int) -> list[Envelope]:
    return store.append([Pending(stream=stream, event=event)], actor=ALICE, op_id="op",
                        now_ns=now_ns)


def _log(store: EventStore[Any]) -> None:
    """volume-a, volume-b and volume-c interleaved: a and b created and removed, c lives."""
    for i, name in enumerate("abcab"):
        _add(store, f"volume-{name}", VolumeCreated(name=name, labels={"i": str(i)}), 10 + i)
    _add(store, "volume-a", VolumeRemoved(name="a"), 20)
    _add(store, "volume-b", VolumeRemoved(name="b"), 21)
    _add(store, "volume-c", VolumeCreated(name="c2"), 22)


def _by_name(*streams: str) -> Any:
    def choose(view: CompactionView[Any]) -> Collection[str]:
        return [s for s in streams if view.read_streams([s])[s]]

    return choose


def _compact(store: EventStore[Any], tmp_path: Path, *streams: str) -> Any:
    report, envelopes = store.compact(
        _by_name(*streams), before_ns=100, write_archive=DurableArchive(tmp_path / "archive"),
        actor=ALICE, op_id="compact-1", now_ns=200)
    return report, envelopes


def _verify(store: EventStore[Any], tmp_path: Path, **kw: Any) -> Any:
    kw.setdefault("archive_dir", tmp_path / "archive")
    return store.verify(**kw)


def _tamper(store: EventStore[Any]) -> sqlite3.Connection:
    if store.location.startswith("postgresql://"):
        pytest.skip("tampers through SQLite's connection (PostgreSQL: tests/contracts/"
                    "test_pg_store.py)")
    conn = store._w.conn
    for trigger in ("events_no_update", "events_no_delete", "tombstones_no_update",
                    "tombstones_no_delete"):
        conn.execute(f"DROP TRIGGER {trigger}")
    return conn


def test_compaction_moves_whole_streams_and_the_chain_still_verifies(
        store: EventStore[Any], tmp_path: Path) -> None:
    _log(store)
    hashes = {e.seq: e.hash for e in store.read()}
    report, envelopes = _compact(store, tmp_path, "volume-a", "volume-b")
    assert (report.count, report.streams, report.first_seq, report.last_seq) == (6, 2, 1, 7)
    [summary] = envelopes
    assert summary.seq == 9 and summary.stream == "chain" and report.summary_seq == 9
    assert isinstance(summary.event, ChainCompacted) and summary.event.count == 6
    assert [e.seq for e in store.read()] == [3, 8, 9]
    assert store.head() == 9 and store.archived_between(0, 9) == 6
    # Archived events keep their hash (checkpoints of them still work).
    assert all(store.hash_at(seq) == hashes[seq] for seq in range(1, 9))
    archive = Path(report.archive)
    assert archive.parent == tmp_path / "archive" and archive.stat().st_mode & 0o777 == 0o600
    result = _verify(store, tmp_path)
    assert result.ok and result.checked == 9 and result.archived == 6
    assert result.archived_checked == 6 and result.missing_archives == ()
    assert result.last_hash == summary.hash


def test_without_the_archive_the_live_part_still_verifies(
        store: EventStore[Any], tmp_path: Path) -> None:
    _log(store)
    report, _ = _compact(store, tmp_path, "volume-a")
    result = _verify(store, tmp_path, archive_dir=tmp_path / "elsewhere")
    assert result.ok and result.archived == 3 and result.archived_checked == 0
    assert result.checked == store.head() - 3
    assert result.missing_archives == (Path(report.archive).name,)


def test_deletes_stay_refused_after_a_compaction(store: EventStore[Any], tmp_path: Path) -> None:
    _log(store)
    _compact(store, tmp_path, "volume-a")
    if store.location.startswith("postgresql://"):
        pytest.skip("PostgreSQL: tests/contracts/test_pg_store.py (role and owner)")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store._w.conn.execute("DELETE FROM events")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store._w.conn.execute("DELETE FROM tombstones")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store._w.conn.execute("UPDATE tombstones SET hash = 'x'")


def test_nothing_to_compact_appends_nothing(store: EventStore[Any], tmp_path: Path) -> None:
    _log(store)
    report, envelopes = _compact(store, tmp_path)
    assert report.count == 0 and envelopes == [] and store.head() == 8
    assert not (tmp_path / "archive").exists() or not any((tmp_path / "archive").iterdir())


def test_a_failed_archive_write_leaves_the_log_as_it_was(
        store: EventStore[Any], tmp_path: Path) -> None:
    _log(store)

    def broken(name: str, header: Any, events: Any) -> Any:
        raise OSError(28, "No space left on device")

    with pytest.raises(StoreError):
        store.compact(_by_name("volume-a"), before_ns=100, write_archive=broken, actor=ALICE,
                      op_id="c", now_ns=200)
    assert [e.seq for e in store.read()] == list(range(1, 9))
    assert store.archived_between(0, 8) == 0 and _verify(store, tmp_path).ok
    _add(store, "volume-z", VolumeCreated(name="z"), 30)  # the writer is usable
    assert _verify(store, tmp_path).checked == 9


def test_two_compactions_verify_together(store: EventStore[Any], tmp_path: Path) -> None:
    _log(store)
    _compact(store, tmp_path, "volume-a")
    _add(store, "volume-d", VolumeCreated(name="d"), 30)
    _compact(store, tmp_path, "volume-b")
    result = _verify(store, tmp_path)
    assert result.ok and result.archived == 6 and result.archived_checked == 6
    assert len(list((tmp_path / "archive").iterdir())) == 2


def _archive_lines(report: Any) -> list[bytes]:
    return Path(report.archive).read_bytes().splitlines(keepends=True)


def test_an_altered_archived_event_is_named(store: EventStore[Any], tmp_path: Path) -> None:
    _log(store)
    report, _ = _compact(store, tmp_path, "volume-a", "volume-b")
    lines = _archive_lines(report)
    row = json.loads(lines[3])  # the third archived event: seq 4
    assert row[0] == 4
    row[5] += 1  # its recorded_at
    lines[3] = json.dumps(row).encode() + b"\n"
    Path(report.archive).write_bytes(b"".join(lines))
    result = _verify(store, tmp_path)
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert "archive" in result.reason
    # Without the archive, the live part still verifies.
    assert _verify(store, tmp_path, archive_dir=tmp_path / "none").ok


def test_an_archive_altered_outside_its_events_is_caught(
        store: EventStore[Any], tmp_path: Path) -> None:
    _log(store)
    report, _ = _compact(store, tmp_path, "volume-a")
    with open(report.archive, "ab") as fh:
        fh.write(b"\n")
    result = _verify(store, tmp_path)
    assert not result.ok and result.first_bad_seq == report.first_seq


def test_an_altered_tombstone_is_named(store: EventStore[Any], tmp_path: Path) -> None:
    _log(store)
    _compact(store, tmp_path, "volume-a", "volume-b")
    conn = _tamper(store)
    conn.execute("UPDATE tombstones SET hash = ? WHERE seq = 5", ("f" * 64,))
    result = _verify(store, tmp_path)
    assert (result.ok, result.first_bad_seq) == (False, 5)
    # Without the archive: the tombstones no longer match their compaction event.
    assert not _verify(store, tmp_path, archive_dir=tmp_path / "none").ok


def test_an_altered_live_event_after_compaction_is_named(
        store: EventStore[Any], tmp_path: Path) -> None:
    _log(store)
    _compact(store, tmp_path, "volume-a", "volume-b")
    conn = _tamper(store)
    conn.execute("UPDATE events SET recorded_at = 1 WHERE seq = 8")
    result = _verify(store, tmp_path)
    assert (result.ok, result.first_bad_seq, result.checked) == (False, 8, 7)


def test_a_deleted_event_disguised_as_archived_is_caught(
        store: EventStore[Any], tmp_path: Path) -> None:
    # The attacker copies the hash into a tombstone naming the real compaction event, so the
    # live links still hold: the compaction's tombstone digest gives it away.
    _log(store)
    report, _ = _compact(store, tmp_path, "volume-a")
    conn = _tamper(store)
    hash_ = conn.execute("SELECT hash FROM events WHERE seq = 2").fetchone()[0]
    conn.execute("INSERT INTO tombstones VALUES (2, ?, ?)", (hash_, report.summary_seq))
    conn.execute("DELETE FROM events WHERE seq = 2")
    for where in (tmp_path / "archive", tmp_path / "none"):
        result = _verify(store, tmp_path, archive_dir=where)
        assert not result.ok and result.first_bad_seq is not None
        assert result.first_bad_seq <= 2


@pytest.mark.parametrize("compaction", [8, 10**9])  # not a ChainCompacted; past the head
def test_a_tombstone_of_no_compaction_is_caught(store: EventStore[Any], tmp_path: Path,
                                                compaction: int) -> None:
    _log(store)
    conn = _tamper(store)
    hash_ = conn.execute("SELECT hash FROM events WHERE seq = 2").fetchone()[0]
    conn.execute("INSERT INTO tombstones VALUES (2, ?, ?)", (hash_, compaction))
    conn.execute("DELETE FROM events WHERE seq = 2")
    result = _verify(store, tmp_path)
    assert (result.ok, result.first_bad_seq) == (False, 2)


def test_verify_until_a_seq_inside_the_compacted_range(
        store: EventStore[Any], tmp_path: Path) -> None:
    _log(store)
    hashes = {e.seq: e.hash for e in store.read()}
    _compact(store, tmp_path, "volume-a", "volume-b")
    result = _verify(store, tmp_path, until_seq=5)
    assert result.ok and result.last_hash == hashes[5]


def test_inline_projection_stays_equal_to_a_rebuild(tmp_path: Path) -> None:
    from projections.engine import EngineProjection

    store: EventStore[Any] = EventStore.open(tmp_path / "p.db", projection=EngineProjection())
    _log(store)
    _compact(store, tmp_path, "volume-a")
    before = store.state
    store.rebuild()
    assert store.state == before and store.applied_seq == store.head()
    store.close()
    reopened: EventStore[Any] = EventStore.open(tmp_path / "p.db",
                                                projection=EngineProjection())
    assert reopened.state == before
    reopened.close()


def test_a_follower_sees_every_live_event_exactly_once_across_compaction(
        store: EventStore[Any], tmp_path: Path) -> None:
    seen: list[Envelope] = []

    async def main() -> None:
        async with open_store_writer(store) as writer:
            _log_via = [(f"volume-{n}", VolumeCreated(name=n)) for n in "abcdefgh"]

            async def follower(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
                async with aclosing(follow(store, writer, after_seq=0, max_buffer=4)) as live:
                    task_status.started()
                    async for env in live:
                        seen.append(env)
                        await trio.sleep(0.001)  # slower than the appends: lags, catches up
                        if isinstance(env.event, ChainCompacted) and env.seq > 20:
                            return

            async with trio.open_nursery() as nursery:
                await nursery.start(follower)
                for round_ in range(2):
                    for stream, event in _log_via:
                        await writer.append([Pending(stream=stream, event=event)],
                                            actor=ALICE, op_id="op", now_ns=10)
                    for name in "abcd":
                        await writer.append(
                            [Pending(stream=f"volume-{name}", event=VolumeRemoved(name=name))],
                            actor=ALICE, op_id="op", now_ns=10)

                    def work() -> Published:
                        report, envs = _compact(store, tmp_path,
                                                *(f"volume-{n}" for n in "abcd"))
                        return Published(report, envs)

                    await writer.run_in_writer(work)
                    if round_ == 0:
                        _log_via = [(f"volume-{n}", VolumeCreated(name=n)) for n in "abcd"]
                        _log_via += [(f"volume-x{n}", VolumeCreated(name=n)) for n in "abc"]

    trio.run(main)
    seqs = [e.seq for e in seen]
    assert seqs == sorted(set(seqs)), "every event once, in order"
    live = [e.seq for e in store.read()]
    assert set(live) <= set(seqs), "no live event is missed"
    assert sum(isinstance(e.event, ChainCompacted) for e in seen) == 2
    assert _verify(store, tmp_path).ok


def test_parallel_verify_names_the_first_bad_event(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Worker processes each take a share of the seq range; the earliest bad seq wins.
    from events import sqlite_backend
    from events import store as store_module

    monkeypatch.setattr(store_module, "_PARALLEL_VERIFY_MIN", 0)
    monkeypatch.setattr(sqlite_backend, "_VERIFY_WINDOW", 7)
    log: EventStore[Any] = EventStore.open(tmp_path / "events.db")
    for i in range(60):
        _add(log, f"volume-{i % 4}", VolumeCreated(name=str(i)), i)
    _compact(log, tmp_path)  # nothing: a log without tombstones takes the streaming path
    assert log.verify(workers=2).ok and log.verify(workers=2).checked == 60
    conn = _tamper(log)
    for seq in (51, 23):
        conn.execute("UPDATE events SET recorded_at = 0 WHERE seq = ?", (seq,))
    result = log.verify(workers=2)
    assert (result.ok, result.first_bad_seq, result.checked) == (False, 23, 22)
    assert log.verify(workers=1).first_bad_seq == 23
    log.close()
