"""`POST /containers/prune` (`docker container prune`, and half of `docker system prune`):
remove every stopped container, or those the `until` / `label` filters pick.

I/O: measures each container's writable layer before it goes (SpaceReclaimed); the removals
themselves are ordinary `rm` operations, recorded with the caller as actor. A container that
starts or is taken meanwhile is skipped, as Docker skips it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from engine.api.docker.translate import labels_match, parse_filters
from engine.api.server.router import Request, Response, Router, json_response
from engine.core.errors import InvalidArgument, ShipslogError
from engine.core.units import parse_go_duration
from engine.shell.files import rw_size
from engine.shell.readmodel import parse_event_time
from projections.state import ContainerView

STOPPED = ("created", "exited", "dead")
PRUNE_FILTERS = ("until", "label", "label!")


def until_of(value: str, now_ns: int) -> int | None:
    """A prune `until`: Unix time, RFC 3339, or a Go duration before now (`24h`)."""
    try:
        return now_ns - int(parse_go_duration(value) * 1e9)
    except ValueError:
        return parse_event_time(value, now_ns)


def check_filters(filters: dict[str, list[str]], now_ns: int) -> None:
    for key in filters:
        if key not in PRUNE_FILTERS:
            raise InvalidArgument(f"invalid filter {key!r}",
                                  hint="container prune takes until, label and label!")
    for value in filters.get("until", []):
        if until_of(value, now_ns) is None:
            raise InvalidArgument(f"invalid until {value!r}")


def prunable(c: ContainerView, filters: dict[str, list[str]], now_ns: int) -> bool:
    """Stopped, and matching every filter (Docker's `until` takes the newest cut-off)."""
    if c.status not in STOPPED:
        return False
    if "until" in filters:
        cutoffs = [until_of(v, now_ns) for v in filters["until"]]
        if any(cut is not None and c.created_at >= cut for cut in cutoffs):
            return False
    if "label" in filters and not labels_match(c.config.labels, filters["label"]):
        return False
    return not ("label!" in filters
                and any(labels_match(c.config.labels, [want]) for want in filters["label!"]))


def prune_routes(ctx: Any) -> Router:
    r = Router()
    engine = ctx.engine

    @r.route("POST", "/containers/prune")
    async def prune_containers(req: Request) -> Response:
        filters = parse_filters(req.arg("filters"))
        now = ctx.clock()
        check_filters(filters, now)
        chosen = [c for c in engine.state.containers.values() if prunable(c, filters, now)]
        root = Path(ctx.paths.root)
        deleted, reclaimed = [], 0
        for c in chosen:
            size = await trio.to_thread.run_sync(rw_size, root, c.id)
            try:
                await engine.remove(c.id, req.actor)
            except ShipslogError:
                continue  # started or removed meanwhile: it stays out of the answer
            deleted.append(c.id)
            reclaimed += size
        return json_response({"ContainersDeleted": deleted or None,
                              "SpaceReclaimed": reclaimed})

    return r
