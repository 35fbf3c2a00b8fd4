"""`state diff A B` for people (issue 18): each changed object's differences down to the
leaf field (`config.env`, `networks.<id>.ip`, `status`), old → new, instead of two truncated
JSON documents that look alike.

I/O: none. Works on the builtins `projections.timetravel.diff` gives (`Change.fields`:
field -> (before, after)), as the API sends them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

__all__ = ["Leaf", "full_builtins", "leaves", "summary"]

Leaf = tuple[str, Any, Any]  # (dotted path, old, new); a missing side is None


def leaves(fields: dict[str, Any]) -> list[Leaf]:
    """`Change.fields` flattened: nested objects by key, lists of the same length by index;
    anything else that differs is one leaf."""
    out: list[Leaf] = []
    for name in sorted(fields):
        old, new = fields[name]
        out.extend(_walk(name, old, new))
    return out


def _walk(path: str, old: Any, new: Any) -> Iterator[Leaf]:
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            yield from _walk(f"{path}.{key}", old.get(key), new.get(key))
        return
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new) and old:
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            yield from _walk(f"{path}.{i}", a, b)
        return
    yield path, old, new


def summary(changes: list[dict[str, Any]]) -> str:
    """`2 appeared, 1 vanished, 3 changed` (the parts that are not zero)."""
    words = {"added": "appeared", "removed": "vanished", "changed": "changed"}
    counts = {w: 0 for w in words.values()}
    for ch in changes:
        counts[words[ch["change"]]] += 1
    parts = [f"{n} {w}" for w, n in counts.items() if n]
    return ", ".join(parts) or "no changes"


def full_builtins(value: Any) -> Any:
    """Builtins with every default spelled out, nested structs too (they omit defaults when
    encoded, and a change from the default `no` must read `no -> always`, not `- -> always`)."""
    if isinstance(value, msgspec.Struct):
        return {f: full_builtins(getattr(value, f)) for f in value.__struct_fields__}
    if isinstance(value, dict):
        return {k: full_builtins(val) for k, val in value.items()}
    if isinstance(value, list | tuple):
        return [full_builtins(val) for val in value]
    return msgspec.to_builtins(value)
