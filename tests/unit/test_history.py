"""The timeline of one object (projections/history.py), the object reads behind it
(engine/shell/logobjects.py: resolve, object_events, event filters), `audit who`, and
replay's rebuild comparison and decision re-runs — over a real in-memory event store whose
log was written the way the daemon writes it (decide_* for commands, the supervisor's
outcome events)."""

from __future__ import annotations

import msgspec
import pytest

from engine.core import containers as cc
from engine.core.errors import NotFound
from engine.shell import replay
from engine.shell.logobjects import event_filter, object_events, resolve
from events import vocabulary as v
from events.envelope import SYSTEM_ACTOR, Actor, Pending, stream_of
from events.store import EventStore
from events.values import ContainerConfig, ImageConfig, RestartPolicy
from projections import history as hist
from projections.engine import EngineProjection

USER = Actor(uid=1000, gid=1000, pid=4242, command=("shipslog", "run", "web"), via="api")
IMAGE = "sha256:" + "ab" * 32
CID = "c0" * 32
OTHER = "d1" * 32
T0 = 1_700_000_000_000_000_000
MS = 1_000_000


class Log:
    """Writes a log as the engine does: decisions through decide_*, outcomes as the
    supervisor appends them, with a clock the test moves."""

    def __init__(self) -> None:
        self.store: EventStore = EventStore.open(":memory:", projection=EngineProjection())
        self.now = T0
        self.ops = 0

    def op(self) -> str:
        self.ops += 1
        return f"op{self.ops:04d}"

    def append(self, pending: list[Pending] | tuple[Pending, ...], op_id: str,
               actor: Actor = USER, after_ms: int = 1) -> None:
        self.now += after_ms * MS
        self.store.append(pending, actor=actor, op_id=op_id, now_ns=self.now)

    def decide(self, decision, actor: Actor = USER, after_ms: int = 1) -> str:  # type: ignore[no-untyped-def]
        self.append(decision.pending, decision.op_id, actor, after_ms)
        return decision.op_id

    @property
    def state(self):  # type: ignore[no-untyped-def]
        return self.store.state

    def load_image(self) -> None:
        op = self.op()
        self.append([Pending(stream=stream_of("image", IMAGE), event=v.ImageLoaded(
            image_id=IMAGE, repo_tags=("busybox:latest",), layers=(), config=ImageConfig()))],
            op)

    def create(self, cid: str, name: str, restart: str = "no") -> None:
        config = ContainerConfig(image="busybox", image_id="", cmd=("sh",),
                                 restart_policy=RestartPolicy(name=restart))
        op = self.decide(cc.decide_create(self.state, cc.CreateContainer(name=name,
                                                                          config=config),
                                          op_id=self.op(), container_id=cid))
        self.append([Pending(stream=stream_of("container", cid),
                             event=v.ContainerCreated(container_id=cid)),
                     Pending(stream=stream_of("op", op), event=v.OperationCompleted(op_id=op))],
                    op, after_ms=5)

    def start(self, cid: str, pid: int, took_ms: int = 40) -> str:
        op = self.decide(cc.decide_start(self.state, cid, op_id=self.op()))
        self.started(cid, op, pid, took_ms)
        return op

    def started(self, cid: str, op: str, pid: int, took_ms: int = 40,
                actor: Actor = USER) -> None:
        self.append([Pending(stream=stream_of("op", op),
                             event=v.OperationStepDone(op_id=op, step="runtime.create")),
                     ], op, actor, after_ms=took_ms // 2)
        self.append([Pending(stream=stream_of("container", cid),
                             event=v.ContainerStarted(container_id=cid, pid=pid)),
                     Pending(stream=stream_of("op", op), event=v.OperationCompleted(op_id=op))],
                    op, actor, after_ms=took_ms - took_ms // 2)

    def exit(self, cid: str, code: int, ran_ms: int, oom: bool = False) -> None:
        self.append([Pending(stream=stream_of("container", cid), event=v.ContainerExited(
            container_id=cid, exit_code=code, oom_killed=oom))], "exit-" + cid[:12],
            SYSTEM_ACTOR, after_ms=ran_ms)

    def restart_by_policy(self, cid: str, count: int, pid: int) -> None:
        op = self.op()
        self.append([
            Pending(stream=stream_of("container", cid), event=v.ContainerRestartedByPolicy(
                container_id=cid, restart_count=count, delay_ms=100 * 2 ** (count - 1),
                reason="exited with code 137; restart policy always")),
            Pending(stream=stream_of("op", op), expected_version=0, event=v.OperationRequested(
                op_id=op, kind="container.start", target=stream_of("container", cid),
                args={"by": "restart-policy"}))], op, SYSTEM_ACTOR)
        self.started(cid, op, pid, actor=SYSTEM_ACTOR)


@pytest.fixture
def log() -> Log:
    log = Log()
    log.load_image()
    log.create(CID, "web", restart="always")
    log.create(OTHER, "db")
    log.start(CID, pid=100, took_ms=40)
    log.start(OTHER, pid=200)
    log.exit(CID, 137, ran_ms=2000, oom=True)
    log.restart_by_policy(CID, 1, pid=101)
    op = log.decide(cc.decide_stop(log.state, CID, op_id=log.op(), timeout=3, signal=None))
    log.append([Pending(stream=stream_of("container", CID),
                        event=v.ContainerExited(container_id=CID, exit_code=143)),
                Pending(stream=stream_of("op", op), event=v.OperationCompleted(op_id=op))],
               op, SYSTEM_ACTOR, after_ms=30)
    return log


def timeline(log: Log, ref: str, kind: str | None = None) -> hist.Timeline:
    k, ident, stream = resolve(log.store, log.state, ref, kind)
    return hist.build_timeline(k, ident, object_events(log.store, stream))


def test_timeline_tells_the_runs_exits_restarts_and_oom(log: Log) -> None:
    tl = timeline(log, "web")
    assert (tl.kind, tl.id, tl.name) == ("container", CID, "web")
    assert [r.exit_code for r in tl.runs] == [137, 143]
    first, second = tl.runs
    assert first.oom_killed and first.ended_by == "exited" and first.pid == 100
    assert first.duration_ns == first.ended_at - first.started_at >= 2000 * MS
    assert first.cause == "start by uid 1000 (shipslog run web)"
    assert second.cause.startswith("restart policy #1: exited with code 137")
    assert (tl.restarts, tl.oom_kills, tl.exit_codes) == (1, 1, (137, 143))
    # Only this container's events and its operations' events, in seq order.
    assert all(e.stream in (stream_of("container", CID), *(f"op-{o.op_id}" for o in tl.ops))
               for e in tl.entries)
    assert [e.seq for e in tl.entries] == sorted(e.seq for e in tl.entries)
    assert not any(OTHER in e.stream for e in tl.entries)


def test_operations_carry_actor_outcome_and_time_from_request_to_outcome(log: Log) -> None:
    tl = timeline(log, CID[:8])
    kinds = [(o.kind, o.outcome, o.actor.via) for o in tl.ops]
    assert kinds == [("container.create", "completed", "api"),
                     ("container.start", "completed", "api"),
                     ("container.start", "completed", "daemon"),
                     ("container.stop", "completed", "api")]
    start = tl.ops[1]
    assert start.duration_ns == 40 * MS and start.steps == ("runtime.create",)
    assert tl.ops[3].args == {"signal": "SIGTERM", "timeout": "3"}
    assert tl.ops[3].duration_ns == 30 * MS


def test_a_removed_container_is_still_found_by_name_and_by_id_prefix(log: Log) -> None:
    op = log.decide(cc.decide_remove(log.state, OTHER, op_id=log.op(), force=True,
                                     remove_volumes=False))
    log.append([Pending(stream=stream_of("container", OTHER),
                        event=v.ContainerRemoved(container_id=OTHER)),
                Pending(stream=stream_of("name", "db"),
                        event=v.NameReleased(name="db", container_id=OTHER)),
                Pending(stream=stream_of("op", op), event=v.OperationCompleted(op_id=op))], op)
    assert OTHER not in log.state.containers
    for ref in ("db", OTHER[:6]):
        tl = timeline(log, ref)
        assert tl.id == OTHER and tl.removed and tl.name == "db"
    with pytest.raises(NotFound):
        resolve(log.store, log.state, "never-was", None)


def test_image_timeline_and_kind_choice(log: Log) -> None:
    tl = timeline(log, "busybox", "image")
    assert tl.kind == "image" and tl.id == IMAGE and tl.name == "busybox:latest"
    assert [e.type for e in tl.entries] == ["ImageLoaded"]


def test_who_lists_every_operation_with_its_actor_and_outcome(log: Log) -> None:
    rows = hist.who(log.store.read(0))
    assert [(r.kind, r.uid, r.via, r.outcome) for r in rows][:3] == [
        ("container.create", 1000, "api", "completed"),
        ("container.create", 1000, "api", "completed"),
        ("container.start", 1000, "api", "completed")]
    assert rows[0].command == ("shipslog", "run", "web") and rows[0].pid == 4242
    assert any(r.via == "daemon" and r.kind == "container.start" for r in rows)


def test_event_filters_by_container_uid_event_type_and_kind(log: Log) -> None:
    envs = list(log.store.read(0))
    pick = event_filter(log.state, {"container": ["web"]})
    mine = [e for e in envs if pick(e)]
    assert mine and all(CID in e.stream or getattr(e.event, "container_id", "") == CID
                        or getattr(e.event, "target", "").endswith(CID) for e in mine)
    daemon = [e for e in envs if event_filter(log.state, {"uid": ["0"]})(e)]
    assert daemon and all(e.actor.uid == 0 for e in daemon)
    exits = [e for e in envs if event_filter(log.state, {"event": ["containerexited"]})(e)]
    assert [e.event.exit_code for e in exits] == [137, 143]
    images = [e for e in envs if event_filter(log.state, {"type": ["image"]})(e)]
    assert [e.type for e in images] == ["ImageLoaded"]


def test_describe_says_what_happened_in_one_line(log: Log) -> None:
    lines = [e.summary for e in timeline(log, "web").entries]
    assert "exited with code 137, OOM killed" in lines
    assert "started (pid 101)" in lines
    assert any(line.startswith("restart #1 by policy after 100 ms") for line in lines)
    assert all("\n" not in line for line in lines)
    env = next(e for e in log.store.read() if isinstance(e.event, v.ContainerStarted))
    changed = msgspec.structs.replace(env, event=v.ContainerHealthChanged(
        container_id=CID, status="unhealthy", failing_streak=3, exit_code=-1))
    assert hist.describe(changed) == "health: unhealthy (probe timed out, failing streak 3)"
    assert hist.command_line(("/usr/bin/python3", "-m", "engine.cli.main", "ps")) == "shipslog ps"
    assert hist.command_line(("python3", "/venv/bin/shipslog", "rm", "web")) == "shipslog rm web"


def test_a_build_is_told_in_docker_builds_words(log: Log) -> None:
    # Issue 12: the history of a built image tells how it was built, not raw field dumps.
    env = next(e for e in log.store.read() if isinstance(e.event, v.ContainerStarted))
    said = [hist.describe(msgspec.structs.replace(env, event=ev)) for ev in (
        v.BuildRequested(op_id="op", context_digest="sha256:" + "c" * 64,
                         dockerfile_digest="sha256:" + "d" * 64, tags=("app:1",),
                         build_args={"TOKEN": "<hmac:ab>"}, target="final"),
        v.BuildStepCompleted(op_id="op", step=2, total=3, stage=0,
                             instruction="RUN make", cache_key="k", cached=False,
                             image_id="sha256:" + "e" * 64, layer="sha256:" + "f" * 64,
                             duration_ms=1234),
        v.BuildStepCompleted(op_id="op", step=3, total=3, stage=0, instruction="CMD [\"app\"]",
                             cache_key="k2", cached=True, image_id="sha256:" + "1" * 64),
    )]
    assert said == [
        "build requested: Dockerfile; context cccccccccccc; target final; tags app:1; "
        "build args TOKEN",
        "step 2/3 RUN make: ran in 1234 ms -> eeeeeeeeeeee, layer ffffffffffff",
        'step 3/3 CMD ["app"]: using cache -> 111111111111',
    ]


def test_replay_rebuild_matches_the_live_projection_and_any_prefix(log: Log) -> None:
    report = replay.replay_to(log.store)
    assert report.ok and report.to_seq == log.store.head() and report.rows["containers"] == 2
    assert report.compared_with_live  # the store's own proj_ tables
    for to in range(1, log.store.head() + 1):
        assert replay.replay_to(log.store, to).ok


def test_replay_checks_the_newest_snapshot_against_the_fold(log: Log) -> None:
    import hashlib

    from projections.snapshot import encode_state

    store = log.store
    assert replay.replay_to(store).snapshot_seq == 0  # none yet
    at = store.snapshot()
    assert at == store.head()
    report = replay.replay_to(store)
    assert report.ok and report.snapshot_seq == at
    assert replay.replay_to(store, at - 1).snapshot_seq == 0  # the snapshot is after N
    # A snapshot that passes the store's checks but is not the fold is reported.
    forged = encode_state(store.fold_to(store.projection, until_seq=3, from_zero=True))
    store._w.conn.execute("UPDATE projection_snapshots SET state=?, digest=?",
                          (forged, hashlib.sha256(forged).hexdigest()))
    report = replay.replay_to(store)
    assert not report.ok and report.snapshot_seq == at
    assert {m.against for m in report.mismatches} == {f"snapshot@{at}"}
    assert "containers" in {m.table for m in report.mismatches}


def test_explain_reproduces_every_decision_from_the_log(log: Log) -> None:
    steps = replay.explain(log.store, CID)
    assert [s.kind for s in steps] == ["container.create", "container.start",
                                       "container.start", "container.stop"]
    assert all(s.reproduced for s in steps), [s.note for s in steps]
    create, start, restart, stop = steps
    assert create.saw == {"exists": False} and create.planned == ("rootfs.prepare",)
    assert start.saw["status"] == "created" and start.planned == ("container.start",)
    assert "100 ms" in restart.note and restart.saw["status"] == "exited"
    assert stop.call == "decide_stop(signal=SIGTERM, timeout=3)"
    assert stop.decided == stop.recorded


def test_explain_notices_a_decision_the_core_would_not_make_again() -> None:
    log = Log()
    log.load_image()
    log.create(CID, "web")
    op = log.op()
    # A start recorded for a container the core would refuse: its image is not in the log's
    # state (a log written by a buggy engine, or edited).
    log.append([Pending(stream=stream_of("op", op), expected_version=0,
                        event=v.OperationRequested(op_id=op, kind="container.kill",
                                                   target=stream_of("container", CID),
                                                   args={"signal": "SIGKILL"}))], op)
    steps = replay.explain(log.store, CID)
    assert steps[-1].reproduced is False and "refuses" in steps[-1].note
    assert msgspec.json.encode(steps)  # the API sends them as JSON


def test_copies_and_exports_are_told_and_do_not_block_the_next_command() -> None:
    """cp/export facts sit on the container's stream: the projection must follow its version,
    or every later decision's optimistic check would lose (a bug this caught once)."""
    log = Log()
    log.load_image()
    log.create(CID, "web")
    log.start(CID, pid=100)
    for event in (v.ContainerPathArchived(container_id=CID, path="/etc/passwd"),
                  v.ContainerPathExtracted(container_id=CID, path="/tmp", entries=3),
                  v.ContainerPathExtracted(container_id=CID, path="/tmp",
                                           error="invalid archive: path '../x' contains '..'"),
                  v.ContainerExported(container_id=CID)):
        log.append([Pending(stream=stream_of("container", CID), event=event)], "cp-1")
    assert log.state.containers[CID].stream_version == log.store.stream_version(
        stream_of("container", CID))
    log.decide(cc.decide_stop(log.state, CID, op_id=log.op(), timeout=1, signal=None))
    text = [hist.describe(env) for env in log.store.read(stream=stream_of("container", CID))]
    assert "copied out: /etc/passwd" in text
    assert "copied in to /tmp (3 entries)" in text
    assert "copied in to /tmp (0 entries); refused: invalid archive: path '../x' contains '..'" \
        in text
    assert "exported (root filesystem streamed out)" in text
