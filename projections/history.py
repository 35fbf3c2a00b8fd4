"""The life of one object told from its events: a timeline with who asked, which operation,
how long each took from request to outcome, every run with its exit code, restarts and their
reasons, OOM kills.

I/O: none. The caller reads the object's events (its own stream plus the streams of the
operations that targeted it: `events.store.EventStore.read(streams=...)`, an indexed read) and
hands them here in seq order; `build_timeline` returns plain msgspec Structs that the API
encodes as JSON and the CLI prints. Nothing here looks at the clock: durations are differences
between `recorded_at` stamps (and the monitor's own `finished_at` when it has one).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from events import vocabulary as v
from events.envelope import Actor, Envelope

__all__ = [
    "Entry",
    "OpSpan",
    "Run",
    "Timeline",
    "build_timeline",
    "command_line",
    "describe",
    "op_ids_of",
    "who",
]

_OUTCOMES = (v.OperationCompleted, v.OperationFailed, v.OperationCompensated)


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One event of the object, ready to print."""

    seq: int
    time_ns: int
    type: str
    stream: str
    op_id: str
    actor: Actor
    summary: str
    hash: str = ""


class OpSpan(msgspec.Struct, frozen=True, kw_only=True):
    """An operation on the object: request, steps, outcome and how long it took."""

    op_id: str
    kind: str
    actor: Actor
    requested_seq: int
    requested_at: int
    outcome: str = "pending"  # completed, failed, compensated, pending
    outcome_seq: int = 0
    outcome_at: int = 0
    duration_ns: int | None = None
    steps: tuple[str, ...] = ()
    error: str = ""
    args: dict[str, str] = {}


class Run(msgspec.Struct, frozen=True, kw_only=True):
    """One time the container's process ran (or failed to start)."""

    number: int
    started_at: int
    start_seq: int
    pid: int = 0
    cause: str = ""  # why it started: "start by uid 0", "restart policy: on-failure (exit 1)"
    ended_at: int = 0
    end_seq: int = 0
    exit_code: int | None = None
    signal: str = ""
    oom_killed: bool = False
    ended_by: str = ""  # exited, lost, start failed, still running
    error: str = ""
    duration_ns: int | None = None


class Timeline(msgspec.Struct, frozen=True, kw_only=True):
    kind: str  # container, image, volume, network
    id: str
    name: str = ""
    entries: tuple[Entry, ...] = ()
    ops: tuple[OpSpan, ...] = ()
    runs: tuple[Run, ...] = ()
    restarts: int = 0
    oom_kills: int = 0
    exit_codes: tuple[int, ...] = ()
    removed: bool = False


def op_ids_of(envelopes: Iterable[Envelope]) -> list[str]:
    """The operation ids the object's own events belong to, in first-seen order."""
    seen: dict[str, None] = {}
    for env in envelopes:
        if env.op_id:
            seen.setdefault(env.op_id, None)
    return list(seen)


def describe(env: Envelope) -> str:
    """One line saying what the event means, without the envelope fields."""
    ev = env.event
    if isinstance(ev, v.OperationRequested):
        args = " ".join(f"{k}={ev.args[k]}" for k in sorted(ev.args))
        return f"{ev.kind} requested" + (f" ({args})" if args else "")
    if isinstance(ev, v.OperationStepDone):
        return f"step {ev.step} done"
    if isinstance(ev, v.OperationFailed):
        return f"operation failed at {ev.step}: {ev.error}"
    if isinstance(ev, v.OperationCompleted):
        return "operation completed"
    if isinstance(ev, v.OperationCompensated):
        return f"operation compensated at {ev.step}: {ev.action}"
    if isinstance(ev, v.ContainerCreateRequested):
        return f"create requested: name={ev.name} image={ev.config.image}"
    if isinstance(ev, v.ContainerCreated):
        return "created (root filesystem ready)"
    if isinstance(ev, v.ContainerStartRequested):
        return "start requested"
    if isinstance(ev, v.ContainerRemoveRequested):
        return "remove requested" + (" (force)" if ev.force else "")
    if isinstance(ev, v.ContainerRemoved):
        return "removed"
    if isinstance(ev, v.ContainerPaused | v.ContainerUnpaused):
        return "paused" if isinstance(ev, v.ContainerPaused) else "unpaused"
    if isinstance(ev, v.ContainerStarted):
        return f"started (pid {ev.pid})"
    if isinstance(ev, v.ContainerExited):
        extra = f", signal {ev.signal}" if ev.signal else ""
        extra += ", OOM killed" if ev.oom_killed else ""
        return f"exited with code {ev.exit_code}{extra}"
    if isinstance(ev, v.ContainerStartFailed):
        return f"start failed (exit {ev.exit_code}): {ev.error}"
    if isinstance(ev, v.ContainerRestartedByPolicy):
        return (f"restart #{ev.restart_count} by policy after {ev.delay_ms} ms: {ev.reason}")
    if isinstance(ev, v.ContainerLost):
        return f"lost (exit {ev.exit_code}): {ev.reason}"
    if isinstance(ev, v.ContainerStopRequested):
        return f"stop requested ({ev.signal}, timeout {ev.timeout}s)"
    if isinstance(ev, v.ContainerSignalled):
        return f"signalled {ev.signal}"
    if isinstance(ev, v.ContainerRenamed):
        return f"renamed {ev.old_name} -> {ev.new_name}"
    if isinstance(ev, v.ContainerHealthChanged):
        probe = "timed out" if ev.exit_code == -1 else f"exit {ev.exit_code}"
        return f"health: {ev.status} (probe {probe}, failing streak {ev.failing_streak})"
    if isinstance(ev, v.ContainerPathArchived):
        return f"copied out: {ev.path}"
    if isinstance(ev, v.ContainerPathExtracted):
        done = f"copied in to {ev.path} ({ev.entries} entries"
        done += f", {ev.skipped_devices} device nodes skipped)" if ev.skipped_devices else ")"
        return done + (f"; refused: {ev.error}" if ev.error else "")
    if isinstance(ev, v.ContainerExported):
        return "exported (root filesystem streamed out)"
    if isinstance(ev, v.NetworkConnectRecorded):
        extra = "".join(f" as {a}" for a in ev.aliases) + (
            f" at {ev.ipv4_address}" if ev.ipv4_address else "")
        return f"will join network {ev.network_id[:12]}{extra} at start (connect recorded)"
    if isinstance(ev, v.NetworkConnectWithdrawn):
        return f"will not join network {ev.network_id[:12]} at start (disconnect recorded)"
    if isinstance(ev, v.ReconcileDifferenceFound):
        return f"reconcile: expected {ev.expected}, saw {ev.observed}; {ev.action}"
    if isinstance(ev, v.BuildRequested | v.BuildStepCompleted | v.ImageBuilt):
        return _describe_build(ev)
    fields = msgspec.structs.asdict(ev)
    shown = [f"{k}={_short(val)}" for k, val in fields.items()
             if k not in ("container_id", "config") and val not in ("", (), {}, None, False)]
    name = type(ev).__name__
    return name + (": " + " ".join(shown) if shown else "")


def _describe_build(ev: v.BuildRequested | v.BuildStepCompleted | v.ImageBuilt) -> str:
    """A build's request, steps and images in the words of `docker build`'s output (issue 12:
    the history of a built image tells how it was built). Build-arg values are digests."""
    if isinstance(ev, v.BuildRequested):
        parts = [f"build requested: {ev.dockerfile}",
                 f"context {ev.context_digest.removeprefix('sha256:')[:12]}"]
        parts += [f"target {ev.target}"] if ev.target else []
        parts += [f"tags {', '.join(ev.tags)}"] if ev.tags else []
        parts += [f"build args {', '.join(sorted(ev.build_args))}"] if ev.build_args else []
        parts += ["no cache"] if ev.no_cache else []
        return "; ".join(parts)
    if isinstance(ev, v.BuildStepCompleted):
        how = "using cache" if ev.cached else f"ran in {ev.duration_ms} ms"
        if ev.instruction.upper().startswith("FROM "):  # nothing runs: the stage's base
            how = "base"
        if not ev.cached and ev.exit_code:
            how += f", exit code {ev.exit_code}"
        made = f", layer {ev.layer.removeprefix('sha256:')[:12]}" if ev.layer else ""
        return (f"step {ev.step}/{ev.total} {_short(ev.instruction)}: {how}"
                f" -> {ev.image_id.removeprefix('sha256:')[:12]}{made}")
    tags = f" tagged {', '.join(ev.repo_tags)}" if ev.repo_tags else ""
    return f"image {ev.image_id.removeprefix('sha256:')[:12]} built{tags}"


def _short(value: object) -> str:
    text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
    if text.startswith("sha256:") and len(text) > 19:
        return text[:19]
    return text if len(text) <= 64 else text[:61] + "..."


def command_line(command: tuple[str, ...] | None) -> str:
    """The caller's argv as the user typed it: `python3 -m engine.cli.main ps` is `shipslog ps`."""
    argv = list(command or ())
    if "engine.cli.main" in argv:
        argv = ["shipslog", *argv[argv.index("engine.cli.main") + 1:]]
    elif len(argv) > 1 and argv[0].rsplit("/", 1)[-1].startswith("python"):
        argv = argv[1:]  # an entry-point script run by its interpreter
    if argv:
        argv[0] = argv[0].rsplit("/", 1)[-1]
    return " ".join(argv)


def _who(actor: Actor) -> str:
    if actor.via == "daemon":
        return "the daemon"
    cmd = command_line(actor.command)
    if len(cmd) > 40:
        cmd = cmd[:39] + "…"
    return f"uid {actor.uid}" + (f" ({cmd})" if cmd else "")


def build_timeline(kind: str, ident: str, envelopes: Iterable[Envelope]) -> Timeline:
    """Fold the object's events (its stream and its operations' streams) into a timeline."""
    entries: list[Entry] = []
    ops: dict[str, OpSpan] = {}
    runs: list[Run] = []
    name = ""
    removed = False
    restarts = 0
    oom = 0
    exit_codes: list[int] = []
    pending_cause = ""
    for env in envelopes:
        ev = env.event
        entries.append(Entry(seq=env.seq, time_ns=env.recorded_at, type=env.type,
                             stream=env.stream, op_id=env.op_id, actor=env.actor,
                             summary=describe(env), hash=env.hash))
        if isinstance(ev, v.OperationRequested):
            ops[ev.op_id] = OpSpan(op_id=ev.op_id, kind=ev.kind, actor=env.actor,
                                   requested_seq=env.seq, requested_at=env.recorded_at,
                                   args=dict(ev.args))
            if ev.kind in ("container.start", "container.restart") and "by" not in ev.args:
                pending_cause = f"{ev.kind.split('.')[1]} by {_who(env.actor)}"
            continue
        if isinstance(ev, v.OperationStepDone) and ev.op_id in ops:
            span = ops[ev.op_id]
            ops[ev.op_id] = msgspec.structs.replace(span, steps=(*span.steps, ev.step))
            continue
        if isinstance(ev, _OUTCOMES) and ev.op_id in ops:
            span = ops[ev.op_id]
            outcome = {v.OperationCompleted: "completed", v.OperationFailed: "failed",
                       v.OperationCompensated: "compensated"}[type(ev)]
            error = ev.error if isinstance(ev, v.OperationFailed) else (
                ev.action if isinstance(ev, v.OperationCompensated) else "")
            ops[ev.op_id] = msgspec.structs.replace(
                span, outcome=outcome, outcome_seq=env.seq, outcome_at=env.recorded_at,
                duration_ns=env.recorded_at - span.requested_at, error=error)
            continue
        name = _name_of(ev, name)
        if isinstance(ev, v.ContainerStartRequested) and not pending_cause:
            pending_cause = f"start by {_who(env.actor)}"
        elif isinstance(ev, v.ContainerRestartedByPolicy):
            restarts += 1
            pending_cause = f"restart policy #{ev.restart_count}: {ev.reason}"
        elif isinstance(ev, v.ContainerStarted):
            runs.append(Run(number=len(runs) + 1, started_at=env.recorded_at, start_seq=env.seq,
                            pid=ev.pid, cause=pending_cause or f"start by {_who(env.actor)}",
                            ended_by="still running"))
            pending_cause = ""
        elif isinstance(ev, v.ContainerStartFailed):
            runs.append(Run(number=len(runs) + 1, started_at=env.recorded_at, start_seq=env.seq,
                            cause=pending_cause, ended_at=env.recorded_at, end_seq=env.seq,
                            exit_code=ev.exit_code, ended_by="start failed", error=ev.error,
                            duration_ns=0))
            exit_codes.append(ev.exit_code)
            pending_cause = ""
        elif isinstance(ev, v.ContainerExited | v.ContainerLost):
            code = ev.exit_code
            exit_codes.append(code)
            if isinstance(ev, v.ContainerExited) and ev.oom_killed:
                oom += 1
            if runs and runs[-1].ended_by == "still running":
                run = runs[-1]
                ended = (ev.finished_at if isinstance(ev, v.ContainerExited) and ev.finished_at
                         else env.recorded_at)
                runs[-1] = msgspec.structs.replace(
                    run, ended_at=ended, end_seq=env.seq, exit_code=code,
                    signal=ev.signal if isinstance(ev, v.ContainerExited) else "",
                    oom_killed=isinstance(ev, v.ContainerExited) and ev.oom_killed,
                    ended_by="exited" if isinstance(ev, v.ContainerExited) else
                    f"lost: {ev.reason}",
                    duration_ns=max(0, ended - run.started_at))
        elif isinstance(ev, v.ContainerRemoved | v.ImageRemoved | v.VolumeRemoved
                        | v.NetworkRemoved):
            removed = True
    return Timeline(kind=kind, id=ident, name=name, entries=tuple(entries),
                    ops=tuple(sorted(ops.values(), key=lambda o: o.requested_seq)),
                    runs=tuple(runs), restarts=restarts, oom_kills=oom,
                    exit_codes=tuple(exit_codes), removed=removed)


def _name_of(ev: object, current: str) -> str:
    if isinstance(ev, v.ContainerCreateRequested):
        return ev.name
    if isinstance(ev, v.ContainerRenamed):
        return ev.new_name
    if isinstance(ev, v.NetworkCreated):
        return ev.name
    if isinstance(ev, v.VolumeCreated):
        return ev.name
    if isinstance(ev, v.ImageLoaded | v.ImageImported) and ev.repo_tags and not current:
        return ev.repo_tags[0]
    if isinstance(ev, v.ImagePulled) and not current:
        return ev.reference
    return current


class WhoRow(msgspec.Struct, frozen=True, kw_only=True):
    """`audit who`: one operation, who asked for it, on what, and how it ended."""

    seq: int
    time_ns: int
    op_id: str
    kind: str
    target: str
    uid: int
    gid: int
    pid: int
    loginuid: int | None
    command: tuple[str, ...]
    via: str
    outcome: str = "pending"
    error: str = ""


def who(envelopes: Iterable[Envelope]) -> list[WhoRow]:
    """Every operation in `envelopes` with its actor and outcome, in request order."""
    rows: dict[str, WhoRow] = {}
    for env in envelopes:
        ev = env.event
        if isinstance(ev, v.OperationRequested):
            a = env.actor
            rows[ev.op_id] = WhoRow(seq=env.seq, time_ns=env.recorded_at, op_id=ev.op_id,
                                    kind=ev.kind, target=ev.target, uid=a.uid, gid=a.gid,
                                    pid=a.pid, loginuid=a.loginuid, command=a.command or (),
                                    via=a.via)
        elif isinstance(ev, _OUTCOMES) and ev.op_id in rows:
            outcome = {v.OperationCompleted: "completed", v.OperationFailed: "failed",
                       v.OperationCompensated: "compensated"}[type(ev)]
            error = ev.error if isinstance(ev, v.OperationFailed) else ""
            rows[ev.op_id] = msgspec.structs.replace(rows[ev.op_id], outcome=outcome,
                                                     error=error)
    return sorted(rows.values(), key=lambda r: r.seq)
