"""The journal: how the shell appends to the log and waits for the state to change.

I/O: none of its own; it drives the store writer (one thread, group commit) and wakes trio
tasks that wait for a condition on the state (`docker wait`, `stop` waiting for an exit).
The clock and id factory live here so that tests can make them deterministic.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

import trio

from events.envelope import Actor, Envelope, Pending
from events.store import ConcurrencyConflict
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

    @property
    def state(self) -> EngineState:
        return self.store.state  # type: ignore[no-any-return]

    async def append(self, pending: Sequence[Pending], *, actor: Actor, op_id: str,
                     command_id: str | None = None) -> list[Envelope]:
        if not pending:
            return []
        envs: list[Envelope] = await self._writer.append(
            list(pending), actor=actor, op_id=op_id, command_id=command_id, now_ns=self.clock())
        self._changed.set()
        self._changed = trio.Event()
        return envs

    async def wait_for(self, predicate: Callable[[EngineState], Any]) -> Any:
        """Wait until `predicate(state)` is truthy; return its value."""
        while True:
            changed = self._changed
            value = predicate(self.state)
            if value:
                return value
            await changed.wait()


__all__ = ["Journal", "ConcurrencyConflict", "new_id"]
