"""Docker API handlers for the engine itself: version, info and the event stream.

I/O: none here: the read model reads /proc, uname and the host's firewall (iptables,
nftables) for `info`, in a worker thread; the event stream reads the log (history, then
live).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import trio

from engine.api.docker import reads
from engine.api.docker.events import DockerEvents, matches
from engine.api.docker.reads import VERSION as VERSION  # the daemon logs it at start
from engine.api.docker.translate import parse_filters
from engine.api.routes.off import off_routes
from engine.api.routes.reading import read_model
from engine.api.server.router import Request, Response, Router, json_response, streaming
from engine.shell.logread import first_seq_at
from engine.shell.readmodel import parse_event_time, parse_event_until
from events.follow import follow


def system_routes(ctx: Any) -> Router:
    r = Router()
    model = read_model(ctx)

    @r.route("GET", "/version")
    async def version(req: Request) -> Response:
        return json_response(reads.version(model))

    @r.route("GET", "/info")
    async def info(req: Request) -> Response:
        host = await trio.to_thread.run_sync(model.host, True)
        return json_response(reads.info(model, host))

    @r.route("GET", "/events")
    async def events(req: Request) -> Response:
        now = ctx.clock()
        since = parse_event_time(req.arg("since"), now)
        until = parse_event_until(req.arg("until"), now)
        filters = parse_filters(req.arg("filters"))
        converter = DockerEvents(lambda: ctx.engine.state)
        head = ctx.store.head()
        # Start where `since` begins (a binary search over seq), not at the log's first event.
        after = head if since is None else max(first_seq_at(ctx.store, since) - 1, 0)
        # With an `until` in the past the stream is history only: it ends at today's head.
        history_only = until is not None and until <= now

        async def body() -> AsyncIterator[bytes]:
            if history_only and after >= head:
                return
            stream: AsyncIterator[Any] = follow(ctx.store, ctx.writer, after_seq=after)
            if until is not None and not history_only:
                # An `until` ahead: the stream ends then, even if nothing happens meanwhile.
                stream = _ending_at(stream, trio.current_time() + (until - now) / 1e9)
            async for env in stream:
                if until is not None and env.recorded_at > until:
                    return
                for msg in converter.convert_all(env):
                    if ((since is None or env.recorded_at >= since)
                            and (not filters or matches(msg, filters))):
                        yield msgspec.json.encode(msg) + b"\n"
                if history_only and env.seq >= head:
                    return

        return streaming(body())

    r.include(off_routes(ctx))  # swarm and plugins, answered as Docker with them off
    return r


async def _ending_at(events: AsyncIterator[Any], deadline: float) -> AsyncIterator[Any]:
    """`events` until the trio clock reaches `deadline`. The cancel scope wraps only the
    wait for the next event, never a `yield`, so it cannot catch the consumer's work."""
    nothing = object()
    while True:
        item = nothing
        with trio.move_on_at(deadline):
            try:
                item = await events.__anext__()
            except StopAsyncIteration:
                return
        if item is nothing:  # the deadline came first; the cancelled `events` has ended
            return
        yield item
