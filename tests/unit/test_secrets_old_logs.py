"""Logs written before issue 15 hold callers' secrets in their actors' command lines. They stay
as they are (the chain must still verify: nothing is rewritten), and every answer that shows
them hides the values on the way out: `events`, `history` and `audit who` JSON, and a `debug
export` bundle, which `debug load` still accepts, saying why its hashes changed."""

from __future__ import annotations

import io
import json
from pathlib import Path

from engine.cli.main import run
from events import vocabulary as v
from events.envelope import Actor, Pending
from events.store import EventStore
from projections.engine import EngineProjection

CANARY = "canary-0ld-l3ak"
LEAKY = Actor(uid=0, gid=0, pid=42, via="api", command=(
    "docker", "run", "-e", f"DB_PASSWORD={CANARY}", "-v", "data:/d", "busybox"))
LATER = Actor(uid=0, gid=0, pid=43, via="api", command=("docker", "volume", "ls"))


def old_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    store: EventStore = EventStore.open(str(root / "events.db"), projection=EngineProjection())
    with store:
        store.append([Pending(stream="op-0", event=v.OperationRequested(
                          op_id="0", kind="volume.create", target="volume-first")),
                      Pending(stream="volume-first", event=v.VolumeCreated(name="first"))],
                     actor=LATER, op_id="0", now_ns=500)
        store.append([Pending(stream="op-1", event=v.OperationRequested(
                          op_id="1", kind="volume.create", target="volume-data")),
                      Pending(stream="volume-data", event=v.VolumeCreated(name="data"))],
                     actor=LEAKY, op_id="1", now_ns=1_000)
        store.append([Pending(stream="op-1", event=v.OperationCompleted(op_id="1"))],
                     actor=LEAKY, op_id="1", now_ns=2_000)
        store.append([Pending(stream="op-2", event=v.OperationRequested(
                          op_id="2", kind="volume.create", target="volume-more")),
                      Pending(stream="volume-more", event=v.VolumeCreated(name="more"))],
                     actor=LATER, op_id="2", now_ns=3_000)
    return root


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), environ={"HOME": "/nonexistent"}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_old_leaks_are_hidden_on_the_way_out_and_the_chain_still_verifies(
        tmp_path: Path) -> None:
    root = str(old_root(tmp_path))
    assert CANARY.encode() in (Path(root) / "events.db").read_bytes()  # the old leak is there
    code, out, err = cli("--root", root, "audit", "verify")
    assert code == 0 and "chain ok" in out, err
    answers = {}
    for name, argv in {"events": ["events", "--all", "--since", "seq:1", "--until", "seq:7",
                                  "--format", "json"],
                       "history": ["history", "data", "--format", "json"],
                       "audit who": ["audit", "who", "--format", "json"]}.items():
        code, out, err = cli("--root", root, *argv)
        assert code == 0, err
        answers[name] = out
    assert all("DB_PASSWORD=<redacted>" in text for text in answers.values()), answers
    assert not [name for name, text in answers.items() if CANARY in text]
    assert "volume" in json.dumps(answers["audit who"])  # the rest is still told

    bundle = tmp_path / "bundle.jsonl"
    code, _, err = cli("--root", root, "debug", "export", str(bundle))
    assert code == 0, err
    assert CANARY not in bundle.read_text()
    code, out, err = cli("debug", "load", str(bundle), str(tmp_path / "copy"))
    assert code == 0, err
    assert "event 3 was recorded with a secret in its command line" in err
    assert "the same hash chain up to event 2" in out


def test_a_bundle_altered_after_a_hidden_value_is_still_refused(tmp_path: Path) -> None:
    """The events after a hidden one are checked against the bundle's own chain."""
    root = str(old_root(tmp_path))
    bundle = tmp_path / "bundle.jsonl"
    assert cli("--root", root, "debug", "export", str(bundle))[0] == 0
    lines = bundle.read_text().splitlines()
    lines[-1] = lines[-1].replace('"volume","ls"', '"volume","rm"')
    bundle.write_text("\n".join(lines) + "\n")
    code, _, err = cli("debug", "load", str(bundle), str(tmp_path / "copy"))
    assert code == 1 and "event 7 hashes differently" in err, err
