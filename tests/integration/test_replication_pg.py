"""Replication against a real PostgreSQL (a private cluster, by pid): a host's SQLite log
arrives at the center byte for byte and verifies there; the center refuses a forged batch and
keeps an alert; the replication role cannot UPDATE or DELETE; the center stopped and started
again mid-load loses nothing and duplicates nothing.

I/O: a private PostgreSQL cluster (engine/testing/postgres.py), SQLite files under tmp_path.
No kernel objects: no daemon here (tests/integration/test_fleet_daemons.py starts daemons).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import psycopg
import pytest
import trio

from engine.shell.replication import ReplicationStatus, Replicator, SqliteSource
from engine.testing.postgres import PostgresCluster, postgres_available
from events import vocabulary as v
from events.central import CentralLog, Row, ensure_schema
from events.envelope import SYSTEM_ACTOR, Pending
from events.pg_replica import grant_replica
from events.store import EventStore

pytestmark = pytest.mark.skipif(postgres_available() is not None,
                                reason=str(postgres_available()))


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresCluster]:
    with PostgresCluster.start() as cluster:
        ensure_schema(cluster.dsn)
        cluster.psql("CREATE ROLE replicator LOGIN; " + grant_replica("replicator"))
        yield cluster


def append(store: EventStore, n: int) -> None:
    for _ in range(n):
        store.append([Pending(stream="daemon", event=v.DaemonStarted(
            version="t", boot_id=os.urandom(4).hex(), clean_shutdown=True))],
            actor=SYSTEM_ACTOR, op_id="op-" + os.urandom(4).hex(), now_ns=1_700_000_000_000)


async def replicate(db: Path, url: str, host: str, until: int, *, during: object = None) -> None:
    source = SqliteSource(db)
    rep = Replicator(source, lambda: CentralLog(url).open(), ReplicationStatus(url, host),
                     clock=lambda: 1, wait_for_events=lambda t: trio.sleep(min(t, 0.05)),
                     max_batch=50,
                     backoff=(0.05, 0.2))
    async with trio.open_nursery() as n:
        await n.start(rep.run)
        if during is not None:
            await during(rep)  # type: ignore[operator]
        with trio.fail_after(60):
            while rep.status.acknowledged < until:
                await trio.sleep(0.02)
        n.cancel_scope.cancel()
    source.close()


def center_rows(pg: PostgresCluster, host: str) -> list[Row]:
    with CentralLog(pg.dsn) as c:
        return list(c.rows(host))


def local_rows(db: Path) -> list[Row]:
    s = SqliteSource(db)
    try:
        return s.rows_after(0, 10**9)
    finally:
        s.close()


def test_a_host_log_arrives_byte_for_byte_and_verifies_centrally(pg: PostgresCluster,
                                                                  tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    with EventStore.open(db) as store:
        append(store, 120)
    trio.run(replicate, db, pg.dsn_for("replicator"), "alpha", 120)
    assert center_rows(pg, "alpha") == local_rows(db)
    with CentralLog(pg.dsn) as c:
        result = c.verify("alpha")
        assert result.ok and result.checked == 120
        # a restart resumes after the head: nothing sent twice (the trigger would refuse it)
    with EventStore.open(db) as store:
        append(store, 7)
    trio.run(replicate, db, pg.dsn_for("replicator"), "alpha", 127)
    assert [r.seq for r in center_rows(pg, "alpha")] == list(range(1, 128))


def test_the_center_refuses_a_forged_batch_and_keeps_an_alert(pg: PostgresCluster,
                                                               tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    with EventStore.open(db) as store:
        append(store, 5)
    trio.run(replicate, db, pg.dsn_for("replicator"), "bravo", 5)
    forged = Row(6, "daemon", 6, 1, "DaemonStarted", 1, b"{}", "op-x", None, b"{}", "f" * 64)
    with CentralLog(pg.dsn_for("replicator")) as c, pytest.raises(Exception) as refused:
        c.insert("bravo", [forged])
    assert "SL002" in str(getattr(refused.value, "sqlstate", "")) or "link" in str(refused.value)
    with psycopg.connect(pg.dsn_for("replicator")) as conn, pytest.raises(psycopg.Error):
        conn.execute("INSERT INTO shipslog.events (host, seq, stream, stream_version, "
                     "schema_version, type, recorded_at, actor, op_id, payload, hash) VALUES "
                     "('bravo', 6, 'daemon', 6, 1, 'DaemonStarted', 1, '\\x7b7d', 'op', "
                     "'\\x7b7d', repeat('f', 64))")
    assert len(center_rows(pg, "bravo")) == 5
    with CentralLog(pg.dsn) as c:
        assert [(h, k) for h, _, k, _ in c.alerts("bravo")] == [("bravo", "refused")]
        assert c.verify("bravo").ok
    # a resent batch the center already holds is a no-op, not an alert
    with CentralLog(pg.dsn_for("replicator")) as c:
        assert c.insert("bravo", local_rows(db)[2:5]) is False
        assert len(c.alerts("bravo")) == 1


@pytest.mark.parametrize("sql", [
    "UPDATE shipslog.events SET op_id = 'x' WHERE host = 'bravo'",
    "DELETE FROM shipslog.events WHERE host = 'bravo'",
    "UPDATE shipslog.hosts SET head = 0",
    "DELETE FROM shipslog.alerts",
])
def test_the_replication_role_can_only_insert(pg: PostgresCluster, sql: str) -> None:
    with psycopg.connect(pg.dsn_for("replicator")) as conn, pytest.raises(
            psycopg.errors.InsufficientPrivilege):
        conn.execute(sql)


def test_center_stopped_and_restarted_mid_load_loses_and_repeats_nothing(
        pg: PostgresCluster, tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    with EventStore.open(db) as store:
        append(store, 100)

        async def outage(rep: Replicator) -> None:
            while rep.status.acknowledged < 50:
                await trio.sleep(0.005)
            await trio.to_thread.run_sync(lambda: pg.stop(fast=False))  # a crash, not a shutdown
            await trio.to_thread.run_sync(append, store, 100)
            with trio.fail_after(30):  # the replicator noticed the outage (not a timing check)
                while rep.status.state != "retrying":
                    await trio.sleep(0.02)
            await trio.to_thread.run_sync(pg.run)

        trio.run(partial(replicate, during=outage), db, pg.dsn_for("replicator"), "charlie", 200)
    assert center_rows(pg, "charlie") == local_rows(db)
    with CentralLog(pg.dsn) as c:
        assert c.verify("charlie").ok and not c.alerts("charlie")
