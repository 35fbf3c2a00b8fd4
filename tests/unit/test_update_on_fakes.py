"""`docker update` on the recording fakes: a running container's limits reach the runtime
before they are recorded; a stopped one's are recorded for its next start; a failing
`runc update` records the failure and changes nothing; recovery finishes an interrupted one."""

from __future__ import annotations

import pytest

from engine.core.containers import decide_update
from engine.core.errors import Conflict, InvalidArgument, KernelError
from engine.drivers.host import failpoints
from engine.testing.rig import Machine, load_busybox, open_rig
from events import vocabulary as v
from events.envelope import Actor
from events.values import ContainerConfig, RestartPolicy
from projections.fold import fold

USER = Actor(uid=1000, gid=1000, pid=42, command=("shipslog", "update"))
MB = 1024 * 1024


@pytest.fixture
def machine(tmp_path):  # type: ignore[no-untyped-def]
    failpoints.reset()
    yield Machine(db=tmp_path / "events.db")
    failpoints.reset()


def changes(**kw: object) -> v.ContainerUpdated:
    return v.ContainerUpdated(container_id="", **kw)  # type: ignore[arg-type]


async def test_update_running_then_stopped(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        cid, _ = await rig.engine.create_container(
            name="web", config=ContainerConfig(image="busybox", image_id="", cmd=("sh",),
                                               memory=64 * MB), env=[], actor=USER)
        assert await rig.engine.start("web", USER)
        await rig.engine.update("web", changes(memory=128 * MB, pids_limit=50), USER)
        c = rig.store.state.containers[cid]
        assert (c.config.memory, c.config.pids_limit) == (128 * MB, 50)
        (call,) = [r for r in machine.faults.calls if r[0] == "runtime.update"]
        resources = call[1][1]
        assert resources["memory"] == {"limit": 128 * MB, "swap": 256 * MB}
        assert resources["pids"] == {"limit": 50} and resources["cpu"]["quota"] == -1
        assert not rig.store.state.operations

        machine.faults.fail("runtime.update", KernelError("runc update: cgroup busy"))
        with pytest.raises(KernelError, match="cgroup busy"):
            await rig.engine.update("web", changes(memory=32 * MB), USER)
        assert rig.store.state.containers[cid].config.memory == 128 * MB  # unchanged
        failed = [e.event for e in rig.store.read() if isinstance(e.event, v.OperationFailed)]
        assert failed and failed[-1].step == "runtime.update"

        machine.runtime.exit(cid, 0)
        await rig.engine.wait(cid)
        calls = len(machine.faults.calls)
        policy = RestartPolicy(name="on-failure", maximum_retry_count=3)
        await rig.engine.update("web", changes(nano_cpus=500_000_000, restart_policy=policy),
                                USER)
        c = rig.store.state.containers[cid]
        assert c.config.nano_cpus == 500_000_000 and c.config.restart_policy == policy
        assert not [r for r in machine.faults.calls[calls:] if r[0] == "runtime.update"]
        assert fold(rig.store.read()).containers[cid] == rig.store.state.containers[cid]
        who = [e.actor.uid for e in rig.store.read(stream="container-" + cid)
               if isinstance(e.event, v.ContainerUpdated)]
        assert who == [1000, 1000]


def test_decide_update_refuses_what_docker_refuses() -> None:
    from projections.state import ContainerView, EngineState

    c = ContainerView(id="a" * 64, name="web", status="exited",
                      config=ContainerConfig(image="b", image_id="", auto_remove=True))
    state = EngineState(containers=EngineState().containers.set(c.id, c),
                        names=EngineState().names.set("web", c.id))
    with pytest.raises(Conflict, match="AutoRemove"):
        decide_update(state, "web", op_id="o", changes=changes(
            restart_policy=RestartPolicy(name="always")))
    with pytest.raises(InvalidArgument, match="nothing to update"):
        decide_update(state, "web", op_id="o", changes=changes())
    d = decide_update(state, "web", op_id="o", changes=changes(memory=64 * MB))
    assert not d.plan and d.pending[0].event == v.ContainerUpdated(container_id=c.id,
                                                                    memory=64 * MB)


async def test_recovery_finishes_an_interrupted_update(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        cid, _ = await rig.engine.create_container(
            name="web", config=ContainerConfig(image="busybox", image_id="", cmd=("sh",)),
            env=[], actor=USER)
        assert await rig.engine.start("web", USER)
        # The daemon died after recording the intent, before `runc update` ran.
        d = decide_update(rig.store.state, "web", op_id="op-upd",
                          changes=changes(pids_limit=77))
        await rig.journal.append(list(d.pending), actor=USER, op_id="op-upd")
    calls = len(machine.faults.calls)
    async with open_rig(machine) as rig:
        assert rig.store.state.containers[cid].config.pids_limit == 77
        assert "op-upd" not in rig.store.state.operations
        assert [r for r in machine.faults.calls[calls:] if r[0] == "runtime.update"]
