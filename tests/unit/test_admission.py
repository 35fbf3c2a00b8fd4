"""The API server's connection-admission policy (`engine/api/server/admission.py`, issue 15 item 4),
as a pure function: who is admitted, and which connection makes room."""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import given
from hypothesis import strategies as st

from engine.api.server.admission import (
    SHEDDABLE,
    YOUNG_S,
    Admission,
    Phase,
    Slot,
    admit,
    body_deadline,
    shed_order,
)

NOW = 1000.0


@st.composite
def slot_lists(draw: st.DrawFn) -> list[Slot]:
    n = draw(st.integers(0, 40))
    return [Slot(key=i, phase=draw(st.sampled_from(Phase)),
                 since=draw(st.floats(0, NOW)), received=draw(st.integers(0, 10**6)),
                 admin=draw(st.booleans())) for i in range(n)]


caps = st.integers(1, 30)
reserves = st.integers(0, 10)


@given(slot_lists(), caps, reserves)
def test_admin_is_admitted_unless_the_reserve_is_full_of_unsheddable(
    slots: list[Slot], cap: int, reserve: int
) -> None:
    got = admit(len(slots), slots, admin=True, now=NOW, max_connections=cap, admin_reserve=reserve)
    stuck = all(s.phase not in SHEDDABLE for s in slots)
    if len(slots) < cap + reserve or not stuck:
        assert got.admit


batches = st.integers(1, 8)


@given(slot_lists(), caps, reserves, st.booleans(), batches)
def test_never_sheds_a_request_being_served_or_a_stream(
    slots: list[Slot], cap: int, reserve: int, admin: bool, batch: int
) -> None:
    got = admit(len(slots), slots, admin=admin, now=NOW, max_connections=cap,
                admin_reserve=reserve, batch=batch)
    by_key = {s.key: s for s in slots}
    assert all(by_key[k].phase in SHEDDABLE for k in got.shed)
    assert len(got.shed) <= batch
    assert got.admit or not got.shed


@given(slot_lists(), caps, reserves, st.booleans())
def test_sheds_only_when_full_and_keeps_the_count_bounded(
    slots: list[Slot], cap: int, reserve: int, admin: bool
) -> None:
    got = admit(len(slots), slots, admin=admin, now=NOW, max_connections=cap, admin_reserve=reserve)
    if len(slots) < cap:
        assert got == Admission(True)
    after = len(slots) + got.admit - len(got.shed)
    if len(slots) <= cap + reserve:  # admitting never pushes past the hard cap
        assert after <= max(len(slots), cap + (reserve if admin else 0))


@given(slot_lists(), caps, reserves)
def test_an_ordinary_newcomer_is_refused_only_when_nothing_can_be_shed(
    slots: list[Slot], cap: int, reserve: int
) -> None:
    got = admit(len(slots), slots, admin=False, now=NOW, max_connections=cap, admin_reserve=reserve)
    if not got.admit:
        assert len(slots) >= cap
        assert all(s.phase not in SHEDDABLE for s in slots)


@given(slot_lists(), caps, reserves, st.booleans(), batches)
def test_the_victims_are_the_first_in_shed_order(
    slots: list[Slot], cap: int, reserve: int, admin: bool, batch: int
) -> None:
    got = admit(len(slots), slots, admin=admin, now=NOW, max_connections=cap,
                admin_reserve=reserve, batch=batch)
    by_key = {s.key: s for s in slots}
    order = [s.key for s in shed_order(slots, NOW)]
    old = [k for k in order if NOW - by_key[k].since >= YOUNG_S]
    assert list(got.shed) in (order[:len(got.shed)], order[:1] + old[:len(got.shed) - 1])
    if len(slots) >= cap and old:
        assert len(got.shed) >= min(batch, len(old))
    if got.shed:  # the first is needed; the rest of a batch never takes a young one
        assert all(NOW - by_key[k].since >= YOUNG_S for k in got.shed[1:])


def test_below_the_cap_the_connections_are_not_even_looked_at() -> None:
    def never() -> Iterator[Slot]:
        raise AssertionError("scanned")
        yield

    assert admit(3, never(), admin=False, now=NOW, max_connections=4, admin_reserve=0) == \
        Admission(True)


def test_idle_goes_first_oldest_first_then_the_slowest_request() -> None:
    slots = [
        Slot("upload", Phase.READING, since=NOW - 30, received=50_000_000),
        Slot("trickler", Phase.READING, since=NOW - 60, received=4),
        Slot("newcomer", Phase.READING, since=NOW - 0.01, received=0),
        Slot("idle-new", Phase.IDLE, since=NOW - 1),
        Slot("idle-old", Phase.IDLE, since=NOW - 100),
        Slot("served", Phase.BUSY, since=NOW - 500),
        Slot("events", Phase.STREAMING, since=NOW - 5000),
    ]
    assert [s.key for s in shed_order(slots, NOW)] == [
        "idle-old", "idle-new", "trickler", "upload",
        "newcomer"]  # young: it has not had time to send its request yet


def test_a_newcomer_is_not_judged_slower_than_an_old_trickler() -> None:
    # 512 connections trickling a byte every 15 s (issue 15, item 4): the next one to come
    # in must push out a trickler, not the client that connected a moment ago.
    slots = [Slot(i, Phase.READING, since=NOW - 15 * i - 20, received=i + 20)
             for i in range(512)]
    slots.append(Slot("cli", Phase.READING, since=NOW - 0.001, received=0))
    slots = slots[1:]
    got = admit(len(slots), slots, admin=True, now=NOW, max_connections=512, admin_reserve=64)
    assert got.admit and got.shed == (511,)  # the oldest, slowest; never the CLI


def test_full_of_streams_refuses_ordinary_and_admits_admin_into_the_reserve() -> None:
    streams = [Slot(i, Phase.STREAMING, since=0.0) for i in range(8)]
    n = len(streams)
    assert admit(n, streams, admin=False, now=NOW, max_connections=8, admin_reserve=2) == \
        Admission(False)
    assert admit(n, streams, admin=True, now=NOW, max_connections=8, admin_reserve=2) == \
        Admission(True)
    full = streams + [Slot(8, Phase.BUSY, since=0.0, admin=True),
                      Slot(9, Phase.BUSY, since=0.0, admin=True)]
    assert admit(len(full), full, admin=True, now=NOW, max_connections=8, admin_reserve=2) == \
        Admission(False)


@given(st.floats(0, 1e6), st.integers(0, 10**9), st.floats(0, 60), st.floats(1, 1e6))
def test_body_deadline_grows_with_what_arrived(
    started: float, received: int, grace: float, rate: float
) -> None:
    deadline = body_deadline(started, received, grace=grace, min_rate=rate)
    assert deadline >= started + grace
    assert body_deadline(started, received + 1000, grace=grace, min_rate=rate) >= deadline


def test_a_byte_every_15_s_misses_its_body_deadline() -> None:
    # grace 10 s, 500 B/s (mod_reqtimeout's defaults): 4 bytes in 60 s are long overdue.
    assert body_deadline(0.0, 4, grace=10.0, min_rate=500.0) < 60.0
    assert body_deadline(0.0, 4, grace=10.0, min_rate=0.0) == float("inf")
