"""Pulling an image: resolve, download, verify, unpack, record — each step an event.

I/O: network (through `RegistryClient`), the content and layer stores (worker threads), the
event log (through the journal). The shape is `engine/shell/images.py`'s:

    OperationRequested(kind="image.pull") + ImagePullRequested     before any network I/O
    ImageManifestResolved(digest, media_type)                        the manifest we chose
    LayerDownloaded(digest, size) per blob                           verified and committed
    LayerUnpacked(digest, diff_id, size) per layer                   renamed into place
    ImagePulled(image_id, reference, digest, layers, config)         last: every layer is on disk
    OperationCompleted | OperationFailed(step, error)

A layer is streamed once from the network into two worker threads: the content store's ingest
(temp file, sha256, fsync, verify, rename) and the layer unpacker. The unpacker sees the end of
its input only after the tee has checked the blob's size and digest, so it never renames a
layer made of unverified bytes; a bad blob aborts both and leaves nothing (RELIABILITY I-11).
Layers unpack as they arrive, in any order (each is its own directory, keyed by diff_id).

Downloads are bounded by one limiter for the whole daemon (Docker's max-concurrent-downloads,
3) and single-flight per blob digest, layers and image configs alike (RELIABILITY L-01): a
second pull of a blob that is being fetched waits for the first and then finds it stored. A
download that fails for a reason of the blob or the registry (a digest mismatch, a 5xx after
retries) fails every waiter with the same error; one that ends without an error of its own
(its pull was cancelled, or its credentials were refused) leaves the blob to a waiter, which
fetches it with its own client. Cancelling a waiter only stops that waiter.

Progress goes out as Docker's JSON messages (`status`, `id`, `progressDetail`) through the
`emit` callback, so `docker pull` and the Docker SDK render it.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from engine.core.errors import ShipslogError, from_os_error
from engine.core.image_documents import (
    MAX_CONFIG_BYTES,
    MAX_INDEX_BYTES,
    MAX_INDEX_DEPTH,
    Descriptor,
    InvalidImage,
    ManifestDoc,
    Platform,
    parse_image_config,
)
from engine.core.image_reference import Reference
from engine.drivers.host import failpoints
from engine.drivers.host.info import machine_arch
from engine.drivers.layers.content import ContentStore, DigestMismatch
from engine.drivers.layers.unpack import LayerStore
from engine.registry.challenge import pull_scope
from engine.registry.client import (
    RegistryClient,
    RegistryError,
    RegistryNotFound,
    RegistryUnauthorized,
)
from engine.registry.manifest import (
    ACCEPT,
    ManifestError,
    normalize_platform,
    parse_document,
    platform_str,
    select_manifest,
)
from engine.registry.pipe import Pipe, PipeAborted, PipeReader
from engine.shell.image_gate import gate_for
from engine.shell.journal import Journal
from events import vocabulary as v
from events.envelope import Actor, Pending, stream_of

Emit = Callable[[dict[str, Any]], Awaitable[None]]
PROGRESS_STEP = 512 << 10  # emit Downloading at most every 512 KiB per layer


def host_platform() -> Platform:
    return normalize_platform(Platform(os="linux", architecture=machine_arch()))


@dataclass
class _Flight:
    """One blob download in progress; `error` is what its waiters raise too (None: nothing
    to share, a waiter fetches the blob itself)."""

    done: trio.Event = field(default_factory=trio.Event)
    error: ShipslogError | None = None


def _shared_error(exc: BaseException) -> ShipslogError | None:
    """The error a failed download hands to its waiters: one about the blob or the registry,
    not one about the owner's credentials or its cancellation."""
    leaf = _leaf(exc)
    if isinstance(leaf, ShipslogError) and not isinstance(leaf, RegistryUnauthorized):
        return leaf
    return None


@dataclass
class PullResult:
    image_id: str
    reference: str
    digest: str
    fresh: bool


class Puller:
    """The daemon's pulls: shared limiter, single-flight table, stores and journal."""

    def __init__(self, journal: Journal, content: ContentStore, layers: LayerStore, *,
                 concurrency: int = 3, total_timeout: float = 3600.0) -> None:
        self.journal = journal
        self.content = content
        self.layers = layers
        self.limiter = trio.CapacityLimiter(concurrency)
        self.total_timeout = total_timeout
        self.flights: dict[str, _Flight] = {}

    # -- the operation ---------------------------------------------------------------------

    async def pull(self, client: RegistryClient, ref: Reference, actor: Actor, emit: Emit,
                   *, platform: Platform | None = None) -> PullResult:
        want = normalize_platform(platform) if platform is not None else host_platform()
        op_id = self.journal.new_id()
        op = stream_of("op", op_id)
        shown = ref.familiar
        async with gate_for(self.journal).using():  # not while rmi collects (L-07)
            await self.journal.append([
                Pending(stream=op, expected_version=0, event=v.OperationRequested(
                    op_id=op_id, kind="image.pull", target="images",
                    args={"reference": ref.canonical})),
                Pending(stream=op, event=v.ImagePullRequested(
                    reference=shown, platform=platform_str(want) if platform else "")),
            ], actor=actor, op_id=op_id)
        step = "resolve"
        try:
            with trio.fail_after(self.total_timeout):
                digest, mtype, manifest = await self._resolve(client, ref, want)
                # After resolving, as Docker: a missing image is an HTTP error, not a stream.
                await emit({"status": f"Pulling from {ref.path}", "id": ref.tag or ref.digest})
                await self.journal.append([Pending(stream=op, event=v.ImageManifestResolved(
                    reference=shown, digest=digest, media_type=mtype))], actor=actor,
                    op_id=op_id)
                failpoints.hit("pull.after_manifest")
                step = "config"
                raw_cfg = await self._config(client, ref, manifest.config)
                config, diff_ids = parse_image_config(raw_cfg)
                if len(diff_ids) != len(manifest.layers):
                    raise InvalidImage(f"invalid image: {len(manifest.layers)} layers but "
                                       f"{len(diff_ids)} diff_ids in the config")
                image_id = manifest.config.digest
                fresh = image_id not in self.journal.state.images
                step = "layers"
                async with trio.open_nursery() as nursery:
                    for desc, diff_id in zip(manifest.layers, diff_ids, strict=True):
                        nursery.start_soon(self._layer, client, ref, desc, diff_id, emit,
                                           actor, op_id)
                step = "record"
                failpoints.hit("pull.before_pulled_event")
                tag_ref = shown if ref.tag else f"{ref.familiar_name}@{digest}"
                await self.journal.append([
                    Pending(stream=stream_of("image", image_id), event=v.ImagePulled(
                        image_id=image_id, reference=tag_ref, digest=digest,
                        layers=diff_ids, config=config,
                        size=sum(d.size for d in manifest.layers),
                        layer_digests=tuple(d.digest for d in manifest.layers))),
                    Pending(stream=op, event=v.OperationCompleted(op_id=op_id)),
                ], actor=actor, op_id=op_id)
        except trio.TooSlowError:
            error = f"pull of {shown} timed out after {self.total_timeout:.0f} s"
            await self._fail(op_id, step, error, actor)
            raise RegistryError(error, "the registry is too slow; try again") from None
        except BaseException as exc:
            leaf = _leaf(exc)
            if isinstance(leaf, OSError):
                # A full disk under the state root, too many open files: the user's words
                # for them, not "ExceptionGroup" (issue 15 item 6).
                leaf = from_os_error(leaf)
            reason = leaf.message if isinstance(leaf, ShipslogError) else _one_line(leaf)
            with trio.CancelScope(shield=True):
                await self._fail(op_id, step, reason, actor)
            if leaf is not exc and isinstance(leaf, ShipslogError):
                raise leaf from None
            raise
        await emit({"status": f"Digest: {digest}"})
        await emit({"status": ("Status: Downloaded newer image for " if fresh else
                               "Status: Image is up to date for ") + shown})
        return PullResult(image_id, shown, digest, fresh)

    async def _fail(self, op_id: str, step: str, error: str, actor: Actor) -> None:
        try:
            await self.journal.append([Pending(stream=stream_of("op", op_id),
                                               event=v.OperationFailed(
                                                   op_id=op_id, step=step, error=error))],
                                      actor=actor, op_id=op_id)
        except Exception:  # noqa: BLE001 - the log is closing; recovery compensates the op
            pass

    # -- manifests -------------------------------------------------------------------------

    async def _fetch_document(self, client: RegistryClient, ref: Reference, what: str
                              ) -> tuple[str, str, bytes]:
        scope = pull_scope(ref.path)
        try:
            resp = await client.request("GET", f"/v2/{ref.path}/manifests/{what}", scope=scope,
                                        headers={"Accept": ACCEPT})
        except RegistryNotFound as e:
            raise RegistryNotFound(f"manifest for {ref.familiar} not found: {e.message}",
                                   "check the name and tag; list tags in the registry") from None
        try:
            declared = int(resp.headers.get("content-length") or 0)
            if declared > MAX_INDEX_BYTES:
                raise ManifestError(f"manifest larger than {MAX_INDEX_BYTES} bytes")
            parts, n = [], 0
            async for chunk in resp.aiter_raw():
                n += len(chunk)
                if n > MAX_INDEX_BYTES:
                    raise ManifestError(f"manifest larger than {MAX_INDEX_BYTES} bytes")
                parts.append(chunk)
        finally:
            await resp.aclose()
        data = b"".join(parts)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if what.startswith("sha256:") and digest != what:
            raise DigestMismatch(f"unexpected commit digest {digest}, expected {what}",
                                 "the registry sent a different manifest than was asked for")
        named = resp.headers.get("docker-content-digest", "")
        if named and not what.startswith("sha256:") and named != digest:
            raise DigestMismatch(f"manifest digest {digest} does not match the registry's "
                                 f"Docker-Content-Digest {named[:80]}",
                                 "the registry or a proxy altered the manifest")
        return digest, resp.headers.get("content-type", ""), data

    async def _resolve(self, client: RegistryClient, ref: Reference, want: Platform
                       ) -> tuple[str, str, ManifestDoc]:
        """Tag or digest → (digest of the manifest we pull, its media type, the manifest)."""
        what = ref.digest or ref.tag
        top_digest = ""
        for _depth in range(MAX_INDEX_DEPTH):
            digest, ctype, data = await self._fetch_document(client, ref, what)
            top_digest = top_digest or digest
            doc = parse_document(data, ctype)
            if doc.manifest is not None:
                # Docker records the digest the user named: the index's, for a list.
                return top_digest, doc.media_type, doc.manifest
            assert doc.index is not None
            chosen = select_manifest(doc.index, want)
            what = chosen.digest
        raise ManifestError(f"image index nested deeper than {MAX_INDEX_DEPTH} levels")

    async def _config(self, client: RegistryClient, ref: Reference, desc: Descriptor) -> bytes:
        if desc.size > MAX_CONFIG_BYTES:
            raise ManifestError(f"image config declares {desc.size} bytes (cap "
                                f"{MAX_CONFIG_BYTES})")
        async with self._flight(desc.digest, lambda: self.content.has(desc.digest)) as mine:
            if mine:
                parts: list[bytes] = []

                async def sink(chunk: bytes) -> None:
                    parts.append(chunk)

                await client.fetch_blob(ref.path, desc.digest, desc.size, sink,
                                        scope=pull_scope(ref.path))
                await trio.to_thread.run_sync(self.content.ingest, parts, desc.digest,
                                              desc.size)
        return await trio.to_thread.run_sync(
            lambda: self.content.read_bytes(desc.digest, max_size=MAX_CONFIG_BYTES))

    # -- layers ----------------------------------------------------------------------------

    async def _layer(self, client: RegistryClient, ref: Reference, desc: Descriptor,
                     diff_id: str, emit: Emit, actor: Actor, op_id: str) -> None:
        short = desc.digest[7:19]
        await emit({"status": "Pulling fs layer", "id": short, "progressDetail": {}})

        async def waiting() -> None:
            await emit({"status": "Waiting", "id": short, "progressDetail": {}})

        def stored() -> bool:
            return self.layers.has(diff_id) and self.content.has(desc.digest)

        async with self._flight(desc.digest, stored, waiting) as mine:
            if mine:
                async with self.limiter:
                    await self._fetch_layer(client, ref, desc, diff_id, emit, actor, op_id)
        if not mine:
            await self._record_existing(desc, diff_id, actor, op_id)
            await emit({"status": "Already exists", "id": short, "progressDetail": {}})
            return
        await emit({"status": "Pull complete", "id": short, "progressDetail": {}})

    @asynccontextmanager
    async def _flight(self, digest: str, stored: Callable[[], bool],
                      waiting: Callable[[], Awaitable[None]] | None = None
                      ) -> AsyncIterator[bool]:
        """Single-flight for one blob: yields True when this caller is to fetch it (the
        block is the download), False when it is stored already (perhaps by the download
        this caller waited for). A waiter raises the download's error when it is shared."""
        while True:
            if stored():
                yield False
                return
            flight = self.flights.get(digest)
            if flight is None:
                break
            if waiting is not None:
                await waiting()
            await flight.done.wait()  # then look again: stored, failed, or ours to fetch
            if flight.error is not None:
                raise copy.copy(flight.error) from None
        flight = self.flights[digest] = _Flight()
        try:
            yield True
        except BaseException as exc:
            flight.error = _shared_error(exc)
            raise
        finally:
            del self.flights[digest]
            flight.done.set()

    async def _record_existing(self, desc: Descriptor, diff_id: str, actor: Actor,
                               op_id: str) -> None:
        if diff_id in self.journal.state.layers:
            return
        # On disk but not in the log (a crash between rename and append): record it now.
        size = await trio.to_thread.run_sync(_tree_size, self.layers.path(diff_id))
        await self.journal.append([Pending(stream=stream_of("layer", diff_id),
                                           event=v.LayerUnpacked(digest=desc.digest,
                                                                 diff_id=diff_id, size=size))],
                                  actor=actor, op_id=op_id)

    async def _fetch_layer(self, client: RegistryClient, ref: Reference, desc: Descriptor,
                           diff_id: str, emit: Emit, actor: Actor, op_id: str) -> None:
        short = desc.digest[7:19]
        need_unpack = not self.layers.has(diff_id)
        unpacked: list[int] = []
        if self.content.has(desc.digest):
            await emit({"status": "Extracting", "id": short, "progressDetail": {}})
            layer = await trio.to_thread.run_sync(lambda: self.layers.unpack(
                self.content.path(desc.digest), media_type=desc.mediaType,
                expected_diff_id=diff_id))
            unpacked.append(int(layer.size))
        else:
            blob_pipe = Pipe()
            layer_pipe = Pipe() if need_unpack else None
            tee = _Tee(desc, blob_pipe, layer_pipe)
            progress = _Progress(emit, short, desc.size)
            stored = trio.Event()

            async def download() -> None:
                try:
                    await client.fetch_blob(ref.path, desc.digest, desc.size, sink,
                                            scope=pull_scope(ref.path))
                    await tee.finish(stored)
                except BaseException as exc:
                    tee.abort(exc)
                    raise

            async def sink(chunk: bytes) -> None:
                await tee.put(chunk)
                await progress.advance(len(chunk))

            def ingest_sync() -> None:
                try:
                    self.content.ingest(blob_pipe.chunks(), desc.digest, desc.size)
                except BaseException as exc:
                    tee.abort(exc)
                    raise

            async def ingest() -> None:
                await trio.to_thread.run_sync(ingest_sync)
                failpoints.hit("pull.after_blob_stored")
                stored.set()
                await emit({"status": "Download complete", "id": short, "progressDetail": {}})
                if layer_pipe is not None:
                    await emit({"status": "Extracting", "id": short, "progressDetail": {}})

            def unpack() -> None:
                assert layer_pipe is not None
                try:
                    layer = self.layers.unpack(PipeReader(layer_pipe),  # type: ignore[arg-type]
                                               media_type=desc.mediaType,
                                               expected_diff_id=diff_id)
                    unpacked.append(int(layer.size))
                except Exception as exc:  # noqa: BLE001 - reported after the ingest
                    # The blob still downloads and is verified: when its digest is wrong,
                    # that is the error to report, not the tar damage it caused (I-11).
                    tee.unpack_failed(exc)

            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(download)
                    nursery.start_soon(ingest)
                    if layer_pipe is not None:
                        nursery.start_soon(trio.to_thread.run_sync, unpack)
                if tee.unpack_error is not None:
                    raise tee.unpack_error
            except BaseException as exc:
                # The blob may be stored and verified while its unpack failed (a bomb, a bad
                # tar): it was ours to fetch, no image uses it, so it goes (I-12 "disk usage
                # returns to baseline").
                if not any(desc.digest in img.layer_digests
                           for img in self.journal.state.images.values()):
                    self.content.delete(desc.digest)
                _raise_cause(exc, tee)
                raise
        failpoints.hit("pull.after_layer_unpacked")
        pending = [Pending(stream=stream_of("op", op_id), event=v.LayerDownloaded(
            digest=desc.digest, size=desc.size, media_type=desc.mediaType))]
        if unpacked and diff_id not in self.journal.state.layers:
            pending.append(Pending(stream=stream_of("layer", diff_id), event=v.LayerUnpacked(
                digest=desc.digest, diff_id=diff_id, size=unpacked[0])))
        await self.journal.append(pending, actor=actor, op_id=op_id)
        if not unpacked:
            await self._record_existing(desc, diff_id, actor, op_id)


class _Tee:
    """Feeds one download to the blob ingest and the unpacker. The unpacker sees the end of
    its stream only once the content store has verified and committed the blob (its ingest
    hashes every byte and checks size and digest), so a layer is never renamed into place
    from unverified bytes."""

    def __init__(self, desc: Descriptor, blob: Pipe, layer: Pipe | None) -> None:
        self.desc = desc
        self.blob = blob
        self.layer = layer
        self.size = 0
        self.first_error: BaseException | None = None
        self.unpack_error: BaseException | None = None

    async def put(self, chunk: bytes) -> None:
        if self.blob.aborted:
            raise PipeAborted(str(self.first_error or "aborted"))
        self.size += len(chunk)
        await self.blob.put(chunk)
        if self.layer is not None and not self.layer.aborted:
            try:
                await self.layer.put(chunk)
            except PipeAborted:
                pass  # the unpack failed meanwhile; its error is reported after the ingest

    def unpack_failed(self, exc: BaseException) -> None:
        self.unpack_error = exc
        if self.layer is not None:
            self.layer.abort(exc)

    async def finish(self, stored: trio.Event) -> None:
        if self.size != self.desc.size:  # fetch_blob stops at the size; a guard all the same
            exc = DigestMismatch(f"unexpected commit size {self.size}, expected "
                                 f"{self.desc.size}", "the blob is truncated; try again")
            self.abort(exc)
            raise exc
        await self.blob.aclose()
        await stored.wait()  # the ingest verified the digest and renamed the blob
        if self.layer is not None:
            await self.layer.aclose()

    def abort(self, exc: BaseException) -> None:
        if self.first_error is None and not isinstance(exc, PipeAborted):
            self.first_error = exc
        self.blob.abort(exc)
        if self.layer is not None:
            self.layer.abort(exc)


class _Progress:
    def __init__(self, emit: Emit, short: str, total: int) -> None:
        self.emit = emit
        self.short = short
        self.total = total
        self.current = 0
        self.shown = -PROGRESS_STEP

    async def advance(self, n: int) -> None:
        self.current += n
        if self.current - self.shown >= PROGRESS_STEP or self.current == self.total:
            self.shown = self.current
            await self.emit({"status": "Downloading", "id": self.short,
                             "progressDetail": {"current": self.current, "total": self.total}})


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        _, inner = exc.split((PipeAborted, trio.Cancelled))
        exc = (inner or exc).exceptions[0]
    return exc


def _raise_cause(exc: BaseException, tee: _Tee) -> None:
    """Raise the error that started it (a digest mismatch, a bomb, a reset), not the echoes
    of aborting the other threads; a cancellation stays a cancellation (for `fail_after`).
    Returns when `exc` itself should be re-raised."""
    if isinstance(tee.first_error, ShipslogError):
        raise tee.first_error from None
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(PipeAborted)
        if rest is None:
            return
        leaf = _leaf(rest)
        if isinstance(leaf, ShipslogError):
            raise leaf from None
        if rest.split(trio.Cancelled)[1] is None:
            raise leaf  # a bare Cancelled, which the enclosing cancel scope recognises
        raise rest from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return type(exc).__name__ + (f": {text[0]}" if text else "")


def _tree_size(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            total += st.st_size
    return total
