"""A user-defined network end to end, driven the way the supervisor will drive it: network
create (nft base + bridge + network rules + DNS), two containers (netns, veth, address, DNS
record, /etc files), a port published on 127.0.0.1 (DNAT rule + userland proxy), then checks
from the host and from inside the namespaces, and a teardown after which nothing remains."""

from __future__ import annotations

import os
import socket
import statistics
import time
from pathlib import Path

import pytest
import trio
from dnslib import DNSRecord
from test_netlink import Endpoint, free_subnet, ns_socket, ping
from test_nft import Firewall, _fetch, bridge_mac, free_port, tcp_answer_to_syn

from engine.core.hostfiles import container_resolv_conf, hostname_file, hosts_file
from engine.core.net_plan import VethPlan, netns_name, plan_bridge, plan_veth
from engine.core.nft_plan import NetworkRules, Publish
from engine.drivers.network.dns import run_dns
from engine.drivers.network.hostfiles import read_host_resolv_conf, write_container_files
from engine.drivers.network.netlink import Netlink
from engine.drivers.network.netns import create_netns, delete_netns, list_netns
from engine.drivers.network.nft import enable_ip_forward, run_proxy

pytestmark = pytest.mark.kernel


async def fetch_from(netns: str, ip: str, port: int) -> bytes:
    raw = ns_socket(netns)
    raw.setblocking(False)
    sock = trio.socket.from_stdlib_socket(raw)
    with trio.fail_after(5):
        await sock.connect((ip, port))
        stream = trio.SocketStream(sock)
        async with stream:
            data = b""
            while chunk := await stream.receive_some(4096):
                data += chunk
            return data


async def resolve_from(netns: str, server: str, name: str) -> list[str]:
    sock = trio.socket.from_stdlib_socket(ns_socket(netns, kind=socket.SOCK_DGRAM))
    with sock, trio.fail_after(5):
        await sock.connect((server, 53))
        await sock.send(bytes(DNSRecord.question(name).pack()))
        return [str(rr.rdata) for rr in DNSRecord.parse(await sock.recv(4096)).rr]


async def serve_in(netns: str, ip: str, port: int, payload: bytes) -> None:
    raw = ns_socket(netns)
    raw.bind((ip, port))
    raw.listen(16)
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(raw))
    async with listener:
        while True:
            stream = await listener.accept()
            async with stream:
                await stream.send_all(payload)


async def test_user_network_end_to_end(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run" / "netns"
    nl, nft = Netlink(), Firewall()
    nid = os.urandom(32).hex()
    subnet = free_subnet(150)
    gateway = str(subnet[1])
    bridge = plan_bridge("slg-" + nid[:11], str(subnet), gateway)
    containers: dict[str, tuple[str, VethPlan]] = {}  # name -> (container id, plan)
    dns_names: dict[str, list[str]] = {}
    forward_changed = enable_ip_forward()
    timings = []
    try:
        # network create
        nft.ensure_base()
        nl.ensure_bridge(bridge)
        nft.apply_network(NetworkRules(network_id=nid, bridge=bridge.name, subnet=str(subnet)))
        async with trio.open_nursery() as nursery:
            await nursery.start(
                run_dns, nid, gateway,
                lambda net, name, _client: dns_names.get(name, []) if net == nid else [], [])
            # two containers join it
            lo_port, any_port = free_port(), free_port()
            for name, host in (("c1", 2), ("c2", 3)):
                cid = os.urandom(32).hex()
                ip = str(subnet[host])
                t0 = time.perf_counter()
                path = create_netns(run_dir, netns_name(cid))
                plan = plan_veth(cid, nid, bridge=bridge.name, subnet=str(subnet),
                                 gateway=gateway, ip=ip, netns_path=path)
                containers[name] = (cid, plan)
                nl.connect(plan)
                dns_names[name] = [ip]
                files = write_container_files(
                    tmp_path / "containers" / cid, hosts=hosts_file(
                        cid[:12], addresses=[ip], aliases=[name]),
                    hostname=hostname_file(cid[:12]),
                    resolv_conf=container_resolv_conf(read_host_resolv_conf(),
                                                      embedded_dns=gateway))
                if name == "c1":
                    nft.publish(cid, [Publish(container_ip=ip, container_port=80,
                                              host_port=lo_port, host_ip="127.0.0.1"),
                                      Publish(container_ip=ip, container_port=80,
                                              host_port=any_port)])
                timings.append((time.perf_counter() - t0) * 1000)
                assert files.hosts.read_bytes().endswith(
                    f"{ip}\t{cid[:12]} {name}\n".encode())
                assert files.resolv_conf.read_bytes().startswith(
                    f"nameserver {gateway}\n".encode())
            c1, c2 = containers["c1"][1], containers["c2"][1]
            nursery.start_soon(serve_in, c1.netns_path, c1.ip_cidr.split("/")[0], 80,
                               b"hello from c1\n")
            await nursery.start(run_proxy, "127.0.0.1", lo_port, c1.ip_cidr.split("/")[0],
                                80, "tcp")
            c1_ip = c1.ip_cidr.split("/")[0]

            # the host reaches the published port over loopback
            assert await _fetch("127.0.0.1", lo_port) == b"hello from c1\n"
            # c2 finds c1 by name through the network's DNS, then talks to it
            assert await resolve_from(c2.netns_path, gateway, "c1") == [c1_ip]
            assert await fetch_from(c2.netns_path, c1_ip, 80) == b"hello from c1\n"
            # ... and through the port c1 published on every address (hairpin via the host)
            assert await fetch_from(c2.netns_path, gateway, any_port) == b"hello from c1\n"
            # S-07: c2 cannot reach c1's loopback-only port through the host's MAC
            guard_before = nft.guard_drops()
            assert not await trio.to_thread.run_sync(
                tcp_answer_to_syn, _endpoint(c2), bridge_mac(bridge.name), "127.0.0.1",
                lo_port)
            assert nft.guard_drops() > guard_before
            # disconnect cuts c2 off, connect brings it back
            nl.disconnect(c2.host_ifname)
            assert not await trio.to_thread.run_sync(ping, c1.netns_path,
                                                     c2.ip_cidr.split("/")[0])
            nl.connect(c2)
            assert await fetch_from(c2.netns_path, c1_ip, 80) == b"hello from c1\n"
            nursery.cancel_scope.cancel()
    finally:
        # teardown in the order the supervisor must use
        for cid, plan in containers.values():
            nft.delete_rules_of(cid)
            nl.disconnect(plan.host_ifname)
            delete_netns(run_dir, netns_name(cid))
        nft.delete_rules_of(nid)
        nl.delete_bridge(bridge.name)
        nft.remove_if_unused()
        if forward_changed:
            Path("/proc/sys/net/ipv4/ip_forward").write_text("0\n")
    with capsys.disabled():
        print(f"\nper-container setup (netns+veth+address+route+DNS record+/etc files"
              f"[+nft publish for c1]): {', '.join(f'{t:.1f}' for t in timings)} ms; "
              f"median {statistics.median(timings):.1f} ms")
    leftover = [li.name for li in nl.list_links() if li.name in (
        bridge.name, *(p.host_ifname for _, p in containers.values()))]
    nl.close()
    assert leftover == []
    assert list_netns(run_dir) == []
    assert not [r for r in nft.list_rules() if r.owner in (nid, *(
        c for c, _ in containers.values()))]
    assert str(tmp_path) not in Path("/proc/self/mountinfo").read_text()


def _endpoint(plan: VethPlan) -> Endpoint:
    """The shape `tcp_answer_to_syn` reads (netns, ip, mac)."""
    return Endpoint(container_id="", ip=plan.ip_cidr.split("/")[0], netns=plan.netns_path,
                    plan=plan)
