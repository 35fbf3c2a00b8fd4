"""The shipslog nftables table on the real kernel: owned rules listed and removed by owner,
DNAT of published ports, the userland proxy for 127.0.0.1, and the S-07 guard — a port
published on 127.0.0.1 cannot be reached from another namespace on the bridge by sending to
127.0.0.1 through the host's MAC, while the same path to a 0.0.0.0-published port works.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from pyroute2 import IPRoute
from test_netlink import Endpoint, NetLab, free_subnet, ns_socket, open_lab

from engine.core.net_plan import VethPlan
from engine.core.nft_plan import NetworkRules, Publish
from engine.drivers.network.hostfw import HostForward
from engine.drivers.network.netlink import configure_peer
from engine.drivers.network.netns import run_in_netns
from engine.drivers.network.nft import Nft, enable_ip_forward, run_proxy

pytestmark = pytest.mark.kernel
ETH_P_ALL = 0x0003


class Firewall(Nft):
    """Nft plus the iptables FORWARD accept rules that NetworkOps writes beside each network's
    nft rules, so these driver-level tests also pass where dockerd set FORWARD to DROP."""

    hostfw = HostForward()

    def apply_network(self, net: NetworkRules) -> None:
        super().apply_network(net)
        self.hostfw.apply_network(net.network_id, net.bridge, net.internal)

    def delete_rules_of(self, owner: str) -> None:
        super().delete_rules_of(owner)
        self.hostfw.delete_rules_of(owner)

    def remove_if_unused(self) -> bool:
        self.hostfw.remove_if_unused()
        return super().remove_if_unused()


@pytest.fixture
def lab() -> Iterator[NetLab]:
    with open_lab() as lab:
        yield lab


@pytest.fixture
def nft() -> Iterator[Nft]:
    n = Firewall()
    owners: list[str] = []
    n.owners = owners  # type: ignore[attr-defined]
    try:
        yield n
    finally:
        for owner in owners:
            n.delete_rules_of(owner)
        n.remove_if_unused()


@pytest.fixture
def forwarding() -> Iterator[None]:
    """ip_forward on for the test (the S-07 hole needs a forwarding host to show up),
    restored afterwards when we were the ones who changed it."""
    changed = enable_ip_forward()
    try:
        yield
    finally:
        if changed:
            Path("/proc/sys/net/ipv4/ip_forward").write_text("0\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setup_network(lab: NetLab, nft: Nft, third_octet: int) -> tuple[str, list[Endpoint], str]:
    br, subnet, nid = lab.bridge(third_octet)
    nft.ensure_base()
    nft.owners.append(nid)  # type: ignore[attr-defined]
    nft.apply_network(NetworkRules(network_id=nid, bridge=br.name, subnet=str(subnet)))
    eps = [lab.container(br, subnet, nid, host=h) for h in (2, 3)]
    return br.name, eps, str(subnet[1])


def publish(nft: Nft, ep: Endpoint, *ports: Publish) -> None:
    nft.owners.append(ep.container_id)  # type: ignore[attr-defined]
    nft.publish(ep.container_id, list(ports))


def test_rules_are_owned_listed_replaced_and_removed(lab: NetLab, nft: Nft) -> None:
    _, (a, _b), _ = setup_network(lab, nft, 120)
    nid = nft.owners[0]  # type: ignore[attr-defined]
    nft.ensure_base()  # idempotent
    before = nft.list_rules()
    p = Publish(container_ip=a.ip, container_port=80, host_port=free_port())
    publish(nft, a, p)
    publish(nft, a, p)  # replaces, never duplicates
    rules = nft.list_rules()
    mine = [r for r in rules if r.owner == a.container_id]
    assert len(rules) == len(before) + 1 and [(r.kind, r.chain) for r in mine] == [
        ("ctr", "publish")]
    net_rules = [r for r in rules if r.owner == nid]
    assert {r.chain for r in net_rules} == {"direct", "isolate", "masq"}
    nft.apply_network(NetworkRules(network_id=nid, bridge=lab.bridges[0].name,
                                   subnet=str(lab.bridges[0].gateway_cidr), internal=True))
    internal = [r for r in nft.list_rules() if r.owner == nid]
    assert "masq" not in {r.chain for r in internal}
    nft.delete_rules_of(a.container_id)
    nft.delete_rules_of(a.container_id)  # idempotent
    assert not [r for r in nft.list_rules() if r.owner == a.container_id]
    assert not nft.remove_if_unused()  # the network still owns rules
    nft.delete_rules_of(nid)
    if not [r for r in nft.list_rules()]:
        assert nft.remove_if_unused()
        assert not nft.table_exists()


def _serve_once_in(ep: Endpoint, port: int, payload: bytes) -> socket.socket:
    srv = ns_socket(ep.netns)
    srv.bind((ep.ip, port))
    srv.listen(8)
    return srv


async def _serve(srv: socket.socket, payload: bytes) -> None:
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(srv))
    async with listener:
        while True:
            stream = await listener.accept()
            async with stream:
                await stream.send_all(payload)


async def _fetch(ip: str, port: int) -> bytes:
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(ip, port)
        async with stream:
            data = b""
            while chunk := await stream.receive_some(4096):
                data += chunk
            return data


async def test_published_port_serves_the_host_over_loopback_and_a_local_address(
        lab: NetLab, nft: Nft) -> None:
    _, (a, _b), gateway = setup_network(lab, nft, 124)
    any_port, lo_port = free_port(), free_port()
    publish(nft, a, Publish(container_ip=a.ip, container_port=80, host_port=any_port),
            Publish(container_ip=a.ip, container_port=80, host_port=lo_port,
                    host_ip="127.0.0.1"))
    srv = _serve_once_in(a, 80, b"")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve, srv, b"from the container\n")
        # 127.0.0.1 is served by the userland proxy (no route_localnet)
        await nursery.start(run_proxy, "127.0.0.1", lo_port, a.ip, 80, "tcp")
        assert await _fetch("127.0.0.1", lo_port) == b"from the container\n"
        # a local non-loopback address (the gateway) goes through DNAT in the output hook
        assert await _fetch(gateway, any_port) == b"from the container\n"
        nursery.cancel_scope.cancel()


async def test_udp_proxy_forwards_datagrams_both_ways(lab: NetLab, nft: Nft) -> None:
    _, (a, _b), _ = setup_network(lab, nft, 128)
    port = free_port()
    echo = trio.socket.from_stdlib_socket(ns_socket(a.netns, kind=socket.SOCK_DGRAM))

    async def serve_echo() -> None:
        with echo:
            await echo.bind((a.ip, 53))
            while True:
                data, peer = await echo.recvfrom(2048)
                await echo.sendto(b"echo:" + data, peer)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_echo)
        await nursery.start(run_proxy, "127.0.0.1", port, a.ip, 53, "udp")
        client = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        with client, trio.fail_after(5):
            await client.connect(("127.0.0.1", port))
            await client.send(b"ping")
            assert await client.recv(2048) == b"echo:ping"
        nursery.cancel_scope.cancel()


# -- S-07: crafted frames from a neighbour on the bridge --------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def syn_frame(src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, sport: int,
              dport: int) -> bytes:
    src, dst = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, socket.IPPROTO_TCP,
                     0, src, dst)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", ""))
    return eth + b"\x08\x00" + ip + tcp


def tcp_answer_to_syn(sender: Endpoint, dst_mac: str, dst_ip: str, dport: int) -> bool:
    """Send a SYN from `sender`'s eth0 as a raw frame; True if any TCP segment answers it
    (a SYN-ACK or RST from whoever the packet reached)."""
    sport = 20000 + int.from_bytes(os.urandom(2), "big") % 20000
    raw = ns_socket(sender.netns, socket.AF_PACKET, socket.SOCK_RAW)
    with raw:
        raw.bind(("eth0", ETH_P_ALL))
        raw.settimeout(0.2)
        raw.send(syn_frame(sender.plan.mac, dst_mac, sender.ip, dst_ip, sport, dport))
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                frame = raw.recv(2048)
            except TimeoutError:
                continue
            if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
                continue
            ihl = (frame[14] & 0x0F) * 4
            tsport, tdport = struct.unpack_from("!HH", frame, 14 + ihl)
            flags = frame[14 + ihl + 13]
            if tdport == sport and tsport in (dport, 80) and flags & 0x14:
                return True
    return False


def bridge_mac(bridge: str) -> str:
    return Path(f"/sys/class/net/{bridge}/address").read_text().strip()


def test_s07_loopback_publish_unreachable_from_another_namespace(
        lab: NetLab, nft: Nft, forwarding: None) -> None:
    bridge, (a, b), gateway = setup_network(lab, nft, 132)
    lo_port, any_port = free_port(), free_port()
    publish(nft, a, Publish(container_ip=a.ip, container_port=80, host_port=lo_port,
                            host_ip="127.0.0.1"),
            Publish(container_ip=a.ip, container_port=80, host_port=any_port))
    srv = _serve_once_in(a, 80, b"")
    with srv:
        mac = bridge_mac(bridge)
        # Control: the same crafted path to a port published on every address gets through.
        assert tcp_answer_to_syn(b, mac, gateway, any_port)
        drops = nft.guard_drops()
        # The attack of moby#45610: 127.0.0.1:<loopback-published port> via the host's MAC.
        assert not tcp_answer_to_syn(b, mac, "127.0.0.1", lo_port)
        assert nft.guard_drops() > drops
        # and the direct-routing guard keeps a different interface off the subnet entirely
        rules = [r for r in nft.list_rules() if r.chain == "direct"]
        assert rules and all(r.kind == "net" for r in rules)


# -- masquerade, --internal and isolation, against an "outside" namespace we make ----------


@pytest.fixture
def outside(lab: NetLab) -> Iterator[Endpoint]:
    """A namespace routed from the host (not bridged): stands in for the world beyond the
    host's uplink, so egress is tested without a packet leaving the machine."""
    subnet = free_subnet(170)
    cid = os.urandom(32).hex()
    path = lab.netns(cid)
    host_end = "slgout" + cid[:9]
    fd = os.open(path, os.O_RDONLY)
    with IPRoute() as ipr:
        try:
            ipr.link("add", ifname=host_end, kind="veth", state="up",
                     peer={"ifname": "eth0", "net_ns_fd": fd})
        finally:
            os.close(fd)
        idx = ipr.link_lookup(ifname=host_end)[0]
        ipr.addr("add", index=idx, address=str(subnet[1]), prefixlen=24)
    plan = VethPlan(host_ifname=host_end, peer_ifname="eth0", bridge="", netns_path=path,
                    ip_cidr=f"{subnet[2]}/24", gateway=str(subnet[1]), mac="")
    run_in_netns(path, configure_peer, plan)
    ep = Endpoint(container_id=cid, ip=str(subnet[2]), netns=path, plan=plan)
    try:
        yield ep
    finally:
        lab.netlink.disconnect(host_end)


def _peer_seen_by(server: Endpoint, client: Endpoint, timeout: float = 2.0) -> str | None:
    """Connect from client to a port of server; the address the server saw, or None if the
    connection never arrived."""
    with ns_socket(server.netns) as srv, ns_socket(client.netns) as cli:
        srv.bind((server.ip, 0))
        srv.listen(1)
        srv.settimeout(timeout)
        cli.settimeout(timeout)
        try:
            cli.connect((server.ip, srv.getsockname()[1]))
            conn, peer = srv.accept()
        except (TimeoutError, OSError):
            return None
        conn.close()
        return str(peer[0])


def test_egress_is_masqueraded_and_internal_networks_have_none(
        lab: NetLab, nft: Nft, forwarding: None, outside: Endpoint) -> None:
    nft.ensure_base()
    br, subnet, nid = lab.bridge(174)
    ibr, isubnet, inid = lab.bridge(178)
    nft.owners += [nid, inid]  # type: ignore[attr-defined]
    nft.apply_network(NetworkRules(network_id=nid, bridge=br.name, subnet=str(subnet)))
    nft.apply_network(NetworkRules(network_id=inid, bridge=ibr.name, subnet=str(isubnet),
                                   internal=True))
    a = lab.container(br, subnet, nid, host=2)
    i = lab.container(ibr, isubnet, inid, host=2)
    # a normal network reaches the outside, which sees the host's address, not the container's
    assert _peer_seen_by(outside, a) == outside.plan.gateway
    # an --internal network does not get out at all
    assert _peer_seen_by(outside, i, timeout=1.0) is None
    # and two shipslog networks cannot reach each other through the host
    assert _peer_seen_by(i, a, timeout=1.0) is None
    assert _peer_seen_by(a, i, timeout=1.0) is None
