"""Replication: a host on SQLite ships its event log to a central PostgreSQL, in order, exactly
once, with its hashes and its host name (issue 19, `shipslogd --replicate-to URL`).

I/O: reads the local events.db through a read-only SQLite connection of its own (the rows as
stored, byte for byte: an upcast envelope would re-encode to other bytes and break the hash);
writes to the center through events/central.py (PostgreSQL), on worker threads.

How it stays exactly once, across restarts of either side:
- the center is the only record of what was acknowledged: on every (re)connect the replicator
  asks it for this host's head and last hash, checks that hash against its own log at that seq
  (`engine.core.replication.resume_point`) and ships from head + 1;
- each batch (up to `max_batch` events, or what arrived within `max_delay`) is one transaction:
  a crash or a lost connection leaves all of it or none of it at the center, and the next
  connect reads which;
- the center's chain trigger refuses a row that is not the head's successor or does not link to
  its last hash; a refused batch the center already holds (a resend) is a no-op, anything else
  is a fork: the replicator records an alert at the center (its own transaction), logs one clear
  line and stops. It never skips an event.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import trio

from engine.core.replication import Resume, Stop, after_refusal, check_batch, resume_point
from events.central import (
    COLUMNS,
    CentralError,
    CentralLog,
    Refused,
    Row,
    Unreachable,
    display_url,
)

__all__ = ["Center", "ReplicationStatus", "Replicator", "SqliteSource", "Source"]

log = logging.getLogger("shipslogd")


class Source(Protocol):
    """The local log, as replication reads it."""

    def head(self) -> int: ...

    def hash_at(self, seq: int) -> str | None: ...

    def rows_after(self, seq: int, limit: int) -> list[Row]: ...

    def recorded_at(self, seq: int) -> int: ...


class Center(Protocol):
    """The central log, as one host's replicator writes it (events/central.CentralLog)."""

    def register(self, host: str, now_ns: int) -> tuple[int, str]: ...

    def head(self, host: str) -> tuple[int, str]: ...

    def insert(self, host: str, rows: Sequence[Row]) -> bool: ...

    def alert(self, host: str, at_ns: int, kind: str, detail: str) -> None: ...

    def close(self) -> None: ...


class SqliteSource:
    """The daemon's events.db, read-only, on a connection of its own (WAL: never blocks the
    writer)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._conn: sqlite3.Connection | None = None

    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                         check_same_thread=False, timeout=30)
        return self._conn

    def head(self) -> int:
        row = self._c().execute("SELECT max(seq) FROM events").fetchone()
        return int(row[0] or 0)

    def hash_at(self, seq: int) -> str | None:
        row = self._c().execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else str(row[0])

    def recorded_at(self, seq: int) -> int:
        row = self._c().execute("SELECT recorded_at FROM events WHERE seq = ?",
                                (seq,)).fetchone()
        return 0 if row is None else int(row[0])

    def rows_after(self, seq: int, limit: int) -> list[Row]:
        rows = self._c().execute(
            f"SELECT {COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit)).fetchall()
        return [Row(*r) for r in rows]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class ReplicationStatus:
    """What `info` shows: where to, as whom, how far."""

    def __init__(self, url: str, host: str) -> None:
        self.url = display_url(url)
        self.host = host
        self.acknowledged = 0
        self.head = 0
        self.state = "connecting"  # connecting, replicating, retrying, stopped
        self.error = ""

    @property
    def lag(self) -> int:
        return max(0, self.head - self.acknowledged)

    def line(self) -> str:
        text = (f"{self.url}, host {self.host}, acknowledged {self.acknowledged} of "
                f"{self.head} (lag {self.lag})")
        if self.state in ("stopped", "retrying"):
            text += f", {self.state}: {self.error}"
        return text

    def document(self) -> dict[str, Any]:
        return {"URL": self.url, "Host": self.host, "Acknowledged": self.acknowledged,
                "Head": self.head, "Lag": self.lag, "State": self.state, "Error": self.error}


class Replicator:
    """The daemon's replication task for one host and one center."""

    def __init__(self, source: Source, connect: Callable[[], Center], status: ReplicationStatus,
                 *, clock: Callable[[], int], wait_for_events: Callable[[float], Awaitable[None]],
                 max_batch: int = 1000, max_delay: float = 0.02,
                 backoff: tuple[float, float] = (0.1, 5.0)) -> None:
        self.source = source
        self.connect = connect
        self.status = status
        self.host = status.host
        self.clock = clock
        self.wait_for_events = wait_for_events
        self.max_batch = max_batch
        self.max_delay = max_delay
        self.backoff = backoff

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Replicate until cancelled, or until a fork or a gap stops it (an alert is recorded)."""
        task_status.started()
        self.delay = self.backoff[0]
        while True:
            center: Center | None = None
            try:
                center = await _at_center(self.connect)
                stop = await self._replicate(center)
            except (Unreachable, sqlite3.Error) as exc:
                # the center is away, or the local log is busy: neither loses an event
                message = exc.message if isinstance(exc, Unreachable) else f"local log: {exc}"
                self.status.state, self.status.error = "retrying", message
                log.warning("replication to %s: %s; retrying in %.1fs", self.status.url,
                            message, self.delay)
                await trio.sleep(self.delay)
                self.delay = min(self.backoff[1], self.delay * 2)
                continue
            except CentralError as exc:
                stop = Stop("error", exc.message)
            finally:
                if center is not None:
                    await _at_center(center.close)
            self.status.state, self.status.error = "stopped", f"{stop.kind}: {stop.detail}"
            log.error("replication to %s stopped (%s): %s; nothing more is shipped until this "
                      "is resolved (see shipslog.alerts at the center)", self.status.url,
                      stop.kind, stop.detail)
            return

    async def _replicate(self, center: Center) -> Stop:
        """Ship from the center's head on; returns only to stop (Unreachable propagates)."""
        head, last_hash = await _at_center(center.register, self.host, self.clock())
        self.delay = self.backoff[0]  # connected: the next outage backs off from the start
        verdict = await self._resume(center, head, last_hash)
        while isinstance(verdict, Resume):
            acked = verdict.after_seq
            self.status.acknowledged = acked
            self.status.state, self.status.error = "replicating", ""
            rows = await self._next_batch(acked)
            shippable = check_batch(acked, [r.seq for r in rows])
            if isinstance(shippable, Stop):
                return await self._alert(center, shippable)
            rows = rows[:shippable]
            try:
                await _at_center(center.insert, self.host, rows)
            except Refused as exc:
                head, last_hash = await _at_center(center.head, self.host)
                again = await self._resume(center, head, last_hash)
                verdict = after_refusal(acked, rows[0].seq, rows[-1].seq, again, exc.message)
                if isinstance(verdict, Resume):
                    log.info("replication: events %d..%d were already at the center (a "
                             "duplicate batch): skipped sending them again", rows[0].seq,
                             rows[-1].seq)
                continue
            verdict = Resume(rows[-1].seq)
            self.status.acknowledged = verdict.after_seq
        return await self._alert(center, verdict)

    def compaction_bound(self) -> int:
        """The newest `recorded_at` an automatic compaction may archive up to: that of the
        last acknowledged event (0 until one is), so that compaction never removes an event
        the center does not hold yet (call on a worker thread: it reads SQLite)."""
        acked = self.status.acknowledged
        return self.source.recorded_at(acked) if acked else 0

    async def _resume(self, center: Center, head: int, last_hash: str) -> Resume | Stop:
        local_head = await trio.to_thread.run_sync(self.source.head)
        self.status.head = local_head
        local_hash = (await trio.to_thread.run_sync(self.source.hash_at, head)
                      if 0 < head <= local_head else None)
        return resume_point(head, last_hash, local_head, local_hash)

    async def _next_batch(self, acked: int) -> list[Row]:
        """Up to max_batch events after `acked`: waits for the first, then up to max_delay
        for more (so a burst goes in one transaction, a trickle without waiting long)."""
        while True:
            rows = await trio.to_thread.run_sync(self.source.rows_after, acked, self.max_batch)
            self.status.head = max(self.status.head, rows[-1].seq if rows else acked)
            if rows and (len(rows) >= self.max_batch or self.max_delay <= 0):
                return rows
            if rows:
                await trio.sleep(self.max_delay)
                more = await trio.to_thread.run_sync(
                    self.source.rows_after, acked, self.max_batch)
                return more
            await self.wait_for_events(math.inf)

    async def _alert(self, center: Center, stop: Stop) -> Stop:
        try:
            await _at_center(center.alert, self.host, self.clock(), stop.kind, stop.detail)
        except CentralError as exc:
            log.error("replication: could not record the %s alert at the center: %s",
                      stop.kind, exc.message)
        return stop


async def _at_center(fn: Callable[..., Any], *args: Any) -> Any:
    """A call to the center on a worker thread that a daemon shutdown does not wait for: a
    center that hangs (a partition, a stuck lock) must not hold the daemon up. Abandoning an
    insert is safe: it commits whole or not at all, and the next start asks the center which."""
    return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)


def default_host_name() -> str:
    """The short hostname, as the center's host key (`--host-name` overrides it)."""
    import socket

    name = socket.gethostname().split(".", 1)[0] or "localhost"
    return name[:63]


def subscription_waiter(writer: Any, poll_s: float = 1.0) -> Callable[[float], Awaitable[None]]:
    """A `wait_for_events` that wakes on the writer's next commit (and at least every poll_s,
    so a missed wake-up costs a second, never an event)."""
    sub = writer.subscribe(max_buffer=64)

    async def wait(timeout: float) -> None:
        with trio.move_on_after(min(timeout, poll_s)):
            if sub.closed:  # the writer is gone (shutdown): poll, don't spin
                await trio.sleep_forever()
            await sub.wait()
        sub.buffer.clear()
        sub.lagged = False

    return wait


def open_replicator(url: str, host: str, db: str | Path, writer: Any,
                    clock: Callable[[], int]) -> Replicator:
    """The daemon's wiring: the center at `url`, the local log at `db`."""
    status = ReplicationStatus(url, host)
    return Replicator(SqliteSource(db), lambda: CentralLog(url).open(), status, clock=clock,
                      wait_for_events=subscription_waiter(writer))
