"""Facts about the host's network that the shell asks before it plans: the routes and
addresses already in use, the subnets other engines' nft rules guard, a free port, whether
a path is a network namespace.

I/O: netlink (pyroute2) and /proc/net/route reads, `nft -j list`, a bound socket, stat(2).
Moved out of engine/shell/network.py so the shell imports no kernel tool (issue 16).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import subprocess
from pathlib import Path

from pyroute2 import IPRoute

log = logging.getLogger("shipslog.network")


def host_routes() -> list[str]:
    """IPv4 destinations the host already routes, and the subnets of addresses on links that
    are down (they have no route, yet their gateway address is taken): new networks avoid
    both — docker0's 172.17/16 included when Docker runs, and another engine's idle bridge."""
    out: list[str] = []
    try:
        with IPRoute() as ipr:
            for a in ipr.get_addr(family=socket.AF_INET):
                out.append(str(ipaddress.ip_network(
                    f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}", strict=False)))
    except OSError as exc:
        log.warning("cannot list the host's addresses: %s", exc)
    out += claimed_subnets()
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if len(fields) < 8 or fields[1] == "00000000":
            continue
        dest = socket.inet_ntoa(bytes.fromhex(fields[1])[::-1])
        mask = socket.inet_ntoa(bytes.fromhex(fields[7])[::-1])
        out.append(str(ipaddress.ip_network(f"{dest}/{mask}", strict=False)))
    return out


def claimed_subnets() -> list[str]:
    """Subnets the `direct` chain of our nft table guards — other engines' networks on this
    host, even one whose bridge is gone: its rule drops traffic to that subnet arriving on
    any other bridge, so a network of ours there could not reach its own gateway."""
    try:
        p = subprocess.run(["nft", "-j", "list", "chain", "inet", "shipslog", "direct"],
                           capture_output=True, text=True, timeout=10, check=False)
        items = json.loads(p.stdout or "{}").get("nftables", []) if p.returncode == 0 else []
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []
    out = []
    for item in items:
        for expr in (item.get("rule") or {}).get("expr", []):
            right = (expr.get("match") or {}).get("right")
            if isinstance(right, dict) and "prefix" in right:
                prefix = right["prefix"]
                out.append(f"{prefix['addr']}/{prefix['len']}")
    return out


def free_port(host_ip: str, proto: str) -> int:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host_ip or "0.0.0.0", 0))
        return int(s.getsockname()[1])


def is_namespace(path: Path) -> bool:
    """A bind-mounted network namespace (nsfs), not just a file of that name."""
    try:
        return os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return False
