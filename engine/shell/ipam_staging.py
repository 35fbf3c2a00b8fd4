"""Address allocations of concurrent starts on one network, chained so they commit together.

I/O: none of its own; it appends `NetworkAddressAllocated` through the journal.

Why (issue 14): Compose starts a project's containers at once, and each needs an address on
the project network before its veth exists. Appended one at a time, each start waited for the
commit of every allocation before its own. Here an allocation is decided against the committed
state plus the allocations already submitted and not yet answered (the chain), and expects the
stream version the chain will leave behind; so a burst of starts lands in one group commit of
the writer (`events/writer.py`), each batch with its own op id and actor.

Why it stays safe:
- Two members of a chain never pick one address: each excludes the others' addresses.
- A member is decided only while every append in flight on the network's stream is a member
  (`Journal.in_flight`); an append of anyone else (a `NetworkConnected`, a `network connect
  --ip`) is waited for first. The writer takes submissions in order, so nothing can land
  between two members: each expected version is exactly what the one before leaves.
- When a member is refused (a conflict, a full disk), the members after it expect a version
  that never comes: they are refused too (`ConcurrencyConflict`), the chain is marked broken,
  no member joins it until all are answered, and the refused ones choose again from the
  committed state. Nothing is recorded that was decided on a state that did not happen.
- The allocation is still appended before any kernel object uses the address.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec

from engine.core.ipam import next_free_address
from engine.shell.journal import ConcurrencyConflict, Journal
from events import vocabulary as v
from events.envelope import Pending, stream_of
from projections.state import NetworkView

Append = Callable[[list[Pending]], Awaitable[None]]


@dataclass
class Chain:
    """Allocations on one network submitted and not yet answered."""

    next_version: int  # the stream version the last member leaves behind
    addresses: dict[str, str] = field(default_factory=dict)  # address → container
    members: int = 0
    broken: bool = False


class AddressStager:
    """One chain per network; see the module docstring."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.chains: dict[str, Chain] = {}

    def _joinable(self, network_id: str) -> Chain | None:
        """The chain a new member may join now (new when none is open), or None: someone
        else's append is in flight on the stream, or the open chain broke."""
        chain = self.chains.get(network_id)
        members = chain.members if chain is not None else 0
        if self.journal.in_flight(stream_of("network", network_id)) != members:
            return None
        if chain is None:
            net = self.journal.state.networks[network_id]
            chain = self.chains[network_id] = Chain(next_version=net.stream_version)
        return None if chain.broken else chain

    async def allocate(self, network_id: str, container_id: str, append: Append, *,
                       requested: str = "", family: int = 4) -> str | None:
        """Append one allocation for `container_id`; its address, or None when the chain
        it joined was refused (the caller chooses again)."""
        chain = await self.journal.wait_for(lambda _s: self._joinable(network_id))
        # From here to the submit inside `append` there is no checkpoint: no other task can
        # submit between this decision and its append.
        net = self.journal.state.networks[network_id]
        staged = msgspec.structs.replace(net, allocations={**net.allocations,
                                                           **chain.addresses})
        address = next_free_address(staged, requested=requested, family=family)
        expected = chain.next_version
        chain.next_version += 1
        chain.addresses[address] = container_id
        chain.members += 1
        try:
            await append([Pending(
                stream=stream_of("network", network_id), expected_version=expected,
                event=v.NetworkAddressAllocated(network_id=network_id,
                                                container_id=container_id, address=address))])
        except ConcurrencyConflict:
            chain.broken = True
            return None
        except BaseException:
            chain.broken = True
            raise
        finally:
            chain.members -= 1
            del chain.addresses[address]
            if chain.members == 0 and self.chains.get(network_id) is chain:
                del self.chains[network_id]  # the next decision reads the committed state
        return address


def taken_by(net: NetworkView, container_id: str, family: int) -> str:
    """The address of `family` the container already holds on `net` ('' when none)."""
    return next((a for a, owner in net.allocations.items()
                 if owner == container_id and (":" in a) == (family == 6)), "")
