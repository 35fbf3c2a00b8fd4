"""Read container logs written by conmon (CRI `k8s-file` format) as Docker's log stream.

I/O: reads log files; the follower also uses inotify (through ctypes: the stdlib has no
binding) and trio to wait for new lines without polling.

Format, one record per line (conmon `ctr_logging.c`, Kubernetes CRI logging):

    2026-11-28T00:14:31.428229946+00:00 stdout F hello

`F` ends a line, `P` is a partial chunk (no newline in the output yet). Records are turned
back into the bytes the container wrote: `F` records get their newline back, `P` records
do not, so concatenating a stream's records reproduces it exactly. Rotated files are
`<path>.1` (newest) … `<path>.N` (oldest), read oldest first; conmon's own size cap
replaces the file in place by rename, which the follower notices by inode.
"""

from __future__ import annotations

import calendar
import collections
import ctypes
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import BinaryIO

import trio

LogRecord = tuple[str, int, bytes]  # (stream, timestamp in Unix ns, bytes)

_TS = re.compile(rb"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def parse_timestamp(raw: bytes) -> int:
    """RFC 3339 with nanoseconds and a numeric offset (or Z) → Unix nanoseconds."""
    m = _TS.match(raw)
    if not m:
        raise ValueError(f"bad timestamp {raw!r}")
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    frac = (m.group(7) or b"0").ljust(9, b"0")
    secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    tz = m.group(8)
    if tz != b"Z":
        sign = 1 if tz[:1] == b"+" else -1
        secs -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return secs * 1_000_000_000 + int(frac)


def parse_line(line: bytes) -> LogRecord | None:
    """One k8s-file line (without its trailing newline) → record; None if malformed."""
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        return None
    ts_raw, stream, tag = parts[0], parts[1], parts[2]
    content = parts[3] if len(parts) == 4 else b""
    if stream not in (b"stdout", b"stderr") or tag not in (b"F", b"P"):
        return None
    try:
        ts = parse_timestamp(ts_raw)
    except ValueError:
        return None
    return stream.decode(), ts, content + (b"\n" if tag == b"F" else b"")


def log_files(path: str | os.PathLike[str]) -> list[Path]:
    """The current log and its rotated predecessors, oldest first."""
    base = Path(path)
    rotated = []
    n = 1
    while (p := base.with_name(f"{base.name}.{n}")).exists():
        rotated.append(p)
        n += 1
    files = list(reversed(rotated))
    if base.exists():
        files.append(base)
    return files


def _records_in(f: Path) -> Iterator[LogRecord]:
    try:
        fh = open(f, "rb")  # noqa: SIM115 - generator owns it
    except FileNotFoundError:
        return
    with fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break  # a record still being written; the follower will pick it up
            rec = parse_line(raw[:-1])
            if rec is not None:
                yield rec


def _wanted(rec: LogRecord, stdout: bool, stderr: bool, since_ns: int, until_ns: int) -> bool:
    stream, ts, _ = rec
    if (stream == "stdout" and not stdout) or (stream == "stderr" and not stderr):
        return False
    if since_ns and ts < since_ns:
        return False
    if until_ns and ts > until_ns:
        return False
    return True


def read_logs(
    path: str | os.PathLike[str],
    *,
    stdout: bool = True,
    stderr: bool = True,
    since_ns: int = 0,
    until_ns: int = 0,
    tail: int | None = None,
) -> Iterator[LogRecord]:
    """Records in order, filtered as `docker logs --since/--until/--tail` would."""
    gen = (
        rec
        for f in log_files(path)
        for rec in _records_in(f)
        if _wanted(rec, stdout, stderr, since_ns, until_ns)
    )
    if tail is None or tail < 0:
        yield from gen
    elif tail > 0:
        yield from collections.deque(gen, maxlen=tail)


# -- following --------------------------------------------------------------------------

_IN_MODIFY = 0x002
_IN_CLOSE_WRITE = 0x008
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_libc = ctypes.CDLL(None, use_errno=True)


def inotify_dir(directory: Path) -> int:
    fd = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1 failed")
    mask = _IN_MODIFY | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE
    if _libc.inotify_add_watch(fd, os.fsencode(directory), mask) < 0:
        err = ctypes.get_errno()
        os.close(fd)
        raise OSError(err, f"inotify_add_watch {directory} failed")
    return fd


def drain_inotify(fd: int) -> None:
    try:
        while os.read(fd, 65536):
            pass
    except BlockingIOError:
        pass


async def follow_logs(
    path: str | os.PathLike[str],
    *,
    stop: trio.Event,
    stdout: bool = True,
    stderr: bool = True,
    since_ns: int = 0,
    tail: int | None = None,
) -> AsyncIterator[LogRecord]:
    """`docker logs --follow`: the existing records (as `read_logs`), then new ones as they
    are written, until `stop` is set (normally: the container exited), after which what is
    left in the file is drained. Waits on inotify, never on a timer."""
    base = Path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    ifd = inotify_dir(base.parent)
    fh = None
    try:
        # The history is read through the same open file, up to the end of its last complete
        # record: a lazy re-read by path could see lines the follower then reads again.
        fh = _open_or_none(base)
        start = _complete_end(fh) if fh else 0
        older = [f for f in log_files(base) if f != base]
        head = b""
        if fh is not None:
            fh.seek(0)
            head = fh.read(start)  # leaves the position at `start` for the follow loop
        history: Iterator[LogRecord] = (
            rec for rec in _chain(older, head) if _wanted(rec, stdout, stderr, since_ns, 0)
        )
        if tail is not None and tail >= 0:
            history = iter(collections.deque(history, maxlen=tail))
        for rec in history:
            yield rec
        pending = b""
        while True:
            stopping = stop.is_set()
            if fh is None:
                fh, pending = _open_or_none(base), b""
            data = fh.read() if fh else b""
            if not data and fh is not None and _replaced(fh, base):
                # Rotated or capped by rename: the old file is drained, follow the new one.
                fh.close()
                fh = None
                continue
            if data:
                pending += data
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    found = parse_line(raw)
                    if found is not None and _wanted(found, stdout, stderr, since_ns, 0):
                        yield found
                continue
            if stopping:
                return
            async with trio.open_nursery() as nursery:

                async def on_stop(scope: trio.CancelScope = nursery.cancel_scope) -> None:
                    await stop.wait()
                    scope.cancel()

                nursery.start_soon(on_stop)
                await trio.lowlevel.wait_readable(ifd)
                nursery.cancel_scope.cancel()
            drain_inotify(ifd)
    finally:
        if fh is not None:
            fh.close()
        os.close(ifd)


def _open_or_none(path: Path) -> BinaryIO | None:
    try:
        return open(path, "rb")  # noqa: SIM115 - closed by the follower
    except FileNotFoundError:
        return None


def _chain(older: list[Path], head: bytes) -> Iterator[LogRecord]:
    for f in older:
        yield from _records_in(f)
    for raw in head.split(b"\n")[:-1]:
        rec = parse_line(raw)
        if rec is not None:
            yield rec


def _complete_end(fh: BinaryIO) -> int:
    """Offset just past the last complete record: `read_logs` skips a record still being
    written, so the follower must start at its beginning, not at the file's end."""
    size = os.fstat(fh.fileno()).st_size
    back = min(size, 1 << 16)  # a conmon record is one writev of at most ~8 KiB + header
    fh.seek(size - back)
    tail = fh.read(back)
    return size - back + tail.rfind(b"\n") + 1


def _replaced(fh: BinaryIO, path: Path) -> bool:
    try:
        return os.stat(path).st_ino != os.fstat(fh.fileno()).st_ino
    except FileNotFoundError:
        return False
