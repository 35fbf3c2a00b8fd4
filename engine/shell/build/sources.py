"""A COPY/ADD step's sources: found in the context's index (nothing unpacked), downloaded
(`ADD http(s)://…`) or read from a stage's or image's rootfs (`--from`, mounted); checksummed
for the cache key; and, only for a step that misses the cache, put on disk, where context.py
resolves them again with every confinement check. Also the step image's user database for
`--chown` names.

I/O: snapshots mounted and removed through the engine's snapshot driver; files unpacked by
the confined applier under the build's work dir; HTTP for URL sources (fetch.py).
"""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from engine.core import build as cb
from engine.core.errors import ShipslogError
from engine.core.lookup import find_image
from engine.drivers.host.info import read_rootfs_file
from engine.shell.build import context as bctx
from engine.shell.build.ctxindex import ContextIndex, Parts
from engine.shell.build.fetch import fetch, is_url


async def _nothing() -> None:
    return None


@dataclass
class Sources:
    """A COPY/ADD's sources: named in the context's index (`named`), or files under `root`."""

    patterns: list[str]
    dest: str
    line: int
    files: str  # their checksum, for the cache key
    named: list[Parts] = field(default_factory=list)
    root: Path | None = None
    paths: list[Path] = field(default_factory=list)
    fetched: list[Path] = field(default_factory=list)  # ADD URL downloads: never unpacked
    cleanup: Callable[[], Awaitable[None]] = _nothing


class SourceFinder:
    def __init__(self, engine: Any, layers: Any) -> None:
        self.engine = engine
        self.layers = layers

    async def _mount(self, layers: tuple[str, ...]) -> tuple[Path, Callable[[], Awaitable[None]]]:
        snaps = self.engine.supervisor.d.snapshots
        mount_id = self.engine.journal.new_id()
        rootfs = Path(await trio.to_thread.run_sync(
            snaps.prepare, mount_id, [self.layers.path(d) for d in layers]))

        async def unmount() -> None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(snaps.remove, mount_id)

        return rootfs, unmount

    async def find(self, st: cb.StageState, ins: cb.Instruction, scope: dict[str, str],
                   index: ContextIndex, workdir: Path, results: dict[str, str]) -> Sources:
        """The sources and their checksum: from the context's index (nothing unpacked yet)
        and URL downloads, or, with --from, from a stage's or image's rootfs, mounted."""
        words = [cb.expand(w, scope) for w in ins.value]
        if len(words) < 2:
            raise cb.BuildError(f"dockerfile parse error line {ins.line}: {ins.cmd.upper()} "
                                "requires at least two arguments")
        srcs, dest = words[:-1], cb.copy_dest(st, words[-1])
        urls = [src for src in srcs if is_url(src)]
        src_from = ins.flag("from")
        if urls and (ins.cmd == "copy" or src_from):
            raise cb.BuildError(f"line {ins.line}: source can't be a URL for "
                                f"{ins.cmd.upper()}{' --from' if src_from else ''}",
                                hint="use ADD for a URL, or download it into the context")

        if not src_from:
            local = [src for src in srcs if not is_url(src)]
            fetched = await self._fetch(urls, workdir, ins.line) if urls else []

            def from_index() -> tuple[list[Parts], str]:
                named = index.sources(local, ins.line) if local else []
                files = index.checksum(named)
                if fetched:  # a URL's file counts by name, mode, owner and bytes
                    files = cb.combine_checksums(
                        files, *(bctx.checksum([f], f.parent) for f in fetched))
                return named, files

            named, files = await trio.to_thread.run_sync(from_index)
            return Sources(local, dest, ins.line, files, named=named, fetched=fetched)
        image_id = results.get(src_from.lower())
        if image_id is None:
            try:
                image_id = find_image(self.engine.journal.state, src_from).id
            except ShipslogError:
                raise cb.BuildError(f"line {ins.line}: COPY --from={src_from}: no stage or image "
                                    "of that name", hint="name an earlier stage (FROM … AS "
                                    "name) or an image that is here") from None
        img = self.engine.journal.state.images[image_id]
        rootfs, unmount = await self._mount(img.layers)
        try:
            sources = await trio.to_thread.run_sync(bctx.resolve_sources, rootfs, srcs, ins.line)
            files = await trio.to_thread.run_sync(bctx.checksum, sources, rootfs)
        except BaseException:
            await unmount()
            raise
        return Sources(srcs, dest, ins.line, files, root=rootfs, paths=sources, cleanup=unmount)

    async def _fetch(self, urls: list[str], workdir: Path, line: int) -> list[Path]:
        """Download each URL into its own dir under the build's work dir (one GET per build,
        hit or miss, as the classic builder does: the bytes decide the cache)."""
        out = []
        for url in urls:
            into = Path(await trio.to_thread.run_sync(
                lambda: tempfile.mkdtemp(prefix="url-", dir=workdir)))
            out.append(await fetch(url, into, line=line, limit=bctx.MAX_CONTEXT_BYTES))
        return out

    async def chown_ids(self, layers: tuple[str, ...], spec: str, line: int) -> tuple[int, int]:
        """`--chown` names resolved in the step image's /etc/passwd and /etc/group (read
        in-root, never following a link out), as Docker does; numbers need no files."""
        passwd = group = None
        if cb.chown_needs_names(spec) and layers:
            rootfs, unmount = await self._mount(layers)
            try:
                passwd, group = await trio.to_thread.run_sync(
                    lambda: (read_rootfs_file(str(rootfs), "etc/passwd"),
                             read_rootfs_file(str(rootfs), "etc/group")))
            finally:
                await unmount()
        return cb.chown_ids(spec, passwd, group, line)

    async def on_disk(self, src: Sources, index: ContextIndex, workdir: Path,
                      step: int) -> tuple[Path, list[Path]]:
        """The sources as files, for a step that missed the cache: a context's are unpacked
        now (only them, by the confined applier) and resolved again on disk, where every
        confinement check of context.py applies as before."""
        if src.root is not None:
            return src.root, src.paths
        target = workdir / f"step-{step}"

        def unpack() -> list[Path]:
            target.mkdir()
            if not src.patterns:
                return []
            index.materialize(src.named, target)
            return bctx.resolve_sources(target, src.patterns, src.line)

        # URL files come after the context's (moby copies each source in turn; a name both
        # give is rare, and then the URL's wins)
        return target, [*await trio.to_thread.run_sync(unpack), *src.fetched]
