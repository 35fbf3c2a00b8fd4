"""What the CLI tells the user when something fails, and the exit code it leaves behind.

I/O: `report` writes two lines to the stream it is given; the rest is pure.

Exit codes follow Docker's `docker run` contract:
    125  the engine reported an error, the daemon is unreachable, or the flags are wrong
    126  the container's command cannot be invoked (permission denied, not executable)
    127  the container's command cannot be found
    130  interrupted (Ctrl-C)
    141  the reader of our output went away (quietly, like any Unix filter)
    N    otherwise the container's (or exec'd process's) own exit code
Every error is one line `shipslog: <what went wrong>` and one line `hint: <what to do>`.
"""

from __future__ import annotations

from engine.core.errors import ShipslogError

# typing and collections.abc are for the type checker only: importing typing costs
# every CLI start ~3 ms (issue 17)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

ENGINE_ERROR = 125
CANNOT_INVOKE = 126
NOT_FOUND = 127
INTERRUPTED = 130
BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a filter whose reader left


class CliError(ShipslogError):
    """An error the CLI prints and exits with; carries its exit code."""

    def __init__(self, message: str, hint: str = "", exit_code: int = ENGINE_ERROR) -> None:
        super().__init__(message, hint)
        self.exit_code = exit_code


class UsageError(CliError):
    """The command line itself is wrong (unknown flag, missing argument, bad value)."""

    def __init__(self, message: str, command: str = "") -> None:
        where = f"shipslog {command}".strip()
        super().__init__(message, f"see '{where} --help'", ENGINE_ERROR)


class ExitStatus(Exception):
    """Not an error: leave with this exit code and print nothing (a container's own status)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def start_exit_code(message: str) -> int:
    """The exit code for a daemon error that failed to start a container's process, as Docker
    maps the OCI runtime's message: not found → 127, not executable → 126, anything else 125."""
    lowered = message.lower()
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        return NOT_FOUND
    if "permission denied" in lowered or "not executable" in lowered:
        return CANNOT_INVOKE
    return ENGINE_ERROR


_HINTS: list[tuple[str, str]] = [
    ("no such container", "list containers with 'shipslog ps -a'"),
    ("no such image", "list images with 'shipslog images', or pull it with 'shipslog pull'"),
    ("no such exec", "the exec instance has ended; run 'shipslog exec' again"),
    ("is already in use", "choose another name with --name, or remove the old container "
     "with 'shipslog rm'"),
    ("is not running", "start it first with 'shipslog start'"),
    ("is already paused", "resume it with 'shipslog unpause'"),
    ("is not paused", "nothing to do; 'shipslog ps' shows its state"),
    ("is paused", "resume it first with 'shipslog unpause'"),
    ("cannot remove a running container", "stop it first, or force removal with 'rm -f'"),
    ("conflict: unable to delete", "remove the containers that use it first, or use 'rmi -f'"),
    ("executable file not found", "check the command and the image's PATH"),
    ("permission denied", "check the file's mode and the --user you run as"),
    ("pull access denied", "check the image name; for a private repository log in first "
     "with 'shipslog login'"),
    ("unauthorized", "log in with 'shipslog login'"),
    ("page not found", "this daemon does not serve that endpoint yet; upgrade shipslogd"),
    # Issue 15 item 6: failures of the user's making, not the daemon's (its 500 hint would
    # send them to journalctl).
    ("port is already allocated", "another process or container holds that host port; "
     "publish on another one (-p OTHER:PORT) or stop what holds it"),
    ("no space left on device", "free space on the disk under the state root (remove unused "
     "images with 'shipslog image prune'), or give shipslogd a larger --root"),
    ("disk quota exceeded", "free space under the state root or raise the quota"),
    ("too many open files", "raise shipslogd's open-file limit (LimitNOFILE) or stop some "
     "containers, then try again"),
]

_STATUS_HINTS = {
    400: "check the flags and values you passed",
    401: "log in with 'shipslog login'",
    403: "this operation is not allowed on this object",
    404: "check the name or id with 'shipslog ps -a' or 'shipslog images'",
    409: "check the object's current state with 'shipslog ps -a' or 'shipslog inspect'",
    500: "the daemon failed; its log has the details ('journalctl -u shipslogd')",
    501: "this daemon does not implement that yet",
    503: "the daemon is busy or shutting down; try again shortly",
}


def known_hint(message: str) -> str:
    """The hint for a message we recognise ("" for none)."""
    lowered = message.lower()
    return next((hint for needle, hint in _HINTS if needle in lowered), "")


def hint_for(status: int, message: str) -> str:
    return known_hint(message) or _STATUS_HINTS.get(status, "run again with --debug for details")


def from_api(status: int, message: str) -> CliError:
    """A daemon error response as Docker prints it ("Error response from daemon: …")."""
    text = message.strip() or f"HTTP {status}"
    # A daemon error that carries its own hint ("… (hint: …)", the event store's): that one.
    head, sep, own = text.rpartition(" (hint: ")
    if sep and own.endswith(")") and head:
        return CliError(f"Error response from daemon: {head}", own[:-1], ENGINE_ERROR)
    return CliError(f"Error response from daemon: {text}", hint_for(status, text), ENGINE_ERROR)


def unreachable(message: str, hint: str = "") -> CliError:
    return CliError(
        message,
        (hint or "is shipslogd running? start it with 'shipslogd'")
        + "; or point -H / SHIPSLOG_HOST at its socket",
        ENGINE_ERROR,
    )


def translate(exc: BaseException) -> CliError:
    """Any exception escaping a command, as the one error the user sees."""
    if isinstance(exc, CliError):
        return exc
    from engine.cli import client as api_client

    if isinstance(exc, api_client.DaemonUnreachable):
        return unreachable(exc.message, exc.hint)
    if isinstance(exc, api_client.ApiError):
        return from_api(exc.status, exc.message)
    if isinstance(exc, ShipslogError):
        return CliError(exc.message, exc.hint or hint_for(exc.status, exc.message))
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return CliError(f"{exc.strerror or exc}{where}", "check the path and its permissions")
    if isinstance(exc, ValueError):
        return CliError(str(exc), "check the value you passed")
    return CliError(f"unexpected error: {type(exc).__name__}: {exc}",
                    "run again with --debug and report the traceback")


def report(err: CliError, stream: TextIO) -> None:
    """The two lines, each flattened to one line."""
    message = " ".join(str(err.message).split()) or "unknown error"
    stream.write(f"shipslog: {message}\n")
    hint = " ".join(err.hint.split())
    if hint:
        stream.write(f"hint: {hint}\n")
    stream.flush()
