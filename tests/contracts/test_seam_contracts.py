"""Contract suites for the kernel seams (issue 16): each Protocol (engine/drivers/<seam>/seam.py)
is checked with the same assertions against its recording fake (engine/testing/fakes.py) and
against the real driver the daemon wires (engine/daemon/wiring.py), so a fake
cannot drift from what the kernel does without a test failing. The engine-on-fakes tests are
only as true as these contracts.

I/O: the fakes do none; the real secret store writes files under tmp_path; the real
snapshotter mounts overlayfs, the real volume driver makes volume directories, and the real
runtime runs busybox containers under runc and conmon (those are marked `kernel`, and clean
up every mount, container and cgroup they make).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from engine.core.errors import NotFound, ShipslogError
from engine.core.volume_plan import MountPlan, PlannedMount
from engine.drivers.runtime.seam import Runtime
from engine.drivers.secrets.seam import Secrets
from engine.drivers.snapshots.seam import Snapshots
from engine.drivers.volumes.seam import Volumes
from engine.testing.fakes import FakeRuntime, FakeSecrets, FakeSnapshots, FakeVolumes, Faults
from engine.testing.rootfs import make_busybox_rootfs

ROOT = os.geteuid() == 0
REAL = pytest.param("real", marks=[pytest.mark.kernel,
                                   pytest.mark.skipif(not ROOT, reason="needs root")])


def new_id() -> str:
    return secrets.token_hex(32)


# ---------------------------------------------------------------------------------- Secrets


@pytest.fixture(params=["fake", "real"])
def secret_store(request: pytest.FixtureRequest, tmp_path: Path) -> Secrets:
    if request.param == "fake":
        return FakeSecrets()
    from engine.drivers.secrets.store import SecretStore

    return SecretStore(tmp_path / "secrets")


def test_secrets_key_is_32_bytes_and_stable(secret_store: Secrets) -> None:
    key = secret_store.key()
    assert len(key) == 32 and secret_store.key() == key


def test_secrets_round_trip_replace_and_wipe(secret_store: Secrets) -> None:
    owner = new_id()
    pem = "KEY=-----BEGIN KEY-----\nabc\n-----END KEY-----"  # values may span lines
    secret_store.put(owner, ["A=1", pem])
    assert secret_store.get(owner) == ["A=1", pem]
    secret_store.put(owner, ["B=2"])
    assert secret_store.get(owner) == ["B=2"]
    assert secret_store.wipe(owner) is True
    assert secret_store.wipe(owner) is False


def test_secrets_of_an_unknown_owner_are_not_found(secret_store: Secrets) -> None:
    # The supervisor asks only for containers created with env: an owner with none stored
    # is damage to report, never an empty environment to start with.
    with pytest.raises(NotFound):
        secret_store.get(new_id())


def test_secrets_refuse_what_the_environment_cannot_hold(secret_store: Secrets) -> None:
    with pytest.raises(ShipslogError):
        secret_store.put(new_id(), ["HOME=/root\0evil"])


# -------------------------------------------------------------------------------- Snapshots


@pytest.fixture(params=["fake", REAL])
def snapshots(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Snapshots]:
    if request.param == "fake":
        yield FakeSnapshots(Faults(), layer_exists=os.path.isdir)
        return
    from engine.drivers.snapshots.overlay import Snapshotter

    real = Snapshotter(tmp_path / "root")
    try:
        yield real
    finally:
        for cid in real.mounted() | set(real.list_snapshots()):
            real.remove(cid)
        assert real.mounted() == set()


@pytest.fixture
def layers(tmp_path: Path) -> list[str]:
    out = []
    for i in range(2):
        d = tmp_path / f"layer{i}"
        d.mkdir()
        (d / f"file{i}").write_text(str(i))
        out.append(str(d))
    return out


def test_snapshot_prepare_is_idempotent_and_mounted(snapshots: Snapshots,
                                                    layers: list[str]) -> None:
    cid = new_id()
    path = snapshots.prepare(cid, layers)
    assert os.path.isabs(path)
    assert snapshots.prepare(cid, layers) == path
    assert cid in snapshots.mounted()


def test_snapshot_names_its_rootfs_and_dir(snapshots: Snapshots, layers: list[str]) -> None:
    """Where prepare mounts is where `rootfs` says (the files service reaches it there), and
    it is inside the container's snapshot dir, beside the writable layer."""
    cid = new_id()
    path = snapshots.prepare(cid, layers)
    assert str(snapshots.rootfs(cid)) == path
    assert snapshots.rootfs(cid).parent == snapshots.container_dir(cid)
    assert snapshots.container_dir(cid).name == cid


def test_snapshot_unmount_then_prepare_again(snapshots: Snapshots, layers: list[str]) -> None:
    cid = new_id()
    path = snapshots.prepare(cid, layers)
    snapshots.unmount(cid)
    snapshots.unmount(cid)  # idempotent
    assert cid not in snapshots.mounted()
    assert snapshots.prepare(cid, layers) == path
    assert cid in snapshots.mounted()


def test_snapshot_remove_is_idempotent_and_independent(snapshots: Snapshots,
                                                       layers: list[str]) -> None:
    a, b = new_id(), new_id()
    snapshots.prepare(a, layers)
    snapshots.prepare(b, layers[:1])
    snapshots.remove(a)
    snapshots.remove(a)
    assert snapshots.mounted() == {b}
    snapshots.remove(b)
    assert snapshots.mounted() == set()


def test_snapshot_of_a_missing_layer_is_refused(snapshots: Snapshots, tmp_path: Path) -> None:
    cid = new_id()
    with pytest.raises(ShipslogError):
        snapshots.prepare(cid, [str(tmp_path / "no-such-layer")])
    assert cid not in snapshots.mounted()


def test_snapshot_of_a_malformed_id_is_refused(snapshots: Snapshots, layers: list[str]) -> None:
    with pytest.raises(ShipslogError):
        snapshots.prepare("../escape", layers)
    assert snapshots.mounted() == set()


# ---------------------------------------------------------------------------------- Volumes


@pytest.fixture(params=["fake", REAL])
def volumes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Volumes]:
    if request.param == "fake":
        yield FakeVolumes(Faults())
        return
    from engine.drivers.volumes.linux import LocalVolumes
    from engine.shell.paths import Paths

    paths = Paths.of(tmp_path / "root", tmp_path / "exec")
    paths.ensure()
    yield LocalVolumes(paths.root, paths.exec_root)


def volume_plan(*mounts: PlannedMount) -> MountPlan:
    return MountPlan(mounts=mounts, create=(), specs=())


def test_volume_prepare_gives_an_entry_per_mount(volumes: Volumes, tmp_path: Path) -> None:
    cid = new_id()
    volumes.create("data", {})
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    plan = volume_plan(PlannedMount(kind="volume", target="/data", source="data"),
                       PlannedMount(kind="tmpfs", target="/scratch", options=("size=1m",)))
    entries = volumes.prepare(cid, plan, str(rootfs), {"data": {}})
    assert [(e["destination"], e["type"]) for e in entries] == [("/data", "bind"),
                                                                ("/scratch", "tmpfs")]
    volumes.release(cid)
    volumes.release(cid)  # idempotent
    volumes.remove("data")


def test_volume_path_is_its_data_dir(volumes: Volumes) -> None:
    name = "v" + new_id()[:12]
    volumes.create(name, {})
    path = volumes.path(name)
    assert os.path.isabs(path) and path.endswith(f"/{name}/_data")


def test_volume_prepare_of_a_missing_volume_is_not_found(volumes: Volumes,
                                                         tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    volumes.create("gone", {})
    volumes.remove("gone")
    plan = volume_plan(PlannedMount(kind="volume", target="/data", source="gone"))
    with pytest.raises(NotFound):
        volumes.prepare(new_id(), plan, str(rootfs), {"gone": {}})


# ---------------------------------------------------------------------------------- Runtime


@pytest.fixture(scope="module")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Busybox, with /ctl where a test leaves a container's exit code (see `make_exit`)."""
    return make_busybox_rootfs(tmp_path_factory.mktemp("rootfs"), extra_dirs=("ctl",))


class RuntimeRig:
    """One runtime and what a contract test needs around it: a spec per container, and a
    way to make a container's process end by itself with a given code."""

    def __init__(self, runtime: Runtime, rootfs: Path | None, tmp: Path) -> None:
        self.runtime = runtime
        self.rootfs = rootfs
        self.tmp = tmp
        self.cgroup_parent = f"/slg-contract-{secrets.token_hex(4)}"
        self.ids: list[str] = []

    def spec(self, cid: str) -> dict[str, Any]:
        if self.rootfs is None:
            return {}
        from engine.core.oci_spec import build_spec
        from engine.drivers.runtime.linux import host_spec_inputs
        from events.values import ContainerConfig

        # The process waits for its exit code to appear under /ctl (see `make_exit`).
        script = f"while [ ! -e /ctl/{cid} ]; do sleep 0.05; done; exit $(cat /ctl/{cid})"
        config = ContainerConfig(image="busybox", image_id="sha256:" + "0" * 64,
                                 cmd=("sh", "-c", script))
        return build_spec(config, None, env=[], rootfs=str(self.rootfs), hostname=cid[:12],
                          netns_path=None, cgroups_path=f"{self.cgroup_parent}/{cid}",
                          **host_spec_inputs(str(self.rootfs)))

    async def create(self) -> str:
        cid = new_id()
        self.ids.append(cid)
        await self.runtime.create(cid, self.spec(cid), tty=False, open_stdin=False,
                                  stdin_once=False, log_path=str(self.tmp / f"{cid}.log"),
                                  log_opts={})
        return cid

    def exec_process(self, cid: str, line: str, code: int) -> dict[str, Any]:
        """A process that prints `line` and ends with `code` (the fake is told so)."""
        cmd = ("sh", "-c", f"echo {line}; exit {code}")
        if isinstance(self.runtime, FakeRuntime):
            self.runtime.exec_script.setdefault(cid, []).append((f"{line}\n".encode(), code))
            return {"args": list(cmd)}
        from engine.core.oci_spec import exec_process
        from events.values import ContainerConfig

        config = ContainerConfig(image="busybox", image_id="sha256:" + "0" * 64, cmd=("sh",))
        return exec_process(config, [], [], cmd=cmd)

    def make_exit(self, cid: str, code: int) -> None:
        if isinstance(self.runtime, FakeRuntime):
            self.runtime.exit(cid, code)
        else:
            assert self.rootfs is not None
            (self.rootfs / "ctl" / cid).write_text(str(code))


@pytest.fixture(params=["fake", REAL])
async def rig(request: pytest.FixtureRequest, tmp_path: Path,
              busybox_rootfs: Path) -> AsyncIterator[RuntimeRig]:
    if request.param == "fake":
        yield RuntimeRig(FakeRuntime(Faults()), None, tmp_path)
        return
    if not (shutil.which("runc") and shutil.which("conmon")):
        pytest.skip("needs runc and conmon")
    from engine.drivers.runtime import cgroups
    from engine.drivers.runtime.linux import LinuxRuntime
    from engine.shell.paths import Paths

    paths = Paths.of(tmp_path / "root", tmp_path / "exec")
    paths.ensure()
    real = RuntimeRig(LinuxRuntime(paths), busybox_rootfs, tmp_path)
    try:
        yield real
    finally:
        for cid in real.ids:
            await real.runtime.delete(cid, force=True)
            (busybox_rootfs / "ctl" / cid).unlink(missing_ok=True)
        cgroups.remove_empty(real.cgroup_parent)
        assert await real.runtime.list() == []
        assert cgroups.controller_dirs(real.cgroup_parent) == []


async def status(rig: RuntimeRig, cid: str) -> str | None:
    st = await rig.runtime.state(cid)
    return None if st is None else st.status


async def test_runtime_lifecycle_states(rig: RuntimeRig) -> None:
    cid = await rig.create()
    assert await status(rig, cid) == "created"
    assert cid in {s.id for s in await rig.runtime.list()}
    pid = await rig.runtime.start(cid)
    assert pid > 0 and await status(rig, cid) == "running"
    await rig.runtime.pause(cid)
    assert await status(rig, cid) == "paused"
    await rig.runtime.resume(cid)
    assert await status(rig, cid) == "running"
    await rig.runtime.kill(cid, "SIGKILL")
    rec = await rig.runtime.wait_exit(cid)
    assert (rec.exit_code, rec.signal) == (137, "SIGKILL")
    assert rig.runtime.exit_record(cid) == rec
    assert await status(rig, cid) == "stopped"
    await rig.runtime.delete(cid)
    assert await status(rig, cid) is None
    assert cid not in {s.id for s in await rig.runtime.list()}


async def test_runtime_exit_by_itself_is_recorded(rig: RuntimeRig) -> None:
    cid = await rig.create()
    await rig.runtime.start(cid)
    rig.make_exit(cid, 3)
    with trio.fail_after(30):
        rec = await rig.runtime.wait_exit(cid)
    assert (rec.exit_code, rec.signal, rec.oom_killed) == (3, "", False)
    assert rig.runtime.exit_record(cid) == rec


async def test_runtime_refuses_to_resume_what_is_not_paused(rig: RuntimeRig) -> None:
    # (runc pauses a created container; Docker refuses that a level up, in core/, so the
    # seam does not promise either way.)
    cid = await rig.create()
    await rig.runtime.start(cid)
    with pytest.raises(ShipslogError):
        await rig.runtime.resume(cid)
    assert await status(rig, cid) == "running"
    with pytest.raises(ShipslogError):
        await rig.runtime.pause(new_id())


async def test_runtime_force_delete_of_a_running_container(rig: RuntimeRig) -> None:
    cid = await rig.create()
    await rig.runtime.start(cid)
    await rig.runtime.delete(cid, force=True)
    assert await status(rig, cid) is None


async def test_runtime_knows_nothing_of_an_unknown_container(rig: RuntimeRig) -> None:
    cid = new_id()
    assert await rig.runtime.state(cid) is None
    assert rig.runtime.exit_record(cid) is None
    with pytest.raises(ShipslogError):
        await rig.runtime.start(cid)


async def _read_all(stream: Any) -> bytes:
    out = bytearray()
    while data := await stream.receive_some(65536):
        out += data
    return bytes(out)


async def test_runtime_exec_runs_beside_the_container(rig: RuntimeRig) -> None:
    cid = await rig.create()
    await rig.runtime.start(cid)
    process = rig.exec_process(cid, "from-exec", 4)
    with trio.fail_after(30):
        async with rig.runtime.open_exec(cid, process, stdin=False) as ep:
            assert not ep.tty
            assert await ep.started() > 0
            assert await _read_all(ep.stdout) == b"from-exec\n"
            assert await ep.wait() == 4
            assert ep.returncode == 4
    assert await status(rig, cid) == "running"  # the container's own process runs on


async def test_runtime_exec_without_a_terminal_cannot_be_resized(rig: RuntimeRig) -> None:
    cid = await rig.create()
    await rig.runtime.start(cid)
    with trio.fail_after(30):
        async with rig.runtime.open_exec(cid, rig.exec_process(cid, "x", 0),
                                         stdin=False) as ep:
            with pytest.raises(ShipslogError):
                ep.resize(30, 100)
            await ep.wait()


async def test_runtime_top_lists_the_container_process(rig: RuntimeRig) -> None:
    cid = await rig.create()
    pid = await rig.runtime.start(cid)
    titles, rows = await rig.runtime.top(cid)
    assert "PID" in titles
    assert str(pid) in {row[titles.index("PID")] for row in rows}


async def test_runtime_resize_of_a_running_container(rig: RuntimeRig) -> None:
    cid = await rig.create()
    await rig.runtime.start(cid)
    await rig.runtime.resize(cid, 30, 100)  # no terminal: nothing to size, and no error
    assert await status(rig, cid) == "running"
