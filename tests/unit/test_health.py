"""Health checks: the pure verdict rules (hypothesis), the merge with the image's check, and
the probe loop on the recording fakes — only verdict changes reach the log, the probe output
never does, and the verdict folds into the container's view."""

from __future__ import annotations

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from engine.core.errors import InvalidArgument
from engine.core.health import after_probe, merge, probe_of, validate
from engine.drivers.host import failpoints
from engine.testing.rig import Machine, load_busybox, open_rig
from events import vocabulary as v
from events.envelope import Actor
from events.values import ContainerConfig, HealthCheck
from projections.fold import fold

USER = Actor(uid=1000, gid=1000, pid=42, command=("shipslog", "run"))
MS = 1_000_000


@given(st.lists(st.tuples(st.booleans(), st.booleans())), st.integers(1, 5))
def test_verdicts_follow_dockers_rules(probes: list[tuple[bool, bool]], retries: int) -> None:
    status, streak = "starting", 0
    for passed, in_start_period in probes:
        before = (status, streak)
        verdict = after_probe(status, streak, passed=passed, in_start_period=in_start_period,
                              retries=retries)
        if passed:
            assert (verdict.status, verdict.failing_streak) == ("healthy", 0)
        elif in_start_period and before[0] == "starting":
            assert (verdict.status, verdict.failing_streak) == before  # does not count
        else:
            assert verdict.failing_streak == streak + 1
            assert (verdict.status == "unhealthy") == (
                verdict.failing_streak >= retries or before[0] == "unhealthy")
        status, streak = verdict.status, verdict.failing_streak
        assert status in ("starting", "healthy", "unhealthy")


def test_merge_and_probe_of() -> None:
    image = HealthCheck(test=("CMD", "check"), interval_ns=5 * 10**9, retries=7)
    mine = HealthCheck(timeout_ns=2 * 10**9)
    merged = merge(mine, image)
    assert merged == HealthCheck(test=("CMD", "check"), interval_ns=5 * 10**9,
                                 timeout_ns=2 * 10**9, retries=7)
    assert merge(None, image) == image and merge(mine, None) == mine
    assert probe_of(merge(HealthCheck(test=("NONE",)), image)) is None
    probe = probe_of(HealthCheck(test=("CMD-SHELL", "curl -f x || exit 1")))
    assert probe is not None and probe.argv == ("/bin/sh", "-c", "curl -f x || exit 1")
    assert (probe.interval_s, probe.timeout_s, probe.retries) == (30, 30, 3)
    for bad in (HealthCheck(test=("RUN", "x")), HealthCheck(test=("CMD-SHELL", "a", "b")),
                HealthCheck(test=("CMD",)), HealthCheck(test=("CMD", "x"), interval_ns=5),
                HealthCheck(test=("CMD", "x"), retries=-1)):
        with pytest.raises(InvalidArgument):
            validate(bad)


@pytest.fixture
def machine(tmp_path):  # type: ignore[no-untyped-def]
    failpoints.reset()
    yield Machine(db=tmp_path / "events.db")
    failpoints.reset()


async def test_probe_loop_records_only_changes_of_verdict(machine) -> None:  # type: ignore[no-untyped-def]
    check = HealthCheck(test=("CMD", "probe"), interval_ns=5 * MS, retries=2)
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        cid, _ = await rig.engine.create_container(
            name="web", config=ContainerConfig(image="busybox", image_id="", cmd=("sh",),
                                               healthcheck=check), env=[], actor=USER)
        # pass, pass, fail (still healthy), fail (unhealthy), fail, pass (healthy again)
        machine.runtime.probe_script[cid] = [0, 0, 1, 1, 1, 0]
        assert await rig.engine.start("web", USER)
        assert rig.store.state.containers[cid].health == "starting"
        with trio.fail_after(10):
            while len(machine.runtime.probe_script[cid]) > 0:
                await trio.sleep(0.005)
            while rig.store.state.containers[cid].health != "healthy" or len(
                    rig.engine.supervisor.health.results(cid)) < 5:
                await trio.sleep(0.005)
        changes = [e.event for e in rig.store.read(stream="container-" + cid)
                   if isinstance(e.event, v.ContainerHealthChanged)]
        assert [(c.status, c.failing_streak) for c in changes] == [
            ("healthy", 0), ("unhealthy", 2), ("healthy", 0)]
        assert all("probe output" not in repr(e.event) for e in rig.store.read())
        probes = [r for r in machine.faults.calls if r[0] == "runtime.probe"]
        assert probes[0][1] == (cid, ("probe",))
        results = rig.engine.supervisor.health.results(cid)
        assert len(results) == 5 and results[-1].output == "probe output"
        assert fold(rig.store.read()).containers[cid].health == "healthy"
        machine.runtime.exit(cid, 0)
        await rig.engine.wait(cid)
        calls = len([r for r in machine.faults.calls if r[0] == "runtime.probe"])
        await trio.sleep(0.05)  # the loop stopped with the container
        assert len([r for r in machine.faults.calls if r[0] == "runtime.probe"]) == calls
        await rig.engine.remove("web", USER)
        assert rig.engine.supervisor.health.results(cid) == []


async def test_first_probe_one_interval_after_the_process_started(machine, autojump_clock) -> None:  # type: ignore[no-untyped-def]
    """Docker starts a container's health interval when its task has started, before it
    records the start; recording our start (one group commit, under load several) must not
    push the first probe later than that (issue 14). Virtual time: the record is made to
    take 0.3 s of it."""
    autojump_clock.autojump_threshold = 1.0  # the writer commits in a thread: not idle
    check = HealthCheck(test=("CMD", "probe"), interval_ns=1000 * MS)
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        cid, _ = await rig.engine.create_container(
            name="web", config=ContainerConfig(image="busybox", image_id="", cmd=("sh",),
                                               healthcheck=check), env=[], actor=USER)
        seen: dict[str, float] = {}
        real_start, real_probe, real_append = (machine.runtime.start, machine.runtime.probe,
                                               rig.journal.append)

        async def start(container_id: str) -> int:
            pid = await real_start(container_id)
            seen["started"] = trio.current_time()
            return pid

        async def probe(container_id: str, process, **kw):  # type: ignore[no-untyped-def]
            seen.setdefault("probed", trio.current_time())
            return await real_probe(container_id, process, **kw)

        async def slow_append(pending, **kw):  # type: ignore[no-untyped-def]
            if any(isinstance(p.event, v.ContainerStarted) for p in pending):
                await trio.sleep(0.3)
            return await real_append(pending, **kw)

        machine.runtime.start, machine.runtime.probe = start, probe  # type: ignore[method-assign]
        rig.journal.append = slow_append  # type: ignore[method-assign]
        assert await rig.engine.start("web", USER)
        await rig.journal.wait_for(lambda s: s.containers[cid].health == "healthy")
        assert seen["probed"] - seen["started"] == pytest.approx(1.0, abs=0.05)
        machine.runtime.exit(cid, 0)
        await rig.engine.wait(cid)
