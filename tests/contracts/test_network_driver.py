"""Contract suite for the network seam's drivers (CNM: network create/delete, endpoint
create/join/leave/delete), run against the recording fake and, marked `kernel`, against the
real drivers inside a network namespace the test makes (never on the host's own links).

A `Lab` is one implementation plus the means to look at what it made: the links of its
"host" namespace and the interfaces (with addresses) of each sandbox. A new driver joins by
adding its cases here; a new implementation of the seam by adding a `Lab`.

I/O: none for the fake; for the kernel labs, rtnetlink and network namespaces (made and
removed by the test).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.core.errors import KernelError
from engine.core.net_plan import (
    BridgePlan,
    VethPlan,
    plan_bridge,
    plan_parent,
    plan_sub_endpoint,
    plan_veth,
)
from engine.drivers.network.seam import OWNED_ALIAS, NetworkKernel
from engine.testing.fakes import FakeLink, FakeNetKernel, Faults, fake_network

NID = "ab" * 32
NID2 = "cd" * 32
CIDS = ["1" * 64, "2" * 64]


class Lab:
    """One implementation of the seam and the means to observe it."""

    kernel: NetworkKernel

    def host_links(self) -> dict[str, tuple[str, str]]:
        """name -> (kind, alias) of the links in the lab's host namespace."""
        raise NotImplementedError

    def ifaces(self, sandbox: str) -> dict[str, set[str]]:
        """ifname -> addresses (CIDR) inside a sandbox."""
        raise NotImplementedError

    def add_parent(self, name: str) -> None:
        """A link of the segment's own (the user's `-o parent=`)."""
        raise NotImplementedError

    def close(self) -> None: ...

    def require(self, kind: str) -> None:
        """Skip when the kernel under test cannot make links of `kind`."""


class FakeLab(Lab):
    def __init__(self) -> None:
        self.k = FakeNetKernel(Faults())
        self.kernel = fake_network(self.k.f, self.k)

    def host_links(self) -> dict[str, tuple[str, str]]:
        return {li.name: (li.kind, li.alias) for li in self.k.links.values()}

    def ifaces(self, sandbox: str) -> dict[str, set[str]]:
        return {name: set(li.addresses) for name, li in self.k.sandboxes.get(sandbox,
                                                                              {}).items()}

    def add_parent(self, name: str) -> None:
        self.k.links[name] = FakeLink(name=name, kind="dummy", up=True)


class KernelLab(Lab):
    """The real drivers with their rtnetlink socket opened inside a namespace of the test's
    own (`host`), and sandboxes under a temporary directory."""

    def __init__(self, root: Path) -> None:
        from engine.drivers.network import netns
        from engine.drivers.network.linux import NamespaceDir, registry
        from engine.drivers.network.netlink import Netlink

        self.netns = netns
        self.dir = root / "labns"
        self.host = netns.create_netns(self.dir, "slg-" + os.urandom(6).hex())
        self.netlink = Netlink(netns=self.host)
        fake = fake_network(Faults())  # only the parts the drivers never touch
        fake.drivers = registry(self.netlink)
        fake.sandboxes = NamespaceDir(root / "netns")
        self.kernel = fake

    def _in(self, path: str, fn: Any) -> Any:
        return self.netns.run_in_netns(path, fn)

    def host_links(self) -> dict[str, tuple[str, str]]:
        def read() -> dict[str, tuple[str, str]]:
            from pyroute2 import IPRoute

            with IPRoute() as ipr:
                return {li.get("ifname"): (li.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
                                           or "", li.get("IFLA_IFALIAS") or "")
                        for li in ipr.get_links() if li.get("ifname") != "lo"}
        return dict(self._in(self.host, read))

    def ifaces(self, sandbox: str) -> dict[str, set[str]]:
        if not Path(sandbox).exists():
            return {}

        def read() -> dict[str, set[str]]:
            from pyroute2 import IPRoute

            with IPRoute() as ipr:
                names = {li["index"]: li.get("ifname") for li in ipr.get_links()}
                out: dict[str, set[str]] = {n: set() for n in names.values()}
                for a in ipr.get_addr():
                    if a.get("IFA_ADDRESS") and not a.get("IFA_ADDRESS").startswith("fe80"):
                        out[names[a["index"]]].add(f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}")
                out["lo"] = {x for x in out.get("lo", set()) if not x.startswith(("127.",
                                                                                   "::1"))}
                return out
        return dict(self._in(sandbox, read))

    def add_parent(self, name: str) -> None:
        def add() -> None:
            from pyroute2 import IPRoute

            with IPRoute() as ipr:  # a veth (not every kernel has dummy links)
                ipr.link("add", ifname=name, kind="veth", peer=name + "x")
                for end in (name, name + "x"):
                    ipr.link("set", index=ipr.link_lookup(ifname=end)[0], state="up")
        self._in(self.host, add)

    def require(self, kind: str) -> None:
        def probe() -> bool:
            from pyroute2 import IPRoute
            from pyroute2.netlink.exceptions import NetlinkError

            with IPRoute() as ipr:
                ipr.link("add", ifname="slgprobe0", kind="veth", peer="slgprobe1")
                index = ipr.link_lookup(ifname="slgprobe0")[0]
                extra = {"vlan_id": 10} if kind == "vlan" else {}
                try:
                    ipr.link("add", ifname="slgprobe2", kind=kind, link=index, **extra)
                except NetlinkError:
                    return False
                finally:
                    ipr.link("del", index=index)  # its peer and children go with it
                return True
        if not self._in(self.host, probe):
            pytest.skip(f"this kernel cannot make {kind} links")

    def close(self) -> None:
        sandboxes = self.kernel.sandboxes
        for name in sandboxes.list():
            sandboxes.delete(name)
        self.netlink.close()
        self.netns.delete_netns(self.dir, Path(self.host).name)


@pytest.fixture(params=["fake", pytest.param("kernel", marks=pytest.mark.kernel)])
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    if request.param == "kernel" and os.geteuid() != 0:
        pytest.skip("the kernel lab needs root")
    made: Lab = FakeLab() if request.param == "fake" else KernelLab(tmp_path)
    try:
        yield made
    finally:
        made.close()


def _bridge() -> BridgePlan:
    return plan_bridge("slg-" + NID[:11], "10.231.0.0/24", "10.231.0.1")


def _veth(lab: Lab, index: int, sandbox: str, ifname: str = "eth0") -> VethPlan:
    return plan_veth(CIDS[index], NID, bridge="slg-" + NID[:11], subnet="10.231.0.0/24",
                     gateway="10.231.0.1", ip=f"10.231.0.{index + 2}", netns_path=sandbox,
                     ifname=ifname)


def test_bridge_network_and_endpoint_lifecycle(lab: Lab) -> None:
    driver = lab.kernel.driver("bridge")
    net = _bridge()
    driver.create_network(net)
    driver.create_network(net)  # idempotent
    assert lab.host_links()[net.name][0] == "bridge"
    box = lab.kernel.sandboxes.create("slg-" + CIDS[0][:12])
    plan = _veth(lab, 0, box)
    for _ in range(2):  # a step run again keeps the endpoint and its address
        eid = driver.create_endpoint(plan)
        driver.join(plan)
    assert eid == plan.host_ifname and lab.host_links()[eid][0] == "veth"
    assert lab.ifaces(box)["eth0"] == {"10.231.0.2/24"}
    assert {li.name for li in driver.list_links()} >= {net.name, eid}
    driver.leave(box, eid)
    driver.delete_endpoint(box, eid)
    driver.delete_endpoint(box, eid)  # gone already: fine
    assert eid not in lab.host_links() and "eth0" not in lab.ifaces(box)
    driver.delete_network(net)
    driver.delete_network(net)
    assert net.name not in lab.host_links()


def test_bridge_endpoint_needs_its_network(lab: Lab) -> None:
    box = lab.kernel.sandboxes.create("slg-" + CIDS[0][:12])
    with pytest.raises(KernelError, match="does not exist"):
        lab.kernel.driver("bridge").create_endpoint(_veth(lab, 0, box))


def test_bridge_refuses_a_second_endpoint_under_one_name(lab: Lab) -> None:
    driver = lab.kernel.driver("bridge")
    driver.create_network(_bridge())
    box = lab.kernel.sandboxes.create("slg-" + CIDS[0][:12])
    first = _veth(lab, 0, box)
    driver.create_endpoint(first)
    clash = plan_veth(CIDS[0], NID2, bridge=first.bridge, subnet="10.231.0.0/24",
                      gateway="10.231.0.1", ip="10.231.0.9", netns_path=box)
    with pytest.raises(KernelError, match="already used in the container"):
        driver.create_endpoint(clash)
        driver.join(clash)
    driver.delete_endpoint(box, first.host_ifname)
    driver.delete_network(_bridge())


def _sub(driver: str, mode: str, parent: str, index: int, sandbox: str) -> VethPlan:
    return plan_sub_endpoint(CIDS[index], NID, driver=driver, mode=mode, parent=parent,
                             subnet="10.232.0.0/24", gateway="10.232.0.1",
                             ip=f"10.232.0.{index + 2}", netns_path=sandbox)


@pytest.mark.parametrize(("kind", "mode"), [("macvlan", "bridge"), ("macvlan", "private"),
                                            ("macvlan", "vepa"), ("ipvlan", "l2"),
                                            ("ipvlan", "l3"), ("ipvlan", "l3s")])
def test_sub_interface_endpoints_on_a_users_parent(lab: Lab, kind: str, mode: str) -> None:
    lab.require(kind)
    lab.add_parent("slgp0")
    driver = lab.kernel.driver(kind)
    net = plan_parent(kind, NID, "slgp0", mode, owned=False)
    driver.create_network(net)
    boxes = [lab.kernel.sandboxes.create("slg-" + c[:12]) for c in CIDS]
    plans = [_sub(kind, mode, "slgp0", i, box) for i, box in enumerate(boxes)]
    for plan in plans + plans:  # again: kept
        driver.create_endpoint(plan)
        driver.join(plan)
    for i, box in enumerate(boxes):
        assert lab.ifaces(box)["eth0"] == {f"10.232.0.{i + 2}/24"}
    assert not any(name.startswith("slg") and not name.startswith("slgp0")
                   for name in lab.host_links())
    for plan, box in zip(plans, boxes, strict=True):
        driver.leave(box, plan.host_ifname)
        driver.delete_endpoint(box, plan.host_ifname)
        driver.delete_endpoint(box, plan.host_ifname)
        assert "eth0" not in lab.ifaces(box)
    driver.delete_network(net)
    assert "slgp0" in lab.host_links()  # the user's parent is never ours to remove


def test_macvlan_parent_that_does_not_exist_is_refused(lab: Lab) -> None:
    with pytest.raises(KernelError, match="-o parent interface was not found on the host: "
                                          "slgnone"):
        lab.kernel.driver("macvlan").create_network(
            plan_parent("macvlan", NID, "slgnone", "bridge", owned=False))
    with pytest.raises(KernelError, match="-o parent interface was not found on the host: "
                                          "slgnone"):
        lab.kernel.driver("macvlan").create_network(
            plan_parent("macvlan", NID, "slgnone.10", "bridge", owned=True))
    assert "slgnone.10" not in lab.host_links()


@pytest.mark.parametrize("kind", ["macvlan", "ipvlan"])
def test_vlan_parent_is_made_marked_and_removed(lab: Lab, kind: str) -> None:
    lab.require(kind)
    lab.require("vlan")
    lab.add_parent("slgp0")
    driver = lab.kernel.driver(kind)
    net = plan_parent(kind, NID, "slgp0.10", "", owned=True)
    driver.create_network(net)
    driver.create_network(net)
    assert lab.host_links()["slgp0.10"] == ("vlan", OWNED_ALIAS + NID)
    box = lab.kernel.sandboxes.create("slg-" + CIDS[0][:12])
    plan = _sub(kind, "", "slgp0.10", 0, box)
    driver.create_endpoint(plan)
    driver.join(plan)
    assert lab.ifaces(box)["eth0"] == {"10.232.0.2/24"}
    driver.delete_endpoint(box, plan.host_ifname)
    driver.delete_network(net)
    driver.delete_network(net)
    assert "slgp0.10" not in lab.host_links() and "slgp0" in lab.host_links()


def test_internal_network_without_parent_gets_a_dummy_of_its_own(lab: Lab) -> None:
    driver = lab.kernel.driver("macvlan")
    net = plan_parent("macvlan", NID, "slg-" + NID[:11], "bridge", owned=True)
    driver.create_network(net)
    # a dummy link, or an empty bridge on a kernel without dummies: a segment of its own
    kind, alias = lab.host_links()[net.parent]
    assert kind in ("dummy", "bridge") and alias == OWNED_ALIAS + NID
    assert net.parent in {li.name for li in driver.list_links()}
    driver.delete_network(net)
    assert net.parent not in lab.host_links()
