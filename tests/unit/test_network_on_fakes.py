"""The supervisor's networking on the recording fake of the network seam (issues 16, 20):
bridge, macvlan and ipvlan networks and their endpoints, Docker's refusals, and a crash
between a kernel step and its event, all without root.

I/O: none (the event store in a temporary file).
"""

from __future__ import annotations

import pytest

from engine.api.docker.reads import render_network
from engine.core import dns_names
from engine.core.errors import Conflict, InvalidArgument, NotFound
from engine.drivers.host import failpoints
from engine.drivers.network.seam import OWNED_ALIAS
from engine.testing.rig import Machine, load_busybox, open_rig
from events import vocabulary as v
from events.envelope import Actor
from events.values import ContainerConfig
from projections.fold import fold

USER = Actor(uid=1000, gid=1000, pid=42, command=("shipslog", "network"))


@pytest.fixture
def machine(tmp_path):  # type: ignore[no-untyped-def]
    failpoints.reset()
    yield Machine(db=tmp_path / "events.db")
    failpoints.reset()


def cfg(network: str, **kw) -> ContainerConfig:  # type: ignore[no-untyped-def]
    return ContainerConfig(image="busybox", image_id="", cmd=("sh",), network_mode=network,
                           **kw)


def sandbox(machine: Machine, cid: str) -> dict[str, object]:
    return machine.net.sandboxes.get(f"/fake/netns/slg-{cid[:12]}", {})


async def run(rig, name: str, network: str, **kw) -> str:  # type: ignore[no-untyped-def]
    cid, _ = await rig.engine.create_container(name=name, config=cfg(network, **kw), env=[],
                                               actor=USER)
    await rig.engine.start(cid, USER)
    return str(cid)


def assert_nothing_left(machine: Machine) -> None:
    """Only the host's own links and the default bridge stay."""
    assert set(machine.net.links) == {"lo", "eth0", *(
        n for n, li in machine.net.links.items() if li.kind == "bridge")}
    assert not machine.net.sandboxes


async def test_bridge_endpoint_made_and_taken_down_through_the_seam(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        nid = await rig.engine.create_network("web", USER, subnet="10.77.0.0/24")
        net = rig.journal.state.networks[nid]
        assert machine.net.links[net.bridge].kind == "bridge" and nid in machine.net.nft
        cid = await run(rig, "ca", "web")
        ep = rig.journal.state.networks[nid].endpoints[cid]
        assert machine.net.links[ep.endpoint_id].master == net.bridge
        assert sandbox(machine, cid)["eth0"].addresses == ("10.77.0.2/24",)  # type: ignore[attr-defined]
        await rig.engine.remove(cid, USER, force=True)
        await rig.engine.remove_network("web", USER)
        assert net.bridge not in machine.net.links and nid not in machine.net.nft
        assert_nothing_left(machine)


async def test_names_answer_from_every_network_of_the_asking_container(machine) -> None:  # type: ignore[no-untyped-def]
    """Docker's embedded DNS: a container on `front` and `back` resolves a name that is only
    on `back` through the server its resolv.conf names (front's); a container only on
    `front` does not; the network asked on wins when both know the name."""
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        front = await rig.engine.create_network("front", USER, subnet="10.78.0.0/24")
        back = await rig.engine.create_network("back", USER, subnet="10.79.0.0/24")
        db = await run(rig, "db", "back")
        app = await run(rig, "app", "front")
        await rig.engine.connect_network("back", app, USER, aliases=("api",))
        web = await run(rig, "web", "front")
        state = rig.journal.state
        ip = {cid: {nid: ep.ip for nid, net in state.networks.items()
                    for c, ep in net.endpoints.items() if c == cid} for cid in (db, app, web)}
        lookup = rig.network.lookup
        assert lookup(front, "db", ip[app][front]) == [ip[db][back]]
        assert lookup(front, "DB", ip[app][front]) == [ip[db][back]]
        assert lookup(back, "api", ip[db][back]) == [ip[app][back]]  # the alias is back's
        assert lookup(front, "api", ip[web][front]) == []
        assert lookup(front, "db", ip[web][front]) == []  # web is not on back
        assert lookup(front, "db", "") == []  # an unknown asker: this network only
        assert lookup(front, "app", ip[web][front]) == [ip[app][front]]
        assert lookup(back, "app", ip[db][back]) == [ip[app][back]]  # the asked network first
        for cid in (db, app, web):
            await rig.engine.remove(cid, USER, force=True)


async def test_dns_servers_of_a_container_are_its_upstreams(machine) -> None:  # type: ignore[no-untyped-def]
    """Docker's ExtDNS: on a user network `--dns` servers are where the embedded server
    forwards that container's other questions; its resolv.conf keeps the embedded server."""
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        nid = await rig.engine.create_network("lan", USER, subnet="10.80.0.0/24")
        own = await run(rig, "own", "lan", dns=("10.0.0.53",))
        plain = await run(rig, "plain", "lan")
        eps = rig.journal.state.networks[nid].endpoints
        default = [("192.0.2.53", 53)]
        upstreams = dns_names.upstreams_of
        state = rig.journal.state
        assert upstreams(state, nid, default, client_ip=eps[own].ip) == [("10.0.0.53", 53)]
        assert upstreams(state, nid, default, client_ip=eps[plain].ip) == default
        assert upstreams(state, nid, default, asker=own) == [("10.0.0.53", 53)]
        assert upstreams(state, nid, default, client_ip="10.80.0.250") == default
        for cid in (own, plain):
            await rig.engine.remove(cid, USER, force=True)


async def test_macvlan_network_endpoints_and_inspect(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        nid = await rig.engine.create_network(
            "lan", USER, driver="macvlan", subnet="192.0.2.0/24", gateway="192.0.2.1",
            ip_range="192.0.2.128/25", aux_addresses={"router": "192.0.2.254"},
            options={"parent": "eth0"})
        net = rig.journal.state.networks[nid]
        shown = render_network(rig.journal.state, net)
        assert (shown["Driver"], shown["Options"], shown["Internal"]) == (
            "macvlan", {"parent": "eth0"}, False)
        assert shown["IPAM"]["Config"] == [{"Subnet": "192.0.2.0/24", "Gateway": "192.0.2.1",
                                            "IPRange": "192.0.2.128/25",
                                            "AuxiliaryAddresses": {"router": "192.0.2.254"}}]
        assert nid not in machine.net.nft  # no NAT, no forward rules: Docker's macvlan
        a = await run(rig, "ca", "lan", ports=())
        b = await run(rig, "cb", "lan", ipv4_address="192.0.2.200")
        eps = rig.journal.state.networks[nid].endpoints
        assert (eps[a].ip, eps[b].ip) == ("192.0.2.128", "192.0.2.200")
        link = sandbox(machine, a)["eth0"]
        assert (link.kind, link.master, link.mode) == ("macvlan", "eth0", "bridge")  # type: ignore[attr-defined]
        # names are served in each container's own namespace, where Docker serves them
        assert rig.network is not None and rig.network.lookup(nid, "cb") == ["192.0.2.200"]
        assert ("net.dns", ("127.0.0.11", f"/fake/netns/slg-{a[:12]}")) in machine.faults.calls
        assert set(rig.network._ctr_dns) == {a, b}
        await rig.engine.stop(a, USER, timeout=1)
        assert not sandbox(machine, a) and a not in rig.journal.state.networks[nid].endpoints
        assert set(rig.network._ctr_dns) == {b}
        for cid in (a, b):
            await rig.engine.remove(cid, USER, force=True)
        await rig.engine.remove_network("lan", USER)
        assert "eth0" in machine.net.links  # the user's parent stays
        assert_nothing_left(machine)


async def test_ipvlan_l3_endpoint_routes_without_a_gateway(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        await rig.engine.create_network("l3", USER, driver="ipvlan", subnet="198.51.100.0/24",
                                        options={"parent": "eth0", "ipvlan_mode": "l3"})
        cid = await run(rig, "ca", "l3")
        link = sandbox(machine, cid)["eth0"]
        assert (link.kind, link.mode) == ("ipvlan", "l3")  # type: ignore[attr-defined]
        calls = [a for name, a in machine.faults.calls if name == "net.join"]
        assert calls
        await rig.engine.remove(cid, USER, force=True)
        await rig.engine.remove_network("l3", USER)
        assert_nothing_left(machine)


@pytest.mark.parametrize(("options", "error", "message"), [
    ({"parent": "eth9"}, InvalidArgument,
     "invalid subinterface vlan name eth9, example formatting is eth0.10"),
    ({"parent": "eth0.5000"}, InvalidArgument, "vlan id must be between 1-4094, received: 5000"),
    ({"parent": "eth9.10"}, InvalidArgument,
     "-o parent interface was not found on the host: eth9"),
    ({"parent": "lo"}, InvalidArgument, "loopback interface is not a valid macvlan parent link"),
    ({"parent": "eth0", "macvlan_mode": "nat"}, InvalidArgument,
     "requested macvlan mode 'nat' is not valid, 'bridge' mode is the macvlan driver default"),
])
async def test_docker_refusals_record_nothing(machine, options, error, message) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        with pytest.raises(error) as exc:
            await rig.engine.create_network("bad", USER, driver="macvlan", options=options)
        assert exc.value.message == message
        assert "bad" not in rig.journal.state.network_names
        assert not [e for e in rig.store.read() if isinstance(e.event, v.NetworkCreated)
                    and e.event.name == "bad"]


@pytest.mark.parametrize(("options", "message"), [
    ({"parent": "eth0", "ipvlan_mode": "l4"},
     "requested ipvlan mode 'l4' is not valid, 'l2' mode is the ipvlan driver default"),
    ({"parent": "eth0", "ipvlan_flag": "loud"},
     "requested ipvlan flag 'loud' is not valid, 'bridge' is the ipvlan driver default"),
    ({"parent": "eth0", "ipvlan_flag": "private"},
     "ipvlan_flag=private is not supported by shipslog"),
])
async def test_ipvlan_refusals(machine, options, message) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        with pytest.raises(InvalidArgument) as exc:
            await rig.engine.create_network("bad", USER, driver="ipvlan", options=options)
        assert exc.value.message == message
        assert "bad" not in rig.journal.state.network_names


async def test_unknown_driver_is_a_missing_plugin(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        with pytest.raises(NotFound, match='plugin "overlay" not found'):
            await rig.engine.create_network("o", USER, driver="overlay")


async def test_overlapping_macvlan_subnets_on_one_parent_are_refused(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        await rig.engine.create_network("m1", USER, driver="macvlan", subnet="192.0.2.0/24",
                                        options={"parent": "eth0"})
        with pytest.raises(Conflict, match="Pool overlaps with other one on this address "
                                           r"space \(192.0.2.0/24\)"):
            await rig.engine.create_network("m2", USER, driver="macvlan",
                                            subnet="192.0.2.0/25", options={"parent": "eth0"})
        m1 = rig.journal.state.network_names["m1"]
        with pytest.raises(Conflict) as exc:
            await rig.engine.create_network("m3", USER, driver="macvlan",
                                            subnet="203.0.113.0/24",
                                            options={"parent": "eth0", "macvlan_mode":
                                                     "passthru"})
        assert exc.value.message == (f"cannot use mode passthru, macvlan network {m1} is "
                                     "already using parent interface eth0")


async def test_vlan_parent_made_shared_and_removed_with_the_last_network(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        n1 = await rig.engine.create_network("v1", USER, driver="macvlan",
                                             subnet="192.0.2.0/24",
                                             options={"parent": "eth0.10"})
        assert rig.journal.state.networks[n1].parent_created
        assert machine.net.links["eth0.10"].alias == OWNED_ALIAS + n1
        n2 = await rig.engine.create_network("v2", USER, driver="macvlan",
                                             subnet="203.0.113.0/24",
                                             options={"parent": "eth0.10"})
        assert not rig.journal.state.networks[n2].parent_created
        await rig.engine.remove_network("v1", USER)
        assert "eth0.10" in machine.net.links  # v2 still hangs off it
        await rig.engine.remove_network("v2", USER)
        assert_nothing_left(machine)


async def test_internal_macvlan_without_parent_is_an_isolated_dummy(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        nid = await rig.engine.create_network("iso", USER, driver="macvlan", internal=True)
        net = rig.journal.state.networks[nid]
        assert net.internal and machine.net.links[net.bridge].kind == "dummy"
        assert render_network(rig.journal.state, net)["Internal"] is True
        await rig.engine.remove_network("iso", USER)
        assert_nothing_left(machine)


@pytest.mark.parametrize("point", ["net.after_netns", "net.after_allocate", "net.after_veth",
                                   "net.after_connected_event"])
@pytest.mark.parametrize("driver", ["bridge", "macvlan"])
async def test_crash_mid_connect_leaves_nothing_after_recovery(machine, point, driver) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        await rig.engine.create_network("n", USER, driver=driver, subnet="10.78.0.0/24",
                                        options={"parent": "eth0"} if driver != "bridge"
                                        else {})
        cid, _ = await rig.engine.create_container(name="ca", config=cfg("n"), env=[],
                                                   actor=USER)
    failpoints.arm(point, "crash")
    crashed = False
    try:
        async with open_rig(machine) as rig:
            await rig.engine.start(cid, USER)
    except BaseException as exc:  # noqa: BLE001 - the crash escapes as an ExceptionGroup
        crashed = "SimulatedCrash" in repr(exc) or isinstance(exc, failpoints.SimulatedCrash)
    failpoints.reset()
    assert crashed
    machine.runtime.procs.clear()  # the container's process went with the "machine"
    async with open_rig(machine) as rig:
        state = rig.journal.state
        net = state.networks[state.network_names["n"]]
        assert not net.endpoints and not net.allocations
        assert fold(rig.store.read()).networks == state.networks
        assert_nothing_left(machine)
        await rig.engine.remove(cid, USER, force=True)
        await rig.engine.remove_network("n", USER)
        assert_nothing_left(machine)


class RecordingLinks:
    """Stands in for the kernel drivers `system reset` opens: records what it deletes."""

    deleted: list[str] = []

    def __init__(self, *args: object) -> None: ...

    def delete_bridge(self, name: str) -> None:
        self.deleted.append(name)

    def delete_parent(self, plan: object) -> None:
        self.deleted.append(f"parent-if-marked:{plan.parent}")  # type: ignore[attr-defined]

    def delete_rules_of(self, owner: str) -> None: ...

    def remove_if_unused(self) -> bool:
        return True

    def close(self) -> None: ...


async def test_system_reset_never_deletes_a_macvlan_parent_by_name(machine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`system reset` deleted every network's `bridge` link by name; a macvlan network's is
    the user's own NIC (eth0)."""
    from types import SimpleNamespace

    from engine.admin import reset

    async with open_rig(machine) as rig:
        await rig.engine.create_network("lan", USER, driver="macvlan",
                                        options={"parent": "eth0"})
        bridge = rig.journal.state.networks[rig.journal.state.network_names["bridge"]].bridge
    RecordingLinks.deleted = []
    for name in ("netlink.Netlink", "nft.Nft", "hostfw.HostForward"):
        monkeypatch.setattr(f"engine.drivers.network.{name}", RecordingLinks)
    warnings: list[str] = []
    reset._networks(SimpleNamespace(db=machine.db), warnings)  # type: ignore[arg-type]
    assert not warnings
    assert RecordingLinks.deleted == [bridge, "parent-if-marked:eth0"]


async def test_reconcile_removes_links_no_event_owns_and_keeps_the_users(machine) -> None:  # type: ignore[no-untyped-def]
    from engine.core.errors import KernelError
    from engine.core.net_plan import veth_name
    from engine.testing.fakes import FakeLink

    async with open_rig(machine) as rig:
        await load_busybox(rig)
        nid = await rig.engine.create_network("v", USER, driver="macvlan",
                                              subnet="192.0.2.0/24",
                                              options={"parent": "eth0.10"})
        kept = await rig.engine.create_network("w", USER, driver="ipvlan",
                                               subnet="198.51.100.0/24",
                                               options={"parent": "eth0"})
        cid, _ = await rig.engine.create_container(name="ca", config=cfg("w"), env=[],
                                                   actor=USER)
        # the VLAN link outlives its network: the kernel refused the removal
        machine.faults.fail("net.delete_network", KernelError("device busy"))
        with pytest.raises(KernelError):
            await rig.engine.remove_network("v", USER)
    assert "eth0.10" in machine.net.links
    assert nid
    stray = veth_name(cid, kept)  # a crash between a sub-interface's creation and its move
    machine.net.links[stray] = FakeLink(name=stray, kind="ipvlan", master="eth0")
    machine.net.links["mine0"] = FakeLink(name="mine0", kind="ipvlan", master="eth0")
    async with open_rig(machine) as rig:
        found = {e.event.subject: e.event.action for e in rig.store.read()
                 if isinstance(e.event, v.ReconcileDifferenceFound)}
        assert found == {f"link:{stray}": "removed", "link:eth0.10": "removed"}
        assert "mine0" in machine.net.links  # a user's own sub-interface stays
        del machine.net.links["mine0"]
        assert_nothing_left(machine)


async def test_dual_stack_macvlan_endpoint(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        nid = await rig.engine.create_network(
            "v6", USER, driver="macvlan", subnet="192.0.2.0/24", enable_ipv6=True,
            subnet6="2001:db8:9::/64", options={"parent": "eth0"})
        cid = await run(rig, "ca", "v6", ipv6_address="2001:db8:9::99")
        ep = rig.journal.state.networks[nid].endpoints[cid]
        assert (ep.ip, ep.ip6) == ("192.0.2.2", "2001:db8:9::99")
        assert sandbox(machine, cid)["eth0"].addresses == (  # type: ignore[attr-defined]
            "192.0.2.2/24", "2001:db8:9::99/64")
        await rig.engine.remove(cid, USER, force=True)
        await rig.engine.remove_network("v6", USER)
        assert_nothing_left(machine)


def kernel_matches_log(rig, machine: Machine) -> None:  # type: ignore[no-untyped-def]
    """The three-way check on the fake network kernel: rebuilt == live, and the kernel holds
    exactly what the log's networks and running containers own."""
    state = rig.journal.state
    assert fold(rig.store.read()).networks == state.networks
    running = {cid for cid, c in state.containers.items() if c.status in ("running", "paused")}
    endpoints = {cid for n in state.networks.values() for cid in n.endpoints}
    assert endpoints <= running
    assert {p.rsplit("/slg-", 1)[1] for p in machine.net.sandboxes} == {
        cid[:12] for cid in endpoints}
    bridges = {n.bridge for n in state.networks.values() if n.driver == "bridge"}
    parents = {n.bridge for n in state.networks.values() if n.parent_created}
    ours = {name for name, li in machine.net.links.items() if li.kind in ("bridge", "dummy",
                                                                          "vlan")}
    assert ours == bridges | parents
    veths = {name for name, li in machine.net.links.items() if li.kind == "veth"}
    assert veths == {ep.endpoint_id for n in state.networks.values() if n.driver == "bridge"
                     for ep in n.endpoints.values()}
    want = {nid for nid, n in state.networks.items() if n.driver == "bridge"}
    want |= {cid for cid in running if state.containers[cid].ports}
    assert set(machine.net.nft) == want


# macvlan publishes no ports (Docker's), so its runs never reach the nft failpoints
NET_POINTS = [(driver, n) for driver in ("bridge", "macvlan") for n in failpoints.NAMES
              if n.startswith("net.") and not (driver == "macvlan" and "nft" in n
                                               or driver == "macvlan" and "published" in n)]


@pytest.mark.parametrize(("driver", "point"), NET_POINTS)
async def test_every_network_failpoint_then_recover(machine, driver, point) -> None:  # type: ignore[no-untyped-def]
    """The failpoint matrix on fakes: a crash at each network step boundary of a network's
    and a container's whole life, then a restart; the log and the kernel agree, and
    everything can still be removed without manual cleanup."""
    from events.values import PortBinding

    opts = {"options": {"parent": "eth0.10"}} if driver == "macvlan" else {}
    ports = (PortBinding(container_port=80, host_port=8080),) if driver == "bridge" else ()
    failpoints.arm(point, "crash")
    crashed = False
    try:
        async with open_rig(machine) as rig:
            await load_busybox(rig)
            await rig.engine.create_network("n", USER, driver=driver, subnet="10.79.0.0/24",
                                            **opts)
            cid = await run(rig, "ca", "n", ports=ports)
            await rig.engine.stop(cid, USER, timeout=1)
            await rig.engine.remove(cid, USER)
            await rig.engine.remove_network("n", USER)
    except BaseException as exc:  # noqa: BLE001 - the crash escapes as an ExceptionGroup
        crashed = "SimulatedCrash" in repr(exc) or isinstance(exc, failpoints.SimulatedCrash)
    failpoints.reset()
    assert crashed, f"{point} was never hit"
    machine.runtime.procs.clear()  # the machine went down with the daemon
    async with open_rig(machine) as rig:
        kernel_matches_log(rig, machine)
        for left in list(rig.journal.state.containers):
            await rig.engine.remove(left, USER, force=True)
        if "n" in rig.journal.state.network_names:
            await rig.engine.remove_network("n", USER)
        kernel_matches_log(rig, machine)
        assert_nothing_left(machine)
