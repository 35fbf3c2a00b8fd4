"""The event log's read model, shared by the `/shipslog` and Docker event routes and the
CLI's `--root` readers (issue 16: the CLI never imports a route module): seq <-> time for
`--since`/`--until`/`--at TIME`, points in time, the state at a seq (time travel), and each
event's actor as it may leave the daemon (old command lines redacted).

I/O: reads of the event log it is given (single rows, or a fold up to a seq).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from engine.core.errors import InvalidArgument
from events.envelope import Actor, Envelope
from events.redact import redact_argv
from events.store import EventStore
from projections.state import EngineState
from projections.timetravel import Point, PointError, parse_point


def first_seq_at(store: EventStore[Any], time_ns: int) -> int:
    """The first seq recorded at or after `time_ns` (head + 1 if none).

    A binary search over seq, one indexed single-row read per step: `recorded_at` rises with
    seq (the store stamps each batch as it commits them in order), and a `WHERE recorded_at
    >= ?` read would make SQLite walk the primary key from the start of a 1M-event log.
    """
    lo, hi = 1, store.head() + 1
    while lo < hi:
        mid = (lo + hi) // 2
        env = next(iter(store.read(mid - 1, limit=1)), None)
        if env is None or env.recorded_at >= time_ns:
            hi = mid
        else:
            lo = mid + 1
    return lo


def time_of(store: EventStore[Any], seq: int, fallback: int) -> int:
    if seq <= 0:
        return fallback
    env = next(iter(store.read(seq - 1, limit=1)), None)
    return fallback if env is None else env.recorded_at


def point_of(text: str | None, now_ns: int, what: str = "at") -> Point:
    if not text:
        raise InvalidArgument(f"missing '{what}'", hint="give seq:N, Unix seconds, RFC 3339 "
                              "or a duration such as 2h")
    try:
        point = parse_point(text, now_ns)
    except PointError as exc:
        raise InvalidArgument(str(exc), hint="use seq:N, Unix seconds, RFC 3339 or 2h") from None
    if what == "until" and point.time_ns is not None and text.strip().isdigit():
        # `--until $(date +%s)` means up to the end of that second (issue 18).
        point = Point(time_ns=point.time_ns + 999_999_999)
    return point


def seq_of(store: EventStore[Any], point: Point) -> int:
    """The last seq at or before `point`."""
    head = store.head()
    if point.seq is not None:
        return min(point.seq, head)
    assert point.time_ns is not None
    return first_seq_at(store, point.time_ns + 1) - 1


_SNAPSHOTS: dict[tuple[str | None, int], EngineState] = {}  # (log name, seq) -> state
_KEEP_SNAPSHOTS = 4


def state_at(store: EventStore[Any], seq: int) -> EngineState:
    """The state after event `seq`: folded forward from the nearest earlier state asked for
    before (events never change, so an old answer stays right) or stored snapshot, else from
    zero. Stepping through time (`ps --at` at one point after another) then folds each
    stretch once."""
    from projections.engine import EngineProjection

    # The log's name: its file, or its PostgreSQL database and host (issue 19).
    name = None if store.location == ":memory:" else store.describe()
    base_seq, base = 0, None
    for (path, at), state in _SNAPSHOTS.items():
        if path is not None and path == name and base_seq < at <= seq:
            base_seq, base = at, state
    result = base if base_seq == seq and base is not None else store.fold_to(
        EngineProjection(), until_seq=seq, base=None if base is None else (base_seq, base))
    if name is None:  # :memory: logs have no name to remember them by
        return result
    _SNAPSHOTS[(name, seq)] = result
    while len(_SNAPSHOTS) > _KEEP_SNAPSHOTS:
        del _SNAPSHOTS[next(iter(_SNAPSHOTS))]
    return result


def shown_actor(actor: Actor) -> Actor:
    """The actor as it may leave the daemon. Events recorded before issue 15 hold callers'
    command lines verbatim (`-e K=secret`); they stay so in the log (rewriting it would break
    the chain), and every answer that shows them applies today's rule: `<redacted>`."""
    if not actor.command:
        return actor
    command = _shown_command(actor.command)
    return actor if command == actor.command else msgspec.structs.replace(actor, command=command)


@functools.lru_cache(maxsize=4096)
def _shown_command(command: tuple[str, ...]) -> tuple[str, ...]:
    return redact_argv(command)  # without the key: old values show as `<redacted>`


def shown_envelopes(envelopes: Iterable[Envelope]) -> Iterator[Envelope]:
    """`envelopes` with `shown_actor` applied (a batch shares one actor: redacted once)."""
    seen: Actor | None = None
    shown: Actor | None = None
    for env in envelopes:
        if env.actor != seen:
            seen = env.actor
            shown = shown_actor(seen)
            shown = None if shown is seen else shown
        yield env if shown is None else msgspec.structs.replace(env, actor=shown)
