"""Properties: every event type round-trips the codec; the chain verifies after any appends."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.codec import decode_event, encode_event
from events.envelope import Actor, Pending
from events.store import ConcurrencyConflict, EventStore, RowChange
from events.vocabulary import EVENT_TYPES, BaseEvent, VolumeRemoved
from tests.property.msgspec_strategies import StructStrategies

# JSON text is UTF-8 (no lone surrogates); msgspec ints reach 2**64 - 1 unsigned.
_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
_STRATEGIES = StructStrategies(text_for=lambda name: _TEXT,
                               ints=st.integers(min_value=-(2**63), max_value=2**64 - 1),
                               max_items=3, defaults=True)


def event_strategy(cls: type[BaseEvent]) -> st.SearchStrategy[Any]:
    return _STRATEGIES.for_type(cls)


ANY_EVENT = st.one_of(*[event_strategy(cls) for cls in EVENT_TYPES.values()])


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
@given(data=st.data())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_codec_round_trips_every_event_type(name: str, data: st.DataObject) -> None:
    cls = EVENT_TYPES[name]
    event = data.draw(event_strategy(cls))
    payload = encode_event(event)
    assert decode_event(name, cls.schema_version, payload) == event
    assert encode_event(decode_event(name, cls.schema_version, payload)) == payload


_STREAMS = st.sampled_from(["container-a", "container-b", "image-x", "volume-v"])
_BATCH = st.lists(
    st.tuples(_STREAMS, ANY_EVENT, st.sampled_from([None, None, 0, 1, 2, 3])),
    min_size=0,
    max_size=4,
)


@given(batches=st.lists(_BATCH, max_size=8), tamper=st.integers(min_value=0))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_chain_verifies_after_random_appends(batches: list[Any], tamper: int) -> None:
    store: EventStore[Any] = EventStore.open(":memory:")
    actor = Actor(uid=1000, gid=1000, pid=42)
    expected_seq = 0
    for i, batch in enumerate(batches):
        pending = [Pending(stream=s, event=e, expected_version=v) for s, e, v in batch]
        try:
            envelopes = store.append(pending, actor=actor, op_id=f"op{i}", now_ns=i)
        except ConcurrencyConflict:
            assert store.head() == expected_seq  # nothing of a failed batch is recorded
            continue
        assert [e.seq for e in envelopes] == list(
            range(expected_seq + 1, expected_seq + 1 + len(batch))
        )
        expected_seq += len(batch)
    assert store.head() == expected_seq
    result = store.verify()
    assert result.ok and result.checked == expected_seq
    assert [e.seq for e in store.read()] == list(range(1, expected_seq + 1))
    if expected_seq:
        # Tamper with one payload (triggers dropped, as an attacker with the file would).
        seq = tamper % expected_seq + 1
        conn = store._w.conn
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute("UPDATE events SET payload = payload || ' ' WHERE seq = ?", (seq,))
        bad = store.verify()
        assert not bad.ok and bad.first_bad_seq == seq and bad.checked == seq - 1
    store.close()


class _Census:
    """A tiny inline projection: the last event type per stream, and per-type counts."""

    name = "census"
    tables = ("last", "counts")

    def initial(self) -> tuple[tuple[str, str], ...]:
        return ()

    def fold(self, state: Any, envelopes: Any) -> tuple[Any, list[RowChange]]:
        last = dict(state)
        changes = []
        for env in envelopes:
            last[env.stream] = env.type
            changes.append(RowChange("last", env.stream, env.type.encode()))
            if env.type.endswith("Removed"):
                changes.append(RowChange("counts", env.stream, None))
            else:
                changes.append(RowChange("counts", env.stream, str(env.stream_version).encode()))
        return tuple(sorted(last.items())), changes


@given(batches=st.lists(_BATCH, max_size=10))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_rebuild_equals_incremental(batches: list[Any]) -> None:
    store: EventStore[Any] = EventStore.open(":memory:", projection=_Census())
    actor = Actor(uid=0, gid=0, pid=1)
    for i, batch in enumerate(batches):
        pending = [Pending(stream=s, event=e, expected_version=v) for s, e, v in batch]
        try:
            store.append(pending, actor=actor, op_id=f"op{i}", now_ns=i)
        except ConcurrencyConflict:
            pass
    tables = {t: list(store.read_rows(t)) for t in _Census.tables}
    state = store.state
    store.rebuild()
    assert {t: list(store.read_rows(t)) for t in _Census.tables} == tables
    assert store.state == state == store.fold_to(_Census())
    store.close()


class _PickyCensus(_Census):
    """_Census that refuses any batch holding a VolumeRemoved (a projection bug stand-in)."""

    def fold(self, state: Any, envelopes: Any) -> tuple[Any, list[RowChange]]:
        if any(env.type == "VolumeRemoved" for env in envelopes):
            raise ValueError("this projection refuses VolumeRemoved")
        return super().fold(state, envelopes)


_PICKY_BATCH = st.lists(
    st.tuples(
        _STREAMS,
        st.one_of(ANY_EVENT, st.builds(VolumeRemoved, name=st.just("v"))),
        st.sampled_from([None, None, 0, 1, 2, 3]),
    ),
    min_size=0,
    max_size=3,
)


@given(batches=st.lists(_PICKY_BATCH, max_size=10))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_group_commit_equals_its_batches_appended_one_by_one(batches: list[Any]) -> None:
    # append_group folds a group in one call and, when that raises, batch by batch: either
    # way each caller must get what appending alone, in the same order, would have given it.
    grouped: EventStore[Any] = EventStore.open(":memory:", projection=_PickyCensus())
    alone: EventStore[Any] = EventStore.open(":memory:", projection=_PickyCensus())
    actor = Actor(uid=0, gid=0, pid=1)
    group = [
        EventStore.batch(
            [Pending(stream=s, event=e, expected_version=v) for s, e, v in batch],
            actor=actor, op_id=f"op{i}", now_ns=i,
        )
        for i, batch in enumerate(batches)
    ]

    def outcome(result: Any) -> Any:
        return type(result) if isinstance(result, Exception) else result

    together = [outcome(r) for r in grouped.append_group(group)]
    one_by_one = [outcome(alone.append_group([b])[0]) for b in group]
    assert together == one_by_one
    assert grouped.state == alone.state and grouped.last_hash() == alone.last_hash()
    for table in _Census.tables:
        assert list(grouped.read_rows(table)) == list(alone.read_rows(table))
    grouped.close()
    alone.close()
