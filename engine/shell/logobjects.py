"""Which object a reference names in the log (removed objects too), the events that belong
to it, and shipslog's event filters: the parts of the read model (engine/shell/readmodel.py)
that `events`, `history` and `audit who` share.

I/O: SQLite reads through the `EventStore` each function is given; user names from the
host's passwd (for `--filter actor=NAME`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.core.errors import InvalidArgument, NotFound, ShipslogError
from engine.core.lookup import find_container, find_image
from engine.shell.logread import shown_actor
from events import vocabulary as v
from events.archive import events_of_streams
from events.envelope import Envelope, stream_of
from events.store import EventStore
from projections import history as hist
from projections.actors import OUTCOMES, ActorFilter, UnknownUser, actor_filter
from projections.compose import fold as compose_fold
from projections.state import EngineState

KINDS = ("container", "image", "volume", "network")


# ------------------------------------------------------------------------ resolving objects


def resolve(store: EventStore[Any], state: EngineState, ref: str,
            kind: str | None) -> tuple[str, str, str]:
    """(kind, id, stream) of what `ref` names now or named once (removed objects too)."""
    kinds = (kind,) if kind else KINDS
    for k in kinds:
        found = _resolve_kind(store, state, ref, k)
        if found is not None:
            return k, found, _stream(k, found)
    what = kind or "object"
    raise NotFound(f"No such {what}: {ref}",
                   hint="it never existed in this log; list with 'shipslog events --all'")


def _stream(kind: str, ident: str) -> str:
    return stream_of(kind, ident)


def _resolve_kind(store: EventStore[Any], state: EngineState, ref: str, kind: str) -> str | None:
    if kind == "container":
        with contextlib.suppress(ShipslogError):
            return find_container(state, ref).id
        ref = ref.lstrip("/")
        claims = list(store.read(0, stream=stream_of("name", ref)))
        for env in reversed(claims):
            if isinstance(env.event, v.NameClaimed | v.NameReleased):
                return env.event.container_id
        return _scan(store, ["ContainerCreateRequested"],
                     lambda ev: ev.container_id if (ev.name == ref or _prefix(ev.container_id,
                                                                             ref)) else None)
    if kind == "image":
        with contextlib.suppress(ShipslogError):
            return find_image(state, ref).id
        want = ref if ":" in ref.rsplit("/", 1)[-1] else ref + ":latest"
        return _scan(store, ["ImageLoaded", "ImageImported", "ImagePulled", "ImageTagged"],
                     lambda ev: ev.image_id if (
                         _prefix(ev.image_id.removeprefix("sha256:"), ref.removeprefix("sha256:"))
                         or want in getattr(ev, "repo_tags", ())
                         or getattr(ev, "reference", None) == want) else None)
    if kind == "volume":
        if ref in state.volumes:
            return ref
        return _scan(store, ["VolumeCreated"], lambda ev: ev.name if ev.name == ref else None)
    if kind == "network":
        nid = state.network_names.get(ref)
        if nid is not None:
            return str(nid)
        if ref in state.networks:
            return ref
        return _scan(store, ["NetworkCreated"], lambda ev: ev.network_id if (
            ev.name == ref or _prefix(ev.network_id, ref)) else None)
    return None


def _prefix(ident: str, ref: str) -> bool:
    return len(ref) >= 1 and all(c in "0123456789abcdef" for c in ref) and ident.startswith(ref)


def _scan(store: EventStore[Any], types: list[str],
          pick: Callable[[Any], str | None]) -> str | None:
    found = None
    for env in store.read(0, types=types):
        got = pick(env.event)
        if got is not None:
            found = got
    return found


def object_events(store: EventStore[Any], stream: str,
                  archive: Path | None = None) -> list[Envelope]:
    """The object's own stream plus the streams of the operations that acted on it (indexed
    reads by stream: no scan of the log). When a compaction moved the stream's start to an
    archive under `archive`, its archived events (and its operations') come from there."""
    own = list(store.read(0, stream=stream))
    archived: list[Envelope] = []
    if archive is not None and (not own or own[0].stream_version != 1) and \
            store.archived_between(0, store.head()):
        archived = events_of_streams(archive, {stream})
        own = archived + own
    ops = [stream_of("op", op) for op in hist.op_ids_of(own) if not op.startswith("exit-")]
    if not ops:
        return own
    extra = [e for e in store.read(0, streams=ops)]
    if archived:
        assert archive is not None
        extra += events_of_streams(archive, set(ops))
    return sorted(own + extra, key=lambda e: e.seq)


# ------------------------------------------------------------------------ event filters


def event_filter(state: EngineState, filters: dict[str, list[str]],
                 store: EventStore[Any] | None = None) -> Callable[[Envelope], bool]:
    """shipslog's event filters: type (object kind), event (type name, any case),
    container/image/volume/network (name or id; with `store`, removed objects too), label,
    uid, op, stream."""
    ids: dict[str, set[str]] = {}
    for kind in KINDS:
        for ref in filters.get(kind, []):
            found = _resolve_kind_quiet(state, ref, kind)
            if found in (None, ref) and store is not None:
                found = _resolve_kind(store, state, ref, kind) or found
            ids.setdefault(kind, set()).update({ref, *([found] if found else [])})
    events = {e.lower() for e in filters.get("event", [])}
    kinds = set(filters.get("type", []))
    who = actor_filter_of(filters)
    outcomes = op_outcomes(store) if who.outcomes and store is not None else {}
    ops = set(filters.get("op", []))
    streams = set(filters.get("stream", []))
    labels = filters.get("label", [])
    # a Compose project (issue 14): its containers, removed ones too, from the log's labels
    project_ids: set[str] | None = None
    if filters.get("project"):
        names = set(filters["project"])
        folded = compose_fold(store.read(after_seq=0)) if store is not None else None
        project_ids = {cid for cid, c in (folded.containers.items() if folded else ())
                       if c.project in names}

    def ok(env: Envelope) -> bool:
        ev = env.event
        kind = env.stream.split("-", 1)[0]
        if kinds and kind not in kinds:
            return False
        if events and env.type.lower() not in events:
            return False
        if who and not _actor_ok(who, env, outcomes):
            return False
        if ops and env.op_id not in ops:
            return False
        if streams and env.stream not in streams:
            return False
        for k, wanted in ids.items():
            own = _object_id(ev, env, k)
            if own is None or not any(own == w or own.startswith(w) for w in wanted):
                return False
        if labels:
            cid = getattr(ev, "container_id", None)
            c = state.containers.get(cid) if cid else None
            have = c.config.labels if c is not None else {}
            for lbl in labels:
                key, _, want = lbl.partition("=")
                if key not in have or (want and have[key] != want):
                    return False
        if project_ids is not None and getattr(ev, "container_id", None) not in project_ids:
            return False
        return True

    return ok


def actor_filter_of(filters: dict[str, list[str]]) -> ActorFilter:
    """The `actor`/`uid`/`command`/`outcome` filters, user names resolved from the host's
    passwd now (the log stores uids only)."""
    from engine.drivers.host.users import uid_of

    try:
        return actor_filter(filters, uid_of)
    except UnknownUser as exc:
        raise InvalidArgument(str(exc), hint="give a user name from this host's passwd, or "
                              "a uid: --filter uid=1000") from None
    except ValueError as exc:
        raise InvalidArgument(str(exc), hint="outcome is one of " + ", ".join(OUTCOMES)) \
            from None


def op_outcomes(store: EventStore[Any]) -> dict[str, str]:
    """op id -> completed/failed/compensated, for every operation that has ended."""
    names = {"OperationCompleted": "completed", "OperationFailed": "failed",
             "OperationCompensated": "compensated"}
    return {env.op_id: names[env.type] for env in store.read(0, types=list(names))}


def _actor_ok(who: ActorFilter, env: Envelope, outcomes: dict[str, str]) -> bool:
    if (who.uids or who.commands) and not who.actor_ok(
            env.actor, hist.command_line(shown_actor(env.actor).command)):
        return False
    if who.outcomes:
        ended = _OUTCOME_OF.get(env.type)
        outcome = ended or outcomes.get(env.op_id, "pending" if env.op_id else "")
        return who.outcome_ok(outcome)
    return True


_OUTCOME_OF = {"OperationCompleted": "completed", "OperationFailed": "failed",
               "OperationCompensated": "compensated"}


def _resolve_kind_quiet(state: EngineState, ref: str, kind: str) -> str | None:
    try:
        if kind == "container":
            return find_container(state, ref).id
        if kind == "image":
            return find_image(state, ref).id
        if kind == "network":
            return str(state.network_names.get(ref, ref))
    except ShipslogError:
        return None
    return ref


def _object_id(ev: Any, env: Envelope, kind: str) -> str | None:
    field = {"container": "container_id", "image": "image_id", "volume": "name",
             "network": "network_id"}[kind]
    if kind == "volume" and not type(ev).__name__.startswith("Volume"):
        return None
    value = getattr(ev, field, None)
    if value is None and env.stream.startswith(kind + "-"):
        return env.stream[len(kind) + 1:]
    if value is None and isinstance(ev, v.OperationRequested) and ev.target.startswith(
            kind + "-"):
        return ev.target[len(kind) + 1:]
    return value if isinstance(value, str) else None
