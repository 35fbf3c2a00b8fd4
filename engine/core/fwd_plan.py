"""Accept rules for our bridges in the host's iptables `filter FORWARD` chain, and the verdict
on which other firewall managers would drop our traffic.

I/O: none. `engine/drivers/network/hostfw.py` reads the host's iptables and nftables state, runs the
`iptables-restore --noflush` text these functions return, and reports the findings.

Why this exists (issue 15, item 5): dockerd loads br_netfilter and sets the iptables FORWARD
policy to DROP. In nftables an accept is final only in its own base chain: every base chain at
the forward hook must accept, so `policy accept` in our own `inet shipslog` table cannot save a
packet that Docker's `ip filter FORWARD` drops. Like Podman's netavark (NETAVARK_FORWARD) and
libvirt, we add accept rules for our own bridges in that chain, through the `iptables` binary
the host (and dockerd) uses, so iptables-nft keeps understanding its table:

    FORWARD          -j DOCKER-USER (if Docker made it: users' rules still come first)
                     -j SHIPSLOG-FORWARD   (base: one jump, inserted right after DOCKER-USER)
    SHIPSLOG-FORWARD per network, each rule commented `slg:net:<network id>`:
                     -i BR -o BR -j ACCEPT                      (within the bridge; br_netfilter
                                                                 sends bridged frames here)
                     -i BR -j ACCEPT                            (from the bridge out; not
                                                                 --internal)
                     -o BR ctstate RELATED,ESTABLISHED -j ACCEPT  (replies into it)
                     -o BR ctstate DNAT -j ACCEPT               (published ports)

Docker's DOCKER-ISOLATION-STAGE-1/2 chains match only its own bridges (`-i docker0 ! -o
docker0`), so they neither need nor touch ours. These rules only let our traffic past other
tables' drop policies; what may flow between our
bridges is still decided by the `isolate` chain of our own table (engine/core/nft_plan.py),
whose drops stay final.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from engine.core.errors import InvalidArgument
from engine.core.nft_plan import owner_comment, parse_owner

CHAIN = "SHIPSLOG-FORWARD"
JUMP = f"-A FORWARD -j {CHAIN}"
DOCKER_USER_JUMP = "-A FORWARD -j DOCKER-USER"
_IFNAME = re.compile(r"^slg[a-z0-9-]{1,12}$")
_COMMENT = re.compile(r'--comment "?([^" ]+)"?')


@dataclass(frozen=True)
class ForwardRule:
    """One rule of our chain as `iptables -S` prints it, with its owner (or None)."""

    spec: str  # "-A SHIPSLOG-FORWARD -i slg-x -m comment --comment slg:net:… -j ACCEPT"
    owner: str | None


def network_rules(network_id: str, bridge: str, *, internal: bool = False) -> list[str]:
    """The `-A` specs one network owns, written as `iptables -S` prints them back (so that
    a rule already present compares equal and is not rewritten)."""
    if not _IFNAME.match(bridge):
        raise InvalidArgument(f"invalid bridge name {bridge!r}", hint="bridges are named slg-…")
    c = f'-m comment --comment "{owner_comment("net", network_id)}"'
    if internal:
        return [f"-A {CHAIN} -i {bridge} -o {bridge} {c} -j ACCEPT"]
    return [
        f"-A {CHAIN} -i {bridge} {c} -j ACCEPT",
        f"-A {CHAIN} -o {bridge} {c} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        f"-A {CHAIN} -o {bridge} {c} -m conntrack --ctstate DNAT -j ACCEPT",
    ]


def parse_chain(lines: list[str]) -> list[ForwardRule]:
    """The rules of our chain from `iptables -S SHIPSLOG-FORWARD` output."""
    out = []
    for line in lines:
        if not line.startswith(f"-A {CHAIN} "):
            continue
        m = _COMMENT.search(line)
        owner = parse_owner(m.group(1)) if m else None
        out.append(ForwardRule(spec=line.strip(), owner=owner[1] if owner else None))
    return out


def jump_position(forward: list[str]) -> int | None:
    """Where our jump goes in FORWARD (1-based), or None when it is already there: right
    after Docker's DOCKER-USER jump, so rules a user put there still apply first (Docker's
    documented place for them; RELIABILITY S-07), else at the top."""
    rules = [line.strip() for line in forward if line.startswith("-A FORWARD ")]
    if JUMP in rules:
        return None
    if DOCKER_USER_JUMP in rules:
        return rules.index(DOCKER_USER_JUMP) + 2
    return 1


def _restore(lines: list[str]) -> str:
    return "*filter\n" + "".join(line + "\n" for line in lines) + "COMMIT\n"


def base_transaction(forward: list[str], chain_exists: bool) -> str | None:
    """Create our chain and the jump into it, as far as they are missing, and drop extra
    copies of the jump (two daemons that raced an older, unlocked ensure left two; each
    would send a packet through our chain twice). None: nothing to do."""
    lines = [] if chain_exists else [f":{CHAIN} - [0:0]"]
    pos = jump_position(forward)
    if pos is not None:
        lines.append(f"-I FORWARD {pos} -j {CHAIN}")
    extra = [line.strip() for line in forward].count(JUMP) - 1
    lines += [f"-D FORWARD -j {CHAIN}"] * max(extra, 0)
    return _restore(lines) if lines else None


def replace_transaction(present: list[ForwardRule], owner: str, want: list[str]) -> str | None:
    """Make the owner's rules exactly `want` (None: they already are)."""
    have = [r.spec for r in present if r.owner == owner]
    if have == want:
        return None
    lines = ["-D" + spec[2:] for spec in have] + want
    return _restore(lines)


def delete_transaction(present: list[ForwardRule], owner: str) -> str | None:
    return replace_transaction(present, owner, [])


def remove_transaction(present: list[ForwardRule], forward: list[str]) -> str | None:
    """Drop the jump and the chain once no owner has a rule left in it (the last network is
    gone); None while one has. Both in one transaction: if another daemon adds a rule
    meanwhile, the chain is not empty and the whole transaction fails, keeping the jump."""
    if any(r.owner for r in present):
        return None
    lines = ["-D" + r.spec[2:] for r in present]
    if JUMP in (line.strip() for line in forward):
        lines.append(f"-D FORWARD -j {CHAIN}")
    lines.append(f"-X {CHAIN}")
    return _restore(lines)


# -- which other firewall managers would drop our traffic ---------------------------------


@dataclass(frozen=True)
class FirewallFacts:
    """What the driver saw on the host; the verdict below is pure."""

    iptables: str = ""  # "" when no iptables binary, else its version line
    forward_policy: str = ""  # the iptables filter FORWARD policy: "ACCEPT", "DROP", ""
    iptables_chains: frozenset[str] = frozenset()  # user chains of the filter table
    bridge_nf_call_iptables: bool | None = None  # None: br_netfilter not loaded
    firewalld: bool = False
    ufw: bool = False
    dockerd: bool = False  # a dockerd process runs
    # (family, table, chain) of foreign nftables base chains at the forward hook with
    # policy drop; iptables-nft's own `ip filter FORWARD` is reported as the iptables policy
    nft_forward_drops: tuple[tuple[str, str, str], ...] = field(default_factory=tuple)
    our_jump: bool = False  # FORWARD jumps to SHIPSLOG-FORWARD


def findings(f: FirewallFacts) -> list[str]:
    """One line per firewall manager or setting that would drop our bridges' traffic without
    our accept rules, each saying what we do about it (shown by `info` and the daemon log)."""
    out = []
    docker = f.dockerd or bool({"DOCKER-USER", "DOCKER", "DOCKER-ISOLATION-STAGE-1"}
                               & f.iptables_chains)
    if f.forward_policy == "DROP":
        who = "dockerd" if docker else "a host firewall"
        state = "accepted by chain " + CHAIN if f.our_jump else "not yet accepted (no network)"
        out.append(f"iptables filter FORWARD policy DROP (set by {who}): "
                   f"shipslog bridges {state}")
    elif docker:
        out.append("dockerd: its DOCKER-USER chain applies before " + CHAIN)
    if f.bridge_nf_call_iptables:
        out.append("br_netfilter: bridge-nf-call-iptables=1, traffic within a bridge "
                   "traverses iptables FORWARD")
    if f.firewalld:
        out.append("firewalld is running: a reload flushes " + CHAIN
                   + "; restart shipslogd to restore it")
    if f.ufw:
        out.append("ufw is enabled: its forward policy applies; " + CHAIN + " accepts our bridges")
    for family, table, chain in f.nft_forward_drops:
        out.append(f"nftables table {family} {table}: chain {chain} drops forwarded packets "
                   "by policy; shipslog's accepts do not override it: allow slg-* there")
    return out


def foreign_forward_drops(ruleset: list[dict[str, object]]) -> tuple[tuple[str, str, str], ...]:
    """Base chains at the forward hook with policy drop, from `nft -j list chains` items,
    leaving out our own table and iptables' `ip filter FORWARD` (handled by our rules)."""
    out = []
    for item in ruleset:
        chain = item.get("chain") if isinstance(item, dict) else None
        if not isinstance(chain, dict):
            continue
        if chain.get("hook") != "forward" or chain.get("policy") != "drop":
            continue
        key = (str(chain.get("family")), str(chain.get("table")), str(chain.get("name")))
        if key[1] == "shipslog" or key in (("ip", "filter", "FORWARD"),):
            continue
        out.append(key)
    return tuple(out)
