"""Deciding network commands: create, remove, connect and disconnect.

I/O: none. Subnets are picked from what the caller observed on the host (so we never take a
range the host already routes, docker0's 172.17/16 included); addresses come from
`engine.core.ipam` and are recorded before any link is made.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from engine.core.decision import Decision, Step
from engine.core.errors import Conflict, InvalidArgument, NotFound
from engine.core.ipam import next_free_address, pick_subnet
from engine.core.lookup import find_container, find_network
from engine.core.net_plan import (
    DRIVERS,
    IPVLAN_MODES,
    LINK_DRIVERS,
    MACVLAN_MODES,
    driver_mode,
    split_vlan_parent,
)
from engine.core.validate import MAX_NAME
from events import vocabulary as v
from events.envelope import Pending, stream_of
from projections.state import ContainerView, Endpoint, EngineState, NetworkView

BUILTIN = ("bridge", "host", "none")
# moby runconfig.IsPreDefinedNetwork: names a user may never give a network of their own.
PREDEFINED = ("bridge", "host", "none", "default", "ingress")


class PredefinedNetwork(Conflict):
    """Docker's errdefs.Forbidden for a predefined network's name (a 403)."""

    status = 403


class OutsidePool(InvalidArgument):
    """Docker's types.ForbiddenErrorf for an auxiliary address outside its pool (a 403)."""

    status = 403


def decide_network_create(state: EngineState, name: str, *, op_id: str, network_id: str,
                          host_routes: list[str], driver: str = "bridge", subnet: str = "",
                          gateway: str = "", ip_range: str = "", internal: bool = False,
                          labels: dict[str, str] | None = None,
                          options: dict[str, str] | None = None, enable_ipv6: bool = False,
                          subnet6: str = "", gateway6: str = "",
                          ip_range6: str = "", by_user: bool = False,
                          aux_addresses: dict[str, str] | None = None,
                          aux_addresses6: dict[str, str] | None = None,
                          ipam_driver: str = "default",
                          ipam_options: dict[str, str] | None = None,
                          attachable: bool = False,
                          host_links: dict[str, str] | None = None) -> Decision:
    """`by_user`: a `network create` (the daemon makes the default bridge itself).
    `aux_addresses(6)`: Docker's IPAM AuxiliaryAddresses of the v4 (v6) pool, reserved by
    the `NetworkCreated` event; `ipam_options`: the default IPAM driver's options, recorded
    and shown as given (that driver reads none of them, as Docker's). `host_links`: the
    links the host has (name -> kind), which a macvlan/ipvlan parent is checked against."""
    if by_user and name in PREDEFINED:
        # moby daemon.PredefinedNetworkError, trailing space and all; a network named host
        # or none would be a bridge that `--network host` can never reach or remove.
        raise PredefinedNetwork(f"operation is not permitted on predefined {name} network ",
                                hint="pick another name")
    check_network_name(name)
    if name in state.network_names:
        raise Conflict(f"network with name {name} already exists",
                       hint="pick another name or remove the existing network")
    if driver not in DRIVERS:
        raise NotFound(f"plugin \"{driver}\" not found",
                       hint=f"shipslog has the {', '.join(DRIVERS)} network drivers")
    if ipam_driver not in ("default", ""):
        # moby: an IPAM driver is a plugin looked up by name; 404 when there is none
        raise NotFound(f"plugin \"{ipam_driver}\" not found",
                       hint="shipslog has only the default IPAM driver")
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
    aux = _check_aux(name, subnet, gateway, aux_addresses or {})
    if aux_addresses6 and not v6:
        raise InvalidArgument("an IPv6 auxiliary address needs an IPv6 subnet",
                              hint="add --ipv6 and --subnet with an IPv6 CIDR")
    aux6 = _check_aux(name, v6["subnet6"], v6["gateway6"], aux_addresses6 or {}) if v6 else {}
    bridge = "slg-" + network_id[:11]
    parent_created = False
    if driver in LINK_DRIVERS:
        bridge, parent_created, internal = _decide_parent(
            state, driver, network_id, options or {}, internal, host_links or {})
    return Decision(op_id=op_id, target=network_id, pending=(
        Pending(stream=stream_of("network", network_id), expected_version=0,
                event=v.NetworkCreated(network_id=network_id, name=name, driver=driver,
                                       subnet=subnet, gateway=gateway, ip_range=ip_range,
                                       internal=internal, labels=labels or {},
                                       options=options or {}, bridge=bridge,
                                       enable_ipv6=enable_ipv6, **v6,
                                       aux_addresses=aux, aux_addresses6=aux6,
                                       ipam_options=ipam_options, attachable=attachable,
                                       parent_created=parent_created)),),
        plan=(Step(name="network.create", args={"network_id": network_id}),))


def _decide_parent(state: EngineState, driver: str, network_id: str, options: dict[str, str],
                   internal: bool, links: dict[str, str]) -> tuple[str, bool, bool]:
    """A macvlan/ipvlan network's parent link: (its name, whether we make it, internal).
    Docker's rules and words (moby libnetwork/drivers/macvlan, ipvlan): the mode is checked;
    no parent means a dummy link of our own and an internal network; a parent must exist,
    or be IFACE.VLAN of one that does (we make the VLAN link); `lo` is refused; passthru
    takes the parent for itself. A macvlan and an ipvlan network may name one parent, as in
    Docker: the kernel refuses the second kind's endpoint at start (EBUSY, with a hint)."""
    mode_key = f"{driver}_mode"
    mode = driver_mode(driver, options)
    modes = MACVLAN_MODES if driver == "macvlan" else IPVLAN_MODES
    if mode not in modes:
        raise InvalidArgument(f"requested {driver} mode '{options[mode_key]}' is not valid, "
                              f"'{modes[0]}' mode is the {driver} driver default",
                              hint=f"use one of {', '.join(modes)}")
    flag = options.get("ipvlan_flag", "bridge") if driver == "ipvlan" else "bridge"
    if flag not in ("bridge", "private", "vepa"):
        raise InvalidArgument(f"requested ipvlan flag '{flag}' is not valid, 'bridge' is the "
                              "ipvlan driver default", hint="use bridge, private or vepa")
    if flag != "bridge":  # applied, or refused by name: never silently ignored
        raise InvalidArgument(f"ipvlan_flag={flag} is not supported by shipslog",
                              hint="leave out -o ipvlan_flag (bridge)")
    parent = options.get("parent", "")
    if not parent:
        return "slg-" + network_id[:11], True, True
    if parent == "lo":
        raise InvalidArgument(f"loopback interface is not a valid {driver} parent link",
                              hint="name the interface of the segment the containers join")
    base, vlan = split_vlan_parent(parent)
    made = False
    if parent not in links:
        # moby macvlan_setup.go createVlanLink: a parent that is not there must be IFACE.ID
        if not vlan:
            raise InvalidArgument(f"invalid subinterface vlan name {parent}, example "
                                  "formatting is eth0.10",
                                  hint="name an existing interface (ip link show), or "
                                  "IFACE.VLAN for a VLAN of one")
        if base not in links:
            raise InvalidArgument(f"-o parent interface was not found on the host: {base}",
                                  hint="name an existing interface: ip link show")
        made = True
    for other in state.networks.values():
        if other.driver != driver or other.bridge != parent or driver != "macvlan":
            continue
        # moby libnetwork/drivers/macvlan createNetwork, its words
        if mode == "passthru":
            raise Conflict(f"cannot use mode passthru, macvlan network {other.id} is already "
                           f"using parent interface {parent}",
                           hint="a passthru network takes the parent for itself")
        if driver_mode(other.driver, other.options) == "passthru":
            raise Conflict(f"macvlan network {other.id} is already using parent interface "
                           f"{parent} in mode passthru",
                           hint="a passthru network takes the parent for itself")
    return parent, made, internal


def split_ipam(configs: list[tuple[str, str, str]] | list[tuple[str, str, str, dict[str, str]]],
               ) -> dict[str, Any]:
    """Docker's `IPAM.Config` list — (subnet, gateway, ip range[, auxiliary addresses]) each
    — as the v4 and v6 keyword arguments of `decide_network_create`: one pool per address
    family, as most Docker networks have (a second pool of one family is refused, not
    silently dropped)."""
    out: dict[str, Any] = {}
    for subnet, gateway, ip_range, *more in configs:
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
        if more and more[0]:
            out["aux_addresses" + suffix] = dict(more[0])
    return out


def _check_aux(name: str, subnet: str, gateway: str, aux: dict[str, str]) -> dict[str, str]:
    """Each auxiliary address parsed, inside its pool's subnet, and neither the gateway, the
    subnet's network or broadcast address nor another one's: moby libnetwork
    ipamAllocateVersion, with its messages (Docker answers 500 for the last; a user's
    mistake is a 400 here). Written canonically: IPAM compares strings."""
    net = ipaddress.ip_network(subnet)
    taken = {ipaddress.ip_address(gateway), net.network_address}
    if net.version == 4 and net.num_addresses > 2:
        taken.add(net.broadcast_address)
    out: dict[str, str] = {}
    for key, value in aux.items():
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            raise InvalidArgument(f"non parsable secondary ip address ({key}:{value}) passed "
                                  f"for network {name}", hint="give NAME=IP, like "
                                  "--aux-address host1=172.28.1.5") from None
        if addr.version != net.version or addr not in net:
            raise OutsidePool(f"auxiliary address: ({key}:{value}) must belong to the master "
                              f"pool: {net}", hint=f"pick an address inside {net}")
        if addr in taken:
            raise InvalidArgument(f"failed to allocate secondary ip address ({key}:{value}): "
                                  "Address already in use",
                                  hint="pick an address that is not the gateway, the network "
                                  "or broadcast address or another auxiliary address")
        taken.add(addr)
        out[key] = str(addr)
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


def check_network_name(name: str) -> str:
    """Docker takes any network name that is not blank (libnetwork NewNetwork: spaces and
    all, as Compose users give them); names only key the log and the API here, never a path
    or a link. Control characters are refused: they would forge lines in `network ls`."""
    if not name.strip():
        raise InvalidArgument(f"invalid name: {name}", hint="give the network a name")
    if len(name) > MAX_NAME or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        raise InvalidArgument(f"invalid network name {name[:64]!r}: control characters or "
                              f"longer than {MAX_NAME}", hint="pick a printable name")
    return name


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


def primary_network_id(state: EngineState, c: ContainerView) -> str:
    """The id of the network `c` was created on ("" for none/host/container: modes, or when
    that network is gone)."""
    mode = c.config.network_mode
    if mode in ("none", "host", "") or mode.startswith("container:"):
        return ""
    name = "bridge" if mode == "default" else mode
    return state.network_names.get(name) or (name if name in state.networks else "")


def start_networks(state: EngineState, c: ContainerView) -> dict[str, Endpoint]:
    """The networks `c` joins when it starts, first the one it was created on (unless a
    disconnect took it off), then those `network connect` recorded: network id -> endpoint
    config (aliases; the static address asked for in `ip`)."""
    out: dict[str, Endpoint] = {}
    primary = primary_network_id(state, c)
    if primary and not c.left_primary:
        out[primary] = Endpoint(network_id=primary, ip=c.config.ipv4_address,
                                ip6=c.config.ipv6_address, aliases=c.config.network_aliases)
    for nid, ep in c.joins.items():
        out.setdefault(nid, ep)
    return out


def decide_connect_at_start(state: EngineState, network_ref: str, container_ref: str, *,
                            op_id: str, ip: str = "", aliases: tuple[str, ...] = (),
                            ip6: str = "") -> Decision:
    """`network connect` of a container that is not running: Docker records the endpoint
    config (daemon.ConnectToNetwork, `!container.Running`) and the container joins at start;
    a network it already has is left as it is, as Docker does."""
    net = find_network(state, network_ref)
    c = find_container(state, container_ref)
    if c.status in ("removing", "dead"):
        # moby daemon/container_operations.go errRemovalContainer
        raise Conflict(f"Container {c.id} is marked for removal and cannot be connected or "
                       "disconnected to the network", hint="the container is going away")
    # moby runconfig ErrConflictNoNetwork / ErrConflictSharedNetwork (validation errors).
    if c.config.network_mode == "none":
        raise InvalidArgument("container cannot be connected to multiple networks with one of "
                              "the networks in private (none) mode",
                              hint="recreate it on a bridge network")
    if c.config.network_mode == "host" or c.config.network_mode.startswith("container:"):
        raise InvalidArgument("container sharing network namespace with another container or "
                              "host cannot be connected to any other network",
                              hint="recreate it on a bridge network")
    if net.id in start_networks(state, c):
        return Decision(op_id=op_id, target=c.id, not_modified=True)
    if ip:
        _check_static_address(net, ip)
    if ip6:
        _check_static_address6(net, ip6)
    return Decision(op_id=op_id, target=c.id, pending=(
        Pending(stream=stream_of("container", c.id), expected_version=c.stream_version,
                event=v.NetworkConnectRecorded(network_id=net.id, container_id=c.id,
                                               aliases=aliases, ipv4_address=ip,
                                               ipv6_address=ip6)),))


def _check_static_address6(net: NetworkView, ip6: str) -> None:
    """A static IPv6 address recorded for the next start must be one the network can give."""
    if not net.subnet6:
        raise InvalidArgument(f"network {net.name} has no IPv6 subnet for {ip6}",
                              hint="create the network with --ipv6 --subnet <v6 CIDR>")
    try:
        address = ipaddress.ip_address(ip6)
    except ValueError:
        raise InvalidArgument(f"invalid IPv6 address: {ip6}",
                              hint="use an address like 2001:db8::9") from None
    if address.version != 6 or address not in ipaddress.ip_network(net.subnet6):
        raise InvalidArgument(f"no configured subnet or ip-range contain the IP address {ip6}",
                              hint=f"pick an address in {net.subnet6}")


def _check_static_address(net: NetworkView, ip: str) -> None:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        raise InvalidArgument(f"invalid IPv4 address: {ip}", hint="use an address like "
                              "10.5.0.9") from None
    if not net.subnet or address not in ipaddress.ip_network(net.subnet):
        raise InvalidArgument(f"no configured subnet or ip-range contain the IP address {ip}",
                              hint=f"pick an address inside {net.subnet or 'the subnet'}")


def decide_disconnect_at_start(state: EngineState, network_ref: str, container_ref: str, *,
                               op_id: str) -> Decision:
    """`network disconnect` of a container that is not running: it will not join `network`
    at its next start (a recorded connect, or the network it was created on)."""
    net = find_network(state, network_ref)
    c = find_container(state, container_ref)
    if net.id not in start_networks(state, c):
        # moby DisconnectFromNetwork, for a container that is not running: "the network"
        raise Conflict(f"container {c.id} is not connected to the network {net.name}",
                       hint="nothing to disconnect")
    return Decision(op_id=op_id, target=c.id, pending=(
        Pending(stream=stream_of("container", c.id), expected_version=c.stream_version,
                event=v.NetworkConnectWithdrawn(network_id=net.id, container_id=c.id)),))
