"""`kill` by the user on recording fakes: it is a stop, not a failure to restart from (moby
`ExitOnNext`), and a SIGKILL answers once the exit is recorded (moby `daemon.Kill`)."""

from __future__ import annotations

import pytest
import trio

from engine.core.restart import kill_stops_restart
from engine.drivers.host import failpoints
from engine.testing.rig import Machine, load_busybox, open_rig
from events.envelope import Actor
from events.values import ContainerConfig, RestartPolicy
from projections.state import ContainerView

USER = Actor(uid=1000, gid=1000, pid=42, command=("shipslog", "kill"))


def cfg(**kw) -> ContainerConfig:  # type: ignore[no-untyped-def]
    kw.setdefault("cmd", ("sh",))
    return ContainerConfig(image="busybox", image_id="", **kw)


@pytest.fixture
def machine(tmp_path):  # type: ignore[no-untyped-def]
    failpoints.reset()
    yield Machine(db=tmp_path / "events.db")
    failpoints.reset()


@pytest.mark.parametrize(("stop_signal", "sig", "stops"), [
    ("SIGTERM", "SIGKILL", True), ("SIGTERM", "SIGTERM", True), ("SIGTERM", "SIGUSR1", True),
    (None, "SIGHUP", True), ("SIGINT", "SIGKILL", True), ("SIGINT", "SIGINT", True),
    ("2", "SIGINT", True), ("SIGINT", "SIGUSR1", False), ("SIGINT", "SIGTERM", False),
])
def test_which_kills_keep_the_container_down(stop_signal, sig, stops) -> None:  # type: ignore[no-untyped-def]
    c = ContainerView(id="c", name="c", config=cfg(stop_signal=stop_signal))
    assert kill_stops_restart(c, sig) is stops


@pytest.mark.parametrize("policy", ["on-failure", "always", "unless-stopped"])
async def test_kill_is_not_a_failure_to_restart_from(machine, policy) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        cid, _ = await rig.engine.create_container(
            name="kd", config=cfg(restart_policy=RestartPolicy(name=policy)), env=[],
            actor=USER)
        await rig.engine.start(cid, USER)
        await rig.engine.kill(cid, USER, signal="SIGKILL")
        await rig.journal.wait_for(lambda s: s.containers[cid].status == "exited")
        # real time (the log's writer runs in a thread, which virtual time would outrun):
        # the first restart comes 100 ms after the exit
        await trio.sleep(0.5)
        c = rig.store.state.containers[cid]
        assert (c.status, c.exit_code, c.restart_count) == ("exited", 137, 0)
        assert not list(rig.store.read(types=["ContainerRestartedByPolicy"]))
        # the policy is not gone: after a start, the container's own failure restarts it
        await rig.engine.start(cid, USER)
        machine.runtime.exit(cid, 1)
        await rig.journal.wait_for(lambda s: s.containers[cid].restart_count == 1
                                   and s.containers[cid].status == "running")


async def test_sigkill_returns_after_the_exit_is_recorded(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        await load_busybox(rig)
        cid, _ = await rig.engine.create_container(name="kd", config=cfg(), env=[], actor=USER)
        await rig.engine.start(cid, USER)
        fake_kill = machine.runtime.kill

        async def kill_dies_later(container_id: str, signal: str) -> None:
            # as on the kernel: `runc kill` returns before the process is gone and reaped
            async def die() -> None:
                await trio.sleep(0.05)
                await fake_kill(container_id, signal)
            rig.nursery.start_soon(die)

        machine.runtime.kill = kill_dies_later  # type: ignore[method-assign]
        await rig.engine.kill(cid, USER, signal="SIGKILL")
        c = rig.store.state.containers[cid]
        assert (c.status, c.exit_code, c.pid) == ("exited", 137, 0)
