"""Docker API handlers for images: list, inspect, remove, tag, load, save and import.

I/O: none directly; byte-moving work goes through `engine.shell.images` (worker threads),
everything else through the engine service and the projection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec

from engine.api.docker import reads, render
from engine.api.docker.translate import parse_filters
from engine.api.routes.reading import read_model
from engine.api.routes.registry import pull_response
from engine.api.server.router import Request, Response, Router, empty, json_response, streaming
from engine.core.errors import InvalidArgument, ShipslogError
from engine.core.image_reference import InvalidReference, parse_reference
from engine.core.lookup import find_image


def _line(obj: dict[str, Any]) -> bytes:
    return msgspec.json.encode(obj) + b"\r\n"


def tag_target(repo: str, tag: str) -> str:
    """`repo` and `tag` checked with Docker's reference grammar (moby RepoTagReference):
    `a:b:c` or a non-ASCII name is "invalid reference format", a bad tag "invalid tag
    format" (400), before anything is recorded; a tag given apart replaces one in `repo`."""
    ref = parse_reference(repo, default_tag=False)
    if not tag:
        return repo
    try:
        return ref.with_tag(tag).familiar
    except InvalidReference:
        raise InvalidReference("invalid tag format", "a tag is 1-128 of [A-Za-z0-9_.-] and "
                               "cannot start with '.' or '-'") from None


async def _one(line: bytes) -> AsyncIterator[bytes]:
    yield line


def image_routes(ctx: Any) -> Router:
    r = Router()
    engine = ctx.engine
    ops = ctx.images
    model = read_model(ctx)

    @r.route("GET", "/images/json")
    async def list_(req: Request) -> Response:
        return json_response(reads.image_list(model, req))

    @r.route("GET", "/images/{name:path}/json")
    async def inspect(req: Request) -> Response:
        return json_response(reads.image_inspect(model, req.params["name"]))

    @r.route("GET", "/images/{name:path}/history")
    async def history(req: Request) -> Response:
        return json_response(reads.image_history(model, req.params["name"]))

    @r.route("DELETE", "/images/{name:path}")
    async def remove(req: Request) -> Response:
        name = req.params["name"]
        img = find_image(engine.state, name)
        before = set(img.repo_tags)
        await engine.remove_image(name, req.actor, force=req.bool("force"))
        out: list[dict[str, str]] = []
        after = engine.state.images.get(img.id)
        for tag in sorted(before - set(after.repo_tags if after else ())):
            out.append({"Untagged": tag})
        if after is None:
            out.append({"Deleted": img.id})
        return json_response(out)

    @r.route("POST", "/images/prune")
    async def prune(req: Request) -> Response:
        filters = parse_filters(req.arg("filters"))
        dangling = filters.pop("dangling", ["true"])
        if filters or dangling[0] not in ("true", "1", "false", "0"):
            raise InvalidArgument(f"invalid filter for image prune: {req.arg('filters')}",
                                  hint='use {"dangling": ["true"]} or {"dangling": ["false"]}')
        removed = await engine.prune_images(req.actor, dangling_only=dangling[0] in ("true", "1"))
        deleted: list[dict[str, str]] = []
        for img in removed:
            deleted += [{"Untagged": t} for t in img.repo_tags] + [{"Deleted": img.id}]
        return json_response({"ImagesDeleted": deleted or None,
                              "SpaceReclaimed": sum(img.size for img in removed)})

    @r.route("POST", "/images/{name:path}/tag")
    async def tag(req: Request) -> Response:
        repo = req.arg("repo")
        if not repo:
            raise InvalidArgument("repository name is required", hint="shipslog tag SRC DST")
        await engine.tag(req.params["name"], tag_target(repo, req.arg("tag") or ""),
                         req.actor)
        return empty(201)

    @r.route("POST", "/images/load", stream_body=True)
    async def load(req: Request) -> Response:
        try:
            images = await ops.load(req.stream_body(), req.actor)
        except ShipslogError as exc:
            # moby postImagesLoad: the answer is always 200, a refused archive an errorDetail
            # message in its stream (the docker CLI and the SDK read it from there).
            return streaming(_one(_line({"errorDetail": {"message": exc.message},
                                         "error": exc.message})))

        async def body() -> AsyncIterator[bytes]:
            for img in images:
                names = img.repo_tags or (img.image_id,)
                for n in names:
                    what = "Loaded image" if img.repo_tags else "Loaded image ID"
                    yield _line({"stream": f"{what}: {n}\n"})

        return streaming(body())

    @r.route("POST", "/images/create", stream_body=True)
    async def create(req: Request) -> Response:
        src = req.arg("fromSrc")
        if src is None:
            return await pull_response(ctx, req)
        if src != "-":
            raise InvalidArgument(
                "import from a URL is not supported", hint="pipe the file: shipslog import FILE.tar"
            )
        repo = req.arg("repo") or ""
        tag = req.arg("tag")
        tags = [repo + (":" + tag if tag else "")] if repo else []
        # `import -c`: Docker's --change subset, checked before anything is recorded (issue 12)
        from engine.shell.build.builder import _arch
        from engine.shell.build.commit import config_from_changes
        config = config_from_changes(req.query.get("changes", []), _arch())
        img = await ops.import_(
            req.stream_body(),
            req.actor,
            repo_tags=tags,
            source="-",
            created=render.rfc3339(ctx.clock()),
            config=config,
        )

        async def body() -> AsyncIterator[bytes]:
            yield _line({"status": img.image_id})

        return streaming(body())

    @r.route("GET", "/images/get")
    async def save_many(req: Request) -> Response:
        names = req.query.get("names", [])
        if not names:
            raise InvalidArgument("no image names given", hint="shipslog save IMAGE...")
        return streaming(await ops.save(names), content_type="application/x-tar")

    @r.route("GET", "/images/{name:path}/get")
    async def save_one(req: Request) -> Response:
        return streaming(await ops.save([req.params["name"]]), content_type="application/x-tar")

    return r
