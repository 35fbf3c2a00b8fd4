"""Address management as pure functions over a network's recorded allocations.

I/O: none. An address is only ever handed out by appending `NetworkAddressAllocated`, and
the choice is a function of what the log already allocated, so two containers never get the
same address — even across crashes, because the allocation is recorded before it is used.
"""

from __future__ import annotations

import ipaddress

from engine.errors import Conflict, InvalidArgument
from projections.state import NetworkView


def next_free_address(net: NetworkView, *, requested: str = "") -> str:
    subnet = ipaddress.ip_network(net.subnet, strict=False)
    pool = ipaddress.ip_network(net.ip_range, strict=False) if net.ip_range else subnet
    taken = set(net.allocations) | {net.gateway}
    if requested:
        try:
            addr = ipaddress.ip_address(requested)
        except ValueError as exc:
            raise InvalidArgument(f"invalid IP address {requested!r}",
                                  hint="give an address like 172.30.0.5") from exc
        if addr not in subnet:
            raise InvalidArgument(f"address {addr} is not in subnet {subnet}",
                                  hint=f"pick an address inside {subnet}")
        if subnet.num_addresses > 2 and addr in (subnet.network_address,
                                                 subnet.broadcast_address):
            raise InvalidArgument(f"address {addr} is the network or broadcast address of "
                                  f"{subnet}", hint="pick a host address")
        if str(addr) in taken:
            raise Conflict(f"Address already in use: {addr}", hint="pick another address")
        return str(addr)
    # Every address of the pool, less the subnet's own network and broadcast addresses (not
    # the pool's: an ip-range of /31 or /32 is still made of host addresses), as Docker's IPAM.
    reserved = set() if subnet.num_addresses <= 2 else {subnet.network_address,
                                                         subnet.broadcast_address}
    for host in pool:
        if host not in reserved and str(host) not in taken:
            return str(host)
    raise Conflict(f"no available IPv4 addresses on network {net.name}",
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
