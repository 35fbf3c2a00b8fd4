"""The network planners: names, MACs, veth/bridge plans and the nftables ruleset text."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import engine.core
from engine.core import nft_plan as nftplan
from engine.core.errors import Conflict, InvalidArgument
from engine.core.net_plan import (
    BRIDGE_MAX_PORTS,
    IFNAMSIZ,
    check_bridge_capacity,
    container_ifname,
    mac_for_ip,
    netns_name,
    plan_bridge,
    plan_veth,
    veth_name,
)
from engine.core.nft_plan import NetworkRules, OwnedRule, Publish

CID = "0123456789abcdef" * 4
NID = "fedcba9876543210" * 4


def test_names_are_short_prefixed_and_deterministic() -> None:
    assert netns_name(CID) == "slg-0123456789ab"
    v = veth_name(CID, NID)
    assert v.startswith("slg") and "-" not in v and len(v) <= IFNAMSIZ
    assert v == veth_name(CID, NID)
    assert v != veth_name(CID, "ab" * 32) != veth_name("ab" * 32, NID)
    assert container_ifname(0) == "eth0" and container_ifname(2) == "eth2"


@pytest.mark.parametrize("bad", ["", "../etc", "ABC", "0123\n"])
def test_names_refuse_non_hex_ids(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        netns_name(bad)
    with pytest.raises(InvalidArgument):
        veth_name(bad, NID)


def test_mac_is_dockers_02_42_plus_ipv4_bytes() -> None:
    assert mac_for_ip("172.17.0.2") == "02:42:ac:11:00:02"
    assert mac_for_ip("10.211.0.255") == "02:42:0a:d3:00:ff"


def test_plans_carry_prefix_gateway_and_mac() -> None:
    b = plan_bridge("slg-fedcba98765", "10.211.4.0/24", "10.211.4.1")
    assert b.gateway_cidr == "10.211.4.1/24"
    v = plan_veth(CID, NID, bridge=b.name, subnet="10.211.4.0/24", gateway="10.211.4.1",
                  ip="10.211.4.7", netns_path="/run/x/netns/slg-0123456789ab", ifname="eth1",
                  default_route=False)
    assert (v.ip_cidr, v.mac, v.peer_ifname, v.default_route) == (
        "10.211.4.7/24", "02:42:0a:d3:04:07", "eth1", False)
    assert v.host_ifname == veth_name(CID, NID)


def test_plans_refuse_addresses_outside_the_subnet_and_bad_ifnames() -> None:
    with pytest.raises(InvalidArgument):
        plan_bridge("slg-x", "10.211.4.0/24", "10.211.5.1")
    with pytest.raises(InvalidArgument):
        plan_veth(CID, NID, bridge="slg-x", subnet="10.211.4.0/24", gateway="10.211.4.1",
                  ip="10.211.9.7", netns_path="/n")
    with pytest.raises(InvalidArgument):
        plan_veth(CID, NID, bridge="slg-x", subnet="10.211.4.0/24", gateway="10.211.4.1",
                  ip="10.211.4.7", netns_path="/n", ifname="eth0\n")
    with pytest.raises(InvalidArgument):
        plan_bridge("a-bridge-name-too-long", "10.211.4.0/24", "10.211.4.1")


def test_bridge_capacity_is_refused_before_the_kernel_says_exchange_full() -> None:
    check_bridge_capacity(BRIDGE_MAX_PORTS - 1)
    with pytest.raises(Conflict, match="network capacity reached"):
        check_bridge_capacity(BRIDGE_MAX_PORTS)


# -- nftables ----------------------------------------------------------------------------


def test_base_ruleset_guards_loopback_before_nat_and_never_owns_rules() -> None:
    text = nftplan.base_ruleset()
    assert "add table inet shipslog\n" in text
    guard = next(line for line in text.splitlines() if "127.0.0.0/8 counter drop" in line)
    assert guard.startswith("add rule inet shipslog raw_pre ") and 'iifname != "lo"' in guard
    assert "priority raw" in text
    # base chains are flushed and rewritten, owned chains are only declared
    for chain in nftplan.BASE_CHAINS:
        assert f"flush chain inet shipslog {chain}\n" in text
    for chain in nftplan.OWNED_CHAINS:
        assert f"flush chain inet shipslog {chain}\n" not in text
    assert "slg:net:" not in text and "slg:ctr:" not in text
    # loopback traffic never jumps to publish from the output hook (it goes to the proxy)
    assert "nat_out ip daddr != 127.0.0.0/8 fib daddr type local jump publish" in text


def test_network_rules_masquerade_only_when_not_internal() -> None:
    net = NetworkRules(network_id=NID, bridge="slg-fedcba98765", subnet="10.211.4.0/24")
    lines = nftplan.network_rules(net)
    assert all(line.endswith(f'comment "slg:net:{NID}"') for line in lines)
    assert any("masq ip saddr 10.211.4.0/24 oifname != \"slg-fedcba98765\" masquerade" in line
               for line in lines)
    internal = nftplan.network_rules(NetworkRules(network_id=NID, bridge="slg-fedcba98765",
                                                  subnet="10.211.4.0/24", internal=True))
    assert not any("masquerade" in line for line in internal)
    assert any('iifname "slg-fedcba98765" oifname != "slg-fedcba98765" drop' in line
               for line in internal)


def test_publish_rules_dnat_each_port_and_pin_the_host_address() -> None:
    lines = nftplan.publish_rules(CID, [
        Publish(container_ip="10.211.4.7", container_port=80, host_port=8080),
        Publish(container_ip="10.211.4.7", container_port=80, host_port=8081,
                host_ip="127.0.0.1"),
        Publish(container_ip="10.211.4.7", container_port=53, host_port=5353, proto="udp",
                host_ip="0.0.0.0"),
    ])
    assert lines == [
        f'add rule inet shipslog publish tcp dport 8080 dnat ip to 10.211.4.7:80 '
        f'comment "slg:ctr:{CID}"',
        f'add rule inet shipslog publish ip daddr 127.0.0.1 tcp dport 8081 dnat ip to '
        f'10.211.4.7:80 comment "slg:ctr:{CID}"',
        f'add rule inet shipslog publish udp dport 5353 dnat ip to 10.211.4.7:53 '
        f'comment "slg:ctr:{CID}"',
    ]


@pytest.mark.parametrize("bad", [
    Publish(container_ip="10.0.0.1", container_port=80, host_port=0),
    Publish(container_ip="10.0.0.1", container_port=70000, host_port=80),
    Publish(container_ip="10.0.0.1", container_port=80, host_port=80, proto="icmp"),
    Publish(container_ip="10.0.0.1; flush ruleset", container_port=80, host_port=80),
    Publish(container_ip="10.0.0.1", container_port=80, host_port=80, host_ip="lo\n"),
])
def test_publish_rules_refuse_anything_that_is_not_a_port_or_address(bad: Publish) -> None:
    with pytest.raises((InvalidArgument, ValueError)):
        nftplan.publish_rules(CID, [bad])


def test_rule_text_cannot_be_injected_through_names() -> None:
    with pytest.raises(InvalidArgument):
        nftplan.network_rules(NetworkRules(network_id=NID, bridge='slg-x" accept; "',
                                           subnet="10.211.4.0/24"))
    with pytest.raises(InvalidArgument):
        nftplan.owner_comment("ctr", 'abc" drop')


def test_owner_comments_round_trip() -> None:
    assert nftplan.parse_owner(nftplan.owner_comment("ctr", CID)) == ("ctr", CID)
    assert nftplan.parse_owner(nftplan.owner_comment("net", NID)) == ("net", NID)
    assert nftplan.parse_owner("slg:base") is None
    assert nftplan.parse_owner("someone else's rule") is None


def test_replace_transaction_deletes_stale_handles_then_adds_in_one_text() -> None:
    stale = [OwnedRule(kind="ctr", owner=CID, chain="publish", handle=12)]
    add = nftplan.publish_rules(CID, [Publish(container_ip="10.211.4.7", container_port=80,
                                              host_port=8080)])
    text = nftplan.replace_transaction(stale, add)
    lines = text.splitlines()
    assert lines.index("delete rule inet shipslog publish handle 12") < lines.index(add[0])
    assert lines[0] == "add table inet shipslog"


def test_planners_stay_pure() -> None:
    """STYLE.md: planners return data; only engine/drivers/ touches the kernel."""
    banned = {"os", "subprocess", "socket", "pyroute2", "sqlite3", "trio", "ctypes", "shutil",
              "dnslib", "fcntl", "threading"}
    for path in Path(engine.core.__file__).parent.glob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
        assert not imported & banned, f"{path.name} imports {imported & banned}"


def _listed_base(**changes: object) -> list[dict[str, object]]:
    """The items `nft -j list table inet shipslog` shows right after `base_ruleset()`."""
    items: list[dict[str, object]] = []
    hooks = {"raw_pre": ("filter", "prerouting", -300), "nat_pre": ("nat", "prerouting", -100),
             "nat_out": ("nat", "output", -100), "nat_post": ("nat", "postrouting", 100),
             "filter_fwd": ("filter", "forward", 0)}
    for name, (kind, hook, prio) in hooks.items():
        items.append({"chain": {"name": name, "type": kind, "hook": hook, "prio": prio,
                                "policy": "accept"}})
    items += [{"chain": {"name": name}} for name in nftplan.OWNED_CHAINS]
    comments = [("raw_pre", nftplan.GUARD_COMMENT), ("raw_pre", nftplan.BASE_COMMENT),
                ("nat_pre", "slg:base"), ("nat_out", "slg:base"), ("nat_post", "slg:base"),
                ("filter_fwd", "slg:base")]
    items += [{"rule": {"chain": c, "comment": k, "expr": []}} for c, k in comments]
    items += [{"rule": {"chain": "publish", "comment": "slg:ctr:" + "a" * 64, "expr": []}}]
    for key, value in changes.items():
        if key == "extra_rule":
            items.append({"rule": {"chain": value, "expr": []}})
        elif key == "drop_chain":
            items = [i for i in items if i.get("chain", {}).get("name") != value]  # type: ignore[attr-defined]
        elif key == "policy":
            for i in items:
                if i.get("chain", {}).get("name") == "filter_fwd":  # type: ignore[attr-defined]
                    i["chain"]["policy"] = value  # type: ignore[index]
    return items


def test_a_base_already_in_place_is_left_alone_and_any_difference_rewrites_it() -> None:
    assert nftplan.base_in_place(_listed_base())  # owned rules in regular chains don't matter
    assert not nftplan.base_in_place([])
    assert not nftplan.base_in_place(_listed_base(extra_rule="filter_fwd"))
    assert not nftplan.base_in_place(_listed_base(drop_chain="isolate"))
    assert not nftplan.base_in_place(_listed_base(drop_chain="nat_out"))
    assert not nftplan.base_in_place(_listed_base(policy="drop"))
