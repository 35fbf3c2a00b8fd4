"""Three real daemons (own roots, sockets and host names) replicating to one private PostgreSQL,
with faults: the center crashes and comes back mid-load, a host is killed -9 mid-load and
restarted. Every host's log ends at the center exactly once, in order, verifiable there; the
fleet queries show all three hosts; `info` shows each host's replication.

I/O: three shipslogd processes (kernel: each a state root, a socket, a busybox container
created), a private PostgreSQL cluster; every daemon and the cluster are stopped by pid."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.cli.main import run
from engine.shell.replication import SqliteSource
from engine.testing.daemon import DaemonProcess
from engine.testing.postgres import PostgresCluster, postgres_available
from events.central import CentralLog, Row, ensure_schema
from events.pg_replica import grant_replica

pytestmark = [pytest.mark.kernel, pytest.mark.slow,
              pytest.mark.skipif(postgres_available() is not None,
                                 reason=str(postgres_available()))]

HOSTS = ("alpha", "bravo", "charlie")
CANARY = "canary-4f1e9b"  # a secret value: it never enters a log, so never reaches the center


@pytest.fixture
def fleet(busybox_tar: Path) -> Iterator[tuple[PostgresCluster, dict[str, DaemonProcess]]]:
    with PostgresCluster.start() as pg:
        ensure_schema(pg.dsn)
        pg.psql("CREATE ROLE replicator LOGIN; " + grant_replica("replicator"))
        daemons: dict[str, DaemonProcess] = {}
        try:
            for host in HOSTS:
                d = DaemonProcess.make()
                d.flags = ["--replicate-to", pg.dsn_for("replicator"), "--host-name", host]
                daemons[host] = d
                d.start()
                with open(busybox_tar, "rb") as f:
                    d.client().upload("POST", "/images/load", f)
                d.client().post_json("/containers/create", {"name": "web"},
                                     {"Image": "busybox", "Cmd": ["true"],
                                      "Env": [f"DB_PASSWORD={CANARY}"]})
            yield pg, daemons
        finally:
            for d in daemons.values():
                d.cleanup()


def local_rows(d: DaemonProcess) -> list[Row]:
    source = SqliteSource(d.root / "events.db")
    try:
        return source.rows_after(0, 10**9)
    finally:
        source.close()


def converged(pg: PostgresCluster, daemons: dict[str, DaemonProcess],
              timeout: float = 60.0) -> None:
    """Wait until the center holds every host's whole log (no timing asserted: a deadline)."""
    deadline = time.monotonic() + timeout
    with CentralLog(pg.dsn) as center:
        for host, d in daemons.items():
            while center.head(host)[0] < len(local_rows(d)):
                assert time.monotonic() < deadline, f"{host} did not catch up:\n{d.log_text()}"
                time.sleep(0.1)


def load(d: DaemonProcess, prefix: str, n: int) -> None:
    for i in range(n):
        d.client().post_json("/volumes/create", None, {"Name": f"{prefix}{i}"})


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), stdout=out, stderr=err, environ={})
    return code, out.getvalue(), err.getvalue()


def test_three_hosts_replicate_through_a_center_crash_and_a_host_kill(
        fleet: tuple[PostgresCluster, dict[str, DaemonProcess]]) -> None:
    pg, daemons = fleet
    for host, d in daemons.items():
        load(d, f"{host}-a", 20)
    pg.stop(fast=False)  # a crash of the center mid-load
    for host, d in daemons.items():
        load(d, f"{host}-b", 20)
    pg.run()
    alpha = daemons["alpha"]
    load(alpha, "alpha-c", 30)
    alpha.kill9()  # mid-load: whatever batch was in flight is all or nothing at the center
    alpha.start()
    load(alpha, "alpha-d", 10)
    converged(pg, daemons)

    with CentralLog(pg.dsn) as center:
        for host, d in daemons.items():
            assert list(center.rows(host)) == local_rows(d), host  # once each, in order
            assert center.verify(host).ok
        assert not center.alerts()
        dump = pg.psql("SELECT string_agg(encode(actor || payload, 'escape'), '') "
                       "FROM shipslog.events")
        assert "DB_PASSWORD" in dump and CANARY not in dump  # the key is recorded, not the value

    code, out, err = cli("-H", alpha.host, "info")
    assert code == 0, err
    line = next(x for x in out.splitlines() if x.startswith(" Replication: "))
    assert line.startswith(f" Replication: postgresql://replicator@127.0.0.1:{pg.port}/shipslog,"
                           " host alpha, acknowledged ")

    code, out, err = cli("--store", pg.dsn, "audit", "verify", "--host", "alpha")
    assert code == 0 and out.startswith("chain ok of host alpha"), err
    code, out, err = cli("--store", pg.dsn, "events", "--all", "--filter", "type=VolumeCreated")
    assert code == 0, err
    assert {line.split()[0] for line in out.splitlines()} == set(HOSTS)
    code, out, err = cli("--store", pg.dsn, "events", "--filter", "type=volume")  # Docker's
    assert code == 0 and {line.split()[0] for line in out.splitlines()} == set(HOSTS), err
    assert all(" volume create " in line for line in out.splitlines())
    code, out, err = cli("--store", pg.dsn, "history", "web", "--host", "bravo")
    assert code == 0 and "on host bravo" in out, err


def test_a_host_whose_log_was_replaced_is_refused_as_a_fork(
        fleet: tuple[PostgresCluster, dict[str, DaemonProcess]], tmp_path: Path) -> None:
    """A second daemon claiming an existing host name (a new, different chain) must not get
    its events in: the center keeps the first chain, records an alert, and info warns."""
    pg, daemons = fleet
    converged(pg, daemons)
    impostor = DaemonProcess.make()
    impostor.flags = ["--replicate-to", pg.dsn_for("replicator"), "--host-name", "charlie"]
    try:
        impostor.start()
        deadline = time.monotonic() + 30
        with CentralLog(pg.dsn) as center:
            while not center.alerts("charlie"):
                assert time.monotonic() < deadline, impostor.log_text()
                time.sleep(0.1)
            assert center.alerts("charlie")[0][2] == "fork"
            assert list(center.rows("charlie")) == local_rows(daemons["charlie"])
        code, _, err = cli("-H", impostor.host, "info")
        assert "replication to postgresql://replicator@" in err and "stopped: fork" in err
    finally:
        impostor.cleanup()
