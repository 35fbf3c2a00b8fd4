"""Networks in the running engine: bridges, a container's endpoints, published ports and the
DNS that resolves container names — each kernel change paired with its event.

I/O: netlink (pyroute2), network namespaces, nftables, iptables, sockets for the DNS servers and the
userland proxies, all through `engine/drivers/` (blocking calls in worker threads); the journal
for the events.

Order of a container's attach (RELIABILITY: an address is recorded before it is used):
`NetworkAddressAllocated` (optimistic on the network's stream, so two containers never get one
address; concurrent starts' allocations chained into one commit, `engine/shell/ipam_staging.py`)
→ namespace + veth → `NetworkConnected` → nft DNAT + proxy → `NetworkPortPublished`.
Detach undoes it in reverse, each step idempotent, then records `NetworkPortUnpublished`,
`NetworkDisconnected` and `NetworkAddressReleased`. A failpoint (`engine.drivers.host.failpoints`)
sits at
every boundary between a kernel step and its event (`net.after_netns`, `net.after_allocate`,
`net.after_veth`, `net.after_connected_event`, `net.after_nft`, `net.after_published_event`,
`net.after_detach_kernel`), so tests can kill the daemon at each.

After a crash, `reconcile` (daemon start, after recovery) makes the kernel match the log:
endpoints, addresses and ports of containers that are not running are taken down and released;
veths on our bridges, nft rules, iptables FORWARD accept rules (`engine/core/fwd_plan.py`)
and namespaces that no event owns are removed; forward accept rules found missing at start are
rewritten; a running container whose recorded endpoint or rules are gone is reported. Each
difference is a
`ReconcileDifferenceFound` event — nothing is fixed silently.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Sequence
from typing import NamedTuple

import trio

from engine.core import dns_names
from engine.core.errors import (
    Conflict,
    InvalidArgument,
    KernelError,
    NotFound,
    ShipslogError,
    leaf_of,
)
from engine.core.fwd_plan import CHAIN, findings
from engine.core.hostfiles import upstream_servers
from engine.core.lookup import find_container
from engine.core.net_plan import (
    EMBEDDED_DNS,
    LINK_DRIVERS,
    ParentPlan,
    VethPlan,
    check_bridge_capacity,
    container_ifname,
    driver_mode,
    netns_name,
    plan_bridge,
    plan_parent,
    plan_sub_endpoint,
    plan_veth,
    veth_name,
)
from engine.core.networks import decide_network_create, start_networks
from engine.core.nft_plan import NetworkRules, Publish, publish_rules, replace_transaction
from engine.drivers.host import failpoints
from engine.drivers.network.seam import (
    OWNED_ALIAS,
    NetworkDriver,
    NetworkKernel,
    NetworkPlan,
    all_links,
)
from engine.shell.ipam_staging import AddressStager, taken_by
from engine.shell.journal import ConcurrencyConflict, Journal
from events import vocabulary as v
from events.envelope import SYSTEM_ACTOR, Actor, Pending, stream_of
from events.values import PortBinding
from projections.state import ContainerView, EngineState, NetworkView

log = logging.getLogger("shipslog.network")

DEFAULT_BRIDGE = "bridge"
RUNNING = ("running", "paused", "restarting")


def bind_failed(b: PortBinding, exc: OSError) -> KernelError:
    """Docker's words when a published port cannot be bound (its userland proxy's), with
    the address as the user wrote it (0.0.0.0 when none): HTTP 500, as Docker answers."""
    host = b.host_ip or "0.0.0.0"
    if exc.errno == errno.EADDRINUSE:
        return KernelError(f"Bind for {host}:{b.host_port} failed: port is already allocated",
                           f"another process or container holds {host}:{b.host_port}; publish "
                           f"on another host port (-p OTHER:{b.container_port}) or stop it")
    return KernelError(f"Error starting userland proxy: listen {b.protocol} {host}:"
                       f"{b.host_port}: bind: {(exc.strerror or str(exc)).lower()}",
                       "check the host address and port you publish on")


def network_of(state: EngineState, mode: str) -> NetworkView | None:
    """The network a container's `network_mode` names; None for none/host/container:."""
    if mode in ("none", "host", "") or mode.startswith("container:"):
        return None
    name = DEFAULT_BRIDGE if mode in ("bridge", "default") else mode
    nid = state.network_names.get(name) or (name if name in state.networks else None)
    if nid is None:
        raise NotFound(f"network {name} not found", hint="list networks: shipslog network ls")
    return state.networks[nid]


def network_of_or_none(state: EngineState, c: ContainerView) -> NetworkView | None:
    try:
        return network_of(state, c.config.network_mode)
    except NotFound:
        return None


def endpoint_plan(c: ContainerView, net: NetworkView, ip: str, ip6: str, sandbox: str,
                  index: int) -> VethPlan:
    """The endpoint `c` gets on `net` as its `index`th interface, for the network's driver."""
    mac = c.config.mac_address if index == 0 else ""
    if net.driver in LINK_DRIVERS:
        return plan_sub_endpoint(c.id, net.id, driver=net.driver,
                                 mode=driver_mode(net.driver, net.options), parent=net.bridge,
                                 subnet=net.subnet, gateway=net.gateway, ip=ip,
                                 netns_path=sandbox, ifname=container_ifname(index),
                                 default_route=index == 0, subnet6=net.subnet6,
                                 gateway6=net.gateway6, ip6=ip6, mac=mac)
    return plan_veth(c.id, net.id, bridge=net.bridge, subnet=net.subnet, gateway=net.gateway,
                     ip=ip, netns_path=sandbox, ifname=container_ifname(index),
                     default_route=index == 0, subnet6=net.subnet6, gateway6=net.gateway6,
                     ip6=ip6, mac=mac)


class JoinedNamespace(NamedTuple):
    """What a `--network container:X` container takes from X."""

    path: str
    dns_network: NetworkView | None
    addresses: list[str]
    hostname: str


def network_plan(net: NetworkView) -> NetworkPlan:
    """The kernel side of a recorded network, for its driver (pure)."""
    if net.driver in LINK_DRIVERS:
        return plan_parent(net.driver, net.id, net.bridge,
                           driver_mode(net.driver, net.options), owned=net.parent_created)
    return plan_bridge(net.bridge, net.subnet, net.gateway, subnet6=net.subnet6,
                       gateway6=net.gateway6)


class NetworkOps:
    """The shell's networking: the core's plans carried out through the network seam
    (`engine/drivers/network/seam.py`: the drivers by name, sandboxes, firewall, host
    facts), each kernel step paired with its event."""

    def __init__(self, journal: Journal, kernel: NetworkKernel) -> None:
        self.journal = journal
        self.k = kernel
        self.nft = kernel.nft
        self.hostfw = kernel.hostfw
        self.hostfw6 = kernel.hostfw6  # networks with EnableIPv6 (issue 13)
        self._dns: dict[str, trio.CancelScope] = {}
        self._ctr_dns: dict[str, trio.CancelScope] = {}  # macvlan/ipvlan containers' DNS
        self._proxies: dict[str, list[trio.CancelScope]] = {}
        self._stager = AddressStager(journal)
        self._ruled: set[str] = set()  # containers this process gave nft rules to
        self.nursery: trio.Nursery | None = None

    async def _append(self, pending: list[Pending], op_id: str,
                      actor: Actor = SYSTEM_ACTOR) -> None:
        await self.journal.append(pending, actor=actor, op_id=op_id)

    # -- networks ---------------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery) -> None:
        """At daemon start: the default bridge exists, every network's kernel side is up."""
        self.nursery = nursery
        await trio.to_thread.run_sync(self.nft.ensure_base)
        known = set(self.journal.state.networks)
        try:
            had_fw = await trio.to_thread.run_sync(self.hostfw.owners)
            jump = await trio.to_thread.run_sync(self.hostfw.jump_present)
        except ShipslogError as exc:
            log.warning("cannot read iptables FORWARD: %s", exc)
            had_fw, jump = set(known), True
        had_fw6 = await self._owners6(known)
        if DEFAULT_BRIDGE not in self.journal.state.network_names:
            op_id = self.journal.new_id()
            routes = await trio.to_thread.run_sync(self.k.host.host_routes)
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
        await self._record_forward_repairs(known, had_fw, jump)
        await self._record_forward6_repairs(known, had_fw6)
        # after the networks' rules are in: the log says what they had to get past
        for line in findings(await trio.to_thread.run_sync(self.k.host.firewall_facts)):
            log.warning("firewall: %s", line)

    async def _record_forward_repairs(self, known: set[str], had: set[str], jump: bool) -> None:
        """Networks this log set up before whose FORWARD accept rules were gone at start (a
        firewalld reload, `iptables -F`, a reboot) have just been rewritten: say so."""
        if not self.hostfw.available:
            return
        try:  # only what is there now was repaired (a network's setup may have failed)
            now = await trio.to_thread.run_sync(self.hostfw.owners)
            jump_now = await trio.to_thread.run_sync(self.hostfw.jump_present)
        except ShipslogError:
            return
        if not jump and jump_now and known:
            await self._difference("iptables:FORWARD", f"jump to {CHAIN}", "no jump",
                                   "repaired", "the FORWARD chain was flushed (or made by an "
                                   "older shipslog); the jump to our accept rules was "
                                   "inserted again")
        for nid in sorted((known - had) & now):
            net = self.journal.state.networks.get(nid)
            if net is None:
                continue
            await self._difference(f"network-{nid}", f"accept rules in iptables {CHAIN}",
                                   "no rules", "repaired",
                                   "the forward accept rules were missing (flushed, or "
                                   "made by an older shipslog) and were rewritten from the log")

    async def _owners6(self, known: set[str]) -> set[str]:
        """Networks with ip6tables accept rules now (all of them when unreadable: no repair
        is claimed for what could not be seen)."""
        try:
            return await trio.to_thread.run_sync(self.hostfw6.owners)
        except ShipslogError as exc:
            log.warning("cannot read ip6tables FORWARD: %s", exc)
            return set(known)

    async def _record_forward6_repairs(self, known: set[str], had: set[str]) -> None:
        """The ip6tables twin of `_record_forward_repairs`, for networks with IPv6."""
        if not self.hostfw6.available:
            return
        now = await self._owners6(set())
        for nid in sorted((known - had) & now):
            net = self.journal.state.networks.get(nid)
            if net is None or not net.subnet6:
                continue
            await self._difference(f"network-{nid}", f"accept rules in ip6tables {CHAIN}",
                                   "no rules", "repaired",
                                   "the IPv6 forward accept rules were missing (flushed) and "
                                   "were rewritten from the log")

    def driver(self, net: NetworkView) -> NetworkDriver:
        return self.k.driver(net.driver)

    async def setup_network(self, net: NetworkView) -> None:
        plan = network_plan(net)
        await trio.to_thread.run_sync(self.driver(net).create_network, plan)
        if net.driver in LINK_DRIVERS:
            # No NAT and no forwarding: endpoints sit on the parent's segment (Docker).
            return
        await trio.to_thread.run_sync(self.nft.apply_network, NetworkRules(
            network_id=net.id, bridge=net.bridge, subnet=net.subnet, internal=net.internal,
            subnet6=net.subnet6))
        # past another firewall's FORWARD drop policy (dockerd's): issue 15, item 5
        await trio.to_thread.run_sync(self.hostfw.apply_network, net.id, net.bridge,
                                      net.internal)
        await trio.to_thread.run_sync(self.k.host.enable_ip_forward, 4)
        if net.subnet6:  # as Docker's bridge driver with --ipv6: v6 forwarding and ip6tables
            await trio.to_thread.run_sync(self.hostfw6.apply_network, net.id, net.bridge,
                                          net.internal)
            await trio.to_thread.run_sync(self.k.host.enable_ip_forward, 6)
        if net.name != DEFAULT_BRIDGE and net.id not in self._dns and self.nursery is not None:
            # Docker's default bridge has no name resolution; user-defined networks do.
            await self.nursery.start(self._serve_dns, net)

    async def _serve_dns(self, net: NetworkView, *,
                         task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        host_servers = upstream_servers(self.k.host.resolv_conf())

        def upstreams(client_ip: str) -> list[tuple[str, int]]:
            return dns_names.upstreams_of(self.journal.state, net.id, host_servers,
                                          client_ip=client_ip)

        with trio.CancelScope() as scope:
            self._dns[net.id] = scope
            try:
                await self.k.run_dns(net.id, net.gateway, self.lookup, upstreams,
                                     task_status=task_status)
            except OSError as exc:
                log.warning("DNS for network %s could not listen on %s:53: %s", net.name,
                            net.gateway, exc)
                task_status.started()
            finally:
                self._dns.pop(net.id, None)

    def lookup(self, network_id: str, name: str, client_ip: str = "") -> Sequence[str]:
        """The DNS servers' callback: names on every network of the asking container."""
        return dns_names.answer(self.journal.state, network_id, name, client_ip=client_ip)

    async def teardown_network(self, net: NetworkView) -> None:
        scope = self._dns.pop(net.id, None)
        if scope is not None:
            scope.cancel()
        if net.driver in LINK_DRIVERS:
            if not any(n.bridge == net.bridge for n in self.journal.state.networks.values()
                       if n.id != net.id):
                # the last network on a parent we made (VLAN, dummy) takes it away
                plan = plan_parent(net.driver, net.id, net.bridge, "", owned=True)
                await trio.to_thread.run_sync(self.driver(net).delete_network, plan)
            return
        await trio.to_thread.run_sync(self.nft.delete_rules_of, net.id)
        await trio.to_thread.run_sync(self.hostfw.delete_rules_of, net.id)
        await trio.to_thread.run_sync(self.hostfw.remove_if_unused)
        if net.subnet6:
            await trio.to_thread.run_sync(self.hostfw6.delete_rules_of, net.id)
            await trio.to_thread.run_sync(self.hostfw6.remove_if_unused)
        await trio.to_thread.run_sync(self.driver(net).delete_network, network_plan(net))

    # -- containers -------------------------------------------------------------------------

    async def attach(self, c: ContainerView, op_id: str, actor: Actor) -> str | None:
        """Give a starting container its namespace and its endpoint on its network (at the
        static `--ip` and with the `--network-alias` names it asked for); publish its ports.
        Returns the namespace path for the runtime spec (None: no network)."""
        state = self.journal.state
        if network_of(state, c.config.network_mode) is None:
            return None
        # Its own network first, then those `network connect` recorded before the start.
        joins = start_networks(state, c)
        for nid in joins:
            if nid not in state.networks:
                raise NotFound(f"network {nid} not found",
                               hint=f"disconnect it: shipslog network disconnect {nid} {c.name}")
        if not joins:
            return None  # disconnected from all before the start: an empty namespace
        path = await trio.to_thread.run_sync(self.k.sandboxes.create, netns_name(c.id))
        failpoints.hit("net.after_netns")
        ips = [await self._connect(c, state.networks[nid], path, index, op_id, actor,
                                   ep.aliases, requested=ep.ip, requested6=ep.ip6)
               for index, (nid, ep) in enumerate(joins.items())]
        if state.networks[next(iter(joins))].driver not in LINK_DRIVERS:
            # Docker publishes no ports on macvlan/ipvlan: there is no NAT to do it with.
            await self._publish(c, ips[0], op_id, actor)
        await self._start_container_dns(c.id)
        return path

    def _dns_network(self, cid: str) -> NetworkView | None:
        """The network whose names a container asks for (the supervisor's choice: its
        first user-defined network), when that is a macvlan/ipvlan one."""
        state = self.journal.state
        c = state.containers.get(cid)
        nets = [state.networks.get(nid) for nid in (c.networks if c else {})]
        first = next((n for n in nets if n is not None and n.name != DEFAULT_BRIDGE), None)
        return first if first is not None and first.driver in LINK_DRIVERS else None

    async def _start_container_dns(self, cid: str) -> None:
        """Issue 20: the host cannot reach a macvlan/ipvlan container (nor does it own the
        gateway), so its names are served inside its own namespace on 127.0.0.11."""
        net = self._dns_network(cid)
        if net is None or cid in self._ctr_dns or self.nursery is None:
            return
        await self.nursery.start(self._serve_container_dns, cid, net)

    async def _serve_container_dns(self, cid: str, net: NetworkView, *,
                                   task_status: trio.TaskStatus[None] =
                                   trio.TASK_STATUS_IGNORED) -> None:
        host_servers = upstream_servers(self.k.host.resolv_conf())

        # Inside the container's namespace every query comes from 127.0.0.1: the asker is the
        # container whose namespace this server lives in.
        def lookup(network_id: str, name: str, _client_ip: str) -> Sequence[str]:
            return dns_names.answer(self.journal.state, network_id, name, asker=cid)

        def upstreams(_client_ip: str) -> list[tuple[str, int]]:
            return dns_names.upstreams_of(self.journal.state, net.id, host_servers, asker=cid)

        with trio.CancelScope() as scope:
            self._ctr_dns[cid] = scope
            try:
                await self.k.run_dns(net.id, EMBEDDED_DNS, lookup, upstreams,
                                     netns_path=self.k.sandboxes.path(netns_name(cid)),
                                     task_status=task_status)
            except (OSError, ShipslogError) as exc:
                log.warning("DNS for container %s could not listen on %s:53: %s", cid[:12],
                            EMBEDDED_DNS, exc)
                task_status.started()
            finally:
                if self._ctr_dns.get(cid) is scope:
                    del self._ctr_dns[cid]

    def joined_namespace(self, c: ContainerView) -> JoinedNamespace:
        """`--network container:<name|id>`: the namespace path of the container whose network
        `c` joins (followed through its own `container:` mode), the network whose DNS that
        container uses (None: the default bridge or no network), its addresses and its
        hostname (Docker gives the joining container the same one). Docker's
        rules: the other container must be running; here it must also own a namespace (a
        bridge network), as joining the host's or an empty one is not what a user means."""
        state = self.journal.state
        target = c
        seen = {c.id}
        while target.config.network_mode.startswith("container:"):
            ref = target.config.network_mode.split(":", 1)[1]
            nxt = find_container(state, ref)
            if nxt.id in seen:
                raise Conflict(f"container {c.name} cannot join its own network",
                               hint="name another container in --network container:NAME")
            seen.add(nxt.id)
            if nxt.status not in ("running", "paused"):
                raise Conflict(f"cannot join network of a non running container: {ref}",
                               hint=f"start it first: shipslog start {ref}")
            target = nxt
        path = self.k.sandboxes.path(netns_name(target.id))
        if target.config.network_mode in ("host", "none") or not self.k.sandboxes.exists(
                netns_name(target.id)):
            raise Conflict(f"container {target.name} has no network namespace to join "
                           f"(network mode {target.config.network_mode})",
                           hint="join a container that runs on a bridge network")
        nets = [state.networks.get(nid) for nid in target.networks]
        dns = next((n for n in nets if n is not None and n.name != DEFAULT_BRIDGE), None)
        addresses = [a for ep in target.networks.values() for a in (ep.ip, ep.ip6) if a]
        return JoinedNamespace(str(path), dns, addresses,
                               target.config.hostname or target.id[:12])

    async def _allocate(self, c: ContainerView, net: NetworkView, op_id: str, actor: Actor,
                        requested: str = "", family: int = 4) -> str:
        # The stream version guards against every other writer; within the daemon, starts on
        # one network chain their choices so that a burst of them (Compose's `up`, 200 `run
        # -d` at once) commits together instead of one commit after another, and none keeps
        # conflicting on the others' events (engine/shell/ipam_staging.py).
        for _ in range(8):
            net = self.journal.state.networks[net.id]
            if net.driver == "bridge":
                check_bridge_capacity(len(net.endpoints))
            if taken := taken_by(net, c.id, family):
                return taken  # allocated before a crash: keep it
            address = await self._stager.allocate(
                net.id, c.id, lambda pending: self._append(pending, op_id, actor),
                requested=requested, family=family)
            if address is not None:
                failpoints.hit("net.after_allocate")
                return address
        raise Conflict(f"network {net.name} kept changing while an address was chosen",
                       hint="try again")

    async def _connect(self, c: ContainerView, net: NetworkView, path: str, index: int,
                       op_id: str, actor: Actor, aliases: tuple[str, ...] = (), *,
                       requested: str = "", requested6: str = "") -> str:
        if requested6 and not net.subnet6:
            raise InvalidArgument(f"network {net.name} has no IPv6 subnet for --ip6 "
                                  f"{requested6}", hint="create it with --ipv6 --subnet")
        ip = await self._allocate(c, net, op_id, actor, requested)
        ip6 = ""
        if net.subnet6:  # a network with EnableIPv6: a v6 address too, by the same events
            ip6 = await self._allocate(c, net, op_id, actor, requested6, family=6)
        plan = endpoint_plan(c, net, ip, ip6, path, index)
        driver = self.driver(net)
        await trio.to_thread.run_sync(driver.create_endpoint, plan)
        await trio.to_thread.run_sync(driver.join, plan)
        try:
            failpoints.hit("net.after_veth")
            await self._append([Pending(stream=stream_of("network", net.id),
                                        event=v.NetworkConnected(
                network_id=net.id, container_id=c.id, ip=ip, mac=plan.mac, aliases=aliases,
                endpoint_id=plan.host_ifname, ip6=ip6))], op_id, actor)
        except Exception:
            # No event owns the veth (the log refused it, F-12): it goes before the error.
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(driver.delete_endpoint, path, plan.host_ifname)
            raise
        failpoints.hit("net.after_connected_event")
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
            host_port = b.host_port or await trio.to_thread.run_sync(self.k.host.free_port,
                                                                     b.host_ip, b.protocol)
            resolved.append(PortBinding(container_port=b.container_port, protocol=b.protocol,
                                        host_ip=b.host_ip, host_port=host_port))
        publishes = [Publish(container_ip=ip, container_port=b.container_port,
                             host_port=b.host_port, proto=b.protocol, host_ip=b.host_ip)
                     for b in resolved]
        now = self.journal.state.containers.get(c.id)
        self._ruled.add(c.id)
        if now is not None and not now.ports:
            # The log says this container owns no rule (a crash that left one is undone by
            # `reconcile` before anything starts), so add without first listing the whole
            # table to find its old rules: that listing is most of a publish's cost.
            text = replace_transaction([], publish_rules(c.id, publishes))
            await trio.to_thread.run_sync(self.nft.apply, text)
        else:
            await trio.to_thread.run_sync(self.nft.publish, c.id, publishes)
        try:
            failpoints.hit("net.after_nft")
            scopes = self._proxies.setdefault(c.id, [])
            assert self.nursery is not None
            for b in resolved:
                if b.host_ip in ("", "0.0.0.0", "127.0.0.1"):
                    # DNAT never sees a connection to 127.0.0.1 made on the host itself.
                    scopes.append(await self.nursery.start(self._proxy, b, ip, True))
            await self._append([Pending(stream=stream_of("container", c.id),
                                        event=v.NetworkPortPublished(container_id=c.id,
                                                                     binding=b, container_ip=ip))
                                 for b in resolved], op_id, actor)
        except Exception:
            # No event owns the rules and proxies (the log refused them, F-12): they go first.
            for scope in self._proxies.pop(c.id, []):
                scope.cancel()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.nft.delete_rules_of, c.id)
            self._ruled.discard(c.id)
            raise
        failpoints.hit("net.after_published_event")

    async def _proxy(self, b: PortBinding, ip: str, strict: bool = False, *,
                     task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED
                     ) -> None:
        """One userland proxy, started (listening) before this returns its cancel scope.
        `strict` (a start): a port it cannot bind fails the start with Docker's message."""
        host = "127.0.0.1" if b.host_ip in ("", "0.0.0.0") else b.host_ip
        with trio.CancelScope() as scope:
            started = False
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(self.k.run_proxy, host, b.host_port, ip,
                                        b.container_port, b.protocol)
                    task_status.started(scope)
                    started = True
            except Exception as exc:  # noqa: BLE001 - the nursery wraps the OSError in a group
                leaf = leaf_of(exc)
                if not isinstance(leaf, OSError):
                    raise
                if strict and not started:
                    raise bind_failed(b, leaf) from None
                log.warning("proxy for port %s failed: %s", b.host_port, leaf)
            if not started:
                task_status.started(scope)

    async def detach(self, cid: str, op_id: str, actor: Actor = SYSTEM_ACTOR) -> None:
        """Take down everything `attach` made, and record it. Idempotent."""
        c = self.journal.state.containers.get(cid)
        for scope in self._proxies.pop(cid, []):
            scope.cancel()
        dns = self._ctr_dns.pop(cid, None)
        if dns is not None:
            dns.cancel()
        if c is None or c.ports or cid in self._ruled:
            # Finding a container's rules means listing the table (~10 ms): only when the log
            # or this process says it has some (`reconcile` finds a crash's leftovers).
            await trio.to_thread.run_sync(self.nft.delete_rules_of, cid)
            self._ruled.discard(cid)
        pending: list[Pending] = []
        if c is not None:
            pending += [Pending(stream=stream_of("container", cid), event=v.NetworkPortUnpublished(
                container_id=cid, binding=p.binding)) for p in c.ports]
        state = self.journal.state
        sandbox = self.k.sandboxes.path(netns_name(cid))
        for net in state.networks.values():
            if cid in net.endpoints:
                ep = net.endpoints[cid]
                await self._delete_endpoint(net, sandbox, ep.endpoint_id)
                pending.append(Pending(stream=stream_of("network", net.id),
                                       event=v.NetworkDisconnected(network_id=net.id,
                                                                   container_id=cid)))
            for address, owner in net.allocations.items():
                if owner == cid:
                    pending.append(Pending(stream=stream_of("network", net.id),
                                           event=v.NetworkAddressReleased(
                                               network_id=net.id, container_id=cid,
                                               address=address)))
        await trio.to_thread.run_sync(self.k.sandboxes.delete, netns_name(cid))
        failpoints.hit("net.after_detach_kernel")
        if pending:
            await self._append(pending, op_id, actor)

    async def connect_live(self, c: ContainerView, net: NetworkView, op_id: str, actor: Actor,
                           aliases: tuple[str, ...] = (), *, ip: str = "", ip6: str = "") -> None:
        """`network connect` of a running container: one more interface in its namespace,
        at the static address `ip` when one is given."""
        path = self.k.sandboxes.path(netns_name(c.id))
        if not self.k.sandboxes.exists(netns_name(c.id)):
            raise Conflict(f"container {c.name} has no network namespace of its own",
                           hint="only containers on a bridge network can join another")
        try:
            await self._connect(c, net, path, len(c.networks), op_id, actor, aliases,
                                requested=ip, requested6=ip6)
        except Exception:
            # The address went on the record before the veth; with no endpoint it goes back.
            with trio.CancelScope(shield=True):
                await self.release_reserved(c.id, net.id, op_id, actor)
            raise

    async def reserve_address(self, c: ContainerView, net: NetworkView, ip: str, op_id: str,
                              actor: Actor, family: int = 4) -> str:
        """Record the static address a `network connect --ip` (`--ip6`: family 6) asked for
        before the connect itself runs; `_allocate` then keeps it (one allocation per
        container, network and family)."""
        return await self._allocate(c, net, op_id, actor, ip, family)

    async def release_reserved(self, cid: str, net_id: str, op_id: str, actor: Actor) -> None:
        """Undo `reserve_address` when the connect was refused: an allocation with no
        endpoint goes back to the pool, on the record."""
        net = self.journal.state.networks.get(net_id)
        if net is None or cid in net.endpoints:
            return
        pending = [Pending(stream=stream_of("network", net.id), event=v.NetworkAddressReleased(
            network_id=net.id, container_id=cid, address=a))
            for a, owner in net.allocations.items() if owner == cid]
        if pending:
            await self._append(pending, op_id, actor)

    async def disconnect_live(self, c: ContainerView, net: NetworkView, op_id: str,
                              actor: Actor) -> None:
        ep = net.endpoints.get(c.id)
        pending = []
        if ep is not None:
            await self._delete_endpoint(net, self.k.sandboxes.path(netns_name(c.id)),
                                        ep.endpoint_id)
            pending.append(Pending(stream=stream_of("network", net.id),
                                   event=v.NetworkDisconnected(network_id=net.id,
                                                               container_id=c.id)))
        pending += [Pending(stream=stream_of("network", net.id), event=v.NetworkAddressReleased(
            network_id=net.id, container_id=c.id, address=a))
            for a, owner in net.allocations.items() if owner == c.id]
        if pending:
            await self._append(pending, op_id, actor)

    async def _delete_endpoint(self, net: NetworkView, sandbox: str, endpoint_id: str) -> None:
        """CNM leave, then delete: the endpoint's interface goes (gone already: fine)."""
        driver = self.driver(net)
        await trio.to_thread.run_sync(driver.leave, sandbox, endpoint_id)
        await trio.to_thread.run_sync(driver.delete_endpoint, sandbox, endpoint_id)

    async def readopt(self) -> None:
        """After a daemon restart: the kernel kept bridges, veths and DNAT rules, but the
        userland proxies died with the old daemon; start them again for running containers."""
        assert self.nursery is not None
        for c in list(self.journal.state.containers.values()):
            if c.status in ("running", "paused"):
                await self._start_container_dns(c.id)  # its sockets died with the daemon
            if c.status not in ("running", "paused") or c.id in self._proxies:
                continue
            scopes = self._proxies.setdefault(c.id, [])
            for p in c.ports:
                if p.binding.host_ip in ("", "0.0.0.0", "127.0.0.1"):
                    scopes.append(await self.nursery.start(self._proxy, p.binding,
                                                           p.container_ip))

    # -- reconciliation at start ------------------------------------------------------------

    async def _difference(self, subject: str, expected: str, observed: str, action: str,
                          reason: str) -> None:
        await self._append([Pending(stream="reconcile", event=v.ReconcileDifferenceFound(
            subject=subject, expected=expected, observed=observed, action=action,
            reason=reason))], "reconcile-network")

    async def reconcile(self) -> None:
        """At start, after recovery and before anything new is started: make the kernel hold
        exactly what the log says (F-02, F-12). Order: veths on our bridges that no event owns
        go; containers the log no longer runs give up what they still hold (with its events);
        nft rules no event owns go; then running containers whose endpoint or rules are missing are
        reported (their rules rewritten from the log); `sweep` ends with the namespaces."""
        await self._reconcile_links()  # first: a namespace's deletion would hide its veth
        state = self.journal.state
        for cid, c in list(state.containers.items()):
            if c.status in RUNNING:
                continue
            held = bool(c.networks or c.ports) or any(
                cid in n.allocations.values() for n in state.networks.values())
            if held:
                await self._difference(f"container-{cid}", "no network (not running)",
                                       "endpoints, addresses or ports recorded", "released",
                                       "the daemon stopped between a network step and its "
                                       "outcome")
                await self.detach(cid, "reconcile-network")
        await self._reconcile_rules()
        await self._reconcile_running()

    def _owned_links(self) -> tuple[set[str], set[str]]:
        """(our bridges, veth host ends the log's endpoints own)."""
        state = self.journal.state
        bridges = {n.bridge for n in state.networks.values()}
        veths = {ep.endpoint_id for n in state.networks.values()
                 for ep in n.endpoints.values() if ep.endpoint_id}
        return bridges, veths

    async def _reconcile_links(self) -> None:
        bridges, veths = self._owned_links()
        bridge = self.k.driver("bridge")
        for link in await trio.to_thread.run_sync(all_links, self.k):
            if link.kind in LINK_DRIVERS or link.alias.startswith(OWNED_ALIAS):
                await self._reconcile_sublink(link.name, link.kind, link.alias)
                continue
            # Only ports of our own bridges: other engines on this host name theirs slg* too.
            if link.kind != "veth" or link.master not in bridges or link.name in veths:
                continue
            await trio.to_thread.run_sync(bridge.delete_endpoint, "", link.name)
            await self._difference(f"link:{link.name}", "no endpoint",
                                   f"veth on {link.master}", "removed",
                                   "a veth that no NetworkConnected event owns")

    async def _reconcile_sublink(self, name: str, kind: str, alias: str) -> None:
        """Issue 20: a macvlan/ipvlan endpoint still in the host namespace (a crash between
        its creation and its move into the container: no event owns it), or a parent we
        made (VLAN, dummy) whose network the log no longer has."""
        state = self.journal.state
        if kind in LINK_DRIVERS:
            possible = {veth_name(cid, nid) for cid in state.containers
                        for nid, n in state.networks.items() if n.driver in LINK_DRIVERS}
            if name not in possible:
                return  # a user's own, or another engine's on this host
            await trio.to_thread.run_sync(self.k.driver(kind).delete_endpoint, "", name)
            await self._difference(f"link:{name}", "no endpoint", f"{kind} on the host",
                                   "removed", f"a {kind} endpoint that no NetworkConnected "
                                   "event owns")
            return
        nid = alias[len(OWNED_ALIAS):]
        if any(n.bridge == name for n in state.networks.values()) or not \
                await trio.to_thread.run_sync(self._was_ours, nid):
            return
        plan = ParentPlan(driver="macvlan", network_id=nid, parent=name, mode="",
                          make=kind if kind in ("vlan", "dummy") else "dummy")
        await trio.to_thread.run_sync(self.k.driver("macvlan").delete_network, plan)
        await self._difference(f"link:{name}", "no link", f"{kind} parent", "removed",
                               f"a parent link made for network {nid[:12]}, which the log "
                               "has removed")

    async def _reconcile_rules(self) -> None:
        state = self.journal.state
        mine = set(state.containers) | set(state.networks)
        published = {cid for cid, c in state.containers.items() if c.ports}
        for rule in await trio.to_thread.run_sync(self.nft.list_rules):
            if rule.kind == "net" and rule.owner in state.networks:
                continue
            if rule.kind == "ctr" and rule.owner in published:
                continue
            if rule.owner not in mine and not await trio.to_thread.run_sync(
                    self._was_ours, rule.owner):
                continue  # another engine's rule in the shared table: not ours to judge
            await trio.to_thread.run_sync(self.nft.delete_rules_of, rule.owner)
            await self._difference(f"nft:{rule.kind}:{rule.owner}", "no rule",
                                   f"rule in chain {rule.chain}", "removed",
                                   "an nft rule that no event owns")
        for fw, tool in ((self.hostfw, "iptables"), (self.hostfw6, "ip6tables")):
            try:
                fw_owners = await trio.to_thread.run_sync(fw.owners)
            except ShipslogError as exc:  # a table we cannot read must not stop a start
                log.warning("cannot read %s %s: %s", tool, CHAIN, exc)
                fw_owners = set()
            for owner in sorted(fw_owners):
                if owner in state.networks or (owner not in mine and not await
                                               trio.to_thread.run_sync(self._was_ours, owner)):
                    continue
                await trio.to_thread.run_sync(fw.delete_rules_of, owner)
                await self._difference(f"{tool}:{CHAIN}:{owner}", "no rule",
                                       f"rules in {tool} chain {CHAIN}", "removed",
                                       "a forward accept rule that no event owns")

    def _was_ours(self, owner: str) -> bool:
        """An id this log created once (a removed container or network)."""
        for stream in (stream_of("container", owner), stream_of("network", owner)):
            for _ in self.journal.store.read(stream=stream, limit=1):
                return True
        return False

    async def _reconcile_running(self) -> None:
        state = self.journal.state
        bridges, _ = self._owned_links()
        present = {link.name for link in await trio.to_thread.run_sync(all_links, self.k)
                   if link.master in bridges}
        rules = {r.owner for r in await trio.to_thread.run_sync(self.nft.list_rules)
                 if r.kind == "ctr"}
        for net in list(state.networks.values()):
            for address, cid in list(net.allocations.items()):
                c = state.containers.get(cid)
                if c is None or c.status not in RUNNING or cid in net.endpoints:
                    continue  # not running: released above
                # A live connect that the daemon did not finish: the address goes back.
                await self._append([Pending(
                    stream=stream_of("network", net.id), event=v.NetworkAddressReleased(
                        network_id=net.id, container_id=cid, address=address))],
                    "reconcile-network")
                await self._difference(f"container-{cid}", f"endpoint on {net.name}",
                                       f"address {address} without an endpoint", "released",
                                       "the daemon stopped while the container was connected")
        for cid, c in list(state.containers.items()):
            if c.status not in RUNNING:
                continue
            for nid, ep in c.networks.items():
                on = state.networks.get(nid)
                if on is not None and on.driver in LINK_DRIVERS:
                    continue  # its endpoint lives in the container's namespace, not here
                if ep.endpoint_id and ep.endpoint_id not in present:
                    await self._difference(
                        f"container-{cid}", f"endpoint {ep.endpoint_id} on "
                        f"{on.name if on else nid}", "no such link", "recorded",
                        "the container's veth is gone; disconnect and connect it again")
            if c.ports and cid not in rules:
                await trio.to_thread.run_sync(self.nft.publish, cid, [
                    Publish(container_ip=p.container_ip, container_port=p.binding.container_port,
                            host_port=p.binding.host_port, proto=p.binding.protocol,
                            host_ip=p.binding.host_ip) for p in c.ports])
                await self._difference(f"container-{cid}", "published-port rules",
                                       "no rules", "repaired",
                                       "the container's DNAT rules were rewritten from the log")

    async def sweep(self) -> None:
        """At start, after recovery: namespaces that no running container owns."""
        state = self.journal.state
        running = {netns_name(cid) for cid, c in state.containers.items()
                   if c.status in RUNNING and network_of_or_none(state, c) is not None}
        for name in await trio.to_thread.run_sync(self.k.sandboxes.list):
            if name in running:
                continue
            try:
                await trio.to_thread.run_sync(self.k.sandboxes.delete, name)
            except (OSError, KernelError) as exc:
                log.warning("could not remove stale namespace %s: %s", name, exc)
                continue
            await self._difference(f"netns:{name}", "no namespace", "namespace", "removed",
                                   "a network namespace that no running container owns")
