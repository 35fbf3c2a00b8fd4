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

The answers come from the read model (engine/shell/readmodel.py, and Docker's shapes from
engine/api/docker/reads.py), which `shipslog --root DIR` (engine/cli/local.py) calls too; `--at`
answers through `reads.GETS` over the state frozen at that point.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from engine.api.docker import reads
from engine.api.docker.translate import parse_filters
from engine.api.server.router import Request, Response, Router, json_response, streaming
from engine.core.errors import InvalidArgument
from engine.shell import logobjects
from engine.shell import readmodel as rm
from events.follow import follow
from events.store import EventStore
from projections.state import EngineState

KINDS = logobjects.KINDS


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


# ------------------------------------------------------------------------ the routes


def shipslog_routes(ctx: Any) -> Router:
    """`ctx`: `.store`, `.writer` (None when nothing appends), `.engine.state`, `.clock()`."""
    r = Router()

    def now() -> int:
        return int(ctx.clock())

    @functools.cache
    def gets() -> Router:
        """The daemon's Docker GETs, for their patterns: time travel serves some of them."""
        return read_only_router(ReadOnlyContext(engine=FrozenEngine(EngineState()),
                                                store=ctx.store, paths=ctx.paths, now_ns=0))

    @r.route("GET", "/shipslog/events")
    async def events(req: Request) -> Response:
        filters = parse_filters(req.arg("filters"))
        keep = None
        if filters:
            keep = await in_reader(ctx.store, lambda rd: logobjects.event_filter(ctx.engine.state,
                                                                          filters, rd))
        since, until = req.arg("since"), req.arg("until")
        follow_live = req.bool("follow") and not until and ctx.writer is not None
        limit = req.int("limit")
        after, last = await in_reader(ctx.store, lambda rd: rm.events_window(rd, since, until,
                                                                              now()))

        async def body() -> AsyncIterator[bytes]:
            sent = 0
            if follow_live:
                async with contextlib.aclosing(follow(ctx.store, ctx.writer, after_seq=after,
                                                      filter=keep)) as live:
                    async for env in live:
                        yield rm.event_lines([env])
                        sent += 1
                        if limit is not None and sent >= limit:
                            return
                return
            reader = await trio.to_thread.run_sync(ctx.store.reader)
            try:
                pages = rm.event_chunks(reader, after, last, keep, limit)
                while (chunk := await trio.to_thread.run_sync(next, pages, None)) is not None:
                    yield chunk
            finally:
                if reader is not ctx.store:
                    reader.close()

        return streaming(body())

    @r.route("GET", "/shipslog/history/{ref:path}")
    async def history(req: Request) -> Response:
        kind = req.arg("kind") or None
        state = ctx.engine.state
        archive = archive_of(ctx)
        filters = parse_filters(req.arg("filters"), rm.WHO_KEYS)
        ref = req.params["ref"]
        changes = req.bool("changes")
        return json_response(await in_reader(ctx.store, lambda rd: rm.history(
            rd, state, ref, kind, filters, archive, changes=changes)))

    @r.route("GET", "/shipslog/audit/head")
    async def head(req: Request) -> Response:
        return json_response(await in_reader(ctx.store, rm.audit_head))

    @r.route("GET", "/shipslog/audit/verify")
    async def verify(req: Request) -> Response:
        cp_seq, until = req.int("seq"), req.int("until")
        archive = req.arg("archive") or None
        return json_response(await in_reader(ctx.store, lambda rd: rm.audit_verify(
            rd, cp_seq, until, archive)))

    @r.route("GET", "/shipslog/audit/who")
    async def who(req: Request) -> Response:
        state = ctx.engine.state
        ref, kind, uid = req.arg("object"), req.arg("kind") or None, req.int("uid")
        since, until = req.arg("since"), req.arg("until")
        filters = parse_filters(req.arg("filters"), rm.WHO_KEYS)
        return json_response(await in_reader(ctx.store, lambda rd: rm.audit_who(
            rd, state, now(), ref=ref, kind=kind, uid=uid, since=since, until=until,
            filters=filters)))

    @r.route("GET", "/shipslog/state/diff")
    async def state_diff(req: Request) -> Response:
        a, b = req.arg("a"), req.arg("b")
        return json_response(await in_reader(ctx.store, lambda rd: rm.state_diff(
            rd, a, b, now())))

    @r.route("GET", "/shipslog/at/{rest:path}")
    async def at(req: Request) -> Response:
        point = req.arg("at")
        state, seq, when = await in_reader(ctx.store, lambda rd: rm.state_at_point(
            rd, point, now()))
        tasks = trio.lowlevel.current_statistics().tasks_living
        model = frozen_model(ctx, state, when, tasks=tasks)
        path = "/" + req.params["rest"].lstrip("/")
        route, params = gets().match("GET", path)
        if route.pattern not in reads.AT_PATHS:
            raise InvalidArgument(f"GET {path} cannot be asked at a point in time",
                                  hint="time travel serves ps, inspect, images, volume ls, "
                                       "network ls and info")
        pattern = route.pattern
        answer = await trio.to_thread.run_sync(reads.GETS[pattern], model, params, req)
        response = (Response(200, [("Content-Type", "application/json")], answer)
                    if isinstance(answer, bytes) else json_response(answer))
        response.headers.append(("Shipslog-At-Seq", str(seq)))
        return response

    @r.route("GET", "/shipslog/replay")
    async def replay_(req: Request) -> Response:
        to = req.int("to")
        return json_response(await in_reader(ctx.store, lambda rd: rm.replay_report(rd, to)))

    @r.route("GET", "/shipslog/replay/explain/{ref:path}")
    async def explain(req: Request) -> Response:
        state, ref = ctx.engine.state, req.params["ref"]
        return json_response(await in_reader(ctx.store, lambda rd: rm.explain(rd, state, ref)))

    @r.route("GET", "/shipslog/compose/{project}/history")
    async def compose_history(req: Request) -> Response:
        name = req.params["project"]
        return json_response(await in_reader(ctx.store, lambda rd: rm.compose_history(
            rd, name)))

    @r.route("GET", "/shipslog/compose/{project}/containers")
    async def compose_containers(req: Request) -> Response:
        name = req.params["project"]
        return json_response(await in_reader(ctx.store, lambda rd: rm.compose_containers(
            rd, name)))

    return r


def archive_of(ctx: Any) -> Path | None:
    """Where compaction moved the log's first events (`<root>/archive`)."""
    paths = getattr(ctx, "paths", None)
    return Path(paths.root) / "archive" if paths is not None else None


def frozen_model(ctx: Any, state: EngineState, when: int, *, tasks: int = 0) -> rm.ReadModel:
    """The read model of the state at a point of the log, its clock standing still then (so
    `Up 5 minutes` is what it said then)."""
    return rm.ReadModel(store=ctx.store, paths=ctx.paths, state=lambda: state,
                        clock=lambda: when, engine_id=getattr(ctx, "engine_id", ""),
                        tasks=lambda: tasks)
