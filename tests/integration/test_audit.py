"""`shipslog audit`: tampering with any single event — its payload, an envelope field, the order,
a deletion — on a copy of a real event log with the append-only triggers dropped makes
`audit verify` fail (exit 1) naming that event; a chain rewritten consistently passes the
chain check but is caught by a signed checkpoint; a follower of the full event stream started
during heavy appends, through the real HTTP server and the CLI, sees every event exactly once.

The logs here are written by the real store and read by the real CLI (`--root`, in-process);
no kernel is needed, so these tests run everywhere.
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from engine.api.routes.shipslog import FrozenEngine, shipslog_routes
from engine.api.server.http import App, serve_unix
from engine.cli.main import run
from events import sqlite_backend as store_module
from events import vocabulary as v
from events.envelope import Actor, Pending, stream_of
from events.hashing import GENESIS_HASH, chain_hash
from events.store import EventStore
from events.writer import open_store_writer
from projections.engine import EngineProjection

ACTOR = Actor(uid=1000, gid=1000, pid=99, command=("shipslog", "run"))
T0 = 1_700_000_000_000_000_000
EVENTS = 40


def cli(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), environ=env or {}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def make_log(root: Path, events: int = EVENTS) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with EventStore.open(root / "events.db", projection=EngineProjection()) as store:
        for i in range(events):
            cid = f"{i % 5:02x}" * 32
            store.append([Pending(stream=stream_of("container", cid), event=v.ContainerExited(
                container_id=cid, exit_code=i))], actor=ACTOR, op_id=f"op{i}",
                now_ns=T0 + i * 1_000_000)


def tampered(root: Path, tmp: Path, sql: list[tuple[str, tuple[Any, ...]]]) -> Path:
    """A copy of the state root whose log had `sql` run on it with the triggers dropped."""
    copy = tmp / "copy"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(root, copy)
    conn = sqlite3.connect(copy / "events.db", isolation_level=None)
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("DROP TRIGGER events_no_delete")
    for statement, params in sql:
        conn.execute(statement, params)
    conn.close()
    return copy


@pytest.fixture(scope="module")
def log_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("audit") / "root"
    make_log(root)
    return root


def test_an_untouched_log_verifies(log_root: Path) -> None:
    code, out, err = cli("--root", str(log_root), "audit", "verify")
    assert code == 0, err
    assert out.startswith(f"chain ok: {EVENTS} events verified, head {EVENTS}")


POSITIONS = [1, 2, EVENTS // 2, EVENTS - 1, EVENTS]


@pytest.mark.parametrize("seq", POSITIONS)
@pytest.mark.parametrize("how", ["payload", "actor", "op_id", "recorded_at", "type"])
def test_altering_any_field_of_any_event_is_named(log_root: Path, tmp_path: Path, seq: int,
                                                  how: str) -> None:
    change = {
        "payload": ("UPDATE events SET payload=? WHERE seq=?",
                    (b'{"container_id":"' + b"00" * 32 + b'","exit_code":0}',)),
        "actor": ("UPDATE events SET actor=? WHERE seq=?",
                  (b'{"uid":0,"gid":0,"pid":1,"via":"daemon"}',)),
        "op_id": ("UPDATE events SET op_id=? WHERE seq=?", ("forged",)),
        "recorded_at": ("UPDATE events SET recorded_at=recorded_at+? WHERE seq=?", (1,)),
        "type": ("UPDATE events SET type=? WHERE seq=?", ("ContainerLost",)),
    }[how]
    copy = tampered(log_root, tmp_path, [(change[0], (*change[1], seq))])
    code, out, err = cli("--root", str(copy), "audit", "verify")
    assert code == 1, out + err
    assert err.startswith(f"shipslog: audit failed: event {seq}: event {seq} does not match "
                          "its hash"), err
    assert "hint: " in err and "Traceback" not in err


@pytest.mark.parametrize("seq", POSITIONS[:-1])
def test_swapping_two_events_is_named(log_root: Path, tmp_path: Path, seq: int) -> None:
    swap = [  # every column moves with its row: only the order changes
        ("UPDATE events SET seq=-1 WHERE seq=?", (seq,)),
        ("UPDATE events SET seq=? WHERE seq=?", (seq, seq + 1)),
        ("UPDATE events SET seq=? WHERE seq=-1", (seq + 1,)),
    ]
    copy = tampered(log_root, tmp_path, swap)
    code, _, err = cli("--root", str(copy), "audit", "verify")
    assert code == 1
    assert f"audit failed: event {seq}: event {seq} does not match its hash" in err


@pytest.mark.parametrize("seq", POSITIONS[:-1])
def test_deleting_an_event_is_named(log_root: Path, tmp_path: Path, seq: int) -> None:
    copy = tampered(log_root, tmp_path, [("DELETE FROM events WHERE seq=?", (seq,))])
    code, _, err = cli("--root", str(copy), "audit", "verify")
    assert code == 1
    assert f"audit failed: event {seq}: event {seq} is missing" in err


def rewrite_chain_from(db: Path, seq: int) -> None:
    """What an attacker with write access does: change an event and recompute every hash
    after it, so the chain is consistent again."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DROP TRIGGER IF EXISTS events_no_update")
    conn.execute("UPDATE events SET payload=? WHERE seq=?",
                 (b'{"container_id":"' + b"00" * 32 + b'","exit_code":0}', seq))
    rows = conn.execute(f"SELECT seq, {store_module._CANONICAL_SQL} FROM events ORDER BY seq")
    prev = GENESIS_HASH
    for row_seq, canonical in rows.fetchall():
        prev = chain_hash(prev, canonical)
        conn.execute("UPDATE events SET hash=? WHERE seq=?", (prev, row_seq))
    conn.close()


@pytest.mark.parametrize("seq", [1, EVENTS // 2, EVENTS])
def test_a_rewritten_chain_passes_the_chain_check_but_not_the_checkpoint(
        log_root: Path, tmp_path: Path, seq: int) -> None:
    env = {"HOME": str(tmp_path / "home")}
    checkpoint = tmp_path / "head.checkpoint"
    code, _, err = cli("--root", str(log_root), "audit", "checkpoint", "-o", str(checkpoint),
                       env=env)
    assert code == 0, err
    assert "created checkpoint key" in err and f"checkpoint of event {EVENTS}" in err
    key = tmp_path / "home" / ".config" / "shipslog" / "checkpoint.key"
    assert key.stat().st_mode & 0o777 == 0o600
    saved = json.loads(checkpoint.read_text())
    assert saved["seq"] == EVENTS and saved["signature"]

    code, out, err = cli("--root", str(log_root), "audit", "verify", "--checkpoint",
                         str(checkpoint), env=env)
    assert code == 0, err
    assert f"checkpoint ok: event {EVENTS} still has hash" in out

    copy = tampered(log_root, tmp_path, [])
    rewrite_chain_from(copy / "events.db", seq)
    code, out, err = cli("--root", str(copy), "audit", "verify")
    assert code == 0 and "chain ok" in out  # the chain alone cannot tell
    code, out, err = cli("--root", str(copy), "audit", "verify", "--checkpoint",
                         str(checkpoint), env=env)
    assert code == 1
    assert "checkpoint" in err and ("was rewritten" in err), err


def test_a_truncated_log_and_a_forged_checkpoint_are_caught(log_root: Path,
                                                            tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path / "home")}
    checkpoint = tmp_path / "head.checkpoint"
    assert cli("--root", str(log_root), "audit", "checkpoint", "-o", str(checkpoint),
               env=env)[0] == 0
    # Dropping the last event leaves a valid chain: only the checkpoint notices.
    copy = tampered(log_root, tmp_path, [("DELETE FROM events WHERE seq=?", (EVENTS,))])
    assert cli("--root", str(copy), "audit", "verify")[0] == 0
    code, _, err = cli("--root", str(copy), "audit", "verify", "--checkpoint", str(checkpoint),
                       env=env)
    assert code == 1 and "truncated" in err
    # A checkpoint re-signed with another key does not verify under the operator's key.
    other = {"HOME": str(tmp_path / "attacker")}
    forged = tmp_path / "forged.checkpoint"
    assert cli("--root", str(copy), "audit", "checkpoint", "-o", str(forged), env=other)[0] == 0
    code, _, err = cli("--root", str(copy), "audit", "verify", "--checkpoint", str(forged),
                       env=env)
    assert code == 1 and "not by the trusted key" in err
    # Editing the checkpoint file breaks its signature.
    data = json.loads(checkpoint.read_text())
    data["seq"] = EVENTS - 1
    checkpoint.write_text(json.dumps(data))
    code, _, err = cli("--root", str(log_root), "audit", "verify", "--checkpoint",
                       str(checkpoint), env=env)
    assert code == 1 and "signature does not verify" in err


def test_the_full_stream_carries_the_envelope(log_root: Path) -> None:
    code, out, err = cli("--root", str(log_root), "events", "--all", "--format", "json",
                         "--since", "seq:39")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [e["seq"] for e in lines] == [39, 40]
    assert lines[0]["actor"] == {"uid": 1000, "gid": 1000, "pid": 99,
                                 "command": ["shipslog", "run"], "via": "api", "loginuid": None}
    assert lines[0]["op_id"] == "op38" and len(lines[0]["hash"]) == 64


# ----------------------------------------------------------------- follow during heavy appends


async def test_a_follow_started_during_heavy_appends_sees_every_event_once(
        tmp_path: Path) -> None:
    total = 3000
    store: EventStore = EventStore.open(tmp_path / "events.db", projection=EngineProjection())
    sock = str(tmp_path / "api.sock")
    appended = trio.Event()
    half = trio.Event()
    try:
        async with open_store_writer(store) as writer, trio.open_nursery() as nursery:
            ctx = _Ctx(store, writer)
            await nursery.start(lambda task_status: serve_unix(
                sock, App(shipslog_routes(ctx)), group=None, task_status=task_status))

            async def append_many() -> None:
                n = 0
                while n < total:
                    size = 1 + n % 7
                    batch = [Pending(stream=stream_of("container", f"{(n + k) % 9:02x}" * 32),
                                     event=v.ContainerExited(container_id=f"{(n + k) % 9:02x}"
                                                             * 32, exit_code=n + k))
                             for k in range(min(size, total - n))]
                    await writer.append(batch, actor=ACTOR, op_id=f"op{n}",
                                        now_ns=time.time_ns())
                    n += len(batch)
                    if n >= total // 3:
                        half.set()
                    await trio.sleep(0)
                appended.set()

            def follow_api() -> list[int]:
                from engine.cli.client import Client

                seen: list[int] = []
                client = Client("unix://" + sock)
                with client.stream_json("GET", "/shipslog/events",
                                        {"since": "seq:1", "follow": True}) as events:
                    for e in events:
                        seen.append(e["seq"])
                        if e["seq"] >= total:
                            return seen
                return seen

            def follow_cli() -> list[int]:
                code, out, err = cli("events", "--all", "--follow", "--format", "json",
                                     "--since", "seq:1", "--limit", str(total),
                                     env={"SHIPSLOG_HOST": "unix://" + sock})
                assert code == 0, err
                return [json.loads(line)["seq"] for line in out.splitlines()]

            nursery.start_soon(append_many)
            await half.wait()  # the followers start while the appends are in full flow
            results: dict[str, list[int]] = {}

            async def collect(name: str, fn: Any) -> None:
                results[name] = await trio.to_thread.run_sync(fn)

            async with trio.open_nursery() as followers:
                followers.start_soon(collect, "api", follow_api)
                followers.start_soon(collect, "cli", follow_cli)
            await appended.wait()
            nursery.cancel_scope.cancel()
    finally:
        store.close()
    for name, seqs in results.items():
        assert seqs == list(range(1, total + 1)), name


class _Ctx:
    def __init__(self, store: EventStore, writer: Any) -> None:
        self.store = store
        self.writer = writer
        self.paths = None
        self.engine_id = ""

    @property
    def engine(self) -> FrozenEngine:
        return FrozenEngine(self.store.state)

    def clock(self) -> int:
        return time.time_ns()


def test_a_debug_bundle_loads_elsewhere_as_the_same_chain(log_root: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.jsonl"
    code, _, err = cli("--root", str(log_root), "debug", "export", "--to", "30", str(bundle))
    assert code == 0 and "exported events 1..30 (30 events)" in err, err
    code, out, err = cli("debug", "load", str(bundle), str(tmp_path / "elsewhere"))
    assert code == 0 and "the same hash chain" in out, err
    code, out, _ = cli("--root", str(tmp_path / "elsewhere"), "audit", "verify")
    assert code == 0 and "30 events verified" in out
    # An edited bundle does not load as the same chain, and says where it differs.
    lines = bundle.read_text().splitlines()
    event = json.loads(lines[12])
    event["event"]["exit_code"] = 99
    lines[12] = json.dumps(event)
    bundle.write_text("\n".join(lines) + "\n")
    code, _, err = cli("debug", "load", str(bundle), str(tmp_path / "other"))
    assert code == 1 and f"event {event['seq']} hashes differently" in err


def test_a_bundle_with_a_gap_is_refused_as_compacted(log_root: Path, tmp_path: Path) -> None:
    # A compacted log exports its live events only; a load must replay from seq 1 unbroken.
    bundle = tmp_path / "bundle.jsonl"
    code, _, err = cli("--root", str(log_root), "debug", "export", "--to", "10", str(bundle))
    assert code == 0, err
    lines = bundle.read_text().splitlines()
    del lines[4]  # the header is line 0: this drops event 4
    bundle.write_text("\n".join(lines) + "\n")
    code, _, err = cli("debug", "load", str(bundle), str(tmp_path / "gap"))
    assert code != 0 and "has no event 4: it was exported from a compacted log" in err, err
    assert "hint:" in err and "Traceback" not in err
