"""Properties of time travel over valid engine histories (the model in
test_projection_properties.py): the state folded up to any seq, or any moment, equals the
state the live (incremental, inline) projection held right after that event's batch was
appended; `diff` is empty exactly between equal states and its added/removed sets are the
key differences."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.shell.logread import seq_of, state_at
from events.envelope import Actor, Pending
from events.store import EventStore
from projections.engine import EngineProjection
from projections.fold import fold
from projections.timetravel import Point, diff
from projections.timetravel import state_at as fold_at
from tests.property.test_projection_properties import chunked, envelopes, flat, valid_histories

ACTOR = Actor(uid=1000, gid=1000, pid=7)
T0 = 1_700_000_000_000_000_000


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_histories(max_steps=30), st.lists(st.integers(1, 4), max_size=30))
def test_time_travel_equals_the_live_projection_at_every_batch(items, sizes) -> None:  # type: ignore[no-untyped-def]
    store: EventStore = EventStore.open(":memory:", projection=EngineProjection())
    live: list[tuple[int, int, object]] = []
    for n, chunk in enumerate(chunked(items, sizes)):
        when = T0 + n * 1000
        store.append([Pending(stream=s, event=e) for s, e in chunk], actor=ACTOR,
                     op_id=f"op{n}", now_ns=when)
        live.append((store.head(), when, store.state))
    for seq, when, state in live:
        assert state_at(store, seq) == state
        assert seq_of(store, Point(time_ns=when + 999)) == seq
        assert fold_at(store.read(0), Point(time_ns=when)) == state
        assert fold_at(store.read(0), Point(seq=seq)) == state
    store.close()


@settings(max_examples=60, deadline=None)
@given(valid_histories(max_steps=30), st.integers(0, 200), st.integers(0, 200))
def test_diff_is_empty_between_equal_states_and_names_the_key_differences(items, a, b) -> None:  # type: ignore[no-untyped-def]
    envs = flat(envelopes(items))
    a, b = a % (len(envs) + 1), b % (len(envs) + 1)
    sa, sb = fold(envs[:a]), fold(envs[:b])
    changes = diff(sa, sb)
    for kind, attr in (("container", "containers"), ("image", "images"),
                       ("volume", "volumes"), ("network", "networks")):
        ka, kb = set(getattr(sa, attr).keys()), set(getattr(sb, attr).keys())
        mine = [c for c in changes if c.kind == kind]
        assert {c.id for c in mine if c.change == "added"} == kb - ka
        assert {c.id for c in mine if c.change == "removed"} == ka - kb
        for c in mine:
            if c.change == "changed":
                assert getattr(sa, attr)[c.id] != getattr(sb, attr)[c.id] and c.fields
    assert diff(sb, sb) == []
