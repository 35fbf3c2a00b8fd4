"""`GET /distribution/{name}/json` and `GET /images/search`: what a registry says about an
image without pulling it, and what an index finds for a term.

I/O: network (through `RegistryClient` and the daemon's `Transport`). Docker's shapes and
words: the descriptor of the manifest a tag names and the platforms it holds (moby
api/server/router/distribution); search asks the index's v1 endpoint
(`https://index.docker.io/v1/search?q=TERM&n=LIMIT`), and a failed request is a 500 with Go's
`Get "URL": why` (moby registry/search.go, errdefs.System).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote_plus

import httpx
import msgspec

from engine.core.errors import InvalidArgument, ShipslogError
from engine.core.image_reference import Reference
from engine.registry.challenge import DOCKER_HUB, endpoint, pull_scope
from engine.registry.client import MAX_ERROR_BYTES, RegistryClient, Transport, _read_capped
from engine.registry.manifest import parse_document

MAX_CONFIG_BYTES = 8 << 20
MAX_SEARCH_BYTES = 8 << 20
HUB_INDEX = "https://index.docker.io/v1/"

FetchDocument = Callable[[RegistryClient, Reference, str], Awaitable[tuple[str, str, bytes]]]


def _platform(p: Any) -> dict[str, Any]:
    """An OCI platform as Docker encodes one (ocispec.Platform: omitempty but for two)."""
    out: dict[str, Any] = {"architecture": getattr(p, "architecture", "") or "",
                           "os": getattr(p, "os", "") or ""}
    if getattr(p, "variant", ""):
        out["variant"] = p.variant
    return out


async def distribution_inspect(client: RegistryClient, ref: Reference,
                               fetch_document: FetchDocument) -> dict[str, Any]:
    """{"Descriptor": the manifest (or index) the reference names, "Platforms": [...]}."""
    digest, ctype, data = await fetch_document(client, ref, ref.digest or ref.tag)
    doc = parse_document(data, ctype)
    platforms: list[dict[str, Any]] = []
    if doc.index is not None:
        platforms = [_platform(m.platform) for m in doc.index.manifests if m.platform]
    elif doc.manifest is not None:
        config = await _blob(client, ref, doc.manifest.config.digest)
        try:
            p = msgspec.json.decode(config)
        except msgspec.DecodeError:
            p = None
        if isinstance(p, dict) and (p.get("os") or p.get("architecture")):
            platforms = [{"architecture": str(p.get("architecture") or ""),
                          "os": str(p.get("os") or "")}
                         | ({"variant": str(p["variant"])} if p.get("variant") else {})]
    return {"Descriptor": {"mediaType": doc.media_type, "digest": digest, "size": len(data)},
            "Platforms": platforms}


async def _blob(client: RegistryClient, ref: Reference, digest: str) -> bytes:
    resp = await client.request("GET", f"/v2/{ref.path}/blobs/{digest}",
                                scope=pull_scope(ref.path))
    try:
        return await _read_capped(resp, MAX_CONFIG_BYTES)
    finally:
        await resp.aclose()


def search_url(term: str, limit: int, insecure: tuple[str, ...] = ()) -> tuple[str, str]:
    """(index URL, remote name) for a search term: `reg:5000/name` asks that registry's
    index, anything else Docker Hub's (moby registry.splitReposSearchTerm)."""
    parts = term.split("/", 1)
    if len(parts) == 2 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        ep = endpoint(parts[0], insecure)
        base, name = f"{ep.base}/v1/", parts[1]
        if ep.domain == DOCKER_HUB:
            base = HUB_INDEX
    else:
        base, name = HUB_INDEX, term
    if not name:
        raise InvalidArgument("invalid search term: an empty name", hint="search for a name")
    return f"{base}search?q={quote_plus(name)}&n={limit}", name


async def search(transport: Transport, term: str, limit: int,
                 insecure: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The index's results, in Docker's SearchResult shape."""
    url, _ = search_url(term, limit, insecure)
    try:
        resp = await transport.http.send(transport.http.build_request(
            "GET", url, headers={"X-Docker-Token": "true"}), stream=True)
    except httpx.HTTPError as e:
        raise ShipslogError(f'Get "{url}": {_why(e)}',
                            "this host reaches no registry index") from None
    try:
        body = await _read_capped(resp, MAX_SEARCH_BYTES if resp.status_code == 200
                                  else MAX_ERROR_BYTES)
    finally:
        await resp.aclose()
    if resp.status_code != 200:
        raise ShipslogError(f"Unexpected status code {resp.status_code}",
                            "the index does not serve the v1 search API")
    try:
        doc = msgspec.json.decode(body)
        results = doc.get("results") or []
    except (msgspec.DecodeError, AttributeError):
        raise ShipslogError("invalid search results from the index") from None
    return [{"star_count": int(r.get("star_count") or 0),
             "is_official": bool(r.get("is_official")), "name": str(r.get("name") or ""),
             "is_automated": bool(r.get("is_automated")),
             "description": str(r.get("description") or "")}
            for r in results if isinstance(r, dict)]


def _why(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
