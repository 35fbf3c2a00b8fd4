"""System verbs: `version`, `info`, `events`, and `system check [--repair]`.

I/O: the daemon's API (`/version`, `/info`, the `/events` stream, `/shipslog/system/check`);
writes to `ctx.stdout`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from engine.cli import format as fmt
from engine.cli import parse
from engine.cli.client import ApiError, DaemonUnreachable
from engine.cli.context import Context
from engine.cli.errors import CliError, UsageError, translate
from engine.cli.fleet import add_host_flag

# typing and collections.abc are for the type checker only: importing typing costs
# every CLI start ~3 ms (issue 17)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

CLIENT_VERSION = "0.1.0"
API_VERSION = "1.43"


def register(sub: Any) -> None:
    p = sub.add_parser("version", help="Show the shipslog version information")
    p.add_argument("-f", "--format", default="")
    p.set_defaults(func=cmd_version)

    p = sub.add_parser("info", help="Display system-wide information")
    p.add_argument("-f", "--format", default="")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "events", help="Get events from the server: Docker's stream, or the whole log (--all)",
        description="Without --all: Docker's event stream (follows until --until). With --all "
        "or --format json: every event of the log with its envelope (seq, stream, actor, op id, "
        "hash), history up to now, and live events too with --follow. Events that "
        "`system compact` moved out of the live log are in <root>/archive/ (and `history`).")
    p.add_argument("--since", default="",
                   help="Unix time, RFC 3339, a duration such as 2h, or seq:N")
    p.add_argument("--until", default="", help="as --since")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="Docker's filters, and who acted: actor=NAME|UID, uid=N, "
                   "command=TEXT, outcome=failed|completed|compensated|pending (these read "
                   "the full stream, as --all)")
    p.add_argument("--format", default="")
    p.add_argument("-a", "--all", action="store_true",
                   help="shipslog's full stream: every event type, actor, op id, seq, hash")
    p.add_argument("--follow", action="store_true", help="with --all: keep printing live events")
    p.add_argument("-n", "--limit", type=int, default=None, help="with --all: at most N events")
    p.add_argument("--to", default="", choices=["", "syslog"],
                   help="'syslog': send shipslog's full stream to syslog, each event with its "
                   "seq and hash (and the one before) for the receiver to check the chain")
    p.add_argument("--syslog-address", default="unix:///dev/log",
                   help="with --to syslog: unix:///PATH or udp://HOST:PORT")
    add_host_flag(p)
    p.set_defaults(func=cmd_events)


def register_check(sub: Any) -> None:
    """`system check [--repair]` (only under `system`: `shipslog check` is no verb)."""
    p = sub.add_parser(
        "check", help="Check the state root for damaged or missing blobs, layers and bundles",
        description="Verify every blob's and layer's digest, find missing layer directories "
        "and container bundles, run SQLite's integrity check, and list operations whose "
        "rollback failed. With --repair, move damaged objects into <root>/quarantine/ (and "
        "record each move in the log); then `rmi -f` / `rm -f` remove the objects.")
    p.add_argument("-r", "--repair", action="store_true",
                   help="quarantine damaged objects")
    p.add_argument("--restore", action="store_true",
                   help="move quarantined objects back where they came from, then check")
    p.add_argument("--exec-root", default="/run/shipslog",
                   help="with --root (the daemon stopped): the daemon's runtime directory")
    p.set_defaults(func=cmd_check)


def register_reset(sub: Any) -> None:
    """`system reset`: podman's verb; local, with the daemon stopped."""
    p = sub.add_parser(
        "reset", help="Remove all containers, images, volumes, networks and the log of a root",
        description="With the daemon stopped: stop every container of the state root, take "
        "down its mounts, namespaces, bridges, nft rules and cgroups, and remove everything "
        "under the state root and the exec root. The way out when the event log is too "
        "damaged to start on. Asks for confirmation unless --force.")
    p.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    # Where the README puts it (`system reset --root DIR`) as well as before the verb; no
    # default of its own, so that it never hides a global `--root DIR system reset`.
    p.add_argument("--root", default=argparse.SUPPRESS,
                   help="the state root to reset (the same as the global --root)")
    p.add_argument("--exec-root", default="/run/shipslog",
                   help="the daemon's runtime directory")
    p.set_defaults(func=cmd_reset)


def cmd_reset(ctx: Context, args: argparse.Namespace) -> int:
    from engine.admin.reset import reset
    from engine.shell.paths import Paths

    local = getattr(ctx, "local", None)
    root = local.root if local is not None else "/var/lib/shipslog"
    paths = Paths.of(root, args.exec_root)
    if not args.force:
        ctx.err(f"WARNING! This removes every container, image, volume and network of "
                f"{paths.root} and {paths.exec_root}, and the event log.")
        ctx.err("Are you sure you want to continue? [y/N] ", end="")
        answer = ctx.stdin.readline() if ctx.stdin is not None else b""
        if (answer.decode() if isinstance(answer, bytes) else answer).strip().lower() \
                not in ("y", "yes"):
            raise CliError("reset cancelled", "pass --force to reset without asking")
    for warning in reset(paths):
        ctx.err(f"warning: {warning}")
    ctx.out(f"reset {paths.root}")
    return 0


def _offline_check(root: str, exec_root: str) -> dict[str, Any]:
    from engine.admin.check import check_offline, finding_json
    from engine.shell.paths import Paths

    report = check_offline(Paths.of(root, exec_root))
    return {"Findings": [finding_json(f) for f in report.findings],
            "NeedsCleanup": report.needs_cleanup, "Integrity": report.integrity}


def cmd_check(ctx: Context, args: argparse.Namespace) -> int:
    """Exit 0 when nothing is wrong (or everything found was repaired or is only missing),
    1 when damage remains, as podman's `system check` does. With `--root` the daemon is
    stopped (or cannot start): the state root is checked directly, without repairs."""
    local = getattr(ctx, "local", None)
    if local is not None:
        if args.repair or args.restore:
            verb = "repair" if args.repair else "restore"
            raise CliError(f"--{verb} needs the daemon (each {verb} is recorded in the log)",
                           f"start shipslogd, then run `shipslog system check --{verb}`")
        local.check()
        report = _offline_check(local.root, args.exec_root)
    else:
        params = {k: 1 for k in ("repair", "restore") if getattr(args, k)}
        report = ctx.client.post_json("/shipslog/system/check", params or None)
    for r in report.get("Restored") or []:
        ctx.out(f"{r['Kind']} {r['Subject']}: not restored: {r['Problem']}" if r["Problem"]
                else f"{r['Kind']} {r['Subject']}: restored to {r['Path']}")
    findings = report.get("Findings") or []
    for f in findings:
        action = f" ({f['Action']})" if f.get("Action") else ""
        ctx.out(f["Problem"] if f.get("Uncertain")
                else f"{f['Kind']} {f['Subject']}: {f['Problem']}{action}")
    for op in report.get("NeedsCleanup") or []:
        ctx.out(f"operation {op['OpId'][:12]} ({op['Kind']} {op['Target']}) needs cleanup: "
                f"{op['Error']}")
    for line in report.get("Waiting") or []:
        ctx.out(line)
    if not findings and not report.get("NeedsCleanup") and not report.get("Waiting"):
        ctx.out("no damage found")
        return 0
    unrepaired = [f for f in findings if not f.get("Action")]
    uncertain = any(f.get("Uncertain") for f in findings)
    if uncertain:
        ctx.err("hint: free space or fix what stopped the check (see above), then run "
                "`shipslog system check` again; nothing was moved on uncertain evidence")
    if [f for f in unrepaired if not f.get("Uncertain")] and not args.repair:
        ctx.err("hint: run `shipslog system check --repair` to quarantine damaged objects, "
                "then `shipslog rmi -f` the images that use them")
    return 1 if uncertain or (unrepaired and not args.repair) else 0


def client_info() -> dict[str, Any]:
    machine = os.uname().machine  # not `platform`: its import is a CLI start-up cost
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    return {
        "Version": CLIENT_VERSION,
        "ApiVersion": API_VERSION,
        "PythonVersion": sys.version.split()[0],
        "Os": sys.platform,
        "Arch": arch,
    }


def cmd_version(ctx: Context, args: argparse.Namespace) -> int:
    client = client_info()
    server: Mapping[str, Any] | None = None
    failure = None
    try:
        server = ctx.read("version", "/version")
    except (ApiError, DaemonUnreachable) as exc:
        failure = exc
    if args.format:
        ctx.stdout.write(fmt.render_each(args.format, [{"Client": client, "Server": server}]))
    else:
        ctx.out("Client:")
        ctx.out(f" Version:           {client['Version']}")
        ctx.out(f" API version:       {client['ApiVersion']}")
        ctx.out(f" Python version:    {client['PythonVersion']}")
        ctx.out(f" OS/Arch:           {client['Os']}/{client['Arch']}")
        if server is not None:
            ctx.out("")
            ctx.out(f"Server: {server.get('Platform', {}).get('Name', 'shipslog')}".rstrip())
            ctx.out(" Engine:")
            ctx.out(f"  Version:          {server.get('Version', '')}")
            minimum = server.get("MinAPIVersion")
            api = server.get("ApiVersion", "")
            ctx.out(f"  API version:      {api}"
                    + (f" (minimum version {minimum})" if minimum else ""))
            for key, label in (("GitCommit", "Git commit"), ("BuildTime", "Built"),
                               ("KernelVersion", "Kernel version")):
                if server.get(key):
                    ctx.out(f"  {label + ':':<18}{server[key]}")
            ctx.out(f"  OS/Arch:          {server.get('Os', '')}/{server.get('Arch', '')}")
            for component in server.get("Components") or []:
                if component.get("Name") in (None, "Engine"):
                    continue
                ctx.out(f" {component['Name']}:")
                ctx.out(f"  Version:          {component.get('Version', '')}")
    ctx.stdout.flush()
    if failure is not None:
        raise translate(failure)
    return 0


def cmd_info(ctx: Context, args: argparse.Namespace) -> int:
    info = ctx.read("info", "/info")
    if args.format:
        ctx.stdout.write(fmt.render_each(args.format, [info]))
        return 0
    lines = [
        "Client:",
        f" Version:    {CLIENT_VERSION}",
        "",
        "Server:",
        f" Containers: {info.get('Containers', 0)}",
        f"  Running: {info.get('ContainersRunning', 0)}",
        f"  Paused: {info.get('ContainersPaused', 0)}",
        f"  Stopped: {info.get('ContainersStopped', 0)}",
        f" Images: {info.get('Images', 0)}",
        f" Server Version: {info.get('ServerVersion', '')}",
        f" Storage Driver: {info.get('Driver', '')}",
        f" Logging Driver: {info.get('LoggingDriver', '')}",
        f" Cgroup Driver: {info.get('CgroupDriver', '')}",
        f" Cgroup Version: {info.get('CgroupVersion', '')}",
    ]
    runtimes = info.get("Runtimes") or {}
    if runtimes:
        lines.append(f" Runtimes: {' '.join(sorted(runtimes))}")
    lines += [
        f" Default Runtime: {info.get('DefaultRuntime', '')}",
        f" Kernel Version: {info.get('KernelVersion', '')}",
        f" Operating System: {info.get('OperatingSystem', '')}",
        f" OSType: {info.get('OSType', '')}",
        f" Architecture: {info.get('Architecture', '')}",
        f" CPUs: {info.get('NCPU', 0)}",
        f" Total Memory: {fmt.bytes_size(info.get('MemTotal', 0))}",
        f" Name: {info.get('Name', '')}",
        f" ID: {info.get('ID', '')}",
        f" Docker Root Dir: {info.get('DockerRootDir', '')}",
        *(f" Store: {pair[1]}" for pair in info.get("DriverStatus") or []
          if pair[0] == "Event log"),
        f" Debug Mode: {str(bool(info.get('Debug'))).lower()}",
    ]
    firewall = info.get("FirewallBackend") or {}
    if firewall:
        # issue 15, item 5: say which other firewall would drop our bridges' traffic
        detected = [pair[1] for pair in firewall.get("Info") or [] if pair[0] == "Detected"]
        lines.append(f" Firewall Backend: {firewall.get('Driver', '')}")
        lines.append(f" Firewall: {'; '.join(detected) or 'no other firewall manager detected'}")
    replication = info.get("Replication")
    if replication:  # issue 19: `shipslogd --replicate-to`
        lines.append(replication_line(replication))
    labels = info.get("Labels") or []
    if labels:
        lines.append(" Labels:")
        lines += [f"  {label}" for label in labels]
    ctx.stdout.write("\n".join(lines) + "\n")
    for warning in info.get("Warnings") or []:
        ctx.err(warning)
    return 0


def replication_line(doc: dict[str, Any]) -> str:
    line = (f" Replication: {doc.get('URL', '')}, host {doc.get('Host', '')}, acknowledged "
            f"{doc.get('Acknowledged', 0)} of {doc.get('Head', 0)} (lag {doc.get('Lag', 0)})")
    if doc.get("State") in ("stopped", "retrying"):
        line += f", {doc['State']}: {doc.get('Error', '')}"
    return line


def events_params(args: argparse.Namespace, now: float) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for flag in ("since", "until"):
        value = getattr(args, flag)
        if value.startswith("seq:"):
            if not value[4:].isdigit():
                raise UsageError(f"invalid value for --{flag}: {value!r}: want seq:N", "events")
            params[flag] = value
        elif value:
            try:
                params[flag] = parse.parse_timestamp(value, now)
            except ValueError as exc:
                raise UsageError(f"invalid value for --{flag}: {exc}", "events") from None
    if args.filter:
        try:
            params["filters"] = json.dumps(parse.parse_filters(args.filter),
                                           separators=(",", ":"))
        except ValueError as exc:
            raise UsageError(str(exc), "events") from None
    return params


def rfc3339_nano(time_nano: int) -> str:
    """Go's RFC3339NanoFixed in local time: `2024-01-02T03:04:05.000000000Z` (or ±hh:mm)."""
    seconds, nanos = divmod(time_nano, 1_000_000_000)
    from datetime import datetime  # imported where used: CLI start-up

    dt = datetime.fromtimestamp(seconds).astimezone()
    offset = dt.strftime("%z")
    zone = "Z" if offset in ("+0000", "") else f"{offset[:3]}:{offset[3:]}"
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{nanos:09d}{zone}"


def event_line(event: Mapping[str, Any]) -> str:
    """One event as `docker events` prints it."""
    time_nano = event.get("timeNano") or int(event.get("time", 0)) * 1_000_000_000
    actor = event.get("Actor") or {}
    line = (f"{rfc3339_nano(time_nano)} {event.get('Type', '')} {event.get('Action', '')} "
            f"{actor.get('ID', '')}")
    attributes = actor.get("Attributes") or {}
    if attributes:
        line += " (" + ", ".join(f"{k}={attributes[k]}" for k in sorted(attributes)) + ")"
    return line


def full_event_line(e: Mapping[str, Any]) -> str:
    """One event of shipslog's own stream, for people."""
    actor = e.get("actor") or {}
    who = "daemon" if actor.get("via") == "daemon" else f"uid={actor.get('uid')}"
    payload = {k: val for k, val in (e.get("event") or {}).items() if k != "type"}
    detail = " ".join(f"{k}={_brief(val)}" for k, val in payload.items()
                      if k not in ("config",) and val not in ("", [], {}, None))
    host = f"{e['host']} " if "host" in e else ""  # a fleet query (--store)
    return (f"{host}{rfc3339_nano(e['timeNano'])} #{e['seq']} {e['type']} {e['stream'][:40]} "
            f"op={e['op_id'][:12]} by={who} {detail}").rstrip()


def _brief(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= 40 else text[:37] + "..."


def _seq_time(source: Any, value: str) -> str:
    """Docker's stream takes times: `seq:N` becomes the time event N was recorded."""
    with source.stream_json("GET", "/shipslog/events", {"since": value, "limit": 1}) as events:
        for e in events:
            secs, nanos = divmod(int(e["timeNano"]), 1_000_000_000)
            return f"{secs}.{nanos:09d}"
    return f"{int(9e9)}"


def cmd_events(ctx: Context, args: argparse.Namespace) -> int:
    params = events_params(args, ctx.clock())
    source = ctx.local if ctx.local is not None else ctx.client
    # Who acted is in shipslog's own stream only (Docker's events carry no caller): the
    # actor filters read that stream (issue 18).
    by_actor = any(f.split("=", 1)[0] in ("actor", "uid", "command", "outcome")
                   for f in args.filter)
    if args.to == "syslog":
        return _to_syslog(ctx, source, args, params)
    if args.all or args.format == "json" or by_actor:
        return _full_events(ctx, source, args, params)
    fleet = getattr(source, "fleet", False)  # --store: each line starts with its host
    if fleet and args.follow:
        params["follow"] = True  # the center's history, then what it commits (NOTIFY)
    for flag in ("since", "until"):
        if str(params.get(flag, "")).startswith("seq:") and not fleet:
            params[flag] = _seq_time(source, params[flag])
    template = None
    if args.format:
        template = "{{json .}}" if args.format == "json" else args.format
    with source.stream_json("GET", "/events", params) as events:
        for event in events:
            if template is None:
                ctx.out(f"{event['host']} {event_line(event)}" if fleet else event_line(event))
            else:
                ctx.stdout.write(fmt.render_each(template, [event]))
            ctx.stdout.flush()
    return 0


def _full_events(ctx: Context, source: Any, args: argparse.Namespace,
                 params: dict[str, Any]) -> int:
    if args.follow:
        params["follow"] = True
    if args.limit is not None:
        params["limit"] = args.limit
    with source.stream_json("GET", "/shipslog/events", params) as events:
        for event in events:
            if args.format == "json":
                ctx.out(json.dumps(event, separators=(",", ":")))
            elif args.format:
                ctx.stdout.write(fmt.render_each(args.format, [event]))
            else:
                ctx.out(full_event_line(event))
            ctx.stdout.flush()
    return 0


def _to_syslog(ctx: Context, source: Any, args: argparse.Namespace,
               params: dict[str, Any]) -> int:
    """`events [--follow] --to syslog`: the full stream, one RFC 5424 message per event."""
    import os
    import socket

    from engine.cli.syslogout import message, open_syslog

    sock, _ = open_syslog(args.syslog_address)
    if args.follow:
        params["follow"] = True
    if args.limit is not None:
        params["limit"] = args.limit
    host, pid, prev, sent = socket.gethostname(), os.getpid(), "", 0
    try:
        with source.stream_json("GET", "/shipslog/events", params) as events:
            for event in events:
                sock.send(message(event, full_event_line(event), prev, host, pid))
                prev = event.get("hash", "")
                sent += 1
    finally:
        sock.close()
    ctx.err(f"sent {sent} events to syslog at {args.syslog_address}")
    return 0
