"""Rendering of Docker's JSON progress stream (pull, push, load, import), as `docker pull` shows
it: one line per layer id, redrawn in place on a terminal, plain status lines otherwise.

I/O: writes to the text stream it is given (ANSI cursor movement only when it is a terminal).

Message shape (moby `jsonmessage`): `{"status", "id", "progressDetail": {"current", "total"},
"progress", "stream", "error", "errorDetail": {"message"}, "aux"}`.
"""

from __future__ import annotations

from engine.cli.errors import CliError, known_hint
from engine.cli.format import human_size

# typing and collections.abc are for the type checker only: importing typing costs
# every CLI start ~3 ms (issue 17)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, TextIO


def progress_bar(detail: Mapping[str, Any], width: int) -> str:
    """moby JSONProgress.String(): `[=====>     ]  1.2MB/5MB`, the bar only on wide terminals."""
    current = int(detail.get("current") or 0)
    total = int(detail.get("total") or 0)
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return f"{human_size(current):>8}"
    percentage = min(int(current / total * 100) // 2, 50)
    bar = ""
    if width > 110:
        bar = f"[{'=' * percentage}>{' ' * max(50 - percentage, 0)}] "
    numbers = f"{human_size(current):>8}/{human_size(total)}"
    if current > total:
        numbers = ""
    return bar + numbers


def _has_progress(message: Mapping[str, Any]) -> bool:
    detail = message.get("progressDetail") or {}
    return bool(detail.get("current") or detail.get("total") or message.get("progress"))


class ProgressRenderer:
    """Feeds messages one at a time; keeps the terminal line of every layer id it has shown."""

    def __init__(self, out: TextIO, *, tty: bool, width: int = 80, quiet: bool = False) -> None:
        self.out = out
        self.tty = tty
        self.width = width
        self.quiet = quiet
        self.lines: dict[str, int] = {}
        self.aux: list[Any] = []

    def feed(self, message: Mapping[str, Any]) -> None:
        error = message.get("error") or (message.get("errorDetail") or {}).get("message")
        if error:
            # A full disk is not the registry's fault (issue 15 item 6): its own hint first.
            raise CliError(str(error), known_hint(str(error))
                           or "check the image name, the registry and your login")
        if "aux" in message:
            self.aux.append(message["aux"])
        if self.quiet:
            return
        ident = message.get("id", "")
        if not self.tty:
            self._plain(message, ident, _has_progress(message))
            return
        # moby gives a line of its own to any message that carries a progress field, even {}
        if ident and ("progressDetail" in message or "progress" in message or
                      ident in self.lines):
            if ident not in self.lines:
                self.lines[ident] = len(self.lines)
                self.out.write("\n")
            up = len(self.lines) - self.lines[ident]
            self.out.write(f"\x1b[{up}A\r\x1b[2K{self._line(message, ident)}\r\x1b[{up}B")
        else:
            # any message outside the per-layer block ends it (moby clears its id history too)
            self.lines = {}
            text = self._line(message, ident)
            if "stream" in message and not ident:
                self.out.write(message["stream"])
            elif text:
                self.out.write(text + "\n")
        self.out.flush()

    def _plain(self, message: Mapping[str, Any], ident: str, progressing: bool) -> None:
        if progressing:
            return  # moby hides progress bars when the output is not a terminal
        if "stream" in message and not ident:
            self.out.write(message["stream"])
        else:
            text = self._line(message, ident)
            if text:
                self.out.write(text + "\n")

    def _line(self, message: Mapping[str, Any], ident: str) -> str:
        status = message.get("status", "")
        prefix = f"{ident}: " if ident else ""
        detail = message.get("progressDetail") or {}
        bar = progress_bar(detail, self.width) if detail else message.get("progress", "")
        text = f"{status} {bar}".rstrip() if bar else status
        return (prefix + text) if text or prefix else ""
