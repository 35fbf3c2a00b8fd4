"""Properties of address management: an address is never handed out twice, never the gateway
nor the subnet's network or broadcast address nor an auxiliary address (Docker's IPAM
AuxiliaryAddresses, reserved by `NetworkCreated`), always inside the subnet (and the ip_range) —
for the v4 pool and for the v6 pool of a dual-stack network, whose allocations share one map;
`pick_subnet` never overlaps what is in use; concurrent connects through the real store and
writer never commit one address twice (optimistic concurrency on the network's stream).
"""

from __future__ import annotations

import ipaddress
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine.core.errors import Conflict, ShipslogError
from engine.core.ipam import next_free_address, pick_subnet
from engine.core.networks import decide_connect, decide_network_create
from engine.drivers.host import failpoints
from engine.testing.rig import Machine, load_busybox, open_rig
from events.envelope import Actor, Envelope
from events.values import ContainerConfig
from projections.fold import fold
from projections.state import EngineState, NetworkView

USER = Actor(uid=1000, gid=1000, pid=42)
_SETTINGS = settings(max_examples=150, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@st.composite
def networks(draw: st.DrawFn, *, v6: bool = True, min_range_prefix_gap: int = 2) -> NetworkView:
    """A network as `decide_network_create` records it for valid input: a subnet, a gateway
    inside it, an optional ip_range inside it (of at least 4 addresses by default), and some
    addresses already allocated (inside the subnet)."""
    version = draw(st.sampled_from([4, 6])) if v6 else 4
    bits = 32 if version == 4 else 128
    prefix = draw(st.integers(bits - 8, bits - 2))
    base = draw(st.integers(0, 2**bits - 1)) if version == 6 else draw(
        st.sampled_from([0x0A000000, 0xAC120000, 0xC0A80000])) + draw(st.integers(0, 2**16 - 1))
    subnet = ipaddress.ip_network((base >> (bits - prefix) << (bits - prefix), prefix))
    size = subnet.num_addresses
    first = int(subnet.network_address)
    hosts = list(subnet.hosts())
    gateway = str(draw(st.sampled_from(hosts)))
    ip_range = ""
    if draw(st.booleans()):
        rprefix = draw(st.integers(prefix, bits - min_range_prefix_gap))
        rsize = 2 ** (bits - rprefix)
        start = first + draw(st.integers(0, size // rsize - 1)) * rsize
        ip_range = str(ipaddress.ip_network((start, rprefix)))
    allocated = draw(st.sets(st.integers(0, size - 1), max_size=size))
    allocations = {str(ipaddress.ip_address(first + i)): f"c{i}" for i in allocated}
    # Auxiliary addresses: host addresses of the subnet no container was given (IPAM never
    # hands one out, so no allocation can hold one), inside or outside the ip_range.
    aux_pick = draw(st.sets(st.sampled_from(hosts), max_size=3))
    aux = {f"h{i}": str(a) for i, a in enumerate(sorted(aux_pick))
           if str(a) != gateway and str(a) not in allocations}
    if version == 4:
        return NetworkView(id="n" * 64, name="net", subnet=str(subnet), gateway=gateway,
                           ip_range=ip_range, allocations=allocations, aux_addresses=aux)
    # A v6 pool lives beside a v4 one (issue 13): both families' allocations in one map,
    # so the v4 side must never make the v6 side repeat or skip an address.
    v4 = ipaddress.ip_network("10.250.0.0/28")
    v4_taken = draw(st.sets(st.sampled_from([str(a) for a in v4.hosts()][1:]), max_size=4))
    allocations |= {a: f"v4-{a}" for a in v4_taken}
    return NetworkView(id="n" * 64, name="net", subnet=str(v4), gateway="10.250.0.1",
                       enable_ipv6=True, subnet6=str(subnet), gateway6=gateway,
                       ip_range6=ip_range, allocations=allocations, aux_addresses6=aux)


def aux_of(net: NetworkView) -> set[str]:
    return set(net.aux_addresses6.values() if net.subnet6 else net.aux_addresses.values())


def family(net: NetworkView) -> int:
    """The pool a test exercises: the v6 one of a dual-stack network, else the v4 one."""
    return 6 if net.subnet6 else 4


def pool_of(net: NetworkView) -> tuple[Any, str, str]:
    if net.subnet6:
        return ipaddress.ip_network(net.subnet6), net.gateway6, net.ip_range6
    return ipaddress.ip_network(net.subnet), net.gateway, net.ip_range


def reserved(subnet: Any) -> set[str]:
    """Docker's IPAM: the network address of both families, the broadcast one of IPv4."""
    out = {str(subnet.network_address)}
    if subnet.version == 4:
        out.add(str(subnet.broadcast_address))
    return out


def usable(net: NetworkView) -> set[str]:
    """What may be handed out: every address of the pool (a sub-range's own first and last
    addresses included, as Docker's IPAM), minus the subnet's reserved addresses, the
    gateway and every allocated address."""
    subnet, gateway, ip_range = pool_of(net)
    pool = ipaddress.ip_network(ip_range) if ip_range else subnet
    out = {str(a) for a in pool}
    out -= reserved(subnet) | {gateway} | aux_of(net)
    return out - set(net.allocations)


def check_address(net: NetworkView, address: str, *, dynamic: bool) -> None:
    subnet, gateway, ip_range = pool_of(net)
    addr = ipaddress.ip_address(address)
    assert str(addr) == address  # canonical, so string compares against allocations hold
    assert addr in subnet
    if dynamic and ip_range:
        assert addr in ipaddress.ip_network(ip_range)
    assert address not in net.allocations
    assert address not in aux_of(net)
    assert addr != ipaddress.ip_address(gateway)
    assert address not in reserved(subnet)


@given(net=networks())
@_SETTINGS
def test_next_free_address_is_free_and_inside(net: NetworkView) -> None:
    free = usable(net)
    if not free:
        with pytest.raises(Conflict):
            next_free_address(net, family=family(net))
        return
    address = next_free_address(net, family=family(net))
    check_address(net, address, dynamic=True)
    assert address in free


@given(net=networks(), data=st.data())
@_SETTINGS
def test_requested_address_is_refused_when_taken(net: NetworkView, data: st.DataObject) -> None:
    subnet, gateway, _ = pool_of(net)
    # The network and broadcast addresses have their own test below.
    hosts = [str(a) for a in subnet.hosts() if str(a) not in reserved(subnet)]
    requested = data.draw(st.sampled_from(hosts))
    taken = requested in net.allocations or requested == gateway or requested in aux_of(net)
    try:
        got = next_free_address(net, requested=requested, family=family(net))
    except Conflict:
        assert taken
        return
    assert not taken
    assert got == requested
    check_address(net, got, dynamic=False)


@given(net=networks(), n=st.integers(1, 12))
@_SETTINGS
def test_allocating_until_exhausted_never_repeats(net: NetworkView, n: int) -> None:
    """Fold each allocation into the view, as the log would: no address comes back twice,
    and Conflict comes exactly when the usable addresses have run out."""
    expected = len(usable(net))
    handed: list[str] = []
    for i in range(n):
        try:
            address = next_free_address(net, family=family(net))
        except Conflict:
            assert len(handed) == expected
            break
        check_address(net, address, dynamic=True)
        handed.append(address)
        net = msgspec.structs.replace(net, allocations={**net.allocations, address: f"n{i}"})
    assert len(set(handed)) == len(handed)
    assert len(handed) == min(n, expected)


@given(data=st.data(), prefix=st.integers(26, 30), v6=st.booleans())
@_SETTINGS
def test_auxiliary_addresses_are_recorded_or_refused_and_never_handed_out(
        data: st.DataObject, prefix: int, v6: bool) -> None:
    """Any `AuxiliaryAddresses` a client sends (inside, outside, reserved, repeated, not an
    address): the create is refused with a ShipslogError, or every one is recorded on the
    network by its `NetworkCreated` event and allocating until the pool is exhausted hands
    none of them out."""
    subnet = ipaddress.ip_network(f"fd00:5::/{prefix + 96}" if v6 else f"10.66.0.0/{prefix}")
    candidates = [str(a) for a in subnet] + (["fd00:6::1", "10.66.0.1"] if v6 else
                                             ["10.67.0.1", "fd00::1", "nonsense"])
    aux = data.draw(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]),
                                    st.sampled_from(candidates), max_size=4))
    kwargs: dict[str, Any] = (
        {"subnet": "10.65.0.0/24", "enable_ipv6": True, "subnet6": str(subnet),
         "aux_addresses6": aux} if v6 else {"subnet": str(subnet), "aux_addresses": aux})
    try:
        decision = decide_network_create(EngineState(), "auxnet", op_id="op1",
                                         network_id="c" * 64, host_routes=[], **kwargs)
    except ShipslogError:
        return
    net = _state_after(decision).networks["c" * 64]
    recorded = net.aux_addresses6 if v6 else net.aux_addresses
    assert {k: ipaddress.ip_address(a) for k, a in recorded.items()} == {
        k: ipaddress.ip_address(a) for k, a in aux.items()}
    handed = []
    for i in range(subnet.num_addresses):
        try:
            address = next_free_address(net, family=6 if v6 else 4)
        except Conflict:
            break
        handed.append(address)
        net = msgspec.structs.replace(net, allocations={**net.allocations, address: f"n{i}"})
    assert not set(handed) & set(recorded.values())
    assert len(handed) == len(set(handed))


# --- pick_subnet ---------------------------------------------------------------------------

_CANDIDATE_LIKE = st.one_of(
    st.builds(lambda i, p: str(ipaddress.ip_network((0xAC000000 + (i << 16), p), strict=False)),
              st.integers(16, 31), st.integers(12, 28)),
    st.builds(lambda i, p: str(ipaddress.ip_network((0xC0A80000 + (i << 8), p), strict=False)),
              st.integers(0, 255), st.integers(16, 28)),
    st.sampled_from(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "172.17.0.0/16",
                     "fd00::/8", "127.0.0.0/8", ""]),
)


@given(used=st.lists(_CANDIDATE_LIKE, max_size=40), routes=st.lists(_CANDIDATE_LIKE, max_size=8))
@_SETTINGS
def test_pick_subnet_never_overlaps(used: list[str], routes: list[str]) -> None:
    busy = [ipaddress.ip_network(n) for n in used + routes if n]
    try:
        subnet, gateway = pick_subnet(used, routes)
    except Conflict:
        # Only when every predefined pool is taken.
        pools = [ipaddress.ip_network(f"172.{i}.0.0/16") for i in range(18, 32)]
        pools += [ipaddress.ip_network(f"192.168.{i}.0/20") for i in range(0, 256, 16)]
        assert all(any(p.overlaps(b) for b in busy) for p in pools)
        return
    net = ipaddress.ip_network(subnet)
    assert not any(net.overlaps(b) for b in busy)
    assert ipaddress.ip_address(gateway) in net
    assert gateway == str(next(net.hosts()))


# --- regressions: bugs the properties found, fixed -------------------------------------------


@pytest.mark.parametrize("requested", ["10.9.0.0", "10.9.0.255"])
def test_requested_network_or_broadcast_address_is_refused(requested: str) -> None:
    net = NetworkView(id="n" * 64, name="net", subnet="10.9.0.0/24", gateway="10.9.0.1")
    with pytest.raises(ShipslogError):
        next_free_address(net, requested=requested)


@pytest.mark.parametrize("ip_range", ["10.9.0.0/32", "10.9.0.0/31"])
def test_tiny_ip_range_never_yields_the_network_address(ip_range: str) -> None:
    net = NetworkView(id="n" * 64, name="net", subnet="10.9.0.0/24", gateway="10.9.0.1",
                      ip_range=ip_range)
    try:
        address = next_free_address(net)
    except Conflict:
        return
    assert address != "10.9.0.0"


@pytest.mark.parametrize("requested", ["2001:db8::", "10.9.0.5"])
def test_requested_v6_network_address_or_other_family_is_refused(requested: str) -> None:
    net = NetworkView(id="n" * 64, name="net", subnet="10.9.0.0/24", gateway="10.9.0.1",
                      enable_ipv6=True, subnet6="2001:db8::/64", gateway6="2001:db8::1")
    with pytest.raises(ShipslogError):
        next_free_address(net, requested=requested, family=6)


def test_last_v6_address_is_a_host_address() -> None:
    """IPv6 has no broadcast: Docker's IPAM hands out the last address of a v6 pool."""
    net = NetworkView(id="n" * 64, name="net", subnet="10.9.0.0/24", gateway="10.9.0.1",
                      enable_ipv6=True, subnet6="2001:db8::/126", gateway6="2001:db8::1",
                      allocations={"2001:db8::2": "a"})
    assert next_free_address(net, family=6) == "2001:db8::3"


def _state_after(decision: Any, state: EngineState | None = None) -> EngineState:
    state = state or EngineState()
    envs = [Envelope(seq=state.seq + i + 1, stream=p.stream, stream_version=1,
                     schema_version=1, recorded_at=1, actor=USER, op_id="op", event=p.event)
            for i, p in enumerate(decision.pending)]
    return fold(envs, state=state)


def test_non_canonical_gateway_is_never_handed_out() -> None:
    state = _state_after(decide_network_create(
        EngineState(), "v6net", op_id="op1", network_id="a" * 64, host_routes=[],
        enable_ipv6=True, subnet6="fd00::/120", gateway6="fd00::0001"))
    net = state.networks["a" * 64]
    address = next_free_address(net, family=6)
    assert ipaddress.ip_address(address) != ipaddress.ip_address(net.gateway6)
    assert net.gateway6 == "fd00::1"


def test_ip_range_outside_subnet_is_refused_or_contained() -> None:
    try:
        decision = decide_network_create(
            EngineState(), "ranged", op_id="op1", network_id="b" * 64, host_routes=[],
            subnet="10.9.0.0/24", ip_range="10.10.0.0/24")
    except ShipslogError:
        return  # refusing it is the fix
    net = _state_after(decision).networks["b" * 64]
    assert ipaddress.ip_address(next_free_address(net)) in ipaddress.ip_network(net.subnet)


# --- concurrent connects through the real store --------------------------------------------


def cfg() -> ContainerConfig:
    return ContainerConfig(image="busybox", image_id="", cmd=("sh",), network_mode="bridge")


@pytest.mark.slow
@given(k=st.integers(2, 10), prefix=st.integers(27, 30), preallocated=st.integers(0, 3))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_concurrent_connects_never_share_an_address(k: int, prefix: int,
                                                    preallocated: int) -> None:
    subnet = f"10.77.0.0/{prefix}"
    assume(preallocated < k)
    failpoints.reset()
    with tempfile.TemporaryDirectory() as tmp:
        trio.run(_connect_race, Machine(db=Path(tmp) / "events.db"), subnet, k, preallocated)


async def _connect_race(machine: Machine, subnet: str, k: int, preallocated: int) -> None:
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        engine = rig.engine
        cids = []
        for i in range(k):
            cid, _ = await engine.create_container(name=f"c{i}", config=cfg(), env=[],
                                                   actor=USER)
            cids.append(cid)
        nid = "e" * 64
        await engine.decide_and_append(lambda s: decide_network_create(
            s, "race", op_id="netop", network_id=nid, host_routes=[], subnet=subnet), USER)
        # A few connects first, one at a time, then the rest all at once.
        outcomes: dict[str, object] = {}

        async def connect(i: int, cid: str) -> None:
            op_id = f"connect{i}"
            try:
                decision = await engine.decide_and_append(
                    lambda s: decide_connect(s, nid, cid, op_id=op_id), USER)
                outcomes[cid] = decision.plan[0].args["address"]
            except Conflict as exc:
                outcomes[cid] = exc

        for i in range(preallocated):
            await connect(i, cids[i])
        async with trio.open_nursery() as nursery:
            for i in range(preallocated, k):
                nursery.start_soon(connect, i, cids[i])

        state = rig.store.state
        net = state.networks[nid]
        allocated = [e.event for e in rig.store.read(stream="network-" + nid)
                     if type(e.event).__name__ == "NetworkAddressAllocated"]
        addresses = [e.address for e in allocated]
        assert len(addresses) == len(set(addresses)), addresses
        won = {cid: a for cid, a in outcomes.items() if isinstance(a, str)}
        assert sorted(won.values()) == sorted(addresses)
        assert {a: cid for cid, a in won.items()} == dict(net.allocations)
        for address in addresses:
            check_address(NetworkView(id=nid, name="race", subnet=net.subnet,
                                      gateway=net.gateway), address, dynamic=True)
        free_at_start = len(usable(NetworkView(id=nid, name="race", subnet=net.subnet,
                                               gateway=net.gateway)))
        # Every loser was told why: the pool ran out, or the network kept changing.
        assert len(outcomes) == k
        if len(won) < k:
            assert len(won) == free_at_start or any(
                "kept changing" in str(x) for x in outcomes.values() if not isinstance(x, str))
        assert rig.store.verify().ok
        assert fold(rig.store.read()).networks == state.networks


@given(starts=st.integers(2, 8), connects=st.integers(0, 3), prefix=st.integers(26, 29))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_concurrent_starts_and_connects_never_share_an_address(starts: int, connects: int,
                                                              prefix: int) -> None:
    """Issue 14: starts on one network chain their allocations into one group commit
    (engine/shell/ipam_staging.py) while `network connect`s allocate on their own decision;
    through the real store and writer, no address is ever committed twice."""
    failpoints.reset()
    with tempfile.TemporaryDirectory() as tmp:
        trio.run(_start_race, Machine(db=Path(tmp) / "events.db"), f"10.78.0.0/{prefix}",
                 starts, connects)


async def _start_race(machine: Machine, subnet: str, starts: int, connects: int) -> None:
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        engine = rig.engine
        nid = await engine.create_network("race", USER, subnet=subnet)
        starters, joiners = [], []
        for i in range(starts + connects):
            mode = "race" if i < starts else "bridge"
            cid, _ = await engine.create_container(
                name=f"c{i}", config=ContainerConfig(image="busybox", image_id="",
                                                     cmd=("sh",), network_mode=mode),
                env=[], actor=USER)
            (starters if i < starts else joiners).append(cid)
        outcomes: dict[str, object] = {}

        async def start(cid: str) -> None:
            try:
                await engine.start(cid, USER)
                outcomes[cid] = "started"
            except ShipslogError as exc:  # the pool ran out
                outcomes[cid] = exc

        async def connect(i: int, cid: str) -> None:
            try:
                await engine.decide_and_append(
                    lambda s: decide_connect(s, nid, cid, op_id=f"join{i}"), USER)
                outcomes[cid] = "connected"
            except Conflict as exc:
                outcomes[cid] = exc

        async with trio.open_nursery() as nursery:
            for cid in starters:
                nursery.start_soon(start, cid)
            for i, cid in enumerate(joiners):
                nursery.start_soon(connect, i, cid)
        allocated = [e.event for e in rig.store.read(stream="network-" + nid)
                     if type(e.event).__name__ == "NetworkAddressAllocated"]
        owners: dict[str, str] = {}
        for ev in allocated:  # nothing is released in this run: every address once
            assert ev.address not in owners, (ev.address, owners[ev.address], ev.container_id)
            owners[ev.address] = ev.container_id
        net = rig.store.state.networks[nid]
        assert dict(net.allocations) == owners
        started = [cid for cid in starters if outcomes[cid] == "started"]
        assert started and all(cid in net.endpoints for cid in started), outcomes
        free = len(usable(NetworkView(id=nid, name="race", subnet=net.subnet,
                                      gateway=net.gateway)))
        assert len(owners) == min(free, starts + connects), (owners, outcomes)
        assert len(outcomes) == starts + connects
        assert fold(rig.store.read()).networks == rig.store.state.networks
