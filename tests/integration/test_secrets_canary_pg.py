"""The secrets canary on a daemon whose log lives in PostgreSQL (`--store postgresql://…`,
issues 15 and 19): the same random value, given every way `test_secrets_canary` gives it, must
be found nowhere in the database — not in a dump of every table (the chain, the archive, the
host's projections and snapshots, decompressed), not in the cluster's files on disk (heap
pages and the write-ahead log, which keeps every row as it was inserted) — nor under the
state root, in the daemon's debug log, or in any `--format json` answer.

I/O: a private PostgreSQL cluster (started and stopped by its pid), a real daemon on its own
state root, busybox containers (runc), the docker CLI.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import zlib
from pathlib import Path

import pytest

from engine.testing.dockercli import needs_docker
from engine.testing.postgres import PG_BIN, SUPERUSER, PostgresCluster, postgres_available
from events.pg_schema import SCHEMA, grant_store_role
from events.store import EventStore
from projections.engine import EngineProjection
from tests.integration.conftest import loaded_daemon
from tests.integration.test_secrets_canary import (
    answer,
    give_the_secret,
    hits,
    needles,
    state_files,
)

pytestmark = [pytest.mark.kernel, needs_docker]

HOST = "canary-node"


def cluster_files(pg: PostgresCluster) -> list[Path]:
    """Every regular file of the cluster's data directory (heap, indexes, WAL)."""
    out = []
    for dirpath, _, filenames in os.walk(pg.root / "data"):
        out += [Path(dirpath, n) for n in filenames if Path(dirpath, n).is_file()]
    return out


def dump(pg: PostgresCluster, base: Path) -> Path:
    """pg_dump of the whole database as plain SQL (TOASTed values come out decompressed,
    bytea columns as hex)."""
    out = base / "shipslog.sql"
    subprocess.run([str(PG_BIN / "pg_dump"), "-h", str(pg.socket_dir), "-p", str(pg.port),
                    "-U", SUPERUSER, "-d", "shipslog", "-f", str(out)],
                   check=True, capture_output=True, timeout=120)
    return out


def snapshot_hits(canary: str, pg: PostgresCluster) -> list[str]:
    """Take a projection snapshot of the host's log and search it decompressed."""
    with EventStore.open(pg.dsn, projection=EngineProjection(), host_name=HOST) as store:
        assert store.snapshot() is not None
    schema = "host_" + HOST.replace("-", "_")
    rows = pg.psql(f"SELECT encode(state, 'hex') FROM {schema}.projection_snapshots")
    blobs = [zlib.decompress(bytes.fromhex(line)) for line in rows.split()]
    assert blobs
    return [f"snapshot {i}" for i, blob in enumerate(blobs)
            if any(n in blob for n in needles(canary))]


def test_a_secret_given_every_way_is_in_no_table_and_no_file_of_the_database(
        busybox_tar: Path) -> None:
    why = postgres_available()
    if why is not None:
        pytest.skip(why)
    canary = "canary" + secrets.token_hex(12)
    with PostgresCluster.start() as pg:
        pg.psql(SCHEMA)
        pg.psql("CREATE ROLE daemon LOGIN")
        pg.psql(grant_store_role("daemon", "shipslog"))
        flags = ["--debug", "--store", pg.dsn_for("daemon"), "--host-name", HOST]
        with loaded_daemon(busybox_tar, flags) as d:
            give_the_secret(d, canary)
            assert answer(d, "system", "compact", "--before", "0s")
            archived = pg.psql(f"SELECT count(*) FROM shipslog.events WHERE host = '{HOST}' "
                               "AND type = 'ChainCompacted'")
            assert int(archived) >= 1, "the compaction archived nothing"
            answers = {
                "history": answer(d, "history", "kept", "--format", "json"),
                "audit who": answer(d, "audit", "who", "--format", "json"),
                "events --all": answer(d, "events", "--all", "--since", "seq:1",
                                       "--format", "json"),
                "inspect": answer(d, "inspect", "kept", "--format", "json"),
            }
            assert all(answers.values())
            found = [what for what, text in answers.items()
                     if any(n in text.encode() for n in needles(canary))]
            d.stop()
            pg.psql("CHECKPOINT")  # heap pages reach the data files, not only the WAL
            found += hits(canary, [d.base / "daemon.log", *state_files(d.root),
                                   *cluster_files(pg)])
            sql = dump(pg, d.base).read_bytes()  # bytea columns come out as hex
            found += ["pg_dump" for n in needles(canary) if n in sql or n.hex().encode() in sql]
            found += snapshot_hits(canary, pg)
            assert "DEBUG" in (d.base / "daemon.log").read_text()
            assert not found, f"{canary} found in {sorted(set(found))}"
            assert canary.encode() in b"".join(
                p.read_bytes() for p in (d.root / "secrets").iterdir())
            assert int(pg.psql(f"SELECT count(*) FROM shipslog.events WHERE host = '{HOST}'"))
            d.start()  # cleanup removes the containers through the daemon
