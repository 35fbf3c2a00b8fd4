"""A fleet mid-upgrade: one host runs a newer shipslog and records an event type this build
does not know. The fleet readers (`shipslog --store postgresql://…`) answer with everything
they can read, leave that event out, and say so once on stderr; `audit verify` still covers
it (it checks the stored bytes, not their meaning).

I/O: a private PostgreSQL cluster, SQLite files under tmp_path; no daemon."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import trio

from engine.testing.postgres import PostgresCluster, postgres_available
from events import vocabulary as v
from events.central import ensure_schema
from events.codec import actor_bytes, canonical_bytes
from events.envelope import Pending
from events.hashing import chain_hash
from events.pg_replica import grant_replica
from events.store import EventStore
from tests.integration.test_fleet_cli import T0, USER, cli, lifecycle, replicate

pytestmark = pytest.mark.skipif(postgres_available() is not None,
                                reason=str(postgres_available()))

NEW_TYPE = "ContainerTeleported"  # an event type from a future version


def _append_unknown_event(db: Path, cid: str, at: int) -> None:
    """What a newer build would have written: a well-chained row of a type unknown here."""
    conn = sqlite3.connect(db)
    with conn:
        seq, prev = conn.execute(
            "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        stream = f"container-{cid}"
        version = conn.execute("SELECT max(stream_version) FROM events WHERE stream = ?",
                               (stream,)).fetchone()[0] + 1
        actor = actor_bytes(USER)
        payload = json.dumps({"type": NEW_TYPE, "container_id": cid, "to": "mars"}).encode()
        fields = dict(seq=seq + 1, stream=stream, stream_version=version, schema_version=1,
                      recorded_at=at, actor=actor, op_id="op-future", command_id=None,
                      type_name=NEW_TYPE, payload=payload)
        digest = chain_hash(prev, canonical_bytes(**fields))  # type: ignore[arg-type]
        conn.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                     (seq + 1, stream, version, 1, NEW_TYPE, at, actor, "op-future", None,
                      payload, digest))
    conn.close()


def test_fleet_readers_leave_out_an_unknown_event_and_say_so(tmp_path: Path) -> None:
    old_cid, new_cid = "a" * 64, "b" * 64
    with PostgresCluster.start() as pg:
        ensure_schema(pg.dsn)
        pg.psql("CREATE ROLE replicator LOGIN; " + grant_replica("replicator"))
        for host, cid, at in (("old", old_cid, T0), ("new", new_cid, T0 + 10**9)):
            db = tmp_path / f"{host}.db"
            with EventStore.open(db) as store:
                lifecycle(store, cid, "web", at)
            if host == "new":
                _append_unknown_event(db, cid, at + 2_000_000)
                with EventStore.open(db) as store:  # and a known event after it
                    store.append([Pending(stream=f"container-{cid}",
                                          event=v.ContainerStarted(container_id=cid, pid=7))],
                                 actor=USER, op_id="op-start", now_ns=at + 3_000_000)
            trio.run(replicate, db, pg.dsn_for("replicator"), host)

        code, out, err = cli("--store", pg.dsn, "events", "--all")
        assert code == 0, err
        lines = out.splitlines()
        assert len(lines) == 5 + 6 and not any(NEW_TYPE in line for line in lines)
        assert any(line.startswith("new") and "ContainerStarted" in line for line in lines)
        [warning] = err.splitlines()
        assert f"type {NEW_TYPE} from host new (first: seq 6)" in warning
        assert "newer shipslog" in warning

        code, out, err = cli("--store", pg.dsn, "history", "web", "--host", "new",
                             "--format", "json")
        assert code == 0, err
        assert NEW_TYPE in err and NEW_TYPE not in out

        code, out, err = cli("--store", pg.dsn, "audit", "verify", "--host", "new")
        assert code == 0, err + out
        assert "7 events verified" in out  # the unknown one too: its bytes are checked
