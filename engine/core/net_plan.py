"""Turning recorded network facts into kernel work described as data.

I/O: none. Given the ids, subnets and addresses the log recorded, these functions return the
names of the kernel objects (netns, bridge, veth), the MAC a container gets, and `VethPlan` /
`BridgePlan` values that `engine/drivers/network/netlink.py` executes. Everything is a function of
its
inputs, so the reconciler can recompute what *should* exist and compare it with `list_links()`.

Names (all start with `slg` so a test fixture and the reconciler can find strays):

    netns   slg-<12 hex of the container id>
    bridge  slg-<11 hex of the network id>          (NetworkCreated.bridge)
    veth    slg<12 hex of sha256(container:network)> host end; the peer is created straight
            inside the container's netns as eth0, eth1, …
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, replace

from engine.core.errors import Conflict, InvalidArgument

IFNAMSIZ = 15  # usable bytes of a Linux interface name (IFNAMSIZ 16 minus the NUL)
DEFAULT_MTU = 1500
# A Linux bridge refuses its 1025th port ("exchange full", moby#34098): the kernel's
# BR_MAX_PORTS is 1024 and port numbers start at 1. RELIABILITY L-02 wants a clear refusal
# *before* any link is made, so the supervisor asks `check_bridge_capacity` first.
BRIDGE_MAX_PORTS = 1023


def _hex(value: str) -> str:
    if not value or any(c not in "0123456789abcdef" for c in value):
        raise InvalidArgument(f"invalid id {value!r}", hint="ids are lowercase hex")
    return value


def netns_name(container_id: str) -> str:
    return "slg-" + _hex(container_id)[:12]


def veth_name(container_id: str, network_id: str) -> str:
    digest = hashlib.sha256(f"{_hex(container_id)}:{_hex(network_id)}".encode()).hexdigest()
    return "slg" + digest[:12]


def container_ifname(index: int) -> str:
    """eth0 for the first network a container joins, eth1 for the next, as Docker names them."""
    if index < 0:
        raise InvalidArgument(f"invalid interface index {index}")
    return f"eth{index}"


def mac_for_ip(ip: str) -> str:
    """02:42 followed by the four bytes of the IPv4 address: Docker's deterministic MAC, so a
    container keeps its MAC across restarts and neighbours' ARP caches stay right."""
    packed = ipaddress.IPv4Address(ip).packed
    return "02:42:" + ":".join(f"{b:02x}" for b in packed)


def check_bridge_capacity(endpoints: int) -> None:
    """Refuse a connect that would need a bridge port the kernel cannot give (L-02)."""
    if endpoints >= BRIDGE_MAX_PORTS:
        raise Conflict(f"network capacity reached: a bridge holds at most {BRIDGE_MAX_PORTS} "
                       "containers", hint="create another network for more containers")


@dataclass(frozen=True)
class BridgePlan:
    name: str
    gateway_cidr: str  # e.g. "10.211.0.1/24"
    mtu: int = DEFAULT_MTU
    gateway6_cidr: str = ""  # e.g. "2001:db8::1/64" on a network with IPv6


@dataclass(frozen=True)
class VethPlan:
    host_ifname: str  # the end left on the host, enslaved to the bridge
    peer_ifname: str  # its name inside the container's netns (eth0, …)
    bridge: str
    netns_path: str
    ip_cidr: str  # e.g. "10.211.0.2/24"
    gateway: str
    mac: str
    mtu: int = DEFAULT_MTU
    default_route: bool = True  # only the first network a container joins gets the default
    ip6_cidr: str = ""  # e.g. "2001:db8::2/64"; set without DAD (usable at once, as Docker)
    gateway6: str = ""
    # issue 20: "veth" (a bridge port), or "macvlan"/"ipvlan" — then `host_ifname` is the
    # endpoint's id and `bridge` the parent link (`plan_sub_endpoint`)
    kind: str = "veth"
    mode: str = ""


def _check_ifname(name: str) -> str:
    if not name or len(name.encode()) > IFNAMSIZ or any(c in name for c in "/ \t\n\r\0:"):
        raise InvalidArgument(f"invalid interface name {name!r}")
    return name


def _v6_cidr(subnet6: str, address: str) -> str:
    net = ipaddress.IPv6Network(subnet6, strict=False)
    addr = ipaddress.IPv6Address(address)
    if addr not in net:
        raise InvalidArgument(f"address {addr} is not in subnet {net}")
    return f"{addr}/{net.prefixlen}"


def plan_bridge(bridge: str, subnet: str, gateway: str, *, mtu: int = DEFAULT_MTU,
                subnet6: str = "", gateway6: str = "") -> BridgePlan:
    net = ipaddress.IPv4Network(subnet, strict=False)
    gw = ipaddress.IPv4Address(gateway)
    if gw not in net:
        raise InvalidArgument(f"gateway {gw} is not in subnet {net}")
    return BridgePlan(name=_check_ifname(bridge), gateway_cidr=f"{gw}/{net.prefixlen}", mtu=mtu,
                      gateway6_cidr=_v6_cidr(subnet6, gateway6) if subnet6 else "")


def plan_veth(container_id: str, network_id: str, *, bridge: str, subnet: str, gateway: str,
              ip: str, netns_path: str, ifname: str = "eth0", mtu: int = DEFAULT_MTU,
              default_route: bool = True, subnet6: str = "", gateway6: str = "",
              ip6: str = "", mac: str = "") -> VethPlan:
    """The veth of one endpoint; `mac`: the address asked for (`--mac-address`, eth0 only),
    else one derived from the IPv4 address as Docker does."""
    net = ipaddress.IPv4Network(subnet, strict=False)
    addr = ipaddress.IPv4Address(ip)
    if addr not in net:
        raise InvalidArgument(f"address {addr} is not in subnet {net}")
    if ipaddress.IPv4Address(gateway) not in net:
        raise InvalidArgument(f"gateway {gateway} is not in subnet {net}")
    ip6_cidr = _v6_cidr(subnet6, ip6) if ip6 else ""
    if ip6:
        _v6_cidr(subnet6, gateway6)
    return VethPlan(host_ifname=veth_name(container_id, network_id),
                    peer_ifname=_check_ifname(ifname), bridge=_check_ifname(bridge),
                    netns_path=netns_path, ip_cidr=f"{addr}/{net.prefixlen}", gateway=gateway,
                    mac=mac or mac_for_ip(ip), mtu=mtu, default_route=default_route,
                    ip6_cidr=ip6_cidr, gateway6=gateway6 if ip6 else "")


# -- drivers beyond the bridge (issue 20) ----------------------------------------------------
# Docker's macvlan and ipvlan drivers: every endpoint is a sub-interface of one parent link,
# made straight inside the container's namespace. The parent is the user's (`-o parent=`),
# a VLAN sub-interface of it that we make (`parent=eth0.10`), or, for `--internal` without a
# parent, a dummy link of our own: an isolated segment, as Docker makes one.
MACVLAN_MODES = ("bridge", "private", "vepa", "passthru")
IPVLAN_MODES = ("l2", "l3", "l3s")
LINK_DRIVERS = ("macvlan", "ipvlan")
DRIVERS = ("bridge", *LINK_DRIVERS)
MAX_VLAN = 4094
# Docker's embedded DNS address inside a container's namespace: macvlan/ipvlan containers
# are asked there, as the host cannot reach them on the network's gateway (which is not ours)
EMBEDDED_DNS = "127.0.0.11"


def dns_server(driver: str, gateway: str) -> str:
    """Where a container on a user network of `driver` asks for names."""
    return EMBEDDED_DNS if driver in LINK_DRIVERS else gateway


@dataclass(frozen=True)
class ParentPlan:
    """The kernel side of a macvlan/ipvlan network: the parent its endpoints hang off, and
    what we make of it (`make`: "" the user's link, "vlan" a VLAN of `base` with `vlan_id`,
    "dummy" an isolated segment). `network_id` marks the links we make (their ifalias), so
    the reconciler tells ours from a user's."""

    driver: str
    network_id: str
    parent: str
    mode: str
    make: str = ""
    base: str = ""
    vlan_id: int = 0


def driver_mode(driver: str, options: dict[str, str]) -> str:
    """The mode a macvlan/ipvlan network runs in (`-o macvlan_mode=`, `-o ipvlan_mode=`),
    the driver's default when none is given (bridge; l2), as Docker."""
    default = "bridge" if driver == "macvlan" else "l2"
    return options.get(f"{driver}_mode") or default


def split_vlan_parent(parent: str) -> tuple[str, int]:
    """`eth0.10` -> ("eth0", 10); a parent without a VLAN suffix -> (parent, 0). Docker
    (libnetwork macvlan parseVlan) takes the text after the last dot as the VLAN id."""
    base, dot, tag = parent.rpartition(".")
    if not dot or not base or not tag.isdigit():
        return parent, 0
    if not 0 < int(tag) <= MAX_VLAN:
        raise InvalidArgument(f"vlan id must be between 1-4094, received: {int(tag)}",
                              hint="a VLAN parent is IFACE.ID with ID from 1 to 4094")
    return base, int(tag)


def plan_parent(driver: str, network_id: str, parent: str, mode: str, *, owned: bool
                ) -> ParentPlan:
    """What `setup_network` makes for a link driver's network: `owned` (recorded by its
    NetworkCreated event) says whether the parent is ours to make and remove."""
    _check_ifname(parent)
    if not owned:
        return ParentPlan(driver=driver, network_id=_hex(network_id), parent=parent, mode=mode)
    base, vlan = split_vlan_parent(parent)
    if vlan:
        return ParentPlan(driver=driver, network_id=_hex(network_id), parent=parent, mode=mode,
                          make="vlan", base=_check_ifname(base), vlan_id=vlan)
    return ParentPlan(driver=driver, network_id=_hex(network_id), parent=parent, mode=mode,
                      make="dummy")


def plan_sub_endpoint(container_id: str, network_id: str, *, driver: str, mode: str,
                      parent: str, subnet: str, gateway: str, ip: str, netns_path: str,
                      ifname: str = "eth0", default_route: bool = True, subnet6: str = "",
                      gateway6: str = "", ip6: str = "", mac: str = "") -> VethPlan:
    """One macvlan/ipvlan endpoint, in the shape `configure_peer` takes: `host_ifname` is
    the endpoint's id (its ifalias inside the namespace), `bridge` the parent link. ipvlan
    endpoints share the parent's MAC; in l3/l3s the parent routes, so the default route
    goes out of the device with no gateway (Docker: `default dev eth0`)."""
    plan = plan_veth(container_id, network_id, bridge=parent, subnet=subnet, gateway=gateway,
                     ip=ip, netns_path=netns_path, ifname=ifname, default_route=default_route,
                     subnet6=subnet6, gateway6=gateway6, ip6=ip6, mac=mac)
    routed = driver == "ipvlan" and mode in ("l3", "l3s")
    return replace(plan, kind=driver, mode=mode, mac="" if driver == "ipvlan" else plan.mac,
                   gateway="" if routed else plan.gateway,
                   gateway6="" if routed else plan.gateway6)
