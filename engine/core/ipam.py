"""Address management as pure functions over a network's recorded allocations.

I/O: none. An address is only ever handed out by appending `NetworkAddressAllocated`, and
the choice is a function of what the log already allocated, so two containers never get the
same address — even across crashes, because the allocation is recorded before it is used.
"""

from __future__ import annotations

import ipaddress

from engine.core.errors import Conflict, InvalidArgument
from projections.state import NetworkView


def next_free_address(net: NetworkView, *, requested: str = "", family: int = 4) -> str:
    """A free address of the network's v4 pool (`family=6`: its v6 pool), or the `requested`
    one when it is valid and free. v4 and v6 allocations share `net.allocations`."""
    if family == 6:
        if not net.enable_ipv6 or not net.subnet6:
            raise InvalidArgument(f"network {net.name} has no IPv6 subnet",
                                  hint="create the network with --ipv6 --subnet <v6 CIDR>")
        return _free_address(net, net.subnet6, net.ip_range6, net.gateway6, requested, 6)
    return _free_address(net, net.subnet, net.ip_range, net.gateway, requested, 4)


def _free_address(net: NetworkView, subnet_text: str, ip_range: str, gateway: str,
                  requested: str, family: int) -> str:
    subnet = ipaddress.ip_network(subnet_text, strict=False)
    pool = ipaddress.ip_network(ip_range, strict=False) if ip_range else subnet
    # Auxiliary addresses (Docker's IPAM AuxiliaryAddresses) are reserved for hosts outside
    # the network's containers: taken like an allocation, for either family (issue 13).
    taken = set(net.allocations) | {gateway} | set(net.aux_addresses.values()) \
        | set(net.aux_addresses6.values())
    # Docker's IPAM reserves the network address of both families and the broadcast address
    # of IPv4 only (IPv6 has none); a /31, /32, /127 or /128 is all host addresses.
    small = subnet.num_addresses <= 2
    reserved = set() if small else {subnet.network_address}
    if not small and family == 4:
        reserved.add(subnet.broadcast_address)
    if requested:
        try:
            addr = ipaddress.ip_address(requested)
        except ValueError as exc:
            example = "172.30.0.5" if family == 4 else "2001:db8::5"
            raise InvalidArgument(f"invalid IP address {requested!r}",
                                  hint=f"give an address like {example}") from exc
        if addr.version != family or addr not in subnet:
            raise InvalidArgument(f"address {addr} is not in subnet {subnet}",
                                  hint=f"pick an address inside {subnet}")
        if addr in reserved:
            what = "network or broadcast" if family == 4 else "network"
            raise InvalidArgument(f"address {addr} is the {what} address of {subnet}",
                                  hint="pick a host address")
        if str(addr) in taken:
            raise Conflict(f"Address already in use: {addr}", hint="pick another address")
        return str(addr)
    # Every address of the pool, less the subnet's own reserved addresses (not the pool's:
    # an ip-range of /31 or /32 is still made of host addresses), as Docker's IPAM. A v6
    # pool is walked lazily: a /64 is never listed, only its first free address found.
    for host in pool:
        if host not in reserved and str(host) not in taken:
            return str(host)
    raise Conflict(f"no available IPv{family} addresses on network {net.name}",
                   hint="use a larger --subnet or remove unused containers from the network")


def pick_subnet(used: list[str], host_routes: list[str]) -> tuple[str, str]:
    """The first 172.18-31.0.0/16 (then 192.168.x.0/20) free of our networks and host routes,
    as Docker's default address pools do (172.17/16 is left to docker0)."""
    busy = [ipaddress.ip_network(n, strict=False) for n in used + host_routes if n]
    candidates = [f"172.{i}.0.0/16" for i in range(18, 32)]
    candidates += [f"192.168.{i}.0/20" for i in range(0, 256, 16)]
    for c in candidates:
        net = ipaddress.ip_network(c)
        if not any(net.overlaps(b) for b in busy):
            return str(net), str(next(net.hosts()))
    raise Conflict("all predefined address pools have been fully subnetted",
                   hint="create the network with an explicit --subnet")
