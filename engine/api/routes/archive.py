"""Docker API handlers for a container's files and counters: `HEAD/GET/PUT
/containers/{id}/archive` (docker cp), `GET /containers/{id}/changes` (docker diff),
`GET /containers/{id}/export` and `GET /containers/{id}/stats`.

I/O: the container's root filesystem (in-root resolution only) and its cgroup counters
through the files service (`engine/shell/files.py`), and the
log: a copy out, a copy in and an export are each recorded with the caller as actor
(`ContainerPathArchived`, `ContainerPathExtracted`, `ContainerExported`), which
`docker events` shows as archive-path / extract-to-dir / export.

A stopped container's root filesystem may not be mounted (after a daemon restart): the files
service mounts it for the request, under the container's lock so no start or removal runs
meanwhile, and unmounts it afterwards. Volumes and bind mounts are mounted in the container's
own mount namespace, not under the rootfs we reach, so a path at or below one (as asked, or as it
resolved in the rootfs) is reached in the volume's `_data` or the bind's host directory
instead, running or stopped, resolved in-root there (Docker's cp reaches them too;
RELIABILITY S-04/S-05: no symlink leads out of the mount). tmpfs mounts (their files exist
only inside the container) are refused. Any other path of a running container is reached
through its own mount namespace's root, so that a copy into /dev lands on the tmpfs the
runtime mounted there (issue 15 item 9); what is on neither its rootfs nor /dev there is
refused as another mount.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import posixpath
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any, BinaryIO, cast

import trio

from engine.api.docker.render import rfc3339
from engine.api.server.router import Request, Response, Router, json_response
from engine.core.errors import Conflict, InvalidArgument, NotFound, ShipslogError
from engine.core.fs_plan import (
    CopyPath,
    classify_changes,
    mount_covering,
    plan_copy_path,
    plan_in_mount,
    plan_resolved,
)
from engine.core.lookup import find_container
from engine.core.stats_shape import StatsSample, shape_stats
from engine.shell import files as files_
from events import vocabulary as v
from events.envelope import Actor, Pending, stream_of
from events.values import MountSpec
from projections.state import ContainerView

STAT_HEADER = "X-Docker-Container-Path-Stat"
_LIVE = ("running", "paused", "restarting")
STATS_INTERVAL = 1.0  # seconds between samples (dockerd's collector ticks every second)
DRAIN_LIMIT = 256 << 20  # bytes of a refused upload read (and dropped) so the answer arrives
DRAIN_SECONDS = 30.0


class ReadOnlyRootfs(ShipslogError):
    """The container was created with --read-only: nothing may be copied into it. HTTP 403."""

    status = 403


async def _drain(chunks: AsyncIterator[bytes], limit: int) -> None:
    seen = 0
    with trio.move_on_after(DRAIN_SECONDS):
        async for chunk in chunks:
            seen += len(chunk)
            if seen > limit:
                return


def _missing(path: str, c: ContainerView, exc: NotFound) -> NotFound:
    """Docker's wording, naming the path as asked (not the component that was missing)."""
    return NotFound(f"Could not find the file {path} in container {c.name}", exc.hint)


class ReadOnlyVolume(ShipslogError):
    """A copy into a volume or bind mounted read-only. HTTP 403."""

    status = 403


def _covering(c: ContainerView, path: str) -> MountSpec | None:
    """The container's mount (volume, bind, tmpfs) that container `path` is at or below."""
    target = mount_covering(path, [m.target for m in c.config.mounts])
    if target is None:
        return None
    return next(m for m in c.config.mounts
                if posixpath.normpath(posixpath.join("/", m.target)) == target)


def _full(plan: CopyPath) -> str:
    return plan.parent if plan.entry is None else posixpath.join(plan.parent, plan.entry)


def _target(m: MountSpec) -> str:
    return posixpath.normpath(posixpath.join("/", m.target))


def _is_file(host_path: str) -> bool:
    """A bind source that is not a directory (a bind of one file); its symlinks, if any,
    are refused when it is opened (engine/drivers/volumes/bindsafe.py)."""
    try:
        return not stat.S_ISDIR(os.stat(host_path, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _live_pid(c: ContainerView) -> int:
    """A running container's files are reached in its own mount namespace, so that what a
    copy sees is what the container sees, its runtime's /dev tmpfs included (issue 15 item 9);
    0 for the rootfs we mount."""
    return c.pid if c.status in ("running", "paused") and c.pid else 0


def encode_path_stat(st: files_.PathStat) -> str:
    """The X-Docker-Container-Path-Stat header: base64 of Docker's ContainerPathStat JSON."""
    body = {"name": st.name, "size": st.size, "mode": st.mode, "mtime": rfc3339(st.mtime_ns),
            "linkTarget": st.link_target}
    return base64.b64encode(json.dumps(body).encode()).decode()


class _ChunkStream:
    """An async iterator over a blocking chunk generator (each `next` runs in a thread) that
    runs `cleanup` when closed — even if the server never started iterating."""

    def __init__(self, chunks: Iterator[bytes], cleanup: Callable[[], Awaitable[None]]) -> None:
        self._chunks = chunks
        self._cleanup = cleanup
        self._closed = False

    def __aiter__(self) -> _ChunkStream:
        return self

    async def __anext__(self) -> bytes:
        chunk = await trio.to_thread.run_sync(next, self._chunks, None)
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            try:
                await trio.to_thread.run_sync(self._chunks.close)  # type: ignore[attr-defined]
            finally:
                await self._cleanup()


class _BodyReader:
    """A blocking `read(n)` over the request body, for the unpacker's worker threads: one
    hop into trio per read gathers as many body chunks as the read needs."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._token = trio.lowlevel.current_trio_token()
        self._buf = bytearray()
        self._eof = False

    async def _gather(self, want: int) -> list[bytes]:
        got: list[bytes] = []
        size = 0
        while want < 0 or size < want:
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                self._eof = True
                break
            got.append(chunk)
            size += len(chunk)
        return got

    def read(self, n: int = -1) -> bytes:
        if not self._eof and (n < 0 or len(self._buf) < n):
            want = -1 if n < 0 else n - len(self._buf)
            for chunk in trio.from_thread.run(self._gather, want, trio_token=self._token):
                self._buf += chunk
        if n < 0 or n >= len(self._buf):
            out = bytes(self._buf)
            self._buf.clear()
        else:
            out = bytes(self._buf[:n])
            del self._buf[:n]
        return out


def archive_routes(ctx: Any) -> Router:
    r = Router()
    engine = ctx.engine
    files = ctx.files
    container_root = files.container_root

    async def record(c: ContainerView, event: v.Event, actor: Actor, verb: str) -> None:
        await engine.journal.append([Pending(stream=stream_of("container", c.id), event=event)],
                                    actor=actor, op_id=f"{verb}-" + engine.journal.new_id()[:12])

    def mount_dir(c: ContainerView, m: MountSpec, asked: str) -> str:
        """The host directory standing for mount `m`'s tree."""
        if m.type == "volume" and m.source:
            return files.volume_dir(m.source)
        if m.type == "bind":
            return m.source
        raise InvalidArgument(
            f"{asked} is inside the tmpfs mount at {_target(m)} in container {c.name}: its "
            "files exist only inside the container; reach them with exec (e.g. cat, tar)",
            hint=f"use: shipslog exec {c.name} cat PATH, or copy through a path outside it")

    def in_mount(c: ContainerView, rootfs: str, path: str) -> tuple[str, MountSpec | None]:
        """Container directory `path` (clean) and the mount it is at or below: as asked, or
        else where its longest existing head resolves to in the rootfs (a symlink there may
        lead into a mount point; what follows the head is looked up in the mount)."""
        m = _covering(c, path)
        if m is not None or not c.config.mounts:
            return path, m
        head, rest = path, ""
        while True:
            try:
                resolved = files_.resolved_dir(rootfs, head)
                break
            except NotFound:
                if head == "/":
                    return path, None
                head, base = posixpath.split(head)
                rest = posixpath.join(base, rest) if rest else base
        full = posixpath.join(resolved, rest) if rest else resolved
        m = _covering(c, full)
        return (full, m) if m is not None else (path, None)

    def resolve(c: ContainerView, rootfs: str, plan: CopyPath, stat_only: bool
                ) -> files_.Resource:
        """The resource as the container sees it: in a mount's host directory when the path
        (as asked, or as it resolves in the rootfs) is at or below a mount point. (A stat
        in a tmpfs looks beneath it: the CLI stats before it copies, and only the copy's
        answer carries the error message — a HEAD answer has no body.)"""
        asked = plan
        m = _covering(c, _full(plan))
        if m is None:
            parent, m = in_mount(c, rootfs, plan.parent)
            if m is None:
                return files_.Resource(rootfs, plan, _live_pid(c))
            plan = plan_resolved(plan, parent if plan.entry is None
                                 else posixpath.join(parent, plan.entry))
        if m.type == "tmpfs" and stat_only:
            return files_.Resource(rootfs, asked, _live_pid(c))
        host, target = mount_dir(c, m, plan.requested), _target(m)
        if m.type == "bind" and _is_file(host):
            # a bind of one file: the resource is that file, reached as an entry of its host
            # directory (never followed); nothing lies below it
            if _full(plan) != target:
                raise NotFound(f"Could not find the file {plan.requested} in container")
            parent, name = posixpath.split(host)
            return files_.Resource(
                parent, CopyPath(plan.requested, "/", name, plan.name, plan.rebase),
                at=posixpath.dirname(target))
        return files_.Resource(host, plan_in_mount(plan, target), at=target)

    async def open_resource(req: Request, *, stat_only: bool = False
                            ) -> tuple[AsyncExitStack, ContainerView, files_.Resource]:
        """The requested path resolved in the container's view; the stack releases it."""
        plan = plan_copy_path(req.arg("path") or "")
        stack = AsyncExitStack()
        try:
            c, rootfs = await stack.enter_async_context(container_root(req.params["id"]))
            try:
                resource = await trio.to_thread.run_sync(resolve, c, rootfs, plan, stat_only)
            except NotFound as exc:
                raise _missing(plan.requested, c, exc) from None
            stack.callback(resource.close)
            if not stat_only:  # a stat may look anywhere; a copy not at a mount of its own
                resource.check_mount()
        except BaseException:
            await stack.aclose()
            raise
        return stack, c, resource

    def open_destination(c: ContainerView, rootfs: str, path: str
                         ) -> tuple[int, str, MountSpec | None]:
        """The directory a copy-in extracts into, as the container sees it, and the mount
        it is in (None: the container's own filesystem)."""
        clean, m = in_mount(c, rootfs, posixpath.normpath(posixpath.join("/", path)))
        if m is None:
            if not _live_pid(c):
                dest, resolved = files_.open_directory(rootfs, path)
                return dest, resolved, None
            dest, resolved, elsewhere = files_.open_live_directory(rootfs, c.pid, path)
            if elsewhere:  # a mount in its namespace we do not know of (/dev/shm, /proc)
                os.close(dest)
                raise files_.other_mount(path)
            return dest, resolved, None
        target, host = _target(m), mount_dir(c, m, path)
        if m.type == "bind" and _is_file(host):
            if clean != target:
                raise NotFound(f"Could not find the file {path} in container")
            raise InvalidArgument(f"extraction point {path} is not a directory",
                                  hint="it is a bind mount of a single file")
        inner = "/" + posixpath.relpath(clean, target) if clean != target else "/"
        dest, resolved = files_.open_directory(host, inner, at=target, asked=path)
        return dest, resolved, m

    @r.route("HEAD", "/containers/{id}/archive")
    async def stat_path(req: Request) -> Response:
        stack, _, resource = await open_resource(req, stat_only=True)
        async with stack:
            st = await trio.to_thread.run_sync(resource.stat)
        return Response(200, [("Content-Type", "application/json"),
                              (STAT_HEADER, encode_path_stat(st))])

    @r.route("GET", "/containers/{id}/archive")
    async def get_archive(req: Request) -> Response:
        stack, c, resource = await open_resource(req)
        try:
            st = await trio.to_thread.run_sync(resource.stat)
            await record(c, v.ContainerPathArchived(container_id=c.id,
                                                    path=req.arg("path") or ""),
                         req.actor, "cp")
        except BaseException:
            await stack.aclose()
            raise
        return Response(200, [("Content-Type", "application/x-tar"),
                              (STAT_HEADER, encode_path_stat(st))],
                        stream=_ChunkStream(resource.chunks(), stack.aclose))

    @r.route("PUT", "/containers/{id}/archive", stream_body=True)
    async def put_archive(req: Request) -> Response:
        try:
            return await extract(req)
        except ShipslogError:
            # Refused before the archive was read (no such container or directory, a mount,
            # read-only): read what the client is still sending, or it sees a broken pipe
            # instead of our answer.
            await _drain(req.stream_body(), DRAIN_LIMIT)
            raise

    async def extract(req: Request) -> Response:
        path = req.arg("path") or ""
        plan_copy_path(path)  # the same checks as a copy out (NUL bytes, length)
        c = find_container(engine.state, req.params["id"])
        async with container_root(c.id) as (c, rootfs):
            try:
                dest, _, mount = await trio.to_thread.run_sync(open_destination, c, rootfs,
                                                                path)
            except NotFound as exc:
                raise _missing(path, c, exc) from None
            try:
                # moby containerExtractToDir: --read-only guards the rootfs, not volumes;
                # a read-only mount refuses with ErrVolumeReadonly's words
                if mount is None and c.config.read_only:
                    raise ReadOnlyRootfs(f"container rootfs is marked read-only: {c.name}",
                                         hint="it was created with --read-only; copy into a "
                                              "volume")
                if mount is not None and mount.read_only:
                    raise ReadOnlyVolume("mounted volume is marked read-only",
                                         hint=f"{_target(mount)} is mounted read-only in "
                                              f"container {c.name}")
            except BaseException:
                os.close(dest)
                raise
            try:
                body = cast(BinaryIO, _BodyReader(req.stream_body()))
                stats = await trio.to_thread.run_sync(functools.partial(
                    files_.extract_into, dest, body,
                    no_overwrite_dir_non_dir=req.bool("noOverwriteDirNonDir")))
            except ShipslogError as exc:  # refused part-way: what was refused is on record
                await record(c, v.ContainerPathExtracted(
                    container_id=c.id, path=path, error=exc.message[:500]), req.actor, "cp")
                raise
            finally:
                os.close(dest)
            await record(c, v.ContainerPathExtracted(
                container_id=c.id, path=path, entries=stats.entries,
                skipped_devices=stats.skipped_devices), req.actor, "cp")
        return Response(200, [("Content-Type", "application/json")])

    @r.route("GET", "/containers/{id}/export")
    async def export(req: Request) -> Response:
        stack = AsyncExitStack()
        try:
            c, rootfs = await stack.enter_async_context(container_root(req.params["id"]))
            await record(c, v.ContainerExported(container_id=c.id), req.actor, "export")
        except BaseException:
            await stack.aclose()
            raise
        return Response(200, [("Content-Type", "application/x-tar")],
                        stream=_ChunkStream(files_.export_rootfs(rootfs), stack.aclose))

    @r.route("GET", "/containers/{id}/changes")
    async def changes(req: Request) -> Response:
        c = find_container(engine.state, req.params["id"])
        if c.status in ("creating", "removing"):
            raise Conflict(f"container {c.name} is {c.status}", hint="try again when it is done")
        upper = files.upper_dir(c.id)
        lowers = list(reversed(files.layer_paths(c)))
        entries = await trio.to_thread.run_sync(files_.upper_entries, upper, lowers)
        return json_response([{"Path": path, "Kind": kind}
                              for path, kind in classify_changes(entries)])

    @r.route("GET", "/containers/{id}/stats")
    async def stats(req: Request) -> Response:
        c = find_container(engine.state, req.params["id"])
        stream, one_shot = req.bool("stream", True), req.bool("one-shot")
        host_memory = await trio.to_thread.run_sync(files_.host_memory)

        async def sample() -> StatsSample:
            cur = engine.state.containers.get(c.id)
            if cur is None or cur.status not in _LIVE:
                return StatsSample(read_ns=ctx.clock())
            return await trio.to_thread.run_sync(
                files_.read_sample, f"/shipslog/{c.id}", cur.pid)

        def shaped(now: StatsSample, before: StatsSample | None) -> dict[str, Any]:
            cur = engine.state.containers.get(c.id)
            return shape_stats(now, before, container_id=c.id,
                               name=cur.name if cur else c.name, host_memory=host_memory,
                               rfc3339=rfc3339)

        if not stream:
            first = await sample()
            if one_shot or c.status not in _LIVE:
                return json_response(shaped(first, None))
            await trio.sleep(STATS_INTERVAL)  # a CPU percentage needs two readings
            return json_response(shaped(await sample(), first))

        async def body() -> AsyncIterator[bytes]:
            before: StatsSample | None = None
            while True:
                now = await sample()
                yield json.dumps(shaped(now, before)).encode() + b"\n"
                cur = engine.state.containers.get(c.id)
                if cur is None or cur.status not in _LIVE:
                    return
                before = now
                await trio.sleep(STATS_INTERVAL)

        return Response(200, [("Content-Type", "application/json")], stream=body())

    return r
