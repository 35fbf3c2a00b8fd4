"""The bridge network driver (Docker's default): a Linux bridge per network, a veth pair per
endpoint with its host end enslaved to the bridge.

I/O: kernel, through `engine.drivers.network.netlink.Netlink` (rtnetlink). It is the CNM
face of what `Netlink` already did: `create_endpoint` + `join` are `Netlink.connect` in two
steps, with its rule that a kept pair which cannot be configured is replaced once.
"""

from __future__ import annotations

from engine.core.errors import KernelError
from engine.core.net_plan import BridgePlan, VethPlan
from engine.drivers.network.netlink import Netlink, configure_peer
from engine.drivers.network.netns import run_in_netns
from engine.drivers.network.seam import LinkInfo, NetworkPlan


class BridgeDriver:
    def __init__(self, netlink: Netlink) -> None:
        self.netlink = netlink
        self._kept: set[str] = set()  # pairs `create_endpoint` found in place, not made

    def create_network(self, plan: NetworkPlan) -> None:
        assert isinstance(plan, BridgePlan)
        self.netlink.ensure_bridge(plan)

    def delete_network(self, plan: NetworkPlan) -> None:
        assert isinstance(plan, BridgePlan)
        self.netlink.delete_bridge(plan.name)

    def create_endpoint(self, plan: VethPlan) -> str:
        if self.netlink.make_pair(plan, keep_existing=True):
            self._kept.add(plan.host_ifname)
        else:
            self._kept.discard(plan.host_ifname)
        return plan.host_ifname

    def join(self, plan: VethPlan) -> None:
        kept = plan.host_ifname in self._kept
        self._kept.discard(plan.host_ifname)
        try:
            run_in_netns(plan.netns_path, configure_peer, plan)
            return
        except OSError as exc:
            if not kept:
                raise KernelError(f"cannot configure {plan.peer_ifname} in "
                                  f"{plan.netns_path}: {exc}") from exc
        # A pair from an earlier run that is not what the plan says: made again, once.
        self.netlink.make_pair(plan, keep_existing=False)
        try:
            run_in_netns(plan.netns_path, configure_peer, plan)
        except OSError as exc:
            raise KernelError(f"cannot configure {plan.peer_ifname} in {plan.netns_path}: "
                              f"{exc}") from exc

    def leave(self, sandbox: str, endpoint_id: str) -> None:
        """Nothing to undo apart from the pair itself (`delete_endpoint`)."""

    def delete_endpoint(self, sandbox: str, endpoint_id: str) -> None:
        self.netlink.disconnect(endpoint_id)

    def list_links(self) -> list[LinkInfo]:
        return [li for li in self.netlink.list_links() if li.kind in ("bridge", "veth")]
