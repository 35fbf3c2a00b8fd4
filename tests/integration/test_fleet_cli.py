"""Fleet queries from the center (`shipslog --store postgresql://… events|history|audit`): three
hosts' logs replicated to one private PostgreSQL, read back with a HOST column, per host or
across all, in the formats the daemon-backed verbs print.

I/O: a private PostgreSQL cluster, SQLite files under tmp_path; no daemon (the CLI reads the
center directly)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from engine.cli.main import run
from engine.shell.replication import ReplicationStatus, Replicator, SqliteSource
from engine.testing.postgres import PostgresCluster, postgres_available
from events import vocabulary as v
from events.central import CentralLog, ensure_schema
from events.envelope import Actor, Pending
from events.pg_replica import grant_replica
from events.store import EventStore
from events.values import ContainerConfig

pytestmark = pytest.mark.skipif(postgres_available() is not None,
                                reason=str(postgres_available()))

HOSTS = ("alpha", "bravo", "charlie")
DBS: dict[str, Path] = {}  # host -> its SQLite log (the center fixture's)
USER = Actor(uid=1000, gid=1000, pid=4242, command=("shipslog", "run"), via="api")
T0 = 1_765_000_000_000_000_000


def lifecycle(store: EventStore, cid: str, name: str, at: int) -> None:
    """What a create leaves in the log: the operation, the name claim, the container."""
    op = "op" + cid[:10]
    store.append([
        Pending(stream=f"op-{op}", event=v.OperationRequested(
            op_id=op, kind="container.create", target=f"container-{cid}")),
        Pending(stream=f"container-{cid}", event=v.ContainerCreateRequested(
            container_id=cid, name=name, config=ContainerConfig(image="busybox",
                                                                 image_id="sha256:" + "a" * 64))),
        Pending(stream=f"name-{name}", event=v.NameClaimed(name=name, container_id=cid)),
    ], actor=USER, op_id=op, now_ns=at)
    store.append([Pending(stream=f"container-{cid}", event=v.ContainerCreated(container_id=cid)),
                  Pending(stream=f"op-{op}", event=v.OperationCompleted(op_id=op))],
                 actor=USER, op_id=op, now_ns=at + 1_000_000)


async def replicate(db: Path, url: str, host: str) -> None:
    source = SqliteSource(db)
    rep = Replicator(source, lambda: CentralLog(url).open(), ReplicationStatus(url, host),
                     clock=lambda: 1, wait_for_events=lambda t: trio.sleep(min(t, 0.05)))
    async with trio.open_nursery() as n:
        await n.start(rep.run)
        with trio.fail_after(60):
            while rep.status.acknowledged < source.head():
                await trio.sleep(0.02)
        n.cancel_scope.cancel()
    source.close()


@pytest.fixture(scope="module")
def center(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with PostgresCluster.start() as pg:
        ensure_schema(pg.dsn)
        pg.psql("CREATE ROLE replicator LOGIN; " + grant_replica("replicator"))
        base = tmp_path_factory.mktemp("fleet")
        for i, host in enumerate(HOSTS):
            db = DBS[host] = base / f"{host}.db"
            with EventStore.open(db) as store:
                lifecycle(store, f"{i + 1:x}" * 64, "web", T0 + i * 10**9)
                lifecycle(store, os.urandom(32).hex(), f"db-{host}", T0 + i * 10**9 + 10**8)
            trio.run(replicate, db, pg.dsn_for("replicator"), host)
        yield pg.dsn


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), stdout=out, stderr=err, environ={"TZ": "UTC"})
    return code, out.getvalue(), err.getvalue()


def test_events_across_all_hosts_and_of_one(center: str) -> None:
    code, out, err = cli("--store", center, "events", "--all")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3 * 10 and {line.split()[0] for line in lines} == set(HOSTS)
    code, out, _ = cli("--store", center, "events", "--host", "bravo", "--format", "json")
    docs = [json.loads(line) for line in out.splitlines()]
    assert {d["host"] for d in docs} == {"bravo"} and [d["seq"] for d in docs] == list(
        range(1, 11))
    code, out, _ = cli("--store", center, "events", "--all", "--filter",
                       "type=ContainerCreated")
    assert len(out.splitlines()) == 6


def test_events_as_docker_events_prints_them_with_the_host_first(center: str) -> None:
    """Without --all, `events` answers as against a daemon: Docker's event lines (and its
    filters and templates), here with the host each came from."""
    code, out, err = cli("--store", center, "events")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3 * 2 and all(" container create " in line for line in lines)
    assert [line.split()[0] for line in lines] == ["alpha", "alpha", "bravo", "bravo",
                                                   "charlie", "charlie"]
    assert all(line.endswith(("name=web)", f"name=db-{line.split()[0]})")) for line in lines)
    code, out, _ = cli("--store", center, "events", "--filter", "container=web",
                       "--format", "{{.host}} {{.Action}} {{.Actor.Attributes.name}}")
    assert out.splitlines() == [f"{h} create web" for h in HOSTS]
    code, _, err = cli("--store", center, "events", "--since", "seq:3")
    assert code != 0 and "seq:N names a point in one host's log" in err


def test_history_of_a_name_on_one_host_and_ambiguous_across_hosts(center: str) -> None:
    code, out, err = cli("--store", center, "history", "web", "--host", "charlie")
    assert code == 0, err
    assert "on host charlie: 4 events, 1 operations" in out
    assert out.splitlines()[1].split()[0] == "HOST" and "\ncharlie " in out
    code, _, err = cli("--store", center, "history", "web")
    assert code != 0 and "several objects" in err and "--host" in err
    code, out, err = cli("--store", center, "history", "2" * 20)  # an id prefix: one host
    assert code == 0 and "on host bravo" in out, err


def test_audit_verify_per_host_and_fleet(center: str) -> None:
    code, out, err = cli("--store", center, "audit", "verify", "--host", "alpha")
    assert code == 0 and out.startswith("chain ok of host alpha: 10 events verified"), err
    code, out, err = cli("--store", center, "audit", "verify")
    assert code == 0 and "hosts alpha, bravo, charlie: 30 events verified" in out, err


def test_audit_who_has_a_host_column(center: str) -> None:
    code, out, err = cli("--store", center, "audit", "who")
    assert code == 0, err
    rows = out.splitlines()
    assert rows[0].split()[0] == "HOST" and len(rows) == 1 + 6
    code, out, _ = cli("--store", center, "audit", "who", "--host", "alpha", "--format", "json")
    assert {json.loads(line)["host"] for line in out.splitlines()} == {"alpha"}


def test_audit_who_of_an_object_on_every_host_and_filtered_by_actor(center: str) -> None:
    """`audit who OBJECT` answers for each host where the name or id is found (a HOST
    column tells them apart); `--filter` works as against a daemon."""
    code, out, err = cli("--store", center, "audit", "who", "web", "--format", "json")
    assert code == 0, err
    docs = [json.loads(line) for line in out.splitlines()]
    assert sorted(d["host"] for d in docs) == sorted(HOSTS)
    assert {d["kind"] for d in docs} == {"container.create"}
    assert all(d["target"].startswith("container-") for d in docs)
    code, out, err = cli("--store", center, "audit", "who", "web", "--host", "bravo",
                         "--format", "json")
    assert code == 0 and [json.loads(line)["host"] for line in out.splitlines()] == ["bravo"]
    code, out, _ = cli("--store", center, "audit", "who", "--filter", "uid=1000", "--format",
                       "json")
    assert len(out.splitlines()) == 6
    code, out, _ = cli("--store", center, "audit", "who", "--filter", "uid=0", "--format",
                       "json")
    assert out.strip() == ""
    code, _, err = cli("--store", center, "audit", "who", "nothing-like-it")
    assert code != 0 and "No such object: nothing-like-it" in err
    code, _, err = cli("--store", center, "audit", "who", "--filter", "color=red")
    assert code != 0 and "invalid filter 'color'" in err and "Traceback" not in err


def test_a_verb_that_is_not_a_fleet_query_is_refused_in_one_line(center: str) -> None:
    code, _, err = cli("--store", center, "ps")
    assert code != 0 and "not a fleet query" in err and "Traceback" not in err
    code, _, err = cli("--store", center, "history", "web", "--host", "nowhere")
    assert code != 0 and "no host 'nowhere'" in err


def test_ps_at_a_time_across_hosts_and_on_one(center: str) -> None:
    # alpha's containers exist from T0, bravo's from T0+1s, charlie's from T0+2s
    at = f"{(T0 + 1_500_000_000) / 1e9:.3f}"
    code, out, err = cli("--store", center, "ps", "-a", "--at", at)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["HOST", "CONTAINER", "ID"]
    assert sorted(line.split()[0] for line in lines[1:]) == ["alpha", "alpha", "bravo", "bravo"]
    code, out, err = cli("--store", center, "ps", "-a", "--at", at, "--host", "alpha",
                         "--format", "{{.Host}} {{.Names}}")
    assert code == 0 and sorted(out.splitlines()) == ["alpha db-alpha", "alpha web"], err


def test_events_follow_prints_what_the_center_commits_next(center: str) -> None:
    """`events --all --follow`: the center's history, then each event as a replicated batch
    commits (woken by the insert trigger's notification), until interrupted."""
    import signal
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--store", center, "events", "--all", "--follow",
         "--host", "alpha"], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=dict(os.environ, PYTHONPATH=str(repo), TZ="UTC"))
    try:
        assert proc.stdout is not None
        history = [proc.stdout.readline() for _ in range(10)]
        assert all(line.startswith("alpha ") for line in history), history
        with EventStore.open(DBS["alpha"]) as store:
            lifecycle(store, "a" * 64, "late", T0 + 10 * 10**9)
        trio.run(replicate, DBS["alpha"], center.replace("shipslog@", "replicator@"), "alpha")
        new = [proc.stdout.readline() for _ in range(5)]
        assert [line.split()[2] for line in new] == ["#11", "#12", "#13", "#14", "#15"], new
        assert "ContainerCreateRequested" in new[1] and "name=late" in new[1]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
