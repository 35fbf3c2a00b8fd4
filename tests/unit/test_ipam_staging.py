"""Concurrent starts' address allocations on one network (issue 14): chained into one group
commit, never one address twice, never a decision on a state that did not happen.

I/O: none. The journal is the real one; its writer is a fake that takes submissions in order,
holds their commit until the test releases it, then checks each expected stream version the
way `EventStore.append_group` does.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import immutables
import msgspec
import pytest
import trio
import trio.testing

from engine.shell.journal import ConcurrencyConflict, Journal
from engine.shell.network import NetworkOps
from events import vocabulary as v
from events.envelope import SYSTEM_ACTOR, Pending, stream_of
from events.store import StoreFull
from projections.state import EngineState, NetworkView

NET = NetworkView(id="n1", name="proj", subnet="10.9.0.0/24", gateway="10.9.0.1",
                  stream_version=3)
STREAM = stream_of("network", NET.id)


class GatedWriter:
    """Submissions are queued at once, in order; nothing commits until `release()`, then
    each commits in submission order (one group, as the real writer thread does)."""

    def __init__(self, store: SimpleNamespace) -> None:
        self.store = store
        self.submitted: list[Pending] = []
        self.queue: list[tuple[list[Pending], trio.Event, list[BaseException]]] = []
        self.released = False
        self.refuse = ""  # a container whose allocation the store refuses (full disk)

    async def append(self, pending: list[Pending], **_: Any) -> list[Any]:
        self.submitted.extend(pending)  # before any checkpoint: the real writer's order
        done, error = trio.Event(), []
        self.queue.append((pending, done, error))
        if self.released:
            self._commit()
        await done.wait()
        if error:
            raise error[0]
        return []

    def release(self) -> None:
        self.released = True
        self._commit()

    def _commit(self) -> None:
        for pending, done, error in self.queue:
            try:
                self._apply(pending)
            except (ConcurrencyConflict, StoreFull) as exc:
                error.append(exc)
            done.set()
        self.queue.clear()

    def _apply(self, pending: list[Pending]) -> None:
        net = self.store.state.networks[NET.id]
        for p in pending:
            if p.stream != STREAM:
                continue
            if p.expected_version is not None and p.expected_version != net.stream_version:
                raise ConcurrencyConflict(STREAM, p.expected_version, net.stream_version)
            if getattr(p.event, "container_id", "") == self.refuse:
                raise StoreFull("disk full", "")
            allocs = dict(net.allocations)
            if isinstance(p.event, v.NetworkAddressAllocated):
                allocs[p.event.address] = p.event.container_id
            net = _bump(net, allocs)
        self.store.state = dataclasses.replace(
            self.store.state, networks=self.store.state.networks.set(NET.id, net))


def _bump(net: NetworkView, allocs: dict[str, str]) -> NetworkView:
    return msgspec.structs.replace(net, allocations=allocs,
                                   stream_version=net.stream_version + 1)


def make_ops() -> tuple[NetworkOps, GatedWriter, Journal]:
    store = SimpleNamespace(state=EngineState(networks=immutables.Map({NET.id: NET})))
    writer = GatedWriter(store)
    journal = Journal(store, writer)
    kernel = SimpleNamespace(nft=None, hostfw=None, hostfw6=None)
    return NetworkOps(journal, kernel), writer, journal  # type: ignore[arg-type]


def ctr(cid: str) -> Any:
    return SimpleNamespace(id=cid)


def allocations(writer: GatedWriter) -> list[tuple[int | None, str, str]]:
    return [(p.expected_version, p.event.container_id, p.event.address)
            for p in writer.submitted if isinstance(p.event, v.NetworkAddressAllocated)]


async def test_concurrent_allocations_are_submitted_together_on_distinct_addresses() -> None:
    """Before: each waited for the commit of the one before (one commit per start)."""
    ops, writer, journal = make_ops()
    got: dict[str, str] = {}

    async def one(cid: str) -> None:
        got[cid] = await ops._allocate(ctr(cid), NET, f"op-{cid}", SYSTEM_ACTOR)

    async with trio.open_nursery() as nursery:
        for cid in ("a", "b", "c"):
            nursery.start_soon(one, cid)
        await trio.testing.wait_all_tasks_blocked()
        # all three are in the writer's queue before any commit (one group commit), each
        # expecting the version the one before leaves, on its own address
        queued = allocations(writer)
        assert [version for version, _, _ in queued] == [3, 4, 5]
        assert sorted(cid for _, cid, _ in queued) == ["a", "b", "c"]
        assert [addr for _, _, addr in queued] == ["10.9.0.2", "10.9.0.3", "10.9.0.4"]
        assert journal.in_flight(STREAM) == 3
        writer.release()
    assert got == {cid: addr for _, cid, addr in queued}
    assert journal.state.networks[NET.id].allocations == {addr: cid for _, cid, addr in queued}
    assert journal.in_flight(STREAM) == 0 and not ops._stager.chains


async def test_an_allocation_waits_for_anothers_append_on_the_network_stream() -> None:
    """A `NetworkConnected` (anyone's append) in flight on the stream: an allocation is not
    chained behind it, as its expected version would be a guess."""
    ops, writer, journal = make_ops()
    got: list[str] = []

    async def foreign() -> None:
        await journal.append([Pending(stream=STREAM, event=v.NetworkConnected(
            network_id=NET.id, container_id="x", ip="10.9.0.9", mac="", endpoint_id="v"))],
            actor=SYSTEM_ACTOR, op_id="op-x")

    async def alloc() -> None:
        got.append(await ops._allocate(ctr("a"), NET, "op-a", SYSTEM_ACTOR))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(foreign)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(alloc)
        await trio.testing.wait_all_tasks_blocked()
        assert allocations(writer) == []  # waits for the foreign append's answer
        writer.release()
    assert allocations(writer) == [(4, "a", "10.9.0.2")] and got == ["10.9.0.2"]


async def test_a_refused_member_refuses_the_rest_and_they_choose_again() -> None:
    """The first of a chain is refused (a full disk): the members after it expect a version
    that never comes, so they are refused too and choose again from the committed state;
    the refused start sees the store's error."""
    ops, writer, journal = make_ops()
    got: dict[str, str] = {}
    errors: list[str] = []

    async def one(cid: str) -> None:
        try:
            got[cid] = await ops._allocate(ctr(cid), NET, f"op-{cid}", SYSTEM_ACTOR)
        except StoreFull as exc:
            errors.append(f"{cid}: {exc.message}")

    async with trio.open_nursery() as nursery:
        for cid in ("a", "b", "c"):
            nursery.start_soon(one, cid)
        await trio.testing.wait_all_tasks_blocked()
        first = allocations(writer)[0][1]
        writer.refuse = first
        writer.release()
    others = sorted(set("abc") - {first})
    assert errors == [f"{first}: disk full"]
    assert sorted(got) == others and sorted(got.values()) == ["10.9.0.2", "10.9.0.3"]
    assert journal.state.networks[NET.id].allocations == {a: c for c, a in got.items()}
    # the two refused by the broken chain chose again, from the committed state
    assert [ver for ver, _, _ in allocations(writer)[3:]] == [3, 4]
    assert not ops._stager.chains


@pytest.fixture(autouse=True)
def _no_failpoints() -> None:
    from engine.drivers.host import failpoints
    failpoints.reset()
