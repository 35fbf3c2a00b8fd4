"""Our CLI run in-process against a test daemon: one runner for every integration test;
and run as its own process to list the modules a verb imports (start-up cost, layering).

I/O: none of its own in `shipslog` (`engine.cli.main.run` talks to the daemon over its
socket; the environment holds only the daemon's address and a HOME of the test's own, no
user config); `imported_by` starts a Python process.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

from engine.cli.main import run

__all__ = ["imported_by", "shipslog"]

REPO = Path(__file__).resolve().parents[2]
# Run the CLI as the `shipslog` script does, then print every module it imported.
_PROBE = """
import sys
from engine.cli.main import run
code = run(sys.argv[1:])
sys.stdout.flush()
print("MODULES", *sorted(sys.modules), file=sys.stderr)
sys.exit(code)
"""


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


def imported_by(argv: list[str], env: dict[str, str]) -> list[str]:
    """The modules `shipslog ARGV…` imports, run as a process of its own with `env` (plus
    this tree on PYTHONPATH); the command must succeed."""
    p = subprocess.run([sys.executable, "-c", _PROBE, *argv],
                       env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                       timeout=60, cwd=REPO)
    assert p.returncode == 0, p.stderr
    line = next(x for x in p.stderr.splitlines() if x.startswith("MODULES "))
    return line.split()[1:]
