"""Generate `tests/data/events-v<N>.db`: a small frozen log covering every event type.

I/O: writes one SQLite file (refuses to overwrite it). Run once per released schema:
`python3 -m tests.data.make_sample_log`; commit the .db and never regenerate it — the point
is that logs written by this version keep loading and verifying in every later version.
Values are fixed, so the file is reproducible (recorded_at is a constant, not the clock).
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

import msgspec

from events.envelope import Actor, Pending
from events.redact import redact_env
from events.store import EventStore
from events.vocabulary import EVENT_TYPES

SCHEMA = 1
OUT = Path(__file__).with_name(f"events-v{SCHEMA}.db")
T0 = 1_764_288_000_000_000_000  # 2025-11-28T00:00:00Z in ns


def _value(info: msgspec.inspect.Type, name: str) -> Any:
    mi = msgspec.inspect
    if isinstance(info, mi.StrType):
        return f"{name}-é"
    if isinstance(info, mi.BoolType):
        return True
    if isinstance(info, mi.IntType):
        return 7
    if isinstance(info, mi.NoneType):
        return None
    if isinstance(info, mi.UnionType):
        return _value(info.types[0], name)
    if isinstance(info, mi.VarTupleType):
        return (_value(info.item_type, name),)
    if isinstance(info, mi.DictType):
        return {"b": _value(info.value_type, name), "a": _value(info.value_type, name)}
    if isinstance(info, mi.StructType):
        return _build(info)
    raise TypeError(f"no sample value for {info!r}")


def _build(info: msgspec.inspect.StructType) -> Any:
    # Every field set, optional ones to non-default values, so the frozen log pins them all.
    kwargs = {f.name: _value(f.type, f.name) for f in info.fields}
    if "env" in kwargs and info.cls.__name__ == "ContainerConfig":
        kwargs["env"] = redact_env(b"k" * 32, ["DB_PASSWORD=canary-XYZ", "UNSET"])
    return info.cls(**kwargs)


def sample_events() -> list[Any]:
    return [_build(msgspec.inspect.type_info(cls)) for cls in EVENT_TYPES.values()]  # type: ignore[arg-type]


def write(path: Path) -> None:
    if path.exists():
        sys.exit(f"{path} exists: frozen sample logs are never regenerated")
    store: EventStore[Any] = EventStore.open(path)
    users = [
        Actor(uid=1000, gid=1000, pid=4242, loginuid=1000, command=("shipslog", "run")),
        Actor(uid=0, gid=0, pid=1, via="daemon"),
    ]
    events = sample_events()
    for i in range(0, len(events), 3):  # batches of three, alternating actors and command ids
        pending = [Pending(stream=f"sample-{type(e).__name__}", event=e) for e in events[i : i + 3]]
        store.append(
            pending,
            actor=users[i % 2],
            op_id=f"op-{i}",
            command_id=f"cmd-{i}" if i % 2 else None,
            now_ns=T0 + i,
        )
    store._w.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("VACUUM")
    conn.close()


if __name__ == "__main__":
    write(OUT)
    print(f"wrote {OUT}")
