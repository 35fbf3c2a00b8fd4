"""Bridges and veth pairs for container networks, over rtnetlink.

I/O: kernel (rtnetlink through one long-lived pyroute2 IPRoute socket in the host namespace;
inside a container's namespace a raw rtnetlink socket opened by a thread that joined it, plus
an ioctl). It executes `BridgePlan` / `VethPlan` values from `engine.core.net_plan`.

Per connect the host socket sends one RTM_NEWLINK: the veth pair is created with its host end
already enslaved to the bridge, up, and its peer created *directly inside* the container's
namespace under its final name and MAC — no rename, no move. Then one thread joins the
namespace, raises the peer, and sends the address and the default route in one batched
netlink write. Every operation is idempotent: `ensure_bridge` keeps what exists, `connect`
keeps a correct pair and replaces one that is not, `disconnect` / `delete_bridge` accept a
missing link.

Teardown order matters: `disconnect` each endpoint *before* `delete_netns`, because the kernel
frees a namespace (and the veths in it) asynchronously after its last reference goes.

Disconnects that overlap in time are deleted together (`linkbatch.LinkBatcher`): their host
ends are moved into a link group of this `Netlink`'s own and that group is deleted in one
RTM_DELLINK (`ip link delete group N`), one RCU wait for the batch instead of one per veth
(issue 14). The group ids come from a range derived from the owner's identity (the daemon's
exec root), never 0 (every link's default); each batch takes the next id, and the group is
deleted only when a dump just before shows nothing in it but the batch's links (otherwise the
batch's links go one by one), so a link that is not ours never goes with ours.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import logging
import os
import socket
import struct
import threading
import zlib

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from engine.core.errors import KernelError
from engine.core.net_plan import BridgePlan, ParentPlan, VethPlan
from engine.drivers.network.linkbatch import LinkBatcher
from engine.drivers.network.linkgroup import delete_group, group_members, open_rtnl, set_group
from engine.drivers.network.netns import run_in_netns, set_link_up
from engine.drivers.network.rawveth import add_veth, delete_link, link_index
from engine.drivers.network.seam import OWNED_ALIAS, LinkInfo

__all__ = ["LinkInfo", "Netlink", "configure_peer"]

log = logging.getLogger("shipslog.network")

NETLINK_ROUTE = 0
RTM_NEWADDR = 20
RTM_NEWROUTE = 24
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_CREATE = 0x400
NLMSG_ERROR = 2
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTN_UNICAST = 1
SIOCGIFHWADDR = 0x8927
IFA_F_NODAD = 0x02  # no duplicate address detection: a v6 address usable at once (Docker)
IPVLAN_MODE = {"l2": 0, "l3": 1, "l3s": 2}  # linux/if_link.h enum ipvlan_mode
GROUP_TAG = 0x53 << 24  # our link groups: 0x53HHHHNN (H: owner hash, N: batch counter)
GROUP_SPAN = 0x100
LINGER_S = 0.002  # a lone deletion waits this long for others to join its batch
_WHAT = {1: "address", 2: "default route", 3: "IPv6 address", 4: "IPv6 default route"}


def _ignore(exc: NetlinkError, *codes: int) -> None:
    if exc.code not in codes:
        raise KernelError(f"netlink: {os.strerror(exc.code)}") from exc


def _hwaddr(ifname: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = fcntl.ioctl(s, SIOCGIFHWADDR, struct.pack("16s24x", ifname.encode()))
    return ":".join(f"{b:02x}" for b in req[18:24])


def _find_by_alias(alias: str) -> int:
    """The index of the link marked `alias` in the calling thread's namespace (0: none)."""
    with IPRoute() as ipr:
        for link in ipr.get_links():
            if link.get("IFLA_IFALIAS") == alias:
                return int(link["index"])
    return 0


def _delete_by_alias(alias: str) -> None:
    with IPRoute() as ipr:
        for link in ipr.get_links():
            if link.get("IFLA_IFALIAS") == alias:
                try:
                    ipr.link("del", index=link["index"])
                except NetlinkError as exc:
                    _ignore(exc, errno.ENODEV)


def _sublink_hint(code: int, kind: str) -> str:
    if code == errno.EOPNOTSUPP:
        return (f"this kernel has no {kind} support (CONFIG_{kind.upper()}); use another "
                "network driver")
    if code == errno.EBUSY:
        return ("the parent already has a sub-interface of another mode, or one in passthru "
                "mode: use another parent")
    return "check the parent interface and the driver's mode"


def configure_peer(plan: VethPlan) -> None:
    """Peer up, address, default route (one netlink write). Call it from a thread that has
    joined the container's namespace (`run_in_netns`); `Netlink.connect` does."""
    if plan.mac and _hwaddr(plan.peer_ifname) != plan.mac:
        # a peer of that name that is not ours (another network's endpoint)
        raise OSError(errno.EEXIST, f"{plan.peer_ifname} belongs to another endpoint")
    set_link_up(plan.peer_ifname)
    index = socket.if_nametoindex(plan.peer_ifname)
    ip, prefix = plan.ip_cidr.split("/")
    addr = ifaddrmsg()
    addr["family"] = socket.AF_INET
    addr["prefixlen"] = int(prefix)
    addr["index"] = index
    broadcast = ipaddress.IPv4Network(plan.ip_cidr, strict=False).broadcast_address
    addr["attrs"] = [("IFA_LOCAL", ip), ("IFA_ADDRESS", ip), ("IFA_BROADCAST", str(broadcast))]
    messages = [_message(addr, RTM_NEWADDR, 1)]
    if plan.default_route:
        messages.append(_message(_default_route(socket.AF_INET, plan.gateway, index),
                                 RTM_NEWROUTE, 2))
    if plan.ip6_cidr:
        ip6, prefix6 = plan.ip6_cidr.split("/")
        addr6 = ifaddrmsg()
        addr6["family"] = socket.AF_INET6
        addr6["prefixlen"] = int(prefix6)
        addr6["index"] = index
        addr6["flags"] = IFA_F_NODAD
        addr6["attrs"] = [("IFA_ADDRESS", ip6)]
        messages.append(_message(addr6, RTM_NEWADDR, 3))
        if plan.default_route:
            messages.append(_message(_default_route(socket.AF_INET6, plan.gateway6, index),
                                     RTM_NEWROUTE, 4))
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                       NETLINK_ROUTE) as s:
        s.bind((0, 0))
        s.send(b"".join(messages))
        pending = len(messages)
        while pending:
            data = s.recv(65536)
            offset = 0
            while offset + 16 <= len(data) and pending:
                length, mtype, _, seq, _ = struct.unpack_from("=IHHII", data, offset)
                if mtype == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, offset + 16)[0]
                    if code:
                        what = _WHAT.get(seq, "address")
                        raise KernelError(f"cannot set the {what} of {plan.peer_ifname}: "
                                          f"{os.strerror(code)}")
                    pending -= 1
                offset += (length + 3) & ~3
                if length == 0:
                    break


def _default_route(family: int, gateway: str, index: int) -> rtmsg:
    """Via `gateway`; with none (ipvlan l3/l3s, issue 20) straight out of the device."""
    route = rtmsg()
    route["family"] = family
    route["table"] = RT_TABLE_MAIN
    route["proto"] = RTPROT_STATIC
    route["scope"] = RT_SCOPE_UNIVERSE if gateway else RT_SCOPE_LINK
    route["type"] = RTN_UNICAST
    route["attrs"] = ([("RTA_GATEWAY", gateway)] if gateway else []) + [("RTA_OIF", index)]
    return route


def _message(msg: ifaddrmsg | rtmsg, mtype: int, seq: int) -> bytes:
    msg["header"]["type"] = mtype
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
    msg["header"]["sequence_number"] = seq
    msg.encode()
    return bytes(msg.data)


class Netlink:
    """One rtnetlink socket in the host namespace, used under a lock (pyroute2's sync API
    is not thread-safe, and the supervisor calls from trio worker threads)."""

    def __init__(self, netns: str = "", owner: str = "") -> None:
        # `netns`: a namespace to work in instead of the caller's (the contract suite's lab).
        # pyroute2 opens its socket when first used, so a Netlink made in a thread that
        # joined a namespace would still act wherever it is later used: name it here.
        # `owner`: what the link groups of batched deletions are derived from (the daemon's
        # exec root); none: a random one, this object's alone.
        self._ipr = IPRoute(netns=netns) if netns else IPRoute()
        self._lock = threading.Lock()
        self._owner = owner or os.urandom(8).hex()
        self._netns = netns
        self._raw: socket.socket | None = None  # make_pair and batched deletions; opened on use
        self._seq = 0
        self._batches = 0
        self._deleter = LinkBatcher(self._delete_links, linger=LINGER_S)

    def close(self) -> None:
        with self._lock:
            self._ipr.close()
            if self._raw is not None:
                self._raw.close()

    def _index(self, name: str) -> int | None:
        found = self._ipr.link_lookup(ifname=name)
        return int(found[0]) if found else None

    # -- bridges --------------------------------------------------------------------------

    def ensure_bridge(self, plan: BridgePlan) -> int:
        """The bridge, up, with the gateway address; returns its ifindex."""
        ip, prefix = plan.gateway_cidr.split("/")
        with self._lock:
            index = self._index(plan.name)
            if index is None:
                try:
                    self._ipr.link("add", ifname=plan.name, kind="bridge", mtu=plan.mtu)
                except NetlinkError as exc:
                    _ignore(exc, errno.EEXIST)
                index = self._index(plan.name)
                if index is None:
                    raise KernelError(f"bridge {plan.name} vanished while being created")
            try:
                self._ipr.addr("add", index=index, address=ip, prefixlen=int(prefix))
            except NetlinkError as exc:
                _ignore(exc, errno.EEXIST)
            if plan.gateway6_cidr:
                ip6, prefix6 = plan.gateway6_cidr.split("/")
                try:
                    self._ipr.addr("add", index=index, address=ip6, prefixlen=int(prefix6),
                                   flags=IFA_F_NODAD)
                except NetlinkError as exc:
                    _ignore(exc, errno.EEXIST)
            self._ipr.link("set", index=index, state="up")
            return index

    def delete_bridge(self, name: str) -> None:
        with self._lock:
            code = delete_link(self._rtnl(), name, self._next_seq())
            if code not in (0, errno.ENODEV):
                raise KernelError(f"netlink: {os.strerror(code)}")

    # -- endpoints ------------------------------------------------------------------------

    def _add_veth(self, plan: VethPlan, bridge_index: int, ns_fd: int) -> None:
        self._ipr.link("add", ifname=plan.host_ifname, kind="veth", master=bridge_index,
                       mtu=plan.mtu, state="up",
                       peer={"ifname": plan.peer_ifname, "net_ns_fd": ns_fd,
                             "address": plan.mac, "mtu": plan.mtu})

    def make_pair(self, plan: VethPlan, *, keep_existing: bool) -> bool:
        """Create the pair; True when an existing pair on the right bridge was kept.
        The common case is two messages on the raw socket (`rawveth`); a pair already
        there (a retried start) takes the pyroute2 path below."""
        ns_fd = os.open(plan.netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            with self._lock:
                raw = self._rtnl()
                bridge_index = link_index(raw, plan.bridge, self._next_seq())
                if bridge_index is None:
                    raise KernelError(f"bridge {plan.bridge} does not exist",
                                      hint="the network must be created first")
                code = add_veth(raw, plan, bridge_index, ns_fd, self._next_seq())
                if code == 0:
                    return False
                if code == errno.EXFULL:  # BR_MAX_PORTS (RELIABILITY L-02)
                    raise KernelError(f"bridge {plan.bridge} has no free port")
                if code != errno.EEXIST:
                    raise KernelError(f"netlink: {os.strerror(code)}")
                existing = list(self._ipr.get_links(ifname=plan.host_ifname)) \
                    if self._index(plan.host_ifname) is not None else []
                if keep_existing and existing and existing[0].get("master") == bridge_index:
                    self._ipr.link("set", index=existing[0]["index"], state="up")
                    return True
                # A pair from an interrupted earlier run that is not what the plan says:
                # replace it.
                try:
                    self._ipr.link("del", ifname=plan.host_ifname)
                except NetlinkError as exc:
                    _ignore(exc, errno.ENODEV)
                try:
                    self._add_veth(plan, bridge_index, ns_fd)
                except NetlinkError as exc:
                    why = (f"{plan.peer_ifname} is already used in the container"
                           if exc.code == errno.EEXIST else os.strerror(exc.code))
                    raise KernelError(f"cannot create {plan.host_ifname}/{plan.peer_ifname}: "
                                      f"{why}", hint="give each network its own ethN") from exc
                return False
        finally:
            os.close(ns_fd)

    def connect(self, plan: VethPlan) -> str:
        """Make the container's endpoint on the bridge; return the host-side veth name.
        Running it again keeps a correct existing pair (no traffic lost) and re-applies the
        address and route; a pair that does not match the plan is replaced."""
        kept = self.make_pair(plan, keep_existing=True)
        try:
            run_in_netns(plan.netns_path, configure_peer, plan)
            return plan.host_ifname
        except OSError as exc:
            if not kept:
                raise KernelError(f"cannot configure {plan.peer_ifname} in "
                                  f"{plan.netns_path}: {exc}") from exc
        self.make_pair(plan, keep_existing=False)
        try:
            run_in_netns(plan.netns_path, configure_peer, plan)
        except OSError as exc:
            raise KernelError(f"cannot configure {plan.peer_ifname} in {plan.netns_path}: "
                              f"{exc}") from exc
        return plan.host_ifname

    def disconnect(self, host_ifname: str) -> None:
        """Delete the pair by its host end (the peer in the container goes with it), in one
        batch with the disconnects running at the same time."""
        self._deleter.delete(host_ifname)

    @property
    def batch_sizes(self) -> list[int]:
        """How many links each recent batched deletion carried (debugging, tests)."""
        return list(self._deleter.sizes)

    @property
    def group_range(self) -> range:
        """The link groups batched deletions take in turn: 0x53HHHH00-ff, H from the owner."""
        seed = zlib.crc32(self._owner.encode()) & 0xffff
        return range(GROUP_TAG | seed << 8, (GROUP_TAG | seed << 8) + GROUP_SPAN)

    def _delete_links(self, names: list[str]) -> dict[str, BaseException]:
        """`LinkBatcher`'s kernel call: the links gone, one RTM_DELLINK for all of them."""
        names = sorted(set(names))
        errors: dict[str, BaseException] = {}
        with self._lock:
            if len(names) == 1:  # alone: a group would only add messages
                self._delete_one(names[0], errors)
                return errors
            group = self.group_range[self._batches % GROUP_SPAN]
            self._batches += 1
            if self._raw is None:
                self._raw = open_rtnl(self._netns)
            moved = set()
            for name, code in set_group(self._raw, names, group, self._next_seq(len(names))
                                        ).items():
                if code == 0:
                    moved.add(name)
                elif code != errno.ENODEV:  # gone already: fine
                    errors[name] = KernelError(f"netlink: {os.strerror(code)}")
            if moved:
                self._delete_group(group, moved, errors)
        return errors

    def _next_seq(self, count: int = 1) -> int:
        """The first of `count` fresh sequence numbers on the raw socket."""
        seq = self._seq + 1
        self._seq += count
        return seq

    def _delete_group(self, group: int, moved: set[str], errors: dict[str, BaseException]
                      ) -> None:
        """Delete `group` if it holds exactly `moved`; otherwise each of those on its own."""
        assert self._raw is not None
        members = group_members(self._raw, group, self._next_seq())
        if members <= moved:  # a link gone meanwhile is fine; another's never goes with ours
            code = delete_group(self._raw, group, self._next_seq())
            if code in (0, errno.ENODEV):  # ENODEV: someone deleted them between the steps
                return
        else:
            log.warning("link group %#x holds links that are not ours (%s): deleting ours "
                        "one by one", group, ", ".join(sorted(members - moved)))
        for name in sorted(moved):
            self._delete_one(name, errors)
            if name in errors:  # still here: it must not go with a later batch's group
                set_group(self._raw, [name], 0, self._next_seq())

    def _delete_one(self, name: str, errors: dict[str, BaseException]) -> None:
        code = delete_link(self._rtnl(), name, self._next_seq())
        if code not in (0, errno.ENODEV):
            errors[name] = KernelError(f"netlink: {os.strerror(code)}")

    def _rtnl(self) -> socket.socket:
        """The raw rtnetlink socket (call it under the lock); opened on first use."""
        if self._raw is None:
            self._raw = open_rtnl(self._netns)
        return self._raw

    # -- parents and sub-interfaces (macvlan, ipvlan: issue 20) ---------------------------

    def link_kinds(self) -> dict[str, str]:
        """Every link in this namespace: name -> kind."""
        with self._lock:
            links = list(self._ipr.get_links())
        return {link.get("ifname") or "": link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
                or "" for link in links}

    def ensure_parent(self, plan: ParentPlan) -> None:
        """The parent link, up: the user's must exist; a VLAN or dummy one we make, marked
        with our alias so that reconciliation knows it is ours."""
        with self._lock:
            index = self._index(plan.parent)
            if index is None and not plan.make:
                raise KernelError(f"-o parent interface was not found on the host: "
                                  f"{plan.parent}", hint="name an existing interface")
            if index is None:
                extra: dict[str, object] = {}
                if plan.make == "vlan":
                    base = self._index(plan.base)
                    if base is None:
                        raise KernelError(f"-o parent interface was not found on the host: "
                                          f"{plan.base}", hint="name an existing interface")
                    extra = {"link": base, "vlan_id": plan.vlan_id}
                self._add_parent(plan, extra)
                index = self._index(plan.parent)
                if index is None:
                    raise KernelError(f"link {plan.parent} vanished while being created")
                self._ipr.link("set", index=index, ifalias=OWNED_ALIAS + plan.network_id)
            self._ipr.link("set", index=index, state="up")

    def _add_parent(self, plan: ParentPlan, extra: dict[str, object]) -> None:
        """Make a VLAN or isolated parent. A kernel without the dummy driver (CONFIG_DUMMY
        unset, as on some VMs) gets an empty bridge instead: it too is a segment no host
        port joins, and macvlan/ipvlan children on it reach only each other."""
        try:
            self._ipr.link("add", ifname=plan.parent, kind=plan.make, **extra)
        except NetlinkError as exc:
            if exc.code == errno.EOPNOTSUPP and plan.make == "dummy":
                try:
                    self._ipr.link("add", ifname=plan.parent, kind="bridge")
                except NetlinkError as again:
                    _ignore(again, errno.EEXIST)
                return
            if exc.code == errno.EOPNOTSUPP:
                raise KernelError(f"cannot create {plan.parent}: this kernel has no "
                                  f"{plan.make} links", hint="a VLAN parent needs 802.1Q "
                                  "support (CONFIG_VLAN_8021Q); make the VLAN link yourself "
                                  "or name another parent") from exc
            _ignore(exc, errno.EEXIST)

    def delete_parent(self, plan: ParentPlan) -> None:
        """Remove the parent if we made it: it carries our mark (a network that shares a
        parent another one made removes it last, so the mark names either)."""
        if not plan.make:
            return
        with self._lock:
            found = list(self._ipr.get_links(ifname=plan.parent)) \
                if self._index(plan.parent) is not None else []
            if not found or not (found[0].get("IFLA_IFALIAS") or "").startswith(OWNED_ALIAS):
                return  # a user's link (or gone): never ours to remove
            try:
                self._ipr.link("del", index=found[0]["index"])
            except NetlinkError as exc:
                _ignore(exc, errno.ENODEV)

    def add_sublink(self, plan: VethPlan) -> str:
        """A macvlan/ipvlan endpoint of `plan.bridge` (the parent) in the container's
        namespace as `plan.peer_ifname`. It is made in this namespace under its endpoint id,
        marked with it (ifalias), then moved and renamed in one message; a sub-interface
        already in the namespace with that mark is kept (a step run again)."""
        eid = plan.host_ifname
        if run_in_netns(plan.netns_path, _find_by_alias, eid):
            return eid
        ns_fd = os.open(plan.netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            with self._lock:
                parent = self._index(plan.bridge)
                if parent is None:
                    raise KernelError(f"-o parent interface was not found on the host: "
                                      f"{plan.bridge}", hint="name an existing interface")
                if self._index(eid) is not None:  # left by an interrupted earlier run
                    self._ipr.link("del", ifname=eid)
                mode: dict[str, object] = {}
                if plan.mode:  # macvlan's modes by name; ipvlan's as the kernel's numbers
                    mode = {f"{plan.kind}_mode": IPVLAN_MODE.get(plan.mode, plan.mode)
                            if plan.kind == "ipvlan" else plan.mode}
                extra: dict[str, object] = {"address": plan.mac} if plan.mac else {}
                try:
                    self._ipr.link("add", ifname=eid, kind=plan.kind, link=parent, mtu=plan.mtu,
                                   **mode, **extra)
                except NetlinkError as exc:
                    raise KernelError(f"cannot create {plan.kind} on {plan.bridge}: "
                                      f"{os.strerror(exc.code)}",
                                      hint=_sublink_hint(exc.code, plan.kind)) from exc
                index = self._index(eid)
                try:
                    self._ipr.link("set", index=index, ifalias=eid)
                    self._ipr.link("set", index=index, net_ns_fd=ns_fd,
                                   ifname=plan.peer_ifname)
                except NetlinkError as exc:
                    self._ipr.link("del", index=index)
                    why = (f"{plan.peer_ifname} is already used in the container"
                           if exc.code == errno.EEXIST else os.strerror(exc.code))
                    raise KernelError(f"cannot move {eid} into the container: {why}") from exc
        finally:
            os.close(ns_fd)
        return eid

    def delete_sublink(self, netns_path: str, endpoint_id: str) -> None:
        """Remove the endpoint marked `endpoint_id` from the namespace (gone already: fine),
        and a stray of that name left in this namespace by a crash before the move."""
        if os.path.exists(netns_path):
            try:
                run_in_netns(netns_path, _delete_by_alias, endpoint_id)
            except OSError:
                pass  # not a namespace any more: its links went with it
        self.disconnect(endpoint_id)

    # -- reading --------------------------------------------------------------------------

    def list_links(self) -> list[LinkInfo]:
        """Every slg* link in the host namespace, and every link we marked as ours (a VLAN
        parent, issue 20), for reconciliation."""
        with self._lock:
            links = list(self._ipr.get_links())
        names = {int(link["index"]): link.get("ifname") for link in links}
        out = []
        for link in links:
            name = link.get("ifname") or ""
            if not name.startswith("slg") and not (link.get("IFLA_IFALIAS") or "").startswith(
                    OWNED_ALIAS):
                continue
            master = link.get("master")
            out.append(LinkInfo(name=name,
                                kind=link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") or "",
                                master=names.get(int(master), "") if master else "",
                                up=bool(link["flags"] & 1),
                                alias=link.get("IFLA_IFALIAS") or ""))
        return sorted(out, key=lambda li: li.name)
