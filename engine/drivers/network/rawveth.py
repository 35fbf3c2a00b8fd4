"""A veth pair made with one RTM_NEWLINK on a raw rtnetlink socket: what a container's
start does for each bridge network it joins (`Netlink.make_pair`); and a link deleted by
name the same way (a lone veth, a bridge), so that a `down` after an `up` does not meet
pyroute2's per-thread setup for the first time either.

I/O: kernel (the raw rtnetlink socket the caller owns and passes in). pyroute2's sync API
sets up an asyncio event loop and a netlink socket of its own in every thread that first
uses it, and trio hands a burst of starts (Compose's `up`) to fresh worker threads: ten
pairs made at once took 25-235 ms there against 16-41 ms one after another (issue 14). The
two messages on this path are encoded here, as `linkgroup` does for batched deletions.

The pair is created with its host end enslaved to the bridge and up, and its peer made
directly inside the container's namespace (IFLA_NET_NS_FD) under its final name and MAC.
"""

from __future__ import annotations

import errno
import socket
import struct

from engine.core.net_plan import VethPlan
from engine.drivers.network.linkgroup import _HDR, _IFI, _align, _attr

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
IFF_UP = 0x1
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_MASTER = 10
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack("=I", value))


def _name(kind: int, name: str) -> bytes:
    return _attr(kind, name.encode() + b"\0")


def _mac(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def veth_message(plan: VethPlan, bridge_index: int, ns_fd: int, seq: int) -> bytes:
    """RTM_NEWLINK (create, exclusive): host end up on the bridge, peer in the namespace."""
    peer_attrs = _name(IFLA_IFNAME, plan.peer_ifname) + _u32(IFLA_NET_NS_FD, ns_fd) \
        + _u32(IFLA_MTU, plan.mtu)
    if plan.mac:
        peer_attrs += _attr(IFLA_ADDRESS, _mac(plan.mac))
    peer = _IFI.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + peer_attrs
    # nested attributes without NLA_F_NESTED, as iproute2 sends them
    info = _name(IFLA_INFO_KIND, "veth") + _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer))
    attrs = _name(IFLA_IFNAME, plan.host_ifname) + _u32(IFLA_MTU, plan.mtu) \
        + _u32(IFLA_MASTER, bridge_index) + _attr(IFLA_LINKINFO, info)
    body = _IFI.pack(socket.AF_UNSPEC, 0, 0, IFF_UP, IFF_UP) + attrs
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    return _HDR.pack(_HDR.size + len(body), RTM_NEWLINK, flags, seq, 0) + body


def _answer(sock: socket.socket, seq: int) -> tuple[int, int]:
    """(errno, ifindex of an RTM_NEWLINK reply) once the request numbered `seq` is acked."""
    index = 0
    while True:
        data = sock.recv(1 << 16)
        offset = 0
        while offset + _HDR.size <= len(data):
            length, kind, _flags, got, _pid = _HDR.unpack_from(data, offset)
            if length < _HDR.size:
                break
            if got == seq and kind == RTM_NEWLINK:
                index = _IFI.unpack_from(data, offset + _HDR.size)[2]
            elif got == seq and kind == NLMSG_ERROR:
                return -struct.unpack_from("=i", data, offset + _HDR.size)[0], index
            offset += _align(length)


def link_index(sock: socket.socket, name: str, seq: int) -> int | None:
    """The ifindex of the link called `name` in the socket's namespace (None: no such)."""
    body = _IFI.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _name(IFLA_IFNAME, name)
    sock.send(_HDR.pack(_HDR.size + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, seq, 0)
              + body)
    code, index = _answer(sock, seq)
    if code in (errno.ENODEV, errno.ENOENT) or (code == 0 and not index):
        return None
    if code:
        raise OSError(code, f"looking up link {name}")
    return index


def add_veth(sock: socket.socket, plan: VethPlan, bridge_index: int, ns_fd: int,
             seq: int) -> int:
    """Create the pair; the kernel's errno (0: made; EEXIST: a link of that name is there)."""
    sock.send(veth_message(plan, bridge_index, ns_fd, seq))
    return _answer(sock, seq)[0]


def delete_link(sock: socket.socket, name: str, seq: int) -> int:
    """RTM_DELLINK by name; the kernel's errno (0: deleted; ENODEV: there was none)."""
    body = _IFI.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _name(IFLA_IFNAME, name)
    sock.send(_HDR.pack(_HDR.size + len(body), RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, seq, 0)
              + body)
    return _answer(sock, seq)[0]
