"""Image operations that move bytes: load, import and save.

I/O: the content store, the layer store and temp files under the state root, all in worker
threads; the journal for the events. The intent (`OperationRequested`) is recorded before any
byte is stored; each unpacked layer is recorded as it is committed (`LayerUnpacked`); the
image itself is recorded last, so an image in the log always has every layer on disk. A
failure records `OperationFailed` with the reason and leaves nothing half-visible: blobs are
verified before they are named, layers staged before they are renamed (engine/drivers).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import trio

from engine.core import images as ci
from engine.core.errors import NotFound, ShipslogError
from engine.core.lookup import find_image
from engine.drivers.layers.content import ContentStore
from engine.drivers.layers.unpack import LayerStore
from engine.shell.image_archive import (
    ImageToSave,
    LoadedImage,
    import_rootfs,
    load_archive,
    save_archive,
)
from engine.shell.image_gate import gate_for
from engine.shell.journal import Journal
from events import vocabulary as v
from events.envelope import Actor, Pending, stream_of
from events.store import StoreError
from projections.state import ImageView

log = logging.getLogger("shipslog.images")


class ImageOps:
    def __init__(self, journal: Journal, content: ContentStore, layers: LayerStore,
                 tmp_dir: Path) -> None:
        self.journal = journal
        self.content = content
        self.layers = layers
        self.tmp_dir = tmp_dir
        self._owed: list[tuple[str, str, str, Actor]] = []  # outcomes the log refused

    async def _spool(self, body: AsyncIterator[bytes]) -> BinaryIO:
        f = tempfile.TemporaryFile(dir=self.tmp_dir)
        async for chunk in body:
            await trio.to_thread.run_sync(f.write, chunk)
        f.seek(0)
        return f  # type: ignore[return-value]

    async def _settle_owed(self) -> None:
        owed, self._owed = self._owed, []
        for op_id, step, error, actor in owed:
            await self._fail(op_id, step, error, actor)  # re-queues itself if still full

    async def _begin(self, kind: str, actor: Actor) -> str:
        await self._settle_owed()
        op_id = self.journal.new_id()
        async with gate_for(self.journal).using():  # not while rmi collects (L-07)
            await self.journal.append([Pending(
                stream=stream_of("op", op_id), expected_version=0,
                event=v.OperationRequested(op_id=op_id, kind=kind, target="images"))],
                actor=actor, op_id=op_id)
        return op_id

    async def _fail(self, op_id: str, step: str, error: str, actor: Actor) -> None:
        try:
            await self.journal.append([Pending(stream=stream_of("op", op_id),
                                               event=v.OperationFailed(
                                                   op_id=op_id, step=step, error=error))],
                                      actor=actor, op_id=op_id)
        except StoreError as exc:
            # The log itself cannot take the outcome (the disk is full): the user still gets
            # the first error, and the outcome is recorded as soon as the log takes writes
            # again (the next image operation), or compensated at the next daemon start.
            log.warning("could not record the failure of %s: %s", op_id, exc.message)
            self._owed.append((op_id, step, error, actor))

    async def _record(self, op_id: str, images: Sequence[LoadedImage], how: str,
                      actor: Actor, source: str = "") -> None:
        for img in images:
            pending: list[Pending] = []
            for ref in img.layers:
                unpacked = await trio.to_thread.run_sync(self._unpack, ref)
                if unpacked is not None and ref.diff_id not in self.journal.state.layers:
                    pending.append(Pending(stream=stream_of("layer", ref.diff_id),
                                           event=v.LayerUnpacked(digest=ref.digest,
                                                                 diff_id=ref.diff_id,
                                                                 size=unpacked)))
            decision = ci.decide_record_image(
                self.journal.state, op_id=op_id, image_id=img.image_id, how=how,
                repo_tags=img.repo_tags, layers=img.diff_ids, config=img.config,
                size=img.size, source=source,
                layer_digests=tuple(ref.digest for ref in img.layers))
            await self.journal.append(pending + list(decision.pending), actor=actor,
                                      op_id=op_id)

    def _unpack(self, ref: Any) -> int | None:
        if self.layers.has(ref.diff_id):
            return 0
        layer = self.layers.unpack(self.content.path(ref.digest), media_type=ref.media_type,
                                   expected_diff_id=ref.diff_id)
        return int(layer.size)

    async def load(self, body: AsyncIterator[bytes], actor: Actor) -> list[LoadedImage]:
        op_id = await self._begin("image.load", actor)
        try:
            with await self._spool(body) as f:
                images = await trio.to_thread.run_sync(load_archive, f, self.content)
            await self._record(op_id, images, "load", actor)
        except (ShipslogError, OSError) as exc:
            await self._fail(op_id, "load", str(exc), actor)
            if isinstance(exc, ShipslogError):
                raise
            raise ShipslogError(f"loading the image failed: {exc}") from exc
        await self.journal.append([Pending(stream=stream_of("op", op_id),
                                           event=v.OperationCompleted(op_id=op_id))],
                                  actor=actor, op_id=op_id)
        return images

    async def import_(self, body: AsyncIterator[bytes], actor: Actor, *, repo_tags: list[str],
                      source: str, created: str, config: Any = None) -> LoadedImage:
        op_id = await self._begin("image.import", actor)
        try:
            with await self._spool(body) as f:
                image = await trio.to_thread.run_sync(
                    lambda: import_rootfs(f, self.content, repo_tags=repo_tags, created=created,
                                          config=config))
            await self._record(op_id, [image], "import", actor, source=source)
        except ShipslogError as exc:
            await self._fail(op_id, "import", str(exc), actor)
            raise
        await self.journal.append([Pending(stream=stream_of("op", op_id),
                                           event=v.OperationCompleted(op_id=op_id))],
                                  actor=actor, op_id=op_id)
        return image

    async def save(self, refs: list[str]) -> AsyncIterator[bytes]:
        state = self.journal.state
        wanted = []
        for ref in refs:
            try:
                img = find_image(state, ref)
            except NotFound as exc:  # moby's save names the reference as given
                raise NotFound(f"No such image: {ref}", hint=exc.hint) from None
            wanted.append(ImageToSave(image_id=img.id, repo_tags=_tags_to_save(img, ref),
                                      layer_digests=img.layer_digests or img.layers))
        fd, name = tempfile.mkstemp(dir=self.tmp_dir)
        os.unlink(name)  # anonymous: gone when closed, whatever happens
        f = os.fdopen(fd, "w+b")
        try:
            await trio.to_thread.run_sync(save_archive, f, wanted, self.content)
            f.seek(0)
        except BaseException:
            f.close()
            raise
        return _stream_file(f)

    def remove_blobs(self, digests: Sequence[str]) -> None:
        for d in digests:
            self.content.delete(d)


def _tags_to_save(img: ImageView, ref: str) -> tuple[str, ...]:
    """The RepoTags `save REF` writes, as moby's tarexport.parseNames picks them: a tag names
    itself, a bare name every tag of that repository, an image ID (or ID prefix) none."""
    name_only = ":" not in ref.rsplit("/", 1)[-1]
    if name_only:
        return tuple(t for t in img.repo_tags if t.startswith(ref + ":"))
    return tuple(t for t in img.repo_tags if t == ref)


async def _stream_file(f: BinaryIO) -> AsyncIterator[bytes]:
    try:
        while chunk := await trio.to_thread.run_sync(f.read, 1 << 20):
            yield chunk
    finally:
        f.close()
