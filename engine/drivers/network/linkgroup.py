"""Link groups over a raw rtnetlink socket: move links into a group, see who is in it, and
delete it — what a batched veth deletion does (issue 14; `Netlink._delete_links`).

I/O: kernel (a raw rtnetlink socket, opened in the namespace the caller names). pyroute2
decodes every attribute of every link (~0.5 ms a link here) and runs one request per call;
these few messages are encoded by hand so that moving a batch's links is ONE write (one
RTM_NEWLINK per link, acked together), the membership check reads only IFLA_GROUP and
IFLA_IFNAME from a dump without statistics, and the group goes in one RTM_DELLINK.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

from engine.drivers.network.netns import run_in_netns

NETLINK_ROUTE = 0
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
IFLA_IFNAME = 3
IFLA_GROUP = 27
IFLA_EXT_MASK = 29
RTEXT_FILTER_SKIP_STATS = 1 << 3
_HDR = struct.Struct("=IHHII")  # nlmsghdr
_IFI = struct.Struct("=BxHiII")  # ifinfomsg
_RTA = struct.Struct("=HH")


def _open() -> socket.socket:
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    s.bind((0, 0))
    return s


def open_rtnl(netns: str = "") -> socket.socket:
    """A raw rtnetlink socket in `netns` (a namespace file's path), or in the caller's."""
    return run_in_netns(netns, _open) if netns else _open()


def _align(n: int) -> int:
    return (n + 3) & ~3


def _request(seq: int) -> bytes:
    attr = _RTA.pack(8, IFLA_EXT_MASK) + struct.pack("=I", RTEXT_FILTER_SKIP_STATS)
    body = _IFI.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr
    return _HDR.pack(_HDR.size + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq,
                     0) + body


def _member(data: bytes, start: int, end: int, group: int) -> str | None:
    """The link's name when the RTM_NEWLINK message in data[start:end] is in `group`."""
    offset = start + _HDR.size + _IFI.size
    name, found = "", 0
    while offset + _RTA.size <= end:
        length, kind = _RTA.unpack_from(data, offset)
        if length < _RTA.size:
            break
        if kind == IFLA_GROUP:
            found = struct.unpack_from("=I", data, offset + 4)[0]
        elif kind == IFLA_IFNAME:
            name = data[offset + 4:offset + length].split(b"\0", 1)[0].decode()
        offset += _align(length)
    return name if found == group else None


def group_members(sock: socket.socket, group: int, seq: int = 1) -> set[str]:
    """The names of the links in `group` in the socket's namespace."""
    sock.send(_request(seq))
    members: set[str] = set()
    while True:
        data = sock.recv(1 << 16)
        offset = 0
        while offset + _HDR.size <= len(data):
            length, kind, _flags, got, _pid = _HDR.unpack_from(data, offset)
            if got != seq:  # a late answer to an earlier request that failed half-way
                offset += _align(length)
                continue
            if kind == NLMSG_DONE:
                return members
            if kind == NLMSG_ERROR:
                code = -struct.unpack_from("=i", data, offset + _HDR.size)[0]
                raise OSError(code or errno.EIO, f"link dump: {os.strerror(code or errno.EIO)}")
            if kind == RTM_NEWLINK:
                name = _member(data, offset, offset + length, group)
                if name is not None:
                    members.add(name)
            offset += _align(length)


def _attr(kind: int, payload: bytes) -> bytes:
    data = _RTA.pack(_RTA.size + len(payload), kind) + payload
    return data + b"\0" * (_align(len(data)) - len(data))


def _link_message(mtype: int, seq: int, attrs: bytes) -> bytes:
    body = _IFI.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attrs
    return _HDR.pack(_HDR.size + len(body), mtype, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


def _acks(sock: socket.socket, expected: set[int]) -> dict[int, int]:
    """seq -> errno (0: done) of the acks for the messages numbered `expected`."""
    codes: dict[int, int] = {}
    while not expected.issubset(codes):
        data = sock.recv(1 << 16)
        offset = 0
        while offset + _HDR.size <= len(data):
            length, kind, _flags, seq, _pid = _HDR.unpack_from(data, offset)
            if kind == NLMSG_ERROR and seq in expected:
                codes[seq] = -struct.unpack_from("=i", data, offset + _HDR.size)[0]
            offset += _align(length)
    return codes


def set_group(sock: socket.socket, names: list[str], group: int, seq: int) -> dict[str, int]:
    """Move each named link into `group`, all in one write; name -> errno (0: moved).
    The messages are numbered seq, seq+1, …"""
    wanted = {seq + i: name for i, name in enumerate(names)}
    sock.send(b"".join(
        _link_message(RTM_NEWLINK, n, _attr(IFLA_IFNAME, name.encode() + b"\0")
                      + _attr(IFLA_GROUP, struct.pack("=I", group)))
        for n, name in wanted.items()))
    return {wanted[n]: code for n, code in _acks(sock, set(wanted)).items()}


def delete_group(sock: socket.socket, group: int, seq: int) -> int:
    """`ip link delete group N`: every link in the group, one RTM_DELLINK; errno (0: done)."""
    sock.send(_link_message(RTM_DELLINK, seq, _attr(IFLA_GROUP, struct.pack("=I", group))))
    return _acks(sock, {seq})[seq]
