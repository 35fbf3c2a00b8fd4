"""Issue 18, the log for the people who read it: `audit who` names users (from the host's
passwd, at render time), and `--filter actor=|uid=|command=|outcome=` on `events`, `history`
and `audit who` — through the real CLI over a real file log (`--root DIR`), written the way
the daemon writes it (tests/unit/test_history.py's `Log`)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from engine.cli.main import run
from engine.core import containers as cc
from events import vocabulary as v
from events.envelope import Actor, Pending, stream_of
from events.store import EventStore
from projections.engine import EngineProjection
from tests.unit.test_history import CID, OTHER, Log

# Users every Debian host has: the names must come from the host's passwd, not the log.
ROOT = Actor(uid=0, gid=0, pid=11, command=("shipslog", "start", "web"), via="api")
NOBODY = Actor(uid=65534, gid=65534, pid=22, command=("shipslog", "rm", "db"), via="api")


class FileLog(Log):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.store = EventStore.open(str(path), projection=EngineProjection())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    log = FileLog(tmp_path / "events.db")
    log.load_image()
    log.create(CID, "web")
    log.create(OTHER, "db")
    op = log.decide(cc.decide_start(log.state, CID, op_id=log.op()), actor=ROOT)
    log.started(CID, op, pid=100, actor=ROOT)
    op = log.decide(cc.decide_start(log.state, OTHER, op_id=log.op()), actor=NOBODY)
    log.started(OTHER, op, pid=200, actor=NOBODY)
    # nobody starts db, then tries to remove it and fails
    op = log.decide(cc.decide_remove(log.state, OTHER, op_id=log.op(), force=True,
                                      remove_volumes=False),
                    actor=NOBODY)
    log.append([Pending(stream=stream_of("op", op), event=v.OperationFailed(
        op_id=op, step="runtime.delete", error="device or resource busy"))], op, NOBODY)
    log.store.close()
    return tmp_path


def cli(root: Path, *argv: str, code: int = 0) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    got = run(["--root", str(root), *argv], environ={"HOME": str(root)}, stdout=out,
              stderr=err)
    assert got == code, f"{argv} -> {got}: {err.getvalue()}"
    return out.getvalue(), err.getvalue()


def who_rows(root: Path, *flags: str) -> list[dict]:  # type: ignore[type-arg]
    out, _ = cli(root, "audit", "who", "--format", "json", *flags)
    return [json.loads(line) for line in out.splitlines()]


def test_audit_who_shows_user_names_from_the_hosts_passwd(root: Path) -> None:
    out, _ = cli(root, "audit", "who")
    header, *lines = out.splitlines()
    assert header.split()[2:4] == ["USER", "UID"]
    users = {line.split()[3]: line.split()[4] for line in lines}  # USER -> UID
    assert users["root"] == "0" and users["nobody"] == "65534"
    # The name is looked up when shown, never stored: the log holds the uid only.
    raw = (root / "events.db").read_bytes()
    assert b"nobody" not in raw


def test_audit_who_filters_by_name_uid_command_and_outcome(root: Path) -> None:
    by_name = who_rows(root, "--filter", "actor=nobody")
    assert [(r["kind"], r["outcome"], r["user"]) for r in by_name] == [
        ("container.start", "completed", "nobody"), ("container.remove", "failed", "nobody")]
    assert who_rows(root, "--filter", "uid=65534") == by_name
    assert [r["kind"] for r in who_rows(root, "-f", "command=start web")] == ["container.start"]
    failed = who_rows(root, "--filter", "outcome=failed")
    assert [(r["kind"], r["error"]) for r in failed] == [("container.remove",
                                                          "device or resource busy")]
    assert who_rows(root, "-f", "actor=root", "-f", "outcome=failed") == []


def test_history_filters_operations_and_their_events_by_actor(root: Path) -> None:
    out, _ = cli(root, "history", "db", "--format", "json", "--filter", "actor=nobody")
    tl = json.loads(out)
    assert [(o["kind"], o["outcome"]) for o in tl["ops"]] == [
        ("container.start", "completed"), ("container.remove", "failed")]
    assert {e["actor"]["uid"] for e in tl["entries"]} == {65534}
    assert [r["pid"] for r in tl["runs"]] == [200]
    out, _ = cli(root, "history", "db", "--format", "json", "--filter", "outcome=failed")
    assert [o["kind"] for o in json.loads(out)["ops"]] == ["container.remove"]


def test_events_filter_by_actor_name_reads_the_full_stream(root: Path) -> None:
    out, _ = cli(root, "events", "--filter", "actor=nobody", "--format", "json")
    events = [json.loads(line) for line in out.splitlines()]
    assert events and {e["actor"]["uid"] for e in events} == {65534}
    out, _ = cli(root, "events", "--all", "--format", "json", "-f", "outcome=failed")
    types = [json.loads(line)["type"] for line in out.splitlines()]
    assert "OperationFailed" in types and "ContainerStarted" not in types


def test_an_unknown_user_is_one_clear_error(root: Path) -> None:
    _, err = cli(root, "audit", "who", "--filter", "actor=no-such-user-xyz", code=125)
    assert "no such user on this host" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2
    _, err = cli(root, "events", "--filter", "outcome=maybe", code=125)
    assert "invalid filter 'outcome=maybe'" in err


# ------------------------------------------------------------------ loose ends of issue 18


def test_events_until_in_whole_seconds_includes_that_second(tmp_path: Path) -> None:
    """The demo's `events --until $(date +%s)`: an event at .9 of that second is in."""
    log = FileLog(tmp_path / "events.db")
    log.now = 1_700_000_000_900_000_000  # the events land at .901-.907 of the second
    log.load_image()
    log.create(CID, "web")
    log.store.close()
    out, _ = cli(tmp_path, "events", "--since", "1699999999", "--until", "1700000000",
                 "--format", "{{.Type}} {{.Action}}")  # Docker's stream
    assert out.splitlines() == ["image load", "container create"]
    out, _ = cli(tmp_path, "events", "--all", "--since", "1699999999", "--until",
                 "1700000000", "--format", "json")
    assert len(out.splitlines()) == 6
    out, _ = cli(tmp_path, "audit", "who", "--until", "1700000000", "--format", "json")
    assert len(out.splitlines()) == 1


@pytest.mark.parametrize("text", ["10m ago", "2h ago", "10m", "1h30m ago"])
def test_durations_read_with_or_without_ago(text: str) -> None:
    from engine.cli import parse
    from projections.timetravel import parse_point

    bare = text.removesuffix(" ago")
    assert parse.parse_timestamp(text, 100_000.0) == parse.parse_timestamp(bare, 100_000.0)
    assert parse_point(text, 10**15) == parse_point(bare, 10**15)


def test_ps_at_ten_minutes_ago(root: Path) -> None:
    out, err = cli(root, "ps", "-a", "--at", "10m ago")
    assert "Error" not in err


def test_volume_mount_events_name_the_volume_as_docker_does() -> None:
    from engine.api.docker.events import DockerEvents
    from events.envelope import SYSTEM_ACTOR, Envelope

    ev = v.VolumeMounted(name="data", container_id=CID, destination="/srv", read_only=True)
    env = Envelope(seq=1, stream=stream_of("volume", "data"), stream_version=1,
                   schema_version=1, recorded_at=10**18, actor=SYSTEM_ACTOR, op_id="o",
                   event=ev)
    msg = DockerEvents(lambda: EngineProjection().initial()).convert(env)
    assert msg is not None and (msg.Type, msg.Action, msg.Actor.ID) == ("volume", "mount",
                                                                       "data")
    assert msg.Actor.Attributes == {"container": CID, "destination": "/srv", "driver": "local",
                                    "propagation": "", "read/write": "false"}


def test_a_tagged_build_is_a_tag_event_per_name_and_a_step_image_none() -> None:
    # moby's classic builder tags its result through TagImage: one `tag` event per -t
    from engine.api.docker.events import DockerEvents
    from events.envelope import SYSTEM_ACTOR, Envelope
    from events.values import ImageConfig

    iid = "sha256:" + "b" * 64

    def built(tags: tuple[str, ...]) -> Envelope:
        ev = v.ImageBuilt(op_id="o", image_id=iid, repo_tags=tags, layers=(),
                          config=ImageConfig())
        return Envelope(seq=1, stream=stream_of("image", iid), stream_version=1,
                        schema_version=1, recorded_at=10**18, actor=SYSTEM_ACTOR, op_id="o",
                        event=ev)

    conv = DockerEvents(lambda: EngineProjection().initial())
    msgs = conv.convert_all(built(("shop-web:latest", "shop-web:1")))
    assert [(m.Type, m.Action, m.Actor.ID, m.Actor.Attributes) for m in msgs] == [
        ("image", "tag", iid, {"name": "shop-web:latest"}),
        ("image", "tag", iid, {"name": "shop-web:1"})]
    assert conv.convert_all(built(())) == []


@pytest.mark.parametrize("verb", ["run", "create"])
def test_run_help_describes_every_option(verb: str) -> None:
    from engine.cli.main import build_parser, verb_hint

    argv = [verb, "busybox"]
    parser = build_parser(verb_hint(argv))
    sub = next(a for a in parser._actions if a.choices and verb in a.choices)  # noqa: SLF001
    undescribed = [a.option_strings or [a.dest] for a in sub.choices[verb]._actions  # noqa: SLF001
                   if not a.help]
    assert undescribed == []
    text = sub.choices[verb].format_help()
    assert "Run container in background and print container ID" in text or verb == "create"
    assert "Username or UID (format: <name|uid>[:<group|gid>])" in text


def test_readme_says_how_to_put_the_commands_on_path() -> None:
    """`shipslog` is not on PATH after the demo: the README names where setup puts it."""
    import tomllib

    repo = Path(__file__).resolve().parents[2]
    scripts = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["scripts"]
    readme = (repo / "README.md").read_text()
    assert 'export PATH="$PWD/.venv/bin:$PATH"' in readme
    for name in scripts:
        assert f'"$PWD/.venv/bin/{name}"' in readme


# ------------------------------------------------------------------ state diff A B


@pytest.fixture
def diff_root(tmp_path: Path) -> tuple[Path, int]:
    """web created (seq A), then started, exited 3, and db created: A -> head."""
    log = FileLog(tmp_path / "events.db")
    log.load_image()
    log.create(CID, "web")
    a = log.store.head()
    op = log.decide(cc.decide_start(log.state, CID, op_id=log.op()), actor=ROOT)
    log.started(CID, op, pid=100, actor=ROOT)
    log.append([Pending(stream=stream_of("container", CID), event=v.ContainerExited(
        container_id=CID, exit_code=3))], "exit-" + CID[:12], ROOT, after_ms=2000)
    log.create(OTHER, "db")
    log.store.close()
    return tmp_path, a


def test_state_diff_is_a_table_of_appeared_vanished_and_changed_fields(
        diff_root: tuple[Path, int]) -> None:
    root, a = diff_root
    out, _ = cli(root, "state", "diff", f"seq:{a}")
    title, header, *rows = out.splitlines()
    assert title.startswith(f"from seq {a} (") and title.endswith("1 appeared, 1 changed")
    assert header.split() == ["CHANGE", "KIND", "NAME", "ID", "FIELD", "OLD", "NEW"]
    cells = [r.split() for r in rows]
    assert ["appeared", "container", "db", OTHER[:12]] in cells
    at = cells.index(next(c for c in cells if c[0] == "changed"))
    changed = [c for c in cells[at:] if c[0] not in ("appeared", "vanished")]
    assert changed[0][:4] == ["changed", "container", "web", CID[:12]]
    fields = {r[4] if r[0] == "changed" else r[0]: r[-2:] for r in changed}
    assert fields["status"] == ["created", "exited"]
    assert fields["exit_code"] == ["0", "3"]
    # Times as times, never raw nanoseconds.
    assert "started_at" in fields and not any(len(c) > 15 and c.isdigit()
                                             for r in changed for c in r)
    assert "stream_version" not in fields and "last_seq" not in fields


def test_state_diff_json_is_field_level(diff_root: tuple[Path, int]) -> None:
    root, a = diff_root
    out, _ = cli(root, "state", "diff", f"seq:{a}", "--format", "json")
    answer = json.loads(out)
    web = next(c for c in answer["changes"] if c["name"] == "web")
    by_field = {f["field"]: (f["old"], f["new"]) for f in web["fields"]}
    assert by_field["status"] == ("created", "exited") or by_field["status"] == [
        "created", "exited"]
    assert by_field["exit_code"] in ((0, 3), [0, 3])
    assert answer["a"] == a and answer["a_time_ns"] > 0


def test_leaves_flatten_nested_objects_and_equal_length_lists() -> None:
    from projections.statediff import leaves

    fields = {"config": ({"env": ["A=1", "B=2"], "labels": {"x": "1"}},
                         {"env": ["A=1", "B=3"], "labels": {"x": "1", "y": "2"}}),
              "ports": ([], [{"host_port": 80}])}
    assert leaves(fields) == [("config.env.1", "B=2", "B=3"), ("config.labels.y", None, "2"),
                              ("ports", [], [{"host_port": 80}])]


# ------------------------------------------------------------------ history --changes

NET = "e2" * 32


def test_history_changes_lists_the_configuration_over_time(tmp_path: Path) -> None:
    from events.values import RestartPolicy

    log = FileLog(tmp_path / "events.db")
    log.load_image()
    log.append([Pending(stream=stream_of("network", NET), event=v.NetworkCreated(
        network_id=NET, name="backend", subnet="10.9.0.0/24", gateway="10.9.0.1"))], log.op())
    log.create(CID, "web")
    c = stream_of("container", CID)
    log.append([Pending(stream=c, event=v.ContainerUpdated(
        container_id=CID, memory=64 << 20, restart_policy=RestartPolicy(name="always")))],
        log.op(), ROOT)
    log.append([Pending(stream=c, event=v.ContainerRenamed(
        container_id=CID, old_name="web", new_name="front"))], log.op(), ROOT)
    log.append([Pending(stream=stream_of("network", NET), event=v.NetworkConnected(
        network_id=NET, container_id=CID, ip="10.9.0.2", mac="02:42:0a:09:00:02"))],
        log.op(), ROOT)
    log.append([Pending(stream=c, event=v.ContainerHealthChanged(
        container_id=CID, status="unhealthy", failing_streak=3, exit_code=1))],
        log.op(), NOBODY)
    log.append([Pending(stream=stream_of("network", NET), event=v.NetworkDisconnected(
        network_id=NET, container_id=CID))], log.op(), ROOT)
    log.store.close()

    out, _ = cli(tmp_path, "history", CID[:12], "--changes", "--format", "json")
    answer = json.loads(out)
    assert answer["name"] == "front"
    got = [(ch["what"], [tuple(f) for f in ch["fields"]]) for ch in answer["changes"]]
    created, *rest = got
    assert created[0] == "created" and ("name", None, "web") in created[1]
    assert ("config.image", None, "busybox") in created[1]
    assert rest == [
        ("updated", [("config.memory", 0, 64 << 20),
                     ("config.restart_policy.name", "no", "always")]),
        ("renamed", [("name", "web", "front")]),
        ("network connected", [("networks.backend", None, "10.9.0.2")]),
        ("health", [("health", None, "unhealthy")]),
        ("network disconnected", [("networks.backend", "connected", None)]),
    ]
    out, _ = cli(tmp_path, "history", CID[:12], "--changes")
    assert "renamed" in out and "web" in out and "front" in out
    assert "networks.backend" in out and "unhealthy" in out


# ------------------------------------------------------------------ audit export

CANARY = "canary-XYZ-7781"
# A caller's command line as a log from before issue 15 recorded it: the value verbatim.
LEAKY = Actor(uid=0, gid=0, pid=33, via="api",
              command=("shipslog", "run", "-e", f"DB_PASSWORD={CANARY}", "busybox"))


@pytest.fixture
def export_root(root: Path) -> Path:
    log = FileLog(root / "events.db")
    log.store = EventStore.open(str(root / "events.db"), projection=EngineProjection())
    log.now = 1_700_000_100_000_000_000
    log.create("e3" * 32, "leaky")
    op = log.decide(cc.decide_start(log.state, "e3" * 32, op_id="op-leaky"), actor=LEAKY)
    log.started("e3" * 32, op, pid=300, actor=LEAKY)
    log.append([Pending(stream=stream_of("container", "e3" * 32), event=v.ContainerExited(
        container_id="e3" * 32, exit_code=2))], "exit-e3e3", LEAKY, after_ms=50)
    log.store.close()
    return root


def test_export_sqlite_is_flat_documented_searchable_and_secret_free(
        export_root: Path, tmp_path: Path) -> None:
    import sqlite_utils

    out = tmp_path / "audit.db"
    _, err = cli(export_root, "audit", "export", "--sqlite", str(out))
    assert "exported" in err
    assert CANARY.encode() not in out.read_bytes()
    db = sqlite_utils.Database(out)
    head = max(r["seq"] for r in db.query("select seq from events"))
    assert db["events"].count == head  # one row per event
    # The envelope, actor, object and outcome as columns; the payload's fields too.
    cols = set(db["events"].columns_dict)
    assert {"seq", "time", "type", "object_kind", "object_id", "op_id", "operation", "outcome",
            "actor_uid", "actor_command", "message", "hash", "exit_code", "pid"} <= cols
    failed = list(db.query("select e.operation, e.outcome, o.error from events e join "
                           "operations o using (op_id) where e.type = 'OperationFailed'"))
    assert failed == [{"operation": "container.remove", "outcome": "failed",
                       "error": "device or resource busy"}]
    assert {r["name"] for r in db.query("select name from sqlite_master where type='view'")} \
        >= {"container_events", "image_events", "volume_events", "network_events",
            "failed_operations"}
    exits = list(db.query("select object_id, exit_code from container_events "
                          "where type = 'ContainerExited'"))
    assert exits == [{"object_id": "e3" * 32, "exit_code": 2}]
    # Full-text search over commands and messages (what `sqlite-utils search` runs).
    hits = list(db["events"].search("DB_PASSWORD"))
    assert hits and all("<redacted>" in h["actor_command"] for h in hits)
    assert [h["seq"] for h in db["events"].search("exited")]
    assert list(db["operations"].search("busy"))
    meanings = {(r["table_name"], r["column_name"]) for r in db["columns"].rows}
    assert ("events", "actor_command") in meanings and ("operations", "outcome") in meanings
    # The rows tell the same story as `audit who`.
    who = who_rows(export_root)
    ops = list(db.query("select op_id, kind, outcome from operations order by requested_seq"))
    assert [(o["kind"], o["outcome"]) for o in ops] == [(r["kind"], r["outcome"]) for r in who]


def test_export_refuses_to_overwrite_and_needs_one_format(export_root: Path,
                                                         tmp_path: Path) -> None:
    (tmp_path / "there.db").write_text("keep me")
    _, err = cli(export_root, "audit", "export", "--sqlite", str(tmp_path / "there.db"),
                 code=125)
    assert "already exists" in err and (tmp_path / "there.db").read_text() == "keep me"
    _, err = cli(export_root, "audit", "export", code=125)
    assert "--sqlite FILE or --format ocsf" in err


# OCSF 1.1.0, the attributes marked "required" (schema.ocsf.io; ocsf-schema
# events/base_event.json + dictionary traits, events/application/api_activity.json,
# events/system/system.json + process_activity.json, objects/metadata.json, product.json,
# api.json, device.json):
OCSF_BASE = {"activity_id", "category_uid", "class_uid", "metadata", "severity_id", "time",
             "type_uid"}
OCSF_METADATA = {"product", "version"}
OCSF_PRODUCT = {"vendor_name"}
OCSF_API_ACTIVITY = {"actor", "api", "src_endpoint"}  # class 6003, category 6
OCSF_API = {"operation"}
OCSF_PROCESS_ACTIVITY = {"actor", "device", "process"}  # class 1007, category 1
OCSF_DEVICE = {"type_id"}


def test_export_ocsf_records_carry_the_required_fields(export_root: Path) -> None:
    out, _ = cli(export_root, "audit", "export", "--format", "ocsf")
    assert CANARY not in out
    recs = [json.loads(line) for line in out.splitlines()]
    assert recs
    for r in recs:
        assert OCSF_BASE <= set(r), r
        assert OCSF_METADATA <= set(r["metadata"]) and OCSF_PRODUCT <= set(
            r["metadata"]["product"])
        assert r["type_uid"] == r["class_uid"] * 100 + r["activity_id"]
        assert isinstance(r["time"], int) and r["severity_id"] in range(7)
        if r["class_uid"] == 6003:
            assert r["category_uid"] == 6 and OCSF_API_ACTIVITY <= set(r), r
            assert OCSF_API <= set(r["api"]) and r["activity_id"] in (1, 2, 3, 4, 99)
        else:
            assert (r["class_uid"], r["category_uid"]) == (1007, 1)
            assert OCSF_PROCESS_ACTIVITY <= set(r) and OCSF_DEVICE <= set(r["device"]), r
            assert r["activity_id"] in (1, 2)
        assert r["unmapped"]["hash"]  # the receiver can check the chain
    api = [r for r in recs if r["class_uid"] == 6003]
    failed = [r for r in api if r["status_id"] == 2]
    assert [(r["api"]["operation"], r["status_detail"]) for r in failed] == [
        ("container.remove", "device or resource busy")]
    assert {r["actor"]["user"].get("name") for r in api} >= {"root", "nobody"}
    ends = [(r["process"]["name"], r["exit_code"]) for r in recs
            if r["class_uid"] == 1007 and r["activity_id"] == 2]
    assert ends == [("leaky", 2)]


# ------------------------------------------------------------------ events --to syslog


def test_events_to_syslog_send_each_event_with_its_hash(root: Path, tmp_path: Path) -> None:
    import re
    import socket
    import threading

    path = tmp_path / "log.sock"
    msgs: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(10)  # a bound on a lost datagram, not a timing assertion

        def receive() -> None:  # as a syslog daemon does: a unix datagram queue holds ~10
            with contextlib.suppress(OSError):
                while not msgs or msgs[-1] != "":
                    msgs.append(server.recv(65536).decode())

        reader = threading.Thread(target=receive)
        reader.start()
        try:
            _, err = cli(root, "events", "--to", "syslog", "--syslog-address", f"unix://{path}")
        finally:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as end:
                end.sendto(b"", str(path))
            reader.join()
        sent = int(err.split()[1])
        msgs = msgs[:-1]
    out, _ = cli(root, "events", "--all", "--format", "json")
    events = [json.loads(line) for line in out.splitlines()]
    assert sent == len(events) > 0
    sd = re.compile(r'^<(\d+)>1 (\S+) \S+ shipslog \d+ (\w+) \[shipslog@32473 seq="(\d+)" '
                    r'hash="([0-9a-f]+)" prev="([0-9a-f]*)" ')
    prev = ""
    for msg, event in zip(msgs, events, strict=True):
        m = sd.match(msg)
        assert m, msg
        pri, time_, type_, seq, hash_, before = m.groups()
        assert (int(seq), hash_, type_, time_) == (event["seq"], event["hash"], event["type"],
                                                   event["time"])
        assert before == prev  # each message names the hash before it: the chain, checkable
        assert int(pri) == 3 * 8 + (4 if type_ == "OperationFailed" else 6)
        prev = hash_


def test_events_to_syslog_unreachable_is_one_clear_error(root: Path, tmp_path: Path) -> None:
    _, err = cli(root, "events", "--to", "syslog", "--syslog-address",
                 f"unix://{tmp_path}/nobody-listens", code=125)
    assert err.startswith("shipslog: cannot reach syslog at unix://") and "Traceback" not in err


def test_state_diff_shows_a_default_it_changed_from(tmp_path: Path) -> None:
    """`update --restart always`: the old value is Docker's default `no`, not a dash."""
    from events.values import RestartPolicy

    log = FileLog(tmp_path / "events.db")
    log.load_image()
    log.create(CID, "web")
    a = log.store.head()
    log.append([Pending(stream=stream_of("container", CID), event=v.ContainerUpdated(
        container_id=CID, restart_policy=RestartPolicy(name="always")))], log.op(), ROOT)
    log.store.close()
    out, _ = cli(tmp_path, "state", "diff", f"seq:{a}")
    rows = [line.split() for line in out.splitlines()[2:]]
    assert ["config.restart_policy.name", "no", "always"] in [r[-3:] for r in rows]
