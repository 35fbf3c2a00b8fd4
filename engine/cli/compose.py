"""`shipslog compose …`: Docker Compose v2 against our own socket, and `compose history PROJECT`,
a project's life read from the event log (issue 14).

I/O: runs the pinned Compose v2 binary (engine/cli/compose_binary.py) on our terminal with
DOCKER_HOST
set to the daemon's socket; `history` reads `/shipslog/compose/PROJECT/history` from the
daemon (or the state root with --root) and writes to `ctx.stdout`.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from engine.cli.compose_binary import run_compose
from engine.cli.context import Context
from engine.cli.errors import ExitStatus, UsageError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "compose", help="Run Docker Compose against shipslog; 'compose history PROJECT'",
        description="Every Compose verb (up, down, ps, logs, exec, run, …) runs the Docker "
        "Compose v2 binary installed with shipslog against this daemon. 'shipslog compose "
        "history PROJECT' tells a project's life from the event log: each up, down, scale "
        "and recreate, who ran it, and what it did to each service and why; with --html FILE, "
        "as a page with a row per container.",
        add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_compose)


def cmd_compose(ctx: Context, args: argparse.Namespace) -> int:
    argv: list[str] = list(args.args)
    if argv[:1] == ["history"]:
        return cmd_history(ctx, argv[1:])
    code = run_compose(argv, host=ctx.client.host, environ=ctx.environ)
    if code:
        raise ExitStatus(code)
    return 0


def cmd_history(ctx: Context, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="shipslog compose history", add_help=False)
    p.add_argument("project")
    p.add_argument("--format", default="")
    p.add_argument("--html", default=None)
    try:
        opts = p.parse_args(argv)
    except SystemExit:
        raise UsageError("give one PROJECT (and --format json or --html FILE)",
                         "compose history") from None
    if opts.html:
        from engine.cli.timeline import project_html

        return project_html(ctx, opts.project, opts.html)
    rows = ctx.read("compose", f"/shipslog/compose/{opts.project}/history")
    if opts.format == "json":
        ctx.out(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        ctx.out(_entry_line(row))
        for s in row["services"]:
            ids = " → ".join(c[:12] for c in s["containers"])
            why = f"  ({s['reason']})" if s["reason"] else ""
            ctx.out(f"    {s['service']:<12} {s['action']:<10} {ids}{why}")
    return 0


def _entry_line(row: dict[str, Any]) -> str:
    when = datetime.fromtimestamp(row["started_at"] / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
    actor = row["actor"]
    cmd = " ".join(actor["command"]) if actor["command"] else f"pid {actor['pid']}"
    return (f"{when}  {row['kind']:<8} seq {row['first_seq']}-{row['last_seq']}  "
            f"uid {actor['uid']}: {cmd}")
