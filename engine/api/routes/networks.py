"""Docker API handlers for networks: list, inspect, create, remove, prune, connect and
disconnect.

I/O: none directly; the engine service records the decisions and `engine.shell.network` does
the kernel side (bridges, veths, nftables, DNS).
"""

from __future__ import annotations

from typing import Any

import msgspec
import trio

from engine.api.docker.render import rfc3339
from engine.api.docker.translate import labels_match, parse_filters
from engine.api.routes.off import NOT_A_MANAGER
from engine.api.server.router import Request, Response, Router, empty, json_response
from engine.core.errors import InvalidArgument, NotFound, ShipslogError, Unavailable
from engine.core.hostfiles import check_hostname
from engine.core.lookup import find_container, find_network
from engine.core.networks import split_ipam
from projections.state import EngineState, NetworkView


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


def render_network(state: EngineState, net: NetworkView) -> dict[str, Any]:
    containers = {}
    for cid, ep in net.endpoints.items():
        c = state.containers.get(cid)
        prefix = net.subnet.split("/")[-1]
        prefix6 = net.subnet6.split("/")[-1]
        containers[cid] = {"Name": c.name if c else "", "EndpointID": ep.endpoint_id,
                           "MacAddress": ep.mac, "IPv4Address": f"{ep.ip}/{prefix}",
                           "IPv6Address": f"{ep.ip6}/{prefix6}" if ep.ip6 else ""}
    configs = []
    for subnet, gateway, ip_range, aux in (
            (net.subnet, net.gateway, net.ip_range, net.aux_addresses),
            (net.subnet6, net.gateway6, net.ip_range6, net.aux_addresses6)):
        if subnet:  # Docker lists one entry per pool, v4 first
            config: dict[str, Any] = {"Subnet": subnet, "Gateway": gateway}
            if ip_range:
                config["IPRange"] = ip_range
            if aux:  # omitempty, as Docker's IPAMConfig
                config["AuxiliaryAddresses"] = dict(aux)
            configs.append(config)
    return {
        "Name": net.name, "Id": net.id, "Created": rfc3339(net.created_at), "Scope": "local",
        "Driver": net.driver, "EnableIPv6": net.enable_ipv6,
        "IPAM": {"Driver": "default", "Options": _ipam_options(net), "Config": configs},
        "Internal": net.internal, "Attachable": net.attachable, "Ingress": False,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": containers,
        "Options": _options(net),
        "Labels": dict(net.labels),
    }


def _options(net: NetworkView) -> dict[str, str]:
    """Exactly the options the user passed, as Docker reports them: Compose compares them
    with its file and recreates a network whose options differ (issue 14). Only the default
    bridge names its link, as Docker's does (`docker0`)."""
    if net.name == "bridge":
        return {"com.docker.network.bridge.default_bridge": "true",
                "com.docker.network.bridge.name": net.bridge, **net.options}
    return dict(net.options)


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


def _ipam_options(net: NetworkView) -> dict[str, str] | None:
    """As given (issue 13); a network created without them shows null, as Docker's do —
    the docker CLI always sends them, so its networks show {}."""
    return None if net.ipam_options is None else dict(net.ipam_options)


def _matches(net: NetworkView, filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if key == "name" and not any(v in net.name for v in values):
            return False
        if key == "id" and not any(net.id.startswith(v) for v in values):
            return False
        if key == "driver" and net.driver not in values:
            return False
        if key == "type":
            kind = "builtin" if net.name == "bridge" else "custom"
            if kind not in values:
                return False
        if key == "label" and not labels_match(net.labels, values):
            return False
    return True


def network_routes(ctx: Any) -> Router:
    r = Router()
    engine = ctx.engine

    @r.route("GET", "/networks")
    async def list_(req: Request) -> Response:
        state = engine.state
        filters = parse_filters(req.arg("filters"))
        nets = sorted(state.networks.values(), key=lambda n: n.name)
        return json_response([render_network(state, n) for n in nets if _matches(n, filters)])

    @r.route("GET", "/networks/{id}")
    async def inspect(req: Request) -> Response:
        state = engine.state
        return json_response(render_network(state, find_network(state, req.params["id"])))

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
        if not ip and not ip6:
            await engine.connect_network(req.params["id"], body.Container, req.actor,
                                         aliases=aliases)
            return empty(200)
        # A static address is recorded first (NetworkAddressAllocated, checked by IPAM); the
        # connect then keeps the allocation it finds, and a refused connect gives it back.
        state = engine.state
        net = find_network(state, req.params["id"])
        c = find_container(state, body.Container)
        if net.name == "bridge":
            raise InvalidArgument("user specified IP address is supported on user defined "
                                  "networks only", hint="connect to a network you created")
        if c.status not in ("running", "paused"):  # recorded, taken at start
            await engine.connect_network(net.id, c.id, req.actor, aliases=aliases, ip=ip,
                                         ip6=ip6)
            return empty(200)
        if c.id in net.endpoints:
            await engine.connect_network(net.id, c.id, req.actor, aliases=aliases)  # refuses
            return empty(200)
        ops = ctx.engine.supervisor.d.network
        op_id = ctx.engine.journal.new_id()
        if ip6 and not net.subnet6:
            raise InvalidArgument(f"network {net.name} has no IPv6 subnet for {ip6}",
                                  hint="create the network with --ipv6 --subnet <v6 CIDR>")
        try:
            if ip:
                await ops.reserve_address(c, net, ip, op_id, req.actor)
            if ip6:  # issue 13: `network connect --ip6`
                await ops.reserve_address(c, net, ip6, op_id, req.actor, family=6)
            await engine.connect_network(net.id, c.id, req.actor, aliases=aliases)
        except BaseException:
            with trio.CancelScope(shield=True):
                await ops.release_reserved(c.id, net.id, op_id, req.actor)
            raise
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
            if net.name == "bridge" or net.endpoints or not _matches(net, filters):
                continue
            try:
                await engine.remove_network(net.id, req.actor)
                deleted.append(net.name)
            except ShipslogError:
                continue
        return json_response({"NetworksDeleted": deleted})

    return r
