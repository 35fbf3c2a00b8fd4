"""Docker API `POST /build`: the classic builder's protocol (API v1.43): a tar context in the
body, a JSON message stream out (`stream`, `aux` {"ID"}, `errorDetail`).

I/O: the request body spooled to a temp file under the state root; the build itself goes
through engine/shell/build/builder.py. What the user can get wrong (context, Dockerfile, target)
is answered with a 4xx before the stream starts, as moby's postBuild does for errors found
before the first message.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import trio

from engine.api.routes.registry import registry_service
from engine.api.server.router import Request, Response, Router, json_response, streaming
from engine.core.errors import InvalidArgument, NotFound, ShipslogError
from engine.core.image_reference import parse_reference
from engine.core.lookup import find_image
from engine.registry.auth import from_registry_config
from engine.registry.manifest import parse_platform, platform_str
from engine.shell.build.builder import Builder, BuildOptions
from engine.shell.build.commit import commit
from engine.shell.build.session import to_lines
from projections.build_record import build_op_of, fold_build, provenance


def _json_map(req: Request, name: str) -> dict[str, str]:
    raw = req.arg(name)
    if not raw:
        return {}
    try:
        data = msgspec.json.decode(raw.encode())
    except msgspec.DecodeError:
        raise InvalidArgument(f"invalid {name}: not a JSON object") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"invalid {name}: not a JSON object")
    return {str(k): "" if val is None else str(val) for k, val in data.items()}


def options_from(req: Request) -> BuildOptions:
    args = _json_map(req, "buildargs")
    epoch = args.get("SOURCE_DATE_EPOCH")
    if epoch is not None and not epoch.isdigit():
        raise InvalidArgument(f"invalid SOURCE_DATE_EPOCH {epoch!r}: not a Unix time")
    network = req.arg("networkmode") or "bridge"
    if network == "default":
        network = "bridge"
    return BuildOptions(
        tags=[t for t in req.query.get("t", []) if t], dockerfile=req.arg("dockerfile") or
        "Dockerfile", build_args=args, target=req.arg("target") or "",
        no_cache=req.bool("nocache"), labels=_json_map(req, "labels"), network_mode=network,
        quiet=req.bool("q"), source_date_epoch=int(epoch) if epoch else None,
        pull=req.bool("pull"), platform=_platform(req.arg("platform") or ""))


def _platform(raw: str) -> str:
    """`?platform=`: validated and normalized (linux/x86_64 is linux/amd64); "" = the host."""
    if not raw:
        return ""
    return platform_str(parse_platform(raw))


def _puller(ctx: Any, req: Request, opts: BuildOptions
            ) -> Callable[[str, Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[str]]:
    """`build --pull`: FROM images come from their registry through the daemon's pull
    service (recorded as any pull is), its progress messages in the build's stream."""
    svc = registry_service(ctx)
    platform = parse_platform(opts.platform) if opts.platform else None

    async def pull(ref: str, emit: Callable[[dict[str, Any]], Awaitable[None]]) -> str:
        parsed = parse_reference(ref)
        # the docker CLI sends its logins for a build in X-Registry-Config; else ours are used
        creds = from_registry_config(req.headers.get("x-registry-config"), parsed.domain)
        result = await svc.pull(parsed, platform, creds, req.actor, emit)
        return result.image_id

    return pull


def build_routes(ctx: Any) -> Router:
    r = Router()

    @r.route("POST", "/build", stream_body=True)
    async def build(req: Request) -> Response:
        opts = options_from(req)
        builder = Builder(ctx.engine, ctx.images.content, ctx.images.layers, ctx.store,
                          ctx.paths.root)
        if opts.pull:
            builder.pull_image = _puller(ctx, req, opts)
        tmp = ctx.paths.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=tmp) as f:
            batch: list[bytes] = []
            size = 0
            async for chunk in req.stream_body():
                batch.append(chunk)
                size += len(chunk)
                if size >= 1 << 20:  # one thread hop per MiB, not per chunk
                    await trio.to_thread.run_sync(f.writelines, batch)
                    batch, size = [], 0
            await trio.to_thread.run_sync(f.writelines, batch)
            f.seek(0)
            prepared = await builder.prepare(f, opts)  # type: ignore[arg-type]

        async def body() -> AsyncIterator[bytes]:
            held: list[bytes] = []  # -q: the steps' output, sent only if the build fails
            async for msg in to_lines(lambda emit: builder.execute(prepared, req.actor, emit),
                                      ctx.engine.supervisor.spawn):
                if opts.quiet and "stream" in msg:
                    held.append(msgspec.json.encode(msg) + b"\r\n")
                    continue
                if held and "errorDetail" in msg:
                    # moby postBuild: a quiet build that fails flushes what it held back,
                    # which `docker build -q` prints before the error
                    yield b"".join(held)
                    held.clear()
                yield msgspec.json.encode(msg) + b"\r\n"
                if opts.quiet and isinstance(msg.get("aux"), dict) and msg["aux"].get("ID"):
                    # moby postBuild: with -q the one thing written is the image ID, which
                    # `docker build -q` prints
                    yield msgspec.json.encode({"stream": msg["aux"]["ID"] + "\n"}) + b"\r\n"

        return streaming(body())

    @r.route("POST", "/commit")
    async def commit_(req: Request) -> Response:
        ref = req.arg("container") or ""
        if not ref:
            raise InvalidArgument("no container given", hint="shipslog commit CONTAINER [REPO]")
        repo, tag = req.arg("repo") or "", req.arg("tag") or ""
        tags = [repo + (":" + tag if tag else "")] if repo else []
        builder = Builder(ctx.engine, ctx.images.content, ctx.images.layers, ctx.store,
                          ctx.paths.root)
        image_id = await commit(builder, ref, req.actor, repo_tags=tags,
                                changes=req.query.get("changes", []),
                                comment=req.arg("comment") or "",
                                author=req.arg("author") or "", pause=req.bool("pause", True))
        return json_response({"Id": image_id}, status=201)

    @r.route("POST", "/build/prune")
    async def prune(req: Request) -> Response:
        """The classic builder's cache is its untagged step images: remove those no
        container uses (each an image removal in the log, its layers collected)."""
        state = ctx.engine.state
        used = {c.config.image_id for c in state.containers.values()}
        doomed = [img for img in state.images.values()
                  if img.source == "built" and not img.repo_tags and img.id not in used]
        removed, reclaimed = [], 0
        for img in doomed:
            try:
                await ctx.engine.remove_image(img.id, req.actor)
            except ShipslogError:
                continue  # taken into use meanwhile: kept, as Docker keeps it
            removed.append(img.id)
            reclaimed += img.size
        return json_response({"CachesDeleted": removed or None, "SpaceReclaimed": reclaimed})

    @r.route("GET", "/shipslog/images/{name:path}/build")
    async def build_record(req: Request) -> Response:
        """How the image was built, from the log; `?format=slsa` for the provenance."""
        img = find_image(ctx.engine.state, req.params["name"])
        op_id = build_op_of(ctx.store.read(stream="image-" + img.id))
        if op_id is None:
            raise NotFound(f"image {req.params['name']} was not built here",
                           hint="only images built by shipslog build have a build record")
        rec = fold_build(op_id, ctx.store.read(op_id=op_id))
        if req.arg("format") == "slsa":
            return json_response(provenance(rec, subject_id=img.id, names=img.repo_tags,
                                            builder_id=f"shipslogd/{ctx.engine_id}"))
        return json_response(msgspec.to_builtins(rec))

    return r
