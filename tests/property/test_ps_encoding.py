"""`ps` (`GET /containers/json`) answers from `render.SummaryCache.encoded`, which splices
each container's STATUS into JSON encoded once per container version. Property: its bytes
are exactly the encoding of the summaries `render.summary` builds (the reference), for any
state a valid history reaches, any clock, any subset and order, across repeated calls as the
state moves on — including labels that spell out the Status field itself."""

from __future__ import annotations

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.api.docker import render
from projections.fold import fold
from projections.state import EngineState
from tests.property.test_projection_properties import Item, envelopes, flat, valid_histories

_SETTINGS = settings(max_examples=80, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_NOW = st.integers(-10**12, 4 * 10**18)


def _reference(state: EngineState, containers: list, now_ns: int) -> bytes:
    return msgspec.json.encode([render.summary(state, c, now_ns=now_ns) for c in containers])


def _with_hostile_labels(state: EngineState) -> EngineState:
    # Every container, so the same container version has the same labels in every state.
    containers = state.containers
    for cid, c in list(containers.items()):
        labels = {"Status": "A" * 16, "x": '"Status":"' + "A" * 16 + '"'}
        config = msgspec.structs.replace(c.config, labels=labels)
        containers = containers.set(cid, msgspec.structs.replace(c, config=config))
    return EngineState(**{**{f: getattr(state, f) for f in state.__dataclass_fields__},
                          "containers": containers})


@given(items=valid_histories(), cut=st.integers(0, 10**6), nows=st.lists(_NOW, min_size=1,
                                                                          max_size=3),
       picks=st.lists(st.integers(0, 50), max_size=12), hostile=st.booleans())
@_SETTINGS
def test_encoded_summaries_equal_the_reference(items: list[Item], cut: int, nows: list[int],
                                               picks: list[int], hostile: bool) -> None:
    events = flat(envelopes(items, [2] * 100))
    cache = render.SummaryCache()
    for state in (fold(events[: cut % (len(events) + 1)]), fold(events)):
        if hostile:
            state = _with_hostile_labels(state)
        newest = cache.listing(state)
        assert newest == sorted(state.containers.values(), key=lambda c: c.created_at,
                                reverse=True)
        running = cache.listing(state, show_all=False)
        assert running == [c for c in newest if c.status in ("running", "paused", "restarting")]
        some = [newest[i % len(newest)] for i in picks] if newest else []
        for now in nows:
            assert cache.encoded(state, newest, now_ns=now) == _reference(state, newest, now)
            assert cache.encoded(state, running, now_ns=now) == _reference(state, running, now)
            assert cache.encoded(state, some, now_ns=now) == _reference(state, some, now)


# Histories stamp events at 1 µs..100 µs: start near them to walk through seconds and minutes.
@given(items=valid_histories(), start=st.one_of(st.integers(-10**10, 2 * 10**11), _NOW),
       steps=st.lists(st.one_of(st.integers(0, 5 * 10**9), st.integers(0, 10**13),
                                st.integers(-10**10, 0)), min_size=1, max_size=25))
@_SETTINGS
def test_status_stays_right_as_the_clock_moves(items: list[Item], start: int,
                                               steps: list[int]) -> None:
    # The kept listing and each container's last STATUS text are re-spelled only when their
    # time came: any walk of the clock (seconds, days, and back) gives the reference bytes.
    # Between calls the state may move on too (churn): alternate a prefix and the whole.
    events = flat(envelopes(items, [2] * 100))
    states = (fold(events), fold(events[: len(events) // 2]))
    cache = render.SummaryCache()
    now = start
    for n, step in enumerate([0, *steps]):
        now += step
        state = states[n // 3 % 2]
        for show_all in (True, False):
            listing = cache.listing(state, show_all=show_all)
            assert cache.encoded(state, listing, now_ns=now) == _reference(state, listing, now)


@given(items=valid_histories(), start=_NOW, steps=st.lists(st.integers(0, 10**11), min_size=1,
                                                          max_size=4))
@_SETTINGS
def test_listing_follows_the_log_event_by_event(items: list[Item], start: int,
                                                steps: list[int]) -> None:
    # A start or a stop changes one container and keeps the set: the cache then patches the
    # kept `ps -a` listing and its blocks in place (`SummaryCache._move_on`) instead of
    # sorting and encoding anew. After every event, with the clock moving or standing
    # still, the listing and the bytes are still the reference's.
    events = flat(envelopes(items, [2] * 100))
    cache = render.SummaryCache()
    now = start
    for n in range(len(events) + 1):
        state = fold(events[:n])
        newest = cache.listing(state)
        assert [c.id for c in newest] == [c.id for c in sorted(
            state.containers.values(), key=lambda c: c.created_at, reverse=True)]
        assert newest == [state.containers[c.id] for c in newest]
        for step in steps:
            now += step
            assert cache.encoded(state, newest, now_ns=now) == _reference(state, newest, now)
        running = cache.listing(state, show_all=False)
        assert cache.encoded(state, running, now_ns=now) == _reference(state, running, now)
