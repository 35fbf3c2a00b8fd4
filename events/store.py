"""The event store: an append-only, hash-chained event log, with inline projections.

I/O: a database through a `StoreBackend` (events/backend.py): SQLite files through
`events/sqlite_backend.py` (the default), or PostgreSQL through `events/pg_backend.py` for a
`postgresql://` location; and worker processes for a parallel `verify` of an SQLite file
(`events/verification.py`).

Guarantees (DESIGN.md, "The event log"):
- `seq` is global and gap-free: it is assigned here as head+1 inside a `BEGIN IMMEDIATE`
  transaction (CPython#124510: a deferred BEGIN that upgrades to a writer can fail with BUSY
  without waiting), never by AUTOINCREMENT, which skips numbers after a rollback.
- Optimistic concurrency per stream via `UNIQUE(stream, stream_version)` and `expected_version`.
- A batch appended with a `command_id` is recorded at most once; a retry gets the original
  envelopes back.
- UPDATE and DELETE are refused by triggers; every event carries
  `hash = sha256(prev_hash ‖ canonical bytes)` (events/hashing.py). The one sanctioned
  DELETE is `compact`'s: inside its transaction it writes the archive (events/archive.py),
  keeps `(seq, hash)` tombstones, lifts the trigger for its DELETE only and appends a
  `ChainCompacted` event; `verify` checks live rows, tombstones and archives together.
- File databases run in WAL mode with `synchronous=FULL` (an acknowledged event survives power
  loss, RELIABILITY F-06) and a finite busy timeout (F-13); files are created 0600 (S-08/S-01).
  The -wal file is preallocated to its checkpoint size, so each commit's fdatasync flushes an
  overwrite, not a file growth (`SqliteBackend.preallocate_wal`); `checkpoint()` lets the
  daemon's writer checkpoint when idle instead of inside an appender's COMMIT.
- Inline projections are folded and written in the same transaction as the events
  (read-your-writes); `rebuild()` rebuilds their tables from zero and swaps them in atomically.

SQL lives in the backends (the public seam is `events.backend.StoreBackend`); errors in
events/store_errors.py, re-exported here. `events/writer.py` drives
`append_group` from one thread to commit many callers' batches with one fsync.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import multiprocessing
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from events.archive import (
    ArchivedEvent,
    ArchiveHeader,
)
from events.codec import (
    actor_bytes,
    canonical_bytes,
    decode_actor,
    encode_event,
)
from events.envelope import Actor, Envelope, Pending, RowChange
from events.hashing import (
    GENESIS_HASH,
    VerifyResult,
    chain_hash,
)
from events.vocabulary import ChainCompacted

__all__ = [
    "Batch",
    "CompactionReport",
    "CompactionView",
    "ConcurrencyConflict",
    "EventStore",
    "InlineProjection",
    "RowChange",
    "RowChangeLike",
    "StoreBackend",
    "StoreBusy",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
]

from events.backend import EventFilter, Row, RowChangeLike, StoreBackend
from events.sqlite_backend import (
    _CHUNK,
    _CURRENT_DECODERS,
    BUSY_TIMEOUT_S,
    SCHEMA_VERSION,
    SqliteBackend,
    _check_text,
    _decode_payload,
    _envelope,
)
from events.store_errors import (
    ConcurrencyConflict,
    StoreBusy,
    StoreError,
    StoreFull,
    StoreUnavailable,
)
from events.verification import (
    ArchiveWriter,
    CompactionReport,
    CompactionView,
    _check_compactions,
    _check_span_in_process,
    _row_bytes,
    tombstones_digest,
)

_log = logging.getLogger(__name__)

State = TypeVar("State")

SNAPSHOT_EVERY = 50_000
_PARALLEL_VERIFY_MIN = 200_000  # below this, worker processes cost more than they save



class InlineProjection(Protocol[State]):
    """A pure fold the store keeps up to date inside each append transaction.

    Optional, found with getattr: `fold_state(state, envelopes) -> state` (the same fold
    without rows, for loads, rebuilds and time travel; its envelopes carry no `hash` or
    `command_id`), `rows_of(state)` (every row, what a rebuild writes), and for snapshots
    `snapshot_version: str` with `encode_state(state) -> bytes` / `decode_state(bytes)`.
    `fold_builder(state)` (with snapshots) keeps one fold open across a long range: an
    object with `feed(envelopes)`, `snapshot() -> (() -> bytes)` (what `encode_state` gives
    for the state fed so far; the returned call may run on another thread) and `state()`.
    """

    @property
    def name(self) -> str: ...
    @property
    def tables(self) -> Sequence[str]: ...

    def initial(self) -> State: ...

    def fold(
        self, state: State, envelopes: Sequence[Envelope]
    ) -> tuple[State, Sequence[RowChangeLike]]: ...


class _Group:
    """The staged view of one group commit: what its successful batches have appended so far.

    `pending_*` hold the batch being prepared; `keep()` folds them into the group, `discard()`
    drops them (the batch failed).
    """

    def __init__(self, head: int, last_hash: str) -> None:
        self.head, self.last_hash = head, last_hash
        self.versions: dict[str, int] = {}
        self.base: dict[str, int] = {}  # versions read from the database for this group
        self.rows: list[Row] = []
        self.commands: list[tuple[str, int, int]] = []
        self.by_command: dict[str, list[Envelope]] = {}
        self.changes: list[Any] = []
        self._reset()

    def _reset(self) -> None:
        self.pending_versions: dict[str, int] = {}
        self.pending_rows: list[Row] = []
        self.pending_commands: list[tuple[str, int, int]] = []
        self.pending_by_command: tuple[str, list[Envelope]] | None = None
        self.pending_head, self.pending_hash = self.head, self.last_hash

    def keep(self) -> None:
        self.versions.update(self.pending_versions)
        self.rows.extend(self.pending_rows)
        self.commands.extend(self.pending_commands)
        if self.pending_by_command is not None:
            self.by_command[self.pending_by_command[0]] = self.pending_by_command[1]
        self.head, self.last_hash = self.pending_head, self.pending_hash
        self._reset()

    def discard(self) -> None:
        self._reset()


class Batch(msgspec.Struct):
    """One caller's append: its events and envelope fields (see `EventStore.append`)."""

    pending: Sequence[Pending]
    actor: Actor
    op_id: str
    command_id: str | None
    now_ns: int


class EventStore(Generic[State]):
    """The event log. Thread-safe; one writing connection per store."""

    def __init__(
        self,
        writer: StoreBackend,
        reader: StoreBackend,
        *,
        readonly: bool,
        projection: InlineProjection[State] | None,
    ) -> None:
        self._w = writer
        self._r = reader
        self._wlock = threading.RLock()
        # Same connection for :memory: (one database per connection): share the lock too.
        self._rlock = self._wlock if reader is writer else threading.RLock()
        self.readonly = readonly
        self.projection = projection
        self._state: State | None = projection.initial() if projection else None
        self._applied = 0  # last seq folded into self._state
        # Stream versions as of `_vcache_head`, kept by the writer; dropped when the head moves
        # under us (another process appended).
        self._vcache: dict[str, int] = {}
        self._vcache_head = -1
        self.path = writer.path  # the SQLite file; None for memory and PostgreSQL
        self.location = writer.location
        # Where `verify` looks for compaction archives by default: beside an SQLite file; a
        # daemon on PostgreSQL sets its state root's archive/ (the store writes none itself).
        self.archive_dir: Path | None = (
            Path(self.path).parent / "archive" if self.path is not None else None)
        # Snapshot the projection every this many events (rebuilds, loads, the daemon's
        # `snapshot_if_due`); `_snapshot_seq` is the newest one written or found.
        self.snapshot_every = SNAPSHOT_EVERY
        self._snapshot_seq = 0

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        readonly: bool = False,
        projection: InlineProjection[State] | None = None,
        busy_timeout: float = BUSY_TIMEOUT_S,
        host_name: str | None = None,
    ) -> EventStore[State]:
        """Open the log at `path`: an SQLite file (or ":memory:"), or a PostgreSQL database
        given as a `postgresql://` URL, where the log is the one of `host_name` (default:
        this machine's name; see events/pg_backend.py)."""
        location = str(path)
        opened: list[StoreBackend] = []
        try:
            if location.startswith(("postgresql://", "postgres://")):
                from events.pg_backend import PostgresBackend

                writer: StoreBackend = PostgresBackend.connect(
                    location, host_name=host_name, readonly=readonly, timeout=busy_timeout)
            else:
                if location != ":memory:" and readonly and not Path(location).exists():
                    raise StoreError(f"no event log at {location}",
                                     "check --root / SHIPSLOG_ROOT")
                writer = SqliteBackend.connect(location, readonly=readonly, timeout=busy_timeout)
            opened.append(writer)
            reader = writer if readonly else writer.reader()
            if reader is not writer:
                opened.append(reader)
            if not readonly:
                writer.create_schema()
            version = writer.schema_version()
        except StoreError:
            for backend in opened:
                backend.close()
            raise
        except Exception as exc:
            for backend in opened:
                backend.close()
            # A damaged or foreign file must not crash startup with a traceback (F-15).
            raise StoreError(
                f"cannot open event log {location}: {exc}",
                "check the path and its permissions (the log is 0600, owned by root); if the "
                "file is damaged, restore it from backup",
            ) from exc
        if version > SCHEMA_VERSION:
            for backend in opened:
                backend.close()
            raise StoreError(
                f"event log {location} has store schema {version}, this build knows "
                f"{SCHEMA_VERSION}",
                "upgrade shipslog",
            )
        store = cls(writer, reader, readonly=readonly, projection=projection)
        if projection is not None:
            store._load_projection()
        return store

    def describe(self) -> str:
        """Where the log lives, for `info`: the file, or `postgresql://user@host:port/db (host
        NAME)` (never a password)."""
        describe = getattr(self._w, "describe", None)
        return describe() if describe is not None else self.location

    def close(self) -> None:
        with self._wlock, self._rlock:
            if self._r is not self._w:
                self._r.close()
            self._w.close()

    def __enter__(self) -> EventStore[State]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reader(self) -> EventStore[State]:
        """A store on its own read-only connection, for another thread (follow, API reads).

        For :memory: there is only one database per connection, so this returns self.
        """
        if self.location == ":memory:":
            return self
        backend = self._r.reader()
        reader: EventStore[State] = EventStore(backend, backend, readonly=True, projection=None)
        reader.archive_dir = self.archive_dir
        return reader

    # --- reads -----------------------------------------------------------------------------

    def head(self) -> int:
        with self._rlock:
            return self._r.head()[0]

    def last_hash(self) -> str:
        with self._rlock:
            return self._r.head()[1]

    def stream_version(self, stream: str) -> int:
        with self._rlock:
            return self._r.stream_version(stream)

    @property
    def state(self) -> State:
        """The inline projection's committed state (read-your-writes for this process)."""
        if self.projection is None:
            raise StoreError("this store was opened without a projection")
        return self._state  # type: ignore[return-value]

    @property
    def applied_seq(self) -> int:
        return self._applied

    def read(
        self,
        after_seq: int = 0,
        *,
        limit: int | None = None,
        stream: str | None = None,
        streams: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        op_id: str | None = None,
        until_seq: int | None = None,
    ) -> Iterator[Envelope]:
        """Events after `after_seq` in seq order; time bounds are inclusive.

        Pages by seq (keyset), so no read transaction stays open between pages: a slow
        consumer never holds back WAL checkpoints (RELIABILITY F-13).
        """
        if stream is not None:
            streams = [stream, *(streams or ())]
        if (streams is not None and not streams) or (types is not None and not types):
            return
        where = EventFilter(streams, types, since_ns, until_ns, op_id, until_seq)
        remaining = limit
        cursor = after_seq
        while remaining is None or remaining > 0:
            page = _CHUNK if remaining is None else min(_CHUNK, remaining)
            with self._rlock:
                rows = self._r.select_events(cursor, where, page)
            for row in rows:
                yield _envelope(row)
            if len(rows) < page:
                return
            cursor = rows[-1][0]
            if remaining is not None:
                remaining -= len(rows)

    def read_rows(self, table: str) -> Iterator[tuple[str, bytes]]:
        """A projection table's rows `(key, doc)`, ordered by key (the CLI's `ps` from the DB)."""
        with self._rlock:
            rows = self._r.read_rows(f"proj_{table}")
        if rows is None:
            raise StoreError(
                f"projection table {table!r} is not built in this log: no such table",
                "start the daemon once (it builds projections), or run `shipslog system rebuild`",
            )
        yield from rows

    def hash_at(self, seq: int) -> str | None:
        """The stored hash of event `seq`, live or archived (None: the log has no such event)."""
        with self._rlock:
            return self._r.stored_hash(seq)

    def archived_between(self, after_seq: int, until_seq: int) -> int:
        """How many events in seqs after_seq+1..until_seq were moved to an archive."""
        with self._rlock:
            return self._r.count_tombstones(after_seq, until_seq)

    def verify(
        self,
        *,
        until_seq: int | None = None,
        archive_dir: str | Path | None = None,
        workers: int | None = None,
    ) -> VerifyResult:
        """Recompute the hash chain over stored bytes; name the first bad event.

        Every link `stored[seq] == sha256(stored[seq-1] ‖ canonical(seq))` is checked, for
        live events from their rows and for archived ones from their archive file (found in
        `archive_dir`, by default `<dir of the database>/archive`); tombstones stand in for
        archived events in the live chain, and each compaction's tombstones and archive are
        checked against its `ChainCompacted` event. Archives that are not found are listed in
        `missing_archives` and their events counted as not re-hashed.

        Large file logs are checked in `workers` processes (default: up to 2 CPUs), each
        taking a share of the seq range: links are independent, so the shares are too.
        """
        with self._rlock:
            head = self._r.head()[0]
        limit = head if until_seq is None else min(until_seq, head)
        chain = self._verify_links(limit, workers)
        if archive_dir is None:
            archive_dir = self.archive_dir
        with self._rlock:
            compacted = _check_compactions(self._r, limit, archive_dir)
        problems = [p for p in (chain, compacted.problem) if p is not None and p[0] is not None]
        if problems:
            bad_seq, reason = min(problems)
            assert bad_seq is not None
            with self._rlock:
                before = self._r.stored_hash(bad_seq - 1) or GENESIS_HASH
            return VerifyResult(
                ok=False, checked=bad_seq - 1, first_bad_seq=bad_seq, reason=reason,
                last_hash=before, archived=compacted.archived,
                archived_checked=compacted.checked, missing_archives=compacted.missing)
        with self._rlock:
            last = self._r.stored_hash(limit) or GENESIS_HASH
        live = limit - compacted.archived
        return VerifyResult(
            ok=True, checked=live + compacted.checked, last_hash=last,
            archived=compacted.archived, archived_checked=compacted.checked,
            missing_archives=compacted.missing)

    def _verify_links(self, limit: int, workers: int | None) -> tuple[int | None, str] | None:
        """The first bad link among events 1..limit, or None."""
        if workers is None:
            workers = min(2, multiprocessing.cpu_count())
        if self.path is None or workers < 2 or limit < _PARALLEL_VERIFY_MIN:
            with self._rlock:
                result = self._r.check_span(0, limit)
            return None if result.bad_seq is None else (result.bad_seq, result.reason)
        shares = workers * 4  # smaller shares even out a busy core
        bounds = [limit * i // shares for i in range(shares + 1)]
        context = multiprocessing.get_context("spawn")  # never fork a threaded daemon
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            results = list(pool.map(_check_span_in_process, [self.path] * shares,
                                    bounds[:-1], bounds[1:]))
        bad = [(r.bad_seq, r.reason) for r in results if r.bad_seq is not None]
        return min(bad) if bad else None

    # --- compaction ------------------------------------------------------------------------

    def compact(
        self,
        choose: Callable[[CompactionView[State]], Collection[str]],
        *,
        before_ns: int,
        write_archive: ArchiveWriter,
        actor: Actor,
        op_id: str,
        now_ns: int,
    ) -> tuple[CompactionReport, list[Envelope]]:
        """Move the events of the streams `choose` picks to an archive file, in one transaction.

        `write_archive(name, header, events)` writes the archive file durably and returns
        its path and sha256. `choose` gets the log as it is inside the transaction (the inline
        projection's state, streams by event type, whole streams) and returns stream names;
        every event of those streams is archived. The archive is written before any row leaves
        `events`; the rows become tombstones `(seq, hash)` and a `ChainCompacted` event
        recording the archive's sha256 is appended in the same
        transaction. Returns the report and the envelopes appended (none if nothing matched).
        """
        if self.readonly:
            raise StoreError("this event log was opened read-only", "compact through the daemon")
        projection = self.projection
        with self._wlock:
            w = self._w
            w.begin()
            written: Path | None = None
            try:
                head, last_hash = w.head()
                staged, applied = self._catch_up(w, head)
                streams = sorted(choose(CompactionView(w, staged)))
                rows = w.rows_of_streams(streams) if streams else []
                envelopes: list[Envelope] = []
                if rows:
                    summary_seq = head + 1
                    archived = [ArchivedEvent.of_row(row) for row in rows]
                    header = ArchiveHeader(before_ns=before_ns, count=len(rows),
                                           first_seq=rows[0][0], last_seq=rows[-1][0])
                    written, digest = write_archive(
                        f"chain-{summary_seq:012d}.jsonl", header, archived)
                    w.move_to_tombstones([(row[0], row[10]) for row in rows], summary_seq)
                    event = ChainCompacted(
                        before_ns=before_ns, count=len(rows), first_seq=rows[0][0],
                        last_seq=rows[-1][0], archive=written.name, archive_sha256=digest,
                        tombstones_sha256=tombstones_digest((row[0], row[10]) for row in rows),
                        streams=len(streams), bytes=sum(_row_bytes(row) for row in rows))
                    group = _Group(head, last_hash)
                    batch = Batch([Pending(stream="chain", event=event)], actor, op_id, None,
                                  now_ns)
                    envelopes, _ = self._prepare(w, batch, group)
                    group.keep()
                    if projection is not None:
                        staged, changes = projection.fold(staged, envelopes)
                        w.apply_changes("proj_", changes)
                    w.insert_events(group.rows)
                    applied = group.head
                if projection is not None and applied != self._applied:
                    w.set_applied_seq(projection.name, applied)
                w.commit()
            except BaseException as exc:
                w.rollback()
                if written is not None:
                    written.unlink(missing_ok=True)
                if isinstance(exc, OSError):
                    raise StoreError(
                        f"could not write the compaction archive: {exc.strerror or exc}",
                        "check free space and permissions under the state root's archive/; "
                        "nothing was compacted") from exc
                if isinstance(exc, Exception):
                    raise w.translate(exc) from exc
                raise
            self._state, self._applied = staged, applied
            self._vcache.clear()  # archived streams no longer have rows
            self._vcache_head = -1
        if not envelopes:
            return CompactionReport(before_ns=before_ns), []
        summary = envelopes[0].event
        assert isinstance(summary, ChainCompacted) and written is not None
        return CompactionReport(
            before_ns=before_ns, count=summary.count, streams=summary.streams,
            first_seq=summary.first_seq, last_seq=summary.last_seq, archive=str(written),
            archive_sha256=summary.archive_sha256, bytes_freed=summary.bytes,
            summary_seq=envelopes[0].seq), envelopes

    def fold_to(
        self,
        projection: InlineProjection[Any],
        *,
        until_seq: int | None = None,
        until_ns: int | None = None,
        from_zero: bool = False,
        base: tuple[int, Any] | None = None,
    ) -> Any:
        """Time travel: `projection`'s state after the last event up to a seq and/or a time
        (inclusive). Folds from the nearest of: `base` (a `(seq, state)` the caller folded
        before), the newest valid snapshot at or before that point (see `snapshot`), zero.
        `from_zero` ignores snapshots (the reference replay)."""
        with self._rlock:
            limit = self._r.head()[0] if until_seq is None else until_seq
            if until_ns is not None:
                limit = min(limit, self._r.last_seq_before(until_ns))
        start: tuple[int, Any] = (0, projection.initial())
        if base is not None and base[0] <= limit:
            start = base
        if not from_zero:
            start = self._snapshot_before(projection, limit, newer_than=start[0]) or start
        return self._fold_range(projection, start[1], start[0], limit, snapshot=False)

    def _fold_range(
        self, projection: InlineProjection[State], state: State, after: int, until: int, *,
        snapshot: bool, leave: list[threading.Thread] | None = None,
    ) -> State:
        """Fold events (after, until] onto `state` without computing rows; with `snapshot`,
        store a snapshot at every multiple of `snapshot_every` on the way (the fold is
        there anyway, so the next restart or time travel can skip what it covered).
        With `leave`, the last snapshot's writer is put there, still running, for the
        caller to join (so it overlaps the caller's table writes), instead of joined here."""
        fast = getattr(projection, "fold_state", None)
        who_types = getattr(projection, "fold_who_types", None)
        if fast is None:
            for chunk in self._chunks(self._r, self._rlock, after, until):
                state, _ = projection.fold(state, chunk)
            return state
        every = self.snapshot_every if snapshot and _snapshots_of(projection) else 0
        builder = getattr(projection, "fold_builder", None) if every else None
        if builder is not None and after < until:  # (nothing to fold: keep the state as is)
            return self._fold_building(projection, builder(state), after, until, every, leave,
                                       who_types)
        writing: threading.Thread | None = None
        try:
            with _gc_paused():
                while after < until:
                    stop = min(until, (after // every + 1) * every) if every else until
                    # One fold per stretch: no per-chunk copies of state.
                    state = fast(state, self._fold_envelopes(self._r, self._rlock, after, stop,
                                                             who_types))
                    after = stop
                    if every and after % every == 0:
                        # States are immutable: encode, deflate and store this one on the
                        # other core (zlib and SQLite let go of the GIL) while folding on.
                        writing = _beside(writing, after, self._try_snapshot,
                                          projection, state, after)
        finally:
            _hand_over(writing, leave)
        return state

    def _fold_building(
        self, projection: InlineProjection[State], builder: Any, after: int, until: int,
        every: int, leave: list[threading.Thread] | None, who_types: Sequence[str] | None,
    ) -> State:
        """`_fold_range` with snapshots, through the projection's `fold_builder`: one open
        fold for the whole range, so a stretch between two snapshots costs its events only
        (freezing the state at every snapshot copied all of it twice: a fifth of a rebuild).
        A snapshot is encoded from the open fold at once and deflated and stored on the
        other core while the fold goes on."""
        writing: threading.Thread | None = None
        try:
            with _gc_paused():
                while after < until:
                    stop = min(until, (after // every + 1) * every)
                    builder.feed(self._fold_envelopes(self._r, self._rlock, after, stop,
                                                      who_types))
                    after = stop
                    if after % every == 0:
                        writing = _beside(writing, after, self._try_snapshot_blob,
                                          projection, builder.snapshot(), after)
                return builder.state()  # type: ignore[no-any-return]
        finally:
            _hand_over(writing, leave)

    def _try_snapshot(self, projection: InlineProjection[State], state: State, seq: int) -> None:
        """A snapshot on the way of a fold: an optimisation, so a failure (a full disk, say)
        is logged and the fold goes on; the next restart folds from further back."""
        self._try_snapshot_blob(projection, lambda: projection.encode_state(state), seq)  # type: ignore[attr-defined]

    def _try_snapshot_blob(
        self, projection: InlineProjection[State], encode: Callable[[], bytes], seq: int
    ) -> None:
        try:
            self._write_snapshot_blob(projection, encode(), seq)
        except Exception as exc:  # noqa: BLE001 - see `_try_snapshot`
            _log.warning("projection snapshot at seq %d not stored: %s", seq, exc)

    @staticmethod
    def _fold_envelopes(
        backend: StoreBackend, lock: threading.RLock, after: int, until: int,
        who_types: Sequence[str] | None = None,
    ) -> Iterator[Envelope]:
        """Envelopes (after, until] for a rows-free fold: only the columns a fold reads
        (`hash` is "" and `command_id` None; with `who_types`, the projection's
        `fold_who_types`, `actor` and `op_id` are None for every other event type),
        actors decoded once per distinct blob."""
        actors: dict[bytes | None, Actor | None] = {None: None}
        current = _CURRENT_DECODERS
        # (type, schema_version) -> decode, for payloads at their class's current version.
        fast = {(name, cls.schema_version): decode for name, (cls, decode) in current.items()}
        while after < until:
            with lock:
                rows = backend.fold_rows(after, min(until, after + 10 * _CHUNK), who_types)
            if not rows:
                return
            for seq, stream, version, schema, type_name, at, actor, op_id, payload in rows:
                if actor in actors:
                    who = actors[actor]
                else:
                    who = actors[actor] = decode_actor(actor)
                # `_decode_payload` inlined for the common case (one call less per event).
                decode = fast.get((type_name, schema))
                event = None
                if decode is not None:
                    try:
                        event = decode(payload)
                    except msgspec.MsgspecError:
                        pass
                if event is None:
                    event = _decode_payload(current, type_name, schema, payload)
                yield Envelope(
                    seq=seq,
                    stream=stream,
                    stream_version=version,
                    schema_version=schema,
                    recorded_at=at,
                    actor=who,  # type: ignore[arg-type]  # None: see `who_types`
                    op_id=op_id,
                    event=event,
                )
            after = rows[-1][0]

    @staticmethod
    def _chunks(
        backend: StoreBackend, lock: threading.RLock, after: int, until: int
    ) -> Iterator[list[Envelope]]:
        while after < until:
            with lock:
                rows = backend.events_between(after, min(until, after + 10 * _CHUNK))
            if not rows:
                return
            for start in range(0, len(rows), _CHUNK):
                yield [_envelope(row) for row in rows[start : start + _CHUNK]]
            after = rows[-1][0]


    # --- writes ----------------------------------------------------------------------------

    def append(
        self,
        pending: Sequence[Pending],
        *,
        actor: Actor,
        op_id: str,
        command_id: str | None = None,
        now_ns: int,
    ) -> list[Envelope]:
        """Append one batch atomically; see the module docstring for the guarantees."""
        batch = Batch(pending, actor, op_id, command_id, now_ns)
        result = self.append_group([batch])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    @staticmethod
    def batch(
        pending: Sequence[Pending],
        *,
        actor: Actor,
        op_id: str,
        command_id: str | None = None,
        now_ns: int,
    ) -> Batch:
        return Batch(pending, actor, op_id, command_id, now_ns)

    def append_group(self, batches: Sequence[Batch]) -> list[list[Envelope] | Exception]:
        """Commit several callers' batches in one transaction (one fsync).

        Every check that can fail one batch (expected versions, the projection's fold) runs
        before anything is written, against the group's staged view (versions, head, hash,
        projection state) that only successful batches advance; then all rows go in with one
        `executemany`. So a conflict or a fold error fails its own caller only, with no
        SAVEPOINT round trips. If BEGIN, an insert or COMMIT fails, every batch gets that error.
        The projection state is immutable: the staged state becomes the committed state only
        after COMMIT succeeds.
        """
        if self.readonly:
            error = StoreError("this event log was opened read-only", "write through the daemon")
            return [error for _ in batches]
        results: list[list[Envelope] | Exception] = []
        with self._wlock:
            w = self._w
            try:
                w.begin()
            except Exception as exc:  # noqa: BLE001 - every caller gets the error
                return [w.translate(exc) for _ in batches]
            try:
                head, last_hash = w.head()
                if head != self._vcache_head:
                    self._vcache.clear()  # another process wrote: cached versions are stale
                staged, applied = self._catch_up(w, head)
                projection = self.projection
                # One query for every stream the group touches: each statement releases the
                # GIL, and on a busy trio thread getting it back costs up to the 5 ms switch
                # interval, so per-stream lookups made group commit ~10x slower.
                unknown = {
                    p.stream for b in batches for p in b.pending if p.stream not in self._vcache
                }
                base = w.stream_versions(sorted(unknown)) if unknown else {}
                try:
                    group, staged, results = self._stage(
                        w, batches, head, last_hash, base, staged, fold_each=False
                    )
                except Exception:  # noqa: BLE001 - a fold failed: find whose, fold one by one
                    group, staged, results = self._stage(
                        w, batches, head, last_hash, base, staged, fold_each=True
                    )
                if group.rows:
                    w.insert_events(group.rows)
                    w.insert_commands(group.commands)
                    w.apply_changes("proj_", group.changes)
                    applied = group.head
                if projection is not None and applied != self._applied:
                    w.set_applied_seq(projection.name, applied)
                w.commit()
            except BaseException as exc:
                w.rollback()
                if not isinstance(exc, Exception):
                    raise
                return [w.translate(exc) for _ in batches]
            self._state = staged
            self._applied = applied
            if len(self._vcache) > 100_000:
                self._vcache.clear()
            self._vcache.update(group.versions)
            self._vcache_head = group.head
        return results

    def checkpoint(self) -> bool:
        """Copy the WAL into the database now, on the writing connection (never a second
        checkpointer: SQLite 3.40's WAL-reset bug needs two). The daemon's writer calls it
        when idle, so SQLite's automatic checkpoint (inside a COMMIT, on an appender's
        clock) rarely runs, and the next commit restarts the WAL at its start, inside the
        preallocated region. True when every frame was copied; False for a memory or
        read-only store, or when a reader still uses part of the WAL.
        """
        if self.readonly or self.path is None:
            return False
        with self._wlock:
            try:
                done = self._w.checkpoint()
            except Exception:  # noqa: BLE001 - e.g. SQLITE_BUSY: the next idle period tries
                return False
        return done is not None and done[0] == done[1]

    def _stage(
        self,
        w: StoreBackend,
        batches: Sequence[Batch],
        head: int,
        last_hash: str,
        base: dict[str, int],
        staged: Any,
        *,
        fold_each: bool,
    ) -> tuple[_Group, Any, list[list[Envelope] | Exception]]:
        """Prepare every batch against the group's staged view and fold the projection.

        With `fold_each=False` the projection folds the group's fresh envelopes in one call
        (a fold is batch-boundary independent, as `rebuild` already relies on): building a
        projection transaction per caller cost more than the events' own work. If that one
        fold raises, `append_group` stages again with `fold_each=True`, so only the batch
        whose fold fails is refused. Staging reads the database and writes nothing.
        """
        group = _Group(head, last_hash)
        group.base = base
        projection = self.projection
        results: list[list[Envelope] | Exception] = []
        fresh_envelopes: list[Envelope] = []
        for batch in batches:
            try:
                envelopes, fresh = self._prepare(w, batch, group)
                if fresh and projection is not None and fold_each:
                    staged, changes = projection.fold(staged, envelopes)
                    group.changes.extend(changes)
            except Exception as exc:  # noqa: BLE001 - fails this caller only
                group.discard()
                results.append(w.translate(exc))
                continue
            group.keep()
            if fresh:
                fresh_envelopes.extend(envelopes)
            results.append(envelopes)
        if not fold_each and projection is not None and fresh_envelopes:
            staged, changes = projection.fold(staged, fresh_envelopes)
            group.changes.extend(changes)
        return group, staged, results

    def _catch_up(self, w: StoreBackend, head: int) -> tuple[Any, int]:
        """Fold events another process appended since our state (e.g. a CLI writing directly)."""
        staged: Any = self._state
        if self.projection is None or head == self._applied:
            return staged, head
        for chunk in self._chunks(w, self._wlock, self._applied, head):
            staged, changes = self.projection.fold(staged, chunk)
            w.apply_changes("proj_", changes)
        return staged, head

    def _version(self, w: StoreBackend, group: _Group, stream: str) -> int:
        version = group.versions.get(stream)
        if version is None:
            version = self._vcache.get(stream)
            if version is None:
                version = group.base.get(stream)
                if version is None:
                    version = w.stream_version(stream)
        return version

    def _prepare(
        self, w: StoreBackend, batch: Batch, group: _Group
    ) -> tuple[list[Envelope], bool]:
        """Check one batch against the group's staged view and stage its rows; write nothing."""
        if batch.command_id is not None:
            done = group.by_command.get(batch.command_id)
            if done is not None:
                return done, False
            extent = w.find_command(batch.command_id)
            if extent is not None:
                count = extent[1] - extent[0] + 1
                rows = w.select_events(extent[0] - 1, EventFilter(until_seq=extent[1]), count)
                return [_envelope(row) for row in rows], False
        if not batch.pending:
            return [], False
        _check_text("op_id", batch.op_id)
        if batch.command_id is not None:
            _check_text("command_id", batch.command_id)
        actor = actor_bytes(batch.actor)
        before: dict[str, int] = {}
        versions = group.pending_versions
        seq, prev = group.head, group.last_hash
        op_id, now_ns, batch_actor = batch.op_id, batch.now_ns, batch.actor
        rows = group.pending_rows
        envelopes: list[Envelope] = []
        for item in batch.pending:
            stream = item.stream
            if stream not in before:
                _check_text("stream", stream, allow_empty=False)
                before[stream] = versions[stream] = self._version(w, group, stream)
            # expected_version is checked against the stream as it was before this batch: a
            # decider returns all of a batch's events against the state it read.
            expected = item.expected_version
            if expected is not None and expected != before[stream]:
                raise ConcurrencyConflict(stream, expected, before[stream])
            version = versions[stream] = versions[stream] + 1
            seq += 1
            event = item.event
            cls = type(event)
            type_name = cls.__name__
            schema_version = cls.schema_version
            payload = encode_event(event)
            command_id = batch.command_id if not envelopes else None
            canonical = canonical_bytes(
                seq=seq,
                stream=stream,
                stream_version=version,
                schema_version=schema_version,
                recorded_at=now_ns,
                actor=actor,
                op_id=op_id,
                command_id=command_id,
                type_name=type_name,
                payload=payload,
            )
            prev = chain_hash(prev, canonical)
            rows.append(
                (
                    seq,
                    stream,
                    version,
                    schema_version,
                    type_name,
                    now_ns,
                    actor,
                    op_id,
                    command_id,
                    payload,
                    prev,
                )
            )
            envelopes.append(
                Envelope(
                    seq=seq,
                    stream=stream,
                    stream_version=version,
                    schema_version=schema_version,
                    recorded_at=now_ns,
                    actor=batch_actor,
                    op_id=op_id,
                    event=event,
                    command_id=command_id,
                    hash=prev,
                )
            )
        if batch.command_id is not None:
            group.pending_commands.append((batch.command_id, group.head + 1, seq))
            group.pending_by_command = (batch.command_id, envelopes)
        group.pending_head, group.pending_hash = seq, prev
        return envelopes, True

    # --- projections -----------------------------------------------------------------------

    def _load_projection(self) -> None:
        """The projection's state at the head: the newest valid snapshot plus the events
        after it (all of them when there is none); rebuild the tables if they lag or lead."""
        projection = self.projection
        assert projection is not None
        with self._rlock:
            head = self._r.head()[0]
            stored = self._r.applied_seq(projection.name)
            seqs = self._r.snapshot_seqs(projection.name)
        base, state = self._snapshot_before(projection, head) or (0, projection.initial())
        self._snapshot_seq = max([s for s in seqs if s <= head], default=0)
        writers: list[threading.Thread] = []
        try:
            state = self._fold_range(projection, state, base, head,
                                     snapshot=not self.readonly, leave=writers)
            self._state, self._applied = state, head
            if not self.readonly and stored != head:
                self._swap_in(projection, state, head, self._rows_of(projection, state, head))
        finally:
            for writer in writers:
                writer.join()

    def _rows_of(
        self, projection: InlineProjection[State], state: State, head: int
    ) -> dict[tuple[str, str], bytes | None]:
        """Every row of `state`'s tables (from the projection's `rows_of`, or by folding the
        log again with rows when it has none)."""
        dump = getattr(projection, "rows_of", None)
        final: dict[tuple[str, str], bytes | None] = {}
        if dump is not None:
            for change in dump(state):
                final[(change.table, change.key)] = change.doc
            return final
        again = projection.initial()
        for chunk in self._chunks(self._r, self._rlock, 0, head):
            again, changes = projection.fold(again, chunk)
            for change in changes:
                final[(change.table, change.key)] = change.doc
        return final

    def rebuild(self) -> None:
        """Rebuild the projection from zero (the reference: no snapshot is trusted) into
        proj_new_*, swap the tables in, and replace every snapshot with fresh ones."""
        projection = self.projection
        if projection is None:
            raise StoreError("this store was opened without a projection")
        if self.readonly:
            raise StoreError("cannot rebuild a read-only event log", "run it in the daemon")
        with self._wlock:
            self._w.begin()
            try:
                self._w.drop_snapshots(projection.name)
                self._w.commit()
            except BaseException:
                self._w.rollback()
                raise
            self._snapshot_seq = 0
        with self._rlock:
            head = self._r.head()[0]
        writers: list[threading.Thread] = []
        try:
            state = self._fold_range(projection, projection.initial(), 0, head,
                                     snapshot=True, leave=writers)
            # The last snapshot is deflated and stored while the rows are encoded and
            # written; it is there when `rebuild` returns.
            self._swap_in(projection, state, head, self._rows_of(projection, state, head))
        finally:
            for writer in writers:
                writer.join()

    # --- snapshots -------------------------------------------------------------------------

    def snapshot(self) -> int | None:
        """Store a snapshot of the committed projection state; its seq, or None when the
        projection cannot be snapshotted or the log is empty. Call it on the writer thread
        (`StoreWriter.run_in_writer`): it encodes under the write lock."""
        projection = self.projection
        if projection is None or self.readonly or not _snapshots_of(projection):
            return None
        with self._wlock:
            if self._applied == 0 or self._state is None:
                return None
            self._write_snapshot(projection, self._state, self._applied)
            return self._applied

    def snapshot_if_due(self) -> int | None:
        """`snapshot()` once `snapshot_every` events have been folded since the last one."""
        if self._applied - self._snapshot_seq < self.snapshot_every:
            return None
        return self.snapshot()

    def snapshot_before(
        self, projection: InlineProjection[State], seq: int
    ) -> tuple[int, State] | None:
        """The newest trusted snapshot at or before `seq` as `(its seq, state)`, or None."""
        return self._snapshot_before(projection, seq)

    def snapshot_seqs(self) -> list[int]:
        """The seqs this log holds snapshots at (valid or not), oldest first."""
        if self.projection is None:
            return []
        with self._rlock:
            return self._r.snapshot_seqs(self.projection.name)

    def _write_snapshot(self, projection: InlineProjection[State], state: State, seq: int) -> None:
        self._write_snapshot_blob(projection, projection.encode_state(state), seq)  # type: ignore[attr-defined]

    def _write_snapshot_blob(
        self, projection: InlineProjection[State], blob: bytes, seq: int
    ) -> None:
        with self._wlock:
            w = self._w
            w.begin()
            try:
                w.put_snapshot(
                    projection.name,
                    seq,
                    _snapshot_version(projection),
                    w.hash_at(seq),
                    hashlib.sha256(blob).hexdigest(),
                    blob,
                )
                w.commit()
            except BaseException:
                w.rollback()
                raise
            self._snapshot_seq = max(self._snapshot_seq, seq)

    def _snapshot_before(
        self, projection: InlineProjection[State], seq: int, *, newer_than: int = 0
    ) -> tuple[int, State] | None:
        """The newest snapshot in (newer_than, seq] that passes every check (projection and
        store versions, digest, the hash of its event in this log, decoding), or None."""
        if not _snapshots_of(projection):
            return None
        version = _snapshot_version(projection)
        decode = projection.decode_state  # type: ignore[attr-defined]
        with self._rlock:
            r = self._r
            for at, stored_version, event_hash, digest, blob in r.snapshots(projection.name, seq):
                if at <= newer_than:
                    return None
                if stored_version != version or hashlib.sha256(blob).hexdigest() != digest:
                    continue
                if event_hash != r.hash_at(at):
                    continue  # a snapshot of another log (a restored or replaced file)
                try:
                    state = decode(blob)
                except Exception:  # noqa: BLE001 - undecodable: fold from further back
                    continue
                return at, state
        return None

    def _swap_in(
        self,
        projection: InlineProjection[State],
        state: State,
        head: int,
        final: dict[tuple[str, str], bytes | None],
    ) -> None:
        with self._wlock:
            w = self._w
            w.begin()
            try:
                now_head = w.head()[0]
                for table in projection.tables:
                    w.drop_table(f"proj_new_{table}")
                    w.create_table(f"proj_new_{table}")
                changes: list[RowChangeLike] = [
                    RowChange(t, k, d) for (t, k), d in final.items() if d is not None
                ]
                # Events appended by another process between the fold and this transaction.
                for chunk in self._chunks(w, self._wlock, head, now_head):
                    state, more = projection.fold(state, chunk)
                    changes.extend(more)
                w.apply_changes("proj_new_", changes)
                for table in projection.tables:
                    w.drop_table(f"proj_{table}")
                    w.rename_table(f"proj_new_{table}", f"proj_{table}")
                w.set_applied_seq(projection.name, now_head)
                w.commit()
            except BaseException:
                w.rollback()
                raise
            self._state, self._applied = state, now_head


def _beside(previous: threading.Thread | None, seq: int, store: Callable[..., Any],
            *args: Any) -> threading.Thread:
    """Store the snapshot at `seq` on the other core while the fold goes on, once the one
    before it is stored (one writer at a time)."""
    if previous is not None:
        previous.join()
    thread = threading.Thread(target=store, args=args, name=f"snapshot@{seq}", daemon=True)
    thread.start()
    return thread


def _hand_over(writing: threading.Thread | None, leave: list[threading.Thread] | None) -> None:
    """The last snapshot writer of a fold: to the caller (`leave`), or joined now."""
    if writing is None:
        return
    if leave is not None:
        leave.append(writing)
    else:
        writing.join()


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic GC while a fold allocates millions of objects that stay alive: each
    collection would walk the growing state for nothing (~25% of a rebuild). Folds make no
    cycles. Process-wide, so it only re-enables what it disabled."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _snapshots_of(projection: object) -> bool:
    """Whether a projection can be snapshotted: it says its version and (de)serialises its
    state, and folds without rows."""
    return all(
        hasattr(projection, attr)
        for attr in ("snapshot_version", "encode_state", "decode_state", "fold_state")
    )


def _snapshot_version(projection: object) -> str:
    # The store's schema too: a snapshot taken under another store schema is not trusted.
    return f"store{SCHEMA_VERSION}:{projection.snapshot_version}"  # type: ignore[attr-defined]



# type name -> (class, decode) for payloads stored at the class's current schema_version.
