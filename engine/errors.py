"""The errors a user can see, translated once at each boundary.

I/O: none.

    ShipslogError(message, hint)        one line of what went wrong, one of what to do
    ├── InvalidArgument   400           the request itself is wrong (bad name, bad JSON, bad flag)
    ├── NotFound          404           no such container / image / volume / network / exec
    ├── Conflict          409           name in use, wrong state, object in use
    ├── Unavailable       503           the engine cannot serve this now (shutting down, locked)
    ├── NoSpace           507           the disk under the state root is full (ENOSPC)
    └── KernelError       500           our fault or the kernel's: runc, mount, netlink failures

The API server turns `status` into the HTTP status with Docker's `{"message": ...}` body; the
CLI prints `shipslog: <message>` and `hint: <hint>` and exits 125. This module does no I/O,
so the pure core (`engine/core/`) raises these directly when it rejects a command.
"""

from __future__ import annotations


class ShipslogError(Exception):
    status = 500

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InvalidArgument(ShipslogError):
    status = 400


class NotFound(ShipslogError):
    status = 404


class Conflict(ShipslogError):
    status = 409


class Unavailable(ShipslogError):
    status = 503


class NoSpace(ShipslogError):
    status = 507


class KernelError(ShipslogError):
    status = 500
