"""Seq <-> time on the event log, for `--since`/`--until`/`--at TIME` (the events and
history routes, and time travel).

I/O: single-row reads of the event log it is given.
Kept apart from routes/shipslog.py so routes/system.py need not import it (the circle
routes.shipslog -> routes.system -> routes.shipslog, issue 16).
"""

from __future__ import annotations

from typing import Any

from events.store import EventStore


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
