"""Contract suite for the event store, run against every backend.

Backends: in-memory SQLite, file SQLite, and PostgreSQL (events/pg_backend.py: a private
cluster for the session, a fresh host's log per test, opened as a role that may only SELECT and
INSERT the shared tables; skipped with the reason where no PostgreSQL 15 is installed). Tests
that tamper with stored rows go through `Backend.sql` (one statement per dialect, run past the
triggers, as an attacker with the database's owner rights would); `Backend.copy` gives a
second log holding the same rows.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import immutables
import msgspec
import pytest
import trio
import trio.testing

from engine.testing.postgres import PostgresCluster
from events.codec import CodecError, canonical_bytes
from events.envelope import Actor, Envelope, Pending
from events.follow import SlowConsumer, follow, follow_polling
from events.hashing import GENESIS_HASH
from events.store import (
    ConcurrencyConflict,
    EventStore,
    RowChange,
    StoreBusy,
    StoreError,
)
from events.vocabulary import (
    ContainerStarted,
    NetworkRemoved,
    VolumeCreated,
    VolumeRemoved,
)
from events.writer import WriterClosed, open_store_writer
from tests.contracts.conftest import DAEMON_ROLE, fresh_host

ALICE = Actor(uid=1000, gid=1000, pid=4242, loginuid=1000, command=("shipslog", "volume"))
BOB = Actor(uid=1001, gid=1001, pid=4343)
DAEMON = Actor(uid=0, gid=0, pid=1, via="daemon")


# --- a small inline projection: volumes and a per-stream event count ---------------------


class VolumeProjection:
    name = "volumes-test"
    tables: Sequence[str] = ("volumes", "counts")

    def initial(self) -> immutables.Map[str, Any]:
        return immutables.Map()

    def fold(
        self, state: immutables.Map[str, Any], envelopes: Sequence[Envelope]
    ) -> tuple[immutables.Map[str, Any], list[RowChange]]:
        changes = []
        with state.mutate() as m:
            for env in envelopes:
                count = m.get(env.stream, 0) + 1
                m[env.stream] = count
                changes.append(RowChange("counts", env.stream, str(count).encode()))
                event = env.event
                if isinstance(event, VolumeCreated):
                    if event.name == "explode":
                        raise ValueError("this projection refuses volumes named explode")
                    m["v:" + event.name] = event.labels
                    changes.append(RowChange("volumes", event.name, msgspec.json.encode(event)))
                elif isinstance(event, VolumeRemoved):
                    m.pop("v:" + event.name, None)
                    changes.append(RowChange("volumes", event.name, None))
            finished = m.finish()
        return finished, changes


# --- backends --------------------------------------------------------------------------------


@dataclass
class Backend:
    name: str
    open: Callable[..., EventStore[Any]]
    path: Path | None  # file-backed stores only
    pg: PostgresCluster | None = None  # the PostgreSQL leg's cluster
    durable: bool = False  # the log outlives its store (a file, or a server)

    def copy(self, store: EventStore[Any]) -> EventStore[Any]:
        """A second store holding a copy of `store`'s log (to tamper with)."""
        if self.pg is not None:
            return _pg_copy(self, store)
        target: EventStore[Any] = EventStore.open(
            ":memory:" if self.path is None else self.path.with_name("c.db")
        )
        store._w.conn.backup(target._w.conn)
        return target

    def sql(self, store: EventStore[Any], sqlite: str, pg: str, *params: Any) -> list[Any]:
        """Run one statement on `store`'s log past its triggers: SQLite's on the store's own
        connection (triggers dropped first where the test did), PostgreSQL's as the cluster's
        superuser with triggers off (`session_replication_role = replica`); `%(host)s` in
        it is the store's host."""
        if self.pg is None:
            return store._w.conn.execute(sqlite, params).fetchall()
        import psycopg

        with psycopg.connect(self.pg.dsn, autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")
            args = {"host": store._w.host, **{f"p{i}": v for i, v in enumerate(params)}}
            cur = conn.execute(pg.replace("{schema}", store._w.schema), args)
            return cur.fetchall() if cur.description else []


BACKENDS = ["memory", "file", "postgresql"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    opened: list[EventStore[Any]] = []
    pg: PostgresCluster | None = None
    if request.param == "postgresql":
        pg = request.getfixturevalue("pg_cluster")
        location = pg.dsn_for(DAEMON_ROLE)
        host: str | None = fresh_host(request.node.name)
        path = None
    else:
        path = None if request.param == "memory" else tmp_path / "events.db"
        location = ":memory:" if path is None else str(path)
        host = None

    def open_store(**kwargs: Any) -> EventStore[Any]:
        if host is not None:
            kwargs.setdefault("host_name", host)
        store = EventStore.open(location, **kwargs)
        opened.append(store)
        return store

    yield Backend(request.param, open_store, path, pg, durable=request.param != "memory")
    for store in opened:
        try:
            store.close()
        except sqlite3.ProgrammingError:
            pass


def _pg_copy(backend: Backend, store: EventStore[Any]) -> EventStore[Any]:
    """Another host holding `store`'s rows and chain head, copied by the superuser."""
    assert backend.pg is not None
    name = fresh_host("copy")
    backend.pg.psql(
        "SET session_replication_role = replica;"
        f"INSERT INTO shipslog.hosts SELECT '{name}', mode, head, last_hash, registered_at "
        f"FROM shipslog.hosts WHERE host = '{store._w.host}';"
        f"INSERT INTO shipslog.events SELECT '{name}', seq, stream, stream_version, "
        "schema_version, type, recorded_at, actor, op_id, command_id, payload, hash "
        f"FROM shipslog.events WHERE host = '{store._w.host}';"
        f"INSERT INTO shipslog.commands SELECT '{name}', command_id, first_seq, last_seq "
        f"FROM shipslog.commands WHERE host = '{store._w.host}';")
    return backend.open(host_name=name)


def vol(name: str, expected: int | None = None, **kw: Any) -> Pending:
    return Pending(
        stream=f"volume-{name}", event=VolumeCreated(name=name, **kw), expected_version=expected
    )


def append(store: EventStore[Any], *pending: Pending, **kw: Any) -> list[Envelope]:
    kw.setdefault("actor", ALICE)
    kw.setdefault("op_id", "op-1")
    kw.setdefault("now_ns", 1_000)
    return store.append(list(pending), **kw)


# --- appends ---------------------------------------------------------------------------------


def test_seq_is_gap_free_even_after_failed_batches(backend: Backend) -> None:
    store = backend.open()
    assert store.head() == 0 and store.last_hash() == GENESIS_HASH
    append(store, vol("a", 0), vol("b", 0))
    with pytest.raises(ConcurrencyConflict):
        append(store, vol("c", 0), vol("a", 0))
    append(store, vol("c", 0))
    assert [e.seq for e in store.read()] == [1, 2, 3]
    assert store.stream_version("volume-c") == 1


def test_envelope_fields_are_recorded(backend: Backend) -> None:
    store = backend.open()
    [env] = append(store, vol("a"), op_id="op-9", now_ns=123, command_id="cmd-1")
    assert (env.seq, env.stream, env.stream_version, env.recorded_at) == (1, "volume-a", 1, 123)
    assert (env.actor, env.op_id, env.command_id, env.schema_version) == (ALICE, "op-9", "cmd-1", 1)
    assert env.type == "VolumeCreated" and len(env.hash) == 64
    assert list(store.read()) == [env]
    assert store.last_hash() == env.hash


def test_expected_version_checks(backend: Backend) -> None:
    store = backend.open()
    append(store, vol("a", 0))
    with pytest.raises(ConcurrencyConflict) as info:
        append(store, vol("a", 0))
    assert (info.value.stream, info.value.expected, info.value.actual) == ("volume-a", 0, 1)
    assert info.value.hint
    with pytest.raises(ConcurrencyConflict):
        append(store, vol("a", 5))
    # N = the stream's version before the batch, for every event of the batch on that stream.
    envs = append(store, vol("a", 1), vol("a", 1), vol("a"))
    assert [e.stream_version for e in envs] == [2, 3, 4]
    assert store.stream_version("volume-a") == 4
    assert store.stream_version("volume-none") == 0


def test_command_id_makes_retries_idempotent(backend: Backend) -> None:
    store = backend.open()
    first = append(store, vol("a"), vol("b"), command_id="create-1")
    append(store, vol("c"))
    retry = append(store, vol("a"), vol("b"), command_id="create-1")
    other = append(store, vol("zzz"), command_id="create-1")  # same id, different events
    assert retry == first and other == first
    assert store.head() == 3
    assert [e.command_id for e in first] == ["create-1", None]


def test_empty_batch_records_nothing(backend: Backend) -> None:
    store = backend.open()
    assert append(store) == []
    assert store.head() == 0


def test_update_and_delete_are_refused(backend: Backend) -> None:
    store = backend.open()
    append(store, vol("a"))
    if backend.pg is not None:
        # The daemon's own role has no right to (tests/contracts/test_pg_store.py: nor has
        # the owner, past the triggers).
        for statement in ("UPDATE shipslog.events SET payload = '\\x00'",
                          "DELETE FROM shipslog.events"):
            with pytest.raises(StoreError, match="permission denied"):
                store._w._run(statement)
        assert store.verify().ok and store.head() == 1
        return
    conn = store._w.conn
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE events SET payload = x'00'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM events")
    assert store.verify().ok and store.head() == 1


# --- reads -----------------------------------------------------------------------------------


def test_reads_by_range_stream_type_time_and_op(backend: Backend) -> None:
    store = backend.open()
    append(store, vol("a"), op_id="op-a", now_ns=10)
    append(store, vol("b"), op_id="op-b", now_ns=20)
    append(
        store, Pending(stream="volume-a", event=VolumeRemoved(name="a")), op_id="op-a", now_ns=30
    )
    append(store, Pending(stream="network-n", event=NetworkRemoved(network_id="n")), now_ns=40)

    def seqs(*args: Any, **kw: Any) -> list[int]:
        return [e.seq for e in store.read(*args, **kw)]

    assert seqs() == [1, 2, 3, 4]
    assert seqs(2) == [3, 4]
    assert seqs(0, limit=2) == [1, 2]
    assert seqs(1, limit=0) == []
    assert seqs(stream="volume-a") == [1, 3]
    assert seqs(streams=["volume-b", "network-n"]) == [2, 4]
    assert seqs(streams=[]) == []
    assert seqs(types=["VolumeRemoved", "NetworkRemoved"]) == [3, 4]
    assert seqs(since_ns=20, until_ns=30) == [2, 3]
    assert seqs(op_id="op-a") == [1, 3]
    assert seqs(op_id="op-a", types=["VolumeCreated"]) == [1]
    assert seqs(until_seq=2) == [1, 2]


def test_reads_page_through_long_logs(backend: Backend) -> None:
    store = backend.open()
    for start in range(0, 4500, 500):
        append(store, *[vol(f"v{i}") for i in range(start, start + 500)])
    assert [e.seq for e in store.read()] == list(range(1, 4501))
    assert [e.seq for e in store.read(100, limit=2100)] == list(range(101, 2201))
    assert len(list(store.read(types=["VolumeCreated"], limit=4499))) == 4499


# --- the hash chain --------------------------------------------------------------------------


def test_sql_canonical_bytes_equal_python_canonical_bytes(backend: Backend) -> None:
    store = backend.open()
    append(store, vol("ü-ä"), op_id="öp-✓", command_id="çmd")
    append(store, Pending(stream="container-é", event=ContainerStarted(container_id="é", pid=7)))
    rows = list(store._r.canonical_rows(store.head()))
    for env, (seq, stored_hash, canonical) in zip(store.read(), rows, strict=True):
        [raw] = backend.sql(
            store, "SELECT actor, payload FROM events WHERE seq=?",
            "SELECT actor, payload FROM shipslog.events WHERE host=%(host)s AND seq=%(p0)s", seq,
        )
        assert canonical == canonical_bytes(
            seq=env.seq,
            stream=env.stream,
            stream_version=env.stream_version,
            schema_version=env.schema_version,
            recorded_at=env.recorded_at,
            actor=raw[0],
            op_id=env.op_id,
            command_id=env.command_id,
            type_name=env.type,
            payload=raw[1],
        )
        assert stored_hash == env.hash
    assert store.verify().ok


def _log_of(backend: Backend, n: int = 6) -> tuple[EventStore[Any], EventStore[Any]]:
    store = backend.open()
    for i in range(n):
        append(store, vol(f"v{i}"), command_id=f"c{i}" if i % 2 else None)
    copy = backend.copy(store)
    if backend.pg is None:
        copy._w.conn.execute("DROP TRIGGER events_no_update")
        copy._w.conn.execute("DROP TRIGGER events_no_delete")
    assert copy.verify().ok and copy.verify().checked == n
    return store, copy


def test_verify_detects_an_altered_payload(backend: Backend) -> None:
    _, copy = _log_of(backend)
    backend.sql(
        copy,
        "UPDATE events SET payload = CAST(replace(CAST(payload AS TEXT), 'v3', 'v9') AS BLOB) "
        "WHERE seq=4",
        "UPDATE shipslog.events SET payload = convert_to(replace(convert_from(payload, 'UTF8'),"
        " 'v3', 'v9'), 'UTF8') WHERE host=%(host)s AND seq=4",
    )
    result = copy.verify()
    assert (result.ok, result.first_bad_seq, result.checked) == (False, 4, 3)
    assert "4" in result.reason
    assert copy.verify(until_seq=3).ok


def test_verify_detects_an_altered_envelope_field(backend: Backend) -> None:
    _, copy = _log_of(backend)
    backend.sql(
        copy, "UPDATE events SET actor = CAST('{\"uid\":0}' AS BLOB) WHERE seq=2",
        "UPDATE shipslog.events SET actor = convert_to('{\"uid\":0}', 'UTF8') "
        "WHERE host=%(host)s AND seq=2",
    )
    assert copy.verify().first_bad_seq == 2


def test_verify_detects_a_reordered_pair(backend: Backend) -> None:
    _, copy = _log_of(backend)
    for a, b in ((3, 1_000_000), (4, 3), (1_000_000, 4)):
        backend.sql(copy, f"UPDATE events SET seq = {b} WHERE seq = {a}",
                    f"UPDATE shipslog.events SET seq = {b} WHERE host=%(host)s AND seq = {a}")
    result = copy.verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)


def test_verify_detects_a_deleted_row(backend: Backend) -> None:
    _, copy = _log_of(backend)
    backend.sql(copy, "DELETE FROM events WHERE seq = 2",
                "DELETE FROM shipslog.events WHERE host=%(host)s AND seq = 2")
    result = copy.verify()
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert "missing" in result.reason


def test_verify_detects_a_rehashed_alteration_at_the_next_event(backend: Backend) -> None:
    # An attacker who recomputes the altered event's own hash still breaks the next link.
    _, copy = _log_of(backend)
    backend.sql(copy, "UPDATE events SET op_id = 'forged' WHERE seq = 2",
                "UPDATE shipslog.events SET op_id = 'forged' WHERE host=%(host)s AND seq = 2")
    [(canonical,)] = backend.sql(
        copy, "SELECT " + _canonical_sql() + " FROM events WHERE seq = 2",
        "SELECT shipslog.canonical(e) FROM shipslog.events e WHERE host=%(host)s AND seq = 2")
    from events.hashing import chain_hash

    [(prev,)] = backend.sql(copy, "SELECT hash FROM events WHERE seq = 1",
                            "SELECT hash FROM shipslog.events WHERE host=%(host)s AND seq = 1")
    backend.sql(copy, "UPDATE events SET hash = ? WHERE seq = 2",
                "UPDATE shipslog.events SET hash = %(p0)s WHERE host=%(host)s AND seq = 2",
                chain_hash(prev, canonical))
    assert copy.verify().first_bad_seq == 3


def _canonical_sql() -> str:
    from events import sqlite_backend as store_module

    return store_module._CANONICAL_SQL


# --- inline projections ----------------------------------------------------------------------


def test_projection_read_your_writes(backend: Backend) -> None:
    store = backend.open(projection=VolumeProjection())
    append(store, vol("a", labels={"k": "v"}), vol("b"))
    assert store.state["v:a"] == {"k": "v"} and store.state["volume-a"] == 1
    assert dict(store.read_rows("counts")) == {"volume-a": b"1", "volume-b": b"1"}
    assert sorted(k for k, _ in store.read_rows("volumes")) == ["a", "b"]
    append(store, Pending(stream="volume-a", event=VolumeRemoved(name="a")))
    assert "v:a" not in store.state
    assert [k for k, _ in store.read_rows("volumes")] == ["b"]
    assert store.applied_seq == 3


def test_failed_batch_leaves_projection_untouched(backend: Backend) -> None:
    store = backend.open(projection=VolumeProjection())
    append(store, vol("a", 0))
    before = store.state
    with pytest.raises(ConcurrencyConflict):
        append(store, vol("b"), vol("a", 0))
    with pytest.raises(ValueError, match="explode"):
        append(store, vol("c"), vol("explode"))
    assert store.state is before and store.head() == 1
    assert [k for k, _ in store.read_rows("volumes")] == ["a"]


def test_group_commit_isolates_failing_batches(backend: Backend) -> None:
    store = backend.open(projection=VolumeProjection())
    batches = [
        EventStore.batch([vol("a", 0)], actor=ALICE, op_id="o1", now_ns=1),
        EventStore.batch([vol("a", 0)], actor=ALICE, op_id="o2", now_ns=1),  # conflicts
        EventStore.batch([vol("explode")], actor=ALICE, op_id="o3", now_ns=1),  # fold fails
        EventStore.batch([vol("b", 0)], actor=ALICE, op_id="o4", now_ns=1, command_id="x"),
        EventStore.batch([vol("zzz")], actor=ALICE, op_id="o5", now_ns=1, command_id="x"),
    ]
    results = store.append_group(batches)
    assert isinstance(results[1], ConcurrencyConflict)
    assert isinstance(results[2], ValueError)
    assert [e.seq for e in results[0]] == [1]  # type: ignore[union-attr]
    assert [e.seq for e in results[3]] == [2]  # type: ignore[union-attr]
    assert results[4] == results[3]  # same command_id inside one group
    assert store.head() == 2 and store.verify().ok
    assert sorted(k for k, _ in store.read_rows("volumes")) == ["a", "b"]
    assert sorted(k for k in store.state.keys() if k.startswith("v:")) == ["v:a", "v:b"]


def _tables(store: EventStore[Any]) -> dict[str, list[tuple[str, bytes]]]:
    return {t: list(store.read_rows(t)) for t in VolumeProjection.tables}


class CountingProjection(VolumeProjection):
    """VolumeProjection that counts its fold calls."""

    def __init__(self) -> None:
        self.folds = 0

    def fold(
        self, state: immutables.Map[str, Any], envelopes: Sequence[Envelope]
    ) -> tuple[immutables.Map[str, Any], list[RowChange]]:
        self.folds += 1
        return super().fold(state, envelopes)


def _volume_batches(prefix: str) -> list[Any]:
    """Creates, removes and re-creates in one group, so row order within the group matters."""
    batches = []
    for i in range(12):
        name = f"{prefix}{i % 4}"
        event: Any = VolumeRemoved(name=name) if i % 3 == 2 else VolumeCreated(name=name)
        batches.append(
            EventStore.batch(
                [Pending(stream=f"volume-{name}", event=event)],
                actor=ALICE, op_id=f"o{i}", now_ns=i, command_id=f"{prefix}-c{i}",
            )
        )
    return batches


def test_a_group_folds_like_its_batches_one_by_one(backend: Backend) -> None:
    grouped_projection = CountingProjection()
    grouped = backend.open(projection=grouped_projection)
    one_by_one: EventStore[Any] = EventStore.open(":memory:", projection=VolumeProjection())
    results = grouped.append_group(_volume_batches("v"))
    singles = [one_by_one.append_group([b])[0] for b in _volume_batches("v")]
    assert grouped_projection.folds == 1  # the whole group in one fold call
    assert results == singles
    assert grouped.state == one_by_one.state
    assert _tables(grouped) == _tables(one_by_one)
    assert grouped.last_hash() == one_by_one.last_hash()


def test_a_failing_fold_in_a_group_fails_its_batch_only(backend: Backend) -> None:
    store = backend.open(projection=CountingProjection())
    reference: EventStore[Any] = EventStore.open(":memory:", projection=VolumeProjection())
    batches = _volume_batches("w")
    batches.insert(5, EventStore.batch([vol("explode")], actor=ALICE, op_id="x", now_ns=5))
    results = store.append_group(batches)
    assert isinstance(results[5], ValueError)
    expected = [reference.append_group([b])[0] for b in batches[:5] + batches[6:]]
    assert results[:5] + results[6:] == expected
    assert store.state == reference.state and _tables(store) == _tables(reference)
    assert store.head() == 12 and store.verify().ok


def test_rebuild_equals_incremental(backend: Backend) -> None:
    store = backend.open(projection=VolumeProjection())
    for i in range(30):
        append(store, vol(f"v{i % 7}"))
        if i % 3 == 0:
            append(store, Pending(stream=f"volume-v{i % 7}", event=VolumeRemoved(name=f"v{i % 7}")))
    incremental, state = _tables(store), store.state
    store.rebuild()
    assert _tables(store) == incremental
    assert store.state == state
    names = {r[0] for r in backend.sql(
        store, "SELECT name FROM sqlite_master",
        "SELECT tablename FROM pg_tables WHERE schemaname = '{schema}'")}
    assert not any(n.startswith("proj_new_") for n in names)
    assert store.fold_to(VolumeProjection()) == state


def test_time_travel(backend: Backend) -> None:
    store = backend.open(projection=VolumeProjection())
    append(store, vol("a"), now_ns=100)
    append(store, vol("b"), now_ns=200)
    append(store, Pending(stream="volume-a", event=VolumeRemoved(name="a")), now_ns=300)
    projection = VolumeProjection()
    assert "v:a" in store.fold_to(projection, until_seq=1)
    assert "v:b" not in store.fold_to(projection, until_seq=1)
    at_250 = store.fold_to(projection, until_ns=250)
    assert "v:a" in at_250 and "v:b" in at_250
    assert "v:a" not in store.fold_to(projection, until_ns=10_000)
    assert store.fold_to(projection, until_ns=50) == projection.initial()


# --- file-only behaviour ---------------------------------------------------------------------


def _file_only(backend: Backend) -> Path:
    if backend.path is None:
        pytest.skip("needs a database file")
    return backend.path


def _durable(backend: Backend) -> None:
    if not backend.durable:
        pytest.skip("needs a log that outlives its store (a file or a server)")


def test_files_are_private(backend: Backend) -> None:
    path = _file_only(backend)
    store = backend.open()
    append(store, vol("a"))
    for suffix in ("", "-wal", "-shm"):
        assert stat.S_IMODE(Path(f"{path}{suffix}").stat().st_mode) == 0o600
    mode = store._w.conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert store._w.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_reopen_keeps_log_and_projection(backend: Backend) -> None:
    _durable(backend)
    store = backend.open(projection=VolumeProjection())
    append(store, vol("a"), vol("b"))
    tables, state = _tables(store), store.state
    store.close()
    again = backend.open(projection=VolumeProjection())
    assert again.state == state and _tables(again) == tables and again.verify().ok
    # A log written without the projection: its tables lag and are rebuilt at open.
    again.close()
    plain = backend.open()
    append(plain, vol("c"))
    plain.close()
    third = backend.open(projection=VolumeProjection())
    assert sorted(k for k, _ in third.read_rows("volumes")) == ["a", "b", "c"]
    assert third._r.applied_seq("volumes-test") == 3


def test_foreign_writer_events_reach_the_projection(backend: Backend) -> None:
    _durable(backend)
    daemon = backend.open(projection=VolumeProjection())
    cli = backend.open()
    append(daemon, vol("a"))
    append(cli, vol("b"))  # another process writing straight to the file
    append(daemon, vol("c"))
    assert sorted(k for k in daemon.state.keys() if k.startswith("v:")) == ["v:a", "v:b", "v:c"]
    assert sorted(k for k, _ in daemon.read_rows("volumes")) == ["a", "b", "c"]


def test_readonly_open_cannot_write(backend: Backend) -> None:
    path = _file_only(backend)
    writer = backend.open()
    append(writer, vol("a"))
    reader = backend.open(readonly=True, projection=VolumeProjection())
    assert reader.head() == 1 and reader.verify().ok and "v:a" in reader.state
    with pytest.raises(StoreError, match="read-only"):
        append(reader, vol("b"))
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader._w.conn.execute("INSERT INTO meta VALUES ('x', 'y')")
    with pytest.raises(StoreError):
        reader.rebuild()
    with pytest.raises(StoreError, match="no event log"):
        EventStore.open(path.with_name("absent.db"), readonly=True)
    assert writer.head() == 1


def test_busy_names_the_lock_holder(backend: Backend) -> None:
    path = _file_only(backend)
    store = backend.open(busy_timeout=0.05)
    append(store, vol("a"))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreBusy) as info:
            append(store, vol("b"))
        from pathlib import Path as P

        assert f"pid {P('/proc/self').resolve().name}" in info.value.message
        assert info.value.hint
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert append(store, vol("b"))[0].seq == 2


def test_copy_of_file_log_verifies(backend: Backend, tmp_path: Path) -> None:
    path = _file_only(backend)
    store = backend.open()
    append(store, vol("a"), vol("b"))
    store.close()
    shutil.copy(path, tmp_path / "copy.db")
    copy: EventStore[Any] = EventStore.open(tmp_path / "copy.db", readonly=True)
    assert copy.verify().checked == 2
    copy.close()


# --- the writer and follow -------------------------------------------------------------------


async def test_group_commit_with_many_concurrent_appenders(backend: Backend) -> None:
    store = backend.open(projection=VolumeProjection())
    results: dict[tuple[int, int], list[Envelope]] = {}
    async with open_store_writer(store) as writer:

        async def appender(i: int) -> None:
            for j in range(25):
                pending = [vol(f"{i}-{j}", 0), vol(f"{i}-{j}-b", 0)]
                results[(i, j)] = await writer.append(
                    pending, actor=ALICE, op_id=f"op-{i}-{j}", now_ns=j
                )

        async with trio.open_nursery() as nursery:
            for i in range(40):
                nursery.start_soon(appender, i)
        conflict = [vol("0-0", 0)]
        with pytest.raises(ConcurrencyConflict):
            await writer.append(conflict, actor=ALICE, op_id="late", now_ns=1)
        assert writer.append_sync is not None
    assert len(results) == 1000
    for (i, j), envs in results.items():
        assert [e.event.name for e in envs] == [f"{i}-{j}", f"{i}-{j}-b"]  # type: ignore[attr-defined]
        assert envs[1].seq == envs[0].seq + 1 and envs[0].op_id == f"op-{i}-{j}"
    assert sorted(e.seq for envs in results.values() for e in envs) == list(range(1, 2001))
    assert store.head() == 2000 and store.verify().ok
    assert len(list(store.read_rows("volumes"))) == 2000


async def test_append_sync_from_a_thread(backend: Backend) -> None:
    store = backend.open()
    async with open_store_writer(store) as writer:
        envs = await trio.to_thread.run_sync(
            lambda: writer.append_sync([vol("a")], actor=DAEMON, op_id="t", now_ns=1)
        )
    assert envs[0].seq == 1 and store.head() == 1


async def test_a_last_append_is_the_last_one_recorded(backend: Backend) -> None:
    # A daemon's DaemonStopped ends its run's log (issue 15, item 8): nothing queues behind it.
    store = backend.open()
    async with open_store_writer(store) as writer:
        await writer.append([vol("a")], actor=DAEMON, op_id="t", now_ns=1)
        last = await writer.append([vol("stop")], actor=DAEMON, op_id="t", now_ns=2, last=True)
        with pytest.raises(WriterClosed):
            await writer.append([vol("late")], actor=DAEMON, op_id="t", now_ns=3)
        with pytest.raises(WriterClosed):
            await trio.to_thread.run_sync(
                lambda: writer.append_sync([vol("late2")], actor=DAEMON, op_id="t", now_ns=4))
    assert last[0].seq == store.head() == 2


async def test_appends_made_in_one_scheduler_pass_commit_together(backend: Backend) -> None:
    # Appenders woken together (by one commit, or one event) form one group, even when the
    # trio thread lets go of the GIL between them (a blocking call, a slow handler): queued
    # one at a time, the writer thread took the first alone and the rest waited a commit.
    store = backend.open()
    async with open_store_writer(store) as writer:
        go = trio.Event()

        async def appender(i: int) -> None:
            await go.wait()
            time.sleep(0.002)  # the writer thread gets the GIL here
            await writer.append([vol(f"v{i}")], actor=ALICE, op_id=f"op-{i}", now_ns=i)

        async with trio.open_nursery() as nursery:
            for i in range(16):
                nursery.start_soon(appender, i)
            await trio.testing.wait_all_tasks_blocked()
            before = writer.commits
            go.set()
        assert writer.commits - before == 1
    assert store.head() == 16 and store.verify().ok


async def test_appends_gathered_with_a_last_one_never_land_after_it(backend: Backend) -> None:
    # However the appends of one pass are ordered, nothing is recorded after the `last` one:
    # each is recorded before it or refused.
    store = backend.open()
    outcome: dict[int, int | None] = {}
    async with open_store_writer(store) as writer:
        go = trio.Event()

        async def appender(i: int) -> None:
            await go.wait()
            try:
                envs = await writer.append(
                    [vol(f"v{i}")], actor=DAEMON, op_id=f"op-{i}", now_ns=i, last=(i == 5))
                outcome[i] = envs[0].seq
            except WriterClosed:
                outcome[i] = None

        async with trio.open_nursery() as nursery:
            for i in range(12):
                nursery.start_soon(appender, i)
            await trio.testing.wait_all_tasks_blocked()
            go.set()
    last = outcome[5]
    assert last == store.head()
    recorded = sorted(seq for seq in outcome.values() if seq is not None)
    assert recorded == list(range(1, last + 1))  # nothing after it, no gaps before it


async def test_follow_sees_every_event_exactly_once(backend: Backend) -> None:
    store = backend.open()
    append(store, *[vol(f"h{i}") for i in range(2500)])  # history longer than one page
    per_task, tasks = 60, 20
    total = 2500 + per_task * tasks
    async with open_store_writer(store) as writer:
        seen: list[list[int]] = [[], [], []]

        async def follower(idx: int, after: int, max_buffer: int, *, task_status: Any) -> None:
            async with aclosing(
                follow(store, writer, after_seq=after, max_buffer=max_buffer)
            ) as events:
                task_status.started()
                async for env in events:
                    seen[idx].append(env.seq)
                    if env.seq == total:
                        return

        async def appender(i: int) -> None:
            for j in range(per_task):
                await writer.append([vol(f"{i}.{j}")], actor=ALICE, op_id="o", now_ns=j)
                if j % 7 == 0:
                    await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            await nursery.start(follower, 0, 0, 10_000)
            await nursery.start(follower, 1, 1200, 3)  # tiny buffer: catches up from the DB
            for i in range(tasks):
                nursery.start_soon(appender, i)
            await nursery.start(follower, 2, 0, 10_000)  # joins mid-stream
    assert seen[0] == list(range(1, total + 1))
    assert seen[1] == list(range(1201, total + 1))
    assert seen[2] == list(range(1, total + 1))


async def test_follow_filter_and_slow_consumer(backend: Backend) -> None:
    store = backend.open()
    append(store, vol("a"))
    async with open_store_writer(store) as writer:
        only_removed = follow(
            store, writer, after_seq=0, filter=lambda e: e.type == "VolumeRemoved"
        )
        slow = follow(store, writer, after_seq=0, max_buffer=5, on_lag="close")
        async with aclosing(only_removed) as removed, aclosing(slow) as lagging:
            assert (await lagging.__anext__()).seq == 1  # subscribed, history read
            for i in range(10):
                await writer.append([vol(f"x{i}")], actor=ALICE, op_id="o", now_ns=1)
            await writer.append(
                [Pending(stream="volume-a", event=VolumeRemoved(name="a"))],
                actor=ALICE,
                op_id="o",
                now_ns=2,
            )
            assert (await removed.__anext__()).seq == 12
            with pytest.raises(SlowConsumer) as info:
                async for _ in lagging:
                    pass
            assert info.value.hint


async def test_follow_ends_when_writer_closes(backend: Backend) -> None:
    store = backend.open()
    got = []
    async with open_store_writer(store) as writer:
        events = follow(store, writer, after_seq=0)
        await writer.append([vol("a")], actor=ALICE, op_id="o", now_ns=1)
    async with aclosing(events):
        async for env in events:
            got.append(env.seq)
    assert got == [1]


async def test_follow_polling_sees_another_writer(backend: Backend) -> None:
    path = _file_only(backend)
    store = backend.open()
    append(store, vol("a"))
    got: list[int] = []
    async with aclosing(follow_polling(path, 0, interval=0.01)) as events:
        async for env in events:
            got.append(env.seq)
            if env.seq == 1:
                await trio.to_thread.run_sync(lambda: append(store, vol("b"), vol("c")))
            if env.seq == 3:
                break
    assert got == [1, 2, 3]


# --- frozen sample logs ----------------------------------------------------------------------

SAMPLE_LOGS = sorted((Path(__file__).parent.parent / "data").glob("events-v*.db"))


@pytest.mark.parametrize("sample", SAMPLE_LOGS, ids=lambda p: p.name)
def test_frozen_sample_log_loads_and_verifies(sample: Path, tmp_path: Path) -> None:
    # Read a copy: even a read-only open of a WAL database may create -shm next to it.
    copy = tmp_path / sample.name
    shutil.copy(sample, copy)
    store = EventStore.open(copy, readonly=True, projection=VolumeProjection())
    result = store.verify()
    assert result.ok, result.reason
    envelopes = list(store.read())
    assert result.checked == len(envelopes) == store.head() > 0
    if sample.name == "events-v1.db":
        # Every type the vocabulary had when v1 was frozen (52), each decoding today.
        assert len({e.type for e in envelopes}) == 52
        assert all(e.schema_version == 1 for e in envelopes)
        assert b"canary-XYZ" not in copy.read_bytes()
    store.close()


def test_sample_logs_exist() -> None:
    assert any(p.name == "events-v1.db" for p in SAMPLE_LOGS)


def test_read_rows_of_an_unbuilt_table_is_a_clear_error(backend: Backend) -> None:
    store = backend.open()
    with pytest.raises(StoreError, match="not built"):
        list(store.read_rows("containers"))


def test_nul_bytes_and_empty_streams_are_refused(backend: Backend) -> None:
    store = backend.open()
    with pytest.raises(StoreError, match="NUL"):
        append(store, Pending(stream="volume-a\x00b", event=VolumeRemoved(name="a")))
    with pytest.raises(StoreError, match="NUL"):
        append(store, vol("a"), op_id="op\x00")
    with pytest.raises(StoreError, match="NUL"):
        append(store, vol("a"), command_id="c\x00")
    with pytest.raises(StoreError):
        append(store, Pending(stream="", event=VolumeRemoved(name="a")))
    for separator in ("\x1f", "\x1e"):  # the hashed bytes' field separators
        with pytest.raises(StoreError):
            append(store, vol("a"), op_id=f"op{separator}x")
    assert append(store, vol("a"), op_id="")[0].seq == 1  # events outside any operation
    assert store.head() == 1 and store.verify().ok


def test_damaged_file_is_a_clear_error(backend: Backend, tmp_path: Path) -> None:
    _file_only(backend)
    bad = tmp_path / "damaged.db"
    bad.write_bytes(b"this is not an SQLite database" * 200)
    with pytest.raises(StoreError) as info:
        EventStore.open(bad)
    assert "cannot open" in info.value.message and info.value.hint
    with pytest.raises(StoreError):
        EventStore.open(bad, readonly=True)


def test_many_writer_processes_share_the_file_without_locked_errors(backend: Backend) -> None:
    # RELIABILITY F-13: BEGIN IMMEDIATE + busy timeout: every writer gets through, in turn.
    import threading

    _durable(backend)
    stores = [backend.open() for _ in range(24)]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            for j in range(15):
                append(stores[i], vol(f"{i}-{j}", 0), op_id=f"w{i}")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert stores[0].head() == 24 * 15 and stores[0].verify().ok
    assert sorted(e.seq for e in stores[0].read()) == list(range(1, 361))


async def test_rebuild_through_the_writer_between_commits(backend: Backend) -> None:
    store = backend.open(projection=VolumeProjection())
    async with open_store_writer(store) as writer:

        async def appender(i: int) -> None:
            for j in range(20):
                await writer.append([vol(f"{i}-{j}")], actor=ALICE, op_id="o", now_ns=j)

        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(appender, i)
            for _ in range(3):
                await writer.run_in_writer(store.rebuild)
        assert await writer.run_in_writer(store.head) == 160
        with pytest.raises(StoreError):
            await writer.run_in_writer(lambda: store.read_rows("nope").__next__())
    assert len(list(store.read_rows("volumes"))) == 160
    assert store.state == store.fold_to(VolumeProjection())


async def test_a_failed_commit_is_reported_to_every_caller(backend: Backend) -> None:
    # RELIABILITY F-12: never report success for events that did not reach the log.
    store = backend.open(projection=VolumeProjection())
    async with open_store_writer(store) as writer:
        await writer.append([vol("a")], actor=ALICE, op_id="o", now_ns=1)
        before = store.state
        # Every write now fails inside the database.
        if backend.pg is None:
            store._w.conn.execute("PRAGMA query_only=ON")
        else:
            store._w.conn.execute("SET default_transaction_read_only = on")
        failures: list[BaseException] = []

        async def appender(i: int) -> None:
            try:
                await writer.append([vol(f"x{i}")], actor=ALICE, op_id="o", now_ns=2)
            except StoreError as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(appender, i)
        assert len(failures) == 10
        assert all("write failed" in str(f) and f.hint for f in failures)  # type: ignore[attr-defined]
        assert store.state is before and store.head() == 1
        if backend.pg is None:
            store._w.conn.execute("PRAGMA query_only=OFF")
        else:
            store._w.conn.execute("SET default_transaction_read_only = off")
        envs = await writer.append([vol("b")], actor=ALICE, op_id="o", now_ns=3)
    assert envs[0].seq == 2 and store.verify().ok
    assert sorted(k for k, _ in store.read_rows("volumes")) == ["a", "b"]


async def test_shutdown_ends_many_idle_followers(backend: Backend) -> None:
    # RELIABILITY L-05: open event streams must not hold the daemon up at shutdown.
    store = backend.open()
    append(store, vol("a"))
    ended = []
    async with trio.open_nursery() as nursery:
        async with open_store_writer(store) as writer:

            async def follower(i: int, *, task_status: Any) -> None:
                async with aclosing(follow(store, writer, after_seq=0)) as events:
                    started = False
                    async for _ in events:
                        if not started:
                            started = True
                            task_status.started()
                ended.append(i)

            for i in range(50):
                await nursery.start(follower, i)
    assert sorted(ended) == list(range(50))


# --- projection snapshots ----------------------------------------------------------------------


def _engine_store(backend: Backend, volumes: int) -> EventStore[Any]:
    from projections.engine import EngineProjection

    store = backend.open(projection=EngineProjection())
    for i in range(volumes):
        append(store, vol(f"v{i}"), now_ns=1_000 + i)
    _backend_of[id(store)] = backend
    return store


_backend_of: dict[int, Backend] = {}


def _tamper(store: EventStore[Any], sql: str, *params: Any) -> None:
    backend = _backend_of.get(id(store))
    if backend is None or backend.pg is None:
        store._w.conn.execute(sql, params)
        return
    parts = sql.replace("projection_snapshots", "{schema}.projection_snapshots").split("?")
    pg = "".join(part + (f"%(p{i})s" if i < len(parts) - 1 else "")
                 for i, part in enumerate(parts))
    backend.sql(store, sql, pg, *params)


def test_time_travel_uses_a_snapshot_only_when_every_check_passes(backend: Backend) -> None:
    from projections.snapshot import encode_state

    store = _engine_store(backend, 6)
    projection = store.projection
    at_4 = store.fold_to(projection, until_seq=4, from_zero=True)
    store.snapshot_every = 4
    store.rebuild()  # writes the snapshot at seq 4
    assert store.snapshot_seqs() == [4]
    # A snapshot that passes every check is what time travel starts from: plant one whose
    # state is not the fold (but whose digest matches) to see that it is used...
    forged = encode_state(store.fold_to(projection, until_seq=2))
    digest = hashlib.sha256(forged).hexdigest()
    _tamper(store, "UPDATE projection_snapshots SET state=?, digest=?", forged, digest)
    assert sorted(store.fold_to(projection, until_seq=5).volumes.keys()) == ["v0", "v1", "v4"]
    # ...and the reference replay ignores snapshots.
    reference = store.fold_to(projection, until_seq=5, from_zero=True)
    assert sorted(reference.volumes.keys()) == ["v0", "v1", "v2", "v3", "v4"]
    # Each failed check makes it ignored: a state that is not this build's snapshot...
    _tamper(store, "UPDATE projection_snapshots SET state=?, digest=?", b"junk",
            hashlib.sha256(b"junk").hexdigest())
    assert store.fold_to(projection, until_seq=5) == reference
    # ...bytes that do not match their digest...
    good = encode_state(at_4)
    _tamper(store, "UPDATE projection_snapshots SET state=?, digest=?", good, "0" * 64)
    assert store.fold_to(projection, until_seq=5) == reference
    # ...another projection version (a fold changed since)...
    _tamper(store, "UPDATE projection_snapshots SET state=?, digest=?, version='engine-old'",
            forged, digest)
    assert store.fold_to(projection, until_seq=5) == reference
    # ...or a snapshot of another log (the hash of its event differs).
    _tamper(store, "UPDATE projection_snapshots SET version=?, event_hash=?",
            f"store1:{projection.snapshot_version}", "f" * 64)
    assert store.fold_to(projection, until_seq=5) == reference


def test_restart_loads_the_newest_snapshot_plus_the_tail(backend: Backend) -> None:
    _durable(backend)
    from projections.engine import EngineProjection

    store = _engine_store(backend, 5)
    assert store.snapshot() == 5
    append(store, vol("v5"), vol("v6"))
    expected = store.state
    store.close()
    store = backend.open(projection=EngineProjection())
    _backend_of[id(store)] = backend
    assert store.state == expected == store.fold_to(store.projection, from_zero=True)
    # The restart trusted the snapshot: a forged one (consistent digest) shows through.
    from projections.snapshot import encode_state

    forged = encode_state(store.fold_to(store.projection, until_seq=1))
    _tamper(store, "UPDATE projection_snapshots SET state=?, digest=?", forged,
            hashlib.sha256(forged).hexdigest())
    store.close()
    store = backend.open(projection=EngineProjection())
    _backend_of[id(store)] = backend
    assert sorted(store.state.volumes.keys()) == ["v0", "v5", "v6"]
    store.rebuild()  # the reference: from zero, and fresh snapshots
    assert store.state == expected


def test_folds_get_the_actor_only_of_the_types_that_read_it(backend: Backend) -> None:
    """A rows-free fold asks the backend for `actor` and `op_id` of the projection's
    `fold_who_types` only (a third of a rebuild's fetch): they arrive for those types, as
    None for the rest, and time travel and a rebuild equal the fold of the full envelopes."""
    from events.values import ContainerConfig
    from events.vocabulary import ContainerCreateRequested
    from projections.fold import fold

    store = _engine_store(backend, 2)
    cid = "ab" * 32
    config = ContainerConfig(image="busybox", image_id="sha256:" + "cd" * 32)
    append(store, Pending(stream=f"container-{cid}", event=ContainerCreateRequested(
        container_id=cid, name="web", config=config)), actor=BOB, op_id="op-2", now_ns=2_000)
    rows = store._r.fold_rows(0, 3, ["ContainerCreateRequested"])
    assert [(r[6] is None, r[7]) for r in rows] == [(True, None), (True, None), (False, "op-2")]
    assert [r[:6] + r[8:] for r in rows] == [r[:6] + r[8:] for r in store._r.fold_rows(0, 3)]
    expected = fold(store.read())
    assert expected.containers[cid].created_by == BOB.uid
    assert store.fold_to(store.projection, from_zero=True) == expected
    store.snapshot_every = 2
    store.rebuild()
    assert store.state == expected


def test_snapshot_if_due_follows_the_cadence(backend: Backend) -> None:
    store = _engine_store(backend, 3)
    store.snapshot_every = 4
    assert store.snapshot_if_due() is None
    append(store, vol("x"))
    assert store.snapshot_if_due() == 4
    append(store, vol("y"))
    assert store.snapshot_if_due() is None and store.snapshot_seqs() == [4]
    plain = backend.open() if backend.path is not None else EventStore.open(":memory:")
    assert plain.snapshot() is None  # no projection, nothing to snapshot


def test_a_log_without_snapshots_table_reads_and_time_travels(tmp_path: Path) -> None:
    from projections.engine import EngineProjection
    from projections.fold import fold

    copy = tmp_path / "events-v1.db"
    shutil.copy(SAMPLE_LOGS[0].with_name("events-v1.db"), copy)
    store = EventStore.open(copy, readonly=True, projection=EngineProjection())
    assert store.snapshot_seqs() == [] and store.snapshot() is None
    assert store.state == fold(store.read()) == store.fold_to(store.projection, until_seq=None)
    half = store.head() // 2
    assert store.fold_to(store.projection, until_seq=half) == fold(store.read(until_seq=half))
    store.close()


def test_the_rows_free_fold_decodes_like_read(backend: Backend,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from events import codec
    from projections.engine import EngineProjection
    from projections.fold import fold

    store = _engine_store(backend, 4)
    # The log's events are at schema 1; pretend VolumeCreated is at 2 now: both paths upcast.
    upcast: list[str] = []

    def v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
        upcast.append(doc["name"])
        return {**doc, "labels": {"upcast": "yes"}}

    monkeypatch.setattr(VolumeCreated, "schema_version", 2)
    monkeypatch.setitem(codec.UPCASTERS, ("VolumeCreated", 1), v1_to_v2)
    state = store.fold_to(EngineProjection(), from_zero=True)
    assert upcast == ["v0", "v1", "v2", "v3"]
    assert state == fold(store.read())
    assert all(v.labels == {"upcast": "yes"} for v in state.volumes.values())
    monkeypatch.undo()
    # A damaged payload is the same CodecError on both paths, naming the type.
    copy = backend.copy(store)
    if backend.pg is None:
        copy._w.conn.execute("DROP TRIGGER events_no_update")
    backend.sql(copy, "UPDATE events SET payload = CAST('{\"type\":' AS BLOB) WHERE seq = 3",
                "UPDATE shipslog.events SET payload = convert_to('{\"type\":', 'UTF8') "
                "WHERE host=%(host)s AND seq = 3")
    with pytest.raises(CodecError, match="VolumeCreated"):
        list(copy.read())
    with pytest.raises(CodecError, match="VolumeCreated"):
        copy.fold_to(EngineProjection(), from_zero=True)
