"""Who gets a connection slot, and which slow connection makes room: the API server's policy.

I/O: none (a pure function of the connections' phases, their progress and the time; the server
in `engine/api/server/http.py` carries out its answers, STYLE.md "functional core").

Issue 15, item 4: 512 connections trickling a request body one byte every 15 s made every
other client get 503 indefinitely, where Docker kept answering. The rules:

- a connection that has finished its request (a handler running, a response being sent, or a
  hijacked/streaming one: attach, exec, `logs -f`, `events`) is never shed: it is long-lived by
  design, not slow;
- at the cap, the newcomer is admitted and the worst sheddable connection is closed: first the
  longest-idle keep-alive connection, then the slowest request in progress (bytes of the
  current request per second), ties to the oldest; a connection younger than `YOUNG_S` goes
  only when no older one can (it has not had time to speak: under a storm of reconnecting
  slow clients, a CLI request that arrived a moment ago must not be the one to go);
- the local admin (uid 0, or the daemon's own uid: the CLI and the daemon's own health checks)
  has `admin_reserve` slots beyond the cap, so it gets through even when every other
  connection is a live stream;
- a request head must arrive within `header_timeout` of its first byte, and a body at an
  average of `min_body_rate` bytes/s after `body_grace` seconds (Apache mod_reqtimeout's
  `body=20,MinRate=500` shape), so a trickler is closed at its deadline even when nobody needs
  its slot.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from enum import IntEnum

__all__ = ["Admission", "Phase", "Slot", "admit", "body_deadline", "shed_order"]

YOUNG_S = 1.0  # a connection in its phase for less than this is not judged yet


class Phase(IntEnum):
    """Where a connection is; the order is the shedding order (lowest first)."""

    IDLE = 0  # keep-alive, waiting for the first byte of its next request
    READING = 1  # a new connection, or a request head or body in progress
    BUSY = 2  # the request is complete: handler running or response being sent
    STREAMING = 3  # hijacked (attach, exec) or a streamed response (logs -f, events)


SHEDDABLE = (Phase.IDLE, Phase.READING)


@dataclass(frozen=True)
class Slot:
    """One open connection as the policy sees it."""

    key: Hashable
    phase: Phase
    since: float  # when the current phase began (seconds, any monotonic clock)
    received: int = 0  # bytes of the current request received so far
    admin: bool = False


@dataclass(frozen=True)
class Admission:
    admit: bool
    shed: tuple[Hashable, ...] = ()  # the connections to close to make room, worst first


def _shed_key(slot: Slot, now: float) -> tuple[bool, Phase, float, float]:
    # Idle connections go oldest first; requests in progress slowest first; ties oldest first.
    age = now - slot.since
    order = -age if slot.phase is Phase.IDLE else slot.received / max(age, YOUNG_S)
    return (age < YOUNG_S, slot.phase, order, slot.since)


def shed_order(slots: Iterable[Slot], now: float) -> list[Slot]:
    """The sheddable connections, the one to close first at the front."""
    return sorted((s for s in slots if s.phase in SHEDDABLE), key=lambda s: _shed_key(s, now))


def admit(
    open_count: int,
    slots: Iterable[Slot],
    *,
    admin: bool,
    now: float,
    max_connections: int,
    admin_reserve: int,
    batch: int = 1,
) -> Admission:
    """May a new connection (from the local admin or not) be served, and what must make room?

    `slots` describes the `open_count` open connections; it is only iterated when the server
    is full. Then up to `batch` of the worst are shed at once, so that the next accepts need
    no scan: ranking 512 connections on every accept of a reconnecting storm made the accept
    loop the bottleneck (tools/bench/slowclients.py: p99 of `_ping` near 0.5 s).
    """
    if open_count < max_connections:
        return Admission(True)
    victims = heapq.nsmallest(max(batch, 1), (s for s in slots if s.phase in SHEDDABLE),
                              key=lambda s: _shed_key(s, now))
    # Only the first may be young (when nothing older can go): the rest of a batch is
    # headroom, and must not take a client whose request is on its way.
    victims = victims[:1] + [v for v in victims[1:] if now - v.since >= YOUNG_S]
    if victims:
        return Admission(True, tuple(v.key for v in victims))
    return Admission(open_count < max_connections + (admin_reserve if admin else 0))


def body_deadline(
    started: float, received: int, *, grace: float, min_rate: float
) -> float:
    """When a body that began at `started` and has `received` bytes so far is too slow."""
    if min_rate <= 0:
        return float("inf")
    return started + grace + received / min_rate
