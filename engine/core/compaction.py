"""Which streams a compaction may move out of the live log: the pure selection.

I/O: none. `engine/shell/compaction.py` reads the candidate streams inside the store's compaction
transaction and hands them here; `events/store.py` archives what this returns.

A stream is archivable only as a whole, only when every one of its events was recorded
before `before_ns`, and only when folding the log without it gives the same engine state
(tests/property/test_compaction_properties.py holds the fold to that):

- `container-<id>`: the container was removed (`ContainerRemoved` on its stream) and is not
  in the state, and every event on the stream only touches that container or its exec
  sessions. Names, volumes and network addresses live on their own streams (`name-…`,
  `volume-…`, `network-…`), which stay: a name's stream version guards the next claim.
- `network-<id>`: the network was removed and is not in the state, every event is about that
  network, and every container those events mention is gone from the state (a connect's
  effect on a container view ends when the container is removed). Network names are unique
  while a network exists (engine/core/networks.py), so `network_names` is unaffected.
- `op-<id>`: a finished operation (not pending, not `needs_cleanup`) whose target is one of
  the streams above, with only operation events on it. An object goes only together with
  every operation on it that was read: one left behind could never be found again.

Volumes and images are never archived: their stream names are reused when an object with
the same name or digest comes back, and the stream version must then continue.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from events import vocabulary as v
from events.envelope import Envelope
from projections.state import EngineState

__all__ = ["REMOVAL_TYPES", "op_streams_of", "select_archivable"]

# The events that end an archivable object: where a compaction starts looking.
REMOVAL_TYPES = ("ContainerRemoved", "NetworkRemoved")

_CONTAINER_LOCAL: frozenset[type] = frozenset({
    v.ContainerCreateRequested, v.ContainerCreated, v.ContainerStartRequested,
    v.ContainerStarted, v.ContainerStopRequested, v.ContainerSignalled, v.ContainerExited,
    v.ContainerStartFailed, v.ContainerRestartedByPolicy, v.ContainerPaused,
    v.ContainerUnpaused, v.ContainerRenamed, v.ContainerRemoveRequested, v.ContainerRemoved,
    v.ContainerLost, v.ExecCreated, v.ExecStarted, v.ExecExited, v.NetworkPortPublished,
    v.NetworkPortUnpublished, v.NetworkConnectRecorded, v.NetworkConnectWithdrawn,
})
_CONTAINER_LOCAL |= {v.ContainerLinkRemoved}  # issue 13: `docker rm --link`
_EXEC_EVENTS: frozenset[type] = frozenset({v.ExecCreated, v.ExecStarted, v.ExecExited})
_NETWORK_LOCAL: frozenset[type] = frozenset({
    v.NetworkCreated, v.NetworkAddressAllocated, v.NetworkAddressReleased, v.NetworkConnected,
    v.NetworkDisconnected, v.NetworkRemoved,
})
_OPERATION: frozenset[type] = frozenset({
    v.OperationRequested, v.OperationStepDone, v.OperationFailed, v.OperationCompleted,
    v.OperationCompensated,
})


def select_archivable(
    streams: Mapping[str, Sequence[Envelope]], state: EngineState, before_ns: int
) -> frozenset[str]:
    """The streams of `streams` (each mapped to ALL its events, in seq order) that may be
    archived, given the current `state` (the fold of the whole live log)."""
    objects = {
        name for name, envelopes in streams.items()
        if _old(envelopes, before_ns) and (
            _removed_container(name, envelopes, state) or _removed_network(name, envelopes,
                                                                           state))
    }
    while True:
        ops = {
            name for name, envelopes in streams.items()
            if _old(envelopes, before_ns) and _finished_op(name, envelopes, state, objects)
        }
        # An object goes only with every operation on it: its operation streams are found
        # through its own events, so one left behind (too young at this cut) could never be
        # found again once the object's stream is archived (compacting twice must equal
        # compacting once at the later time).
        staying = {_target(envs) for name, envs in streams.items()
                   if name.startswith("op-") and name not in ops} & objects
        if not staying:
            return frozenset(objects | ops)
        objects -= staying


def _target(envelopes: Sequence[Envelope]) -> str | None:
    """The stream an operation's stream is about (its OperationRequested's target)."""
    for env in envelopes:
        if isinstance(env.event, v.OperationRequested):
            return env.event.target
    return None


def op_streams_of(envelopes: Iterable[Envelope]) -> set[str]:
    """The operation streams that may belong to these events (by their envelopes' op_id)."""
    return {"op-" + env.op_id for env in envelopes}


def _old(envelopes: Sequence[Envelope], before_ns: int) -> bool:
    return bool(envelopes) and all(env.recorded_at < before_ns for env in envelopes)


def _removed_container(name: str, envelopes: Sequence[Envelope], state: EngineState) -> bool:
    kind, _, cid = name.partition("-")
    if kind != "container" or cid in state.containers:
        return False
    removed = False
    execs: set[str] = set()
    for env in envelopes:
        event: Any = env.event
        if type(event) not in _CONTAINER_LOCAL or event.container_id != cid:
            return False
        if isinstance(event, v.ExecCreated):
            execs.add(event.exec_id)
        elif type(event) in _EXEC_EVENTS and event.exec_id not in execs:
            return False  # an exec session this stream did not create
        removed = removed or isinstance(event, v.ContainerRemoved)
    return removed and not any(x in state.execs for x in execs)


def _removed_network(name: str, envelopes: Sequence[Envelope], state: EngineState) -> bool:
    kind, _, nid = name.partition("-")
    if kind != "network" or nid in state.networks:
        return False
    removed = False
    for env in envelopes:
        event: Any = env.event
        if type(event) not in _NETWORK_LOCAL or event.network_id != nid:
            return False
        cid = getattr(event, "container_id", None)
        if cid is not None and cid in state.containers:
            return False  # its effect on a live container's view would be lost
        removed = removed or isinstance(event, v.NetworkRemoved)
    return removed


def _finished_op(name: str, envelopes: Sequence[Envelope], state: EngineState,
                 objects: set[str]) -> bool:
    kind, _, op_id = name.partition("-")
    if kind != "op" or op_id in state.operations:
        return False
    target = False
    for env in envelopes:
        event: Any = env.event
        if type(event) not in _OPERATION or event.op_id != op_id:
            return False
        if isinstance(event, v.OperationRequested):
            target = event.target in objects
    return target
