"""`shipslog network create|ls|inspect|rm|prune|connect|disconnect`: Docker's network verbs.

I/O: the daemon's `/networks` endpoints; writes to `ctx.stdout`.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
from typing import Any

from engine.cli import format as fmt
from engine.cli.context import Context
from engine.cli.errors import UsageError
from engine.cli.parse import flag_values, parse_key_value_opts
from engine.cli.timeline import AT_HELP, at_read

TABLE = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
TITLES = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
          "Subnet": "SUBNET", "Internal": "INTERNAL"}


def register(sub: Any) -> None:
    network = sub.add_parser("network", help="Manage networks")
    nsub = network.add_subparsers(dest="subverb", metavar="COMMAND", required=True)

    p = nsub.add_parser("create", help="Create a network")
    p.add_argument("name")
    p.add_argument("-d", "--driver", default="bridge")
    p.add_argument("--subnet", action="append", default=[])
    p.add_argument("--gateway", action="append", default=[])
    p.add_argument("--ip-range", action="append", default=[])
    p.add_argument("--aux-address", action="append", default=[],
                   help="Auxiliary IPv4 or IPv6 addresses used by Network driver")
    p.add_argument("--ipam-driver", default="default", help="IP Address Management Driver")
    p.add_argument("--ipam-opt", action="append", default=[],
                   help="Set IPAM driver specific options")
    p.add_argument("--ipv6", action="store_true", help="Enable IPv6 networking")
    p.add_argument("--internal", action="store_true")
    p.add_argument("--attachable", action="store_true",
                   help="Enable manual container attachment")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("-o", "--opt", action="append", default=[])
    p.set_defaults(func=cmd_create)

    p = nsub.add_parser("ls", aliases=["list"], help="List networks")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format", default="")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--at", default=None, metavar="TIME|seq:N", help=AT_HELP)
    p.set_defaults(func=cmd_ls)

    p = nsub.add_parser("inspect", help="Display detailed information on networks")
    p.add_argument("names", nargs="+")
    p.add_argument("-f", "--format", default="")
    p.set_defaults(func=cmd_inspect)

    p = nsub.add_parser("rm", aliases=["remove"], help="Remove networks")
    p.add_argument("names", nargs="+")
    p.set_defaults(func=cmd_rm)

    p = nsub.add_parser("prune", help="Remove all unused networks")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[])
    p.set_defaults(func=cmd_prune)

    p = nsub.add_parser("connect", help="Connect a running container to a network")
    p.add_argument("network")
    p.add_argument("container")
    p.add_argument("--alias", action="append", default=[])
    p.add_argument("--ip", default="")
    p.add_argument("--ip6", default="")
    p.set_defaults(func=cmd_connect)

    p = nsub.add_parser("disconnect", help="Disconnect a container from a network")
    p.add_argument("network")
    p.add_argument("container")
    p.add_argument("-f", "--force", action="store_true")
    p.set_defaults(func=cmd_disconnect)




def ipam_configs(subnets: list[str], gateways: list[str],
                 ranges: list[str]) -> list[dict[str, str]]:
    """Docker's CLI pairing: each --gateway and --ip-range goes with the --subnet that holds
    it (one v4 and one v6 subnet make a dual-stack network, issue 13)."""
    if not subnets:
        if gateways or ranges:
            raise UsageError("every ip-range or gateway must have a corresponding subnet",
                             "network create")
        return []
    configs = [{"Subnet": s} for s in subnets]
    for key, values in (("Gateway", gateways), ("IPRange", ranges)):
        for value in values:
            match = [c for c in configs if _within(value, c["Subnet"])]
            if not match or key in match[0]:
                raise UsageError(f"no matching subnet for {key.lower()} {value}",
                                 "network create")
            match[0][key] = value
    return configs


def add_aux_addresses(configs: list[dict[str, Any]], values: list[str]) -> None:
    """Docker's CLI (consolidateIpam): each `--aux-address NAME=IP` goes with every --subnet
    that holds IP; an address no subnet holds (or no address at all) is refused."""
    aux = parse_key_value_opts_or_usage(values, "--aux-address")
    for key, value in aux.items():
        match = [c for c in configs if _holds(c["Subnet"], value)]
        if not match:
            raise UsageError(f"no matching subnet for aux-address {value}", "network create")
        for c in match:
            c.setdefault("AuxiliaryAddresses", {})[key] = value


def parse_key_value_opts_or_usage(values: list[str], flag: str) -> dict[str, str]:
    try:
        return parse_key_value_opts(values, flag)
    except ValueError as exc:
        raise UsageError(str(exc), "network create") from None


def _holds(subnet: str, address: str) -> bool:
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(subnet, strict=False)
    except ValueError:
        return False


def _within(value: str, subnet: str) -> bool:
    try:
        inner = ipaddress.ip_network(value, strict=False)
        outer = ipaddress.ip_network(subnet, strict=False)
    except ValueError:
        return True  # unparsable: sent as given, and the daemon says what is wrong with it
    return inner.version == outer.version and inner.subnet_of(outer)  # type: ignore[arg-type]


def cmd_create(ctx: Context, args: argparse.Namespace) -> int:
    configs = ipam_configs(args.subnet, args.gateway, args.ip_range)
    add_aux_addresses(configs, args.aux_address)
    body = {"Name": args.name, "Driver": args.driver, "Internal": args.internal,
            "EnableIPv6": args.ipv6, "Attachable": args.attachable,
            "Labels": flag_values("label", args.label, "network create"),
            "Options": flag_values("opt", args.opt, "network create"),
            "IPAM": {"Driver": args.ipam_driver, "Config": configs,
                     "Options": parse_key_value_opts_or_usage(args.ipam_opt, "--ipam-opt")}}
    ctx.out(ctx.client.post_json("/networks/create", None, body)["Id"])
    return 0


def cmd_ls(ctx: Context, args: argparse.Namespace) -> int:
    params = {"filters": flag_values("filter", args.filter, "network ls")} if args.filter else None
    rows = []
    for n in at_read(ctx, "network ls", "/networks", params, args.at)[0] or []:
        cfg = (n.get("IPAM") or {}).get("Config") or [{}]
        rows.append({"ID": n["Id"] if args.no_trunc else n["Id"][:12], "Name": n["Name"],
                     "Driver": n["Driver"], "Scope": n.get("Scope", "local"),
                     "Subnet": cfg[0].get("Subnet", ""), "Internal": str(n.get("Internal"))})
    if args.quiet:
        ctx.stdout.write("".join(f"{r['ID']}\n" for r in rows))
        return 0
    ctx.stdout.write(fmt.render_list(args.format, rows, TABLE, TITLES))
    return 0


def cmd_inspect(ctx: Context, args: argparse.Namespace) -> int:
    found = [ctx.read("network inspect", f"/networks/{name}") for name in args.names]
    if args.format:
        ctx.stdout.write(fmt.render_each(args.format, found))
    else:
        ctx.out(json.dumps(found, indent=4))
    return 0


def cmd_rm(ctx: Context, args: argparse.Namespace) -> int:
    code = 0
    for name in args.names:
        try:
            ctx.client.delete(f"/networks/{name}")
            ctx.out(name)
        except Exception as exc:  # noqa: BLE001 - Docker removes what it can, reports the rest
            ctx.err(f"shipslog: {getattr(exc, 'message', exc)}")
            code = 1
    return code


def cmd_prune(ctx: Context, args: argparse.Namespace) -> int:
    from engine.cli.prune import prune

    prune(ctx, "network", flag_values("filter", args.filter, "network ls"))
    return 0


def cmd_connect(ctx: Context, args: argparse.Namespace) -> int:
    endpoint: dict[str, Any] = {"Aliases": args.alias}
    if args.ip or args.ip6:
        endpoint["IPAMConfig"] = {k: v for k, v in (("IPv4Address", args.ip),
                                                    ("IPv6Address", args.ip6)) if v}
    ctx.client.post_json(f"/networks/{args.network}/connect", None,
                         {"Container": args.container, "EndpointConfig": endpoint})
    return 0


def cmd_disconnect(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client.post_json(f"/networks/{args.network}/disconnect", None,
                         {"Container": args.container, "Force": args.force})
    return 0
