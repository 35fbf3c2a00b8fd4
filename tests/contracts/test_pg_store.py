"""What only the PostgreSQL backend has to show beyond the shared contract suite
(tests/contracts/test_event_store.py, test_compaction.py): the daemon's role may only append,
the triggers refuse even the owner, compaction cannot delete without its summary, TLS settings
reach the driver, and a database that goes away fails appends fast with one clear error and
takes them again when it is back.

I/O: a private PostgreSQL cluster (tests/contracts/conftest.py), stopped and started again by
its pid in the outage tests, which get a cluster of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import trio

from engine.testing.postgres import PostgresCluster, postgres_available
from events.codec import canonical_bytes
from events.envelope import Actor, Pending
from events.hashing import chain_hash
from events.pg_backend import PostgresBackend, display_url
from events.pg_schema import SCHEMA, grant_store_role
from events.store import EventStore, StoreError, StoreUnavailable
from events.vocabulary import VolumeCreated
from events.writer import open_store_writer
from tests.contracts.conftest import DAEMON_ROLE, fresh_host
from tests.contracts.test_event_store import VolumeProjection

ALICE = Actor(uid=1000, gid=1000, pid=4242)


def _vol(name: str) -> Pending:
    return Pending(stream=f"volume-{name}", event=VolumeCreated(name=name))


def _append(store: EventStore[Any], name: str) -> int:
    return store.append([_vol(name)], actor=ALICE, op_id="op", now_ns=1)[0].seq


@pytest.fixture
def daemon_store(pg_cluster: PostgresCluster) -> Iterator[EventStore[Any]]:
    store: EventStore[Any] = EventStore.open(
        pg_cluster.dsn_for(DAEMON_ROLE), host_name=fresh_host("role"))
    yield store
    store.close()


def test_the_daemons_role_cannot_update_or_delete(
        pg_cluster: PostgresCluster, daemon_store: EventStore[Any]) -> None:
    _append(daemon_store, "a")
    with psycopg.connect(pg_cluster.dsn_for(DAEMON_ROLE), autocommit=True) as conn:
        for table in ("events", "commands", "tombstones", "hosts"):
            for statement in (f"UPDATE shipslog.{table} SET host = host",
                              f"DELETE FROM shipslog.{table}"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege,
                                   match="permission denied"):
                    conn.execute(statement)
        # Nor may it lift the triggers' guard for itself: deleting still needs the right.
        conn.execute("BEGIN")
        conn.execute("SET LOCAL shipslog.compacting = 'on'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM shipslog.events")
        conn.execute("ROLLBACK")
    assert daemon_store.verify().ok and daemon_store.head() == 1


def test_the_triggers_refuse_even_the_owner(
        pg_cluster: PostgresCluster, daemon_store: EventStore[Any]) -> None:
    daemon_store.append([_vol("a")], actor=ALICE, op_id="op", command_id="c1", now_ns=1)
    host = daemon_store._w.host
    with psycopg.connect(pg_cluster.dsn, autocommit=True) as owner:  # the superuser
        for statement in (
            "UPDATE shipslog.events SET payload = '\\x00' WHERE host = %s",
            "DELETE FROM shipslog.events WHERE host = %s",
            "DELETE FROM shipslog.commands WHERE host = %s",
        ):
            with pytest.raises(psycopg.DatabaseError, match="append-only"):
                owner.execute(statement, (host,))
        # A tombstone without its ChainCompacted event is refused at COMMIT.
        owner.execute("BEGIN")
        owner.execute("INSERT INTO shipslog.tombstones VALUES (%s, 1, repeat('0', 64), 2)",
                      (host,))
        with pytest.raises(psycopg.DatabaseError, match="without a ChainCompacted"):
            owner.execute("COMMIT")
    assert daemon_store.verify().ok and daemon_store.head() == 1


def test_compaction_needs_its_summary_as_the_next_event(
        pg_cluster: PostgresCluster, daemon_store: EventStore[Any]) -> None:
    _append(daemon_store, "a")
    _append(daemon_store, "b")
    with psycopg.connect(pg_cluster.dsn_for(DAEMON_ROLE), autocommit=True) as conn:
        with pytest.raises(psycopg.DatabaseError, match="not its next event"):
            conn.execute("SELECT shipslog.compact_events(%s, ARRAY[1]::bigint[], 7)",
                         (daemon_store._w.host,))
        # The next seq, but no ChainCompacted appended: the whole transaction is refused.
        conn.execute("BEGIN")
        conn.execute("SELECT shipslog.compact_events(%s, ARRAY[1]::bigint[], 3)",
                     (daemon_store._w.host,))
        with pytest.raises(psycopg.DatabaseError, match="without a ChainCompacted"):
            conn.execute("COMMIT")
    assert [e.seq for e in daemon_store.read()] == [1, 2] and daemon_store.verify().ok


def test_a_role_without_the_schema_gets_a_clear_error(pg_cluster: PostgresCluster) -> None:
    pg_cluster.psql("DO $$ BEGIN CREATE ROLE stranger LOGIN; "
                    "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    with pytest.raises(StoreError) as info:
        EventStore.open(pg_cluster.dsn_for("stranger"), host_name=fresh_host("stranger"))
    assert "permission denied" in info.value.message
    assert "grant_store_role" in info.value.hint


def test_tls_settings_reach_the_driver(pg_cluster: PostgresCluster) -> None:
    # This cluster has no TLS: `sslmode=require` in the URL must make the driver refuse it.
    url = pg_cluster.dsn_for(DAEMON_ROLE, password="s3cret") + "?sslmode=require"
    with pytest.raises(StoreUnavailable) as info:
        EventStore.open(url, host_name=fresh_host("tls"))
    assert "SSL" in info.value.message
    assert "s3cret" not in info.value.message and "s3cret" not in info.value.hint
    assert display_url(url) == f"postgresql://{DAEMON_ROLE}@127.0.0.1:{pg_cluster.port}/shipslog"


# --- the database going away ---------------------------------------------------------------


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster this test may stop and start (the session's one serves the others)."""
    why = postgres_available()
    if why is not None:
        pytest.skip(why)
    with PostgresCluster.start() as cluster:
        cluster.psql(SCHEMA)
        cluster.psql(f"CREATE ROLE {DAEMON_ROLE} LOGIN")
        cluster.psql(grant_store_role(DAEMON_ROLE, "shipslog"))
        yield cluster


def test_appends_fail_fast_while_the_database_is_down_and_resume_after(
        own_cluster: PostgresCluster) -> None:
    store: EventStore[Any] = EventStore.open(
        own_cluster.dsn_for(DAEMON_ROLE), host_name="outage", projection=VolumeProjection())
    try:
        _append(store, "a")
        own_cluster.stop()
        with pytest.raises(StoreUnavailable) as info:
            _append(store, "b")
        error = info.value
        assert error.status == 503
        assert error.message.startswith("the event store is unavailable: PostgreSQL at "
                                        f"127.0.0.1:{own_cluster.port}")
        assert "\n" not in error.message and error.hint
        # The projection's state is in memory: reads of it keep working, unchanged.
        assert sorted(k for k in store.state.keys() if k.startswith("v:")) == ["v:a"]
        own_cluster.run()
        assert _append(store, "b") == 2  # the broken connection was replaced
        assert [e.seq for e in store.read()] == [1, 2] and store.verify().ok
        assert sorted(k for k, _ in store.read_rows("volumes")) == ["a", "b"]
    finally:
        store.close()


def test_a_restart_between_two_appends_goes_unnoticed(own_cluster: PostgresCluster) -> None:
    # The connection died with the old server; the next append reconnects, it does not fail.
    store: EventStore[Any] = EventStore.open(own_cluster.dsn_for(DAEMON_ROLE),
                                             host_name="restarted")
    try:
        _append(store, "a")
        reader = store.reader()
        reader.close()  # its connection goes back to the pool, then dies with the server
        own_cluster.restart()
        assert _append(store, "b") == 2
        assert store.head() == 2 and store.verify().ok
        reader = store.reader()  # the pool hands out a live connection, not the dead one
        assert reader.head() == 2
        reader.close()
    finally:
        store.close()


async def test_the_writer_reports_the_outage_to_every_caller(
        own_cluster: PostgresCluster) -> None:
    store: EventStore[Any] = EventStore.open(own_cluster.dsn_for(DAEMON_ROLE),
                                             host_name="outage-writer")
    try:
        async with open_store_writer(store) as writer:
            await writer.append([_vol("a")], actor=ALICE, op_id="o", now_ns=1)
            await trio.to_thread.run_sync(own_cluster.stop)
            failures: list[StoreError] = []

            async def appender(i: int) -> None:
                try:
                    await writer.append([_vol(f"x{i}")], actor=ALICE, op_id="o", now_ns=2)
                except StoreUnavailable as exc:
                    failures.append(exc)

            async with trio.open_nursery() as nursery:
                for i in range(8):
                    nursery.start_soon(appender, i)
            assert len(failures) == 8
            await trio.to_thread.run_sync(own_cluster.run)
            envs = await writer.append([_vol("b")], actor=ALICE, op_id="o", now_ns=3)
        assert envs[0].seq == 2 and store.verify().ok
    finally:
        store.close()


def test_a_second_writer_of_one_host_waits_its_turn(pg_cluster: PostgresCluster) -> None:
    # Two stores of one host (a second daemon by mistake): the host's lock serialises them,
    # and the chain the database holds stays gap-free.
    url, host = pg_cluster.dsn_for(DAEMON_ROLE), fresh_host("twice")
    first: EventStore[Any] = EventStore.open(url, host_name=host)
    second: EventStore[Any] = EventStore.open(url, host_name=host)
    try:
        assert [_append(first, "a"), _append(second, "b"), _append(first, "c")] == [1, 2, 3]
        assert first.verify().ok
    finally:
        first.close()
        second.close()


def test_readers_reuse_pooled_connections(daemon_store: EventStore[Any]) -> None:
    # An API read on PostgreSQL must not pay a new connection (~13 ms here) each time.
    def backend_pid() -> int:
        reader = daemon_store.reader()
        try:
            assert reader.head() == 0
            return int(reader._r.conn.info.backend_pid)
        finally:
            reader.close()

    assert backend_pid() == backend_pid()
    first, second = daemon_store.reader(), daemon_store.reader()  # at once: two connections
    assert first._r.conn.info.backend_pid != second._r.conn.info.backend_pid
    first.close()
    second.close()


def test_backend_satisfies_the_public_interface() -> None:
    from events.backend import StoreBackend
    from events.sqlite_backend import SqliteBackend

    pg: StoreBackend = PostgresBackend("postgresql://x@127.0.0.1/db", "h", readonly=True,
                                       timeout=1)
    sqlite: StoreBackend = SqliteBackend.connect(":memory:", readonly=False, timeout=1)
    assert pg.location.startswith("postgresql://") and sqlite.location == ":memory:"


def test_a_host_s_chain_is_written_only_by_the_role_that_registered_it(
        pg_cluster: PostgresCluster, daemon_store: EventStore[Any]) -> None:
    """Every writer role may INSERT into the shared tables; what stops one host's role from
    appending correctly linked but forged events to another host's chain is the owner
    check (a compromised host must not write the history of the others)."""
    _append(daemon_store, "a")
    victim = daemon_store._w.host
    pg_cluster.psql("CREATE ROLE intruder LOGIN")
    pg_cluster.psql(grant_store_role("intruder", "shipslog"))
    with psycopg.connect(pg_cluster.dsn_for("intruder"), autocommit=True) as conn:
        with pytest.raises(psycopg.DatabaseError, match="registered by another role") as exc:
            conn.execute("SELECT shipslog.register_host(%s, 'store', 0)", (victim,))
        assert exc.value.sqlstate == "SL006"
        head, last = conn.execute("SELECT head, last_hash FROM shipslog.hosts WHERE host = %s",
                                  (victim,)).fetchone()
        forged = dict(seq=head + 1, stream="volume-x", stream_version=1, schema_version=1,
                      recorded_at=1, actor=b"{}", op_id="op", command_id=None,
                      type_name="VolumeCreated", payload=b'{"name":"x"}')
        digest = chain_hash(last, canonical_bytes(**forged))  # a perfectly linked event
        with pytest.raises(psycopg.DatabaseError, match="belongs to another role") as exc:
            conn.execute(
                "INSERT INTO shipslog.events (host, seq, stream, stream_version, schema_version,"
                " type, recorded_at, actor, op_id, command_id, payload, hash) VALUES (%s, %s,"
                " 'volume-x', 1, 1, 'VolumeCreated', 1, %s, 'op', NULL, %s, %s)",
                (victim, head + 1, b"{}", b'{"name":"x"}', digest))
        assert exc.value.sqlstate == "SL006"
        with pytest.raises(psycopg.DatabaseError, match="belongs to another role"):
            conn.execute("INSERT INTO shipslog.commands VALUES (%s, 'c9', 1, 1)", (victim,))
        # its own host is its own
        conn.execute("SELECT shipslog.register_host('intruders-own', 'store', 0)")
    _append(daemon_store, "b")  # the owner goes on writing
    assert daemon_store.verify().ok and daemon_store.head() == 2



class _Follower:
    """`CentralLog.follow` in a thread of its own, keeping (host, seq) of the hosts asked
    for until it has `count` of them; its errors are kept for the test to see."""

    def __init__(self, dsn: str, hosts: set[str], count: int, **follow: Any) -> None:
        import threading

        self.got: list[tuple[str, int]] = []
        self.errors: list[BaseException] = []
        self.done = threading.Event()
        self._args = (dsn, hosts, count, follow)
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        from events.central import CentralLog

        dsn, hosts, count, follow = self._args
        try:
            items = CentralLog(dsn).follow(wait_s=3600, **follow)
            for item in items:
                if item.host in hosts:
                    self.got.append((item.host, item.envelope.seq))
                if len(self.got) == count:
                    break
            items.close()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.errors.append(exc)
        self.done.set()

    def wait_for_history(self) -> None:
        for _ in range(1200):  # up to a minute
            if self.got or self.done.is_set():
                break
            self.done.wait(0.05)


def test_a_follower_at_the_center_sees_another_writers_events_once_in_order(
        pg_cluster: PostgresCluster, daemon_store: EventStore[Any]) -> None:
    """LISTEN/NOTIFY: `CentralLog.follow` reads history, then wakes on the insert trigger's
    notification for each commit of another process's store. `wait_s` is an hour, so only
    a notification can wake it within the test's patience; rows come from the table after
    the last seq seen, so none is lost or doubled."""
    _append(daemon_store, "a")
    host = daemon_store._w.host
    follower = _Follower(pg_cluster.dsn, {host}, 4, host=host)
    follower.wait_for_history()  # history first
    got, errors = [seq for _, seq in follower.got], follower.errors
    assert not errors and got, (errors, got)
    for name in ("b", "c", "d"):  # three commits, each notified at COMMIT
        _append(daemon_store, name)
    assert follower.done.wait(60), f"the follower saw {follower.got} and no notification woke it"
    got = [seq for _, seq in follower.got]
    assert not errors, errors
    assert got == [1, 2, 3, 4]


def test_a_follower_of_every_host_reads_the_hosts_a_notification_names(
        pg_cluster: PostgresCluster, daemon_store: EventStore[Any]) -> None:
    """Following all hosts: a host that registers after the follower started is read from
    its first event when its first commit notifies, with the others untouched."""
    from events.central import CentralLog

    _append(daemon_store, "a")
    ours = daemon_store._w.host
    late_name = fresh_host("late")
    # Other tests' hosts share this cluster (some with events only their test decodes): the
    # follower starts after their last events, so it reads only what this test writes.
    with CentralLog(pg_cluster.dsn) as center:
        after = {h: head for h, _, head in center.hosts() if h != ours}
    follower = _Follower(pg_cluster.dsn, {ours, late_name}, 4, after=after)
    follower.wait_for_history()  # our history first
    got, errors = follower.got, follower.errors
    assert not errors and got, (errors, got)
    late: EventStore[Any] = EventStore.open(pg_cluster.dsn_for(DAEMON_ROLE), host_name=late_name)
    try:
        _append(late, "x")
        _append(late, "y")
        _append(daemon_store, "b")
    finally:
        late.close()
    assert follower.done.wait(60), f"the follower saw {got}"
    assert not errors, errors
    assert sorted(got) == sorted([(ours, 1), (late_name, 1), (late_name, 2), (ours, 2)])
