"""The open fold a rebuild uses (`projections.engine.StateBuilder`, over `FoldBuilder`) is the
event-by-event fold: fed in any stretches, frozen or snapshotted at any points on the way, it
gives at each point exactly what `apply` one event at a time gives, its snapshots decode to
that state, and freezing it never disturbs the fold that goes on."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.envelope import Pending
from events.store import EventStore
from events.values import ContainerConfig
from events.vocabulary import ContainerCreateRequested
from projections.engine import EngineProjection
from projections.fold import HANDLERS, apply, fold
from projections.snapshot import decode_state, encode_state
from projections.state import EngineState
from tests.property.test_projection_properties import (
    ACTORS,
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


# --- the store's rows-free fold fetches `actor` and `op_id` only where declared -----------


def _stored(items: list[Item], projection: EngineProjection | None = None
            ) -> EventStore[EngineState]:
    store: EventStore[EngineState] = EventStore.open(":memory:", projection=projection)
    store.snapshot_every = 4  # so a rebuild folds through the open fold, snapshotting
    for b, batch in enumerate(envelopes(items, [3])):
        store.append([Pending(stream=e.stream, event=e.event) for e in batch],
                     actor=ACTORS[b % len(ACTORS)], op_id=f"op-{b}", now_ns=1_000 * (b + 1))
    return store


@given(items=valid_histories())  # (noisy ones have streams the store refuses)
@_SETTINGS
def test_store_fold_without_who_columns_equals_the_full_fold(items: list[Item]) -> None:
    """`fold_who_types` lists every event type whose handler reads `actor` or `op_id`: the
    store's folds (time travel, and a rebuild's open fold), which get None for them on
    every other type, equal folding the full envelopes (`read`) one by one."""
    projection = EngineProjection()
    assert set(projection.fold_who_types) <= {t.__name__ for t in HANDLERS}
    store = _stored(items, projection)
    try:
        expected = EngineState()
        for env in store.read():
            expected = apply(expected, env)
        assert store.fold_to(projection, from_zero=True) == expected
        store.rebuild()
        assert store.state == expected
        assert store.fold_to(projection, until_seq=store.head() - 1) == fold(
            store.read(until_seq=store.head() - 1))
    finally:
        store.close()


def test_a_type_missing_from_fold_who_types_is_caught() -> None:
    """The property above can fail: without `ContainerCreateRequested` in the set, its
    handler reads an actor the fold was not given."""
    cid = "ab" * 32
    config = ContainerConfig(image="busybox", image_id="sha256:" + "cd" * 32)
    store = _stored([("container-" + cid,
                      ContainerCreateRequested(container_id=cid, name="web", config=config))])
    try:
        broken = EngineProjection()
        broken.fold_who_types = tuple(  # type: ignore[misc]
            t for t in broken.fold_who_types if t != "ContainerCreateRequested")
        with pytest.raises(AttributeError):
            store.fold_to(broken, from_zero=True)
        assert store.fold_to(EngineProjection(), from_zero=True) == fold(store.read())
    finally:
        store.close()
