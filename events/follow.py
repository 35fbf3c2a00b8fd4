"""Following the event log: history from the database, then live events, exactly once.

I/O: SQLite reads in trio worker threads (each follower reads through its own read-only
connection). It reaches trio only through `events/writer.py` (`run_in_thread`, `sleep`,
subscriptions), which stays the one module in events/ that imports trio.

`follow` subscribes to the writer *before* reading history, then reads history from the
database and deduplicates by seq, so no event committed in between is lost or seen twice
(podman `090-events.bats` "no duplicates"; RELIABILITY L-04). A follower that falls more than
`max_buffer` events behind is caught up from the database again, or, with
`on_lag="close"`, ended with `SlowConsumer` (L-05: moby's bounded ring). Events a compaction
moved to an archive while the follower was behind are no longer live: they are skipped (the
`ChainCompacted` event that moved them is delivered like any other).

Use it inside `contextlib.aclosing(...)` so the subscription and connection are released when
the consumer stops early.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any, Literal

from events.envelope import Envelope
from events.store import EventStore, StoreError
from events.writer import StoreWriter, run_in_thread, sleep

__all__ = ["SlowConsumer", "follow", "follow_polling"]

_PAGE = 2000

Filter = Callable[[Envelope], bool]


class SlowConsumer(StoreError):
    """The follower fell further behind than its buffer allows."""


async def _read_page(reader: EventStore[Any], after: int, until: int | None) -> list[Envelope]:
    def work() -> list[Envelope]:
        return list(reader.read(after, limit=_PAGE, until_seq=until))

    return await run_in_thread(work)


async def _all_archived(reader: EventStore[Any], after: int, until: int) -> bool:
    count = await run_in_thread(lambda: reader.archived_between(after, until))
    return count == until - after


async def follow(
    store: EventStore[Any],
    writer: StoreWriter,
    *,
    after_seq: int,
    filter: Filter | None = None,
    max_buffer: int = 10_000,
    on_lag: Literal["catch_up", "close"] = "catch_up",
) -> AsyncGenerator[Envelope, None]:
    """Every event after `after_seq` (those `filter` accepts), in seq order, then live ones.

    Ends when the writer shuts down (after yielding everything committed before that).
    """
    subscription = writer.subscribe(max_buffer=max_buffer)
    reader = await run_in_thread(store.reader)
    last = after_seq  # the last seq handled (yielded or filtered out)
    try:
        while True:
            # Database phase: until a short page says we reached the head.
            while True:
                page = await _read_page(reader, last, None)
                for envelope in page:
                    last = envelope.seq
                    if filter is None or filter(envelope):
                        yield envelope
                if len(page) < _PAGE:
                    break
            # Live phase.
            while True:
                await subscription.wait()
                if subscription.lagged:
                    if on_lag == "close":
                        raise SlowConsumer(
                            f"event follower fell more than {max_buffer} events behind",
                            "read events faster, or follow again from the last seq you saw",
                        )
                    subscription.lagged = False
                    subscription.buffer.clear()
                    break  # back to the database phase; later live events dedupe by seq
                if not subscription.buffer:
                    if subscription.closed:
                        return
                    continue
                envelope = subscription.buffer.popleft()
                if envelope.seq <= last:
                    continue
                if envelope.seq > last + 1:
                    # Committed before we subscribed but after our history read ended (or
                    # dropped by an earlier overflow): fill the hole from the database.
                    while last < envelope.seq - 1:
                        page = await _read_page(reader, last, envelope.seq - 1)
                        if not page and await _all_archived(reader, last, envelope.seq - 1):
                            last = envelope.seq - 1  # compacted away: no longer live events
                        elif not page:
                            raise StoreError(
                                f"events {last + 1}..{envelope.seq - 1} are missing from the log",
                                "run `shipslog audit verify`",
                            )
                        for missing in page:
                            last = missing.seq
                            if filter is None or filter(missing):
                                yield missing
                last = envelope.seq
                if filter is None or filter(envelope):
                    yield envelope
    finally:
        subscription.close()
        if reader is not store:
            reader.close()


async def follow_polling(
    path: str | Path,
    after_seq: int,
    interval: float = 0.5,
    *,
    filter: Filter | None = None,
) -> AsyncGenerator[Envelope, None]:
    """Follow a log that another process writes (the CLI while the daemon runs), by polling.

    Opens the database read-only; never ends by itself.
    """
    reader: EventStore[Any] = await run_in_thread(lambda: EventStore.open(path, readonly=True))
    last = after_seq
    try:
        while True:
            page = await _read_page(reader, last, None)
            for envelope in page:
                last = envelope.seq
                if filter is None or filter(envelope):
                    yield envelope
            if len(page) < _PAGE:
                await sleep(interval)
    finally:
        reader.close()
