"""The state root's lock (RELIABILITY F-14): one daemon, or one `system reset`, per root.

I/O: opens and flocks `<root>/engine.lock` and writes the holder's pid into it.
"""

from __future__ import annotations

import fcntl
import os
from typing import TYPE_CHECKING

from engine.core.errors import ShipslogError

if TYPE_CHECKING:
    from engine.shell.paths import Paths


class AlreadyRunning(ShipslogError):
    pass


def take_lock(paths: Paths) -> int:
    """flock the state root (RELIABILITY F-14): a second daemon exits naming the holder."""
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise AlreadyRunning(
            f"another daemon holds {paths.lock} (pid {holder})",
            hint="stop it first, or give this one its own --root and --exec-root") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
