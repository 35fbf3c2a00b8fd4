"""What `verify` and `compact` share beyond the hash chain itself: compaction reports and the
read view the selection uses, the tombstones' digest, the checks of each `ChainCompacted`
summary against its tombstones and archive, and the chain check of one window of seqs (run
in a worker process for parallel verify).

I/O: reads the log through its backend and archive files under the state root.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

import msgspec

from events.archive import (
    ArchivedEvent,
    ArchiveError,
    ArchiveHeader,
    file_sha256,
    read_archive,
)
from events.archive import canonical as archive_canonical
from events.backend import Row, StoreBackend
from events.codec import decode_event
from events.envelope import Envelope
from events.hashing import WindowResult, chain_hash
from events.sqlite_backend import BUSY_TIMEOUT_S, SqliteBackend, _envelope
from events.vocabulary import ChainCompacted

State = TypeVar("State")



class CompactionReport(msgspec.Struct, frozen=True, kw_only=True):
    """What one compaction did (count 0: nothing was old enough; no event was appended)."""

    before_ns: int
    count: int = 0
    streams: int = 0
    first_seq: int = 0
    last_seq: int = 0
    archive: str = ""  # path of the archive file
    archive_sha256: str = ""
    bytes_freed: int = 0  # stored bytes of the archived rows
    summary_seq: int = 0  # seq of the ChainCompacted event


ArchiveWriter = Callable[[str, ArchiveHeader, Sequence[ArchivedEvent]], tuple[Path, str]]


class CompactionView(Generic[State]):
    """The log as a compaction's `choose` sees it, inside the compaction's transaction."""

    def __init__(self, backend: StoreBackend, state: State) -> None:
        self._backend = backend
        self.state = state

    def streams_with_types(self, types: Sequence[str], before_ns: int) -> list[str]:
        """Streams holding an event of one of `types` recorded before `before_ns`."""
        return self._backend.streams_with_types(types, before_ns) if types else []

    def read_streams(self, streams: Sequence[str]) -> dict[str, list[Envelope]]:
        """Every event of each stream, in seq order."""
        found: dict[str, list[Envelope]] = {stream: [] for stream in streams}
        for row in self._backend.rows_of_streams(streams):
            found[row[1]].append(_envelope(row))
        return found


def tombstones_digest(rows: Iterable[tuple[int, str]]) -> str:
    """sha256 over "seq hash\\n" of archived events in seq order (`tombstones_sha256`)."""
    digest = hashlib.sha256()
    for seq, hash_ in rows:
        digest.update(b"%d %s\n" % (seq, hash_.encode("ascii")))
    return digest.hexdigest()


def _row_bytes(row: Row) -> int:
    return sum(len(value) for value in (row[1], row[4], row[6], row[7], row[9], row[10])) + \
        (len(row[8]) if row[8] else 0) + 4 * 8


class _CompactionCheck(msgspec.Struct, frozen=True):
    problem: tuple[int | None, str] | None
    archived: int
    checked: int
    missing: tuple[str, ...]


def _check_compactions(
    r: StoreBackend, limit: int, archive_dir: str | Path | None
) -> _CompactionCheck:
    """Check each compaction up to `limit`: its tombstones against its ChainCompacted event,
    and, when its archive file is found, the file's sha256 and every archived event's link."""
    if not r.has_tombstones():
        return _CompactionCheck(None, 0, 0, ())
    problems: list[tuple[int, str]] = []
    orphan = r.orphan_tombstone(limit)
    if orphan is not None:
        problems.append((orphan, f"event {orphan} is archived, but no compaction recorded it"))
    archived = r.count_tombstones(0, limit)
    checked = 0
    missing: list[str] = []
    for seq, payload, schema_version in r.compactions(limit):
        try:
            summary = decode_event("ChainCompacted", schema_version, payload)
        except Exception:  # noqa: BLE001 - an altered summary: its own link says so
            continue
        assert isinstance(summary, ChainCompacted)
        tombs = r.tombstones_of(seq)
        if not tombs:
            continue  # appended by hand, not by `compact`: it moved nothing (gaps show deletes)
        where = tombs[0][0]
        altered: tuple[int, str] | None = None
        if len(tombs) != summary.count or tombstones_digest(tombs) != summary.tombstones_sha256:
            altered = (where, f"the tombstones of compaction event {seq} (events "
                              f"{summary.first_seq}..{summary.last_seq}) were altered")
        path = Path(archive_dir) / Path(summary.archive).name if archive_dir is not None else None
        if path is None or not path.exists():
            missing.append(summary.archive)
            if altered is not None:
                problems.append(altered)
            continue
        try:
            bad = _check_archive(r, path, summary, tombs)
        except ArchiveError as exc:
            bad = (where, f"{exc}")
        # The archive names the exact event whose tombstone or line was altered.
        if bad is not None or altered is not None:
            problems.append(bad or altered)  # type: ignore[arg-type]
        else:
            checked += summary.count
    problem = min(problems) if problems else None
    return _CompactionCheck(problem, archived, checked, tuple(missing))


def _check_archive(r: StoreBackend, path: Path, summary: ChainCompacted,
                   tombs: list[tuple[int, str]]) -> tuple[int, str] | None:
    """The first archived event whose line no longer hashes to its tombstone, else a problem
    with the file as a whole (sha256, count), else None."""
    _, events = read_archive(path)
    expected = dict(tombs)
    prevs = r.stored_hashes(sorted({seq - 1 for seq, _ in tombs}))
    for index, ev in enumerate(events):
        if ev is None:
            seq = tombs[index][0] if index < len(tombs) else tombs[0][0]
            return seq, f"event {seq} in archive {path.name} is no longer readable"
        stored = expected.get(ev.seq)
        prev = prevs.get(ev.seq - 1)
        if stored is None or ev.hash != stored or prev is None or \
                chain_hash(prev, archive_canonical(ev)) != stored:
            return ev.seq, (f"archived event {ev.seq} (archive {path.name}) does not match "
                            "its hash: the archive was altered")
    if len(events) != summary.count:
        return tombs[0][0], (f"archive {path.name} holds {len(events)} events, "
                                   f"compaction event says {summary.count}")
    if file_sha256(path) != summary.archive_sha256:
        return tombs[0][0], (f"archive {path.name} does not match the sha256 recorded "
                                   "in its compaction event: the file was altered")
    return None


def _check_span_in_process(path: str, lo: int, hi: int) -> WindowResult:
    """`StoreBackend.check_span` in a worker process (parallel verify)."""
    backend = SqliteBackend.connect(path, readonly=True, timeout=BUSY_TIMEOUT_S)
    try:
        return backend.check_span(lo, hi)
    finally:
        backend.close()
