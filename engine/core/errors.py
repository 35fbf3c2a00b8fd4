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

What is not one of these by the time it reaches a boundary (the supervisor turning a step's
failure into an outcome, a pull ending) goes through `user_error` there, once:

    BaseExceptionGroup of one leaf      the leaf (a trio nursery wraps a single failure: issue 15
                                        item 6, "ExceptionGroup: Exceptions from Trio nursery")
    OSError ENOSPC / EDQUOT             NoSpace      "write PATH: no space left on device" (Go's
                                                     words, which Docker shows)
    OSError EMFILE / ENFILE             Unavailable  "too many open files"
    OSError EADDRINUSE                  KernelError  "address already in use" (500, as Docker)
    any other OSError                   KernelError  its strerror and file name
    anything else                       None: a bug; the boundary logs its traceback
"""

from __future__ import annotations

import errno


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


def leaf_of(exc: BaseException) -> BaseException:
    """The one failure inside (possibly nested) single-leaf exception groups; `exc` itself
    when it is not such a group (a group of several stays a group)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


_NO_SPACE_HINT = ("free space on the disk under the state root (remove unused images with "
                  "'shipslog image prune'), or give shipslogd a larger --root")


def from_os_error(exc: OSError, doing: str = "") -> ShipslogError:
    """An OSError as the one line a user can act on. `doing` names the work ("pulling
    busybox") when the error itself does not say."""
    what = f"{doing}: " if doing else ""
    where = f"{exc.filename}: " if exc.filename else ""
    written = f"write {exc.filename}: " if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return NoSpace(f"{what}{written}no space left on device", _NO_SPACE_HINT)
    if exc.errno == errno.EDQUOT:
        return NoSpace(f"{what}{written}disk quota exceeded", _NO_SPACE_HINT)
    if exc.errno in (errno.EMFILE, errno.ENFILE):
        return Unavailable(f"{what}{where}too many open files",
                           "raise shipslogd's open-file limit (LimitNOFILE in its unit, or "
                           "ulimit -n) or stop some containers, then try again")
    if exc.errno == errno.EADDRINUSE:
        return KernelError(f"{what}{where}address already in use",
                           "another process holds that address; stop it or choose another")
    # Go's words are strerror in lower case ("open /x: permission denied").
    reason = (exc.strerror or "").lower() or str(exc) or type(exc).__name__
    return KernelError(f"{what}{where}{reason}")


def user_error(exc: BaseException, doing: str = "") -> ShipslogError | None:
    """`exc` as a user's error, or None when it is none we know (a bug: the caller logs it
    with its traceback and reports an internal error)."""
    leaf = leaf_of(exc)
    if isinstance(leaf, ShipslogError):
        return leaf
    if isinstance(leaf, OSError):
        return from_os_error(leaf, doing)
    return None
