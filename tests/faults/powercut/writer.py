"""The process the power-cut test runs under the shim (`shim.c`): appends batches of events
to a log at argv[1] through `EventStore` (WAL, synchronous=FULL, projection rows in the same
transaction, as the daemon does) and prints `seq hash` of each event once its append
returned — what the store acknowledged. Runs until argv[2] batches are in, or the shim
kills it.
"""

from __future__ import annotations

import sys
import time

from events import vocabulary as v
from events.envelope import Actor, Pending, stream_of
from events.store import EventStore
from projections.engine import EngineProjection

ACTOR = Actor(uid=0, gid=0, pid=1)


def main() -> None:
    path, batches = sys.argv[1], int(sys.argv[2])
    store = EventStore.open(path, projection=EngineProjection())
    start = store.head()
    for i in range(start, start + batches):
        pending = [Pending(stream=stream_of("volume", f"v{i}-{k}"),
                           event=v.VolumeCreated(name=f"v{i}-{k}")) for k in range(1 + i % 3)]
        envs = store.append(pending, actor=ACTOR, op_id=f"op{i}", now_ns=time.time_ns())
        for env in envs:
            print(env.seq, env.hash, flush=True)
    store.close()


if __name__ == "__main__":
    main()
