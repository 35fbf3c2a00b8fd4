"""Verbs that read the log as history: `history` (the timeline of a container, image, volume or
network), `state diff A B`, and `replay` (`--to N` rebuilds and compares the projections;
`--explain CONTAINER` re-runs the core's decisions).

I/O: the daemon's `/shipslog/...` API, or the state root with `--root`; writes to
`ctx.stdout`. Docker's image layer history is `shipslog image history IMAGE`.
"""

from __future__ import annotations

import argparse
import json

from engine.cli import format as fmt
from engine.cli import parse
from engine.cli.context import Context
from engine.cli.errors import CliError, ExitStatus, UsageError
from engine.cli.fleet import add_host_flag
from engine.cli.logargs import filter_params, when

# typing and collections.abc are for the type checker only: importing typing costs
# every CLI start ~3 ms (issue 17)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "history", help="Show the timeline of a container, image, volume or network",
        description="Every event of one object from the event log: who asked, which "
        "operation, how long it took from request to outcome, exit codes, restarts and their "
        "reasons, OOM kills. Docker's image layer history is 'shipslog image history IMAGE'.")
    p.add_argument("object", metavar="CONTAINER|IMAGE|VOLUME|NETWORK", nargs="+",
                   help="one object (several with --html: on one time scale; "
                   "project:NAME with --html: every container of a Compose project)")
    p.add_argument("--type", choices=["container", "image", "volume", "network"], default=None,
                   help="which kind of object the name refers to")
    p.add_argument("--format", default="",
                   help="'json' for the whole timeline, or a Go template per event")
    p.add_argument("--no-trunc", action="store_true", help="show full ids")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="only operations (and their events) by actor=NAME|UID, uid=N, "
                   "command=TEXT, outcome=failed|completed|compensated|pending")
    p.add_argument("--changes", action="store_true",
                   help="a container's configuration over time: create options, updates, "
                   "renames, networks, health verdicts, each as old -> new")
    p.add_argument("--html", default=None, metavar="FILE",
                   help="write the timeline as one self-contained HTML page: runs as bars, "
                   "health, operations and their actors, config changes, ps --at on click")
    p.add_argument("--since", default="", help="with --html: draw from this time (Unix "
                   "time, RFC 3339, or a duration such as 2h)")
    p.add_argument("--until", default="", help="with --html: draw up to this time")
    add_host_flag(p)
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("state", help="Compare the engine's state at two points of the log")
    ssub = p.add_subparsers(dest="state_verb", metavar="COMMAND", required=True)
    d = ssub.add_parser("diff", help="List what changed between A and B (seq:N, time, 2h)")
    d.add_argument("a", metavar="A")
    d.add_argument("b", metavar="B", nargs="?", default="")
    d.add_argument("--format", default="")
    d.set_defaults(func=cmd_state_diff)

    p = sub.add_parser("replay", help="Rebuild projections from the log, or explain decisions",
                       description="--to N rebuilds every projection from zero up to event N "
                       "and compares it with the live projections; --explain CONTAINER re-runs "
                       "each decision the core made for the container on the state it saw.")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--to", default=None, metavar="N", help="last event to replay")
    group.add_argument("--explain", default=None, metavar="CONTAINER")
    p.add_argument("--format", default="")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("debug", help="Export the log as a bundle, or load one elsewhere")
    dsub = p.add_subparsers(dest="debug_verb", metavar="COMMAND", required=True)
    e = dsub.add_parser("export", help="Write events 1..N with their envelopes to FILE (no "
                        "secret values: the log never holds them, and those an older log "
                        "recorded in command lines are hidden)")
    e.add_argument("--to", default=None, metavar="N", help="last event (default: the head)")
    e.add_argument("file", metavar="FILE")
    e.set_defaults(func=cmd_debug_export)
    ld = dsub.add_parser("load", help="Rebuild a state root from a bundle; then query it with "
                         "'shipslog --root DIR ...'")
    ld.add_argument("file", metavar="FILE")
    ld.add_argument("root", metavar="DIR", help="a new directory for the state root")
    ld.set_defaults(func=cmd_debug_load)


def span(ns: int | None) -> str:
    if ns is None:
        return "-"
    if ns < 1_000_000:
        return "<1ms"
    if ns < 999_500_000:
        return f"{ns / 1_000_000:.0f}ms"
    return f"{ns / 1e9:.1f}s" if ns < 120e9 else fmt.human_duration(ns / 1e9)


def actor_text(actor: dict[str, Any]) -> str:
    from projections.history import command_line

    if actor.get("via") == "daemon":
        return "daemon"
    text = f"uid={actor.get('uid')}"
    if actor.get("pid"):
        text += f" pid={actor['pid']}"
    command = command_line(tuple(actor.get("command") or ()))
    if command:
        text += f" ({fmt.ellipsis(command, 28)})"
    return text


def cmd_history(ctx: Context, args: argparse.Namespace) -> int:
    project = _project_of(args)
    if project is not None:
        if not args.html:
            raise UsageError(f"a Compose project is drawn only with --html FILE; its "
                             f"commands as text: 'shipslog compose history {project}'",
                             "history")
        return project_html(ctx, project, args.html, args.since, args.until)
    if args.html:
        return _html(ctx, args)
    if len(args.object) > 1 or args.since or args.until:
        raise UsageError("several objects, --since and --until only with --html FILE",
                         "history")
    args.object = args.object[0]

    if args.changes:
        return _config_changes(ctx, args)
    params = {"kind": args.type} if args.type else {}
    params.update(filter_params(args.filter, "history"))
    tl = ctx.read("history", f"/shipslog/history/{args.object}", params or None)
    if args.format == "json":
        ctx.out(json.dumps(tl))
        return 0
    entries = tl.get("entries") or []
    if args.format:
        rows = [{**e, "Time": when(e["time_ns"]), "Actor": actor_text(e["actor"])}
                for e in entries]
        ctx.stdout.write(fmt.render_list(args.format, rows, "", {}))
        return 0
    ident = tl["id"] if args.no_trunc else fmt.truncate_id(tl["id"])
    name = tl.get("name") or ""
    title = f"{tl['kind']} {name} {ident}" if name and name != tl["id"] else f"{tl['kind']} {ident}"
    status = " (removed)" if tl.get("removed") else ""
    host = tl.get("host")  # a fleet query (--store): which host's log
    ctx.out(f"{title}{status}{f' on host {host}' if host else ''}: {len(entries)} events, "
            f"{len(tl.get('ops') or [])} "
            f"operations, {len(tl.get('runs') or [])} runs, {tl.get('restarts', 0)} restarts, "
            f"{tl.get('oom_kills', 0)} OOM kills")
    lines = [("HOST\t" if host else "") + "TIME\tSEQ\tACTOR\tOP\tEVENT"]
    for e in entries:
        op = e["op_id"] if args.no_trunc else e["op_id"][:12]
        lines.append(f"{host + chr(9) if host else ''}{when(e['time_ns'])}\t{e['seq']}\t"
                     f"{actor_text(e['actor'])}\t{op}\t{e['summary']}")
    ctx.stdout.write(fmt.tabulate(lines))
    ops = tl.get("ops") or []
    if ops:
        ctx.out("")
        lines = ["OPERATION\tREQUESTED\tBY\tOUTCOME\tTOOK\tSTEPS"]
        for o in ops:
            outcome = o["outcome"] + (f": {o['error']}" if o.get("error") else "")
            lines.append(f"{o['kind']}\t{when(o['requested_at'])}\t{actor_text(o['actor'])}\t"
                         f"{outcome}\t{span(o.get('duration_ns'))}\t"
                         f"{','.join(o.get('steps') or []) or '-'}")
        ctx.stdout.write(fmt.tabulate(lines))
    runs = tl.get("runs") or []
    if runs:
        ctx.out("")
        lines = ["RUN\tSTARTED\tCAUSE\tENDED\tEXIT\tRAN"]
        for r in runs:
            code = "-" if r.get("exit_code") is None else str(r["exit_code"])
            if r.get("oom_killed"):
                code += " (OOM)"
            if r.get("signal"):
                code += f" ({r['signal']})"
            ended = r.get("ended_by", "")
            lines.append(f"{r['number']}\t{when(r['started_at'])}\t{r.get('cause', '')}\t"
                         f"{ended}\t{code}\t{span(r.get('duration_ns'))}")
        ctx.stdout.write(fmt.tabulate(lines))
    return 0


def _html(ctx: Context, args: argparse.Namespace) -> int:
    import os

    from engine.drivers.host.users import name_of
    from projections.htmltimeline import render_many

    params = {"kind": args.type} if args.type else None
    items = []
    for ref in args.object:
        tl = ctx.read("history", f"/shipslog/history/{ref}", params)
        changes: list[Any] = []
        if tl["kind"] == "container":
            changes = ctx.read("history", f"/shipslog/history/{tl['id']}",
                               {"changes": "1"}).get("changes") or []
        items.append((tl, changes))
    uids = {int(e["actor"].get("uid", 0)) for tl, _ in items for e in tl.get("entries") or []}
    names = {uid: name for uid in uids if (name := name_of(uid))}
    window = tuple(_ns(ctx, flag, getattr(args, flag)) for flag in ("since", "until"))
    page = render_many(items, names, int(ctx.clock() * 1e9), window)  # type: ignore[arg-type]
    tmp = args.html + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(page)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, args.html)
    shown = ", ".join(f"{tl['kind']} {tl.get('name') or tl['id'][:12]} "
                      f"({len(tl.get('runs') or [])} runs, {len(tl.get('ops') or [])} "
                      "operations)" for tl, _ in items)
    ctx.err(f"wrote the timeline of {shown} to {args.html}")
    return 0


def _project_of(args: argparse.Namespace) -> str | None:
    """`project:NAME` names a Compose project (issue 18). No container or volume name holds a
    colon; an image reference may (`project:v1`), so `--type image` reads it as one."""
    if args.type is not None or not any(o.startswith("project:") for o in args.object):
        return None
    if len(args.object) > 1 or not args.object[0].removeprefix("project:"):
        raise UsageError("give one project:NAME and no other object", "history")
    return str(args.object[0].removeprefix("project:"))


def project_html(ctx: Context, project: str, path: str, since: str = "",
                 until: str = "") -> int:
    """`history project:NAME --html FILE` and `compose history NAME --html FILE`: every
    container the project ever had, one row each, and its Compose commands as marks."""
    from urllib.parse import quote

    from engine.cli.client import ApiError
    from projections.htmlproject import render_project

    base = f"/shipslog/compose/{quote(project, safe='')}"
    try:
        rows = ctx.read("history", base + "/history")
    except ApiError as exc:
        if exc.status != 404:
            raise
        raise CliError(exc.message, "a project is named by Compose's -p or its directory; "
                       "'shipslog ps -a --filter project=NAME' lists its containers") from None
    members = ctx.read("history", base + "/containers")
    timelines = [ctx.read("history", f"/shipslog/history/{m['id']}", {"kind": "container"})
                 for m in members]
    window = (_ns(ctx, "since", since), _ns(ctx, "until", until))
    page = render_project(project, rows, members, timelines, _user_names(timelines, rows),
                          int(ctx.clock() * 1e9), window)
    _write(path, page)
    runs = sum(len(tl.get("runs") or []) for tl in timelines)
    ctx.err(f"wrote the timeline of Compose project {project} ({len(members)} containers, "
            f"{runs} runs, {len(rows)} Compose commands) to {path}")
    return 0


def _user_names(timelines: list[Any], rows: list[Any]) -> dict[int, str]:
    from engine.drivers.host.users import name_of

    uids = {int(e["actor"].get("uid", 0)) for tl in timelines for e in tl.get("entries") or []}
    uids |= {int(r["actor"].get("uid", 0)) for r in rows}
    return {uid: name for uid in uids if (name := name_of(uid))}


def _write(path: str, page: str) -> None:
    import os

    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(page)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _ns(ctx: Context, flag: str, value: str) -> int | None:
    if not value:
        return None
    try:
        secs, _, frac = parse.parse_timestamp(value, ctx.clock()).partition(".")
    except ValueError as exc:
        raise UsageError(f"invalid value for --{flag}: {exc}", "history") from None
    return int(secs) * 1_000_000_000 + int((frac + "000000000")[:9])


def _config_changes(ctx: Context, args: argparse.Namespace) -> int:
    answer = ctx.read("history", f"/shipslog/history/{args.object}", {"changes": "1"})
    if args.format == "json":
        ctx.out(json.dumps(answer))
        return 0
    changes = answer.get("changes") or []
    ident = answer["id"] if args.no_trunc else fmt.truncate_id(answer["id"])
    ctx.out(f"container {answer.get('name') or ''} {ident}: {len(changes)} configuration "
            "changes")
    lines = ["TIME\tSEQ\tBY\tCHANGE\tFIELD\tOLD\tNEW"]
    for ch in changes:
        head = f"{when(ch['time_ns'])}\t{ch['seq']}\t{actor_text(ch['actor'])}\t{ch['what']}"
        for i, (field, old, new) in enumerate(ch.get("fields") or [("", None, None)]):
            lead = head if i == 0 else "\t\t\t"
            lines.append(f"{lead}\t{field}\t{_value(field, old)}\t{_value(field, new)}")
    ctx.stdout.write(fmt.tabulate(lines))
    return 0


def cmd_state_diff(ctx: Context, args: argparse.Namespace) -> int:
    from projections.statediff import leaves, summary

    params = {"a": args.a, **({"b": args.b} if args.b else {})}
    answer = ctx.read("state", "/shipslog/state/diff", params)
    changes = answer.get("changes") or []
    if args.format == "json":
        # Field-level: one {field, old, new} per leaf that differs (issue 18).
        shown = [{**ch, "fields": [{"field": f, "old": old, "new": new}
                                   for f, old, new in leaves(ch.get("fields") or {})]}
                 for ch in changes]
        ctx.out(json.dumps({**answer, "changes": shown}))
        return 0
    ctx.out(f"from {_moment(answer['a'], answer.get('a_time_ns'))} to "
            f"{_moment(answer['b'], answer.get('b_time_ns'))}: {summary(changes)}")
    if not changes:
        return 0
    word = {"added": "appeared", "removed": "vanished", "changed": "changed"}
    lines = ["CHANGE\tKIND\tNAME\tID\tFIELD\tOLD\tNEW"]
    for ch in changes:
        ident = fmt.truncate_id(ch["id"].removeprefix("sha256:")) if len(ch["id"]) > 20 \
            else ch["id"]
        name = ch.get("name") or "-"
        head = f"{word[ch['change']]}\t{ch['kind']}\t{name}\t{ident}"
        diffs = leaves(ch.get("fields") or {})
        if not diffs:
            lines.append(f"{head}\t\t\t")
        for i, (field, old, new) in enumerate(diffs):
            lead = head if i == 0 else "\t\t\t"
            lines.append(f"{lead}\t{_path(field)}\t{_value(field, old)}\t"
                         f"{_value(field, new)}")
    ctx.stdout.write(fmt.tabulate(lines))
    return 0


def _path(field: str) -> str:
    """Ids inside a field path as `ps` shows ids: 12 characters."""
    return ".".join(p[:12] if len(p) == 64 and all(c in "0123456789abcdef" for c in p) else p
                    for p in field.split("."))


def _moment(seq: int, time_ns: int | None) -> str:
    return f"seq {seq}" + (f" ({when(time_ns)})" if time_ns else "")


def _value(field: str, value: Any) -> str:
    """A leaf as a person reads it: times as times (`*_at` fields are Unix nanoseconds)."""
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    last = field.rsplit(".", 1)[-1]
    if last.endswith("_at") and isinstance(value, int) and not isinstance(value, bool):
        return when(value) if value > 0 else "-"
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return fmt.ellipsis(text, 60)


def _brief(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return fmt.ellipsis(text, 80)


def cmd_replay(ctx: Context, args: argparse.Namespace) -> int:
    if args.explain:
        return _explain(ctx, args)
    params: dict[str, Any] = {}
    if args.to is not None:
        to = args.to.removeprefix("seq:")
        if not to.isdigit():
            raise CliError(f"invalid --to {args.to!r}", "give an event number: --to 1200")
        params["to"] = int(to)
    report = ctx.read("replay", "/shipslog/replay", params)
    if args.format == "json":
        ctx.out(json.dumps(report))
    else:
        rows = ", ".join(f"{n} {t}" for t, n in sorted(report["rows"].items()))
        against = "the rebuild path and the live projections" if report[
            "compared_with_live"] else "the rebuild path (live tables hold the head only)"
        if report.get("snapshot_seq"):
            against += f", and the snapshot at seq {report['snapshot_seq']}"
        ctx.out(f"replayed events 1..{report['to_seq']} of {report['head']} "
                f"({report['events']} events): {rows}")
        ctx.out(f"compared with {against}: "
                + ("no differences" if report["ok"] else
                   f"{len(report['mismatches'])} differences"))
        for m in report["mismatches"]:
            ctx.out(f"  {m['table']} {m['key']}: replay != {m['against']}")
            ctx.out(f"    replay: {_brief(m['replay'])}")
            ctx.out(f"    {m['against']}: {_brief(m['other'])}")
    if not report["ok"]:
        raise ExitStatus(1)
    return 0


def _explain(ctx: Context, args: argparse.Namespace) -> int:
    answer = ctx.read("replay", f"/shipslog/replay/explain/{args.explain}")
    if args.format == "json":
        ctx.out(json.dumps(answer))
        return 0
    steps = answer.get("steps") or []
    failed = 0
    ctx.out(f"container {fmt.truncate_id(answer['id'])}: {len(steps)} decisions")
    for s in steps:
        saw = s["saw"]
        seen = (f"status={saw.get('status')} version={saw.get('stream_version')}"
                if saw.get("exists") else "no such container yet")
        ctx.out(f"seq {s['seq']} {s['kind']} by {'daemon' if s['via'] == 'daemon' else 'uid ' + str(s['actor_uid'])} "  # noqa: E501
                f"(op {s['op_id'][:12]})")
        ctx.out(f"  saw:      {seen}")
        if s["call"]:
            ctx.out(f"  re-ran:   {s['call']}")
        for e in s["decided"]:
            ctx.out(f"  decided:  {e['stream'][:24]} {e['event'].get('type', '')}")
        if s["planned"]:
            ctx.out(f"  planned:  {', '.join(s['planned'])}")
        ctx.out(f"  recorded: steps {', '.join(s['steps_done']) or '-'}; outcome {s['outcome']}")
        verdict = {True: "reproduced exactly", False: "NOT reproduced",
                   None: "not a core decision"}[s["reproduced"]]
        ctx.out(f"  result:   {verdict}" + (f" — {s['note']}" if s.get("note") else ""))
        failed += s["reproduced"] is False
    if failed:
        raise ExitStatus(1)
    return 0


AT_HELP = "answer as of a point in the log: seq:N, Unix time, RFC 3339 or a duration (2h ago)"


def at_read(ctx: Context, verb: str, path: str, params: dict[str, Any] | None,
            at: str | None) -> tuple[Any, float]:
    """`ctx.read`, or the same GET asked at a point in time; also the clock to render with
    (the point's own time, so "Up 2 minutes" reads as it did then)."""
    if not at:
        return ctx.read(verb, path, params), ctx.clock()
    point = at_point(ctx, at, verb)
    answer = ctx.read(verb, "/shipslog/at" + path, {**(params or {}), "at": point})
    return answer, point_time(ctx, point)


def at_point(ctx: Context, at: str, verb: str) -> str:
    if at.startswith("seq:"):
        if not at[4:].isdigit():
            raise UsageError(f"invalid value for --at: {at!r}: want seq:N", verb)
        return at
    try:
        return parse.parse_timestamp(at, ctx.clock())
    except ValueError as exc:
        raise UsageError(f"invalid value for --at: {exc}", verb) from None


def point_time(ctx: Context, point: str) -> float:
    if not point.startswith("seq:"):
        return float(point)
    seq = int(point[4:])
    if seq <= 0:
        return ctx.clock()
    source = ctx.local if ctx.local is not None else ctx.client
    with source.stream_json("GET", "/shipslog/events",
                            {"since": f"seq:{seq}", "until": f"seq:{seq}"}) as events:
        for e in events:
            return int(e["timeNano"]) / 1e9
    return ctx.clock()


def cmd_debug_export(ctx: Context, args: argparse.Namespace) -> int:
    import os

    from engine.shell.replay import BUNDLE_FORMAT

    source = ctx.local if ctx.local is not None else ctx.client
    head = ctx.read("debug", "/shipslog/audit/head")
    to = head["seq"] if args.to is None else int(args.to.removeprefix("seq:"))
    params = {"since": "seq:1", "until": f"seq:{to}"}
    tmp = args.file + ".tmp"
    count = 0
    with open(tmp, "wb") as fh:
        header = {"format": BUNDLE_FORMAT, "to": to, "first_hash": head["first_hash"],
                  "exported_ns": int(ctx.clock() * 1e9)}
        fh.write(json.dumps(header).encode() + b"\n")
        with source.stream("GET", "/shipslog/events", params) as chunks:
            for chunk in chunks:
                count += chunk.count(b"\n")
                fh.write(chunk)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, args.file)
    ctx.err(f"exported events 1..{to} ({count} events) to {args.file}")
    return 0


def cmd_debug_load(ctx: Context, args: argparse.Namespace) -> int:
    import os

    from engine.shell.replay import load_bundle

    if os.path.exists(os.path.join(args.root, "events.db")):
        raise CliError(f"{args.root} already has an event log", "load into a new directory")
    os.makedirs(args.root, mode=0o700, exist_ok=True)
    with open(args.file, "rb") as fh:
        report = load_bundle(iter(fh), os.path.join(args.root, "events.db"))
    redacted = report.first_redacted
    same = "the same hash chain"
    if not report.identical and redacted is not None and report.bad_link is None and \
            (report.first_difference or 0) >= redacted:
        # Not tampering: the export hid a secret the log recorded before issue 15.
        ctx.err(f"warning: event {redacted} was recorded with a secret in its command line, "
                "hidden by the export; from there on the hashes are the new log's own")
        same = f"the same hash chain up to event {report.first_difference - 1}" \
            if report.first_difference else same
    elif not report.identical:
        bad = report.first_difference if report.bad_link is None or \
            (report.first_difference or 0) < (redacted or 0) else report.bad_link
        raise CliError(f"loaded {report.events} events, but event {bad} "
                       "hashes differently than in the bundle",
                       "the bundle was altered, or written by another schema version", 1)
    ctx.out(f"loaded {report.events} events into {args.root}: {same}, head "
            f"{report.head_hash[:16]}…; query it with 'shipslog --root {args.root} ...'")
    return 0
