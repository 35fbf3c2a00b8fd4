"""`shipslog volume create|ls|inspect|rm|prune`: Docker's volume verbs over the API.

I/O: the daemon's `/volumes` endpoints; writes to `ctx.stdout`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from engine.cli import format as fmt
from engine.cli.context import Context
from engine.cli.errors import CliError
from engine.cli.parse import flag_values
from engine.cli.timeline import AT_HELP, at_read

TABLE = "table {{.Driver}}\t{{.Name}}"
TITLES = {"Driver": "DRIVER", "Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT",
          "Labels": "LABELS", "Scope": "SCOPE"}



def register(sub: Any) -> None:
    volume = sub.add_parser("volume", help="Manage volumes")
    vsub = volume.add_subparsers(dest="subverb", metavar="COMMAND", required=True)

    p = vsub.add_parser("create", help="Create a volume")
    p.add_argument("name", nargs="?", default="")
    p.add_argument("-d", "--driver", default="local")
    p.add_argument("-o", "--opt", action="append", default=[])
    p.add_argument("--label", action="append", default=[])
    p.set_defaults(func=cmd_create)

    p = vsub.add_parser("ls", aliases=["list"], help="List volumes")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format", default="")
    p.add_argument("--at", default=None, metavar="TIME|seq:N", help=AT_HELP)
    p.set_defaults(func=cmd_ls)

    p = vsub.add_parser("inspect", help="Display detailed information on volumes")
    p.add_argument("names", nargs="+")
    p.add_argument("-f", "--format", default="")
    p.set_defaults(func=cmd_inspect)

    p = vsub.add_parser("rm", aliases=["remove"], help="Remove volumes")
    p.add_argument("names", nargs="+")
    p.add_argument("-f", "--force", action="store_true")
    p.set_defaults(func=cmd_rm)

    p = vsub.add_parser("prune", help="Remove unused anonymous volumes (all unused with -a)")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[])
    p.set_defaults(func=cmd_prune)



def cmd_create(ctx: Context, args: argparse.Namespace) -> int:
    body = {"Name": args.name, "Driver": args.driver,
            "DriverOpts": flag_values("opt", args.opt, "volume create"),
            "Labels": flag_values("label", args.label, "volume create")}
    answer = ctx.client.post_json("/volumes/create", None, body)
    ctx.out(answer["Name"])
    return 0


def cmd_ls(ctx: Context, args: argparse.Namespace) -> int:
    params = {"filters": flag_values("filter", args.filter, "volume ls")} if args.filter else None
    answer = at_read(ctx, "volume ls", "/volumes", params, args.at)[0] or {}
    rows = [{"Driver": v["Driver"], "Name": v["Name"], "Mountpoint": v.get("Mountpoint", ""),
             "Scope": v.get("Scope", "local"),
             "Labels": ",".join(f"{k}={val}" for k, val in (v.get("Labels") or {}).items())}
            for v in answer.get("Volumes") or []]
    if args.quiet:
        ctx.stdout.write("".join(f"{r['Name']}\n" for r in rows))
        return 0
    ctx.stdout.write(fmt.render_list(args.format, rows, TABLE, TITLES))
    return 0


def cmd_inspect(ctx: Context, args: argparse.Namespace) -> int:
    found, code = [], 0
    for name in args.names:
        try:
            found.append(ctx.read("volume inspect", f"/volumes/{name}"))
        except CliError:
            raise
        except Exception as exc:  # noqa: BLE001 - Docker prints each miss and goes on
            ctx.err(f"shipslog: {getattr(exc, 'message', exc)}")
            code = 1
    if args.format:
        ctx.stdout.write(fmt.render_each(args.format, found))
    else:
        ctx.out(json.dumps(found, indent=4))
    return code


def cmd_rm(ctx: Context, args: argparse.Namespace) -> int:
    code = 0
    for name in args.names:
        try:
            ctx.client.delete(f"/volumes/{name}", {"force": args.force})
            ctx.out(name)
        except Exception as exc:  # noqa: BLE001 - Docker removes what it can, reports the rest
            ctx.err(f"shipslog: {getattr(exc, 'message', exc)}")
            code = 1
    return code


def cmd_prune(ctx: Context, args: argparse.Namespace) -> int:
    filters = flag_values("filter", args.filter, "volume ls")
    if args.all:
        filters["all"] = ["true"]
    from engine.cli.prune import prune

    reclaimed = prune(ctx, "volume", filters)
    ctx.out(f"Total reclaimed space: {fmt.human_size(reclaimed)}")
    return 0
