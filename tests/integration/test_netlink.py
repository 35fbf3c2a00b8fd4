"""Bridges, veths and named netns on the real kernel: two namespaces on one bridge reach each
other, disconnect cuts traffic and connect restores it, and teardown leaves nothing behind.

Also home of `NetLab`, the helper the other network tests share: it makes bridges and
namespaces with the real drivers under a private run dir, in subnets of 10.211.0.0/16 that no
host route uses, and removes everything it made (the conftest fixture checks that).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine.core.errors import KernelError
from engine.core.net_plan import BridgePlan, VethPlan, netns_name, plan_bridge, plan_veth
from engine.drivers.network.hostfw import HostForward
from engine.drivers.network.netlink import Netlink
from engine.drivers.network.netns import create_netns, delete_netns, list_netns, run_in_netns

pytestmark = pytest.mark.kernel


def host_routes() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True,
                         text=True, check=True).stdout
    nets = []
    for line in out.splitlines():
        word = line.split()[0] if line.split() else ""
        if word in ("local", "broadcast", "unreachable", "blackhole", "prohibit"):
            word = line.split()[1]
        if word == "default":
            continue
        try:
            nets.append(ipaddress.IPv4Network(word, strict=False))
        except ValueError:
            continue
    return nets


def free_subnet(third_octet: int) -> ipaddress.IPv4Network:
    """The first 10.211.N.0/24 from `third_octet` on that no host route overlaps."""
    busy = host_routes()
    for n in range(third_octet, 256):
        net = ipaddress.IPv4Network(f"10.211.{n}.0/24")
        if not any(net.overlaps(b) for b in busy):
            return net
    pytest.skip("no free 10.211.x.0/24 subnet on this host")


@dataclass
class Endpoint:
    container_id: str
    ip: str
    netns: str
    plan: VethPlan


@dataclass
class NetLab:
    """Real drivers on a private run dir; `close()` undoes everything in the right order."""

    run_dir: Path
    netlink: Netlink = field(default_factory=Netlink)
    bridges: list[BridgePlan] = field(default_factory=list)
    endpoints: list[Endpoint] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    # Where dockerd set FORWARD to DROP with br_netfilter (CI runs beside one), traffic
    # within a bridge traverses iptables FORWARD: the lab's bridges get the accept rules a
    # network's owner writes (engine/drivers/network/hostfw.py), removed in close().
    hostfw: HostForward = field(default_factory=HostForward)
    network_ids: list[str] = field(default_factory=list)
    _next: int = 1

    def bridge(self, third_octet: int) -> tuple[BridgePlan, ipaddress.IPv4Network, str]:
        subnet = free_subnet(third_octet)
        network_id = os.urandom(32).hex()
        plan = plan_bridge("slg-" + network_id[:11], str(subnet), str(subnet[1]))
        self.bridges.append(plan)
        self.netlink.ensure_bridge(plan)
        self.network_ids.append(network_id)
        self.hostfw.apply_network(network_id, plan.name, False)
        return plan, subnet, network_id

    def netns(self, container_id: str) -> str:
        name = netns_name(container_id)
        self.namespaces.append(name)
        return create_netns(self.run_dir, name)

    def container(self, bridge: BridgePlan, subnet: ipaddress.IPv4Network, network_id: str,
                  *, host: int) -> Endpoint:
        cid = os.urandom(32).hex()
        path = self.netns(cid)
        ip = str(subnet[host])
        plan = plan_veth(cid, network_id, bridge=bridge.name, subnet=str(subnet),
                         gateway=str(subnet[1]), ip=ip, netns_path=path)
        self.netlink.connect(plan)
        ep = Endpoint(container_id=cid, ip=ip, netns=path, plan=plan)
        self.endpoints.append(ep)
        return ep

    def close(self) -> None:
        for ep in self.endpoints:
            self.netlink.disconnect(ep.plan.host_ifname)
        for name in self.namespaces:
            delete_netns(self.run_dir, name)
        for b in self.bridges:
            self.netlink.delete_bridge(b.name)
        for network_id in self.network_ids:
            self.hostfw.delete_rules_of(network_id)
        if self.network_ids:
            self.hostfw.remove_if_unused()
        self.netlink.close()


@contextmanager
def open_lab() -> Iterator[NetLab]:
    run_dir = Path(tempfile.mkdtemp(prefix="slgtest-"))
    lab = NetLab(run_dir=run_dir / "netns")
    try:
        yield lab
    finally:
        lab.close()
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture
def lab() -> Iterator[NetLab]:
    with open_lab() as lab:
        yield lab


def ping(netns: str, ip: str) -> bool:
    p = subprocess.run(["nsenter", f"--net={netns}", "busybox", "ping", "-c", "1", "-W", "2",
                        ip], capture_output=True, text=True, check=False)
    return p.returncode == 0


def ns_socket(netns: str, family: int = socket.AF_INET,
              kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket that lives in `netns` (sockets keep the namespace they were made in)."""
    return run_in_netns(netns, socket.socket, family, kind)


def tcp_exchange(server_ns: str, server_ip: str, client_ns: str, payload: bytes) -> bytes:
    with ns_socket(server_ns) as srv, ns_socket(client_ns) as cli:
        srv.bind((server_ip, 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        cli.settimeout(3)
        cli.connect((server_ip, port))
        conn, _ = srv.accept()
        with conn:
            cli.sendall(payload)
            cli.shutdown(socket.SHUT_WR)
            got = b""
            conn.settimeout(3)
            while chunk := conn.recv(4096):
                got += chunk
        return got


def test_two_namespaces_on_one_bridge_talk(lab: NetLab) -> None:
    br, subnet, nid = lab.bridge(100)
    a = lab.container(br, subnet, nid, host=2)
    b = lab.container(br, subnet, nid, host=3)
    assert ping(a.netns, b.ip) and ping(b.netns, a.ip)
    assert ping(a.netns, str(subnet[1]))  # the gateway on the bridge
    assert tcp_exchange(b.netns, b.ip, a.netns, b"hello over the bridge") == \
        b"hello over the bridge"
    links = {li.name: li for li in lab.netlink.list_links()}
    assert links[br.name].kind == "bridge" and links[br.name].up
    for ep in (a, b):
        assert links[ep.plan.host_ifname].master == br.name and links[ep.plan.host_ifname].up
    inside = subprocess.run(["nsenter", f"--net={a.netns}", "ip", "-o", "addr", "show", "eth0"],
                            capture_output=True, text=True, check=True).stdout
    assert f"inet {a.ip}/24" in inside
    link = subprocess.run(["nsenter", f"--net={a.netns}", "ip", "-o", "link", "show", "eth0"],
                          capture_output=True, text=True, check=True).stdout
    assert f"link/ether {a.plan.mac} " in link and "state UP" in link
    route = subprocess.run(["nsenter", f"--net={a.netns}", "ip", "route", "show", "default"],
                           capture_output=True, text=True, check=True).stdout
    assert f"via {subnet[1]} dev eth0" in route


def test_disconnect_cuts_and_connect_restores(lab: NetLab) -> None:
    br, subnet, nid = lab.bridge(104)
    a = lab.container(br, subnet, nid, host=2)
    b = lab.container(br, subnet, nid, host=3)
    assert ping(a.netns, b.ip)
    lab.netlink.disconnect(b.plan.host_ifname)
    lab.netlink.disconnect(b.plan.host_ifname)  # idempotent
    assert not ping(a.netns, b.ip)
    assert b.plan.host_ifname not in {li.name for li in lab.netlink.list_links()}
    lab.netlink.connect(b.plan)
    assert ping(a.netns, b.ip)
    index = socket.if_nametoindex(b.plan.host_ifname)
    lab.netlink.connect(b.plan)  # running it again keeps the pair and re-applies the address
    assert socket.if_nametoindex(b.plan.host_ifname) == index
    assert ping(a.netns, b.ip)


def test_a_container_on_two_networks_gets_eth1_without_a_second_default(lab: NetLab) -> None:
    br1, net1, nid1 = lab.bridge(116)
    br2, net2, nid2 = lab.bridge(118)
    a = lab.container(br1, net1, nid1, host=2)
    peer = lab.container(br2, net2, nid2, host=3)
    second = plan_veth(a.container_id, nid2, bridge=br2.name, subnet=str(net2),
                       gateway=str(net2[1]), ip=str(net2[2]), netns_path=a.netns,
                       ifname="eth1", default_route=False)
    lab.endpoints.append(Endpoint(a.container_id, str(net2[2]), a.netns, second))
    lab.netlink.connect(second)
    assert ping(a.netns, peer.ip)
    routes = subprocess.run(["nsenter", f"--net={a.netns}", "ip", "route"],
                            capture_output=True, text=True, check=True).stdout
    assert routes.count("default") == 1 and f"default via {net1[1]} dev eth0" in routes
    # the same interface name twice is refused, not silently re-pointed
    clash = plan_veth(a.container_id, os.urandom(32).hex(), bridge=br2.name,
                      subnet=str(net2), gateway=str(net2[1]), ip=str(net2[9]),
                      netns_path=a.netns, ifname="eth1")
    with pytest.raises(KernelError, match="already used"):
        lab.netlink.connect(clash)
    assert clash.host_ifname not in {li.name for li in lab.netlink.list_links()}


def test_every_operation_is_idempotent_and_teardown_leaves_nothing(tmp_path: Path) -> None:
    lab = NetLab(run_dir=tmp_path / "netns")
    try:
        br, subnet, nid = lab.bridge(108)
        lab.netlink.ensure_bridge(br)
        a = lab.container(br, subnet, nid, host=2)
        assert create_netns(lab.run_dir, netns_name(a.container_id)) == a.netns
        assert list_netns(lab.run_dir) == [netns_name(a.container_id)]
    finally:
        lab.close()
    nl = Netlink()
    try:
        assert not [li for li in nl.list_links() if li.name in (br.name, a.plan.host_ifname)]
        nl.delete_bridge(br.name)
        nl.disconnect(a.plan.host_ifname)
    finally:
        nl.close()
    delete_netns(lab.run_dir, netns_name(a.container_id))
    assert list_netns(lab.run_dir) == []
    assert str(tmp_path) not in Path("/proc/self/mountinfo").read_text()


def test_setup_time_per_container(lab: NetLab, capsys: pytest.CaptureFixture[str]) -> None:
    """Measures (never asserts) netns + veth + address + route per container."""
    br, subnet, nid = lab.bridge(112)
    times = []
    for host in range(2, 22):
        t0 = time.perf_counter()
        lab.container(br, subnet, nid, host=host)
        times.append((time.perf_counter() - t0) * 1000)
    with capsys.disabled():
        print(f"\nnetns+veth+address+route per container: median {statistics.median(times):.1f}"
              f" ms, max {max(times):.1f} ms over {len(times)}")
    assert len(lab.netlink.list_links()) >= 21


def _dual_endpoint(lab: NetLab, bridge: BridgePlan, subnet: ipaddress.IPv4Network,
                   subnet6: str, network_id: str, host: int) -> Endpoint:
    cid = os.urandom(32).hex()
    path = lab.netns(cid)
    ip6 = str(ipaddress.IPv6Network(subnet6)[host])
    plan = plan_veth(cid, network_id, bridge=bridge.name, subnet=str(subnet),
                     gateway=str(subnet[1]), ip=str(subnet[host]), netns_path=path,
                     subnet6=subnet6, gateway6=str(ipaddress.IPv6Network(subnet6)[1]), ip6=ip6)
    lab.netlink.connect(plan)
    ep = Endpoint(container_id=cid, ip=ip6, netns=path, plan=plan)
    lab.endpoints.append(ep)
    return ep


def test_dual_stack_endpoints_get_usable_v6_addresses_and_routes(
        lab: NetLab, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 13: the bridge's v6 gateway and each peer's v6 address are set without DAD (no
    `tentative` flag: usable at once) with a v6 default route, beside the v4 ones."""
    subnet = free_subnet(116)
    subnet6 = "fd5c:1e0f:6a3b:74::/64"
    nid = os.urandom(32).hex()
    br = plan_bridge("slg-" + nid[:11], str(subnet), str(subnet[1]), subnet6=subnet6,
                     gateway6="fd5c:1e0f:6a3b:74::1")
    lab.bridges.append(br)
    lab.netlink.ensure_bridge(br)
    lab.netlink.ensure_bridge(br)  # idempotent: the v6 gateway is kept, not refused
    times = []
    eps = []
    for host in (2, 3):
        t0 = time.perf_counter()
        eps.append(_dual_endpoint(lab, br, subnet, subnet6, nid, host))
        times.append((time.perf_counter() - t0) * 1000)
    a, b = eps
    addrs = subprocess.run(["nsenter", f"--net={a.netns}", "ip", "-6", "addr", "show", "eth0"],
                           capture_output=True, text=True).stdout
    assert "fd5c:1e0f:6a3b:74::2/64" in addrs and "tentative" not in addrs.split("fe80")[0]
    routes = subprocess.run(["nsenter", f"--net={a.netns}", "ip", "-6", "route"],
                            capture_output=True, text=True).stdout
    assert "default via fd5c:1e0f:6a3b:74::1 dev eth0" in routes
    assert ping(a.netns, b.ip) and ping(b.netns, "fd5c:1e0f:6a3b:74::1")
    with capsys.disabled():
        print(f"\ndual-stack netns+veth+2 addresses+2 routes: {times[0]:.1f} ms, "
              f"{times[1]:.1f} ms")
