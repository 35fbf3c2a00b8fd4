"""Docker API handlers for networks: list, inspect, create, remove, prune, connect and
disconnect.

I/O: none directly; the engine service records the decisions and `engine.shell.network` does
the kernel side (bridges, veths, nftables, DNS).
"""

from __future__ import annotations

from typing import Any

import msgspec

from engine.api.docker import reads
from engine.api.docker.reads import network_matches
from engine.api.docker.translate import parse_filters
from engine.api.routes.off import NOT_A_MANAGER
from engine.api.routes.reading import read_model
from engine.api.server.router import Request, Response, Router, empty, json_response
from engine.core.errors import InvalidArgument, NotFound, ShipslogError, Unavailable
from engine.core.hostfiles import check_hostname
from engine.core.networks import split_ipam
from projections.state import EngineState


class IPAMConfigBody(msgspec.Struct, kw_only=True):
    Subnet: str | None = None
    Gateway: str | None = None
    IPRange: str | None = None
    AuxiliaryAddresses: dict[str, str] | None = None


class IPAMBody(msgspec.Struct, kw_only=True):
    Driver: str | None = None
    Config: list[IPAMConfigBody] | None = None
    Options: dict[str, str] | None = None


class ConfigReference(msgspec.Struct, kw_only=True):
    Network: str | None = None


class NetworkCreateBody(msgspec.Struct, kw_only=True):
    Name: str
    Driver: str | None = None
    Internal: bool | None = None
    IPAM: IPAMBody | None = None
    Options: dict[str, str] | None = None
    Labels: dict[str, str] | None = None
    CheckDuplicate: bool | None = None
    Attachable: bool | None = None
    EnableIPv6: bool | None = None
    Scope: str | None = None
    Ingress: bool | None = None
    ConfigOnly: bool | None = None
    ConfigFrom: ConfigReference | None = None


class EndpointIPAM(msgspec.Struct, kw_only=True):
    IPv4Address: str | None = None
    IPv6Address: str | None = None


class EndpointConfig(msgspec.Struct, kw_only=True):
    Aliases: list[str] | None = None
    IPAMConfig: EndpointIPAM | None = None


class ConnectBody(msgspec.Struct, kw_only=True):
    Container: str
    EndpointConfig: EndpointConfig | None = None


class DisconnectBody(msgspec.Struct, kw_only=True):
    Container: str
    Force: bool | None = None


class SwarmOff(InvalidArgument):
    """Docker's errdefs.Forbidden (403) for what only swarm mode can make."""

    status = 403


def check_local_only(body: NetworkCreateBody, state: EngineState) -> None:
    """What needs swarm mode or config-only networks is refused as Docker refuses it with
    swarm off (moby daemon/network.go, 20.10 and 24), never created as a plain bridge."""
    scope = body.Scope or "local"
    if scope == "swarm":
        raise SwarmOff("cannot create a swarm scoped network when swarm is not active",
                                hint="shipslog networks are local: leave out --scope")
    if body.Ingress and scope != "global":
        raise SwarmOff("Ingress network can only be global scope network",
                                hint="ingress networks belong to swarm mode")
    if scope != "local" or body.Ingress:
        raise Unavailable(NOT_A_MANAGER, hint="shipslog networks are local: leave out --scope")
    source = body.ConfigFrom.Network if body.ConfigFrom else ""
    if source and source not in state.network_names and source not in state.networks:
        raise NotFound(f'configuration network "{source}" does not exist',
                       hint="shipslog has no config-only networks")
    if body.ConfigOnly or source:
        # Docker keeps a config-only network as a template for swarm/macvlan networks; a
        # bridge made in its place would be a network the user did not ask for.
        raise InvalidArgument("config-only networks (--config-only, --config-from) are not "
                              "supported by shipslog", hint="create the network itself")


def network_routes(ctx: Any) -> Router:
    r = Router()
    engine = ctx.engine
    model = read_model(ctx)

    @r.route("GET", "/networks")
    async def list_(req: Request) -> Response:
        return json_response(reads.network_list(model, req))

    @r.route("GET", "/networks/{id}")
    async def inspect(req: Request) -> Response:
        return json_response(reads.network_inspect(model, req.params["id"]))

    @r.route("POST", "/networks/create")
    async def create(req: Request) -> Response:
        body = await req.json(NetworkCreateBody)
        check_local_only(body, engine.state)
        configs = (body.IPAM.Config or []) if body.IPAM else []
        ipam = split_ipam([(c.Subnet or "", c.Gateway or "", c.IPRange or "",
                             c.AuxiliaryAddresses or {}) for c in configs])
        if body.IPAM:
            ipam.update(ipam_driver=body.IPAM.Driver or "default",
                        ipam_options=body.IPAM.Options)
        nid = await engine.create_network(
            body.Name, req.actor, driver=body.Driver or "bridge", **ipam,
            internal=bool(body.Internal), labels=body.Labels or {}, options=body.Options or {},
            enable_ipv6=bool(body.EnableIPv6), attachable=bool(body.Attachable))
        return json_response({"Id": nid, "Warning": ""}, 201)

    @r.route("DELETE", "/networks/{id}")
    async def remove(req: Request) -> Response:
        await engine.remove_network(req.params["id"], req.actor)
        return empty(204)

    @r.route("POST", "/networks/{id}/connect")
    async def connect(req: Request) -> Response:
        body = await req.json(ConnectBody)
        ep = body.EndpointConfig or EndpointConfig()
        ip = ep.IPAMConfig.IPv4Address if ep.IPAMConfig and ep.IPAMConfig.IPv4Address else ""
        ip6 = ep.IPAMConfig.IPv6Address if ep.IPAMConfig and ep.IPAMConfig.IPv6Address else ""
        aliases = tuple(check_hostname(a, "alias") for a in ep.Aliases or () if a)
        await engine.connect_network(req.params["id"], body.Container, req.actor,
                                     aliases=aliases, ip=ip, ip6=ip6)
        return empty(200)

    @r.route("POST", "/networks/{id}/disconnect")
    async def disconnect(req: Request) -> Response:
        body = await req.json(DisconnectBody)
        await engine.disconnect_network(req.params["id"], body.Container, req.actor)
        return empty(200)

    @r.route("POST", "/networks/prune")
    async def prune(req: Request) -> Response:
        state = engine.state
        filters = parse_filters(req.arg("filters"))
        deleted = []
        for net in list(state.networks.values()):
            if net.name == "bridge" or net.endpoints or not network_matches(net, filters):
                continue
            try:
                await engine.remove_network(net.id, req.actor)
                deleted.append(net.name)
            except ShipslogError:
                continue
        return json_response({"NetworksDeleted": deleted})

    return r
