"""Crash at any step, then recover: generated programs run against a whole engine on the fakes.

A program is a list of commands (create, start, stop, kill, rm, pause, unpause, restart), of
things the "kernel" does by itself (a process exits with a code), of injected driver faults,
of armed crash failpoints and of daemon restarts. It runs in one `trio.run` against
`open_rig(machine)` on a temporary database; a `SimulatedCrash` ends that daemon run and the
next step re-opens the rig on the same `Machine`, so recovery runs. Rejections
(`ShipslogError`) are fine and recorded.

After every daemon start and at the end: rebuild == live projection; running containers ==
the fake runtime's running processes; no rootfs or runtime state without a container; the
hash chain verifies with gap-free seqs; stream versions match the log; names match the
containers; and after recovery no operation is left without an outcome except those marked
needs_cleanup, which the next start clears. At the end: every exit code the kernel reported
for a running container is in the log.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.errors import ShipslogError
from engine.drivers.host import failpoints
from engine.testing.rig import EngineRig, Machine, load_busybox, open_rig
from events.envelope import Actor
from events.values import ContainerConfig, RestartPolicy
from projections.fold import fold

USER = Actor(uid=1000, gid=1000, pid=42)
NAMES = ["a1", "b2", "c3", "d4"]
FAULTS = ["snapshots.prepare", "snapshots.remove", "runtime.create", "runtime.start",
          "runtime.delete", "runtime.pause", "runtime.resume", "runtime.kill", "files.remove"]
CRASH_POINTS = ["create.after_rootfs", "start.after_runtime_create",
                "start.after_runtime_start", "stop.after_signal",
                "remove.after_runtime_delete", "remove.after_rootfs"]
HANG_GUARD_S = 2  # a step that never finishes is a bug (a lost exit, a stuck wait), not slow

# Restart policies sleep in real time (100 ms back-off first): at most one retry keeps that
# small. An autojump clock would also jump while a commit is in the writer thread.
POLICIES = ["no", "no", "on-failure:1", "rm"]

Step = tuple[Any, ...]
_I = st.integers(0, 7)

_WEIGHTED: list[tuple[int, st.SearchStrategy[Step]]] = [
    (3, st.tuples(st.just("create"), st.sampled_from(NAMES), st.sampled_from(POLICIES))),
    (4, st.tuples(st.just("start"), _I)),
    (1, st.tuples(st.just("stop"), _I)),
    (1, st.tuples(st.just("kill"), _I)),
    (2, st.tuples(st.just("rm"), _I, st.booleans())),
    (4, st.tuples(st.just("exit"), _I, st.integers(0, 255))),
    (1, st.tuples(st.just("pause"), _I)),
    (1, st.tuples(st.just("unpause"), _I)),
    (1, st.tuples(st.just("fault"), st.sampled_from(FAULTS))),
    (3, st.tuples(st.just("crash_at"), st.sampled_from(CRASH_POINTS))),
    (1, st.tuples(st.just("restart_daemon"))),
    (1, st.tuples(st.just("restart"), _I)),
]
_STEP = st.one_of(*[s for weight, s in _WEIGHTED for _ in range(weight)])


def programs() -> st.SearchStrategy[list[Step]]:
    """Every program begins with a running container, so the rest has something to act on."""
    opening: list[Step] = [("create", NAMES[0]), ("start", 0)]
    return st.lists(_STEP, min_size=4, max_size=30).map(lambda rest: opening + rest)


def cfg(policy: str = "no") -> ContainerConfig:
    if policy == "rm":
        return ContainerConfig(image="busybox", image_id="", cmd=("sh",), auto_remove=True)
    name, _, retries = policy.partition(":")
    return ContainerConfig(image="busybox", image_id="", cmd=("sh",), restart_policy=RestartPolicy(
        name=name, maximum_retry_count=int(retries or 0)))


def _is_crash(exc: BaseException) -> bool:
    """A SimulatedCrash, alone or in the exception groups the nurseries wrap it in."""
    if isinstance(exc, failpoints.SimulatedCrash):
        return True
    if isinstance(exc, BaseExceptionGroup):
        match, rest = exc.split(failpoints.SimulatedCrash)
        return match is not None and rest is None
    return False


class Run:
    """One program's execution and what it observed."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.cids: list[str] = []  # every container id the engine handed out, in order
        self.exits: list[tuple[str, int]] = []  # (cid, code) of running processes that exited
        self.rejected: list[tuple[Step, str]] = []
        self.crashes = 0
        self.loaded = False

    def pick(self, i: int) -> str | None:
        return self.cids[i % len(self.cids)] if self.cids else None

    async def step(self, rig: EngineRig, step: Step) -> None:
        engine, kind = rig.engine, step[0]
        if kind == "fault":
            self.machine.faults.fail(step[1])
            return
        if kind == "crash_at":
            failpoints.arm(step[1], "crash")
            return
        if kind == "create":
            policy = step[2] if len(step) > 2 else "no"
            cid, _ = await engine.create_container(name=step[1], config=cfg(policy),
                                                   env=["K=v"], actor=USER)
            self.cids.append(cid)
            return
        cid = self.pick(step[1])
        if cid is None:
            return
        if kind == "exit":
            await self._exit(rig, cid, step[2])
        elif kind == "start":
            await engine.start(cid, USER)
        elif kind == "stop":
            await engine.stop(cid, USER, timeout=1)
        elif kind == "kill":
            await engine.kill(cid, USER)
        elif kind == "rm":
            await engine.remove(cid, USER, force=step[2])
        elif kind == "pause":
            await engine.pause(cid, USER)
        elif kind == "unpause":
            await engine.pause(cid, USER, pause=False)
        elif kind == "restart":
            await engine.restart(cid, USER, timeout=1)

    async def _exit(self, rig: EngineRig, cid: str, code: int) -> None:
        proc = self.machine.runtime.procs.get(cid)
        if proc is None or proc.status not in ("running", "paused"):
            return
        self.machine.runtime.exit(cid, code)
        self.exits.append((cid, code))
        # The exit watcher records it; wait until the log says the process is gone.
        await rig.journal.wait_for(lambda s: s.containers.get(cid) is None
                                   or s.containers[cid].status not in ("running", "paused"))


def _stuck(state: Any) -> set[str]:
    """Containers left 'removing' by a failed `rm` (needs_cleanup) whose process may still
    run: the bug of test_failed_force_remove_leaves_the_container_usable. Until it is fixed
    the oracle compares them only once the faults are gone (final_checks)."""
    return {op.target.removeprefix("container-") for op in state.operations.values()
            if op.kind == "container.remove" and op.needs_cleanup}


def _running(state: Any, *, strict: bool = False) -> set[str]:
    out = {cid for cid, c in state.containers.items() if c.status in ("running", "paused")}
    return out if strict else out - _stuck(state)


def _kernel_running(machine: Machine, state: Any, *, strict: bool = False) -> set[str]:
    out = {cid for cid, p in machine.runtime.procs.items() if p.status in ("running", "paused")}
    return out if strict else out - _stuck(state)


async def settle(rig: EngineRig, *, strict: bool = False) -> None:
    """Let background work finish: exits are recorded by watcher tasks after `kill` returns
    (as in Docker), so the log catches up with the kernel shortly after a step. A log that
    never catches up is a lost exit: the hang guard turns it into a failure."""
    await trio.testing.wait_all_tasks_blocked()
    with trio.move_on_after(HANG_GUARD_S):
        await rig.journal.wait_for(lambda s: _running(s, strict=strict)
                                   == _kernel_running(rig.machine, s, strict=strict))
        return
    state = rig.store.state
    raise AssertionError(
        f"the log never caught up with the kernel: running per log "
        f"{sorted(c[:12] for c in _running(state, strict=strict))}, per kernel "
        f"{sorted(c[:12] for c in _kernel_running(rig.machine, state, strict=strict))}")


def check(rig: EngineRig, *, after_recovery: bool, strict: bool = False) -> None:
    """The oracle: log, projection and the fakes' 'kernel' agree."""
    store, machine = rig.store, rig.machine
    live = store.state
    # One snapshot of the log up to the live state's seq: a commit may land meanwhile.
    envs = list(store.read(until_seq=live.seq))
    assert [e.seq for e in envs] == list(range(1, live.seq + 1))
    assert fold(envs) == live
    result = store.verify(until_seq=live.seq)
    assert result.ok and result.checked == live.seq, result
    versions: dict[str, int] = {}
    for e in envs:
        versions[e.stream] = e.stream_version
    for cid, c in live.containers.items():
        assert c.stream_version == versions["container-" + cid], cid
    assert {c.name: cid for cid, c in live.containers.items()} == dict(live.names)
    assert _running(live, strict=strict) == _kernel_running(machine, live, strict=strict)
    assert set(machine.snapshots.mounts) <= set(live.containers)
    if after_recovery:
        assert set(machine.runtime.procs) <= set(live.containers)
        # Every start was resolved: no runtime container is left half-made ("created"),
        # except one whose rollback failed and is kept, visible, for the next start (F-11).
        kept = {op.target.removeprefix("container-") for op in live.operations.values()
                if op.needs_cleanup}
        half_made = {cid for cid, p in machine.runtime.procs.items()
                     if p.status == "created" and cid not in kept}
        assert not half_made, half_made
        left = [op for op in live.operations.values() if not op.needs_cleanup]
        assert not left, left


async def run_program(machine: Machine, program: list[Step]) -> Run:
    run = Run(machine)
    todo = list(program)
    while True:
        try:
            async with open_rig(machine) as rig:
                if not run.loaded:
                    await load_busybox(rig)
                    run.loaded = True
                await settle(rig)
                check(rig, after_recovery=True)
                while todo:
                    step = todo.pop(0)
                    if step[0] == "restart_daemon":
                        break
                    try:
                        with trio.fail_after(HANG_GUARD_S):
                            await run.step(rig, step)
                    except ShipslogError as exc:
                        run.rejected.append((step, str(exc)))
                    await settle(rig)
                    check(rig, after_recovery=False)
        except BaseException as exc:
            if not _is_crash(exc):
                raise
            run.crashes += 1
            failpoints.reset()  # the crash happened; the next daemon runs without it
            continue
        if not todo:
            return run


async def final_checks(machine: Machine, run: Run) -> None:
    """Two clean daemon starts: the first may leave needs_cleanup operations (the faults
    that hit its cleanups); the second must leave no operation at all."""
    machine.faults.queued.clear()
    failpoints.reset()
    async with open_rig(machine) as rig:
        await settle(rig)
        check(rig, after_recovery=True)
    async with open_rig(machine) as rig:
        await settle(rig, strict=True)
        check(rig, after_recovery=True, strict=True)
        assert not rig.store.state.operations, rig.store.state.operations
        exited = {(e.event.container_id, e.event.exit_code)
                  for e in rig.store.read(types=["ContainerExited"])}
        lost = [x for x in run.exits if x not in exited]
        assert not lost, f"exit codes never recorded: {lost}"


@pytest.mark.slow
@given(program=programs())
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_any_program_with_crashes_recovers_consistently(program: list[Step]) -> None:
    failpoints.reset()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            machine = Machine(db=Path(tmp) / "events.db")

            async def main() -> None:
                run = await run_program(machine, program)
                await final_checks(machine, run)

            trio.run(main)
    finally:
        failpoints.reset()


def run_steps(program: list[Step]) -> None:
    """One program through the same harness, outside hypothesis (regressions, xfails)."""
    failpoints.reset()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            machine = Machine(db=Path(tmp) / "events.db")

            async def main() -> None:
                run = await run_program(machine, program)
                await final_checks(machine, run)

            trio.run(main)
    finally:
        failpoints.reset()


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_at_each_point_of_a_whole_lifecycle(point: str) -> None:
    run_steps([("create", "a1"), ("start", 0), ("crash_at", point), ("stop", 0), ("start", 0),
               ("exit", 0, 3), ("create", "b2"), ("start", 1), ("rm", 0, False),
               ("rm", 1, True), ("create", "a1"), ("start", 2), ("exit", 2, 9)])


def test_crash_during_restart_after_runtime_start_is_recovered() -> None:
    run_steps([("create", "a1"), ("start", 0), ("crash_at", "start.after_runtime_start"),
               ("restart", 0)])


def test_crash_during_restart_after_runtime_create_leaves_no_runtime_state() -> None:
    run_steps([("create", "a1"), ("start", 0), ("crash_at", "start.after_runtime_create"),
               ("restart", 0)])


def test_failed_stop_records_an_outcome() -> None:
    async def main(machine: Machine) -> None:
        async with open_rig(machine) as rig:
            await load_busybox(rig)
            cid, _ = await rig.engine.create_container(name="s1", config=cfg(), env=[],
                                                       actor=USER)
            await rig.engine.start(cid, USER)
            machine.faults.fail("runtime.kill")
            with pytest.raises(ShipslogError):
                await rig.engine.stop(cid, USER, timeout=1)
            await settle(rig)
            pending = [op for op in rig.store.state.operations.values()
                       if not op.needs_cleanup]
            assert not pending, pending

    failpoints.reset()
    with tempfile.TemporaryDirectory() as tmp:
        trio.run(main, Machine(db=Path(tmp) / "events.db"))


def test_failed_force_remove_leaves_the_container_usable() -> None:
    async def main(machine: Machine) -> None:
        async with open_rig(machine) as rig:
            await load_busybox(rig)
            cid, _ = await rig.engine.create_container(name="r1", config=cfg(), env=[],
                                                       actor=USER)
            await rig.engine.start(cid, USER)
            machine.faults.fail("runtime.kill")
            with pytest.raises(ShipslogError):
                await rig.engine.remove(cid, USER, force=True)
            assert machine.runtime.procs[cid].status == "running"
            await rig.engine.remove(cid, USER, force=True)  # the retry a user would do
            assert cid not in rig.store.state.containers
            await settle(rig, strict=True)
            check(rig, after_recovery=True, strict=True)

    failpoints.reset()
    with tempfile.TemporaryDirectory() as tmp:
        trio.run(main, Machine(db=Path(tmp) / "events.db"))


def test_recovery_leaves_no_stop_pending_when_kill_fails() -> None:
    run_steps([("create", "a1"), ("start", 0), ("fault", "runtime.kill"), ("stop", 0),
               ("fault", "runtime.kill"), ("restart_daemon",), ("start", 0)])


def test_crash_mid_start_with_a_failing_rollback_stays_visible() -> None:
    # Found by the property above: the rollback's `runtime.delete` fails during recovery of a
    # start cut after `runc create`; the half-made container must stay visible as needs-cleanup
    # (F-11), not be dropped silently, and the next start must clean it.
    run_steps([("create", "a1"), ("start", 0), ("fault", "runtime.delete"),
               ("crash_at", "start.after_runtime_create"), ("create", "b2"), ("start", 1),
               ("restart_daemon",)])
