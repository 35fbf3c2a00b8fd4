"""What the log's reader verbs (`audit`, `history`, `audit export`, `system compact`) share:
points in the log given on the command line, `--filter` as the API's JSON, and the time
format of their tables. Their own module, so that none of those verbs imports another
(issue 16: the CLI circle audit → export → timeline → audit).

I/O: none.
"""

from __future__ import annotations

import json

from engine.cli import parse
from engine.cli.errors import UsageError


def point_arg(value: str, now: float, flag: str, verb: str = "audit") -> str:
    """seq:N passes through; times and durations become Unix seconds on this side."""
    if value.startswith("seq:"):
        return value
    try:
        return parse.parse_timestamp(value, now)
    except ValueError as exc:
        raise UsageError(f"invalid value for --{flag}: {exc}", verb) from None


def filter_params(given: list[str], verb: str) -> dict[str, str]:
    """`--filter K=V` (repeatable) as the API's Docker-style `filters` JSON."""
    if not given:
        return {}
    try:
        return {"filters": json.dumps(parse.parse_filters(given), separators=(",", ":"))}
    except ValueError as exc:
        raise UsageError(str(exc), verb) from None


def when(ns: int) -> str:
    """A log time (ns since the epoch) in local time, to the millisecond."""
    secs, nanos = divmod(ns, 1_000_000_000)
    from datetime import datetime  # imported where used: CLI start-up

    return datetime.fromtimestamp(secs).strftime("%Y-%m-%d %H:%M:%S") + f".{nanos // 1_000_000:03d}"
