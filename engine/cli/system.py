"""System verbs: `version`, `info`, `events`.

I/O: the daemon's API (`/version`, `/info`, the `/events` stream); writes to `ctx.stdout`.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.api.client import ApiError, DaemonUnreachable
from engine.cli import format as fmt
from engine.cli import parse
from engine.cli.context import Context
from engine.cli.errors import UsageError, translate

CLIENT_VERSION = "0.1.0"
API_VERSION = "1.43"


def register(sub: Any) -> None:
    p = sub.add_parser("version", help="Show the shipslog version information")
    p.add_argument("-f", "--format", default="")
    p.set_defaults(func=cmd_version)

    p = sub.add_parser("info", help="Display system-wide information")
    p.add_argument("-f", "--format", default="")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("events", help="Get real time events from the server")
    p.add_argument("--since", default="")
    p.add_argument("--until", default="")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format", default="")
    p.set_defaults(func=cmd_events)


def client_info() -> dict[str, Any]:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return {
        "Version": CLIENT_VERSION,
        "ApiVersion": API_VERSION,
        "PythonVersion": platform.python_version(),
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
        f" Debug Mode: {str(bool(info.get('Debug'))).lower()}",
    ]
    labels = info.get("Labels") or []
    if labels:
        lines.append(" Labels:")
        lines += [f"  {label}" for label in labels]
    ctx.stdout.write("\n".join(lines) + "\n")
    for warning in info.get("Warnings") or []:
        ctx.err(warning)
    return 0


def events_params(args: argparse.Namespace, now: float) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for flag in ("since", "until"):
        value = getattr(args, flag)
        if value:
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


def cmd_events(ctx: Context, args: argparse.Namespace) -> int:
    params = events_params(args, ctx.clock())
    if ctx.local is not None:
        ctx.local.get_json("/events", params, verb="events")
    template = None
    if args.format:
        template = "{{json .}}" if args.format == "json" else args.format
    with ctx.client.stream_json("GET", "/events", params) as events:
        for event in events:
            if template is None:
                ctx.out(event_line(event))
            else:
                ctx.stdout.write(fmt.render_each(template, [event]))
            ctx.stdout.flush()
    return 0
