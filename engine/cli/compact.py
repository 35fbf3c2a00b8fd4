"""`shipslog system compact --before TIME`: move the events of objects removed before TIME to
an archive file under `<root>/archive/` (engine/shell/compaction.py), leaving a `ChainCompacted`
event in the live log. `audit verify` keeps checking the archived events against the chain.

I/O: the daemon's `POST /shipslog/system/compact`; with `--root DIR`, the state root directly,
only while no daemon holds it (its flock on `DIR/engine.lock`, taken here too for the
duration); writes to `ctx.stdout`.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import time
from typing import Any

from engine.cli import format as fmt
from engine.cli.context import Context
from engine.cli.errors import CliError
from engine.cli.logargs import point_arg


def register(sub: Any) -> None:
    p = sub.add_parser(
        "compact", help="Archive the events of objects removed before a time",
        description="Move the events of containers and networks removed before TIME (and of "
        "the finished operations on them) to an archive file under <root>/archive/, leaving a "
        "ChainCompacted event that records the archive's sha256. `audit verify` re-checks "
        "archived events against the chain; `events` shows live events only.")
    p.add_argument("--before", required=True, metavar="TIME",
                   help="Unix time, RFC 3339, a duration such as 720h (that long ago), or seq:N")
    p.add_argument("--format", default="", help="json, or a Go template")
    p.set_defaults(func=cmd_compact)


def cmd_compact(ctx: Context, args: argparse.Namespace) -> int:
    before = point_arg(args.before, ctx.clock(), "before", "system")
    if ctx.local is not None:
        report = compact_offline(ctx.local.root, before)
    else:
        report = ctx.client.post_json("/shipslog/system/compact", {"before": before})
    if args.format == "json":
        ctx.out(json.dumps(report))
        return 0
    if args.format:
        ctx.stdout.write(fmt.render_list(args.format, [report], "", {}))
        return 0
    if not report["Count"]:
        ctx.out("nothing to compact: no removed object's events are older than that")
        return 0
    lines = ["ARCHIVED\tSTREAMS\tSEQS\tBYTES FREED\tLIVE EVENTS\tARCHIVE",
             f"{report['Count']}\t{report['Streams']}\t{report['FirstSeq']}..{report['LastSeq']}"
             f"\t{fmt.human_size(report['BytesFreed'])}\t{report['LiveEvents']}"
             f"\t{report['Archive']}"]
    ctx.stdout.write(fmt.tabulate(lines))
    return 0


def compact_offline(root: str, before: str) -> dict[str, Any]:
    """Compact a state root no daemon is running on (the flock proves it)."""
    from engine.core.errors import ShipslogError
    from engine.shell.compaction import before_ns_of, compact, live_events, report_json
    from events.envelope import Actor
    from events.store import EventStore, StoreError
    from projections.engine import EngineProjection

    database = os.path.join(root, "events.db")
    if not os.path.exists(database):
        raise CliError(f"no event database at {database}",
                       "pass the directory that holds events.db, e.g. --root /var/lib/shipslog")
    lock = os.path.join(root, "engine.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise CliError(f"a daemon holds {lock} (pid {holder}): --root cannot write while "
                           "it runs", "run 'shipslog system compact' without --root: the "
                           "daemon compacts its own log") from None
        try:
            store: EventStore[Any] = EventStore.open(database, projection=EngineProjection())
        except StoreError as exc:
            raise CliError(exc.message, exc.hint) from None
        try:
            now = time.time_ns()
            try:
                before_ns = before_ns_of(store, before, now)
            except ShipslogError as exc:
                raise CliError(exc.message, exc.hint) from None
            actor = Actor(uid=os.getuid(), gid=os.getgid(), pid=os.getpid(), via="cli")
            report, _ = compact(store, root, before_ns=before_ns, actor=actor, now_ns=now)
            return report_json(report, live_events(store))
        finally:
            store.close()
    finally:
        os.close(fd)
