"""Failpoints: named places between a kernel operation and its event where tests inject faults.

I/O: reads the environment once; `panic` sends SIGKILL to this process (the daemon dies the
way a power cut or OOM kill would take it). Grammar, after containerd's: the variable
`SHIPSLOG_FAILPOINTS` holds `name=action;name=action`, where action is `panic`, `error(msg)`,
`delay(ms)` or `crash` (raises `SimulatedCrash`, a BaseException no handler catches: the
in-process stand-in for `panic` in tests), optionally prefixed `N*` to fire only on the N-th
hit (`2*panic`). Tests may also call `arm(name, action)` directly.

Terms chain with `->` as in containerd: `2*error(full)->off` fires `error(full)` on the first
two hits and then does nothing (`off`); in a chain `N*` counts hits of that term, and a term
without a count lasts for ever. (A lone `N*action`, without `->`, keeps its older meaning:
only the N-th hit.) A log that refuses an outcome N times and then accepts it is written so.

Where the fault is not a kernel error, the call site says what `error` raises instead: the
journal's append failpoints raise the store's own errors (`error(full)` a `StoreFull`,
`error(busy)` a `StoreBusy`, anything else an I/O `StoreError`), so that F-12 exercises the
exact path a full disk or a locked database takes.

Every name a call site uses is listed in `NAMES` (the fault matrix walks them); a unit test
checks that the list and the call sites agree.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable

from engine.core.errors import KernelError

# Every failpoint in the engine, by the operation it belongs to (kept in step with the call
# sites; tests/unit/test_failpoints.py checks both ways).
NAMES: tuple[str, ...] = (
    "pull.after_manifest", "pull.after_blob_stored", "pull.after_layer_unpacked",
    "pull.before_pulled_event", "ingest.after_chunk",
    "create.after_rootfs",
    "start.after_volume_mount", "start.after_runtime_create", "start.after_runtime_start",
    "stop.after_signal",
    "remove.after_runtime_delete", "remove.after_volume_unmount", "remove.after_rootfs",
    "volume.after_create", "volume.after_remove",
    "net.after_netns", "net.after_allocate", "net.after_veth", "net.after_connected_event",
    "net.after_nft", "net.after_published_event", "net.after_detach_kernel",
    "net.after_network_setup",
)
# And one family at the engine side of every append (engine/shell/journal.py): `append.<EventType>`
# fires before a batch holding an event of that type goes to the log (F-12).
APPEND_PREFIX = "append."

_SPEC = re.compile(r"(?:(\d+)\*)?(panic|error|delay|crash|off)(?:\((.*)\))?")
Term = tuple[int, str, str]  # (count, action, argument)
_table: dict[str, list[Term]] | None = None
_hits: dict[str, int] = {}


class SimulatedCrash(BaseException):
    """The daemon 'dies' here: nothing after this point runs, no handler cleans up."""


def _parse(action: str) -> list[Term] | None:
    terms: list[Term] = []
    for part in action.split("->"):
        m = _SPEC.fullmatch(part.strip())
        if m is None:
            return None
        terms.append((int(m.group(1) or 0), m.group(2), m.group(3) or ""))
    return terms


def _load() -> dict[str, list[Term]]:
    table: dict[str, list[Term]] = {}
    for item in os.environ.get("SHIPSLOG_FAILPOINTS", "").split(";"):
        if "=" not in item:
            continue
        name, action = item.split("=", 1)
        terms = _parse(action)
        if terms:
            table[name.strip()] = terms
    return table


def _current(terms: list[Term], n: int) -> tuple[str, str]:
    """The action for the n-th hit (1-based)."""
    if len(terms) == 1:
        nth, action, arg = terms[0]
        return (action, arg) if not nth or n == nth else ("off", "")
    for count, action, arg in terms:
        if not count or n <= count:
            return action, arg
        n -= count
    return "off", ""


def armed() -> bool:
    """Whether any failpoint is switched on (call sites with a cost of their own ask first)."""
    global _table
    if _table is None:
        _table = _load()
    return bool(_table)


def hit(name: str, error: Callable[[str, str], BaseException] | None = None) -> None:
    """Called at a failpoint; does nothing unless the environment names it. `error(name,
    arg)` makes the exception an `error` action raises (default: a `KernelError`)."""
    global _table
    if _table is None:
        _table = _load()
    if not _table or name not in _table:
        return
    _hits[name] = _hits.get(name, 0) + 1
    action, arg = _current(_table[name], _hits[name])
    if action == "crash":
        raise SimulatedCrash(name)
    if action == "panic":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "error":
        if error is not None:
            raise error(name, arg)
        raise KernelError(f"failpoint {name}: {arg or 'injected error'}")
    elif action == "delay":
        time.sleep(int(arg or "0") / 1000)


def arm(name: str, action: str) -> None:
    """Switch a failpoint on from a test (same grammar as the environment variable)."""
    global _table
    if _table is None:
        _table = _load()
    terms = _parse(action)
    if terms is None:
        raise ValueError(f"bad failpoint action {action!r}")
    _table[name] = terms
    _hits.pop(name, None)


def reset() -> None:
    """Re-read the environment (tests change it between runs)."""
    global _table
    _table = None
    _hits.clear()
