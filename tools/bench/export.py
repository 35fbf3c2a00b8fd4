"""Benchmark `audit export --sqlite` (issue 18) over a 1,000,000-event log: the time it
takes, the size of the database it writes against the log's own, and the README's
`sqlite-utils` queries run on it (each timed; each must answer).

I/O: builds a SQLite event log in a temporary directory (removed at the end) with
`tools/bench/events.py`'s builder; runs `shipslog --root DIR audit export --sqlite FILE` in
this process (the CLI's own code); runs the `sqlite-utils` command on the result; prints a
table, and as its LAST line one JSON object with the numbers.

    python3 -m tools.bench.export             # 1,000,000 events, 10,000 containers
    python3 -m tools.bench.export --quick     # 100,000 events
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from engine.cli.main import run
from tools.bench.common import fmt_s, format_table, json_line
from tools.bench.events import build_log

# The queries the README shows (sqlite-utils CLI).
QUERIES = {
    "tables --counts": ["tables", "--counts"],
    "search events 'exited'": ["search", "events", "exited", "--limit", "5"],
    "operations by outcome": ["query", "select outcome, count(*) n from operations group by 1"],
    "who did what": ["query", "select actor_uid, kind, count(*) n from operations "
                     "group by 1, 2 order by n desc limit 5"],
    "one container's exits": ["query", "select seq, time, exit_code from container_events "
                              "where type = 'ContainerExited' and object_id = (select "
                              "object_id from container_events limit 1)"],
}


def sqlite_utils_cmd() -> list[str]:
    found = shutil.which("sqlite-utils", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "sqlite_utils"]


def measure(root: Path, out: Path) -> dict[str, Any]:
    err = io.StringIO()
    t = time.perf_counter()
    code = run(["--root", str(root), "audit", "export", "--sqlite", str(out)],
               stdout=io.StringIO(), stderr=err)
    took = time.perf_counter() - t
    assert code == 0, err.getvalue()
    result: dict[str, Any] = {"export_s": took, "export_bytes": out.stat().st_size,
                              "log_bytes": (root / "events.db").stat().st_size}
    for name, argv in QUERIES.items():
        t = time.perf_counter()
        p = subprocess.run([*sqlite_utils_cmd(), *argv[:1], str(out), *argv[1:]],
                           capture_output=True, text=True, check=False)
        assert p.returncode == 0 and p.stdout.strip() not in ("", "[]"), (name, p.stderr)
        result[f"query_{name}_s"] = time.perf_counter() - t
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 events")
    parser.add_argument("--events", type=int, default=None)
    args = parser.parse_args(argv)
    total = args.events or (100_000 if args.quick else 1_000_000)
    containers = 10_000
    with tempfile.TemporaryDirectory(prefix="shipslog-bench-export-") as tmp:
        root = Path(tmp)
        print(f"building a {total:,}-event log with {containers:,} containers…", file=sys.stderr)
        build_log(root / "events.db", total, containers)
        out = measure(root, root / "audit.db")
    out["events"] = total
    rows = [("audit export --sqlite", f"{fmt_s(out['export_s'])} "
             f"({total / out['export_s']:,.0f} events/s)"),
            ("database written", f"{out['export_bytes'] / 2**20:,.0f} MiB "
             f"(the log: {out['log_bytes'] / 2**20:,.0f} MiB)")]
    rows += [(f"sqlite-utils {name}", fmt_s(out[f"query_{name}_s"])) for name in QUERIES]
    print(f"shipslog audit export over {total:,} events, {containers:,} containers")
    print(format_table(["measure", "result"], rows))
    print(json_line(out))


if __name__ == "__main__":
    main()
