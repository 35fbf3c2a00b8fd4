"""Container verbs that query or change state without touching stdio: `ps`, `inspect`, `top`,
`port`, `stop`, `kill`, `restart`, `rm`, `pause`, `unpause`, `rename`, `wait`.

I/O: the daemon's API (through `ctx.client`, or `ctx.read` for queries `--root` may serve);
writes the results to `ctx.stdout`.
"""

from __future__ import annotations

import argparse
import json

from engine.cli import format as fmt
from engine.cli import parse
from engine.cli.client import ApiError
from engine.cli.context import Context
from engine.cli.errors import CliError, ExitStatus, UsageError, from_api
from engine.cli.fleet import add_host_flag
from engine.cli.timeline import AT_HELP, at_read

# typing and collections.abc are for the type checker only: importing typing costs
# every CLI start ~3 ms (issue 17)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("ps", help="List containers")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-n", "--last", type=int, default=-1)
    p.add_argument("-l", "--latest", action="store_true")
    p.add_argument("-s", "--size", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format", default="")
    p.add_argument("--at", default=None, metavar="TIME|seq:N", help=AT_HELP)
    add_host_flag(p)
    p.set_defaults(func=cmd_ps)

    p = sub.add_parser("inspect", help="Return low-level information on objects")
    p.add_argument("-f", "--format", default="")
    p.add_argument("-s", "--size", action="store_true")
    p.add_argument("--type", choices=["container", "image"], default=None)
    p.add_argument("--at", default=None, metavar="TIME|seq:N", help=AT_HELP)
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("top", help="Display the running processes of a container")
    p.add_argument("container")
    p.add_argument("ps_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_top)

    p = sub.add_parser("port", help="List port mappings of a container")
    p.add_argument("container")
    p.add_argument("port", nargs="?")
    p.set_defaults(func=cmd_port)

    for verb, helptext in (("stop", "Stop one or more running containers"),
                           ("restart", "Restart one or more containers")):
        p = sub.add_parser(verb, help=helptext)
        p.add_argument("-t", "--time", "--timeout", type=int, default=None, dest="time")
        p.add_argument("-s", "--signal", default="")
        p.add_argument("containers", nargs="+", metavar="CONTAINER")
        p.set_defaults(func=cmd_stop if verb == "stop" else cmd_restart)

    p = sub.add_parser("kill", help="Kill one or more running containers")
    p.add_argument("-s", "--signal", default="")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=cmd_kill)

    p = sub.add_parser("rm", help="Remove one or more containers")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-v", "--volumes", action="store_true")
    p.add_argument("-l", "--link", action="store_true")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=cmd_rm)

    for verb, helptext in (("pause", "Pause all processes within one or more containers"),
                           ("unpause", "Unpause all processes within one or more containers"),
                           ("wait", "Block until containers stop, then print their exit codes")):
        p = sub.add_parser(verb, help=helptext)
        p.add_argument("containers", nargs="+", metavar="CONTAINER")
        p.set_defaults(func={"pause": cmd_pause, "unpause": cmd_unpause, "wait": cmd_wait}[verb])

    p = sub.add_parser("rename", help="Rename a container")
    p.add_argument("container")
    p.add_argument("new_name")
    p.set_defaults(func=cmd_rename)

    p = sub.add_parser("update", help="Update the limits or restart policy of containers")
    p.add_argument("-m", "--memory", default="", help="memory limit (e.g. 256m)")
    p.add_argument("--cpus", default="", help="number of CPUs (e.g. 1.5)")
    p.add_argument("--pids-limit", type=int, default=None, help="-1 for no limit")
    p.add_argument("--restart", default="", help="no, always, on-failure[:N], unless-stopped")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=cmd_update)


# ------------------------------------------------------------------- ps

def ps_params(args: argparse.Namespace) -> dict[str, Any]:
    """Query parameters of `GET /containers/json`."""
    params: dict[str, Any] = {}
    if args.all or args.last > 0 or args.latest:
        params["all"] = True
    if args.latest:
        params["limit"] = 1
    elif args.last > 0:
        params["limit"] = args.last
    if args.size:
        params["size"] = True
    if args.filter:
        try:
            params["filters"] = json.dumps(parse.parse_filters(args.filter),
                                           separators=(",", ":"))
        except ValueError as exc:
            raise UsageError(str(exc), "ps") from None
    return params


def cmd_ps(ctx: Context, args: argparse.Namespace) -> int:
    containers, now = at_read(ctx, "ps", "/containers/json", ps_params(args), args.at)
    containers = containers or []
    rows = [fmt.container_row(c, now=now, trunc=not args.no_trunc) for c in containers]
    table = fmt.CONTAINER_TABLE
    if containers and "Host" in containers[0]:  # a fleet query (--store): HOST first
        for row, c in zip(rows, containers, strict=True):
            row["Host"] = c["Host"]
        table = "table {{.Host}}\t" + table[len("table "):]
    if args.size:
        table += "\t{{.Size}}"
    if args.quiet:
        if args.format:
            ctx.err("WARNING: Ignoring custom format, because both --format and --quiet are set.")
        ctx.stdout.write("".join(f"{row['ID']}\n" for row in rows))
        return 0
    ctx.stdout.write(fmt.render_list(args.format, rows, table, fmt.CONTAINER_TITLES))
    return 0


# ------------------------------------------------------------------- inspect

def _inspect_one(ctx: Context, name: str, kind: str | None, size: bool,
                 at: str | None = None) -> Any:
    kinds = [kind] if kind else ["container", "image"]
    last: ApiError | None = None
    for k in kinds:
        path = f"/containers/{name}/json" if k == "container" else f"/images/{name}/json"
        params = {"size": True} if size and k == "container" else None
        try:
            return at_read(ctx, "inspect", path, params, at)[0]
        except ApiError as exc:
            if exc.status != 404:
                raise
            last = exc
    if kind is None or last is None:
        raise CliError(f"No such object: {name}", "list them with 'shipslog ps -a' or "
                       "'shipslog images'", 1)
    raise CliError(f"No such {kind}: {name}", f"list them with "
                   f"'shipslog {'ps -a' if kind == 'container' else 'images'}'", 1)


def cmd_inspect(ctx: Context, args: argparse.Namespace) -> int:
    found: list[Any] = []
    missing: list[CliError] = []
    for name in args.names:
        try:
            found.append(_inspect_one(ctx, name, args.type, args.size,
                                      getattr(args, "at", None)))
        except CliError as exc:
            missing.append(exc)
    if args.format:
        ctx.stdout.write(fmt.render_each(args.format, found))
    else:
        ctx.stdout.write(fmt.json_array(found))
    if missing:
        for earlier in missing[:-1]:
            ctx.err(f"shipslog: {earlier.message}")
        raise missing[-1]
    return 0


# ------------------------------------------------------------------- top and port

def cmd_top(ctx: Context, args: argparse.Namespace) -> int:
    params = {"ps_args": " ".join(args.ps_args)} if args.ps_args else None
    answer = ctx.read("top", f"/containers/{args.container}/top", params)
    lines = ["\t".join(answer.get("Titles") or [])]
    lines += ["\t".join(str(c) for c in proc) for proc in answer.get("Processes") or []]
    ctx.stdout.write(fmt.tabulate(lines, minwidth=20))
    return 0


def cmd_port(ctx: Context, args: argparse.Namespace) -> int:
    info = ctx.read("port", f"/containers/{args.container}/json")
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
    wanted = args.port
    if wanted and "/" not in wanted:
        wanted += "/tcp"
    shown = 0
    for key in sorted(ports, key=lambda k: (int(k.split("/")[0]), k)):
        if wanted and key != wanted:
            continue
        for binding in ports[key] or []:
            ip = binding.get("HostIp") or "0.0.0.0"
            host = f"[{ip}]" if ":" in ip else ip
            address = f"{host}:{binding.get('HostPort', '')}"
            ctx.out(address if wanted else f"{key} -> {address}")
            shown += 1
    if wanted and not shown:
        raise CliError(f"No public port '{wanted}' published for {args.container}",
                       "publish it with -p when you run the container")
    return 0


# ------------------------------------------------------------------- lifecycle verbs

# Docker's CLI stops, kills, removes, pauses and unpauses many containers at once, at most
# 50 in flight (docker/cli `parallelOperation`); each call has its own connection.
PARALLEL_AT_MOST = 50


def for_each(ctx: Context, refs: list[str], action: Callable[[str], Any],
             show: Callable[[str, Any], str | None] = lambda ref, _: ref, *,
             parallel: bool = False) -> int:
    """Run an action per container like Docker does: print each success, report each failure,
    carry on, and exit 1 when any failed. With `parallel`, the actions run at once (up to
    PARALLEL_AT_MOST) and their results are still reported in the order of `refs`."""
    failed: list[CliError] = []
    for ref, outcome in zip(refs, _outcomes(refs, action, parallel), strict=True):
        if isinstance(outcome, ApiError):
            failed.append(from_api(outcome.status, outcome.message))
            if len(refs) > 1:
                ctx.err(f"shipslog: {failed[-1].message}")
            continue
        line = show(ref, outcome)
        if line is not None:
            ctx.out(line)
    # Docker prints the daemon's message alone (issue 18): one failure is that error with
    # its hint; several were printed as they came, and the exit status says the rest.
    if len(refs) == 1 and failed:
        raise CliError(failed[0].message, failed[0].hint, 1)
    if failed:
        raise ExitStatus(1)
    return 0


def _outcomes(refs: list[str], action: Callable[[str], Any],
              parallel: bool) -> Iterator[Any]:
    """Each action's result or ApiError, in the order of `refs`, as soon as it is known; any
    other error (the daemon went away) ends the run."""
    def attempt(ref: str) -> Any:
        try:
            return action(ref)
        except ApiError as exc:
            return exc

    if not parallel or len(refs) < 2:
        yield from map(attempt, refs)
        return
    from concurrent.futures import ThreadPoolExecutor  # only when there are several

    pool = ThreadPoolExecutor(max_workers=min(PARALLEL_AT_MOST, len(refs)))
    try:
        for future in [pool.submit(attempt, ref) for ref in refs]:
            yield future.result()
    finally:  # on Ctrl-C or a lost daemon, do not wait for what has not started
        pool.shutdown(wait=False, cancel_futures=True)


def cmd_stop(ctx: Context, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {}
    if args.time is not None:
        params["t"] = args.time
    if args.signal:
        params["signal"] = args.signal
    return for_each(ctx, args.containers,
                    lambda ref: ctx.client.post_json(f"/containers/{ref}/stop", params or None),
                    parallel=True)


def cmd_restart(ctx: Context, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {}
    if args.time is not None:
        params["t"] = args.time
    if args.signal:
        params["signal"] = args.signal
    return for_each(ctx, args.containers,
                    lambda ref: ctx.client.post_json(f"/containers/{ref}/restart",
                                                     params or None))


def cmd_kill(ctx: Context, args: argparse.Namespace) -> int:
    params = {"signal": args.signal} if args.signal else None
    return for_each(ctx, args.containers,
                    lambda ref: ctx.client.post_json(f"/containers/{ref}/kill", params),
                    parallel=True)


def cmd_rm(ctx: Context, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {}
    if args.force:
        params["force"] = True
    if args.volumes:
        params["v"] = True
    if args.link:
        params["link"] = True
    return for_each(ctx, args.containers,
                    lambda ref: ctx.client.delete(f"/containers/{ref}", params or None),
                    parallel=True)


def cmd_pause(ctx: Context, args: argparse.Namespace) -> int:
    return for_each(ctx, args.containers,
                    lambda ref: ctx.client.post_json(f"/containers/{ref}/pause"), parallel=True)


def cmd_unpause(ctx: Context, args: argparse.Namespace) -> int:
    return for_each(ctx, args.containers,
                    lambda ref: ctx.client.post_json(f"/containers/{ref}/unpause"),
                    parallel=True)


def cmd_wait(ctx: Context, args: argparse.Namespace) -> int:
    return for_each(ctx, args.containers,
                    lambda ref: ctx.client.post_json(f"/containers/{ref}/wait"),
                    lambda ref, answer: str((answer or {}).get("StatusCode", 0)))


def cmd_update(ctx: Context, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    try:
        if args.memory:
            body["Memory"] = parse.parse_size(args.memory)
        if args.cpus:
            body["NanoCpus"] = parse.parse_cpus(args.cpus)
        if args.restart:
            body["RestartPolicy"] = parse.parse_restart(args.restart)
    except ValueError as exc:
        raise UsageError(f"invalid argument: {exc}", "update") from None
    if args.pids_limit is not None:
        body["PidsLimit"] = args.pids_limit
    if not body:
        raise UsageError("you must provide one or more flags when using this command",
                         "update")

    def update(ref: str) -> Any:
        answer = ctx.client.post_json(f"/containers/{ref}/update", None, body)
        for warning in (answer or {}).get("Warnings") or []:
            ctx.err(f"WARNING: {warning}")
        return answer

    return for_each(ctx, args.containers, update)


def cmd_rename(ctx: Context, args: argparse.Namespace) -> int:
    if not args.new_name.strip():
        raise UsageError("Error: Neither old nor new names may be empty", "rename")
    ctx.client.post_json(f"/containers/{args.container}/rename", {"name": args.new_name})
    return 0
