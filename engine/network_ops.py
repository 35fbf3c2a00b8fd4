"""Networks in the running engine: bridges, a container's endpoints, published ports and the
DNS that resolves container names — each kernel change paired with its event.

I/O: netlink (pyroute2), network namespaces, nftables, sockets for the DNS servers and the
userland proxies, all through `engine/drivers/` (blocking calls in worker threads); the journal
for the events.

Order of a container's attach (RELIABILITY: an address is recorded before it is used):
`NetworkAddressAllocated` (optimistic on the network's stream, so two containers never get one
address) → namespace + veth → `NetworkConnected` → nft DNAT + proxy → `NetworkPortPublished`.
Detach undoes it in reverse, each step idempotent, then records `NetworkPortUnpublished`,
`NetworkDisconnected` and `NetworkAddressReleased`.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Sequence
from pathlib import Path

import trio

from engine.core.ipam import next_free_address
from engine.core.networks import decide_network_create
from engine.drivers import netns
from engine.drivers.dns import run_dns
from engine.drivers.hostfiles import read_host_resolv_conf
from engine.drivers.netlink import Netlink
from engine.drivers.nft import Nft, enable_ip_forward, run_proxy
from engine.errors import Conflict, KernelError, NotFound, ShipslogError
from engine.journal import ConcurrencyConflict, Journal
from engine.network.hostfiles import upstream_servers
from engine.network.nftplan import NetworkRules, Publish
from engine.network.plan import (
    check_bridge_capacity,
    container_ifname,
    netns_name,
    plan_bridge,
    plan_veth,
)
from events import vocabulary as v
from events.envelope import SYSTEM_ACTOR, Actor, Pending, stream_of
from events.values import PortBinding
from projections.state import ContainerView, EngineState, NetworkView

log = logging.getLogger("shipslog.network")

DEFAULT_BRIDGE = "bridge"


def host_routes() -> list[str]:
    """IPv4 destinations the host already routes (so new networks avoid them, docker0's
    172.17/16 included when Docker runs)."""
    out = []
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if len(fields) < 8 or fields[1] == "00000000":
            continue
        dest = socket.inet_ntoa(bytes.fromhex(fields[1])[::-1])
        mask = socket.inet_ntoa(bytes.fromhex(fields[7])[::-1])
        out.append(str(ipaddress.ip_network(f"{dest}/{mask}", strict=False)))
    return out


def free_port(host_ip: str, proto: str) -> int:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host_ip or "0.0.0.0", 0))
        return int(s.getsockname()[1])


def network_of(state: EngineState, mode: str) -> NetworkView | None:
    """The network a container's `network_mode` names; None for none/host/container:."""
    if mode in ("none", "host", "") or mode.startswith("container:"):
        return None
    name = DEFAULT_BRIDGE if mode in ("bridge", "default") else mode
    nid = state.network_names.get(name) or (name if name in state.networks else None)
    if nid is None:
        raise NotFound(f"network {name} not found", hint="list networks: shipslog network ls")
    return state.networks[nid]


class NetworkOps:
    def __init__(self, journal: Journal, exec_root: Path) -> None:
        self.journal = journal
        self.netns_dir = exec_root / "netns"
        self.netlink = Netlink()
        self.nft = Nft()
        self._dns: dict[str, trio.CancelScope] = {}
        self._proxies: dict[str, list[trio.CancelScope]] = {}
        self.nursery: trio.Nursery | None = None

    async def _append(self, pending: list[Pending], op_id: str,
                      actor: Actor = SYSTEM_ACTOR) -> None:
        await self.journal.append(pending, actor=actor, op_id=op_id)

    # -- networks ---------------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery) -> None:
        """At daemon start: the default bridge exists, every network's kernel side is up."""
        self.nursery = nursery
        await trio.to_thread.run_sync(self.nft.ensure_base)
        if DEFAULT_BRIDGE not in self.journal.state.network_names:
            op_id = self.journal.new_id()
            routes = await trio.to_thread.run_sync(host_routes)
            for _ in range(3):
                decision = decide_network_create(
                    self.journal.state, DEFAULT_BRIDGE, op_id=op_id,
                    network_id=self.journal.new_id(), host_routes=routes)
                try:
                    await self._append(list(decision.pending), op_id)
                    break
                except ConcurrencyConflict:
                    continue
        for net in list(self.journal.state.networks.values()):
            try:
                await self.setup_network(net)
            except ShipslogError as exc:
                log.warning("network %s could not be set up: %s", net.name, exc)

    async def setup_network(self, net: NetworkView) -> None:
        plan = plan_bridge(net.bridge, net.subnet, net.gateway)
        await trio.to_thread.run_sync(self.netlink.ensure_bridge, plan)
        await trio.to_thread.run_sync(self.nft.apply_network, NetworkRules(
            network_id=net.id, bridge=net.bridge, subnet=net.subnet, internal=net.internal))
        await trio.to_thread.run_sync(enable_ip_forward)
        if net.name != DEFAULT_BRIDGE and net.id not in self._dns and self.nursery is not None:
            # Docker's default bridge has no name resolution; user-defined networks do.
            await self.nursery.start(self._serve_dns, net)

    async def _serve_dns(self, net: NetworkView, *,
                         task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        upstreams = upstream_servers(read_host_resolv_conf())
        with trio.CancelScope() as scope:
            self._dns[net.id] = scope
            try:
                await run_dns(net.id, net.gateway, self.lookup, upstreams,
                              task_status=task_status)
            except OSError as exc:
                log.warning("DNS for network %s could not listen on %s:53: %s", net.name,
                            net.gateway, exc)
                task_status.started()
            finally:
                self._dns.pop(net.id, None)

    def lookup(self, network_id: str, name: str) -> Sequence[str]:
        net = self.journal.state.networks.get(network_id)
        if net is None:
            return []
        state = self.journal.state
        out = []
        for cid, ep in net.endpoints.items():
            c = state.containers.get(cid)
            names = {ep_alias.lower() for ep_alias in ep.aliases}
            if c is not None:
                names |= {c.name.lower(), c.id[:12], (c.config.hostname or "").lower()}
            if name in names and ep.ip:
                out.append(ep.ip)
        return out

    async def teardown_network(self, net: NetworkView) -> None:
        scope = self._dns.pop(net.id, None)
        if scope is not None:
            scope.cancel()
        await trio.to_thread.run_sync(self.nft.delete_rules_of, net.id)
        await trio.to_thread.run_sync(self.netlink.delete_bridge, net.bridge)

    # -- containers -------------------------------------------------------------------------

    async def attach(self, c: ContainerView, op_id: str, actor: Actor) -> str | None:
        """Give a starting container its namespace and its endpoint on its network; publish
        its ports. Returns the namespace path for the runtime spec (None: no network)."""
        net = network_of(self.journal.state, c.config.network_mode)
        if net is None:
            return None
        path = await trio.to_thread.run_sync(netns.create_netns, self.netns_dir,
                                             netns_name(c.id))
        ip = await self._connect(c, net, path, 0, op_id, actor)
        await self._publish(c, ip, op_id, actor)
        return path

    async def _allocate(self, c: ContainerView, net: NetworkView, op_id: str, actor: Actor,
                        requested: str = "") -> str:
        for _ in range(8):
            net = self.journal.state.networks[net.id]
            check_bridge_capacity(len(net.endpoints))
            taken = [a for a, owner in net.allocations.items() if owner == c.id]
            if taken:
                return taken[0]  # allocated before a crash: keep it
            address = next_free_address(net, requested=requested)
            try:
                await self._append([Pending(
                    stream=stream_of("network", net.id), expected_version=net.stream_version,
                    event=v.NetworkAddressAllocated(network_id=net.id, container_id=c.id,
                                                    address=address))], op_id, actor)
                return address
            except ConcurrencyConflict:
                continue
        raise Conflict(f"network {net.name} kept changing while an address was chosen",
                       hint="try again")

    async def _connect(self, c: ContainerView, net: NetworkView, path: str, index: int,
                       op_id: str, actor: Actor, aliases: tuple[str, ...] = ()) -> str:
        ip = await self._allocate(c, net, op_id, actor)
        plan = plan_veth(c.id, net.id, bridge=net.bridge, subnet=net.subnet,
                         gateway=net.gateway, ip=ip, netns_path=path,
                         ifname=container_ifname(index), default_route=index == 0)
        await trio.to_thread.run_sync(self.netlink.connect, plan)
        await self._append([Pending(stream=stream_of("network", net.id), event=v.NetworkConnected(
            network_id=net.id, container_id=c.id, ip=ip, mac=plan.mac, aliases=aliases,
            endpoint_id=plan.host_ifname))], op_id, actor)
        return ip

    async def _publish(self, c: ContainerView, ip: str, op_id: str, actor: Actor) -> None:
        bindings = list(c.config.ports)
        if c.config.publish_all:
            have = {(b.container_port, b.protocol) for b in bindings}
            for spec in c.config.exposed_ports:
                port, _, proto = spec.partition("/")
                if (int(port), proto or "tcp") not in have:
                    bindings.append(PortBinding(container_port=int(port),
                                                protocol=proto or "tcp"))
        if not bindings:
            return
        resolved = []
        for b in bindings:
            host_port = b.host_port or await trio.to_thread.run_sync(free_port, b.host_ip,
                                                                     b.protocol)
            resolved.append(PortBinding(container_port=b.container_port, protocol=b.protocol,
                                        host_ip=b.host_ip, host_port=host_port))
        await trio.to_thread.run_sync(self.nft.publish, c.id, [
            Publish(container_ip=ip, container_port=b.container_port, host_port=b.host_port,
                    proto=b.protocol, host_ip=b.host_ip) for b in resolved])
        scopes = self._proxies.setdefault(c.id, [])
        assert self.nursery is not None
        for b in resolved:
            if b.host_ip in ("", "0.0.0.0", "127.0.0.1"):
                # DNAT never sees a connection to 127.0.0.1 made on the host itself.
                scopes.append(await self.nursery.start(self._proxy, b, ip))
        await self._append([Pending(stream=stream_of("container", c.id),
                                    event=v.NetworkPortPublished(container_id=c.id, binding=b,
                                                                 container_ip=ip))
                             for b in resolved], op_id, actor)

    async def _proxy(self, b: PortBinding, ip: str, *,
                     task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED
                     ) -> None:
        """One userland proxy, started (listening) before this returns its cancel scope."""
        host = "127.0.0.1" if b.host_ip in ("", "0.0.0.0") else b.host_ip
        with trio.CancelScope() as scope:
            started = False
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(run_proxy, host, b.host_port, ip, b.container_port,
                                        b.protocol)
                    task_status.started(scope)
                    started = True
            except OSError as exc:
                log.warning("proxy for port %s failed: %s", b.host_port, exc)
            if not started:
                task_status.started(scope)

    async def detach(self, cid: str, op_id: str, actor: Actor = SYSTEM_ACTOR) -> None:
        """Take down everything `attach` made, and record it. Idempotent."""
        c = self.journal.state.containers.get(cid)
        for scope in self._proxies.pop(cid, []):
            scope.cancel()
        await trio.to_thread.run_sync(self.nft.delete_rules_of, cid)
        pending: list[Pending] = []
        if c is not None:
            pending += [Pending(stream=stream_of("container", cid), event=v.NetworkPortUnpublished(
                container_id=cid, binding=p.binding)) for p in c.ports]
        state = self.journal.state
        for net in state.networks.values():
            if cid in net.endpoints:
                ep = net.endpoints[cid]
                await trio.to_thread.run_sync(self.netlink.disconnect, ep.endpoint_id)
                pending.append(Pending(stream=stream_of("network", net.id),
                                       event=v.NetworkDisconnected(network_id=net.id,
                                                                   container_id=cid)))
            for address, owner in net.allocations.items():
                if owner == cid:
                    pending.append(Pending(stream=stream_of("network", net.id),
                                           event=v.NetworkAddressReleased(
                                               network_id=net.id, container_id=cid,
                                               address=address)))
        await trio.to_thread.run_sync(netns.delete_netns, self.netns_dir, netns_name(cid))
        if pending:
            await self._append(pending, op_id, actor)

    async def connect_live(self, c: ContainerView, net: NetworkView, op_id: str, actor: Actor,
                           aliases: tuple[str, ...] = ()) -> None:
        """`network connect` of a running container: one more interface in its namespace."""
        path = str(self.netns_dir / netns_name(c.id))
        if not Path(path).exists():
            raise Conflict(f"container {c.name} has no network namespace of its own",
                           hint="only containers on a bridge network can join another")
        await self._connect(c, net, path, len(c.networks), op_id, actor, aliases)

    async def disconnect_live(self, c: ContainerView, net: NetworkView, op_id: str,
                              actor: Actor) -> None:
        ep = net.endpoints.get(c.id)
        pending = []
        if ep is not None:
            await trio.to_thread.run_sync(self.netlink.disconnect, ep.endpoint_id)
            pending.append(Pending(stream=stream_of("network", net.id),
                                   event=v.NetworkDisconnected(network_id=net.id,
                                                               container_id=c.id)))
        pending += [Pending(stream=stream_of("network", net.id), event=v.NetworkAddressReleased(
            network_id=net.id, container_id=c.id, address=a))
            for a, owner in net.allocations.items() if owner == c.id]
        if pending:
            await self._append(pending, op_id, actor)

    async def readopt(self) -> None:
        """After a daemon restart: the kernel kept bridges, veths and DNAT rules, but the
        userland proxies died with the old daemon; start them again for running containers."""
        assert self.nursery is not None
        for c in list(self.journal.state.containers.values()):
            if c.status not in ("running", "paused") or c.id in self._proxies:
                continue
            scopes = self._proxies.setdefault(c.id, [])
            for p in c.ports:
                if p.binding.host_ip in ("", "0.0.0.0", "127.0.0.1"):
                    scopes.append(await self.nursery.start(self._proxy, p.binding,
                                                           p.container_ip))

    async def sweep(self) -> None:
        """At start, after recovery: namespaces and links that no running container owns."""
        state = self.journal.state
        running = {netns_name(cid) for cid, c in state.containers.items()
                   if c.status in ("running", "paused", "restarting")}
        for name in await trio.to_thread.run_sync(netns.list_netns, self.netns_dir):
            if name not in running:
                try:
                    await trio.to_thread.run_sync(netns.delete_netns, self.netns_dir, name)
                except (OSError, KernelError) as exc:
                    log.warning("could not remove stale namespace %s: %s", name, exc)

