"""Signal names as Docker parses them (moby pkg/signal ParseSignal): a number, or a name with
or without `SIG` (`TERM`, `SIGKILL`, `RTMIN+3`), case-insensitive.

I/O: none.
"""

from __future__ import annotations

import re
import signal as signals

from engine.core.errors import InvalidArgument

__all__ = ["parse_signal_name", "signal_name"]

_REALTIME = re.compile(r"SIGRT(MIN|MAX)([+-]\d+)?")


def parse_signal_name(raw: str) -> str:
    """`raw` as the signal's name with `SIG` (a number stays a number, as given), or Docker's
    "Invalid signal: RAW" for anything that names no signal."""
    value = raw.strip().upper()
    if value.isdigit():
        if not 1 <= int(value) <= 64:
            raise _invalid(raw)
        return value
    name = value if value.startswith("SIG") else "SIG" + value
    if name in signals.Signals.__members__:
        return name
    rt = _REALTIME.fullmatch(name)
    if rt is not None:
        offset = int(rt.group(2) or 0)
        number = (signals.SIGRTMIN if rt.group(1) == "MIN" else signals.SIGRTMAX) + offset
        if signals.SIGRTMIN <= number <= signals.SIGRTMAX:
            return name
    raise _invalid(raw)


def signal_name(raw: str) -> str:
    """`raw` as the name of a signal this host defines (`15` → `SIGTERM`): what `kill` hands
    the runtime, which sends it by number."""
    value = parse_signal_name(raw)
    try:
        return (signals.Signals(int(value)) if value.isdigit() else signals.Signals[value]).name
    except (ValueError, KeyError):
        raise _invalid(raw) from None


def _invalid(raw: str) -> InvalidArgument:
    return InvalidArgument(f"Invalid signal: {raw}", hint="use a name like SIGTERM or a number")
