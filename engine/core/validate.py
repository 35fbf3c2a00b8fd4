"""Validation of everything a user can name: object names, ids, and strings that reach files.

I/O: none. Names must match Docker's `^[a-zA-Z0-9][a-zA-Z0-9_.-]+$` (moby
`daemon/names/names.go`); we also refuse a trailing `.` because names become directory names
(RELIABILITY I-02). Bytes NUL, CR and LF are refused in any field that ends up in a generated
file such as /etc/hosts or /etc/passwd (I-03, CVE-2022-4318): we test the byte, not the
two-character escape.
"""

from __future__ import annotations

import re

from engine.core.errors import InvalidArgument

NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
ID_RE = re.compile(r"[0-9a-f]{64}")
MAX_NAME = 253


def check_name(name: str, kind: str = "container") -> str:
    if len(name) > MAX_NAME or not NAME_RE.fullmatch(name) or name.endswith("."):
        shown = name if len(name) <= 64 else name[:61] + "..."
        if kind == "container":  # Docker's words
            message = (f"Invalid container name ({shown}), only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                       "are allowed")
        else:
            message = f"invalid {kind} name {shown!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        raise InvalidArgument(
            message,
            hint=f"pick a {kind} name of letters, digits, '_', '.' and '-' "
                 "(not starting with a symbol, not ending in '.')",
        )
    return name


def check_id(ident: str) -> str:
    if not ID_RE.fullmatch(ident):
        raise InvalidArgument(f"invalid id {ident[:80]!r}", hint="ids are 64 lowercase hex digits")
    return ident


def check_line(value: str, field: str) -> str:
    if any(ch in value for ch in "\x00\r\n"):
        raise InvalidArgument(
            f"invalid {field}: it contains a NUL, carriage return or newline byte",
            hint=f"remove control characters from {field}",
        )
    return value
