"""The FORWARD accept-rule planner and the firewall verdict (engine/core/fwd_plan.py): pure."""

from __future__ import annotations

import pytest

from engine.core import fwd_plan as fp
from engine.core.errors import InvalidArgument

NID = "ab" * 32
OTHER = "cd" * 32


def test_a_network_accepts_within_out_and_replies_and_an_internal_one_only_within() -> None:
    rules = fp.network_rules(NID, "slg-ab12")
    assert [r.split(" -j ")[0].split(" -m comment")[0] for r in rules] == [
        "-A SHIPSLOG-FORWARD -i slg-ab12", "-A SHIPSLOG-FORWARD -o slg-ab12",
        "-A SHIPSLOG-FORWARD -o slg-ab12"]
    assert "RELATED,ESTABLISHED" in rules[1] and "--ctstate DNAT" in rules[2]
    assert all(f'--comment "slg:net:{NID}"' in r for r in rules)
    (internal,) = fp.network_rules(NID, "slg-ab12", internal=True)
    assert internal.startswith("-A SHIPSLOG-FORWARD -i slg-ab12 -o slg-ab12 ")


def test_a_foreign_bridge_name_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        fp.network_rules(NID, "docker0; -j DROP")


def test_rules_read_back_keep_their_owner() -> None:
    lines = ["-N SHIPSLOG-FORWARD", *fp.network_rules(NID, "slg-ab12"),
             "-A SHIPSLOG-FORWARD -i slg-zz -j ACCEPT", "-A FORWARD -j SHIPSLOG-FORWARD"]
    present = fp.parse_chain(lines)
    assert [r.owner for r in present] == [NID, NID, NID, None]


def test_the_jump_goes_after_docker_user_or_on_top_and_only_once() -> None:
    assert fp.jump_position(["-P FORWARD DROP"]) == 1
    docker = ["-P FORWARD DROP", "-A FORWARD -j DOCKER-USER",
              "-A FORWARD -j DOCKER-ISOLATION-STAGE-1"]
    assert fp.jump_position(docker) == 2
    assert fp.jump_position([*docker, "-A FORWARD -j SHIPSLOG-FORWARD"]) is None
    assert fp.base_transaction(docker, chain_exists=False) == (
        "*filter\n:SHIPSLOG-FORWARD - [0:0]\n-I FORWARD 2 -j SHIPSLOG-FORWARD\nCOMMIT\n")
    assert fp.base_transaction([*docker, "-A FORWARD -j SHIPSLOG-FORWARD"], True) is None


def test_base_drops_extra_jumps_two_racing_daemons_left() -> None:
    jump = "-A FORWARD -j SHIPSLOG-FORWARD"
    docker = ["-A FORWARD -j DOCKER-USER", jump, jump, "-A FORWARD -j DOCKER-FORWARD", jump]
    assert fp.base_transaction(docker, chain_exists=True) == (
        "*filter\n-D FORWARD -j SHIPSLOG-FORWARD\n-D FORWARD -j SHIPSLOG-FORWARD\nCOMMIT\n")


def test_replace_rewrites_only_what_differs_and_only_the_owners_rules() -> None:
    mine = fp.network_rules(NID, "slg-ab12")
    theirs = fp.network_rules(OTHER, "slg-cd34")
    present = fp.parse_chain(mine + theirs)
    assert fp.replace_transaction(present, NID, mine) is None
    text = fp.delete_transaction(present, NID)
    assert text is not None
    body = text.splitlines()[1:-1]
    assert body == ["-D" + r[2:] for r in mine]


def test_the_chain_goes_only_when_no_network_owns_a_rule() -> None:
    fwd = ["-A FORWARD -j SHIPSLOG-FORWARD"]
    assert fp.remove_transaction(fp.parse_chain(fp.network_rules(NID, "slg-ab12")), fwd) is None
    assert fp.remove_transaction([], fwd) == (
        "*filter\n-D FORWARD -j SHIPSLOG-FORWARD\n-X SHIPSLOG-FORWARD\nCOMMIT\n")


def test_findings_name_dockerd_br_netfilter_firewalld_ufw_and_foreign_drops() -> None:
    assert fp.findings(fp.FirewallFacts(forward_policy="ACCEPT")) == []
    found = fp.findings(fp.FirewallFacts(
        forward_policy="DROP", iptables_chains=frozenset({"DOCKER-USER"}), our_jump=True,
        bridge_nf_call_iptables=True, firewalld=True, ufw=True,
        nft_forward_drops=(("inet", "filter", "forward"),)))
    assert found[0] == ("iptables filter FORWARD policy DROP (set by dockerd): shipslog "
                        "bridges accepted by chain SHIPSLOG-FORWARD")
    assert [f.split(":")[0] for f in found[1:]] == [
        "br_netfilter", "firewalld is running", "ufw is enabled", "nftables table inet filter"]
    assert "a host firewall" in fp.findings(fp.FirewallFacts(forward_policy="DROP"))[0]


def test_foreign_drops_leave_out_iptables_filter_and_our_table() -> None:
    chains = [
        {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "hook": "forward",
                   "policy": "drop"}},
        {"chain": {"family": "inet", "table": "shipslog", "name": "filter_fwd",
                   "hook": "forward", "policy": "drop"}},
        {"chain": {"family": "inet", "table": "fw", "name": "fwd", "hook": "forward",
                   "policy": "drop"}},
        {"chain": {"family": "inet", "table": "fw", "name": "in", "hook": "input",
                   "policy": "drop"}},
        {"table": {"family": "inet", "name": "fw"}},
    ]
    assert fp.foreign_forward_drops(chains) == (("inet", "fw", "fwd"),)
