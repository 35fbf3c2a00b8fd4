"""Our CLI run in-process against a test daemon: one runner for every integration test.

I/O: none of its own; `engine.cli.main.run` talks to the daemon over its socket. The
environment holds only the daemon's address and a HOME of the test's own (no user config).
"""

from __future__ import annotations

import io
from typing import Any

from engine.cli.main import run

__all__ = ["shipslog"]


def shipslog(daemon: Any, *argv: str, stdin: bytes = b"", env: dict[str, str] | None = None,
             ok: bool = False) -> tuple[int, str, str]:
    """`shipslog ARGV…` against `daemon` (anything with `.host` and `.base`): the exit code,
    stdout and stderr. `ok=True` fails the test on a non-zero exit, with the CLI's error."""
    out, err = io.StringIO(), io.StringIO()
    environ = {"SHIPSLOG_HOST": daemon.host, "HOME": str(daemon.base), **(env or {})}
    code = run(list(argv), environ=environ, stdout=out, stderr=err, stdin=io.BytesIO(stdin))
    if ok:
        assert code == 0, f"shipslog {' '.join(argv)} -> {code}: {err.getvalue()}"
    return code, out.getvalue(), err.getvalue()
