"""Replication on fakes (engine/shell/replication.py, engine/core/replication.py): in order,
exactly once across restarts and lost replies, a duplicate batch is a no-op, a fork or a gap
stops it with an alert and never skips. Time is trio's MockClock: back-off without sleeping."""

from __future__ import annotations

import hypothesis.strategies as st
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings

from engine.core.replication import Resume, Stop, after_refusal, check_batch, resume_point
from engine.shell.replication import ReplicationStatus, Replicator
from engine.testing.fake_center import FakeCenter, FakeSource, make_rows
from events.hashing import GENESIS_HASH

HOST = "node-1"


def replicator(source: FakeSource, center: FakeCenter, *, max_batch: int = 10) -> Replicator:
    return Replicator(source, center.connect, ReplicationStatus("postgresql://r@c:5432/db", HOST),
                      clock=lambda: 7, wait_for_events=source.wait_for_events,
                      max_batch=max_batch, max_delay=0.001, backoff=(0.1, 1.0))


async def until(pred: object, *, limit: float = 600.0) -> None:
    with trio.fail_after(limit):
        while not pred():  # type: ignore[operator]
            await trio.sleep(0.01)


def run(fn: object) -> None:
    trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))  # type: ignore[arg-type]


def held(center: FakeCenter) -> list[int]:
    return [r.seq for r in center.events.get(HOST, [])]


def test_ships_every_event_in_order_in_bounded_batches() -> None:
    source, center = FakeSource(make_rows(25)), FakeCenter()
    rep = replicator(source, center, max_batch=10)

    async def main() -> None:
        async with trio.open_nursery() as n:
            await n.start(rep.run)
            await until(lambda: rep.status.acknowledged == 25)
            source.append(5)
            await until(lambda: rep.status.acknowledged == 30)
            n.cancel_scope.cancel()

    run(main)
    assert held(center) == list(range(1, 31))
    assert center.events[HOST] == source.rows
    assert all(last - first < 10 for _, first, last in center.inserts)
    assert rep.status.acknowledged == 30 and rep.status.lag == 0
    assert "acknowledged 30 of 30 (lag 0)" in rep.status.line()
    assert "postgresql://r@c:5432/db, host node-1" in rep.status.line()


def test_resumes_after_the_centers_head_on_restart() -> None:
    rows = make_rows(20)
    source, center = FakeSource(rows), FakeCenter()
    center.events[HOST] = rows[:12]  # acknowledged before the daemon restarted
    rep = replicator(source, center)

    async def main() -> None:
        async with trio.open_nursery() as n:
            await n.start(rep.run)
            await until(lambda: len(held(center)) == 20)
            n.cancel_scope.cancel()

    run(main)
    assert held(center) == list(range(1, 21))
    assert center.inserts[0][1] == 13  # nothing before the head was sent again


def test_a_lost_commit_reply_neither_duplicates_nor_skips() -> None:
    source, center = FakeSource(make_rows(30)), FakeCenter()
    center.lose_reply = 2
    rep = replicator(source, center)

    async def main() -> None:
        async with trio.open_nursery() as n:
            await n.start(rep.run)
            await until(lambda: len(held(center)) == 30)
            n.cancel_scope.cancel()

    run(main)
    assert held(center) == list(range(1, 31))
    assert center.connections >= 3 and not center.alerts


def test_a_batch_the_center_already_holds_is_a_no_op() -> None:
    rows = make_rows(10)
    source, center = FakeSource(rows), FakeCenter()

    rep = replicator(source, center, max_batch=10)
    original = center.insert
    raced = []

    # another sender stores events 1..10 between our head read and our insert
    def insert(host: str, batch: list) -> None:  # type: ignore[type-arg]
        if not raced:
            raced.append(True)
            original(host, rows)  # the duplicate arrives first
        original(host, batch)

    center.insert = insert  # type: ignore[method-assign]

    async def main() -> None:
        async with trio.open_nursery() as n:
            await n.start(rep.run)
            await until(lambda: rep.status.acknowledged == 10)
            source.append(3)
            await until(lambda: len(held(center)) == 13)
            n.cancel_scope.cancel()

    run(main)
    assert held(center) == list(range(1, 14))
    assert not center.alerts and rep.status.state == "replicating"


def test_a_fork_stops_replication_with_an_alert_and_ships_nothing() -> None:
    source, center = FakeSource(make_rows(10)), FakeCenter()
    center.events[HOST] = make_rows(4, tag="-other")  # a different chain for the same host
    rep = replicator(source, center)

    run(rep.run)  # returns: replication stopped
    assert held(center) == [1, 2, 3, 4] and not center.inserts
    assert [(h, k) for h, k, _ in center.alerts] == [(HOST, "fork")]
    assert rep.status.state == "stopped" and "fork" in rep.status.line()


def test_a_local_log_rolled_back_behind_the_center_is_a_fork() -> None:
    rows = make_rows(10)
    source, center = FakeSource(rows[:5]), FakeCenter()
    center.events[HOST] = rows
    rep = replicator(source, center)
    run(rep.run)
    assert center.alerts[0][1] == "fork" and "only 5" in center.alerts[0][2]


def test_a_gap_left_by_compaction_stops_instead_of_skipping() -> None:
    source, center = FakeSource(make_rows(10)), FakeCenter()
    source.removed = {4, 5}
    rep = replicator(source, center)
    run(rep.run)
    assert held(center) == [1, 2, 3]
    assert center.alerts[0][1] == "gap" and "no event 4" in center.alerts[0][2]


def test_a_center_that_is_down_is_retried_with_back_off() -> None:
    source, center = FakeSource(make_rows(5)), FakeCenter()
    center.down = True
    rep = replicator(source, center)

    async def main() -> None:
        async with trio.open_nursery() as n:
            await n.start(rep.run)
            # The first attempt runs in a worker thread, and the mock clock jumps while it
            # does: wait for its failure, not for a mock-time deadline (flaky under load).
            await until(lambda: rep.status.state == "retrying")
            await trio.sleep(30)  # mock time: several back-off rounds
            assert rep.status.state == "retrying" and not held(center)
            center.down = False
            await until(lambda: len(held(center)) == 5)
            n.cancel_scope.cancel()

    run(main)
    assert held(center) == [1, 2, 3, 4, 5]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(1, 15), st.sampled_from(["ok", "down", "lose", "restart"])),
                min_size=1, max_size=8))
def test_any_fault_schedule_ends_with_the_same_chain_at_the_center(steps: list) -> None:  # type: ignore[type-arg]
    """Appends interleaved with outages, lost replies and replicator restarts: the center ends
    holding exactly the local log (no duplicate, no gap, no alert)."""
    source, center = FakeSource(), FakeCenter()

    async def main() -> None:
        for n_events, fault in steps:
            source.append(n_events)
            center.lose_reply = 1 if fault == "lose" else 0
            center.down = fault == "down"
            async with trio.open_nursery() as n:
                await n.start(replicator(source, center, max_batch=4).run)
                if fault == "down":
                    await trio.sleep(3)
                    center.down = False
                if fault != "restart":
                    await until(lambda: len(held(center)) == source.head())
                n.cancel_scope.cancel()
        center.down = False
        async with trio.open_nursery() as n:
            await n.start(replicator(source, center).run)
            await until(lambda: len(held(center)) == source.head())
            n.cancel_scope.cancel()

    run(main)
    assert center.events.get(HOST, []) == source.rows and not center.alerts


def test_pure_verdicts() -> None:
    rows = make_rows(3)
    assert resume_point(0, GENESIS_HASH, 0, None) == Resume(0)
    assert resume_point(2, rows[1].hash, 3, rows[1].hash) == Resume(2)
    assert isinstance(resume_point(2, "x" * 64, 3, rows[1].hash), Stop)
    assert check_batch(2, [3, 4]) == 2 and check_batch(2, [3, 5]) == 1
    assert isinstance(check_batch(2, [4]), Stop)
    assert after_refusal(2, 3, 5, Resume(5), "dup") == Resume(5)
    assert after_refusal(2, 3, 5, Resume(2), "bad link").kind == "fork"  # type: ignore[union-attr]
