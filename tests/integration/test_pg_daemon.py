"""A daemon whose event log lives in PostgreSQL (`shipslogd --store postgresql://…`, issue 19),
and what it does while the database is down: it refuses new operations with one clear error
(503 on the API; nothing done in the kernel without its event), keeps answering reads from its
projections, keeps containers running, and takes operations again once PostgreSQL is back.

I/O: a private PostgreSQL cluster (started, stopped and started again by its pid), a real
daemon on its own state root, busybox containers (runc).
"""

from __future__ import annotations

import io
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.cli.client import ApiError
from engine.cli.main import run
from engine.testing.daemon import DaemonProcess
from engine.testing.postgres import PostgresCluster, postgres_available
from events.pg_schema import SCHEMA, grant_store_role
from tests.faults.conftest import wait_until
from tests.integration.conftest import loaded_daemon

pytestmark = [pytest.mark.kernel]


def cli(daemon: DaemonProcess, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), environ={"SHIPSLOG_HOST": daemon.host, "HOME": str(daemon.base)},
               stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def ok(daemon: DaemonProcess, *argv: str) -> str:
    code, out, err = cli(daemon, *argv)
    assert code == 0, f"shipslog {' '.join(argv)} -> {code}: {err}"
    return out


@pytest.fixture
def pg() -> Iterator[PostgresCluster]:
    why = postgres_available()
    if why is not None:
        pytest.skip(why)
    with PostgresCluster.start() as cluster:
        cluster.psql(SCHEMA)
        cluster.psql("CREATE ROLE daemon LOGIN")
        cluster.psql(grant_store_role("daemon", "shipslog"))
        yield cluster


@pytest.fixture
def pg_daemon(pg: PostgresCluster, busybox_tar: Path) -> Iterator[DaemonProcess]:
    flags = ["--store", pg.dsn_for("daemon"), "--host-name", "node-a"]
    with loaded_daemon(busybox_tar, flags) as d:
        yield d
        pg.run()  # cleanup removes containers through the daemon: the log must be there


def _running(daemon: DaemonProcess, name: str) -> bool:
    info: dict[str, Any] = daemon.client().get_json(f"/containers/{name}/json")
    return bool(info["State"]["Running"])


def test_a_daemon_on_postgresql_rides_out_an_outage(
        pg: PostgresCluster, pg_daemon: DaemonProcess) -> None:
    d = pg_daemon
    assert not (d.root / "events.db").exists()  # the log is in PostgreSQL, not under --root
    info = ok(d, "info")
    assert f" Store: postgresql://daemon@127.0.0.1:{pg.port}/shipslog (host node-a)" in info
    ok(d, "run", "-d", "--name", "keep", "busybox", "sleep", "600")
    ok(d, "run", "-d", "--name", "dies", "busybox", "sleep", "600")
    assert _running(d, "keep") and _running(d, "dies")
    dies_pid = d.client().get_json("/containers/dies/json")["State"]["Pid"]
    events = int(pg.psql("SELECT count(*) FROM shipslog.events WHERE host = 'node-a'"))

    pg.stop()
    # Reads come from the projections: `ps` and `inspect` answer as before.
    assert "keep" in ok(d, "ps", "--format", "{{.Names}} {{.State}}")
    assert _running(d, "keep")
    # A new operation is refused before anything is done, in one line.
    code, out, err = cli(d, "run", "-d", "--name", "second", "busybox", "sleep", "600")
    assert code != 0
    lines = err.strip().splitlines()  # one line of error, one of what to do
    assert len(lines) == 2 and "the event store is unavailable" in lines[0], err
    assert f"127.0.0.1:{pg.port}" in lines[0] and lines[1].startswith("hint: start PostgreSQL")
    assert "Traceback" not in err
    with pytest.raises(ApiError) as api:
        d.client().post_json("/containers/create", {"name": "third"},
                             {"Image": "busybox", "Cmd": ["true"]})
    assert api.value.status == 503
    # Nothing of the refused runs reached the kernel: no container, no runc state.
    names = {c["Names"][0] for c in d.client().get_json("/containers/json", {"all": True})}
    assert names == {"/keep", "/dies"}
    assert len(list((d.exec_root / "runc").iterdir())) == 2
    assert _running(d, "keep")  # the container never noticed
    # A container exits while the log cannot take its exit: the monitor holds the status and
    # the daemon retries the outcome (engine/shell/outcomes.py) until PostgreSQL is back.
    os.kill(dies_pid, signal.SIGKILL)  # the container's own process, started by this test
    warnings = wait_until(lambda: " ".join(d.client().get_json("/info").get("Warnings") or []),
                          "the refused exit to be shown")
    assert "waiting to be recorded" in warnings and "event store is unavailable" in warnings

    pg.run()
    wait_until(lambda: not _running(d, "dies"), "the exit to land after the outage")
    died = pg.psql("SELECT count(*) FROM shipslog.events WHERE host = 'node-a' "
                   "AND type = 'ContainerExited'")
    assert int(died) == 1
    ok(d, "run", "-d", "--name", "second", "busybox", "sleep", "600")
    assert _running(d, "second") and _running(d, "keep")
    assert int(pg.psql("SELECT count(*) FROM shipslog.events WHERE host = 'node-a'")) > events
    verify = d.client().get_json("/shipslog/audit/verify")
    assert verify["ok"], verify
    ok(d, "audit", "verify")
