"""The write path on recording fakes: decide → append → supervise → outcome, failures and
their compensation, exits and restart policies, and recovery after a simulated crash."""

from __future__ import annotations

import errno
import threading

import pytest
import trio

from engine.core.errors import Conflict, KernelError, NoSpace, NotFound, Unavailable
from engine.drivers.host import failpoints
from engine.testing.rig import Machine, load_busybox, open_rig
from events.envelope import Actor
from events.values import ContainerConfig, RestartPolicy
from projections.engine import EngineProjection
from projections.fold import fold

USER = Actor(uid=1000, gid=1000, pid=42, command=("shipslog", "run"))


def cfg(**kw) -> ContainerConfig:  # type: ignore[no-untyped-def]
    """A config as the API hands it over: image defaults already merged in."""
    kw.setdefault("cmd", ("sh",))
    return ContainerConfig(image="busybox", image_id="", **kw)


@pytest.fixture
def machine(tmp_path):  # type: ignore[no-untyped-def]
    failpoints.reset()
    yield Machine(db=tmp_path / "events.db")
    failpoints.reset()


def consistent(rig) -> None:  # type: ignore[no-untyped-def]
    """The three-way oracle on the fakes: rebuilt == live == what the 'kernel' shows."""
    rebuilt = fold(rig.store.read())
    live = rig.store.state
    assert rebuilt.containers == live.containers
    assert rebuilt.names == live.names
    assert rebuilt.operations == live.operations
    assert rig.store.verify().ok
    for cid, c in live.containers.items():  # optimistic concurrency sees the real version
        assert c.stream_version == rig.store.stream_version("container-" + cid)
    running = {cid for cid, c in live.containers.items() if c.status in ("running", "paused")}
    kernel = {cid for cid, p in rig.machine.runtime.procs.items()
              if p.status in ("running", "paused")}
    assert running == kernel
    assert set(rig.machine.snapshots.mounts) <= set(live.containers)


async def test_create_start_exit_remove(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        cid, _ = await rig.engine.create_container(
            name="web", config=cfg(cmd=("true",)), env=["SECRET=hunter2"], actor=USER)
        c = rig.store.state.containers[cid]
        assert c.status == "created" and c.name == "web"
        assert c.config.image_id.startswith("sha256:")
        assert c.config.env[0].key == "SECRET" and "hunter2" not in repr(c.config.env)
        assert machine.secrets.get(cid) == ["SECRET=hunter2"]
        assert await rig.engine.start("web", USER)
        assert rig.store.state.containers[cid].status == "running"
        machine.runtime.exit(cid, 3)
        done = await rig.engine.wait(cid)
        assert done.exit_code == 3 and done.status == "exited"
        consistent(rig)
        await rig.engine.remove("web", USER)
        assert cid not in rig.store.state.containers
        assert "web" not in rig.store.state.names
        assert cid not in machine.secrets.values  # wiped with the container
        assert cid not in machine.snapshots.dirs
        assert not rig.store.state.operations
        consistent(rig)
        # Who did it is in the log.
        actors = {e.actor.uid for e in rig.store.read(stream="container-" + cid)}
        assert 1000 in actors


async def test_name_conflict_and_concurrent_creates(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        results: list[object] = []

        async def create() -> None:
            try:
                results.append(await rig.engine.create_container(
                    name="same", config=cfg(), env=[], actor=USER))
            except Conflict as exc:
                results.append(exc)

        async with trio.open_nursery() as n:
            for _ in range(10):
                n.start_soon(create)
        winners = [r for r in results if not isinstance(r, Conflict)]
        assert len(winners) == 1
        assert sum(isinstance(r, Conflict) for r in results) == 9
        assert len(rig.store.state.containers) == 1
        consistent(rig)


async def test_stop_sends_signal_and_records_exit(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        cid, _ = await rig.engine.create_container(name="stopper", config=cfg(), env=[], actor=USER)
        await rig.engine.start(cid, USER)
        assert await rig.engine.stop(cid, USER, timeout=5)
        c = rig.store.state.containers[cid]
        assert c.status == "exited" and c.exit_code == 143
        assert not rig.store.state.operations
        assert not await rig.engine.stop(cid, USER)  # Docker's 304: already stopped
        consistent(rig)


async def test_remove_running_needs_force(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        cid, _ = await rig.engine.create_container(name="runner", config=cfg(), env=[], actor=USER)
        await rig.engine.start(cid, USER)
        with pytest.raises(Conflict) as err:
            await rig.engine.remove(cid, USER)
        assert err.value.hint
        await rig.engine.remove(cid, USER, force=True)
        assert cid not in rig.store.state.containers
        assert cid not in machine.runtime.procs
        consistent(rig)


async def test_start_failure_is_recorded_and_rolled_back(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        cid, _ = await rig.engine.create_container(name="failing", config=cfg(), env=[], actor=USER)
        machine.faults.fail("runtime.start", KernelError(
            'exec: "nope": executable file not found in $PATH'))
        with pytest.raises(KernelError):
            await rig.engine.start(cid, USER)
        c = rig.store.state.containers[cid]
        assert c.status == "created" and c.exit_code == 127 and "not found" in c.error
        assert cid not in machine.runtime.procs  # rolled back
        assert not rig.store.state.operations
        await rig.engine.start(cid, USER)  # and it can be started again
        assert rig.store.state.containers[cid].status == "running"
        consistent(rig)


async def test_failed_rollback_keeps_a_visible_needs_cleanup(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        cid, _ = await rig.engine.create_container(name="cleanup", config=cfg(), env=[], actor=USER)
        machine.faults.fail("runtime.start")
        # The rollback's delete fails.
        orig = machine.runtime.delete
        calls = {"n": 0}

        async def flaky_delete(container_id: str, *, force: bool = False) -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise KernelError("runc delete: device or resource busy")
            await orig(container_id, force=force)

        machine.runtime.delete = flaky_delete  # type: ignore[method-assign]
        with pytest.raises(KernelError):
            await rig.engine.start(cid, USER)
        ops = list(rig.store.state.operations.values())
        assert len(ops) == 1 and ops[0].needs_cleanup
        machine.runtime.delete = orig  # type: ignore[method-assign]
    # The next daemon start retries the cleanup.
    async with open_rig(machine) as rig:
        assert not rig.store.state.operations
        assert cid not in machine.runtime.procs
        consistent(rig)


async def test_create_failure_releases_the_name(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        machine.faults.fail("snapshots.prepare", OSError(28, "No space left on device"))
        with pytest.raises(KernelError):
            await rig.engine.create_container(name="nospace", config=cfg(), env=["A=1"], actor=USER)
        assert "nospace" not in rig.store.state.names
        assert not rig.store.state.containers
        assert not machine.secrets.values
        cid, _ = await rig.engine.create_container(name="nospace", config=cfg(), env=[], actor=USER)
        assert rig.store.state.containers[cid].status == "created"
        consistent(rig)


async def test_unknown_image_and_bad_name(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        head = rig.store.head()
        with pytest.raises(NotFound):
            await rig.engine.create_container(
                name="xx", config=ContainerConfig(image="nope", image_id=""), env=[], actor=USER)
        for bad in ("../x", "a\nb", "x" * 10_000, ".", "a/"):
            with pytest.raises(Exception) as err:
                await rig.engine.create_container(name=bad, config=cfg(), env=[], actor=USER)
            assert getattr(err.value, "status", 500) == 400
        assert rig.store.head() == head  # nothing appended


async def test_restart_policy_on_failure_with_backoff(machine, autojump_clock) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        cid, _ = await rig.engine.create_container(
            name="policy", config=cfg(restart_policy=RestartPolicy(name="on-failure",
                                                              maximum_retry_count=2)),
            env=[], actor=USER)
        await rig.engine.start(cid, USER)
        for n in (1, 2):
            machine.runtime.exit(cid, 1)
            await rig.journal.wait_for(lambda s, n=n: s.containers[cid].restart_count == n
                                       and s.containers[cid].status == "running")
        machine.runtime.exit(cid, 1)
        await rig.journal.wait_for(lambda s: s.containers[cid].status == "exited")
        await trio.sleep(120)  # virtual time: a third restart would have happened by now
        c = rig.store.state.containers[cid]
        assert c.status == "exited" and c.restart_count == 2
        delays = [e.event.delay_ms for e in rig.store.read(types=["ContainerRestartedByPolicy"])]
        assert delays == [100, 200]
        consistent(rig)


async def test_auto_remove(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        cid, _ = await rig.engine.create_container(
            name="rm", config=cfg(auto_remove=True), env=[], actor=USER)
        await rig.engine.start(cid, USER)
        machine.runtime.exit(cid, 0)
        last = await rig.engine.wait(cid, "removed")
        assert last.exit_code == 0
        assert cid not in rig.store.state.containers
        consistent(rig)


@pytest.mark.parametrize("point", [
    "create.after_rootfs", "start.after_runtime_create", "start.after_runtime_start",
    "stop.after_signal", "remove.after_runtime_delete", "remove.after_rootfs",
])
async def test_crash_at_each_step_then_recover(machine, point) -> None:  # type: ignore[no-untyped-def]
    failpoints.arm(point, "crash")
    try:
        async with open_rig(machine) as rig:
            await load_busybox(rig)
            cid, _ = await rig.engine.create_container(name="crashy", config=cfg(), env=[],
                                                       actor=USER)
            await rig.engine.start(cid, USER)
            await rig.engine.stop(cid, USER, timeout=1)
            await rig.engine.remove(cid, USER)
    except BaseException as exc:  # noqa: BLE001 - the crash escapes as an ExceptionGroup
        assert "SimulatedCrash" in repr(exc) or isinstance(exc, failpoints.SimulatedCrash)
    failpoints.reset()
    async with open_rig(machine) as rig:
        consistent(rig)
        assert not rig.store.state.operations, rig.store.state.operations
        for left in list(rig.store.state.containers):
            # Whatever survived can be removed again without manual cleanup.
            await rig.engine.remove(left, USER, force=True)
        assert "crashy" not in rig.store.state.names
        assert not machine.runtime.procs
        assert not machine.snapshots.mounts
        consistent(rig)


async def test_exit_while_daemon_down_keeps_its_code(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        cid, _ = await rig.engine.create_container(name="downtime", config=cfg(), env=[],
                                                   actor=USER)
        await rig.engine.start(cid, USER)
    machine.runtime.exit(cid, 42)  # while no daemon runs
    async with open_rig(machine) as rig:
        c = rig.store.state.containers[cid]
        assert c.status == "exited" and c.exit_code == 42
        consistent(rig)


async def test_running_container_is_adopted_and_reboot_loses_it(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        cid, _ = await rig.engine.create_container(name="adopted", config=cfg(), env=[], actor=USER)
        await rig.engine.start(cid, USER)
    async with open_rig(machine) as rig:
        assert rig.store.state.containers[cid].status == "running"
        machine.runtime.exit(cid, 7)
        c = await rig.engine.wait(cid)
        assert c.exit_code == 7
        await rig.engine.start(cid, USER)
    machine.runtime.procs.clear()  # a reboot: every process and runtime state is gone
    async with open_rig(machine, boot_changed=True) as rig:
        c = rig.store.state.containers[cid]
        assert c.status == "exited" and c.exit_code == 255 and "reboot" in c.error
        consistent(rig)


def test_projection_is_the_fold() -> None:
    p = EngineProjection()
    assert p.initial().seq == 0


async def test_restart_pause_unpause_rename_kill(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        cid, _ = await rig.engine.create_container(name="cycle", config=cfg(), env=[],
                                                   actor=USER)
        await rig.engine.start(cid, USER)
        first_pid = rig.store.state.containers[cid].pid
        await rig.engine.restart(cid, USER, timeout=1)
        c = rig.store.state.containers[cid]
        assert c.status == "running" and c.pid != first_pid
        await rig.engine.pause(cid, USER)
        assert rig.store.state.containers[cid].status == "paused"
        with pytest.raises(Conflict):
            await rig.engine.pause(cid, USER)
        await rig.engine.pause(cid, USER, pause=False)
        await rig.engine.rename(cid, "renamed", USER)
        assert rig.store.state.names.get("renamed") == cid
        assert "cycle" not in rig.store.state.names
        await rig.engine.kill("renamed", USER, signal="SIGKILL")
        c = await rig.engine.wait(cid)
        assert c.exit_code == 137
        consistent(rig)
        # A killed container with `always` is not restarted: the user stopped it.
        assert not rig.store.state.operations


async def test_volumes_follow_their_containers(machine) -> None:  # type: ignore[no-untyped-def]
    from engine.core.volumes import decide_volume_remove
    from events.values import MountSpec

    async with open_rig(machine) as rig:
        await load_busybox(rig)
        mounts = (MountSpec(type="volume", target="/data", source="keep"),
                  MountSpec(type="volume", target="/cache"),
                  MountSpec(type="tmpfs", target="/run/t"))
        cid, _ = await rig.engine.create_container(name="vols", config=cfg(mounts=mounts),
                                                   env=[], actor=USER)
        state = rig.store.state
        anon = next(m.source for m in state.containers[cid].config.mounts
                    if m.target == "/cache")
        assert len(anon) == 64 and state.volumes[anon].anonymous
        assert not state.volumes["keep"].anonymous
        assert {"keep", anon} <= machine.volumes.present
        assert machine.volumes.seeded == {"keep", anon}  # new volumes get the image's content
        await rig.engine.start(cid, USER)
        assert set(rig.store.state.volumes["keep"].users) == {cid}
        assert machine.volumes.staged == {}  # staging released once the runtime holds mounts
        with pytest.raises(Conflict):
            decide_volume_remove(rig.store.state, "keep", op_id="x")
        machine.runtime.exit(cid, 0)
        await rig.engine.wait(cid)
        assert rig.store.state.volumes["keep"].users == ()
        await rig.engine.remove(cid, USER, volumes=True)
        assert anon not in rig.store.state.volumes and anon not in machine.volumes.present
        assert "keep" in rig.store.state.volumes  # named volumes outlive their containers
        consistent(rig)


async def test_bad_mounts_are_refused_before_anything_is_recorded(machine) -> None:  # type: ignore[no-untyped-def]
    from events.values import MountSpec

    async with open_rig(machine) as rig:
        await load_busybox(rig)
        head = rig.store.head()
        for bad in (MountSpec(type="bind", source="relative/path", target="/x"),
                    MountSpec(type="volume", source="../x", target="/x"),
                    MountSpec(type="bind", source="/etc", target="relative"),
                    MountSpec(type="tmpfs", target="/a\nb")):
            with pytest.raises(Exception) as err:
                await rig.engine.create_container(name="badmount", config=cfg(mounts=(bad,)),
                                                  env=[], actor=USER)
            assert getattr(err.value, "status", 500) == 400, bad
        assert rig.store.head() == head


@pytest.mark.parametrize("fault, kind, words", [
    # A trio nursery wraps a driver's OSError in a group (issue 15 item 6).
    (ExceptionGroup("Exceptions from Trio nursery", [
        OSError(errno.ENOSPC, "No space left on device", "/var/lib/shipslog/x")]),
     NoSpace, "write /var/lib/shipslog/x: no space left on device"),
    (ExceptionGroup("Exceptions from Trio nursery", [ExceptionGroup("inner", [
        KernelError("Bind for 127.0.0.1:8080 failed: port is already allocated")])]),
     KernelError, "Bind for 127.0.0.1:8080 failed: port is already allocated"),
    (OSError(errno.EMFILE, "Too many open files"), Unavailable, "too many open files"),
    (ExceptionGroup("Exceptions from Trio nursery", [TypeError("a bug")]),
     KernelError, "internal error: TypeError: a bug"),
])
async def test_start_failure_of_any_kind_is_one_line_and_an_outcome(  # type: ignore[no-untyped-def]
        machine, fault, kind, words) -> None:
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        cid, _ = await rig.engine.create_container(name="grouped", config=cfg(), env=[],
                                                   actor=USER)
        machine.faults.fail("runtime.create", fault)
        with pytest.raises(kind) as err:
            await rig.engine.start(cid, USER)
        assert words in err.value.message and "ExceptionGroup" not in err.value.message
        c = rig.store.state.containers[cid]
        assert c.status == "created" and words in c.error
        assert not rig.store.state.operations  # the outcome is recorded: nothing pending
        failed = [e.event for e in rig.store.read() if e.type == "OperationFailed"]
        assert len(failed) == 1 and words in failed[0].error  # type: ignore[attr-defined]
        assert cid not in machine.runtime.procs
        consistent(rig)


async def test_a_start_makes_its_spec_off_the_event_loop(machine) -> None:  # type: ignore[no-untyped-def]
    """The spec maker writes the container's /etc files: on the trio thread, a project's
    starts (Compose starts them all at once) waited for each other's writes (issue 14)."""
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        await rig.engine.create_container(name="web", config=cfg(), env=[], actor=USER)
        assert await rig.engine.start("web", USER)
        assert len(machine.specs.threads) == 1
        assert machine.specs.threads[0] != threading.main_thread().name
