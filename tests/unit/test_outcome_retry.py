"""A refused outcome is retried until it lands (issue 15 item 2): the back-off on trio's
virtual clock, against a journal that refuses N times; and the whole engine on fakes, where
the log refuses a `ContainerExited` twice and the container still ends `exited` with its
real code, `wait` and `stop` return, and no daemon restart is needed."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from engine.drivers.host import failpoints
from engine.shell.outcomes import OutcomeRecorder, backoff_delays, summary
from engine.testing.rig import Machine, load_busybox, open_rig
from events import vocabulary as v
from events.envelope import SYSTEM_ACTOR, Actor, Pending
from events.store import ConcurrencyConflict, StoreFull
from events.values import ContainerConfig

USER = Actor(uid=1000, gid=1000, pid=42, command=("shipslog", "run"))
CID = "c" * 64
# A hang guard on virtual time: without the retry the exit is never recorded and `wait`
# would block for ever.
HANG_GUARD_S = 600


class RefusingJournal:
    """Refuses the first `refusals` appends the way a full disk does; records when each
    attempt came (virtual time)."""

    def __init__(self, refusals: int, error: Exception | None = None) -> None:
        self.refusals = refusals
        self.error = error
        self.attempts: list[float] = []
        self.appended: list[Any] = []

    async def append(self, pending: Any, *, actor: Actor, op_id: str) -> list[Any]:
        self.attempts.append(trio.current_time())
        if len(self.attempts) <= self.refusals:
            raise self.error or StoreFull("database or disk is full", "free space")
        self.appended.append(pending)
        return []


def _exited() -> list[Pending]:
    return [Pending(stream="container-" + CID,
                    event=v.ContainerExited(container_id=CID, exit_code=3))]


async def test_backoff_doubles_from_50ms_to_5s_and_never_gives_up(autojump_clock) -> None:
    journal = RefusingJournal(refusals=10)
    rec = OutcomeRecorder(journal)  # type: ignore[arg-type]
    seen: list[str] = []

    async def look() -> None:
        await trio.sleep(0.01)
        seen.append(summary(rec.waiting()))

    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(look)
        await rec.record(_exited(), actor=SYSTEM_ACTOR, op_id="exit")
    gaps = [round(b - a, 6) for a, b in zip(journal.attempts, journal.attempts[1:],
                                            strict=False)]
    assert gaps == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
    assert gaps[:9] == backoff_delays()[:8] + [5.0]
    assert journal.attempts[0] == t0 and len(journal.appended) == 1
    assert seen == [f"1 outcome waiting to be recorded: ContainerExited for {CID}, "
                    "retrying: database or disk is full"]
    assert rec.waiting() == []  # landed: nothing left to report


async def test_a_conflict_is_an_answer_not_a_fault_and_is_not_retried() -> None:
    journal = RefusingJournal(refusals=1, error=ConcurrencyConflict("container-x", 1, 2))
    rec = OutcomeRecorder(journal)  # type: ignore[arg-type]
    with pytest.raises(ConcurrencyConflict):
        await rec.record(_exited(), actor=SYSTEM_ACTOR, op_id="exit")
    assert len(journal.attempts) == 1 and rec.waiting() == []


@pytest.fixture
def machine(tmp_path):  # type: ignore[no-untyped-def]
    failpoints.reset()
    yield Machine(db=tmp_path / "events.db")
    failpoints.reset()


def _commits_are_not_idle(clock: Any) -> None:
    # The store's writer commits in a thread: a virtual clock with a zero threshold would
    # jump to the hang guard while a commit is in flight. One real second of idleness is
    # far above a commit and far below anything that matters here.
    clock.autojump_threshold = 1.0


async def test_refused_exit_is_retried_until_wait_returns(machine, autojump_clock) -> None:  # type: ignore[no-untyped-def]
    _commits_are_not_idle(autojump_clock)
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        cid, _ = await rig.engine.create_container(
            name="web", config=ContainerConfig(image="busybox", image_id="", cmd=("sh",)),
            env=[], actor=USER)
        await rig.engine.start(cid, USER)
        failpoints.arm("append.ContainerExited", "2*error(full)->off")
        machine.runtime.exit(cid, 3)
        with trio.fail_after(HANG_GUARD_S):
            done = await rig.engine.wait(cid)
        assert done.status == "exited" and done.exit_code == 3
        exits = list(rig.store.read(types=["ContainerExited"]))
        assert [e.event.exit_code for e in exits] == [3]  # recorded once, with its code
        assert rig.supervisor.outcomes.waiting() == []


async def test_refused_exit_during_stop_is_retried_and_stop_returns(  # type: ignore[no-untyped-def]
        machine, autojump_clock) -> None:
    _commits_are_not_idle(autojump_clock)
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        cid, _ = await rig.engine.create_container(
            name="web", config=ContainerConfig(image="busybox", image_id="", cmd=("sh",)),
            env=[], actor=USER)
        await rig.engine.start(cid, USER)
        failpoints.arm("append.ContainerExited", "3*error(full)->off")
        with trio.fail_after(HANG_GUARD_S):
            await rig.engine.stop(cid, USER, timeout=10)
            done = await rig.engine.wait(cid)
        c = rig.store.state.containers[cid]
        assert c.status == "exited" and done.exit_code == 143  # SIGTERM, as Docker reports
        assert not rig.store.state.operations  # the stop is complete too


async def test_close_ends_the_retries_with_the_refusal(autojump_clock) -> None:  # type: ignore[no-untyped-def]
    """At shutdown a retry (some run shielded, in undo paths) must not hold the daemon up
    for as long as the disk stays full."""
    journal = RefusingJournal(refusals=10**9)
    rec = OutcomeRecorder(journal)  # type: ignore[arg-type]

    async def close_later() -> None:
        await trio.sleep(60)
        rec.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(close_later)
        with pytest.raises(StoreFull), trio.CancelScope(shield=True):
            await rec.record(_exited(), actor=SYSTEM_ACTOR, op_id="exit")
    assert rec.waiting() == [] and len(journal.attempts) > 10
