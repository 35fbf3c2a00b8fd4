"""Deciding network commands: create, remove, connect and disconnect.

I/O: none. Subnets are picked from what the caller observed on the host (so we never take a
range the host already routes, docker0's 172.17/16 included); addresses come from
`engine.core.ipam` and are recorded before any link is made.
"""

from __future__ import annotations

import ipaddress

from engine.core.decision import Decision, Step
from engine.core.ipam import next_free_address, pick_subnet
from engine.core.lookup import find_container, find_network
from engine.core.validate import check_name
from engine.errors import Conflict, InvalidArgument
from events import vocabulary as v
from events.envelope import Pending, stream_of
from projections.state import EngineState

BUILTIN = ("bridge", "host", "none")


def decide_network_create(state: EngineState, name: str, *, op_id: str, network_id: str,
                          host_routes: list[str], driver: str = "bridge", subnet: str = "",
                          gateway: str = "", ip_range: str = "", internal: bool = False,
                          labels: dict[str, str] | None = None,
                          options: dict[str, str] | None = None, enable_ipv6: bool = False,
                          subnet6: str = "", gateway6: str = "",
                          ip_range6: str = "") -> Decision:
    check_name(name, "network")
    if name in state.network_names:
        raise Conflict(f"network with name {name} already exists",
                       hint="pick another name or remove the existing network")
    if driver not in ("bridge",):
        raise InvalidArgument(f"plugin \"{driver}\" not found",
                              hint="shipslog supports the bridge driver for new networks")
    used = [n.subnet for n in state.networks.values()]
    if subnet:
        try:
            net = ipaddress.ip_network(subnet, strict=False)
        except ValueError as exc:
            raise InvalidArgument(f"invalid subnet {subnet!r}", hint="use CIDR: 10.5.0.0/24") \
                from exc
        if net.version != 4:  # the v6 pool comes in `subnet6` (see `split_ipam`)
            raise InvalidArgument(f"subnet {net} is not an IPv4 subnet",
                                  hint="give IPv6 subnets with --ipv6 beside the IPv4 one")
        for other in used:
            if other and net.overlaps(ipaddress.ip_network(other)):
                raise Conflict(f"Pool overlaps with other one on this address space ({other})",
                               hint="pick a subnet no other network uses")
        subnet = str(net)
        gateway = gateway or str(next(net.hosts()))
    else:
        subnet, default_gw = pick_subnet(used, host_routes)
        gateway = gateway or default_gw
    gateway, ip_range = _check_gateway_and_range(subnet, gateway, ip_range)
    v6 = _decide_ipv6(state, enable_ipv6, subnet6, gateway6, ip_range6)
    bridge = "slg-" + network_id[:11]
    return Decision(op_id=op_id, target=network_id, pending=(
        Pending(stream=stream_of("network", network_id), expected_version=0,
                event=v.NetworkCreated(network_id=network_id, name=name, driver=driver,
                                       subnet=subnet, gateway=gateway, ip_range=ip_range,
                                       internal=internal, labels=labels or {},
                                       options=options or {}, bridge=bridge,
                                       enable_ipv6=enable_ipv6, **v6)),),
        plan=(Step(name="network.create", args={"network_id": network_id}),))


def split_ipam(configs: list[tuple[str, str, str]]) -> dict[str, str]:
    """Docker's `IPAM.Config` list — (subnet, gateway, ip range) each — as the v4 and v6
    keyword arguments of `decide_network_create`: one pool per address family, as most
    Docker networks have (a second pool of one family is refused, not silently dropped)."""
    out: dict[str, str] = {}
    for subnet, gateway, ip_range in configs:
        family = 4
        if subnet:
            try:
                family = ipaddress.ip_network(subnet, strict=False).version
            except ValueError:
                raise InvalidArgument(f"invalid subnet {subnet!r}: invalid CIDR block notation",
                                      hint="use CIDR: 10.5.0.0/24 or 2001:db8::/64") from None
        elif gateway:
            family = 6 if ":" in gateway else 4
        suffix = "6" if family == 6 else ""
        if ("subnet" + suffix) in out:
            raise InvalidArgument(f"more than one IPv{family} subnet given",
                                  hint="give one IPv4 and at most one IPv6 --subnet")
        out["subnet" + suffix] = subnet
        if gateway:
            out["gateway" + suffix] = gateway
        if ip_range:
            out["ip_range" + suffix] = ip_range
    return out


def _decide_ipv6(state: EngineState, enable: bool, subnet6: str, gateway6: str,
                 ip_range6: str) -> dict[str, str]:
    """The network's v6 pool, checked like the v4 one (issue 13)."""
    if not subnet6:
        if enable:
            # Docker 24/25 have no default IPv6 pool: the same refusal, as a 400 (moby
            # libnetwork/ipam getPredefinedPool).
            raise InvalidArgument("could not find an available, non-overlapping IPv6 address "
                                  "pool among the defaults to assign to the network",
                                  hint="give an IPv6 subnet: --ipv6 --subnet 2001:db8:1::/64")
        if gateway6 or ip_range6:
            raise InvalidArgument("an IPv6 gateway or ip range needs an IPv6 subnet",
                                  hint="add --subnet with an IPv6 CIDR")
        return {}
    try:
        net = ipaddress.ip_network(subnet6, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid subnet {subnet6!r}: invalid CIDR block notation",
                              hint="use CIDR: 2001:db8::/64") from None
    if net.version != 6:
        raise InvalidArgument(f"subnet {net} is not an IPv6 subnet", hint="use 2001:db8::/64")
    if not enable:
        raise InvalidArgument(f"IPv6 subnet {net} given, but IPv6 is not enabled on the network",
                              hint="add --ipv6 (EnableIPv6) or leave out the IPv6 subnet")
    if net.prefixlen > 126:
        raise InvalidArgument(f"IPv6 subnet {net} is too small",
                              hint="give a prefix of /126 or shorter, like /64")
    for other in state.networks.values():
        if other.subnet6 and net.overlaps(ipaddress.ip_network(other.subnet6)):
            raise Conflict(f"Pool overlaps with other one on this address space "
                           f"({other.subnet6})", hint="pick a subnet no other network uses")
    gw, pool = _check_gateway_and_range(str(net), gateway6 or str(net.network_address + 1),
                                        ip_range6)
    return {"subnet6": str(net), "gateway6": gw, "ip_range6": pool}


def _check_gateway_and_range(subnet: str, gateway: str, ip_range: str) -> tuple[str, str]:
    """Both parsed, inside the subnet, and written canonically (IPAM compares strings)."""
    net = ipaddress.ip_network(subnet, strict=False)
    try:
        gw = ipaddress.ip_address(gateway)
    except ValueError:
        raise InvalidArgument(f"invalid gateway {gateway!r}", hint="use an address like 10.5.0.1") \
            from None
    if gw not in net:
        raise InvalidArgument(f"gateway {gw} is not in subnet {net}",
                              hint=f"pick a gateway inside {net}")
    if not ip_range:
        return str(gw), ""
    try:
        pool = ipaddress.ip_network(ip_range, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid ip range {ip_range!r}", hint="use CIDR: 10.5.0.128/25") \
            from None
    if pool.version != net.version or not pool.subnet_of(net):  # type: ignore[arg-type]
        raise InvalidArgument(f"ip range {pool} is not inside subnet {net}",
                              hint=f"pick a range inside {net}")
    return str(gw), str(pool)


def decide_network_remove(state: EngineState, ref: str, *, op_id: str) -> Decision:
    net = find_network(state, ref)
    if net.name in BUILTIN:
        raise Conflict(f"{net.name} is a pre-defined network and cannot be removed",
                       hint="remove only networks you created")
    if net.endpoints:
        raise Conflict(
            f"error while removing network: network {net.name} id {net.id} has active "
            "endpoints", hint="disconnect or remove its containers first")
    return Decision(op_id=op_id, target=net.id, pending=(
        Pending(stream=stream_of("op", op_id), expected_version=0, event=v.OperationRequested(
            op_id=op_id, kind="network.remove", target=stream_of("network", net.id))),
        Pending(stream=stream_of("network", net.id), event=v.NetworkRemoved(network_id=net.id))),
        plan=(Step(name="network.remove", args={"network_id": net.id}),))


def decide_connect(state: EngineState, network_ref: str, container_ref: str, *, op_id: str,
                   ip: str = "", aliases: tuple[str, ...] = ()) -> Decision:
    net = find_network(state, network_ref)
    c = find_container(state, container_ref)
    if c.id in net.endpoints:
        raise Conflict(f"endpoint with name {c.name} already exists in network {net.name}",
                       hint="it is connected already")
    if c.config.network_mode in ("host", "none") or c.config.network_mode.startswith(
            "container:"):
        raise Conflict(f"container cannot be connected to network {net.name}: it uses "
                       f"network mode {c.config.network_mode}", hint="recreate it on a bridge")
    address = next_free_address(net, requested=ip)
    return Decision(op_id=op_id, target=c.id, pending=(
        Pending(stream=stream_of("op", op_id), expected_version=0, event=v.OperationRequested(
            op_id=op_id, kind="network.connect", target=stream_of("container", c.id),
            args={"network_id": net.id, "aliases": ",".join(aliases)})),
        Pending(stream=stream_of("network", net.id), expected_version=net.stream_version,
                event=v.NetworkAddressAllocated(network_id=net.id, container_id=c.id,
                                                address=address))),
        plan=(Step(name="network.connect", args={"network_id": net.id, "container_id": c.id,
                                                 "address": address,
                                                 "aliases": ",".join(aliases)}),))


def decide_disconnect(state: EngineState, network_ref: str, container_ref: str, *,
                      op_id: str, force: bool = False) -> Decision:
    net = find_network(state, network_ref)
    c = find_container(state, container_ref)
    if c.id not in net.endpoints and not force:
        raise Conflict(f"container {c.id} is not connected to network {net.name}",
                       hint="nothing to disconnect")
    return Decision(op_id=op_id, target=c.id, pending=(
        Pending(stream=stream_of("op", op_id), expected_version=0, event=v.OperationRequested(
            op_id=op_id, kind="network.disconnect", target=stream_of("container", c.id),
            args={"network_id": net.id})),),
        plan=(Step(name="network.disconnect", args={"network_id": net.id,
                                                    "container_id": c.id}),))
