"""The veth pair's RTM_NEWLINK as `rawveth` encodes it by hand, read back with pyroute2's
decoder: the host end's name, MTU, bridge and up flag, the peer's name, namespace fd, MAC and
MTU (what pyroute2's `link("add", kind="veth", …)` sent before, issue 14). Pure: no socket."""

from __future__ import annotations

from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from engine.core.net_plan import VethPlan
from engine.drivers.network.rawveth import veth_message

PLAN = VethPlan(host_ifname="slg0123456789ab", peer_ifname="eth1", bridge="slg-br",
                netns_path="/run/x", ip_cidr="10.9.0.2/24", gateway="10.9.0.1",
                mac="02:42:0a:09:00:02", mtu=1450)


def test_the_message_pyroute2_reads_back() -> None:
    msg = ifinfmsg(veth_message(PLAN, bridge_index=7, ns_fd=42, seq=9))
    msg.decode()
    assert msg["header"]["type"] == 16 and msg["header"]["sequence_number"] == 9
    assert msg["header"]["flags"] == 0x1 | 0x4 | 0x200 | 0x400  # create, exclusive, ack
    assert msg["flags"] & 1 and msg["change"] & 1  # up
    assert msg.get_attr("IFLA_IFNAME") == "slg0123456789ab"
    assert msg.get_attr("IFLA_MTU") == 1450 and msg.get_attr("IFLA_MASTER") == 7
    info = msg.get_attr("IFLA_LINKINFO")
    assert info.get_attr("IFLA_INFO_KIND") == "veth"
    peer = info.get_attr("IFLA_INFO_DATA").get_attr("VETH_INFO_PEER")
    assert peer.get_attr("IFLA_IFNAME") == "eth1"
    assert peer.get_attr("IFLA_NET_NS_FD") == 42
    assert peer.get_attr("IFLA_ADDRESS") == "02:42:0a:09:00:02"
    assert peer.get_attr("IFLA_MTU") == 1450
