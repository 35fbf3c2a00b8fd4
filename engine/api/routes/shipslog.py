"""`/shipslog/...`: the event log as the product — the full event stream, object timelines,
audit (chain verification, checkpoints, who did what), time travel and replay.

I/O: SQLite reads, each on its own read-only connection in a worker thread (a verify of a
million events must not stall the API); live events through the daemon's writer.

    GET /shipslog/events              every live event with its envelope, one JSON object per
                                      line (since/until: Unix s, RFC 3339, 2h, seq:N; filters;
                                      follow); compacted events are in <root>/archive/
    GET /shipslog/history/{ref}       the timeline of a container, image, volume or network
                                      (from <root>/archive/ too, once compacted)
    GET /shipslog/audit/head          seq and hash of the head and of event 1 (for checkpoints)
    GET /shipslog/audit/verify        recompute the chain (archived events too: `archive=DIR`,
                                      default <root>/archive); `seq` also checks a checkpoint
    GET /shipslog/audit/who           operations with their actors (object, uid, since, until;
                                      filters: actor, uid, command, outcome — also on events
                                      and history)
    GET /shipslog/at/{docker path}    a Docker GET (containers/json, images/json, inspect…)
                                      answered from the state at `at=` (seq:N or a time)
    GET /shipslog/state/diff          what changed between `a=` and `b=`
    GET /shipslog/replay              rebuild from zero up to `to=` and compare with the live
    GET /shipslog/replay/explain/{id} re-run the core's decisions for a container

`read_only_router(ctx)` is the set of Docker GET handlers over a context whose state is
frozen; `--at` here and `shipslog --root DIR` (engine/cli/local.py) both answer through it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import trio

from engine.api.docker.translate import parse_filters
from engine.api.server.router import Request, Response, Router, json_response, streaming
from engine.core.errors import InvalidArgument, NotFound, ShipslogError
from engine.core.lookup import find_container, find_image
from engine.shell import replay
from engine.shell.logread import (
    first_seq_at,
    point_of,
    seq_of,
    shown_actor,
    shown_envelopes,
    state_at,
    time_of,
)
from events import vocabulary as v
from events.archive import events_of_streams
from events.envelope import Actor, Envelope, stream_of
from events.follow import follow
from events.store import EventStore
from projections import history as hist
from projections.actors import (
    ACTOR_KEYS,
    OUTCOMES,
    ActorFilter,
    UnknownUser,
    actor_filter,
    filter_timeline,
    filter_who,
)
from projections.compose import fold as compose_fold
from projections.compose import history as compose_history_of
from projections.compose import members as compose_members
from projections.compose import projects as compose_projects
from projections.state import EngineState
from projections.timetravel import Point, diff

KINDS = ("container", "image", "volume", "network")
_WHO_KEYS = ACTOR_KEYS  # history and audit who: filters by who acted (issue 18)
_AT_PATHS = ("/containers/json", "/containers/{id}/json", "/images/json",
             "/images/{name:path}/json", "/volumes", "/volumes/{name}", "/networks",
             "/networks/{id}", "/info")


# ------------------------------------------------------------------------ read-only contexts


@dataclass
class FrozenEngine:
    """What the Docker read handlers use of the engine: its state."""

    state: EngineState


@dataclass
class ReadOnlyContext:
    """A daemon context for reading only: a fixed state, the log, and a clock that stands
    still at the moment the state belongs to (so `Up 5 minutes` is what it said then)."""

    engine: FrozenEngine
    store: EventStore[Any]
    paths: Any
    now_ns: int
    engine_id: str = ""
    images: Any = None
    writer: Any = None
    runtime: Any = None
    runc_version: str = ""

    def clock(self) -> int:
        return self.now_ns


def read_only_router(ctx: ReadOnlyContext, *, with_streams: bool = False) -> Router:
    """The Docker API's GET handlers over `ctx` (nothing that writes is reachable)."""
    from engine.api.routes.containers import container_routes
    from engine.api.routes.images import image_routes
    from engine.api.routes.system import system_routes

    routers = [container_routes(ctx), image_routes(ctx), system_routes(ctx)]
    if with_streams:
        from engine.api.routes.streams import stream_routes

        routers.append(stream_routes(ctx))
    from engine.api.routes.df import df_routes
    from engine.api.routes.networks import network_routes
    from engine.api.routes.volumes import volume_routes

    routers += [volume_routes(ctx), network_routes(ctx), df_routes(ctx)]
    r = Router()
    for router in routers:
        for route in router.routes:
            if route.method == "GET":
                r.routes.append(route)
    return r


# ------------------------------------------------------------------------ shared helpers


async def in_reader(store: EventStore[Any], fn: Callable[[EventStore[Any]], Any]) -> Any:
    """Run `fn` on a fresh read-only connection in a worker thread."""

    def work() -> Any:
        reader = store.reader()
        try:
            return fn(reader)
        finally:
            if reader is not store:
                reader.close()

    return await trio.to_thread.run_sync(work)


def rfc3339_nano(ns: int) -> str:
    secs, nanos = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


class EventLine(msgspec.Struct, frozen=True):
    """An event in shipslog's own format: every envelope field and the whole payload (whose
    `type` is the event's name)."""

    seq: int
    time: str
    timeNano: int  # noqa: N815 - Docker's spelling, so `--format '{{.timeNano}}'` carries over
    type: str
    stream: str
    stream_version: int
    schema_version: int
    op_id: str
    actor: Actor
    event: Any
    hash: str
    command_id: str | None = None


_LINES = msgspec.json.Encoder()


def event_lines(envelopes: list[Envelope]) -> bytes:
    """Newline-delimited JSON of the envelopes (one encoder call per page: the stream's hot
    path)."""
    lines = []
    last_ns, last_text = -1, ""
    for env in shown_envelopes(envelopes):
        if env.recorded_at != last_ns:  # a batch shares its timestamp
            last_ns, last_text = env.recorded_at, rfc3339_nano(env.recorded_at)
        lines.append(EventLine(env.seq, last_text, env.recorded_at, type(env.event).__name__,
                               env.stream, env.stream_version, env.schema_version, env.op_id,
                               env.actor, env.event, env.hash, env.command_id))
    return _LINES.encode_lines(lines)


def envelope_json(env: Envelope) -> dict[str, Any]:
    """One event as a plain dict (the same fields `event_lines` writes)."""
    decoded: dict[str, Any] = msgspec.json.decode(event_lines([env]))
    return decoded


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
    from engine.shell.files import uid_of

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


# ------------------------------------------------------------------------ the routes


def shipslog_routes(ctx: Any) -> Router:
    """`ctx`: `.store`, `.writer` (None when nothing appends), `.engine.state`, `.clock()`."""
    r = Router()

    def now() -> int:
        return int(ctx.clock())

    @r.route("GET", "/shipslog/events")
    async def events(req: Request) -> Response:
        filters = parse_filters(req.arg("filters"))
        keep = None
        if filters:
            keep = await in_reader(ctx.store, lambda rd: event_filter(ctx.engine.state, filters,
                                                                       rd))
        since, until = req.arg("since"), req.arg("until")
        follow_live = req.bool("follow") and not until and ctx.writer is not None
        limit = req.int("limit")

        def bounds(reader: EventStore[Any]) -> tuple[int, int]:
            head = reader.head()
            first = 0
            if since:
                p = point_of(since, now(), "since")
                first = p.seq - 1 if p.seq is not None else _first_at(reader, p.time_ns or 0)
            last = seq_of(reader, point_of(until, now(), "until")) if until else head
            return max(first, 0), last

        after, last = await in_reader(ctx.store, bounds)

        async def body() -> AsyncIterator[bytes]:
            sent = 0
            if follow_live:
                async with contextlib.aclosing(follow(ctx.store, ctx.writer, after_seq=after,
                                                      filter=keep)) as live:
                    async for env in live:
                        yield event_lines([env])
                        sent += 1
                        if limit is not None and sent >= limit:
                            return
                return
            reader = await trio.to_thread.run_sync(ctx.store.reader)
            try:
                cursor = after
                while cursor < last:
                    # A short first page: the first lines come out at once.
                    size = 2000 if cursor > after else 100
                    if limit is not None and keep is None:
                        size = min(size, limit - sent)
                    page = await trio.to_thread.run_sync(_page, reader, cursor, size, last)
                    if not page:
                        return
                    cursor = page[-1].seq
                    chosen = page if keep is None else [e for e in page if keep(e)]
                    if limit is not None:
                        chosen = chosen[:limit - sent]
                    sent += len(chosen)
                    if chosen:
                        yield event_lines(chosen)
                    if limit is not None and sent >= limit:
                        return
            finally:
                if reader is not ctx.store:
                    reader.close()

        return streaming(body())

    @r.route("GET", "/shipslog/history/{ref:path}")
    async def history(req: Request) -> Response:
        kind = req.arg("kind") or None
        if kind is not None and kind not in KINDS:
            raise InvalidArgument(f"unknown kind {kind!r}", hint="use " + ", ".join(KINDS))
        state = ctx.engine.state

        paths = getattr(ctx, "paths", None)
        archive = Path(paths.root) / "archive" if paths is not None else None

        who = actor_filter_of(parse_filters(req.arg("filters"), _WHO_KEYS))
        if req.bool("changes"):
            return json_response(await in_reader(ctx.store, lambda rd: config_history(
                rd, state, req.params["ref"], archive)))

        def work(reader: EventStore[Any]) -> hist.Timeline:
            k, ident, stream = resolve(reader, state, req.params["ref"], kind)
            return filter_timeline(hist.build_timeline(k, ident, shown_envelopes(
                object_events(reader, stream, archive))), who)

        return json_response(await in_reader(ctx.store, work))

    @r.route("GET", "/shipslog/audit/head")
    async def head(req: Request) -> Response:
        def work(reader: EventStore[Any]) -> dict[str, Any]:
            first = next(iter(reader.read(0, limit=1)), None)
            return {"seq": reader.head(), "hash": reader.last_hash(),
                    "first_hash": first.hash if first else ""}

        return json_response(await in_reader(ctx.store, work))

    @r.route("GET", "/shipslog/audit/verify")
    async def verify(req: Request) -> Response:
        cp_seq = req.int("seq")
        until = req.int("until")
        archive = req.arg("archive") or None

        def work(reader: EventStore[Any]) -> dict[str, Any]:
            result = reader.verify(until_seq=until, archive_dir=archive)
            out: dict[str, Any] = {
                "ok": result.ok, "checked": result.checked, "head": reader.head(),
                "first_bad_seq": result.first_bad_seq, "reason": result.reason,
                "last_hash": result.last_hash, "first_hash": _hash_at(reader, 1) or "",
                "archived": result.archived, "archived_checked": result.archived_checked,
                "missing_archives": list(result.missing_archives),
            }
            if cp_seq is not None:
                out["hash_at_seq"] = _hash_at(reader, cp_seq)
            return out

        return json_response(await in_reader(ctx.store, work))

    @r.route("GET", "/shipslog/audit/who")
    async def who(req: Request) -> Response:
        state = ctx.engine.state
        ref = req.arg("object")
        uid = req.int("uid")
        since, until = req.arg("since"), req.arg("until")
        who_of = actor_filter_of(parse_filters(req.arg("filters"), _WHO_KEYS))

        def work(reader: EventStore[Any]) -> list[hist.WhoRow]:
            if ref:
                _, _, stream = resolve(reader, state, ref, req.arg("kind") or None)
                envs: Iterator[Envelope] = iter(object_events(reader, stream))
            else:
                envs = reader.read(0, types=["OperationRequested", "OperationCompleted",
                                             "OperationFailed", "OperationCompensated"])
            rows = hist.who(shown_envelopes(envs))
            lo = point_of(since, now(), "since") if since else None
            hi = point_of(until, now(), "until") if until else None
            return filter_who([row for row in rows
                               if (uid is None or row.uid == uid) and _within(row, lo, hi)],
                              who_of)

        return json_response(await in_reader(ctx.store, work))

    @r.route("GET", "/shipslog/state/diff")
    async def state_diff(req: Request) -> Response:
        a, b = point_of(req.arg("a"), now(), "a"), point_of(req.arg("b") or f"seq:{1 << 62}",
                                                              now(), "b")

        def work(reader: EventStore[Any]) -> dict[str, Any]:
            sa, sb = seq_of(reader, a), seq_of(reader, b)
            return {"a": sa, "b": sb, "changes": diff(state_at(reader, sa), state_at(reader, sb)),
                    "a_time_ns": time_of(reader, sa, 0), "b_time_ns": time_of(reader, sb, 0)}

        return json_response(await in_reader(ctx.store, work))

    @r.route("GET", "/shipslog/at/{rest:path}")
    async def at(req: Request) -> Response:
        point = point_of(req.arg("at"), now())

        def work(reader: EventStore[Any]) -> tuple[EngineState, int, int]:
            seq = seq_of(reader, point)
            when = point.time_ns if point.time_ns is not None else time_of(reader, seq, now())
            return state_at(reader, seq), seq, when

        state, seq, when = await in_reader(ctx.store, work)
        frozen = ReadOnlyContext(engine=FrozenEngine(state), store=ctx.store, paths=ctx.paths,
                                 now_ns=when, engine_id=getattr(ctx, "engine_id", ""))
        router = read_only_router(frozen)
        path = "/" + req.params["rest"].lstrip("/")
        route, params = router.match("GET", path)
        if route.pattern not in _AT_PATHS:
            raise InvalidArgument(f"GET {path} cannot be asked at a point in time",
                                  hint="time travel serves ps, inspect, images, volume ls, "
                                       "network ls and info")
        inner = Request(method="GET", path=path, params=params, query=req.query,
                        headers=req.headers, api_version=req.api_version, actor=req.actor)
        response = await route.handler(inner)
        response.headers.append(("Shipslog-At-Seq", str(seq)))
        return response

    @r.route("GET", "/shipslog/replay")
    async def replay_(req: Request) -> Response:
        to = req.int("to")
        report = await in_reader(ctx.store, lambda rd: replay.replay_to(rd, to))
        out = msgspec.to_builtins(report)
        out["ok"] = report.ok
        return json_response(out)

    @r.route("GET", "/shipslog/replay/explain/{ref:path}")
    async def explain(req: Request) -> Response:
        state = ctx.engine.state

        def work(reader: EventStore[Any]) -> dict[str, Any]:
            _, cid, _ = resolve(reader, state, req.params["ref"], "container")
            return {"id": cid, "steps": replay.explain(reader, cid)}

        return json_response(await in_reader(ctx.store, work))

    @r.route("GET", "/shipslog/compose/{project}/history")
    async def compose_history(req: Request) -> Response:
        # Compose projects are a fold of the log's labelled containers (issue 14).
        name = req.params["project"]

        def work(reader: EventStore[Any]) -> list[dict[str, Any]]:
            return compose_history_of(_compose_project(reader, name), name)

        return json_response(await in_reader(ctx.store, work))

    @r.route("GET", "/shipslog/compose/{project}/containers")
    async def compose_containers(req: Request) -> Response:
        # The rows of `history project:NAME --html` (issue 18): removed containers too.
        name = req.params["project"]

        def work(reader: EventStore[Any]) -> list[dict[str, Any]]:
            return compose_members(_compose_project(reader, name), name)

        return json_response(await in_reader(ctx.store, work))

    return r


def config_history(reader: EventStore[Any], state: EngineState, ref: str,
                   archive: Path | None) -> dict[str, Any]:
    """`history CONTAINER --changes`: its configuration over time. Network connects are on
    the network's stream: found by type (indexed) and container id."""
    from projections.confighistory import config_changes

    _, cid, stream = resolve(reader, state, ref, "container")
    own = object_events(reader, stream, archive)
    nets = [e for e in reader.read(0, types=["NetworkConnected", "NetworkDisconnected"])
            if getattr(e.event, "container_id", None) == cid]
    names = {nid: n.name for nid, n in state.networks.items()}
    envs = shown_envelopes(sorted(own + nets, key=lambda e: e.seq))
    return {"kind": "container", "id": cid, "name": _name_in(own),
            "changes": config_changes(envs, names)}


def _name_in(envelopes: list[Envelope]) -> str:
    name = ""
    for env in envelopes:
        if isinstance(env.event, v.ContainerCreateRequested):
            name = env.event.name
        elif isinstance(env.event, v.ContainerRenamed):
            name = env.event.new_name
    return name


def _page(reader: EventStore[Any], after: int, size: int, until: int) -> list[Envelope]:
    return list(reader.read(after, limit=size, until_seq=until))


def _hash_at(reader: EventStore[Any], seq: int) -> str | None:
    """The stored hash of event `seq`, live or archived (None if there is none). Reads the
    hash column only: on a tampered log the event's payload may not decode at all."""
    if seq < 1 or seq > reader.head():
        return None
    return reader.hash_at(seq)


def _first_at(reader: EventStore[Any], time_ns: int) -> int:
    """`after_seq` for a stream that starts at the first event recorded at or after a time."""
    return first_seq_at(reader, time_ns) - 1


def _within(row: hist.WhoRow, lo: Point | None, hi: Point | None) -> bool:
    for point, before in ((lo, False), (hi, True)):
        if point is None:
            continue
        value, bound = (row.seq, point.seq) if point.seq is not None else (row.time_ns,
                                                                          point.time_ns)
        assert bound is not None
        if (value > bound) if before else (value < bound):
            return False
    return True


def _compose_project(reader: EventStore[Any], name: str) -> Any:
    """The Compose projection folded from the log, once `name` is known to be one of its
    projects (a 404 with the way to find the right name otherwise)."""
    state = compose_fold(reader.read(after_seq=0))
    if name not in compose_projects(state):
        raise NotFound(f"no such Compose project: {name}",
                       hint="projects are named by Compose's -p or the project's "
                            "directory; see 'shipslog ps --filter project=NAME'")
    return state
