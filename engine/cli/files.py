"""Container verbs about files and counters: `cp`, `diff`, `export`, `stats`.

I/O: the daemon's API (through `ctx.client`), local files named on the command line, stdio.

`cp` follows the docker CLI's rules: `CONTAINER:PATH` names a path in a container (a local
path with a colon must start with `/` or `./`); copying out asks the daemon for a tar and
unpacks it with tarfile's "data" filter (nothing outside the destination, no devices, no
setuid bits); copying in sends a tar of the local path, named for where it should land —
into an existing directory under its own name, otherwise under the destination's name.
`-` as the source reads a tar from stdin; as the destination writes the tar to stdout.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import posixpath
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

from engine.cli import format as fmt
from engine.cli.client import ApiError
from engine.cli.context import Context
from engine.cli.errors import CliError, UsageError

DIFF_TABLE = "{{.Kind}} {{.Path}}"
DIFF_TITLES = {"Kind": "KIND", "Path": "PATH"}
STATS_TABLE = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t"
               "{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}")
STATS_TITLES = {"ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
                "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O",
                "BlockIO": "BLOCK I/O", "PIDs": "PIDS", "Container": "CONTAINER"}
_KIND_LETTERS = {0: "C", 1: "A", 2: "D"}
_MODE_DIR = 1 << 31


def register(sub: Any) -> None:
    p = sub.add_parser("cp", help="Copy files between a container and the local filesystem")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line on stderr")
    p.add_argument("-a", "--archive", action="store_true",
                   help="keep uid/gid (accepted for compatibility; owners are always kept)")
    p.add_argument("-L", "--follow-link", action="store_true",
                   help="copy what a source symlink points to")
    p.add_argument("source", metavar="SRC")
    p.add_argument("dest", metavar="DEST")
    p.set_defaults(func=cmd_cp)

    p = sub.add_parser("diff", help="Inspect changes to files on a container's filesystem")
    p.add_argument("--format", default="", help='"json" or a Go template')
    p.add_argument("container")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("export", help="Export a container's filesystem as a tar archive")
    p.add_argument("-o", "--output", default="", help="write to a file instead of stdout")
    p.add_argument("container")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("stats", help="Display containers' resource usage")
    p.add_argument("-a", "--all", action="store_true", help="all containers, not just running")
    p.add_argument("--no-stream", action="store_true", help="one reading, then exit")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format", default="", help='"json", "table …" or a Go template')
    p.add_argument("containers", nargs="*", metavar="CONTAINER")
    p.set_defaults(func=cmd_stats)


# ------------------------------------------------------------------------------- cp


def split_cp_arg(arg: str) -> tuple[str, str]:
    """("container", "path") for `CONTAINER:PATH`, ("", arg) for a local path (docker's
    splitCpArg: an absolute or ./-relative path is local even with a colon in it)."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return "", arg
    container, _, path = arg.partition(":")
    return container, path


def _path_stat(ctx: Context, container: str, path: str) -> dict[str, Any] | None:
    """The container's stat of `path` (HEAD …/archive), None if it does not exist."""
    resp = ctx.client.request("HEAD", f"/containers/{container}/archive", {"path": path})
    if resp.status == 404:
        # A HEAD answer has no body to say what is missing: a missing container raises here
        ctx.client.get_json(f"/containers/{container}/json")
        return None
    if resp.status >= 400:
        raise ApiError(resp.status, f"cannot stat {container}:{path} (HTTP {resp.status})")
    header = resp.headers.get("x-docker-container-path-stat", "")
    return json.loads(base64.b64decode(header)) if header else {}


def cmd_cp(ctx: Context, args: argparse.Namespace) -> int:
    src_container, src = split_cp_arg(args.source)
    dst_container, dst = split_cp_arg(args.dest)
    if bool(src_container) == bool(dst_container):
        raise UsageError("copying between containers is not supported" if src_container else
                         "one of SRC and DEST must be CONTAINER:PATH", "cp")
    if not (src if src_container else dst):
        raise UsageError("the container path must not be empty", "cp")
    if src_container:
        return _copy_out(ctx, src_container, src, dst, args)
    return _copy_in(ctx, src, dst_container, dst, args)


class _ChunkReader:
    """A file object over the response's chunks (tarfile reads the stream through it)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""
        self.total = 0

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buf += chunk
            self.total += len(chunk)
        if n < 0:
            n = len(self._buf)
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


def _copy_out(ctx: Context, container: str, path: str, dst: str,
              args: argparse.Namespace) -> int:
    info = _path_stat(ctx, container, path)
    if info is None:
        raise CliError(f"Could not find the file {path} in container {container}",
                       "check the path with: shipslog exec CONTAINER ls")
    if args.follow_link and info.get("linkTarget"):
        path = info["linkTarget"]
        info = _path_stat(ctx, container, path) or info
    params = {"path": path}
    if dst == "-":
        out = ctx.out_bytes()
        with ctx.client.stream("GET", f"/containers/{container}/archive", params) as chunks:
            for chunk in chunks:
                out.write(chunk)
        out.flush()
        return 0
    src_is_dir = bool(int(info.get("mode", 0)) & _MODE_DIR)
    copy_contents = path.endswith("/.")
    if os.path.isdir(dst):
        target_dir, new_top = dst, None
        if copy_contents:
            new_top = ""
    else:
        if src_is_dir and os.path.exists(dst):
            raise CliError(f"cannot copy a directory to a file: {dst}",
                           "name a directory or a path that does not exist yet")
        if dst.endswith("/"):
            raise CliError(f"destination directory {dst} does not exist",
                           "create it first, or drop the trailing slash to name a new path")
        target_dir = os.path.dirname(os.path.abspath(dst))
        if not os.path.isdir(target_dir):
            raise CliError(f"destination directory {target_dir} does not exist",
                           "create it first")
        new_top = os.path.basename(dst.rstrip("/"))
    with ctx.client.stream("GET", f"/containers/{container}/archive", params) as chunks:
        reader = _ChunkReader(chunks)
        with tarfile.open(fileobj=reader, mode="r|") as tf:  # type: ignore[call-overload]
            for member in tf:
                if new_top is not None:
                    member.name = _rebase(member.name, new_top)
                    if not member.name:
                        continue  # the "." entry of a contents copy: the directory exists
                tf.extract(member, target_dir, filter="data")
    if not args.quiet:
        ctx.err(f"Successfully copied {fmt.human_size(reader.total, 3)} to {dst}")
    return 0


def _rebase(name: str, new_top: str) -> str:
    """Replace the first component of a member name (the copied resource's own name)."""
    rest = name.lstrip("/").split("/", 1)
    tail = rest[1] if len(rest) > 1 else ""
    if not new_top:
        return tail.rstrip("/")
    return f"{new_top}/{tail}".rstrip("/") if tail else new_top


def _copy_in(ctx: Context, src: str, container: str, path: str,
             args: argparse.Namespace) -> int:
    endpoint = f"/containers/{container}/archive"
    if src == "-":
        stdin = ctx.stdin or sys.stdin.buffer
        if ctx.isatty(stdin):
            raise CliError("refusing to read a tar archive from a terminal",
                           "redirect one: shipslog cp - CONTAINER:DIR < files.tar")
        ctx.client.upload("PUT", endpoint, stdin, {"path": path, "noOverwriteDirNonDir": True})
        return 0
    if not os.path.lexists(src):
        raise CliError(f"no such file or directory: {src}", "check the local path")
    src_is_dir = os.path.isdir(src) and not (os.path.islink(src) and not args.follow_link)
    info = _path_stat(ctx, container, path)
    if info is not None and int(info.get("mode", 0)) & _MODE_DIR:
        target_dir = path
        name = "." if src.endswith("/.") else os.path.basename(os.path.normpath(src))
    else:
        if info is not None and src_is_dir:
            raise CliError(f"cannot copy a directory over the file {container}:{path}",
                           "name a directory or a path that does not exist yet")
        if path.endswith("/"):
            raise CliError(f"destination directory {container}:{path} does not exist",
                           "create it first, or drop the trailing slash to name a new path")
        target_dir = posixpath.dirname(posixpath.join("/", path)) or "/"
        name = posixpath.basename(path.rstrip("/"))
    with _tar_of(src, name, follow=args.follow_link) as (spool, size):
        ctx.client.upload("PUT", endpoint, spool,
                          {"path": target_dir, "noOverwriteDirNonDir": True})
    if not args.quiet:
        ctx.err(f"Successfully copied {fmt.human_size(size, 3)} to {container}:{path}")
    return 0


@contextlib.contextmanager
def _tar_of(src: str, name: str, *, follow: bool) -> Iterator[tuple[IO[bytes], int]]:
    """A tar of `src` named `name` (spooled: memory first, a temp file past 16 MiB)."""
    spool = tempfile.SpooledTemporaryFile(max_size=16 << 20)
    with spool:
        with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT,
                          dereference=follow) as tf:
            tf.add(src, arcname=name)
        size = spool.tell()
        spool.seek(0)
        yield spool, size  # type: ignore[misc]


# ----------------------------------------------------------------------------- diff


def cmd_diff(ctx: Context, args: argparse.Namespace) -> int:
    changes = ctx.client.get_json(f"/containers/{args.container}/changes") or []
    rows = [{"Kind": _KIND_LETTERS.get(c.get("Kind"), "?"), "Path": c.get("Path", "")}
            for c in changes]
    ctx.stdout.write(fmt.render_list(args.format, rows, DIFF_TABLE, DIFF_TITLES))
    return 0


# --------------------------------------------------------------------------- export


def cmd_export(ctx: Context, args: argparse.Namespace) -> int:
    if not args.output and ctx.isatty(ctx.stdout):
        raise CliError("cowardly refusing to write the archive to a terminal",
                       "use the -o flag or redirect: shipslog export CONTAINER > rootfs.tar")
    path = f"/containers/{args.container}/export"
    if not args.output:
        out = ctx.out_bytes()
        with ctx.client.stream("GET", path) as chunks:
            for chunk in chunks:
                out.write(chunk)
        out.flush()
        return 0
    partial = args.output + ".partial"
    try:
        with open(partial, "wb") as fh, ctx.client.stream("GET", path) as chunks:
            for chunk in chunks:
                fh.write(chunk)
        os.replace(partial, args.output)  # never a half-written archive under the real name
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
    return 0


# ---------------------------------------------------------------------------- stats


def stats_fields(stats: dict[str, Any], *, ref: str, trunc: bool = True) -> dict[str, Any]:
    """One row of `stats` as the docker CLI formats it."""
    from engine.core.stats_shape import stats_row

    row = stats_row(stats)
    cid = stats.get("id", "")
    return {
        "Container": ref,
        "ID": cid[:12] if trunc else cid,
        "Name": str(stats.get("name", "")).lstrip("/"),
        "CPUPerc": f"{row.cpu_percent:.2f}%",
        "MemUsage": f"{fmt.bytes_size(row.memory_used)} / {fmt.bytes_size(row.memory_limit)}",
        "MemPerc": f"{row.memory_percent:.2f}%",
        "NetIO": f"{fmt.human_size(row.net_rx, 3)} / {fmt.human_size(row.net_tx, 3)}",
        "BlockIO": f"{fmt.human_size(row.block_read, 3)} / {fmt.human_size(row.block_write, 3)}",
        "PIDs": str(row.pids),
    }


def _read_all(ctx: Context, refs: list[str]) -> list[dict[str, Any]]:
    """One two-reading sample per container, taken side by side (each takes a second)."""
    results: dict[str, Any] = {}

    def one(ref: str) -> None:
        try:
            results[ref] = ctx.client.get_json(f"/containers/{ref}/stats", {"stream": False})
        except Exception as exc:  # noqa: BLE001 - reported below, in the main thread
            results[ref] = exc

    threads = [threading.Thread(target=one, args=(ref,), daemon=True) for ref in refs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows: list[dict[str, Any]] = []
    for ref in refs:
        got = results.get(ref)
        if isinstance(got, BaseException):
            raise got
        rows.append(got or {})
    return rows


def cmd_stats(ctx: Context, args: argparse.Namespace) -> int:
    refs = list(args.containers)
    if not refs:
        params = {"all": True} if args.all else None
        refs = [c["Id"] for c in ctx.client.get_json("/containers/json", params) or []]
    while True:
        samples = _read_all(ctx, refs) if refs else []
        rows = [stats_fields(s, ref=ref, trunc=not args.no_trunc)
                for ref, s in zip(refs, samples, strict=True)]
        text = fmt.render_list(args.format, rows, STATS_TABLE, STATS_TITLES)
        if args.no_stream:
            ctx.stdout.write(text)
            return 0
        if ctx.isatty(ctx.stdout):
            ctx.stdout.write("\x1b[2J\x1b[H")  # clear the screen, as docker stats does
        ctx.stdout.write(text)
        ctx.stdout.flush()
        time.sleep(0.2)
