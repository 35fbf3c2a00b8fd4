"""Compaction of the event log: archive the history of removed objects, by hand or on a timer.

I/O: the event store (one transaction, on the writer's thread in the daemon) and archive
files under `<root>/archive/`, written durably here (temporary name, fsync, rename, directory
fsync) before any row leaves the live log. Which streams go is decided by the pure
`engine.core.compaction.select_archivable`; the mechanics (tombstones, the `ChainCompacted`
event, the one sanctioned DELETE) are `EventStore.compact`'s.

Automatic compaction (daemon flags, both off by default):
- `--compact-after DURATION`: archive objects removed more than DURATION ago;
- `--compact-max-events N`: when the live log holds more than N events, archive every
  object removed so far (older than `--compact-after` if that is set too).
The daemon checks every `--compact-interval` (default 10m).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import trio

from engine.core.compaction import REMOVAL_TYPES, op_streams_of, select_archivable
from engine.core.errors import InvalidArgument
from engine.shell.logread import point_of
from events.archive import ArchivedEvent, ArchiveHeader, encode_lines
from events.envelope import Actor, Envelope
from events.store import CompactionReport, CompactionView, EventStore
from events.writer import Published, StoreWriter

__all__ = ["archive_dir", "compact", "compact_in_writer", "live_events", "run_auto_compaction"]

log = logging.getLogger("shipslogd")


def archive_dir(root: str | Path) -> Path:
    return Path(root) / "archive"


class DurableArchive:
    """Writes one archive file so that a crash leaves either nothing or the whole file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __call__(self, name: str, header: ArchiveHeader,
                 events: Sequence[ArchivedEvent]) -> tuple[Path, str]:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        final = self.directory / name
        tmp = self.directory / f".{name}.tmp"
        digest = hashlib.sha256()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                for chunk in encode_lines(header, events):
                    fh.write(chunk)
                    digest.update(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            # The name comes from the seq its ChainCompacted event will get: a file already
            # there is what an earlier, uncommitted attempt left, never a referenced archive.
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return final, digest.hexdigest()


def choose(view: CompactionView[Any], before_ns: int) -> frozenset[str]:
    """Read the candidate streams (removed objects, then their operations) and select."""
    removed = [s for s in view.streams_with_types(REMOVAL_TYPES, before_ns)
               if s.startswith(("container-", "network-"))]
    streams = view.read_streams(removed)
    ops = sorted(op_streams_of(e for envs in streams.values() for e in envs) - set(streams))
    streams.update(view.read_streams(ops))
    return select_archivable(streams, view.state, before_ns)


def compact(store: EventStore[Any], root: str | Path, *, before_ns: int, actor: Actor,
            now_ns: int) -> tuple[CompactionReport, list[Envelope]]:
    """One compaction on the store's writing connection (call it on the writer's thread)."""
    return store.compact(lambda view: choose(view, before_ns), before_ns=before_ns,
                         write_archive=DurableArchive(archive_dir(root)), actor=actor,
                         op_id="compact-" + os.urandom(6).hex(), now_ns=now_ns)


async def compact_in_writer(writer: StoreWriter, root: str | Path, *, before_ns: int,
                            actor: Actor, now_ns: int) -> CompactionReport:
    """`compact` between two group commits; followers get the ChainCompacted event."""

    def work() -> Published:
        report, envelopes = compact(writer.store, root, before_ns=before_ns, actor=actor,
                                    now_ns=now_ns)
        return Published(report, envelopes)

    report: CompactionReport = await writer.run_in_writer(work)  # type: ignore[arg-type]
    return report


def live_events(store: EventStore[Any]) -> int:
    head = store.head()
    return head - store.archived_between(0, head)


def auto_before(now_ns: int, *, after_ns: int | None, max_events: int | None,
                live: int) -> int | None:
    """The `before` of an automatic compaction now, or None when none is due (pure)."""
    if max_events is not None and live > max_events:
        return now_ns - (after_ns or 0)
    if after_ns is not None:
        return now_ns - after_ns
    return None


async def run_auto_compaction(writer: StoreWriter, root: str | Path, clock: Any, *,
                              after_ns: int | None, max_events: int | None,
                              interval_s: float, actor: Actor,
                              hold: Callable[[], int] | None = None) -> None:
    """The daemon's periodic task (runs until cancelled). `hold` (replication, issue 19):
    the newest recorded_at compaction may reach, so that no event leaves the live log before
    the center acknowledged it."""
    if after_ns is None and max_events is None:
        return
    while True:
        live = await trio.to_thread.run_sync(live_events, writer.store)
        now = int(clock())
        before = auto_before(now, after_ns=after_ns, max_events=max_events, live=live)
        if before is not None and hold is not None:
            before = min(before, await trio.to_thread.run_sync(hold))
        if before is not None:
            try:
                report = await compact_in_writer(writer, root, before_ns=before, actor=actor,
                                                 now_ns=now)
            except Exception as exc:  # noqa: BLE001 - a failed round must not stop the daemon
                log.warning("automatic compaction failed: %s", exc)
            else:
                if report.count:
                    log.info("compacted %d events of %d removed objects into %s",
                             report.count, report.streams, report.archive)
        await trio.sleep(interval_s)


def report_json(report: CompactionReport, live: int) -> dict[str, Any]:
    return {"Count": report.count, "Streams": report.streams, "FirstSeq": report.first_seq,
            "LastSeq": report.last_seq, "Archive": report.archive,
            "ArchiveSha256": report.archive_sha256, "BytesFreed": report.bytes_freed,
            "SummarySeq": report.summary_seq, "BeforeNs": report.before_ns,
            "LiveEvents": live}


def before_ns_of(store: EventStore[Any], text: str | None, now_ns: int) -> int:
    """The `before` bound as a time; `seq:N` is the time event N was recorded."""
    point = point_of(text, now_ns, "before")
    if point.seq is None:
        assert point.time_ns is not None
        return point.time_ns
    head = store.head()
    if not 1 <= point.seq <= head:
        raise InvalidArgument(f"no event seq:{point.seq} in the log (head is {head})",
                              hint="give a seq between 1 and the head, or a time")
    env = next(iter(store.read(point.seq - 1, limit=1)), None)
    if env is None or env.seq != point.seq:
        raise InvalidArgument(f"event seq:{point.seq} was itself archived",
                              hint="give a later seq, or a time")
    return env.recorded_at
