"""A debugging aid for memory growth (RELIABILITY L-06): with `SHIPSLOG_TRACEMALLOC=DIR` in
its environment the daemon traces its Python allocations, and each SIGUSR2 writes a
tracemalloc snapshot to DIR/snapshot-<n>.pickle; compare two with
`tracemalloc.Snapshot.load(a).compare_to(Snapshot.load(b), "traceback")`. Off by default:
tracing costs memory and time.

I/O: the environment, one signal handler, files in DIR.
"""

from __future__ import annotations

import itertools
import os
import signal
import tracemalloc
from pathlib import Path
from types import FrameType

ENV = "SHIPSLOG_TRACEMALLOC"
FRAMES = 12


def install_from_env() -> bool:
    where = os.environ.get(ENV, "")
    if not where:
        return False
    out = Path(where)
    out.mkdir(parents=True, exist_ok=True)
    counter = itertools.count(1)
    tracemalloc.start(FRAMES)

    def dump(_signum: int, _frame: FrameType | None) -> None:
        path = out / f"snapshot-{next(counter)}.pickle"
        tracemalloc.take_snapshot().dump(str(path) + ".tmp")
        os.replace(str(path) + ".tmp", path)

    signal.signal(signal.SIGUSR2, dump)
    return True
