"""The open fold a rebuild uses (`projections.engine.StateBuilder`, over `FoldBuilder`) is the
event-by-event fold: fed in any stretches, frozen or snapshotted at any points on the way, it
gives at each point exactly what `apply` one event at a time gives, its snapshots decode to
that state, and freezing it never disturbs the fold that goes on."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.engine import EngineProjection
from projections.fold import apply
from projections.snapshot import decode_state, encode_state
from projections.state import EngineState
from tests.property.test_projection_properties import (
    Item,
    chunked,
    envelopes,
    flat,
    noisy_histories,
    valid_histories,
)

_SETTINGS = settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@given(items=st.one_of(valid_histories(), noisy_histories()),
       sizes=st.lists(st.integers(0, 9), max_size=30),
       looks=st.lists(st.booleans(), max_size=30),
       start=st.integers(0, 10**6))
@_SETTINGS
def test_open_fold_equals_apply_one_by_one_at_every_stretch(
        items: list[Item], sizes: list[int], looks: list[bool], start: int) -> None:
    envs = flat(envelopes(items))
    k = start % (len(envs) + 1)  # the builder may start from any state, as a load does
    initial = EngineState()
    for env in envs[:k]:
        initial = apply(initial, env)
    builder = EngineProjection().fold_builder(initial)
    expected, done = initial, k
    pending = []
    for n, stretch in enumerate(chunked(envs[k:], sizes)):
        builder.feed(iter(stretch))  # the store hands it a generator
        for env in stretch:
            expected = apply(expected, env)
        done += len(stretch)
        if n < len(looks) and looks[n]:
            finish = builder.snapshot()
            assert builder.state() == expected, done
            pending.append((finish, expected))
    assert builder.state() == expected
    assert expected.seq == (envs[-1].seq if envs else 0)
    # A snapshot's deflate runs later, on another thread: it holds the state it was taken
    # of, not the one the fold reached since, and decodes to it as `encode_state`'s does.
    for finish, state in pending:
        assert decode_state(finish()) == state == decode_state(encode_state(state))
