"""The DNS server of a user-defined network: container names answered, the rest forwarded.

I/O: network. One trio task per network listens on the network's gateway address, port 53,
UDP and TCP (the address only exists on that network's bridge, and the `direct` nft rule keeps
other networks off it, so a query's network is the socket it arrived on). Wire format is
parsed and built by `dnslib`.

    A     for a name the resolver callback knows: its IPv4 addresses (TTL 600, like Docker)
    AAAA  the same for its IPv6 addresses (a container on a network with EnableIPv6)
    other types for such a name (or AAAA with no v6 address): an empty NOERROR answer
          (never an NXDOMAIN that would make a stub resolver give up on the A record)
    anything else, or a name the callback does not know: forwarded unchanged to the asking
          container's `--dns` servers, or else the host's resolvers (from /etc/resolv.conf,
          read by the caller), each tried in turn; SERVFAIL when none answers in time

`lookup(network_id, name, client_ip)` must be fast and non-blocking: the supervisor answers it
from the in-memory projection (engine/core/dns_names.py: names on every network of the
container that asks, which it finds by the query's source address).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Sequence

import trio
from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSError, DNSRecord

from engine.drivers.network.netns import run_in_netns

Lookup = Callable[[str, str, str], Sequence[str]]  # (network id, name, client ip) -> addresses
Servers = Sequence[tuple[str, int]]
# where to forward: the same servers for everyone, or per asking client (its `--dns` servers)
Upstreams = Servers | Callable[[str], Servers]
TTL = 600
UDP_LIMIT = 512
MAX_CONCURRENT = 128
TCP_IDLE_SECONDS = 10.0


def local_answer(network_id: str, data: bytes, lookup: Lookup,
                 client_ip: str = "") -> bytes | None:
    """The reply for a query about a name on this network, or None to forward it.
    Raises DNSError for a packet that is not a DNS query."""
    request = DNSRecord.parse(data)
    if request.header.qr or len(request.questions) != 1:
        raise DNSError("not a single-question query")
    q = request.q
    name = str(q.qname).rstrip(".").lower()
    addresses = list(lookup(network_id, name, client_ip)) if name else []
    if not addresses:
        return None
    reply = request.reply(ra=1, aa=1)
    for ip in addresses:  # the callback gives both families; the question picks one
        if ":" in ip and q.qtype in (QTYPE.AAAA, QTYPE.ANY):
            reply.add_answer(RR(q.qname, QTYPE.AAAA, rdata=AAAA(ip), ttl=TTL))
        elif ":" not in ip and q.qtype in (QTYPE.A, QTYPE.ANY):
            reply.add_answer(RR(q.qname, QTYPE.A, rdata=A(ip), ttl=TTL))
    return bytes(reply.pack())


def servfail(data: bytes) -> bytes | None:
    try:
        request = DNSRecord.parse(data)
    except DNSError:
        return None
    reply = request.reply(ra=1)
    reply.header.rcode = RCODE.SERVFAIL
    return bytes(reply.pack())


def _fit_udp(reply: bytes) -> bytes:
    if len(reply) <= UDP_LIMIT:
        return reply
    record = DNSRecord.parse(reply)
    record.rr = []
    record.header.tc = 1
    return bytes(record.pack())


async def forward_udp(data: bytes, upstreams: Sequence[tuple[str, int]],
                      timeout: float) -> bytes | None:
    """Ask each upstream in turn from a fresh socket (a random source port per query);
    accept only a reply from that upstream with the query's id."""
    for host, port in upstreams:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        with sock:
            try:
                await sock.connect((host, port))
                await sock.send(data)
                with trio.move_on_after(timeout):
                    while True:
                        reply = await sock.recv(65535)
                        if len(reply) >= 2 and reply[:2] == data[:2]:
                            return reply
            except OSError:
                continue
    return None


async def forward_tcp(data: bytes, upstreams: Sequence[tuple[str, int]],
                      timeout: float) -> bytes | None:
    for host, port in upstreams:
        with trio.move_on_after(timeout):
            try:
                stream = await trio.open_tcp_stream(host, port)
                async with stream:
                    await stream.send_all(struct.pack("!H", len(data)) + data)
                    return await _read_message(stream)
            except (OSError, trio.BrokenResourceError, EOFError):
                continue
    return None


async def _read_exactly(stream: trio.abc.ReceiveStream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = await stream.receive_some(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


async def _read_message(stream: trio.abc.ReceiveStream) -> bytes:
    (length,) = struct.unpack("!H", await _read_exactly(stream, 2))
    return await _read_exactly(stream, length)


async def resolve(network_id: str, data: bytes, lookup: Lookup,
                  upstreams: Upstreams, *, timeout: float,
                  tcp: bool = False, client_ip: str = "") -> bytes | None:
    """The reply to one query (None: not a DNS query, drop it)."""
    try:
        reply = local_answer(network_id, data, lookup, client_ip)
    except (DNSError, ValueError, IndexError, struct.error):
        return None
    if reply is None:
        forward = forward_tcp if tcp else forward_udp
        servers = upstreams(client_ip) if callable(upstreams) else upstreams
        reply = await forward(data, servers, timeout) or servfail(data)
    return reply


async def _serve_udp(sock: trio.socket.SocketType, network_id: str, lookup: Lookup,
                     upstreams: Upstreams, timeout: float) -> None:
    limiter = trio.CapacityLimiter(MAX_CONCURRENT)

    async def one(data: bytes, client: tuple[str, int]) -> None:
        async with limiter:
            reply = await resolve(network_id, data, lookup, upstreams, timeout=timeout,
                                  client_ip=client[0])
            if reply is not None:
                try:
                    await sock.sendto(_fit_udp(reply), client)
                except OSError:
                    pass

    async with trio.open_nursery() as nursery:
        while True:
            data, client = await sock.recvfrom(65535)
            if limiter.borrowed_tokens >= MAX_CONCURRENT:
                continue  # overloaded: drop, the client retries
            nursery.start_soon(one, data, client)


async def _serve_tcp_client(stream: trio.SocketStream, network_id: str, lookup: Lookup,
                            upstreams: Upstreams, timeout: float) -> None:
    try:
        client_ip = str(stream.socket.getpeername()[0])
    except OSError:
        client_ip = ""
    async with stream:
        while True:
            with trio.move_on_after(TCP_IDLE_SECONDS) as idle:
                try:
                    data = await _read_message(stream)
                except (EOFError, trio.BrokenResourceError, OSError, struct.error):
                    return
            if idle.cancelled_caught:
                return
            reply = await resolve(network_id, data, lookup, upstreams, timeout=timeout,
                                  tcp=True, client_ip=client_ip)
            if reply is None:
                return
            try:
                await stream.send_all(struct.pack("!H", len(reply)) + reply)
            except (trio.BrokenResourceError, OSError):
                return


def _bound_sockets(listen_ip: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a listening TCP socket on listen_ip:port in the calling thread's network
    namespace (they stay in it for their whole life)."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        udp.bind((listen_ip, port))
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((listen_ip, port))
        tcp.listen(128)
    except OSError:
        udp.close()
        tcp.close()
        raise
    return udp, tcp


async def run_dns(network_id: str, listen_ip: str, lookup: Lookup,
                  upstreams: Upstreams, *, port: int = 53,
                  timeout: float = 2.0, netns_path: str = "",
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve DNS for one network on listen_ip:port (UDP and TCP) until cancelled. With
    `netns_path` (a macvlan/ipvlan container, issue 20: the host cannot reach it) the
    sockets are made inside that network namespace, on Docker's 127.0.0.11."""
    if netns_path:
        raw_udp, raw_tcp = await trio.to_thread.run_sync(
            run_in_netns, netns_path, _bound_sockets, listen_ip, port)
        udp = trio.socket.from_stdlib_socket(raw_udp)
        listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(raw_tcp))]
    else:
        udp = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    with udp:
        if not netns_path:
            await udp.bind((listen_ip, port))
            listeners = await trio.open_tcp_listeners(port, host=listen_ip)

        async def tcp_handler(stream: trio.SocketStream) -> None:
            await _serve_tcp_client(stream, network_id, lookup, upstreams, timeout)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(_serve_udp, udp, network_id, lookup, upstreams, timeout)
            nursery.start_soon(trio.serve_listeners, tcp_handler, listeners)
            task_status.started()
