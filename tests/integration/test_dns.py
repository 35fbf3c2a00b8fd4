"""The per-network DNS server: container names answered from the resolver callback, other
names forwarded — here only to a fake upstream on 127.0.0.1 that this test runs, so no query
leaves the machine — and queries made from *inside* a container's network namespace."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator, Sequence

import pytest
import trio
from dnslib import QTYPE, RCODE, RR, A, DNSError, DNSRecord
from test_netlink import NetLab, ns_socket, open_lab

from engine.drivers.network.dns import Lookup, local_answer, run_dns

NAMES = {"web": ["10.211.140.7"], "db": ["10.211.140.8", "10.211.140.9"]}


def lookup_in(network_id: str, askers: list[str] | None = None) -> Lookup:
    def lookup(net: str, name: str, client: str) -> Sequence[str]:
        if askers is not None:
            askers.append(client)
        return NAMES.get(name, []) if net == network_id else []
    return lookup


def query(name: str, qtype: str = "A") -> bytes:
    return bytes(DNSRecord.question(name, qtype).pack())


def answers(reply: bytes) -> list[str]:
    return sorted(str(rr.rdata) for rr in DNSRecord.parse(reply).rr)


# -- the answering logic, no kernel --------------------------------------------------------


def test_local_answers_for_names_on_the_network() -> None:
    lookup = lookup_in("n1")
    reply = local_answer("n1", query("db"), lookup)
    assert reply is not None and answers(reply) == ["10.211.140.8", "10.211.140.9"]
    record = DNSRecord.parse(reply)
    assert record.header.aa == 1 and record.header.rcode == RCODE.NOERROR
    assert record.rr[0].ttl == 600
    upper = local_answer("n1", query("WEB."), lookup)
    assert upper is not None and answers(upper) == ["10.211.140.7"]
    aaaa = local_answer("n1", query("web", "AAAA"), lookup)
    assert aaaa is not None and DNSRecord.parse(aaaa).header.rcode == RCODE.NOERROR
    assert answers(aaaa) == []
    assert local_answer("n1", query("elsewhere.example"), lookup) is None
    assert local_answer("n2", query("web"), lookup) is None
    with pytest.raises(DNSError):
        local_answer("n1", b"\x00\x01garbage", lookup)


# -- on the kernel -------------------------------------------------------------------------


@pytest.fixture
def lab() -> Iterator[NetLab]:
    with open_lab() as lab:
        yield lab


async def fake_upstream(*, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                        ) -> None:
    """A resolver on 127.0.0.1 that answers every A query with 10.9.9.9."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    with sock:
        await sock.bind(("127.0.0.1", 0))
        task_status.started(sock.getsockname()[1])
        while True:
            data, peer = await sock.recvfrom(4096)
            request = DNSRecord.parse(data)
            reply = request.reply()
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A("10.9.9.9"), ttl=5))
            await sock.sendto(bytes(reply.pack()), peer)


async def ask_udp(netns: str, server: str, data: bytes) -> bytes:
    sock = trio.socket.from_stdlib_socket(ns_socket(netns, kind=socket.SOCK_DGRAM))
    with sock, trio.fail_after(5):
        await sock.connect((server, 53))
        await sock.send(data)
        return bytes(await sock.recv(4096))


async def ask_tcp(netns: str, server: str, data: bytes) -> bytes:
    raw = ns_socket(netns)
    raw.setblocking(False)
    sock = trio.socket.from_stdlib_socket(raw)
    with trio.fail_after(5):
        await sock.connect((server, 53))
        stream = trio.SocketStream(sock)
        async with stream:
            await stream.send_all(struct.pack("!H", len(data)) + data)
            buf = b""
            while len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
                chunk = await stream.receive_some(4096)
                assert chunk
                buf += chunk
            return buf[2:]


@pytest.mark.kernel
async def test_names_resolve_from_inside_a_namespace(lab: NetLab) -> None:
    br, subnet, nid = lab.bridge(140)
    ep = lab.container(br, subnet, nid, host=5)
    gateway = str(subnet[1])
    async with trio.open_nursery() as nursery:
        up_port = await nursery.start(fake_upstream)
        askers: list[str] = []
        await nursery.start(run_dns, nid, gateway, lookup_in(nid, askers),
                            [("127.0.0.1", up_port)])
        assert answers(await ask_udp(ep.netns, gateway, query("web"))) == ["10.211.140.7"]
        assert answers(await ask_udp(ep.netns, gateway, query("db"))) == [
            "10.211.140.8", "10.211.140.9"]
        assert answers(await ask_tcp(ep.netns, gateway, query("web"))) == ["10.211.140.7"]
        # the callback learns who asks (names come from every network of that container)
        assert set(askers) == {ep.ip}, askers
        # not a container: forwarded to the (fake) host resolver
        assert answers(await ask_udp(ep.netns, gateway, query("elsewhere.example"))) == [
            "10.9.9.9"]
        # busybox's resolver, as a program in a container would use it
        p = await trio.run_process(["nsenter", f"--net={ep.netns}", "busybox", "nslookup",
                                    "web", gateway], capture_stdout=True, check=False)
        assert "10.211.140.7" in p.stdout.decode()
        nursery.cancel_scope.cancel()


@pytest.mark.kernel
async def test_dead_upstream_gives_servfail_not_silence(lab: NetLab) -> None:
    br, subnet, nid = lab.bridge(144)
    ep = lab.container(br, subnet, nid, host=5)
    gateway = str(subnet[1])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:
        hole.bind(("127.0.0.1", 0))  # bound, never read: the upstream never answers
        dead = hole.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(lambda task_status: run_dns(
                nid, gateway, lookup_in(nid), [("127.0.0.1", dead)], timeout=0.3,
                task_status=task_status))
            reply = DNSRecord.parse(await ask_udp(ep.netns, gateway, query("x.example")))
            assert reply.header.rcode == RCODE.SERVFAIL
            # garbage is dropped, and the server keeps answering
            junk = trio.socket.from_stdlib_socket(ns_socket(ep.netns, kind=socket.SOCK_DGRAM))
            with junk:
                await junk.connect((gateway, 53))
                await junk.send(b"\xff" * 7)
            assert answers(await ask_udp(ep.netns, gateway, query("web"))) == ["10.211.140.7"]
            nursery.cancel_scope.cancel()


@pytest.mark.kernel
async def test_other_names_go_to_the_asking_clients_own_upstreams(lab: NetLab) -> None:
    """A container with `--dns` has its questions forwarded there (Docker's ExtDNS); a
    client with no upstream that answers gets SERVFAIL, not silence."""
    br, subnet, nid = lab.bridge(141)
    ep = lab.container(br, subnet, nid, host=6)
    gateway = str(subnet[1])
    async with trio.open_nursery() as nursery:
        up_port = await nursery.start(fake_upstream)
        asked: list[str] = []

        def upstreams(client_ip: str) -> list[tuple[str, int]]:
            asked.append(client_ip)
            return [("127.0.0.1", up_port)] if len(asked) == 1 else []

        await nursery.start(run_dns, nid, gateway, lookup_in(nid), upstreams)
        assert answers(await ask_udp(ep.netns, gateway, query("elsewhere.example"))) == [
            "10.9.9.9"]
        reply = DNSRecord.parse(await ask_udp(ep.netns, gateway, query("other.example")))
        assert reply.header.rcode == RCODE.SERVFAIL
        assert asked == [ep.ip, ep.ip]
        nursery.cancel_scope.cancel()
