"""Time travel: the engine's state at a seq or a moment, by folding the log up to it, and the
difference between two such states.

I/O: none. `parse_point` turns what a user types (`seq:N`, Unix seconds, RFC 3339, a duration
such as `2h` meaning "that long ago") into a `Point`; the caller gives it `now_ns`. The caller
reads the events up to the point (`EventStore.fold_to` or `read(until_seq=...)`) and folds them
with `projections.fold.fold`, so an answer "at seq N" is exactly what the live projection held
right after event N was appended. `diff` compares two `EngineState`s object by object.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

import msgspec

from events.envelope import Envelope
from projections.fold import fold
from projections.state import EngineState
from projections.statediff import full_builtins

__all__ = ["Change", "Point", "PointError", "diff", "parse_point", "state_at"]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
            "m": 60_000_000_000, "h": 3_600_000_000_000, "d": 86_400_000_000_000}


class PointError(ValueError):
    """A point in time that cannot be parsed."""


class Point(msgspec.Struct, frozen=True, kw_only=True):
    """`seq` (inclusive) or `time_ns` (inclusive); exactly one is set."""

    seq: int | None = None
    time_ns: int | None = None

    def label(self) -> str:
        return f"seq:{self.seq}" if self.seq is not None else f"time_ns:{self.time_ns}"


def _duration_ns(text: str) -> int | None:
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNIT_NS[m.group(2)]
        pos = m.end()
    return int(total) if pos == len(text) and pos > 0 else None


def parse_point(text: str, now_ns: int) -> Point:
    """`seq:42` | `1700000000[.5]` (Unix seconds) | RFC 3339 | `2h` / `90m` / `1d` ago."""
    s = text.strip()
    if not s:
        raise PointError("empty point in time")
    if s.startswith("seq:"):
        digits = s[4:]
        if not digits.isdigit():
            raise PointError(f"invalid seq in {text!r}: want seq:N with N >= 0")
        return Point(seq=int(digits))
    if re.fullmatch(r"\d+(\.\d+)?", s):
        whole, _, frac = s.partition(".")
        return Point(time_ns=int(whole) * 1_000_000_000 + int((frac + "0" * 9)[:9]))
    ago = _duration_ns(s[:-4].rstrip() if s.endswith(" ago") else s)  # `2h ago` as `2h`
    if ago is not None:
        return Point(time_ns=now_ns - ago)
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise PointError(
            f"cannot read {text!r} as a point in time: use seq:N, Unix seconds, RFC 3339 or a "
            "duration such as 2h") from None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # like Docker: a time without a zone is local time
    return Point(time_ns=int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000)


def state_at(envelopes: Iterable[Envelope], point: Point) -> EngineState:
    """Fold the events up to and including `point` (envelopes in seq order, from seq 1)."""

    def upto() -> Iterable[Envelope]:
        for env in envelopes:
            if point.seq is not None and env.seq > point.seq:
                return
            if point.time_ns is not None and env.recorded_at > point.time_ns:
                return
            yield env

    return fold(upto())


class Change(msgspec.Struct, frozen=True, kw_only=True):
    """One object that differs between two states."""

    kind: str  # container, image, volume, network
    id: str
    name: str
    change: str  # added, removed, changed
    fields: dict[str, tuple[object, object]] = {}  # field -> (before, after), for "changed"


_KINDS = (("container", "containers"), ("image", "images"), ("volume", "volumes"),
          ("network", "networks"))
# Bookkeeping that changes with every event of an object and says nothing by itself.
_IGNORED = frozenset({"stream_version", "last_seq"})


def _name(view: object) -> str:
    name = getattr(view, "name", "")
    if name:
        return str(name)
    tags = getattr(view, "repo_tags", ())
    return str(tags[0]) if tags else ""


def diff(before: EngineState, after: EngineState) -> list[Change]:
    """Containers, images, volumes and networks that were added, removed or changed."""
    out: list[Change] = []
    for kind, attr in _KINDS:
        a = getattr(before, attr)
        b = getattr(after, attr)
        for key in sorted(set(a.keys()) | set(b.keys())):
            old, new = a.get(key), b.get(key)
            if old is None:
                out.append(Change(kind=kind, id=key, name=_name(new), change="added"))
            elif new is None:
                out.append(Change(kind=kind, id=key, name=_name(old), change="removed"))
            elif old != new:
                fields = _field_changes(old, new)
                if fields:
                    out.append(Change(kind=kind, id=key, name=_name(new), change="changed",
                                      fields=fields))
    return out


def _field_changes(old: object, new: object) -> dict[str, tuple[object, object]]:
    # Every field, defaults included (omit_defaults would turn `0 -> 3` into `None -> 3`).
    # Nested ones too (issue 18: `restart_policy.name: - -> always` hid the old `no`).
    a = {f: full_builtins(getattr(old, f)) for f in old.__struct_fields__}  # type: ignore[attr-defined]
    b = {f: full_builtins(getattr(new, f)) for f in new.__struct_fields__}  # type: ignore[attr-defined]
    changed: dict[str, tuple[object, object]] = {}
    for key in sorted(set(a) | set(b)):
        if key in _IGNORED:
            continue
        if a.get(key) != b.get(key):
            changed[key] = (a.get(key), b.get(key))
    return changed
