"""Docker API handlers for volumes: list, create, inspect, remove, prune.

I/O: none directly; the engine service appends and the supervisor creates or deletes the
volume's directory through the local driver.
"""

from __future__ import annotations

from typing import Any

import msgspec

from engine.api.docker import reads
from engine.api.docker.reads import render_volume, volume_matches
from engine.api.docker.translate import parse_filters
from engine.api.routes.reading import read_model
from engine.api.server.router import Request, Response, Router, empty, json_response
from engine.core.errors import ShipslogError
from engine.core.lookup import find_volume
from engine.core.volumes import volume_users


class VolumeCreateBody(msgspec.Struct, kw_only=True):
    Name: str | None = None
    Driver: str | None = None
    DriverOpts: dict[str, str] | None = None
    Labels: dict[str, str] | None = None


def volume_routes(ctx: Any) -> Router:
    r = Router()
    engine = ctx.engine
    model = read_model(ctx)

    @r.route("GET", "/volumes")
    async def list_(req: Request) -> Response:
        return json_response(reads.volume_list(model, req))

    @r.route("POST", "/volumes/create")
    async def create(req: Request) -> Response:
        body = await req.json(VolumeCreateBody, required=False) or VolumeCreateBody()
        name = await engine.create_volume(
            body.Name or "", req.actor, driver=body.Driver or "local",
            labels=body.Labels or {}, options=body.DriverOpts or {})
        state = engine.state
        return json_response(render_volume(state, find_volume(state, name), ctx.paths.root),
                             201)

    @r.route("GET", "/volumes/{name}")
    async def inspect(req: Request) -> Response:
        return json_response(reads.volume_inspect(model, req.params["name"]))

    @r.route("DELETE", "/volumes/{name}")
    async def remove(req: Request) -> Response:
        await engine.remove_volume(req.params["name"], req.actor, force=req.bool("force"))
        return empty(204)

    @r.route("POST", "/volumes/prune")
    async def prune(req: Request) -> Response:
        state = engine.state
        filters = parse_filters(req.arg("filters"))
        everything = filters.pop("all", ["false"])[0] in ("true", "1")
        deleted = []
        for vol in list(state.volumes.values()):
            if volume_users(state, vol.name) or not volume_matches(state, vol, filters):
                continue
            if not vol.anonymous and not everything:
                continue  # Docker 23+: prune takes anonymous volumes unless --all
            try:
                await engine.remove_volume(vol.name, req.actor)
                deleted.append(vol.name)
            except ShipslogError:
                continue  # taken meanwhile: it stays
        return json_response({"VolumesDeleted": deleted, "SpaceReclaimed": 0})

    return r
