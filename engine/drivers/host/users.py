"""User names of the host, looked up when an answer is rendered (issue 18: `audit who` and
`--filter actor=NAME`). The log records uids only; a name is never stored, so a renamed or
removed account shows as it is now (or as its uid when the host no longer knows it).

I/O: reads the host's user database through `pwd` (/etc/passwd, or NSS).
"""

from __future__ import annotations

import functools
import pwd


@functools.lru_cache(maxsize=256)
def name_of(uid: int) -> str | None:
    """The host's name for `uid`, or None."""
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return None


def uid_of(name: str) -> int | None:
    """The uid the host gives `name`, or None."""
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None
