"""What every CLI command receives: the API client (made on first use), the streams it writes
to, the environment, the clock, and the `--root` local reader; plus the argparse subclass that
turns usage mistakes into one-line errors.

I/O: none by itself; holds the process's streams and makes the API client lazily.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from engine.cli.errors import UsageError

# typing and collections.abc are for the type checker only: importing typing costs
# every CLI start ~3 ms (issue 17)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import IO, Any, BinaryIO, NoReturn, TextIO

    from engine.cli.local import LocalReader


def _untranslated(message: str) -> str:
    return message


# argparse looks each of its own messages up with gettext, and a lookup that finds no catalogue
# (there is none for argparse's domain) searches the locale directories again every time:
# ~30 lookups per command, 1-3 ms on an idle machine and tens of ms on a busy one (issue 17).
# The CLI speaks English, as Docker's does, so argparse's messages are used as they are.
argparse._ = _untranslated  # type: ignore[attr-defined]


def terminal_columns() -> int:
    """shutil.get_terminal_size().columns without importing shutil, which pulls in bz2, lzma,
    zlib and fnmatch: ~2.5 ms of every command's start-up (issue 17)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class CliParser(argparse.ArgumentParser):
    """argparse that raises UsageError (exit 125, with a hint) instead of exiting with 2."""

    _help_width: int | None = None

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse builds a formatter for every add_argument (to check the metavar), and each
        # one asks the terminal for its size: `run` alone has ~130 flags, so a `run` spent
        # ~4 ms of its start-up there. Ask once per parser (the width HelpFormatter uses).
        if self._help_width is None:
            self._help_width = terminal_columns() - 2
        # typeshed lists only `prog`; every argparse formatter takes `width` too
        return self.formatter_class(prog=self.prog, width=self._help_width)  # type: ignore[call-arg]

    def error(self, message: str) -> NoReturn:
        verb = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        if message.startswith("argument COMMAND: invalid choice: "):
            wrong = message.split(": ", 2)[2].split(" (choose from")[0]
            raise UsageError(f"{wrong} is not a shipslog command")
        raise UsageError(message, verb)


class Context:
    """What every command receives. (A plain class: `dataclasses` costs ~15 ms to import,
    paid by every CLI start.)"""

    def __init__(self, make_client: Callable[[], Any], stdout: TextIO | None = None,
                 stderr: TextIO | None = None, stdin: IO[bytes] | None = None,
                 environ: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.time, local: LocalReader | None = None,
                 debug: bool = False) -> None:
        self.make_client = make_client
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        self.stdin = stdin
        self.environ = environ if environ is not None else {}
        self.clock = clock
        self.local = local
        self.debug = debug
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.make_client()
        return self._client

    def read(self, verb: str, path: str, params: dict[str, Any] | None = None) -> Any:
        """A read-only GET: from the daemon, or from the state root when --root is given."""
        if self.local is not None:
            return self.local.get_json(path, params, verb=verb)
        return self.client.get_json(path, params)

    def out(self, text: str = "", end: str = "\n") -> None:
        self.stdout.write(text + end)

    def err(self, text: str, end: str = "\n") -> None:
        self.stderr.write(text + end)
        self.stderr.flush()

    def out_bytes(self) -> BinaryIO:
        self.stdout.flush()
        buffer = getattr(self.stdout, "buffer", None)
        return buffer if buffer is not None else _TextBytes(self.stdout)  # type: ignore[return-value]

    def err_bytes(self) -> BinaryIO:
        self.stderr.flush()
        buffer = getattr(self.stderr, "buffer", None)
        return buffer if buffer is not None else _TextBytes(self.stderr)  # type: ignore[return-value]

    def isatty(self, stream: Any) -> bool:
        try:
            return bool(stream.isatty())
        except (AttributeError, ValueError):
            return False


class _TextBytes:
    """Bytes written to a text stream that has no binary buffer (a StringIO under test)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, data: bytes) -> int:
        self.stream.write(data.decode("utf-8", "replace"))
        return len(data)

    def flush(self) -> None:
        self.stream.flush()
