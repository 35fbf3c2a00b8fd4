"""Compose projects as a projection of the log (issue 14): Compose marks what it creates with
`com.docker.compose.*` labels, and this fold turns those containers' events into a project's
life — one entry per Compose command (`up`, `down`, a scale, a recreate), with who ran it and
what happened to each service, and why.

I/O: none. `apply(state, envelope) -> state`, one small handler per event type as in
`projections/fold.py`; unknown events are ignored.

An entry is a run of one project's events asked by one client process (the actor's pid: one
Compose command); what the daemon does meanwhile (a health check passing, an exit) joins the
entry that is open. A service whose container was removed and created again in one entry was
recreated; the reason is read from the labels Compose set: the config hash or the image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import immutables
import msgspec

from events import vocabulary as v
from events.envelope import Envelope

PROJECT = "com.docker.compose.project"
SERVICE = "com.docker.compose.service"
NUMBER = "com.docker.compose.container-number"
CONFIG_HASH = "com.docker.compose.config-hash"
IMAGE = "com.docker.compose.image"
DEPENDS_ON = "com.docker.compose.depends_on"
ONEOFF = "com.docker.compose.oneoff"
# daemon-side events join an open entry only this soon after its last client event
_JOIN_NS = 120 * 1_000_000_000


class ComposeContainer(msgspec.Struct, frozen=True, kw_only=True):
    project: str
    service: str
    number: str = ""
    config_hash: str = ""
    image: str = ""
    depends_on: tuple[str, ...] = ()
    oneoff: bool = False
    alive: bool = True


class Change(msgspec.Struct, frozen=True, kw_only=True):
    """One thing that happened to one container of a service."""

    service: str
    action: str  # created, started, stopped, killed, paused, unpaused, removed, healthy, …
    container: str
    seq: int


class ServiceChange(msgspec.Struct, frozen=True, kw_only=True):
    """What an entry did to a service, summed up, with why."""

    service: str
    action: str  # created, recreated, started, stopped, removed, …
    containers: tuple[str, ...]
    reason: str = ""


class ProjectEntry(msgspec.Struct, frozen=True, kw_only=True):
    project: str
    first_seq: int
    last_seq: int
    started_at: int
    ended_at: int
    uid: int
    pid: int
    command: tuple[str, ...] = ()
    changes: tuple[Change, ...] = ()
    alive_after: int = 0  # the project's containers left when the entry's last event landed


class ProjectsState(msgspec.Struct, frozen=True, kw_only=True):
    seq: int = 0
    containers: immutables.Map[str, ComposeContainer] = immutables.Map()
    entries: tuple[ProjectEntry, ...] = ()
    # project -> index in `entries` of its last entry
    last: immutables.Map[str, int] = immutables.Map()
    alive: immutables.Map[str, int] = immutables.Map()  # project -> containers not removed


Handler = Callable[[ProjectsState, Envelope, Any], ProjectsState]
HANDLERS: dict[type, Handler] = {}


def on(*event_types: type) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for t in event_types:
            HANDLERS[t] = fn
        return fn

    return register


def apply(state: ProjectsState, env: Envelope) -> ProjectsState:
    handler = HANDLERS.get(type(env.event))
    if handler is not None:
        state = handler(state, env, env.event)
    return msgspec.structs.replace(state, seq=env.seq)


def fold(envelopes: Iterable[Envelope], state: ProjectsState | None = None) -> ProjectsState:
    s = state or ProjectsState()
    for env in envelopes:
        s = apply(s, env)
    return s


def _record(s: ProjectsState, env: Envelope, cid: str, action: str) -> ProjectsState:
    """Add `action` on container `cid` to its project's open entry, or open one."""
    c = s.containers.get(cid)
    if c is None:
        return s
    change = Change(service=c.service, action=action, container=cid, seq=env.seq)
    alive = s.alive.get(c.project, 0)
    at = s.last.get(c.project)
    entries = list(s.entries)
    daemon = env.actor.via == "daemon"
    if at is not None:
        e = entries[at]
        joins = (e.pid == env.actor.pid and e.uid == env.actor.uid and not daemon) or (
            daemon and env.recorded_at - e.ended_at <= _JOIN_NS)
        if joins:
            entries[at] = msgspec.structs.replace(
                e, last_seq=env.seq, changes=(*e.changes, change), alive_after=alive,
                ended_at=e.ended_at if daemon else env.recorded_at)
            return msgspec.structs.replace(s, entries=tuple(entries))
    if daemon and action in ("healthy", "unhealthy"):
        return s  # a probe long after any command: not a step of the project's life
    entries.append(ProjectEntry(
        project=c.project, first_seq=env.seq, last_seq=env.seq, started_at=env.recorded_at,
        ended_at=env.recorded_at, uid=env.actor.uid, pid=env.actor.pid,
        command=tuple(env.actor.command or ()) if not daemon else ("(daemon)",),
        changes=(change,), alive_after=alive))
    return msgspec.structs.replace(s, entries=tuple(entries),
                                   last=s.last.set(c.project, len(entries) - 1))


@on(v.ContainerCreateRequested)
def _create_requested(s: ProjectsState, env: Envelope, ev: v.ContainerCreateRequested
                      ) -> ProjectsState:
    labels = ev.config.labels
    if PROJECT not in labels or SERVICE not in labels:
        return s
    deps = tuple(d.split(":")[0] for d in labels.get(DEPENDS_ON, "").split(",") if d)
    c = ComposeContainer(project=labels[PROJECT], service=labels[SERVICE],
                         number=labels.get(NUMBER, ""), config_hash=labels.get(CONFIG_HASH, ""),
                         image=labels.get(IMAGE, "") or ev.config.image_id,
                         depends_on=deps, oneoff=labels.get(ONEOFF, "").lower() == "true")
    s = msgspec.structs.replace(s, containers=s.containers.set(ev.container_id, c),
                                alive=s.alive.set(c.project, s.alive.get(c.project, 0) + 1))
    return _record(s, env, ev.container_id, "created")


def _simple(action: str) -> Handler:
    def handle(s: ProjectsState, env: Envelope, ev: Any) -> ProjectsState:
        return _record(s, env, ev.container_id, action)

    return handle


on(v.ContainerStarted)(_simple("started"))
on(v.ContainerStopRequested)(_simple("stopped"))
on(v.ContainerSignalled)(_simple("killed"))
on(v.ContainerPaused)(_simple("paused"))
on(v.ContainerUnpaused)(_simple("unpaused"))


@on(v.ContainerHealthChanged)
def _health(s: ProjectsState, env: Envelope, ev: v.ContainerHealthChanged) -> ProjectsState:
    return _record(s, env, ev.container_id, ev.status)


@on(v.ContainerRemoved)
def _removed(s: ProjectsState, env: Envelope, ev: v.ContainerRemoved) -> ProjectsState:
    c = s.containers.get(ev.container_id)
    if c is None:
        return s
    s = msgspec.structs.replace(
        s, containers=s.containers.set(ev.container_id, msgspec.structs.replace(c, alive=False)),
        alive=s.alive.set(c.project, s.alive.get(c.project, 1) - 1))
    return _record(s, env, ev.container_id, "removed")


# ------------------------------------------------------------------ reading an entry


def summarize(state: ProjectsState, e: ProjectEntry) -> tuple[str, list[ServiceChange]]:
    """An entry's kind (up, down, scale, recreate, or the one action it did) and, per service,
    what it did and why."""
    by: dict[tuple[str, str], list[str]] = {}
    for ch in e.changes:
        ids = by.setdefault((ch.service, ch.action), [])
        if ch.container not in ids:
            ids.append(ch.container)
    created = {k[0]: ids for k, ids in by.items() if k[1] == "created"}
    removed = {k[0]: ids for k, ids in by.items() if k[1] == "removed"}
    healthy = {k[0] for k in by if k[1] == "healthy"}
    out: list[ServiceChange] = []
    recreated = False
    for service in sorted({k[0] for k in by}):
        new, old = created.get(service, []), removed.get(service, [])
        pairs = _pairs(state, new, old)
        for n, o in pairs:
            recreated = True
            out.append(ServiceChange(service=service, action="recreated", containers=(o, n),
                                     reason=_why(state.containers.get(o),
                                                 state.containers.get(n))))
        paired = {x for p in pairs for x in p}
        for action in ("created", "started", "healthy", "unhealthy", "stopped", "killed",
                       "paused", "unpaused", "removed"):
            ids = [i for i in by.get((service, action), []) if i not in paired
                   or action in ("started", "healthy", "unhealthy")]
            if not ids:
                continue
            reason = ""
            if action == "started":
                deps = [d for d in _deps(state, ids) if d in healthy]
                reason = ", ".join(f"{d} became healthy" for d in deps)
            out.append(ServiceChange(service=service, action=action, containers=tuple(ids),
                                     reason=reason))
    return _kind(state, e, out, recreated), out


def _pairs(state: ProjectsState, new: list[str], old: list[str]) -> list[tuple[str, str]]:
    """(new, old) containers of one service with the same number: a recreate."""
    out = []
    left = list(old)
    for n in new:
        cn = state.containers.get(n)
        match = next((o for o in left if cn is not None and state.containers.get(o) is not None
                      and state.containers[o].number == cn.number), None)
        if match is not None:
            left.remove(match)
            out.append((n, match))
    return out


def _why(old: ComposeContainer | None, new: ComposeContainer | None) -> str:
    if old is None or new is None:
        return ""
    reasons = []
    if old.config_hash != new.config_hash:
        reasons.append("config hash changed")
    if old.image != new.image:
        reasons.append("image changed")
    return ", ".join(reasons) or "forced (config and image unchanged)"


def _deps(state: ProjectsState, ids: list[str]) -> list[str]:
    out: list[str] = []
    for i in ids:
        c = state.containers.get(i)
        for d in c.depends_on if c is not None else ():
            if d not in out:
                out.append(d)
    return out


def _kind(state: ProjectsState, e: ProjectEntry, out: list[ServiceChange],
          recreated: bool) -> str:
    actions = {c.action for c in out}
    if recreated:
        return "recreate"
    if "removed" in actions and "created" not in actions and e.alive_after == 0:
        return "down"
    # a container past number 1 came or went, and the project is still up: `--scale`
    if any(state.containers[i].number not in ("", "1")
           for c in out if c.action in ("created", "removed") for i in c.containers
           if i in state.containers):
        return "scale"
    if actions & {"created", "started"}:
        return "up"
    return sorted(actions)[0] if actions else "?"


def history(state: ProjectsState, project: str) -> list[dict[str, Any]]:
    """A project's entries, oldest first, as plain data for the API and the CLI."""
    rows = []
    for e in state.entries:
        if e.project != project:
            continue
        kind, changes = summarize(state, e)
        rows.append({"kind": kind, "first_seq": e.first_seq, "last_seq": e.last_seq,
                     "started_at": e.started_at, "ended_at": e.ended_at,
                     "actor": {"uid": e.uid, "pid": e.pid, "command": list(e.command)},
                     "services": [msgspec.structs.asdict(c) | {"containers": list(c.containers)}
                                  for c in changes]})
    return rows


def members(state: ProjectsState, project: str) -> list[dict[str, Any]]:
    """Every container the project ever had, removed ones too, by service and then in the
    order they were created: the rows of `history project:NAME --html` (issue 18)."""
    first: dict[str, int] = {}
    for e in state.entries:
        if e.project == project:
            for ch in e.changes:
                first.setdefault(ch.container, ch.seq)
    rows = [{"id": cid, "service": c.service, "number": c.number, "alive": c.alive,
             "oneoff": c.oneoff, "created_seq": first.get(cid, 0)}
            for cid, c in state.containers.items() if c.project == project]
    return sorted(rows, key=lambda r: (r["service"], r["created_seq"], r["id"]))


def projects(state: ProjectsState) -> list[str]:
    return sorted({c.project for c in state.containers.values()})
