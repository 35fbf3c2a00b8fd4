"""A recording fake of the central log (events/central.CentralLog) and of a host's local log,
for fast, deterministic tests of replication (engine/shell/replication.py).

I/O: none. The fake center enforces what the real one's chain trigger enforces (each row is the
host's head + 1 and links to its last hash, else `Refused` with SL001/SL002), keeps its rows
across "restarts" of the replicator, and injects faults: `down` (every call is Unreachable),
`lose_reply` (the next insert commits, then the connection breaks before the reply: the case
that makes a naive sender ship a batch twice).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import trio

from events.central import Refused, Row, Unreachable
from events.codec import NO_COMMAND, SEPARATOR
from events.hashing import GENESIS_HASH, chain_hash

__all__ = ["FakeCenter", "FakeSource", "make_rows"]


def make_rows(n: int, *, first: int = 1, prev: str = GENESIS_HASH, tag: str = "") -> list[Row]:
    """`n` chained rows (seq first..first+n-1) whose hashes follow from `prev`."""
    assert SEPARATOR not in tag and NO_COMMAND not in tag
    out: list[Row] = []
    for seq in range(first, first + n):
        row = Row(seq, f"container-{seq % 7}{tag}", seq, 1, "ContainerRenamed", 1_000 + seq,
                  b'{"uid":0}', f"op-{seq}", None, b'{"type":"ContainerRenamed"}', "")
        row = row._replace(hash=chain_hash(prev, row.canonical()))
        prev = row.hash
        out.append(row)
    return out


class FakeSource:
    """A host's local log: rows in memory; `append` wakes a waiting replicator."""

    def __init__(self, rows: Sequence[Row] = ()) -> None:
        self.rows: list[Row] = list(rows)
        self.removed: set[int] = set()  # seqs compaction took out of the live log
        self._wake = trio.Event()

    def head(self) -> int:
        return self.rows[-1].seq if self.rows else 0

    def hash_at(self, seq: int) -> str | None:
        if seq in self.removed or not 0 < seq <= len(self.rows):
            return None
        return self.rows[seq - 1].hash

    def recorded_at(self, seq: int) -> int:
        return self.rows[seq - 1].recorded_at if 0 < seq <= len(self.rows) else 0

    def rows_after(self, seq: int, limit: int) -> list[Row]:
        return [r for r in self.rows[seq:] if r.seq not in self.removed][:limit]

    def append(self, n: int) -> None:
        prev = self.rows[-1].hash if self.rows else GENESIS_HASH
        self.rows += make_rows(n, first=self.head() + 1, prev=prev)
        self._wake.set()

    async def wait_for_events(self, timeout: float) -> None:
        with trio.move_on_after(timeout):
            await self._wake.wait()
        self._wake = trio.Event()


class FakeCenter:
    """The center's tables for any number of hosts; one instance outlives many connections."""

    def __init__(self) -> None:
        self.events: dict[str, list[Row]] = {}
        self.alerts: list[tuple[str, str, str]] = []
        self.inserts: list[tuple[str, int, int]] = []  # (host, first seq, last seq) committed
        self.down = False
        self.lose_reply = 0  # inserts to commit and then fail as if the reply was lost
        self.connections = 0
        # the real center serialises one host's inserts (the trigger locks its hosts row); a
        # replicator cancelled mid-insert leaves its thread running beside the next one
        self._lock = threading.Lock()

    def connect(self) -> FakeCenter:
        self._check()
        self.connections += 1
        return self

    def _check(self) -> None:
        if self.down:
            raise Unreachable("connection refused")

    def register(self, host: str, now_ns: int) -> tuple[int, str]:
        self._check()
        self.events.setdefault(host, [])
        return self.head(host)

    def head(self, host: str) -> tuple[int, str]:
        self._check()
        rows = self.events.get(host, [])
        return (rows[-1].seq, rows[-1].hash) if rows else (0, GENESIS_HASH)

    def insert(self, host: str, rows: Sequence[Row]) -> bool:
        with self._lock:
            return self._insert(host, rows)

    def _insert(self, host: str, rows: Sequence[Row]) -> bool:
        self._check()
        held = self.events[host]
        head, last = self.head(host)
        for row in rows:  # the trigger, row by row; the transaction is all or nothing
            if row.seq != head + 1:
                raise Refused(f"event {row.seq} of host {host} does not follow its head {head}",
                              "SL001")
            if row.hash != chain_hash(last, row.canonical()):
                raise Refused(f"event {row.seq} of host {host} does not link to the chain",
                              "SL002")
            head, last = row.seq, row.hash
        held.extend(rows)
        self.inserts.append((host, rows[0].seq, rows[-1].seq))
        if self.lose_reply:
            self.lose_reply -= 1
            raise Unreachable("server closed the connection unexpectedly")
        return True

    def alert(self, host: str, at_ns: int, kind: str, detail: str) -> None:
        self._check()
        self.alerts.append((host, kind, detail))

    def close(self) -> None:
        pass
