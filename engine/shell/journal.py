"""The journal: how the shell appends to the log and waits for the state to change.

I/O: none of its own; it drives the store writer (one thread, group commit) and wakes trio
tasks that wait for a condition on the state (`docker wait`, `stop` waiting for an exit).
The clock and id factory live here so that tests can make them deterministic.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import trio

from engine.drivers.host import failpoints
from events.envelope import Actor, Envelope, Pending
from events.store import ConcurrencyConflict, StoreBusy, StoreError, StoreFull
from projections.state import EngineState


def new_id() -> str:
    return secrets.token_hex(32)


class Journal:
    def __init__(self, store: Any, writer: Any, *, clock: Callable[[], int] = time.time_ns,
                 ids: Callable[[], str] = new_id) -> None:
        self.store = store
        self._writer = writer
        self.clock = clock
        self.new_id = ids
        self._changed = trio.Event()
        # Appends submitted and not yet answered, per stream: IPAM chains its allocations
        # only onto a stream no one else is writing (engine/shell/ipam_staging.py).
        self._in_flight: Counter[str] = Counter()

    @property
    def state(self) -> EngineState:
        return self.store.state  # type: ignore[no-any-return]

    async def append(self, pending: Sequence[Pending], *, actor: Actor, op_id: str,
                     command_id: str | None = None, last: bool = False) -> list[Envelope]:
        """Append one batch; with `last`, the journal's final one (later appends are refused
        with `WriterClosed`: `DaemonStopped` ends its run's log, issue 15 item 8)."""
        if not pending:
            return []
        if failpoints.armed():
            for kind in sorted({type(p.event).__name__ for p in pending}):
                failpoints.hit(failpoints.APPEND_PREFIX + kind, _store_error)
        streams = {p.stream for p in pending}
        self._in_flight.update(streams)
        try:
            envs: list[Envelope] = await self._writer.append(
                list(pending), actor=actor, op_id=op_id, command_id=command_id,
                now_ns=self.clock(), last=last)
        finally:
            for stream in streams:  # drop zeros: op and container streams are one-offs
                if self._in_flight[stream] <= 1:
                    del self._in_flight[stream]
                else:
                    self._in_flight[stream] -= 1
            # A refused append wakes the waiters too: one may wait for the stream to be quiet.
            self._changed.set()
            self._changed = trio.Event()
        return envs

    def in_flight(self, stream: str) -> int:
        """How many appends touching `stream` are submitted and not yet answered."""
        return self._in_flight[stream]

    async def wait_for(self, predicate: Callable[[EngineState], Any]) -> Any:
        """Wait until `predicate(state)` is truthy; return its value."""
        while True:
            changed = self._changed
            value = predicate(self.state)
            if value:
                return value
            await changed.wait()


def _store_error(name: str, arg: str) -> StoreError:
    """What an injected append failure raises: the store's own error for that SQLite code."""
    if arg == "full":
        return StoreFull("no space left on device: the event log could not record the "
                         f"operation (failpoint {name})",
                         "free space on the state root's filesystem; nothing of it was recorded")
    if arg == "busy":
        return StoreBusy(f"could not write the event log: database is busy (failpoint {name})",
                         "wait for that process to finish, or stop it if it is stuck")
    return StoreError(f"event log write failed: disk I/O error (failpoint {name})",
                      "check disk space and permissions")


__all__ = ["Journal", "ConcurrencyConflict", "new_id"]
