"""Fixtures the store's contract suites share: a private PostgreSQL cluster for the session.

I/O: starts and stops one PostgreSQL server (engine/testing/postgres.py) by its pid, in a
temporary directory on a free loopback port; skipped, with the reason, where PostgreSQL 15
is not installed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from engine.testing.postgres import PostgresCluster, postgres_available

DAEMON_ROLE = "daemon"
_hosts = itertools.count()


def fresh_host(prefix: str) -> str:
    """A host name no other test of this session uses (a fresh, empty log)."""
    name = f"t{next(_hosts)}-{prefix[:30]}"
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    why = postgres_available()
    if why is not None:
        pytest.skip(why)
    from events.pg_schema import SCHEMA, grant_store_role

    with PostgresCluster.start() as cluster:  # under /tmp: the postgres user must reach it
        cluster.psql(SCHEMA)
        # The daemon's role: SELECT and INSERT on the shared tables, nothing more.
        cluster.psql(f"CREATE ROLE {DAEMON_ROLE} LOGIN")
        cluster.psql(grant_store_role(DAEMON_ROLE, "shipslog"))
        yield cluster
