"""The macvlan and ipvlan network drivers (issue 20): every endpoint is a sub-interface of
the network's parent link, inside the container's namespace; no bridge, no NAT, no veth.

I/O: kernel, through `engine.drivers.network.netlink.Netlink` (rtnetlink, in the host
namespace and, for an endpoint, in the container's). The parent is the user's link, a VLAN
sub-interface of it that we make and remove (`parent=eth0.10`), or a dummy link of ours for
an `--internal` network with no parent.
"""

from __future__ import annotations

from engine.core.net_plan import ParentPlan, VethPlan
from engine.drivers.network.netlink import Netlink, configure_peer
from engine.drivers.network.netns import run_in_netns
from engine.drivers.network.seam import OWNED_ALIAS, LinkInfo, NetworkPlan


class SubLinkDriver:
    def __init__(self, netlink: Netlink, kind: str) -> None:
        self.netlink = netlink
        self.kind = kind  # "macvlan" or "ipvlan"

    def create_network(self, plan: NetworkPlan) -> None:
        assert isinstance(plan, ParentPlan)
        self.netlink.ensure_parent(plan)

    def delete_network(self, plan: NetworkPlan) -> None:
        assert isinstance(plan, ParentPlan)
        self.netlink.delete_parent(plan)

    def create_endpoint(self, plan: VethPlan) -> str:
        return self.netlink.add_sublink(plan)

    def join(self, plan: VethPlan) -> None:
        run_in_netns(plan.netns_path, configure_peer, plan)

    def leave(self, sandbox: str, endpoint_id: str) -> None:
        """The sub-interface holds nothing outside itself: `delete_endpoint` takes it."""

    def delete_endpoint(self, sandbox: str, endpoint_id: str) -> None:
        self.netlink.delete_sublink(sandbox, endpoint_id)

    def list_links(self) -> list[LinkInfo]:
        """Parents we made, and sub-interfaces a crash left in the host namespace."""
        return [li for li in self.netlink.list_links()
                if li.kind == self.kind or li.alias.startswith(OWNED_ALIAS)]
