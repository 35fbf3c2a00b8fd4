"""`network connect`/`disconnect` of a container that is not running: decided on the fold,
recorded on the container's stream, and what the container joins at its next start."""

from __future__ import annotations

import pytest

from engine.core.errors import Conflict, InvalidArgument
from engine.core.networks import (
    decide_connect_at_start,
    decide_disconnect_at_start,
    start_networks,
)
from events import vocabulary as v
from events.envelope import SYSTEM_ACTOR, Envelope
from events.values import ContainerConfig
from projections.fold import fold
from projections.state import EngineState

CID = "c" * 64
FRONT, BACK = "f" * 64, "b" * 64


def _env(seq: int, stream: str, version: int, event: v.BaseEvent) -> Envelope:
    return Envelope(seq=seq, stream=stream, stream_version=version, schema_version=1,
                    recorded_at=seq, actor=SYSTEM_ACTOR, op_id="op", event=event)


def _state(mode: str = "front") -> EngineState:
    config = ContainerConfig(image="busybox", image_id="sha256:" + "a" * 64,
                             network_mode=mode)
    return fold([
        _env(1, "network-" + FRONT, 1, v.NetworkCreated(network_id=FRONT, name="front",
                                                         subnet="10.9.1.0/24")),
        _env(2, "network-" + BACK, 1, v.NetworkCreated(network_id=BACK, name="back",
                                                        subnet="10.9.2.0/24")),
        _env(3, "container-" + CID, 1, v.ContainerCreateRequested(container_id=CID,
                                                                   name="svc", config=config)),
        _env(4, "container-" + CID, 2, v.ContainerCreated(container_id=CID)),
    ])


def _apply(state: EngineState, decision) -> EngineState:  # type: ignore[no-untyped-def]
    envs = [_env(state.seq + 1 + i, p.stream, p.expected_version + 1, p.event)
            for i, p in enumerate(decision.pending)]
    return fold(envs, state)


def test_a_recorded_connect_joins_after_the_own_network() -> None:
    s = _state()
    d = decide_connect_at_start(s, "back", CID, op_id="o1", aliases=("db",))
    assert [type(p.event) for p in d.pending] == [v.NetworkConnectRecorded]
    assert d.pending[0].expected_version == 2  # a racing start or rm re-decides
    s = _apply(s, d)
    assert list(start_networks(s, s.containers[CID])) == [FRONT, BACK]
    assert s.containers[CID].joins[BACK].aliases == ("db",)
    # Docker leaves a network the container already has as it is.
    assert decide_connect_at_start(s, "back", CID, op_id="o2").not_modified
    assert decide_connect_at_start(s, "front", CID, op_id="o3").not_modified


def test_disconnect_before_start_withdraws_a_connect_or_the_own_network() -> None:
    s = _apply(_state(), decide_connect_at_start(_state(), "back", CID, op_id="o1"))
    s = _apply(s, decide_disconnect_at_start(s, "back", CID, op_id="o2"))
    assert list(start_networks(s, s.containers[CID])) == [FRONT]
    s = _apply(s, decide_disconnect_at_start(s, "front", CID, op_id="o3"))
    assert start_networks(s, s.containers[CID]) == {}
    with pytest.raises(Conflict, match="is not connected to the network front"):
        decide_disconnect_at_start(s, "front", CID, op_id="o4")


def test_refusals() -> None:
    with pytest.raises(InvalidArgument, match="sharing network namespace with another"):
        decide_connect_at_start(_state("host"), "back", CID, op_id="o1")
    with pytest.raises(InvalidArgument, match="in private \\(none\\) mode"):
        decide_connect_at_start(_state("none"), "back", CID, op_id="o1")
    with pytest.raises(InvalidArgument, match="no configured subnet"):
        decide_connect_at_start(_state(), "back", CID, op_id="o1", ip="10.9.3.4")
    with pytest.raises(InvalidArgument, match="invalid IPv4 address"):
        decide_connect_at_start(_state(), "back", CID, op_id="o1", ip="10.9.2")


def test_history_says_what_the_container_will_join() -> None:
    from projections.history import describe

    ev = v.NetworkConnectRecorded(network_id=BACK, container_id=CID, aliases=("db",),
                                  ipv4_address="10.9.2.9")
    assert describe(_env(9, "container-" + CID, 3, ev)) == (
        f"will join network {BACK[:12]} as db at 10.9.2.9 at start (connect recorded)")
    ev2 = v.NetworkConnectWithdrawn(network_id=BACK, container_id=CID)
    assert describe(_env(10, "container-" + CID, 4, ev2)) == (
        f"will not join network {BACK[:12]} at start (disconnect recorded)")
