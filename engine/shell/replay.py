"""Replay debugging: rebuild the projections from zero and compare them with the live ones, and
re-run the pure core's decisions from the log to show they are reproduced exactly.

I/O: SQLite reads through a read-only `EventStore` the caller passes in; the scratch copy of
the projection tables is built in memory and dropped.

`replay_to(store, to_seq)` folds events 1..N twice — through the incremental path the store
uses inside each append (`fold_batch`, one batch per operation, rows written into a scratch
table set) and through the rebuild path (`fold`) — and, when N is the head, against the
materialised `proj_*` tables the daemon wrote; the newest trusted projection snapshot at or
before N is compared with the fold up to its seq. Any row that differs is reported with both
sides.

`load_bundle(lines, path)` turns a `shipslog debug export` bundle (a header line, then the
full event stream as JSON lines) back into an event log at `path` by appending every batch
with its recorded envelope (time, actor, op id); the store recomputes each hash, and the load
reports whether they equal the exported ones — the bundle is then the same chain, and every
`--root` query (`replay --explain`, `history`, `ps --at`) works on it elsewhere.

`explain(store, ref)` walks each operation on a container: the state the core saw (the fold
up to the event before the request), the `decide_*` call re-run on that state with the inputs
the log recorded (the `OperationRequested` args and the intent event), the events it produces
compared with the recorded ones, the steps it plans, and the recorded steps and outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgspec

from engine.core import containers as cc
from engine.core.decision import Decision
from engine.core.errors import ShipslogError
from engine.core.restart import restart_delay_ms
from events import vocabulary as v
from events.envelope import Envelope
from events.store import EventStore
from projections.engine import ROW_TYPES, EngineProjection
from projections.fold import fold, fold_batch
from projections.state import EngineState

__all__ = ["BUNDLE_FORMAT", "LoadReport", "Mismatch", "ReplayReport", "explain", "load_bundle",
           "replay_to"]


class Mismatch(msgspec.Struct, frozen=True, kw_only=True):
    table: str
    key: str
    against: str  # "live" (the daemon's tables) or "rebuild" (the from-zero fold)
    replay: Any = None
    other: Any = None


class ReplayReport(msgspec.Struct, frozen=True, kw_only=True):
    to_seq: int
    head: int
    events: int
    rows: dict[str, int]
    compared_with_live: bool
    snapshot_seq: int = 0  # the snapshot checked against the fold (0: none at or before to)
    mismatches: tuple[Mismatch, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.mismatches


def _batches(envelopes: Iterator[Envelope]) -> Iterator[list[Envelope]]:
    """Contiguous runs of one op id: the shape of the daemon's append transactions."""
    batch: list[Envelope] = []
    for env in envelopes:
        if batch and env.op_id != batch[-1].op_id:
            yield batch
            batch = []
        batch.append(env)
    if batch:
        yield batch


def replay_to(store: EventStore[Any], to_seq: int | None = None) -> ReplayReport:
    head = store.head()
    to = head if to_seq is None else min(to_seq, head)
    scratch: dict[tuple[str, str], bytes] = {}
    state = EngineState()
    count = 0
    for batch in _batches(store.read(0, until_seq=to)):
        state, rows = fold_batch(state, batch)
        count += len(batch)
        for table, key, doc in rows:
            if doc is None:
                scratch.pop((table, key), None)
            else:
                scratch[(table, key)] = doc
    mismatches: list[Mismatch] = []
    encode = msgspec.json.encode
    # The newest snapshot a restart or time travel would start from: it must be the fold.
    snapshot = store.snapshot_before(EngineProjection(), to)
    snapshot_seq = 0 if snapshot is None else snapshot[0]
    rebuilt = fold(store.read(0, until_seq=snapshot_seq)) if snapshot_seq else EngineState()
    if snapshot is not None:
        mismatches += _compare_states(rebuilt, snapshot[1], f"snapshot@{snapshot_seq}")
    rebuilt = fold(store.read(snapshot_seq, until_seq=to), rebuilt)
    for table in ROW_TYPES:
        want = {key: encode(view) for key, view in getattr(rebuilt, table).items()}
        have = {key: doc for (t, key), doc in scratch.items() if t == table}
        mismatches += _compare(table, have, want, "rebuild")
    live_compared = to == head
    live_mismatches: list[Mismatch] = []
    if live_compared:
        for table in ROW_TYPES:
            try:
                live = dict(store.read_rows(table))
            except ShipslogError:
                live_compared = False
                break
            except Exception:  # noqa: BLE001 - a log with no tables: nothing to compare
                live_compared = False
                break
            have = {key: doc for (t, key), doc in scratch.items() if t == table}
            live_mismatches += _compare(table, have, live, "live")
        if store.head() != head:
            # Appends landed while this replayed (F-13: replay beside busy writers): the
            # live tables hold a later head, so a comparison would only show that.
            live_compared = False
        else:
            mismatches += live_mismatches
    counts = {table: sum(1 for (t, _) in scratch if t == table) for table in ROW_TYPES}
    return ReplayReport(to_seq=to, head=head, events=count, rows=counts,
                        compared_with_live=live_compared, snapshot_seq=snapshot_seq,
                        mismatches=tuple(mismatches))


def _compare_states(replayed: EngineState, other: EngineState, against: str) -> list[Mismatch]:
    """Every table's rows, then each of the state's other maps as a whole."""
    encode = msgspec.json.encode
    out: list[Mismatch] = []
    for table in ROW_TYPES:
        have = {key: encode(view) for key, view in getattr(replayed, table).items()}
        want = {key: encode(view) for key, view in getattr(other, table).items()}
        out += _compare(table, have, want, against)
    for name in sorted(set(EngineState.__dataclass_fields__) - set(ROW_TYPES) - {"seq"}):
        a, b = dict(getattr(replayed, name).items()), dict(getattr(other, name).items())
        if a != b:
            out.append(Mismatch(table=name, key="*", against=against, replay=a, other=b))
    return out


def _compare(table: str, have: dict[str, bytes], want: dict[str, bytes],
             against: str) -> list[Mismatch]:
    out: list[Mismatch] = []
    for key in sorted(set(have) | set(want)):
        a, b = have.get(key), want.get(key)
        if a != b:
            out.append(Mismatch(table=table, key=key, against=against,
                                replay=None if a is None else msgspec.json.decode(a),
                                other=None if b is None else msgspec.json.decode(b)))
    return out


# --------------------------------------------------------------------------------- explain


class Step(msgspec.Struct, frozen=True, kw_only=True):
    """One decision of the core about the container, reproduced from the log."""

    seq: int
    op_id: str
    kind: str
    actor_uid: int
    via: str
    saw: dict[str, Any]  # the container as the core saw it (status, pid, restart count …)
    call: str  # the decide_* call re-run
    recorded: tuple[dict[str, Any], ...]  # the events the log holds for the decision
    decided: tuple[dict[str, Any], ...]  # the events the re-run produced
    planned: tuple[str, ...]  # the steps the re-run planned
    steps_done: tuple[str, ...]  # the steps the log recorded
    outcome: str
    reproduced: bool | None  # None: the decision is not the pure core's (nothing to re-run)
    note: str = ""


def _event_dict(stream: str, event: v.BaseEvent) -> dict[str, Any]:
    # Every field, defaults included: omit_defaults would make equal events print differently.
    fields = {name: msgspec.to_builtins(getattr(event, name))
              for name in event.__struct_fields__}
    return {"stream": stream, "event": {"type": type(event).__name__, **fields}}


def _saw(state: EngineState, cid: str) -> dict[str, Any]:
    c = state.containers.get(cid)
    if c is None:
        return {"exists": False}
    return {"exists": True, "name": c.name, "status": c.status, "pid": c.pid,
            "exit_code": c.exit_code, "restart_count": c.restart_count,
            "stream_version": c.stream_version}


def _decider(req: v.OperationRequested, intent: Sequence[Envelope],
             cid: str) -> tuple[str, Callable[[EngineState], Decision]] | None:
    args, op = req.args, req.op_id
    kind = req.kind
    if "by" in args:
        return None
    if kind == "container.create":
        created = next((e.event for e in intent
                        if isinstance(e.event, v.ContainerCreateRequested)), None)
        if created is None:
            return None
        cmd = cc.CreateContainer(name=created.name, config=created.config)
        return (f"decide_create(name={created.name!r}, image={created.config.image!r})",
                lambda s: cc.decide_create(s, cmd, op_id=op, container_id=cid))
    if kind == "container.start":
        return "decide_start()", lambda s: cc.decide_start(s, cid, op_id=op)
    if kind == "container.stop":
        sig, timeout = args.get("signal"), int(args.get("timeout", "10"))
        return (f"decide_stop(signal={sig}, timeout={timeout})",
                lambda s: cc.decide_stop(s, cid, op_id=op, timeout=timeout, signal=sig))
    if kind == "container.kill":
        sig = args.get("signal", "SIGKILL")
        return f"decide_kill(signal={sig})", lambda s: cc.decide_kill(s, cid, op_id=op,
                                                                       signal=sig)
    if kind == "container.restart":
        timeout = int(args.get("timeout", "10"))
        return (f"decide_restart(timeout={timeout})",
                lambda s: cc.decide_restart(s, cid, op_id=op, timeout=timeout))
    if kind in ("container.pause", "container.unpause"):
        pause = kind == "container.pause"
        return (f"decide_pause(pause={pause})",
                lambda s: cc.decide_pause(s, cid, op_id=op, pause=pause))
    if kind == "container.remove":
        force = args.get("force") == "true"
        volumes = args.get("volumes") == "true"
        return (f"decide_remove(force={force}, remove_volumes={volumes})",
                lambda s: cc.decide_remove(s, cid, op_id=op, force=force,
                                           remove_volumes=volumes))
    return None


def explain(store: EventStore[Any], cid: str) -> list[Step]:
    """Every operation on container `cid`, re-decided on the state the log says it saw."""
    stream = f"container-{cid}"
    own = list(store.read(0, stream=stream))
    if not own:
        return []
    # Some commands (kill, pause) write only to their operation's stream: find every request
    # that targeted the container, then each operation's events (indexed by op id).
    requests = [e for e in store.read(0, types=["OperationRequested"])
                if isinstance(e.event, v.OperationRequested) and e.event.target == stream]
    op_ids = list(dict.fromkeys([e.op_id for e in own] + [e.op_id for e in requests]))
    by_op = {op_id: list(store.read(0, op_id=op_id)) for op_id in op_ids}
    renames = [e for e in own if isinstance(e.event, v.ContainerRenamed)]
    steps: list[Step] = []
    state = EngineState()
    until = max([e.seq for e in requests + renames], default=0)
    events = iter(store.read(0, until_seq=until))
    lookahead: list[Envelope] = []

    def advance(to: int) -> EngineState:
        """The state after event `to`: fold forward from where the last call stopped."""
        nonlocal state
        chunk: list[Envelope] = []
        if lookahead:
            if lookahead[0].seq > to:
                return state
            chunk.append(lookahead.pop())
        for env in events:
            if env.seq > to:
                lookahead.append(env)
                break
            chunk.append(env)
        if chunk:
            state, _ = fold_batch(state, chunk)
        return state

    for req in sorted(requests + renames, key=lambda e: e.seq):
        # The state the decision was made on: before the first event of its batch (a restart
        # by policy records ContainerRestartedByPolicy ahead of its OperationRequested).
        first = min((e.seq for e in by_op.get(req.op_id, []) if e.recorded_at == req.recorded_at),
                    default=req.seq)
        before = advance(min(first, req.seq) - 1)
        steps.append(_explain_one(before, req, by_op.get(req.op_id, [req]), cid))
    return steps


def _explain_one(before: EngineState, req: Envelope, op_events: list[Envelope],
                 cid: str) -> Step:
    batch = [e for e in op_events if e.seq >= req.seq]
    done = tuple(e.event.step for e in batch if isinstance(e.event, v.OperationStepDone))
    outcome = next((type(e.event).__name__.removeprefix("Operation").lower()
                    for e in batch if isinstance(e.event, v.OperationCompleted
                                                 | v.OperationFailed
                                                 | v.OperationCompensated)), "pending")
    common: dict[str, Any] = dict(seq=req.seq, op_id=req.op_id, actor_uid=req.actor.uid,
                                  via=req.actor.via, saw=_saw(before, cid), steps_done=done,
                                  outcome=outcome)
    if isinstance(req.event, v.ContainerRenamed):
        ev = req.event
        call = f"decide_rename(new_name={ev.new_name!r})"
        decided = cc.decide_rename(before, cid, ev.new_name, op_id=req.op_id)
        recorded = [e for e in op_events if e.seq >= req.seq][:len(decided.pending)]
        return _compare_decision(common, "container.rename", call, decided, recorded)
    request = req.event
    assert isinstance(request, v.OperationRequested)
    picked = _decider(request, op_events, cid)
    if picked is None:
        note, same = _not_core_note(before, request, req, cid, op_events)
        call = "restart_delay_ms(container, now)" if same is not None else ""
        return Step(kind=request.kind, call=call, recorded=tuple(
            _event_dict(e.stream, e.event) for e in op_events if e.recorded_at == req.recorded_at),
            decided=(), planned=(), reproduced=same, note=note, **common)
    call, decide = picked
    try:
        decision = decide(before)
    except ShipslogError as exc:
        return Step(kind=request.kind, call=call, recorded=(), decided=(), planned=(),
                    reproduced=False, note=f"the core now refuses it: {exc.message}",
                    **common)
    recorded = sorted((e for e in op_events if e.seq >= req.seq), key=lambda e: e.seq)
    # The decision's own events are the first ones of the batch, appended in one transaction.
    recorded = [e for e in _same_batch(recorded, req)][:len(decision.pending)]
    return _compare_decision(common, request.kind, call, decision, recorded)


def _same_batch(events: list[Envelope], first: Envelope) -> list[Envelope]:
    out = []
    for e in events:
        if e.recorded_at != first.recorded_at:
            break
        out.append(e)
    return out


def _compare_decision(common: dict[str, Any], kind: str, call: str, decision: Decision,
                      recorded: list[Envelope]) -> Step:
    want = [(p.stream, p.event) for p in decision.pending]
    have = [(e.stream, e.event) for e in recorded]
    same = want == have
    note = "" if same else "the re-run decided different events than the log holds"
    if not same and len(have) == len(want):
        diffs = [i for i, (a, b) in enumerate(zip(want, have, strict=True)) if a != b]
        note += f" (event {diffs[0] + 1} of {len(want)} differs)"
    return Step(kind=kind, call=call,
                recorded=tuple(_event_dict(s, e) for s, e in have),
                decided=tuple(_event_dict(s, e) for s, e in want),
                planned=tuple(step.name for step in decision.plan),
                reproduced=same, note=note, **common)


def _not_core_note(before: EngineState, request: v.OperationRequested, req: Envelope,
                   cid: str, op_events: list[Envelope]) -> tuple[str, bool | None]:
    by = request.args.get("by", "")
    if by == "restart-policy":
        c = before.containers.get(cid)
        recorded = next((e.event for e in op_events
                         if isinstance(e.event, v.ContainerRestartedByPolicy)), None)
        if c is None or recorded is None:
            return "restart policy: the container or its restart record is gone", None
        delay = restart_delay_ms(c, now_ns=req.recorded_at)
        same = delay == recorded.delay_ms
        return (f"restart policy {c.config.restart_policy.name} after exit {c.exit_code}: "
                f"re-ran restart_delay_ms -> {delay} ms, the log recorded "
                f"{recorded.delay_ms} ms", same)
    if by:
        return f"decided by the daemon ({by}), not by a user command", None
    return f"{request.kind} is not decided by engine/core/containers.py", None


# --------------------------------------------------------------------------------- bundles

BUNDLE_FORMAT = "shipslog-debug-bundle/1"


class LoadReport(msgspec.Struct, frozen=True, kw_only=True):
    events: int
    head_hash: str
    identical: bool  # every recomputed hash equals the exported one
    first_difference: int | None = None
    # The first event whose command line the export hid (recorded before issue 15 with a
    # secret in it): from there on the loaded log's hashes differ from the bundle's. Every
    # later event that was not hidden is still checked against the bundle's own chain (its
    # hash follows from the hash before it): `bad_link` names the first that does not.
    first_redacted: int | None = None
    bad_link: int | None = None


def _bundle_link_ok(e: dict[str, Any], prev_hash: str) -> bool:
    """Does bundle line `e`'s hash follow from `prev_hash` and its own fields?"""
    from events.codec import actor_bytes, canonical_bytes, encode_event
    from events.envelope import Actor
    from events.hashing import chain_hash
    from events.vocabulary import Event

    canonical = canonical_bytes(
        seq=e["seq"], stream=e["stream"], stream_version=e["stream_version"],
        schema_version=e["schema_version"], recorded_at=e["timeNano"],
        actor=actor_bytes(msgspec.convert(e["actor"], Actor)), op_id=e["op_id"],
        command_id=e.get("command_id"), type_name=e["type"],
        payload=encode_event(msgspec.convert(e["event"], Event)))
    return bool(chain_hash(prev_hash, canonical) == e["hash"])


def load_bundle(lines: Iterator[bytes], path: str) -> LoadReport:
    """Append a bundle's events to a new log at `path` (which must not exist yet)."""
    from events.envelope import Actor, Pending
    from events.redact import REDACTED
    from events.vocabulary import Event
    from projections.engine import EngineProjection

    header = msgspec.json.decode(next(lines, b"{}") or b"{}")
    if not isinstance(header, dict) or header.get("format") != BUNDLE_FORMAT:
        raise ShipslogError("not a shipslog debug bundle (no header line)",
                            hint="make one with: shipslog debug export --to N FILE")
    store: EventStore[Any] = EventStore.open(path, projection=EngineProjection())
    try:
        if store.head():
            raise ShipslogError(f"{path} already holds events", hint="load into a new directory")
        expected: list[tuple[int, str]] = []
        batch: list[dict[str, Any]] = []
        first_redacted: int | None = None
        bad_link: int | None = None
        prev_hash = "0" * 64

        def flush() -> None:
            if not batch:
                return
            first = batch[0]
            pending = [Pending(stream=e["stream"], event=msgspec.convert(e["event"], Event))
                       for e in batch]
            store.append(pending, actor=msgspec.convert(first["actor"], Actor),
                         op_id=first["op_id"], command_id=first.get("command_id"),
                         now_ns=first["timeNano"])
            batch.clear()

        for raw in lines:
            if not raw.strip():
                continue
            e = msgspec.json.decode(raw)
            if e["seq"] != len(expected) + 1:
                raise ShipslogError(
                    f"the bundle has no event {len(expected) + 1}: it was exported from a "
                    "compacted log, and a load must replay every event from seq 1",
                    hint="`system compact` moved those events to <root>/archive/; export "
                         "from a copy of the log taken before the compaction")
            key = (e["op_id"], e["timeNano"], e.get("command_id"), msgspec.json.encode(e["actor"]))
            if batch:
                b = batch[0]
                if key != (b["op_id"], b["timeNano"], b.get("command_id"),
                           msgspec.json.encode(b["actor"])):
                    flush()
            batch.append(e)
            expected.append((e["seq"], e["hash"]))
            hidden = any(REDACTED in part for part in (e["actor"].get("command") or ()))
            if first_redacted is None and hidden:
                first_redacted = e["seq"]
            elif first_redacted is not None and bad_link is None and not hidden and \
                    not _bundle_link_ok(e, prev_hash):
                bad_link = e["seq"]
            prev_hash = e["hash"]
        flush()
        got = {env.seq: env.hash for env in store.read(0)}
        diff = next((seq for seq, h in expected if got.get(seq) != h), None)
        return LoadReport(events=len(expected), head_hash=store.last_hash(),
                          identical=diff is None and len(got) == len(expected),
                          first_difference=diff, first_redacted=first_redacted,
                          bad_link=bad_link)
    finally:
        store.close()
