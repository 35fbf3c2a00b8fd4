"""Properties of projection snapshots over valid engine histories (and noise): a snapshot
decodes to the state it was taken of; folding the tail onto the snapshot at any seq k equals
folding everything (`fold_from(snapshot@k, tail) == fold(all)`); and the store's snapshot
paths (load on open, time travel, the rows-free rebuild read) agree with the reference fold
from zero at every seq, whatever the snapshot cadence."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.envelope import Pending
from events.store import EventStore
from projections.engine import EngineProjection
from projections.fold import fold
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

_SETTINGS = settings(max_examples=50, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_HISTORIES = st.one_of(valid_histories(), noisy_histories())


@given(items=_HISTORIES, cut=st.integers(0, 10**6))
@_SETTINGS
def test_fold_from_a_snapshot_equals_fold_of_all(items: list[Item], cut: int) -> None:
    events = flat(envelopes(items, [3] * 100))
    k = cut % (len(events) + 1)
    snapshot = encode_state(fold(events[:k]))
    restored = decode_state(snapshot)
    assert restored == fold(events[:k])
    assert fold(events[k:], restored) == fold(events)


@given(items=_HISTORIES)
@_SETTINGS
def test_snapshot_round_trips_the_empty_and_any_state(items: list[Item]) -> None:
    assert decode_state(encode_state(EngineState())) == EngineState()
    state = fold(flat(envelopes(items)))
    assert decode_state(encode_state(state)) == state


def _append_all(store: EventStore[EngineState], items: list[Item], sizes: list[int],
                snap_at: set[int]) -> dict[int, EngineState]:
    """Append `items` in batches; snapshot after the batches numbered in `snap_at`; return
    the live state after each batch by the seq of its last event."""
    live = {0: EngineState()}
    for n, chunk in enumerate(chunked(items, sizes)):
        store.append([Pending(stream=s, event=e) for s, e in chunk],
                     actor=ACTORS[n % len(ACTORS)], op_id=f"b{n}", now_ns=1_000 * (n + 1))
        live[store.head()] = store.state
        if n in snap_at:
            store.snapshot()
    return live


@pytest.mark.slow
@given(items=valid_histories(max_steps=30), sizes=st.lists(st.integers(1, 5), max_size=30),
       snap_at=st.sets(st.integers(0, 30), max_size=6), every=st.integers(1, 12))
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_store_snapshots_agree_with_the_reference_fold(items: list[Item], sizes: list[int],
                                                       snap_at: set[int], every: int) -> None:
    projection = EngineProjection()
    with tempfile.TemporaryDirectory(prefix="slg-snap-") as tmp:
        db = Path(tmp) / "events.db"
        store: EventStore[EngineState] = EventStore.open(db, projection=projection)
        live = _append_all(store, items, sizes, snap_at)
        head = store.head()
        store.close()
        # Reopen with a small cadence: the load writes snapshots every `every` events...
        store = EventStore.open(db, projection=projection)
        assert store.state == live[head]
        store.snapshot_every = every
        store.rebuild()  # ...and so does the reference rebuild, which replaces them all.
        assert store.state == live[head]
        assert store.snapshot_seqs() == list(range(every, head + 1, every))
        store.close()
        store = EventStore.open(db, projection=projection)
        assert store.state == live[head] == fold(store.read())
        for seq in range(head + 1):
            expected = fold(store.read(until_seq=seq))
            assert store.fold_to(projection, until_seq=seq) == expected, seq
            assert store.fold_to(projection, until_seq=seq, from_zero=True) == expected, seq
            assert seq not in live or live[seq] == expected, seq
        store.close()


@given(items=_HISTORIES)
@_SETTINGS
def test_snapshots_stay_plain_zlib_streams(items: list[Item]) -> None:
    """Snapshots are deflated by ISA-L when it is there (6x faster) but stay the format
    older builds wrote and read: a zlib stream of the msgpack state. A snapshot deflated by
    the stdlib's zlib (as before) decodes, and a new one inflates with the stdlib's zlib."""
    import dataclasses
    import zlib

    from projections.snapshot import encode_maps

    state = fold(flat(envelopes(items, [3] * 100)))
    raw = encode_maps(state.seq, {f.name: getattr(state, f.name)
                                  for f in dataclasses.fields(state) if f.name != "seq"})
    assert decode_state(zlib.compress(raw, 1)) == state
    assert zlib.decompress(encode_state(state)) == raw
