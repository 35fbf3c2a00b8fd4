"""Outcomes the log refused, retried until they land (issue 15 item 2).

An outcome event (`ContainerExited`, `ContainerStarted`'s failure record, `ContainerRemoved`,
an operation's completion…) describes kernel work that already happened: dropping it leaves the
projection wrong for good (a dead container shown `Up`, `wait` and `stop` hanging), and there
is nothing to undo. So when the log refuses one (a full disk, an I/O error, a lock held past
the busy timeout) the supervisor keeps it and tries again with a bounded exponential back-off
(50 ms doubling to 5 s, forever), while `system check` and `info` say what is waiting and why.
A conflict (`ConcurrencyConflict`) or a closed writer is not retried: those are answers, not
passing faults. At shutdown `close()` ends the retries (the refusal is raised): some run in
shielded undo paths and would otherwise hold the daemon up for as long as the disk is full;
recovery settles their outcomes from the kernel at the next start.

I/O: none of its own; appends through the journal and sleeps on trio's clock.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from engine.core.errors import ShipslogError
from engine.shell.journal import Journal
from events.envelope import Actor, Pending
from events.store import ConcurrencyConflict, StoreError
from events.writer import WriterClosed


def error_message(exc: BaseException) -> str:
    """The one line an outcome records for a failure: our errors' message, else str()."""
    return exc.message if isinstance(exc, (ShipslogError, StoreError)) else str(exc)

log = logging.getLogger("shipslog.outcomes")

FIRST_DELAY_S = 0.05
MAX_DELAY_S = 5.0


@dataclass
class Waiting:
    """One outcome the log has refused so far."""

    events: tuple[str, ...]  # event type names, in batch order
    subject: str  # the first stream's object id (a container id, an op id…)
    error: str  # the last refusal, in the store's words
    attempts: int = 1

    def describe(self) -> str:
        return f"{', '.join(self.events)} for {self.subject}, retrying: {self.error}"


def backoff_delays(first: float = FIRST_DELAY_S, ceiling: float = MAX_DELAY_S
                   ) -> list[float]:
    """The first delays of the back-off, for tests and documentation: 0.05, 0.1, … 5, 5."""
    delays, d = [], first
    while d < ceiling:
        delays.append(d)
        d *= 2
    return [*delays, ceiling]


def _subject(pending: Sequence[Pending]) -> str:
    stream = pending[0].stream
    return stream.split("-", 1)[1] if "-" in stream else stream


class OutcomeRecorder:
    """Appends outcomes, retrying refused ones; `waiting()` lists those not yet recorded."""

    def __init__(self, journal: Journal, *, first_delay_s: float = FIRST_DELAY_S,
                 max_delay_s: float = MAX_DELAY_S) -> None:
        self.journal = journal
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self._waiting: dict[int, Waiting] = {}
        self._next = 0
        self._closing = trio.Event()

    def close(self) -> None:
        """Stop retrying (daemon shutdown): waiting outcomes give up with their refusal."""
        self._closing.set()

    def waiting(self) -> list[Waiting]:
        return list(self._waiting.values())

    async def record(self, pending: Sequence[Pending], *, actor: Actor, op_id: str) -> None:
        """Append `pending`; on a refusal the log may later accept, wait and try again until
        it lands (or the daemon stops: recovery then settles it from the kernel)."""
        delay = self.first_delay_s
        token = -1
        try:
            while True:
                try:
                    await self.journal.append(pending, actor=actor, op_id=op_id)
                    if token >= 0:
                        w = self._waiting[token]
                        log.warning("recorded %s for %s after %d refusals",
                                    ", ".join(w.events), w.subject, w.attempts)
                    return
                except (ConcurrencyConflict, WriterClosed):
                    raise
                except StoreError as exc:
                    if self._closing.is_set():
                        raise
                    if token < 0:
                        token, self._next = self._next, self._next + 1
                        self._waiting[token] = Waiting(
                            events=tuple(type(p.event).__name__ for p in pending),
                            subject=_subject(pending), error=exc.message)
                        log.warning("the log refused %s; retrying until it lands",
                                    self._waiting[token].describe())
                    else:
                        self._waiting[token].attempts += 1
                        self._waiting[token].error = exc.message
                with trio.move_on_after(delay):
                    await self._closing.wait()
                delay = min(delay * 2, self.max_delay_s)
        finally:
            self._waiting.pop(token, None)


def summary(waiting: Sequence[Waiting]) -> str:
    """One line for `info` and `system check`: "1 outcome waiting to be recorded: …"."""
    n = len(waiting)
    what = "; ".join(w.describe() for w in waiting)
    return f"{n} outcome{'' if n == 1 else 's'} waiting to be recorded: {what}"
