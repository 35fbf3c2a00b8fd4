"""The nftables ruleset shipslog owns, written as text for one atomic `nft -f` transaction.

I/O: none. `engine/drivers/network/nft.py` runs what these functions return.

Everything lives in `table inet shipslog`. Five *base* chains hook into the kernel and hold only
fixed rules, so `base_ruleset()` can flush and rewrite them idempotently. They jump into four
*regular* chains whose rules are owned — each carries a comment `slg:net:<network id>` or
`slg:ctr:<container id>` — so the reconciler can list them (`nft -a` gives handles) and delete
any rule no event owns:

    raw_pre   filter prerouting raw      S-07 guard: 127.0.0.0/8 arriving on a non-lo interface
                                         is dropped before NAT can rewrite it (moby#45610); then
                                         jump direct
    nat_pre   nat prerouting dstnat      packets to a local address: jump publish
    nat_out   nat output -100            locally generated to a local, non-loopback address:
                                         jump publish (loopback goes to the userland proxy; we
                                         never set route_localnet)
    nat_post  nat postrouting srcnat     jump masq
    filter_fwd filter forward filter     jump isolate

    direct    per network: only its bridge (or lo) may address its subnet directly
    publish   per container: DNAT host[ip]:port -> container ip:port
    masq      per network: masquerade the subnet leaving by another interface, and members
              reaching each other through a published port (hairpin); not for --internal
    isolate   per network: no traffic between two shipslog bridges; --internal networks talk
              only among themselves; new inbound connections only when DNATed (published)

A drop in another table (a host `inet filter` with policy drop, or Docker's iptables FORWARD
DROP) still applies: in nftables an accept is final only in its own base chain. For iptables'
`filter FORWARD` (dockerd's DROP policy) each network also owns accept rules there
(`engine/core/fwd_plan.py`); a foreign nft table's drop is reported by `info`, and users open
forwarding to `slg-*` bridges there. Publishing does not bypass the host firewall
(RELIABILITY S-07).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from engine.core.errors import InvalidArgument

FAMILY = "inet"
TABLE = "shipslog"
T = f"{FAMILY} {TABLE}"
BASE_CHAINS = {
    "raw_pre": "type filter hook prerouting priority raw; policy accept;",
    "nat_pre": "type nat hook prerouting priority dstnat; policy accept;",
    "nat_out": "type nat hook output priority -100; policy accept;",
    "nat_post": "type nat hook postrouting priority srcnat; policy accept;",
    "filter_fwd": "type filter hook forward priority filter; policy accept;",
}
OWNED_CHAINS = ("direct", "publish", "masq", "isolate")
BASE_COMMENT = "slg:base"
GUARD_COMMENT = "slg:base:loopback-guard"
_IFNAME = re.compile(r"^slg[a-z0-9-]{1,12}$")
_ID = re.compile(r"^[0-9a-f]{12,64}$")
_PROTOS = ("tcp", "udp", "sctp")


@dataclass(frozen=True)
class NetworkRules:
    network_id: str
    bridge: str
    subnet: str
    internal: bool = False
    subnet6: str = ""  # the network's IPv6 subnet, when it has EnableIPv6


@dataclass(frozen=True)
class Publish:
    """One published port, resolved: host_port is never 0 here (the caller picked it)."""

    container_ip: str
    container_port: int
    host_port: int
    proto: str = "tcp"
    host_ip: str = ""  # "" or 0.0.0.0: every local address


@dataclass(frozen=True)
class OwnedRule:
    kind: str  # "net" or "ctr"
    owner: str  # network or container id
    chain: str
    handle: int


def owner_comment(kind: str, owner: str) -> str:
    if kind not in ("net", "ctr") or not _ID.match(owner):
        raise InvalidArgument(f"invalid rule owner {kind}:{owner!r}")
    return f"slg:{kind}:{owner}"


def parse_owner(comment: str) -> tuple[str, str] | None:
    parts = comment.split(":")
    if len(parts) == 3 and parts[0] == "slg" and parts[1] in ("net", "ctr") \
            and _ID.match(parts[2]):
        return parts[1], parts[2]
    return None


def _ifname(name: str) -> str:
    if not _IFNAME.match(name):
        raise InvalidArgument(f"invalid bridge name {name!r}", hint="bridges are named slg-…")
    return name


def _port(port: int) -> int:
    if not isinstance(port, int) or not 0 < port < 65536:
        raise InvalidArgument(f"invalid port {port!r}", hint="ports are 1-65535")
    return port


def _proto(proto: str) -> str:
    if proto not in _PROTOS:
        raise InvalidArgument(f"invalid protocol {proto!r}", hint="use tcp, udp or sctp")
    return proto


def _declare() -> list[str]:
    lines = [f"add table {T}"]
    lines += [f"add chain {T} {name} {{ {spec} }}" for name, spec in BASE_CHAINS.items()]
    lines += [f"add chain {T} {name}" for name in OWNED_CHAINS]
    return lines


def base_ruleset() -> str:
    """Declare the table and chains (idempotent) and rewrite the fixed base-chain rules."""
    c = f'comment "{BASE_COMMENT}"'
    lines = _declare()
    lines += [f"flush chain {T} {name}" for name in BASE_CHAINS]
    lines += [
        # S-07: nothing but lo may carry a packet to 127.0.0.0/8; without this a neighbour on a
        # bridge sends to 127.0.0.1:<published port> via our MAC and the DNAT below forwards it.
        f'add rule {T} raw_pre iifname != "lo" ip daddr 127.0.0.0/8 counter drop '
        f'comment "{GUARD_COMMENT}"',
        f"add rule {T} raw_pre jump direct {c}",
        f"add rule {T} nat_pre fib daddr type local jump publish {c}",
        f"add rule {T} nat_out ip daddr != 127.0.0.0/8 fib daddr type local jump publish {c}",
        f"add rule {T} nat_post jump masq {c}",
        f"add rule {T} filter_fwd jump isolate {c}",
    ]
    return "\n".join(lines) + "\n"


# What `nft -j list table` shows of our base chains: (type, hook, priority) of each, and the
# comments of the fixed rules `base_ruleset` writes into them, in order.
_BASE_HOOKS = {
    "raw_pre": ("filter", "prerouting", -300),
    "nat_pre": ("nat", "prerouting", -100),
    "nat_out": ("nat", "output", -100),
    "nat_post": ("nat", "postrouting", 100),
    "filter_fwd": ("filter", "forward", 0),
}
_BASE_RULES = {
    "raw_pre": [GUARD_COMMENT, BASE_COMMENT],
    "nat_pre": [BASE_COMMENT],
    "nat_out": [BASE_COMMENT],
    "nat_post": [BASE_COMMENT],
    "filter_fwd": [BASE_COMMENT],
}


def base_in_place(items: list[dict[str, Any]]) -> bool:
    """Whether the table (as `nft -j list table` items) already holds the base exactly as
    `base_ruleset` writes it: every chain declared with its hook, priority and accept policy,
    and the base chains holding our fixed rules and nothing else, in order. Then the base is
    left alone, which keeps the S-07 guard's counter (a rewrite resets it) when another daemon
    on the host, or this one after a restart, ensures it again. Rules are recognised by their
    comment: a rule edited in place under our comment is not detected here."""
    chains: dict[str, dict[str, Any]] = {}
    rules: dict[str, list[str]] = {}
    for item in items:
        if "chain" in item:
            chains[item["chain"].get("name", "")] = item["chain"]
        elif "rule" in item:
            rule = item["rule"]
            rules.setdefault(rule.get("chain", ""), []).append(rule.get("comment", ""))
    if any(name not in chains for name in OWNED_CHAINS):
        return False
    for name, (kind, hook, prio) in _BASE_HOOKS.items():
        chain = chains.get(name)
        if chain is None or (chain.get("type"), chain.get("hook"), chain.get("prio"),
                             chain.get("policy")) != (kind, hook, prio, "accept"):
            return False
        if rules.get(name, []) != _BASE_RULES[name]:
            return False
    return True


def network_rules(net: NetworkRules) -> list[str]:
    """`add rule` lines for one network (its bridge, subnets and --internal flag). Our table
    is `inet`: the interface matches below see both families, the address matches are
    written once per family (`ip` only ever matches IPv4 packets, issue 13)."""
    br = _ifname(net.bridge)
    subnets: list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]] = [
        ("ip", ipaddress.IPv4Network(net.subnet, strict=False))]
    if net.subnet6:
        subnets.append(("ip6", ipaddress.IPv6Network(net.subnet6, strict=False)))
    c = f'comment "{owner_comment("net", net.network_id)}"'
    # Only the bridge itself (and the host, via lo) may address the subnet: blocks direct
    # routing to unpublished container ports from other interfaces (Docker 28 does the same).
    lines = [f'add rule {T} direct iifname != {{ "lo", "{br}" }} {fam} daddr {subnet} drop {c}'
             for fam, subnet in subnets]
    lines.append(f'add rule {T} isolate iifname "{br}" oifname "slg-*" oifname != "{br}" drop {c}')
    if net.internal:
        lines += [
            f'add rule {T} isolate iifname "{br}" oifname != "{br}" drop {c}',
            f'add rule {T} isolate oifname "{br}" iifname != "{br}" drop {c}',
        ]
    else:
        lines += [
            f'add rule {T} isolate iifname "{br}" accept {c}',
            f'add rule {T} isolate oifname "{br}" ct state established,related accept {c}',
            f'add rule {T} isolate oifname "{br}" ct status dnat accept {c}',
            f'add rule {T} isolate oifname "{br}" drop {c}',
        ]
        for fam, subnet in subnets:  # Docker with ip6tables masquerades v6 subnets too
            lines += [
                f'add rule {T} masq {fam} saddr {subnet} oifname != "{br}" masquerade {c}',
                # hairpin: a member reaching another member through a published port on a
                # host address must get the reply back through the host, not from the peer
                f'add rule {T} masq oifname "{br}" {fam} saddr {subnet} ct status dnat '
                f'masquerade {c}',
            ]
    return lines


def publish_rules(container_id: str, publishes: list[Publish]) -> list[str]:
    """`add rule` lines DNATing each published port of one container."""
    c = f'comment "{owner_comment("ctr", container_id)}"'
    lines = []
    for p in publishes:
        target = ipaddress.IPv4Address(p.container_ip)
        proto = _proto(p.proto)
        match = ""
        if p.host_ip and p.host_ip != "0.0.0.0":
            match = f"ip daddr {ipaddress.IPv4Address(p.host_ip)} "
        lines.append(f"add rule {T} publish {match}{proto} dport {_port(p.host_port)} "
                     f"dnat ip to {target}:{_port(p.container_port)} {c}")
    return lines


def replace_transaction(stale: list[OwnedRule], add: list[str]) -> str:
    """One transaction: make sure the chains exist, drop the owner's old rules, add the new."""
    lines = _declare()
    lines += [f"delete rule {T} {r.chain} handle {int(r.handle)}" for r in stale]
    lines += add
    return "\n".join(lines) + "\n"


def delete_table() -> str:
    return f"add table {T}\ndelete table {T}\n"
