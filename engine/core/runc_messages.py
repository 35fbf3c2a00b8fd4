"""What runc said, as a person reads it: the message of its last log line.

I/O: none. runc logs through logrus: `time=… level=error msg="…"` on a pipe (our create runs
it under conmon, which hands the line back), `ERRO[0000] …` with colours on a terminal (an
exec with a tty). Docker shows only the message, inside its own words (`OCI runtime create
failed: …`); so do the create and exec paths (drivers/runtime/monitor.py,
api/routes/streams.py).
"""

from __future__ import annotations

__all__ = ["runc_message"]


def runc_message(stderr: str) -> str:
    """The message of runc's last log line; else the line itself."""
    lines = [ln for ln in _strip_colours(stderr).splitlines() if ln.strip()]
    line = lines[-1].strip() if lines else stderr
    _, found, rest = line.partition('msg="')
    if found:
        return rest.rsplit('"', 1)[0].replace('\\"', '"')
    level, bracket, rest = line.partition("[")
    if bracket and level.isupper() and len(level) == 4 and "] " in rest:
        return rest.split("] ", 1)[1]  # `ERRO[0000] …`
    return line


def _strip_colours(text: str) -> str:
    """Without ANSI colour sequences (ESC [ … m) and carriage returns."""
    out, i = [], 0
    while (j := text.find("\x1b[", i)) >= 0:
        out.append(text[i:j])
        end = text.find("m", j)
        i = len(text) if end < 0 else end + 1
    out.append(text[i:])
    return "".join(out).replace("\r", "")
