"""The files service (engine/shell/files.py) on the whole engine on fakes: a stopped
container's rootfs is mounted for a copy and unmounted afterwards, and a mounted one is left as
it is."""

from __future__ import annotations

import pytest

from engine.drivers.host import failpoints
from engine.testing.rig import LAYER, Machine, load_busybox, open_rig
from events.envelope import Actor
from events.values import ContainerConfig

USER = Actor(uid=1000, gid=1000, pid=42, command=("shipslog", "cp"))


@pytest.fixture
def machine(tmp_path):  # type: ignore[no-untyped-def]
    failpoints.reset()
    yield Machine(db=tmp_path / "events.db")
    failpoints.reset()


async def _created(rig) -> str:  # type: ignore[no-untyped-def]
    await load_busybox(rig)
    cid, _ = await rig.engine.create_container(
        name="box", config=ContainerConfig(image="busybox", image_id="", cmd=("true",)),
        env=[], actor=USER)
    return str(cid)


async def test_a_stopped_container_is_mounted_for_the_copy_only(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        cid = await _created(rig)
        machine.snapshots.unmount(cid)  # as after a daemon restart
        machine.faults.calls.clear()
        async with rig.files.container_root("box") as (c, rootfs):
            assert c.id == cid
            assert rootfs == f"/fake/containers/{cid}/rootfs"
            assert cid in machine.snapshots.mounts
            assert machine.snapshots.mounts[cid] == [f"/fake/layers/{LAYER}"]
        assert cid not in machine.snapshots.mounts
        assert [n for n, _ in machine.faults.calls] == ["snapshots.prepare",
                                                        "snapshots.unmount"]


async def test_a_mounted_rootfs_is_left_mounted(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        cid = await _created(rig)
        assert cid in machine.snapshots.mounts
        machine.faults.calls.clear()
        async with rig.files.container_root(cid) as (_, rootfs):
            assert rootfs.endswith("/rootfs")
        assert cid in machine.snapshots.mounts
        assert machine.faults.calls == []


async def test_paths_of_a_container(machine) -> None:  # type: ignore[no-untyped-def]
    async with open_rig(machine) as rig:
        cid = await _created(rig)
        c = rig.store.state.containers[cid]
        assert rig.files.upper_dir(cid) == f"/fake/containers/{cid}/upper"
        assert rig.files.layer_paths(c) == [f"/fake/layers/{LAYER}"]
        assert rig.files.volume_dir("data") == "/fake/volumes/data/_data"
