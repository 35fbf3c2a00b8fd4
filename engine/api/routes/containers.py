"""Docker API handlers for containers: create, list, inspect, start, stop, kill, restart,
wait, pause, unpause, rename, remove.

I/O: none directly; each handler calls the engine service (which appends and supervises)
or reads the projection. Streams (logs, attach, exec, top) live in `routes_streams.py`.
"""

from __future__ import annotations

from typing import Any

import msgspec
import trio

from engine.api.docker import reads, render
from engine.api.docker.models import (
    ContainerCreateBody,
    ContainerCreateResponse,
    ContainerWaitResponse,
    HostConfig,
    WaitExitError,
)
from engine.api.docker.translate import (
    create_body_to_config,
    merge_image_defaults,
    update_changes,
)
from engine.api.routes.reading import read_model
from engine.api.server.router import Request, Response, Router, empty, json_response
from engine.core.errors import InvalidArgument
from engine.core.lookup import find_container, find_image
from engine.core.signals import signal_name
from engine.core.validate import check_name
from events.values import ContainerConfig
from projections.fold import UPDATE_FIELDS


def _config(state: Any, fields: dict[str, Any], env: list[str]) -> ContainerConfig:
    """The user's settings over the image's defaults (Docker's `runconfig.Merge`)."""
    image = find_image(state, fields["image"])
    merged, _ = merge_image_defaults(fields, env, image.config)
    clean = {k: v for k, v in merged.items() if v is not None}
    return ContainerConfig(image_id="", **clean)


def container_routes(ctx: Any) -> Router:
    """`ctx` is the daemon context: `.engine`, `.paths`, `.clock()`."""
    r = Router()
    engine = ctx.engine
    summaries = render.SummaryCache()  # `ps` over thousands of containers
    model = read_model(ctx)

    @r.route("POST", "/containers/create")
    async def create(req: Request) -> Response:
        body = await req.json(ContainerCreateBody)
        name = (req.arg("name") or "").lstrip("/")
        if name:
            check_name(name)
        fields, env, warnings = create_body_to_config(body, name=name)
        if fields.get("network_mode") in ("default", ""):
            fields["network_mode"] = "bridge"  # Docker's default network
        cid, more = await engine.create_container(
            name=name, config=_config(engine.state, fields, env), env=env, actor=req.actor
        )
        return json_response(ContainerCreateResponse(Id=cid, Warnings=warnings + more), 201)

    @r.route("GET", "/containers/json")
    async def list_(req: Request) -> Response:
        if req.bool("size"):  # walks the writable layers: not on the event loop
            body = await trio.to_thread.run_sync(reads.container_list, model, req, summaries)
        else:
            body = reads.container_list(model, req, summaries)
        return Response(200, [("Content-Type", "application/json")], body)

    @r.route("GET", "/containers/{id}/json")
    async def inspect(req: Request) -> Response:
        return json_response(reads.container_inspect(model, req.params["id"]))

    @r.route("POST", "/containers/{id}/start")
    async def start(req: Request) -> Response:
        started = await engine.start(req.params["id"], req.actor)
        return empty(204 if started else 304)

    @r.route("POST", "/containers/{id}/stop")
    async def stop(req: Request) -> Response:
        stopped = await engine.stop(
            req.params["id"], req.actor, timeout=req.int("t"), signal=req.arg("signal")
        )
        return empty(204 if stopped else 304)

    @r.route("POST", "/containers/{id}/kill")
    async def kill(req: Request) -> Response:
        sig = req.arg("signal") or "SIGKILL"
        await engine.kill(req.params["id"], req.actor, signal=signal_name(sig))
        return empty(204)

    @r.route("POST", "/containers/{id}/restart")
    async def restart(req: Request) -> Response:
        await engine.restart(req.params["id"], req.actor, timeout=req.int("t"))
        return empty(204)

    @r.route("POST", "/containers/{id}/pause")
    async def pause(req: Request) -> Response:
        await engine.pause(req.params["id"], req.actor, pause=True)
        return empty(204)

    @r.route("POST", "/containers/{id}/unpause")
    async def unpause(req: Request) -> Response:
        await engine.pause(req.params["id"], req.actor, pause=False)
        return empty(204)

    @r.route("POST", "/containers/{id}/rename")
    async def rename(req: Request) -> Response:
        new = req.arg("name")
        if not new:
            raise InvalidArgument("name is required", hint="shipslog rename OLD NEW")
        await engine.rename(req.params["id"], new, req.actor)
        return empty(204)

    @r.route("POST", "/containers/{id}/update")
    async def update(req: Request) -> Response:
        body = await req.json(HostConfig)
        raw = await req.json(dict[str, Any])  # which keys were sent, for the warnings
        changes, warnings = update_changes(body, raw)
        find_container(engine.state, req.params["id"])  # 404 before anything else
        if any(getattr(changes, k) is not None for k in UPDATE_FIELDS):
            await engine.update(req.params["id"], changes, req.actor)
        return json_response({"Warnings": warnings})

    @r.route("DELETE", "/containers/{id}")
    async def remove(req: Request) -> Response:
        if req.bool("link"):  # `rm --link NAME` names a link, never the container itself
            await engine.remove_link(req.params["id"], req.actor)
            return empty(204)
        await engine.remove(
            req.params["id"], req.actor, force=req.bool("force"), volumes=req.bool("v")
        )
        return empty(204)

    @r.route("DELETE", "/containers/{parent}/{alias}")
    async def remove_link(req: Request) -> Response:
        """`docker rm --link /web/db` (the CLI trims the leading slash)."""
        if not req.bool("link"):
            raise InvalidArgument("a container name has no '/'",
                                  hint="to remove a link, pass link=1 (docker rm --link)")
        await engine.remove_link(f"{req.params['parent']}/{req.params['alias']}", req.actor)
        return empty(204)

    @r.route("POST", "/containers/{id}/wait", cancel_on_disconnect=True)
    async def wait(req: Request) -> Response:
        condition = req.arg("condition") or "not-running"
        if condition not in ("not-running", "next-exit", "removed"):
            raise InvalidArgument(
                f"invalid condition: {condition!r}", hint="use not-running, next-exit or removed"
            )
        c = find_container(engine.state, req.params["id"])
        waiting = engine.wait(c.id, condition)

        async def body() -> Any:
            # The server sends the headers before the first chunk, so the client knows the
            # wait has begun before it starts the container (`docker run --rm` relies on it).
            done = await waiting
            # A removal clears the container's error (moby State.SetRemoved): `docker run --rm`
            # of a container that failed to start hears no "Error waiting for container".
            error = WaitExitError(Message=done.error) if done.error and condition != "removed" \
                else None
            yield (
                msgspec.json.encode(ContainerWaitResponse(StatusCode=done.exit_code, Error=error))
                + b"\n"
            )

        return Response(200, [("Content-Type", "application/json")], stream=body())

    return r
