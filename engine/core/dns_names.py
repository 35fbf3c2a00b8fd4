"""Which addresses a container's DNS question gets (the names Docker's embedded DNS answers),
and where the questions about other names go.

I/O: none (pure, over the engine's state). The DNS server of a network (on its gateway, or on
127.0.0.11 inside a macvlan/ipvlan container) hands each question here with the network it
arrived on and the asking container (found from the query's source address when not known).

Docker answers a name from every user-defined network the *asking container* is on, not only
the one its resolv.conf points at: a service on `front` and `back` resolves `db` that is only
on `back`. The network the question arrived on is searched first, then the container's other
networks in the order it joined them; the first network that knows the name answers, with
that network's addresses (the ones the asker can reach there). The default bridge has no
names (Docker's legacy links are /etc/hosts entries). Names are container names, network
aliases, hostnames and 12-character short ids, compared case-insensitively.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.core.createopts import DEFAULT_BRIDGE
from projections.state import EngineState, NetworkView

__all__ = ["answer", "asker_of", "upstreams_of"]


def asker_of(state: EngineState, network_id: str, client_ip: str) -> str | None:
    """The container whose endpoint on `network_id` has `client_ip` (v4 or v6), if any."""
    net = state.networks.get(network_id)
    if net is None or not client_ip:
        return None
    for cid, ep in net.endpoints.items():
        if client_ip in (ep.ip, ep.ip6):
            return cid
    return None


def _names_on(state: EngineState, net: NetworkView, name: str) -> list[str]:
    out: list[str] = []
    for cid, ep in net.endpoints.items():
        names = {alias.lower() for alias in ep.aliases}
        c = state.containers.get(cid)
        if c is not None:
            names |= {c.name.lower(), c.id[:12], (c.config.hostname or "").lower()}
        if name in names:
            out += [ip for ip in (ep.ip, ep.ip6) if ip]  # AAAA from ip6 (drivers/network/dns)
    return out


def _search_order(state: EngineState, network_id: str, asker: str | None) -> Iterable[str]:
    yield network_id
    c = state.containers.get(asker) if asker else None
    if c is not None:
        yield from (nid for nid in c.networks if nid != network_id)


def answer(state: EngineState, network_id: str, name: str, *, client_ip: str = "",
           asker: str | None = None) -> list[str]:
    """The addresses for `name` asked on `network_id` (empty: not ours, forward it)."""
    name = name.lower()
    if not name or network_id not in state.networks:
        return []
    if asker is None:
        asker = asker_of(state, network_id, client_ip)
    for nid in _search_order(state, network_id, asker):
        net = state.networks.get(nid)
        if net is None or net.name == DEFAULT_BRIDGE:
            continue
        found = _names_on(state, net, name)
        if found:
            return found
    return []


def upstreams_of(state: EngineState, network_id: str, default: list[tuple[str, int]], *,
                 client_ip: str = "", asker: str | None = None) -> list[tuple[str, int]]:
    """Where the server forwards the asking container's other questions: its `--dns` servers
    (Docker's ExtDNS: they are not in its resolv.conf on a user network), else `default`."""
    if asker is None:
        asker = asker_of(state, network_id, client_ip)
    c = state.containers.get(asker) if asker else None
    if c is None or not c.config.dns:
        return default
    return [(server, 53) for server in c.config.dns]
