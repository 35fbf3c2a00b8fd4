"""Who is on the other end of the API socket: an `Actor` from SO_PEERCRED.

I/O: one getsockopt on the connected unix socket, and small reads of `/proc/PID/loginuid` and
`/proc/PID/cmdline` (procfs, never blocks on disk). The kernel fills SO_PEERCRED at connect()
time, so the uid/gid/pid cannot be forged by the client (unix(7)); loginuid survives `su`/`sudo`
and names the human behind a root shell (audit's auid).

The command line goes into the log with every event the caller causes, so its secret-bearing
values (`-e K=V`, `login -p`, `user:pass@` URLs, …) are replaced here, before anything is
appended, by their keyed digests (`events.redact.redact_argv`; issue 15).
"""

from __future__ import annotations

import socket
import struct
from typing import Protocol

from events.envelope import Actor
from events.redact import redact_argv

_UCRED = struct.Struct("3i")  # struct ucred { pid_t pid; uid_t uid; gid_t gid; }
_UNSET_LOGINUID = 0xFFFF_FFFF  # (uid_t)-1: no login session (daemons, containers)
MAX_CMDLINE = 4096  # bytes of the caller's command line kept in the log


class _HasGetsockopt(Protocol):
    def getsockopt(self, level: int, optname: int, buflen: int) -> bytes: ...


def peer_credentials(sock: _HasGetsockopt) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process that connected `sock`."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return pid, uid, gid


def read_loginuid(pid: int, proc: str = "/proc") -> int | None:
    try:
        with open(f"{proc}/{pid}/loginuid", "rb") as f:
            value = int(f.read().strip() or b"-1")
    except (OSError, ValueError):
        return None
    return None if value in (-1, _UNSET_LOGINUID) else value


def read_cmdline(pid: int, proc: str = "/proc") -> tuple[str, ...] | None:
    """The caller's argv, when readable (it may have exited, or hidepid may hide it)."""
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as f:
            raw = f.read(MAX_CMDLINE)
    except OSError:
        return None
    if not raw:
        return None  # kernel threads and zombies have an empty cmdline
    parts = raw.rstrip(b"\0").split(b"\0")
    if len(raw) == MAX_CMDLINE and not raw.endswith(b"\0"):
        # Cut mid-word: half of `http://u:secret@proxy` no longer looks like a URL to the
        # redaction, so the partial word is not kept (issue 15).
        parts[-1] = "…".encode()
    return tuple(part.decode("utf-8", "replace") for part in parts)


def actor_from_socket(sock: _HasGetsockopt, *, via: str = "api",
                      key: bytes | None = None) -> Actor:
    """The caller as an Actor; `key` (the secret store's HMAC key) digests hidden values."""
    pid, uid, gid = peer_credentials(sock)
    # pid 0 means the peer is in a pid namespace we cannot see; its /proc entries are not ours.
    loginuid = read_loginuid(pid) if pid > 0 else None
    command = read_cmdline(pid) if pid > 0 else None
    if command is not None:
        command = redact_argv(command, key)
    return Actor(uid=uid, gid=gid, pid=pid, loginuid=loginuid, command=command, via=via)
