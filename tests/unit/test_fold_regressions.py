"""Regressions of the fold found on the real daemon."""

from __future__ import annotations

from events import vocabulary as v
from events.envelope import SYSTEM_ACTOR, Envelope
from projections.fold import fold

NET = "n" * 64
CID = "c" * 64


def env(seq: int, version: int, event: v.BaseEvent) -> Envelope:
    return Envelope(seq=seq, stream="network-" + NET, stream_version=version, schema_version=1,
                    recorded_at=seq, actor=SYSTEM_ACTOR, op_id="op", event=event)


def test_no_op_network_events_still_advance_the_stream_version() -> None:
    # IPAM appends with the network's stream version as expected version: a release or a
    # disconnect that changes nothing must still move it, or every later allocation
    # conflicts forever ("network bridge kept changing while an address was chosen").
    state = fold([
        env(1, 1, v.NetworkCreated(network_id=NET, name="bridge", subnet="10.0.0.0/24",
                                   gateway="10.0.0.1", bridge="slg-x")),
        env(2, 2, v.NetworkAddressReleased(network_id=NET, container_id=CID,
                                           address="10.0.0.9")),
        env(3, 3, v.NetworkDisconnected(network_id=NET, container_id=CID)),
    ])
    assert state.networks[NET].stream_version == 3
