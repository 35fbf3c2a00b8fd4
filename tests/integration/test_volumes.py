"""Volumes, binds and tmpfs on the real kernel: runc + conmon running busybox containers with
the OCI mount entries made by `engine.core.volume_plan` and `engine.drivers.volumes.linux.Mounter`.

I/O: kernel. Everything lives under /tmp/shipslog-tests/vol-*/ and every mount, container,
cgroup and file is removed again (the conftest fixture checks the mount table).
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from engine.core.errors import InvalidArgument
from engine.core.oci_spec import build_spec
from engine.core.volume_plan import CREATE_HOST_PATH, MountPlan, anonymous_needed, plan_mounts
from engine.drivers.host import mountsys
from engine.drivers.runtime import cgroups
from engine.drivers.runtime.linux import LinuxRuntime, host_spec_inputs
from engine.drivers.runtime.logs import read_logs
from engine.drivers.volumes.bindsafe import BindSourceError, BindStager
from engine.drivers.volumes.linux import Mounter, VolumeStore
from engine.shell.paths import Paths
from engine.testing.rootfs import make_busybox_rootfs
from events.values import ContainerConfig, ImageConfig, MountSpec

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(
        not (shutil.which("runc") and shutil.which("conmon") and shutil.which("busybox")),
        reason="needs runc, conmon and busybox-static",
    ),
]

TESTS_DIR = Path("/tmp/shipslog-tests")


make_rootfs = make_busybox_rootfs  # a busybox root filesystem: bin/busybox, applets, /etc


def snapshot(path: Path) -> tuple[bytes, int, int, int, int]:
    """Content, mode, owner, group and mtime: what a sentinel must keep (RELIABILITY I-07)."""
    st = os.lstat(path)
    return path.read_bytes(), st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns


class Env:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.store = VolumeStore(base / "root")
        self.stager = BindStager(base / "exec" / "mounts")
        self.mounter = Mounter(self.store, self.stager)
        self.runtime = LinuxRuntime(Paths.of(base / "state", base / "exec"))
        self.cgroup_parent = f"/slg-test-{secrets.token_hex(4)}"
        self.ids: list[str] = []
        self.volume_options: dict[str, dict[str, str]] = {}

    def rootfs(self, name: str = "rootfs") -> Path:
        return make_rootfs(self.base / name)

    def plan(self, mounts: Sequence[MountSpec], image: ImageConfig | None = None) -> MountPlan:
        ids = [secrets.token_hex(32) for _ in range(anonymous_needed(mounts, image))]
        plan = plan_mounts(mounts, image, known_volumes=set(self.store.list()),
                           anonymous_ids=ids)
        for v in plan.create:
            self.store.create(v.name, self.volume_options.get(v.name))
        return plan

    def seed(self, plan: MountPlan, rootfs: Path) -> None:
        for m in plan.mounts:
            if m.kind == "volume" and m.seed:
                self.store.seed(m.source, str(rootfs), m.target,
                                self.volume_options.get(m.source))

    async def run(self, rootfs: Path, mounts: Sequence[MountSpec], cmd: Sequence[str],
                  image: ImageConfig | None = None) -> tuple[int, bytes, bytes]:
        """Plan, seed, prepare, `runc create`, release the staging mounts, start, wait."""
        cid = secrets.token_hex(32)
        self.ids.append(cid)
        plan = self.plan(mounts, image)
        self.seed(plan, rootfs)
        extra = self.mounter.prepare(cid, plan, str(rootfs), volume_options=self.volume_options)
        spec = self.spec(cid, rootfs, cmd, extra)
        if plan.rootfs_propagation:
            spec["linux"]["rootfsPropagation"] = plan.rootfs_propagation
        log = self.base / "logs" / f"{cid}.log"
        try:
            await self.runtime.create(cid, spec, log_path=str(log))
        finally:
            # The container holds its own copies of the mounts once `runc create` is done.
            self.mounter.release(cid)
        await self.runtime.start(cid)
        rec = await self.runtime.wait_exit(cid)
        await self.runtime.delete(cid, force=True)
        out = b"".join(b for s, _, b in read_logs(log) if s == "stdout")
        err = b"".join(b for s, _, b in read_logs(log) if s == "stderr")
        return rec.exit_code, out, err

    def spec(self, cid: str, rootfs: Path, cmd: Sequence[str],
             extra: list[dict[str, Any]]) -> dict[str, Any]:
        config = ContainerConfig(image="busybox", image_id="sha256:" + "0" * 64, cmd=tuple(cmd))
        return build_spec(config, None, env=[], rootfs=str(rootfs), hostname=cid[:12],
                          netns_path=None, cgroups_path=f"{self.cgroup_parent}/{cid}",
                          extra_mounts=extra, **host_spec_inputs(str(rootfs)))

    async def cleanup(self) -> None:
        for st in await self.runtime.list():
            await self.runtime.delete(st.id, force=True)
        for cid in self.ids:
            self.stager.release(cid)
        for name in self.store.list():
            self.store.unmount(name)
        cgroups.remove_empty(self.cgroup_parent)
        left = [m.target for m in mountsys.read_mountinfo()
                if m.target.startswith(str(self.base) + "/")]
        assert left == [], f"mounts left: {left}"
        shutil.rmtree(self.base)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    TESTS_DIR.mkdir(parents=True, exist_ok=True)
    e = Env(Path(tempfile.mkdtemp(prefix="vol-", dir=TESTS_DIR)))
    try:
        yield e
    finally:
        await e.cleanup()


async def test_named_volume_outlives_its_container(env: Env) -> None:
    rootfs = env.rootfs()
    data = [MountSpec(type="volume", target="/data", source="shared-vol")]
    code, _, err = await env.run(rootfs, data, ["sh", "-c", "echo kept > /data/f; mkdir /data/d"])
    assert code == 0, err
    assert env.store.list() == ["shared-vol"]
    assert Path(env.store.path("shared-vol"), "f").read_text() == "kept\n"
    # A second container (another rootfs, even) sees it; a read-only mount refuses writes.
    code, out, _ = await env.run(env.rootfs("rootfs2"), data, ["cat", "/data/f"])
    assert (code, out) == (0, b"kept\n")
    ro = [MountSpec(type="volume", target="/data", source="shared-vol", read_only=True)]
    code, _, err = await env.run(rootfs, ro, ["sh", "-c", "echo x > /data/g"])
    assert code != 0 and b"Read-only" in err
    assert not Path(env.store.path("shared-vol"), "g").exists()
    env.store.remove("shared-vol")
    assert env.store.list() == []
    env.store.remove("shared-vol")  # idempotent


async def test_bind_mounts_read_write_and_read_only(env: Env) -> None:
    rootfs = env.rootfs()
    host = env.base / "host-dir"
    host.mkdir()
    (host / "in").write_text("from host\n")
    hostfile = env.base / "host-file"
    hostfile.write_text("single file\n")
    before = snapshot(host / "in")
    mounts = [MountSpec(type="bind", source=str(host), target="/rw"),
              MountSpec(type="bind", source=str(hostfile), target="/etc/one-file", read_only=True)]
    code, out, err = await env.run(
        rootfs, mounts, ["sh", "-c", "cat /rw/in /etc/one-file; echo back > /rw/out"])
    assert (code, out) == (0, b"from host\nsingle file\n"), err
    assert (host / "out").read_text() == "back\n"
    assert (rootfs / "etc" / "one-file").is_file()  # the mount point, made in-root
    ro = [MountSpec(type="bind", source=str(host), target="/ro", read_only=True)]
    code, _, err = await env.run(rootfs, ro, ["sh", "-c", "echo x > /ro/in"])
    assert code != 0 and b"Read-only" in err
    assert snapshot(host / "in") == before


async def test_bind_source_symlink_or_missing_is_refused(env: Env) -> None:
    rootfs = env.rootfs()
    (env.base / "real").mkdir()
    (env.base / "link").symlink_to(env.base / "real")
    with pytest.raises(BindSourceError, match="symbolic link") as exc:
        await env.run(rootfs, [MountSpec(type="bind", source=str(env.base / "link"),
                                         target="/x")], ["true"])
    assert "real path" in exc.value.hint
    with pytest.raises(BindSourceError, match="symbolic link"):
        await env.run(rootfs, [MountSpec(type="bind", source=str(env.base / "link" / "sub"),
                                         target="/x")], ["true"])
    with pytest.raises(BindSourceError, match="does not exist"):
        await env.run(rootfs, [MountSpec(type="bind", source=str(env.base / "nope"),
                                         target="/x")], ["true"])
    assert env.runtime and await env.runtime.list() == []


async def test_v_bind_creates_a_missing_host_dir_but_never_through_a_symlink(env: Env) -> None:
    """`docker run -v /missing/dir:/x` makes /missing/dir (0755); `--mount` does not; a
    symlink on the way is refused, and nothing is created at the place it points to."""
    rootfs = env.rootfs()
    made = env.base / "made" / "deep"
    spec = MountSpec(type="bind", source=str(made), target="/x", options=(CREATE_HOST_PATH,))
    code, out, _ = await env.run(rootfs, [spec], ["sh", "-c", "echo hi > /x/f; echo ok"])
    assert code == 0 and out.strip() == b"ok"
    assert (made / "f").read_text() == "hi\n"
    assert made.stat().st_mode & 0o777 == 0o755
    (env.base / "elsewhere").mkdir()
    (env.base / "hop").symlink_to(env.base / "elsewhere")
    hostile = MountSpec(type="bind", source=str(env.base / "hop" / "new"), target="/x",
                        options=(CREATE_HOST_PATH,))
    with pytest.raises(BindSourceError, match="symbolic link"):
        await env.run(env.rootfs("rootfs2"), [hostile], ["true"])
    assert list((env.base / "elsewhere").iterdir()) == []


async def test_tmpfs_with_size(env: Env) -> None:
    rootfs = env.rootfs()
    mounts = [MountSpec(type="tmpfs", target="/scratch", tmpfs_size=1 << 20,
                        options=("mode=1777",))]
    script = ("grep ' /scratch ' /proc/mounts; stat -c %a /scratch; "
              "dd if=/dev/zero of=/scratch/f bs=1024 count=2048 2>/dev/null; echo dd=$?")
    code, out, _ = await env.run(rootfs, mounts, ["sh", "-c", script])
    assert code == 0
    line, mode, dd = out.decode().splitlines()
    fields = line.split()
    assert fields[2] == "tmpfs" and "size=1024k" in fields[3] and "noexec" in fields[3]
    assert mode == "1777"
    assert dd != "dd=0"  # 2 MiB do not fit in 1 MiB


async def test_image_volume_becomes_a_seeded_anonymous_volume(env: Env) -> None:
    rootfs = env.rootfs()
    app = rootfs / "var" / "lib" / "app"
    app.mkdir(parents=True)
    (app / "seed.txt").write_text("from the image\n")
    os.chown(app, 1000, 1000)
    app.chmod(0o750)
    image = ImageConfig(volumes=("/var/lib/app",))
    code, out, _ = await env.run(rootfs, [], ["sh", "-c", "cat /var/lib/app/seed.txt; "
                                              "echo more >> /var/lib/app/seed.txt"], image)
    assert (code, out) == (0, b"from the image\n")
    (name,) = env.store.list()
    assert len(name) == 64
    data = Path(env.store.path(name))
    assert (data / "seed.txt").read_text() == "from the image\nmore\n"
    st = data.stat()  # the volume root takes the image dir's owner and mode, as in Docker
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o750)
    assert (app / "seed.txt").read_text() == "from the image\n"  # the image is untouched


async def test_local_tmpfs_volume_is_mounted_at_first_use(env: Env) -> None:
    rootfs = env.rootfs()
    env.volume_options["ramvol"] = {"type": "tmpfs", "device": "tmpfs", "o": "size=2m,mode=700"}
    mounts = [MountSpec(type="volume", source="ramvol", target="/ram")]
    code, out, _ = await env.run(rootfs, mounts, ["sh", "-c", "grep ' /ram ' /proc/mounts; "
                                                  "echo in-ram > /ram/f"])
    assert code == 0 and b"tmpfs" in out and b"size=2048k" in out
    assert env.store.is_mounted("ramvol")
    code, out, _ = await env.run(rootfs, mounts, ["cat", "/ram/f"])
    assert (code, out) == (0, b"in-ram\n")
    env.store.unmount("ramvol")
    assert not env.store.is_mounted("ramvol")
    assert not Path(env.store.path("ramvol"), "f").exists()  # it lived in the tmpfs


async def test_local_bind_volume_and_remove_keeps_the_host_dir(env: Env) -> None:
    rootfs = env.rootfs()
    device = env.base / "device-dir"
    device.mkdir()
    (device / "keep").write_text("host data\n")
    before = snapshot(device / "keep")
    env.volume_options["bindvol"] = {"type": "none", "o": "bind", "device": str(device)}
    mounts = [MountSpec(type="volume", source="bindvol", target="/b")]
    code, out, _ = await env.run(rootfs, mounts, ["sh", "-c", "cat /b/keep; echo new > /b/n"])
    assert (code, out) == (0, b"host data\n")
    assert (device / "n").read_text() == "new\n"
    assert env.store.is_mounted("bindvol")
    env.store.remove("bindvol")  # unmounts first: removing must never delete through a bind
    assert snapshot(device / "keep") == before and (device / "n").exists()
    assert "bindvol" not in env.store.list()


async def test_local_bind_volume_device_symlink_is_refused(env: Env) -> None:
    (env.base / "real").mkdir()
    (env.base / "link").symlink_to(env.base / "real")
    env.store.create("v1", {"type": "none", "o": "bind", "device": str(env.base / "link")})
    with pytest.raises(BindSourceError, match="symbolic link"):
        env.store.mount("v1", {"type": "none", "o": "bind", "device": str(env.base / "link")})
    assert not env.store.is_mounted("v1")


def test_volume_names_are_checked_before_any_disk_access() -> None:
    root = TESTS_DIR / f"never-made-{secrets.token_hex(4)}"
    store = VolumeStore(root)
    for bad in ("../x", ".", "..", "a/", "a.", "x" * 10_000, "a\x00b", "a\nb", "/etc"):
        for call in (store.path, store.create, store.remove, store.exists):
            with pytest.raises(InvalidArgument):
                call(bad)
    assert not root.exists()


async def test_seed_copies_symlinks_as_symlinks_and_keeps_metadata(env: Env) -> None:
    rootfs = env.rootfs()
    sentinel_dir = env.base / "host-sentinels"
    sentinel_dir.mkdir()
    secret = sentinel_dir / "secret"
    secret.write_text("host secret\n")
    secret.chmod(0o640)
    sentinels = {p: snapshot(p) for p in (secret, Path("/etc/passwd"))}

    img = rootfs / "srv" / "app"
    (img / "sub" / "deeper").mkdir(parents=True)
    (img / "file").write_text("hello\n")
    os.chown(img / "file", 123, 456)
    (img / "file").chmod(0o4755)
    os.utime(img / "file", ns=(1_000_000_000, 1_234_567_890_123))
    os.link(img / "file", img / "sub" / "hardlink")
    (img / "sub" / "deeper" / "x").write_bytes(os.urandom(100_000))
    (img / "passwd-link").symlink_to("/etc/passwd")
    (img / "secret-link").symlink_to(str(secret))
    (img / "sub" / "up").symlink_to("../../../../../../..")
    os.mkfifo(img / "fifo")
    (img / "fifo").chmod(0o620)
    os.lchown(img / "passwd-link", 7, 8)

    env.store.create("seeded")
    stats = env.store.seed("seeded", str(rootfs), "/srv/app")
    assert stats is not None and stats.symlinks == 3 and stats.files == 2
    data = Path(env.store.path("seeded"))
    assert os.readlink(data / "passwd-link") == "/etc/passwd"
    assert os.readlink(data / "secret-link") == str(secret)
    assert os.readlink(data / "sub" / "up") == "../../../../../../.."
    assert os.lstat(data / "passwd-link")[4:6] == (7, 8)
    st = os.stat(data / "file")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns) == (
        0o4755, 123, 456, 1_234_567_890_123)
    assert os.stat(data / "sub" / "hardlink").st_ino == st.st_ino
    assert (data / "sub" / "deeper" / "x").read_bytes() == (
        img / "sub" / "deeper" / "x").read_bytes()
    assert stat.S_ISFIFO(os.lstat(data / "fifo").st_mode)
    assert stat.S_IMODE(os.lstat(data / "fifo").st_mode) == 0o620
    # Not empty any more: a second seed copies nothing (and re-follows nothing).
    assert env.store.seed("seeded", str(rootfs), "/srv/app") is None
    for p, snap in sentinels.items():
        assert snapshot(p) == snap
    # Inside a container the links resolve in its own root, never to the host's files.
    mounts = [MountSpec(type="volume", source="seeded", target="/v")]
    code, out, _ = await env.run(rootfs, mounts, ["sh", "-c", "cat /v/secret-link; echo rc=$?"])
    assert code == 0 and b"host secret" not in out and b"rc=1" in out


async def test_seed_through_a_target_symlink_stays_in_root(env: Env) -> None:
    """VOLUME /data where the image's /data is a symlink to a host directory: the seed
    resolves it inside the rootfs (where it does not exist) and copies nothing."""
    rootfs = env.rootfs()
    host = env.base / "host-secrets"
    host.mkdir()
    (host / "key").write_text("do not copy\n")
    (rootfs / "data").symlink_to(str(host))
    env.store.create("v2")
    assert env.store.seed("v2", str(rootfs), "/data") is None
    assert os.listdir(env.store.path("v2")) == []
    assert not (rootfs / str(host).lstrip("/")).exists()  # resolving creates nothing


async def test_targets_under_runtime_mounts_and_crash_sweep(env: Env) -> None:
    """A bind below /dev lands in the /dev tmpfs runc makes, not in the image's /dev; staging
    left behind by a crash (prepare without release) is swept at daemon start."""
    rootfs = env.rootfs()
    (rootfs / "dev" / "fuse").symlink_to("/etc")  # the image's /dev is hidden by runc's tmpfs
    src = env.base / "src"
    src.mkdir()
    (src / "f").write_text("in dev\n")
    mounts = [MountSpec(type="bind", source=str(src), target="/dev/fuse/sub")]
    code, out, _ = await env.run(rootfs, mounts, ["cat", "/dev/fuse/sub/f"])
    assert (code, out) == (0, b"in dev\n")
    assert not (rootfs / "etc" / "sub").exists()
    cids = sorted(secrets.token_hex(32) for _ in range(2))
    for cid in cids:
        env.mounter.prepare(cid, plan_mounts(mounts), str(rootfs))
    assert all(env.stager.staged(cid) for cid in cids)
    assert env.stager.sweep() == cids
    assert env.stager.sweep() == [] and not any(env.stager.staged(c) for c in cids)


async def test_concurrent_first_use_mounts_one_tmpfs(env: Env) -> None:
    opts = {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    env.store.create("racy", opts)
    with ThreadPoolExecutor(8) as pool:
        paths = set(pool.map(lambda _: env.store.mount("racy", opts), range(32)))
    assert paths == {env.store.path("racy")}
    data = env.store.path("racy")
    assert [m.target for m in mountsys.read_mountinfo()].count(data) == 1
    assert env.store.mounted() == {"racy"}
    env.store.unmount("racy")
    assert env.store.mounted() == set()
