"""Pushing an image: blobs the registry lacks, then the manifest — recorded as events.

I/O: network (through `RegistryClient`), the content store (reads, in worker threads), the
event log. Steps, as `docker push` takes them (distribution spec, "Pushing blobs"):

1. For each layer and the config: `HEAD /v2/<name>/blobs/<digest>` — present: skip it
   ("Layer already exists").
2. Else, when the image came from (or was pushed to) another repository of the same registry,
   try a cross-repository mount: `POST …/blobs/uploads/?mount=<digest>&from=<repo>` — 201 means
   done ("Mounted from <repo>"); 202 starts an ordinary upload.
3. Else `POST …/blobs/uploads/`, then either one `PUT <location>?digest=` with the whole blob
   (monolithic) or `PATCH` chunks with `Content-Range` and a final `PUT` (chunked, for blobs
   over `chunk_size`).
4. `PUT /v2/<name>/manifests/<tag>` with the OCI manifest; the digest the registry answers is
   checked against our own and recorded in `ImagePushed`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin

import trio

from engine.core.errors import ShipslogError
from engine.core.image_documents import (
    MAX_CONFIG_BYTES,
    MT_OCI_CONFIG,
    MT_OCI_MANIFEST,
    canonical_json,
)
from engine.core.image_reference import Reference, parse_reference
from engine.drivers.layers.content import ContentStore, sha256_bytes
from engine.registry.challenge import push_scope
from engine.registry.client import RegistryClient, RegistryError
from engine.shell.image_archive import _layer_media_type
from engine.shell.journal import Journal
from events import vocabulary as v
from events.envelope import Actor, Pending, stream_of
from projections.state import ImageView

Emit = Callable[[dict[str, Any]], Awaitable[None]]
CHUNK = 1 << 20


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    media_type: str


class Pusher:
    def __init__(self, journal: Journal, content: ContentStore, *, concurrency: int = 5,
                 chunk_size: int = 64 << 20) -> None:
        self.journal = journal
        self.content = content
        self.limiter = trio.CapacityLimiter(concurrency)
        self.chunk_size = chunk_size

    async def push(self, client: RegistryClient, ref: Reference, img: ImageView, actor: Actor,
                   emit: Emit) -> str:
        """Push `img` as `ref` (a tag); return the manifest digest."""
        op_id = self.journal.new_id()
        op = stream_of("op", op_id)
        await self.journal.append([Pending(stream=op, expected_version=0,
                                           event=v.OperationRequested(
                                               op_id=op_id, kind="image.push",
                                               target=stream_of("image", img.id),
                                               args={"reference": ref.canonical}))],
                                  actor=actor, op_id=op_id)
        try:
            digest, size = await self._push(client, ref, img, emit)
            await self.journal.append([
                Pending(stream=stream_of("image", img.id), event=v.ImagePushed(
                    image_id=img.id, reference=ref.familiar, digest=digest)),
                Pending(stream=op, event=v.OperationCompleted(op_id=op_id)),
            ], actor=actor, op_id=op_id)
        except BaseException as exc:
            leaf = exc
            while isinstance(leaf, BaseExceptionGroup):
                leaf = leaf.exceptions[0]
            reason = leaf.message if isinstance(leaf, ShipslogError) else repr(leaf)[:200]
            with trio.CancelScope(shield=True):
                try:
                    await self.journal.append([Pending(stream=op, event=v.OperationFailed(
                        op_id=op_id, step="push", error=reason))], actor=actor, op_id=op_id)
                except Exception:  # noqa: BLE001 - the log is closing; recovery compensates
                    pass
            if isinstance(exc, BaseExceptionGroup) and isinstance(leaf, ShipslogError):
                raise leaf from None
            raise
        await emit({"status": f"{ref.tag}: digest: {digest} size: {size}"})
        await emit({"progressDetail": {}, "aux": {"Tag": ref.tag, "Digest": digest,
                                                  "Size": size}})
        return digest

    async def _push(self, client: RegistryClient, ref: Reference, img: ImageView,
                    emit: Emit) -> tuple[str, int]:
        await emit({"status": f"The push refers to repository [{ref.familiar_name}]"})
        raw_cfg = await trio.to_thread.run_sync(
            lambda: self.content.read_bytes(img.id, max_size=MAX_CONFIG_BYTES))
        layers = []
        for d in img.layer_digests or img.layers:
            mt = await trio.to_thread.run_sync(_layer_media_type, self.content, d)
            layers.append(Blob(d, self.content.size(d), mt))
        config = Blob(img.id, len(raw_cfg), MT_OCI_CONFIG)
        sources = _mount_sources(img, ref)
        # Authenticate for push before any body is sent (a 401 would consume a stream body).
        await client.ping()
        for layer in layers:
            await emit({"status": "Preparing", "id": layer.digest[7:19], "progressDetail": {}})
        async with trio.open_nursery() as nursery:
            for layer in reversed(layers):
                nursery.start_soon(self._blob, client, ref, layer, sources, emit, True)
        await self._blob(client, ref, config, sources, emit, False)
        manifest = canonical_json({
            "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": config.media_type, "digest": config.digest,
                       "size": config.size},
            "layers": [{"mediaType": b.media_type, "digest": b.digest, "size": b.size}
                       for b in layers]})
        digest = sha256_bytes(manifest)
        resp = await client.request("PUT", f"/v2/{ref.path}/manifests/{ref.tag}",
                                    scope=push_scope(ref.path), content=manifest,
                                    headers={"Content-Type": MT_OCI_MANIFEST}, ok=(201, 200))
        await resp.aclose()
        named = resp.headers.get("docker-content-digest", "")
        if named and named != digest:
            raise RegistryError(f"the registry stored the manifest as {named[:80]}, we sent "
                                f"{digest}", "the registry altered the manifest")
        return digest, len(manifest)

    async def _blob(self, client: RegistryClient, ref: Reference, blob: Blob,
                    sources: list[str], emit: Emit, show: bool) -> None:
        short = blob.digest[7:19]
        scope = push_scope(ref.path)
        async with self.limiter:
            head = await client.request("HEAD", f"/v2/{ref.path}/blobs/{blob.digest}",
                                        scope=scope, ok=(200, 404))
            await head.aclose()
            if head.status_code == 200:
                if show:
                    await emit({"status": "Layer already exists", "id": short,
                                "progressDetail": {}})
                return
            location = ""
            for src in sources:
                q = urlencode({"mount": blob.digest, "from": src})
                resp = await client.request("POST", f"/v2/{ref.path}/blobs/uploads/?{q}",
                                            scope=f"{scope} repository:{src}:pull",
                                            ok=(201, 202))
                await resp.aclose()
                if resp.status_code == 201:
                    if show:
                        await emit({"status": f"Mounted from {src}", "id": short,
                                    "progressDetail": {}})
                    return
                location = _location(resp)
                break
            if not location:
                resp = await client.request("POST", f"/v2/{ref.path}/blobs/uploads/",
                                            scope=scope, ok=(202,))
                await resp.aclose()
                location = _location(resp)
            await self._upload(client, location, blob, scope, emit if show else None)
            if show:
                await emit({"status": "Pushed", "id": short, "progressDetail": {}})

    async def _upload(self, client: RegistryClient, location: str, blob: Blob, scope: str,
                      emit: Emit | None) -> None:
        short = blob.digest[7:19]
        sent = 0

        async def body(start: int, length: int) -> AsyncIterator[bytes]:
            nonlocal sent
            f = await trio.to_thread.run_sync(self.content.open, blob.digest)
            try:
                await trio.to_thread.run_sync(f.seek, start)
                left = length
                while left > 0:
                    chunk = await trio.to_thread.run_sync(f.read, min(CHUNK, left))
                    if not chunk:
                        raise RegistryError(f"blob {short} shrank while pushing")
                    left -= len(chunk)
                    sent += len(chunk)
                    yield chunk
                    if emit is not None:
                        await emit({"status": "Pushing", "id": short, "progressDetail": {
                            "current": sent, "total": blob.size}})
            finally:
                f.close()

        length_hdr = {"Content-Type": "application/octet-stream"}
        if blob.size <= self.chunk_size:
            url = _with_query(location, {"digest": blob.digest})
            resp = await client.request("PUT", url, scope=scope, retry=False,
                                        content=body(0, blob.size), ok=(201, 204),
                                        headers=dict(length_hdr,
                                                     **{"Content-Length": str(blob.size)}))
            await resp.aclose()
            return
        offset = 0
        while offset < blob.size:
            n = min(self.chunk_size, blob.size - offset)
            resp = await client.request(
                "PATCH", location, scope=scope, retry=False, content=body(offset, n),
                ok=(202,), headers=dict(length_hdr, **{
                    "Content-Length": str(n),
                    "Content-Range": f"{offset}-{offset + n - 1}"}))
            await resp.aclose()
            location = _location(resp)
            offset += n
        resp = await client.request("PUT", _with_query(location, {"digest": blob.digest}),
                                    scope=scope, retry=False, content=b"", ok=(201, 204))
        await resp.aclose()


def _location(resp: Any) -> str:
    loc = resp.headers.get("location", "")
    if not loc:
        raise RegistryError("the registry started an upload without a Location")
    return urljoin(str(resp.url), loc)


def _with_query(url: str, params: dict[str, str]) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


def _mount_sources(img: ImageView, ref: Reference) -> list[str]:
    """Other repositories of the same registry that hold this image's blobs."""
    out: list[str] = []
    for name in (*img.repo_digests, *img.repo_tags):
        try:
            other = parse_reference(name)
        except ShipslogError:
            continue
        if other.domain == ref.domain and other.path != ref.path and other.path not in out:
            out.append(other.path)
    return out[:3]
