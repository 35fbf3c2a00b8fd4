"""Batched veth deletion on the real kernel (issue 14): endpoints deleted at the same time go in
one group deletion, leave no link behind on either side, and never take a link that is not
ours with them — not even one a stranger put into the very group the batch uses.

Everything happens in a network namespace the test makes as the drivers' "host" (never on the
machine's own links), with sandboxes under the test's temporary directory; all of it is
removed at the end.

I/O: kernel (rtnetlink, network namespaces, bind mounts under tmp_path).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.core.net_plan import VethPlan, netns_name, plan_bridge, plan_veth
from engine.drivers.network import netns
from engine.drivers.network.bridge import BridgeDriver
from engine.drivers.network.netlink import Netlink

pytestmark = pytest.mark.kernel

NID = "ef" * 32
BRIDGE = "slg-" + NID[:11]


@dataclass
class Lab:
    root: Path
    host: str
    netlink: Netlink
    driver: BridgeDriver

    def links(self) -> dict[str, int]:
        """name -> link group, in the lab's host namespace."""
        def read() -> dict[str, int]:
            from pyroute2 import IPRoute

            with IPRoute() as ipr:
                return {li.get("ifname"): int(li.get("IFLA_GROUP") or 0)
                        for li in ipr.get_links() if li.get("ifname") != "lo"}
        return dict(netns.run_in_netns(self.host, read))

    def stranger(self, name: str, group: int) -> None:
        """A veth pair of someone else's, its end `name` in link group `group`."""
        def add() -> None:
            from pyroute2 import IPRoute

            with IPRoute() as ipr:
                ipr.link("add", ifname=name, kind="veth", peer=name + "p")
                ipr.link("set", ifname=name, group=group)
        netns.run_in_netns(self.host, add)

    def endpoints(self, n: int) -> list[VethPlan]:
        plans = []
        for i in range(n):
            cid = f"{i:02x}" * 32
            path = netns.create_netns(self.root / "netns", netns_name(cid))
            plan = plan_veth(cid, NID, bridge=BRIDGE, subnet="10.232.0.0/24",
                             gateway="10.232.0.1", ip=f"10.232.0.{i + 2}", netns_path=path)
            self.driver.create_endpoint(plan)
            self.driver.join(plan)
            plans.append(plan)
        return plans

    def peers(self, plans: list[VethPlan]) -> list[str]:
        """The container ends still in the sandboxes."""
        found = []
        for p in plans:
            names = netns.run_in_netns(p.netns_path, socket.if_nameindex)
            found += [f"{p.netns_path}:{n}" for _, n in names if n != "lo"]
        return found


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    name = "slg-" + os.urandom(6).hex()
    host = netns.create_netns(tmp_path / "labns", name)
    netlink: Netlink | None = None
    try:  # from here on everything made is removed, whatever fails
        netlink = Netlink(netns=host, owner=str(tmp_path))
        netlink.ensure_bridge(plan_bridge(BRIDGE, "10.232.0.0/24", "10.232.0.1"))
        yield Lab(root=tmp_path, host=host, netlink=netlink, driver=BridgeDriver(netlink))
    finally:
        for sandbox in netns.list_netns(tmp_path / "netns"):
            netns.delete_netns(tmp_path / "netns", sandbox)
        if netlink is not None:
            netlink.close()
        netns.delete_netns(tmp_path / "labns", name)


def _delete_together(lab: Lab, plans: list[VethPlan]) -> None:
    """Every endpoint's deletion from its own thread, the way the daemon's worker threads run
    them, with the first batch held at the driver's lock until all have queued (those that
    came within the first leader's linger are in its batch, the rest in the next)."""
    with lab.netlink._lock:  # the first batch's leader waits here
        threads = [threading.Thread(target=lab.driver.delete_endpoint,
                                    args=(p.netns_path, p.host_ifname)) for p in plans]
        for t in threads:
            t.start()
        batcher = lab.netlink._deleter
        deadline = time.monotonic() + 30
        while batcher.pending < len(plans):  # every one queued or in the first batch
            assert time.monotonic() < deadline, "the deletions did not queue"
            time.sleep(0.001)
    for t in threads:
        t.join(30)


def test_endpoints_deleted_together_go_in_one_group_and_leave_nothing(lab: Lab) -> None:
    plans = lab.endpoints(6)
    lab.stranger("other0", 0)  # the default group: every link of the host's is in it
    _delete_together(lab, plans)
    assert len(lab.netlink.batch_sizes) <= 2 and sum(lab.netlink.batch_sizes) == 6
    assert set(lab.links()) == {BRIDGE, "other0", "other0p"}
    assert lab.peers(plans) == []


def test_a_strangers_link_in_the_batchs_group_survives_and_ours_still_go(lab: Lab) -> None:
    plans = lab.endpoints(4)
    group = lab.netlink.group_range[0]  # the group the first multi-link batch takes
    lab.stranger("other1", group)
    _delete_together(lab, plans)
    assert sum(lab.netlink.batch_sizes) == 4
    assert lab.links() == {BRIDGE: 0, "other1": group, "other1p": 0}
    assert lab.peers(plans) == []


def test_a_batch_with_links_already_gone_deletes_the_rest(lab: Lab) -> None:
    plans = lab.endpoints(3)
    lab.netlink.disconnect(plans[1].host_ifname)
    _delete_together(lab, plans)
    assert set(lab.links()) == {BRIDGE}
    assert lab.peers(plans) == []
