"""Keeping secrets out of the log: environment values become keyed digests.

I/O: none (pure). The HMAC key is passed in (`engine/secrets.py` keeps it outside the
database). The log then says "DB_PASSWORD was set" and, to someone holding the key, whether
two containers had the same value, but never the value itself (RELIABILITY S-08; the
CVE-2019-13509 / CVE-2021-21334 family: secrets leaking into logs and inspect output).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from events.values import EnvEntry

__all__ = ["RedactError", "check_env", "keyed_digest", "redact_env"]

# Real NUL, LF and CR bytes (not the two characters `\n`) smuggle extra lines into the files
# generated from env and user fields (/etc/passwd, /etc/hosts): CVE-2022-4318, RELIABILITY I-03.
# Values may hold LF and CR as Docker's do (PEM keys passed with -e): only HOME's value goes
# into a generated file. NUL is refused everywhere: execve cannot carry it.
_FORBIDDEN = {"\x00": "NUL", "\n": "LF", "\r": "CR"}
_FILED_VALUES = ("HOME",)


class RedactError(ValueError):
    """An environment entry the engine refuses to record or pass on."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def keyed_digest(key: bytes, value: str) -> str:
    """Hex HMAC-SHA256 of `value` under `key`."""
    return hmac.new(key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def check_env(entry: str) -> tuple[str, str | None]:
    """Split `K=V` (or a bare `K`); refuse NUL bytes, CR/LF in keys and in HOME's value,
    and empty keys."""
    name, sep, value = entry.partition("=")
    for char, label in _FORBIDDEN.items():
        in_value = char in value and (char == "\x00" or name in _FILED_VALUES)
        if char in name or in_value:
            where = "key" if char in name else "value"
            raise RedactError(
                f"environment variable {name[:64]!r} has a {label} byte in its {where}",
                "remove control characters from environment variables",
            )
    if not name:
        raise RedactError(f"environment entry {entry[:64]!r} has an empty name", "use KEY=VALUE")
    return name, (value if sep else None)


def redact_env(key: bytes, env: Iterable[str]) -> tuple[EnvEntry, ...]:
    """`["K=V", "K2"]` -> `(EnvEntry("K", hmac(V)), EnvEntry("K2", ""))`, input order kept."""
    entries = []
    for item in env:
        name, value = check_env(item)
        entries.append(EnvEntry(name, "" if value is None else keyed_digest(key, value)))
    return tuple(entries)
