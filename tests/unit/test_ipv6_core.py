"""IPv6 and dual-stack networks in the pure parts (issue 13): the create decision (refusals
before anything is recorded), Docker's IPAM.Config pairing, the veth/bridge plans, the nft
rules of both families, AAAA answers and the inspect rendering."""

from __future__ import annotations

import pytest
from dnslib import QTYPE, DNSRecord

from engine.api.docker.reads import render_network
from engine.cli.errors import UsageError
from engine.cli.networks import ipam_configs
from engine.core.errors import Conflict, InvalidArgument, KernelError
from engine.core.net_plan import plan_bridge, plan_veth
from engine.core.networks import decide_network_create, split_ipam
from engine.core.nft_plan import NetworkRules, network_rules
from engine.drivers.network.dns import local_answer
from engine.testing.rig import Machine, open_rig
from events import vocabulary as v
from events.envelope import Actor, Envelope
from projections.fold import fold
from projections.state import EngineState, NetworkView

NID = "a" * 64
CID = "c" * 64


def _create(state: EngineState | None = None, **kw: object) -> EngineState:
    state = state or EngineState()
    d = decide_network_create(state, kw.pop("name", "dual"), op_id="op1",  # type: ignore[arg-type]
                              network_id=str(kw.pop("network_id", NID)), host_routes=[], **kw)
    envs = [Envelope(seq=state.seq + i + 1, stream=p.stream, stream_version=1,
                     schema_version=1, recorded_at=1, actor=Actor(uid=0, gid=0, pid=1),
                     op_id="op1", event=p.event) for i, p in enumerate(d.pending)]
    return fold(envs, state=state)


def test_dual_stack_create_records_both_pools_canonically() -> None:
    net = _create(subnet="10.5.0.0/24", enable_ipv6=True,
                  subnet6="2001:DB8:0:0::/64").networks[NID]
    assert (net.enable_ipv6, net.subnet6, net.gateway6) == (True, "2001:db8::/64", "2001:db8::1")
    assert (net.subnet, net.gateway) == ("10.5.0.0/24", "10.5.0.1")


@pytest.mark.parametrize("kw, error, text", [
    # Docker 24/25 have no default IPv6 pool (moby ipam getPredefinedPool)
    ({"enable_ipv6": True}, InvalidArgument, "non-overlapping IPv6 address pool"),
    ({"subnet6": "2001:db8::/64"}, InvalidArgument, "IPv6 is not enabled"),
    ({"enable_ipv6": True, "subnet6": "2001:db8::/129"}, InvalidArgument, "invalid CIDR"),
    ({"enable_ipv6": True, "subnet6": "10.9.0.0/24"}, InvalidArgument, "not an IPv6 subnet"),
    # the v6 subnet where the v4 one goes: this was recorded, then a 500 (issue 13)
    ({"subnet": "2001:db8::/64", "enable_ipv6": True}, InvalidArgument, "not an IPv4 subnet"),
    ({"enable_ipv6": True, "subnet6": "2001:db8::/64", "gateway6": "2001:db9::1"},
     InvalidArgument, "not in subnet"),
    ({"enable_ipv6": True, "subnet6": "2001:db8::/64", "ip_range6": "2001:db9::/80"},
     InvalidArgument, "not inside subnet"),
    ({"gateway6": "2001:db8::1"}, InvalidArgument, "needs an IPv6 subnet"),
])
def test_bad_ipv6_input_is_refused_before_anything_is_recorded(
        kw: dict[str, object], error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        decide_network_create(EngineState(), "net6", op_id="o", network_id=NID, host_routes=[],
                              **kw)  # type: ignore[arg-type]


def test_overlapping_v6_subnets_conflict() -> None:
    state = _create(enable_ipv6=True, subnet6="fd00:1::/64")
    with pytest.raises(Conflict, match="overlaps"):
        _create(state, name="other", network_id="b" * 64, enable_ipv6=True,
                subnet6="fd00:1::/96")


def test_split_ipam_pairs_each_config_with_its_family() -> None:
    assert split_ipam([("10.1.0.0/24", "10.1.0.254", ""),
                       ("fd00::/64", "fd00::fe", "fd00::/80")]) == {
        "subnet": "10.1.0.0/24", "gateway": "10.1.0.254", "subnet6": "fd00::/64",
        "gateway6": "fd00::fe", "ip_range6": "fd00::/80"}
    with pytest.raises(InvalidArgument, match="more than one IPv6"):
        split_ipam([("fd00::/64", "", ""), ("fd01::/64", "", "")])
    with pytest.raises(InvalidArgument, match="invalid CIDR"):
        split_ipam([("fd00::/200", "", "")])


def test_cli_pairs_gateways_and_ranges_with_their_subnet() -> None:
    assert ipam_configs(["10.1.0.0/24", "fd00::/64"], ["fd00::9", "10.1.0.9"], []) == [
        {"Subnet": "10.1.0.0/24", "Gateway": "10.1.0.9"},
        {"Subnet": "fd00::/64", "Gateway": "fd00::9"}]
    with pytest.raises(UsageError):
        ipam_configs(["10.1.0.0/24"], ["fd00::9"], [])


def test_plans_carry_the_v6_address_gateway_and_bridge_address() -> None:
    bridge = plan_bridge("slg-aaaaaaaaaaa", "10.5.0.0/24", "10.5.0.1", subnet6="fd00::/64",
                         gateway6="fd00::1")
    assert bridge.gateway6_cidr == "fd00::1/64"
    veth = plan_veth(CID, NID, bridge="slg-aaaaaaaaaaa", subnet="10.5.0.0/24",
                     gateway="10.5.0.1", ip="10.5.0.2", netns_path="/x", subnet6="fd00::/64",
                     gateway6="fd00::1", ip6="fd00::2")
    assert (veth.ip6_cidr, veth.gateway6, veth.ip_cidr) == ("fd00::2/64", "fd00::1",
                                                             "10.5.0.2/24")
    v4_only = plan_veth(CID, NID, bridge="slg-aaaaaaaaaaa", subnet="10.5.0.0/24",
                        gateway="10.5.0.1", ip="10.5.0.2", netns_path="/x")
    assert v4_only.ip6_cidr == "" and plan_bridge(
        "slg-aaaaaaaaaaa", "10.5.0.0/24", "10.5.0.1").gateway6_cidr == ""
    with pytest.raises(InvalidArgument):
        plan_veth(CID, NID, bridge="slg-aaaaaaaaaaa", subnet="10.5.0.0/24",
                  gateway="10.5.0.1", ip="10.5.0.2", netns_path="/x", subnet6="fd00::/64",
                  gateway6="fd00::1", ip6="fd01::2")


def test_nft_rules_match_each_family_with_its_own_address_type() -> None:
    rules = network_rules(NetworkRules(network_id=NID, bridge="slg-aaaaaaaaaaa",
                                       subnet="10.5.0.0/24", subnet6="fd00::/64"))
    text = "\n".join(rules)
    assert "ip6 daddr fd00::/64 drop" in text
    assert "masq ip6 saddr fd00::/64" in text
    assert "ip daddr fd00" not in text and "ip saddr fd00" not in text
    v4 = network_rules(NetworkRules(network_id=NID, bridge="slg-aaaaaaaaaaa",
                                    subnet="10.5.0.0/24"))
    assert not any("ip6" in r for r in v4)
    assert [r for r in rules if " ip6 " not in r] == v4  # the v4 rules are unchanged


def test_dns_answers_aaaa_with_the_v6_address_and_a_with_the_v4_one() -> None:
    def lookup(_nid: str, name: str, _client: str) -> list[str]:
        return ["10.5.0.2", "fd00::2"] if name == "web" else []

    aaaa = DNSRecord.parse(local_answer(NID, DNSRecord.question("web", "AAAA").pack(), lookup))
    assert [(r.rtype, str(r.rdata)) for r in aaaa.rr] == [(QTYPE.AAAA, "fd00::2")]
    a = DNSRecord.parse(local_answer(NID, DNSRecord.question("web", "A").pack(), lookup))
    assert [(r.rtype, str(r.rdata)) for r in a.rr] == [(QTYPE.A, "10.5.0.2")]


def test_inspect_shows_enable_ipv6_and_one_ipam_config_per_pool() -> None:
    net = NetworkView(id=NID, name="dual", subnet="10.5.0.0/24", gateway="10.5.0.1",
                      enable_ipv6=True, subnet6="fd00::/64", gateway6="fd00::1",
                      bridge="slg-aaaaaaaaaaa")
    out = render_network(EngineState(), net)
    assert out["EnableIPv6"] is True
    assert out["IPAM"]["Config"] == [{"Subnet": "10.5.0.0/24", "Gateway": "10.5.0.1"},
                                     {"Subnet": "fd00::/64", "Gateway": "fd00::1"}]
    v4 = render_network(EngineState(), NetworkView(id=NID, name="v4", subnet="10.5.0.0/24",
                                                   gateway="10.5.0.1"))
    assert v4["EnableIPv6"] is False and len(v4["IPAM"]["Config"]) == 1


# --- a create the kernel refuses is compensated on the record --------------------------------


async def test_kernel_failure_on_create_is_recorded_and_compensated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The network shell with a kernel that refuses the bridge (the fake network seam's
    injected fault): the create is undone, on the record."""
    machine = Machine(db=tmp_path / "events.db")
    async with open_rig(machine) as rig:
        machine.faults.fail("net.create_network",
                            KernelError("cannot set up the bridge: Operation not permitted"))
        with pytest.raises(KernelError):
            await rig.engine.create_network("dual", Actor(uid=0, gid=0, pid=1),
                                            enable_ipv6=True, subnet6="fd00:9::/64")
        state = rig.journal.state
        created = [e.event for e in rig.store.read()
                   if isinstance(e.event, v.NetworkCreated) and e.event.name == "dual"]
        assert "dual" not in state.network_names and len(created) == 1
        nid, bridge = created[0].network_id, created[0].bridge
        assert nid not in state.networks and bridge not in machine.net.links
        assert ("net.delete_network", (bridge,)) in machine.faults.calls
        kinds = [e.event for e in rig.store.read() if getattr(e.event, "network_id", "") == nid
                 or type(e.event).__name__ == "OperationFailed"]
        assert [type(k).__name__ for k in kinds] == ["NetworkCreated", "OperationFailed",
                                                      "NetworkRemoved"]
        assert "Operation not permitted" in kinds[1].error and not kinds[1].needs_cleanup
