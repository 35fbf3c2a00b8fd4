"""Docker API handlers for registries: pull (`POST /images/create?fromImage=`, dispatched
from `routes_images`), `POST /images/{name}/push`, and `POST /auth`.

I/O: none directly; the work runs in `engine.registry.service.RegistryService` (network,
stores, log). References are parsed strictly before anything else happens (RELIABILITY
I-01): a bad one is a 400 and appends nothing. Errors found before the first progress
message (no such image, access denied, unreachable registry) are HTTP errors, as Docker's;
later ones end the 200 stream with Docker's `{"errorDetail": …, "error": …}` message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import trio

from engine.api.docker.translate import parse_filters
from engine.api.server.router import Request, Response, Router, json_response, streaming
from engine.core.errors import InvalidArgument, NotFound, ShipslogError
from engine.core.image_reference import parse_reference
from engine.core.lookup import find_image
from engine.registry.auth import Credentials, from_registry_auth
from engine.registry.client import RegistryUnauthorized
from engine.registry.distribution import distribution_inspect, search
from engine.registry.manifest import parse_platform
from engine.registry.service import Message, RegistryService

_ATTR = "_registry_service"


def registry_service(ctx: Any) -> RegistryService:
    """The daemon's one RegistryService, made on first use and kept on the context."""
    svc = getattr(ctx, _ATTR, None)
    if svc is None:
        svc = RegistryService.from_env(ctx.images.journal, ctx.images.content,
                                       ctx.images.layers)
        setattr(ctx, _ATTR, svc)
    return svc


def _line(obj: dict[str, Any]) -> bytes:
    return msgspec.json.encode(obj) + b"\r\n"


def _error_message(exc: ShipslogError) -> dict[str, Any]:
    return {"errorDetail": {"message": exc.message}, "error": exc.message}


async def _stream(svc: RegistryService,
                  work: Callable[[Callable[[Message], Awaitable[None]]], Awaitable[None]]
                  ) -> Response:
    recv = await svc.start(work)
    first: Message | ShipslogError | None
    try:
        first = await recv.receive()
    except trio.EndOfChannel:
        first = None
    if isinstance(first, ShipslogError):
        recv.close()
        raise first

    async def body() -> AsyncIterator[bytes]:
        with recv:
            if first is not None:
                yield _line(first)
            async for item in recv:
                yield _line(_error_message(item) if isinstance(item, ShipslogError) else item)

    return streaming(body())


def _creds(req: Request) -> Credentials | None:
    return from_registry_auth(req.headers.get("x-registry-auth"))


async def pull_response(ctx: Any, req: Request) -> Response:
    """`POST /images/create?fromImage=NAME&tag=TAG|DIGEST&platform=…`."""
    name = req.arg("fromImage") or ""
    tag = req.arg("tag") or ""
    if tag:
        name += ("@" if tag.startswith("sha256:") else ":") + tag
    ref = parse_reference(name)
    platform = parse_platform(req.arg("platform") or "") if req.arg("platform") else None
    creds = _creds(req)
    svc = registry_service(ctx)

    async def work(emit: Callable[[Message], Awaitable[None]]) -> None:
        await svc.pull(ref, platform, creds, req.actor, emit)

    try:
        return await _stream(svc, work)
    except RegistryUnauthorized as exc:
        # Docker answers a refused pull with 500 (moby distribution translatePullError:
        # errdefs.Unknown); on a 401 the docker CLI asks for a login on the terminal, and a
        # CI job waits there for ever.
        raise ShipslogError(exc.message, exc.hint) from None


def _search_limit(raw: str) -> int:
    """moby: strconv.Atoi, then 0 means 25 and the rest must be within [1, 100]."""
    try:
        limit = int(raw) if raw else 0
    except ValueError:
        raise InvalidArgument(f'invalid limit specified: strconv.Atoi: parsing "{raw}": '
                              "invalid syntax", hint="give a number from 1 to 100") from None
    if limit < 0:
        raise InvalidArgument("invalid limit specified", hint="give a number from 1 to 100")
    limit = limit or 25
    if limit > 100:
        raise InvalidArgument(f"limit {limit} is outside the range of [1, 100]",
                              hint="give a number from 1 to 100")
    return limit


def _check_search_filters(filters: dict[str, list[str]]) -> None:
    for key in ("is-official", "is-automated"):
        for value in filters.get(key, []):
            if value not in ("true", "false", "1", "0"):
                raise InvalidArgument(f"invalid filter '{key}={value}'",
                                      hint="use true or false")
    for value in filters.get("stars", []):
        if not value.isdigit():
            raise InvalidArgument(f"invalid filter 'stars={value}'", hint="use a number")


def _search_match(result: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    for key, flag in (("is-official", "is_official"), ("is-automated", "is_automated")):
        if any(result[flag] != (value in ("true", "1")) for value in filters.get(key, [])):
            return False
    return all(result["star_count"] >= int(value) for value in filters.get("stars", []))


def registry_routes(ctx: Any) -> Router:
    r = Router()

    @r.route("POST", "/images/{name:path}/push")
    async def push(req: Request) -> Response:
        name = req.params["name"]
        tag = req.arg("tag") or ""
        ref = parse_reference(name + (":" + tag if tag else ""), default_tag=False)
        if ref.digest:
            raise InvalidArgument("cannot push a digest reference", hint="push NAME[:TAG]")
        state = ctx.engine.state
        if ref.tag:
            targets = [ref]
        else:
            targets = sorted({parse_reference(t) for img in state.images.values()
                              for t in img.repo_tags
                              if parse_reference(t).repository == ref.repository},
                             key=lambda x: x.tag)
            if not targets:
                raise NotFound(f"An image does not exist locally with the tag: {name}",
                               hint="tag an image first: shipslog tag IMAGE " + name)
        images = [find_image(state, t.familiar) for t in targets]
        creds = _creds(req)
        svc = registry_service(ctx)

        async def work(emit: Callable[[Message], Awaitable[None]]) -> None:
            for t, img in zip(targets, images, strict=True):
                await svc.push(t, img, creds, req.actor, emit)

        return await _stream(svc, work)

    @r.route("GET", "/distribution/{name:path}/json")
    async def distribution(req: Request) -> Response:
        ref = parse_reference(req.params["name"])
        svc = registry_service(ctx)
        creds = await svc.credentials_for(ref.domain, _creds(req))
        try:
            doc = await distribution_inspect(svc.client(ref.domain, creds), ref,
                                             svc.puller._fetch_document)
        except RegistryUnauthorized as exc:
            # Docker: a registry's UNAUTHORIZED is 401, but a basic challenge with no
            # credentials fails in its transport, which is a 500.
            if exc.message.endswith("no basic auth credentials"):
                raise ShipslogError(exc.message, exc.hint) from None
            raise
        return json_response(doc)

    @r.route("GET", "/images/search")
    async def search_images(req: Request) -> Response:
        filters = parse_filters(req.arg("filters"), ("is-automated", "is-official", "stars"))
        _check_search_filters(filters)
        limit = _search_limit(req.arg("limit") or "")
        svc = registry_service(ctx)
        results = await search(svc.transport, req.arg("term") or "", limit, svc.insecure)
        return json_response([x for x in results if _search_match(x, filters)])

    @r.route("POST", "/auth")
    async def auth(req: Request) -> Response:
        body = await req.json(dict[str, Any])
        server = str(body.get("serveraddress") or "https://index.docker.io/v1/")
        domain = server.split("://", 1)[-1].split("/", 1)[0] or "docker.io"
        if domain in ("index.docker.io", "registry-1.docker.io"):
            domain = "docker.io"
        parse_reference(domain + "/x")  # the host must be a valid registry domain (I-01)
        creds = Credentials(username=str(body.get("username") or ""),
                            password=str(body.get("password") or ""),
                            identity_token=str(body.get("identitytoken") or ""))
        await registry_service(ctx).login(domain, creds)
        return json_response({"Status": "Login Succeeded", "IdentityToken": ""})

    return r
