"""Mount escapes on the real kernel (RELIABILITY S-03, S-04): bind sources swapped for
symlinks while we mount them, mount targets that are symlinks to host paths, traversal names.
Host sentinel files must keep their content, mode, owner and mtime throughout.

I/O: kernel. Everything lives under /tmp/shipslog-tests/esc-*/; every mount is undone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from engine.core.errors import InvalidArgument
from engine.core.oci_spec import build_spec
from engine.core.volume_plan import plan_mounts
from engine.drivers.host import mountsys
from engine.drivers.runtime import cgroups
from engine.drivers.runtime.linux import LinuxRuntime, host_spec_inputs
from engine.drivers.runtime.logs import read_logs
from engine.drivers.volumes import bindsafe
from engine.drivers.volumes.bindsafe import BindSourceError, BindStager
from engine.drivers.volumes.linux import Mounter, VolumeStore
from engine.shell.paths import Paths
from engine.testing.rootfs import make_busybox_rootfs
from events.values import ContainerConfig, MountSpec

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(
        not (shutil.which("runc") and shutil.which("conmon") and shutil.which("busybox")),
        reason="needs runc, conmon and busybox-static",
    ),
]

TESTS_DIR = Path("/tmp/shipslog-tests")
FLIPS = 10_000  # RELIABILITY S-04: at least 10^4 race iterations
RENAME_EXCHANGE = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def exchange(a: Path, b: Path) -> None:
    """renameat2(RENAME_EXCHANGE): swap two names atomically, so the path always exists."""
    if _libc.renameat2(-100, os.fsencode(a), -100, os.fsencode(b), RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def snapshot(path: Path) -> tuple[bytes, int, int, int, int]:
    st = os.lstat(path)
    return path.read_bytes(), st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns


class Flipper:
    """A thread swapping `path` with `other` (a symlink) until stopped."""

    def __init__(self, path: Path, other: Path) -> None:
        self.path, self.other = path, other
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            exchange(self.path, self.other)
            self.count += 1

    def __enter__(self) -> Flipper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.path.is_symlink():  # leave the real directory in place
            exchange(self.path, self.other)


@pytest.fixture
def base() -> Iterator[Path]:
    TESTS_DIR.mkdir(parents=True, exist_ok=True)
    b = Path(tempfile.mkdtemp(prefix="esc-", dir=TESTS_DIR))
    try:
        yield b
    finally:
        left = [m.target for m in mountsys.read_mountinfo() if m.target.startswith(f"{b}/")]
        for target in sorted(left, key=len):
            try:
                mountsys.umount(target, detach=True)
            except OSError:
                pass
        assert left == [], f"mounts left: {left}"
        shutil.rmtree(b)


@pytest.fixture
def sentinels(base: Path) -> Iterator[Path]:
    """A host directory of files no mount may expose or change."""
    d = base / "host-sentinels"
    d.mkdir()
    (d / "secret").write_text("host secret\n")
    (d / "secret").chmod(0o600)
    (d / "src").mkdir()  # what a swapped parent leads to
    (d / "src" / "secret").write_text("host secret too\n")
    before = {p: snapshot(p) for p in (d / "secret", d / "src" / "secret", Path("/etc/passwd"))}
    yield d
    assert {p: snapshot(p) for p in before} == before
    assert sorted(os.listdir(d)) == ["secret", "src"]
    assert os.listdir(d / "src") == ["secret"]


def race_dirs(base: Path, sentinels: Path, *, swap_parent: bool) -> tuple[Path, Path, Path]:
    """(source path to mount, path to flip, the symlink it flips with). The real source holds
    `marker`; through the symlink the same path reaches the sentinels."""
    race = base / "race"
    (race / "p" / "src").mkdir(parents=True)
    (race / "p" / "src" / "marker").write_text("the real source\n")
    if swap_parent:
        (race / "evil").symlink_to(sentinels)
        return race / "p" / "src", race / "p", race / "evil"
    (race / "p" / "evil").symlink_to(sentinels)
    return race / "p" / "src", race / "p" / "src", race / "p" / "evil"


@pytest.mark.parametrize("use_openat2", [True, False], ids=["openat2", "o_path-walk"])
@pytest.mark.parametrize("swap_parent", [False, True], ids=["swap-last", "swap-parent"])
def test_swapped_bind_source_never_mounts_the_symlink_target(
        base: Path, sentinels: Path, use_openat2: bool, swap_parent: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bindsafe, "_have_openat2", use_openat2)
    source, flip, link = race_dirs(base, sentinels, swap_parent=swap_parent)
    real_ino = os.stat(source).st_ino
    stager = BindStager(base / "exec")
    cid = secrets.token_hex(32)
    mounted = refused = attempts = 0
    with Flipper(flip, link) as flipper:
        while flipper.count < FLIPS or attempts < 1000:
            attempts += 1
            try:
                staged = stager.stage(cid, 0, str(source), read_only=True)
            except BindSourceError:
                refused += 1
                continue
            try:
                assert os.stat(staged.path).st_ino == real_ino
                assert os.listdir(staged.path) == ["marker"]
                mounted += 1
            finally:
                stager.release(cid)
    print(f"\n{flipper.count} flips, {attempts} attempts: {mounted} mounted the real source, "
          f"{refused} refused, 0 reached the symlink's target")
    assert flipper.count >= FLIPS and mounted > 0
    assert stager.staged(cid) == []


def test_naive_path_mount_is_fooled_by_the_same_race(base: Path, sentinels: Path) -> None:
    """The control: mount(2) of the *path* follows the swapped symlink, so the race the safe
    mounts above survive is real. Tries until the naive mount is fooled once (issue 16: a
    control that only printed its count could never fail)."""
    source, flip, link = race_dirs(base, sentinels, swap_parent=False)
    target = base / "naive"
    target.mkdir()
    fooled = attempts = 0
    with Flipper(flip, link):
        while not fooled and attempts < 20000:
            attempts += 1
            try:
                mountsys.mount(str(source), str(target), "", bindsafe.MS_BIND)
            except OSError:
                continue
            try:
                fooled += "secret" in os.listdir(target)
            finally:
                mountsys.umount(str(target), detach=True)
    assert fooled, f"the naive bind of the path was never fooled in {attempts} mounts"


class Env:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.store = VolumeStore(base / "root")
        self.mounter = Mounter(self.store, BindStager(base / "exec" / "mounts"))
        self.runtime = LinuxRuntime(Paths.of(base / "state", base / "exec"))
        self.cgroup_parent = f"/slg-test-{secrets.token_hex(4)}"
        self.ids: list[str] = []

    def rootfs(self, name: str = "rootfs") -> Path:
        return make_busybox_rootfs(self.base / name)

    async def run(self, rootfs: Path, mounts: Sequence[MountSpec], cmd: Sequence[str]
                  ) -> tuple[int, bytes, list[dict[str, Any]]]:
        cid = secrets.token_hex(32)
        self.ids.append(cid)
        plan = plan_mounts(mounts, known_volumes=set(self.store.list()))
        for v in plan.create:
            self.store.create(v.name)
        extra = self.mounter.prepare(cid, plan, str(rootfs))
        config = ContainerConfig(image="busybox", image_id="sha256:" + "0" * 64, cmd=tuple(cmd))
        spec = build_spec(config, None, env=[], rootfs=str(rootfs), hostname=cid[:12],
                          netns_path=None, cgroups_path=f"{self.cgroup_parent}/{cid}",
                          extra_mounts=extra, **host_spec_inputs(str(rootfs)))
        log = self.base / "logs" / f"{cid}.log"
        try:
            await self.runtime.create(cid, spec, log_path=str(log))
        finally:
            self.mounter.release(cid)
        await self.runtime.start(cid)
        rec = await self.runtime.wait_exit(cid)
        await self.runtime.delete(cid, force=True)
        out = b"".join(b for _, _, b in read_logs(log))
        return rec.exit_code, out, extra

    async def cleanup(self) -> None:
        for st in await self.runtime.list():
            await self.runtime.delete(st.id, force=True)
        for cid in self.ids:
            self.mounter.release(cid)
        cgroups.remove_empty(self.cgroup_parent)


@pytest.fixture
async def env(base: Path) -> AsyncIterator[Env]:
    e = Env(base)
    try:
        yield e
    finally:
        await e.cleanup()


async def test_swapped_bind_source_through_real_containers(env: Env, sentinels: Path) -> None:
    rootfs = env.rootfs()
    source, flip, link = race_dirs(env.base, sentinels, swap_parent=False)
    runs = refused = 0
    with Flipper(flip, link) as flipper:
        while runs + refused < 20:
            try:
                code, out, _ = await env.run(
                    rootfs, [MountSpec(type="bind", source=str(source), target="/x")],
                    ["sh", "-c", "cat /x/*"])
            except BindSourceError:
                refused += 1
                continue
            runs += 1
            assert (code, out) == (0, b"the real source\n")
    assert runs > 0 and flipper.count > 0


async def test_target_symlink_to_a_host_path_lands_in_the_rootfs(env: Env,
                                                                 sentinels: Path) -> None:
    rootfs = env.rootfs()
    (rootfs / "abs").symlink_to(str(sentinels))
    (rootfs / "rel").symlink_to("../../../../../../../../../.." + str(sentinels))
    (rootfs / "etc" / "file-link").symlink_to(str(sentinels / "secret"))
    hostfile = env.base / "bind-me"
    hostfile.write_text("bound file\n")
    mounts = [MountSpec(type="volume", source="v-abs", target="/abs"),
              MountSpec(type="tmpfs", target="/rel/t"),
              MountSpec(type="bind", source=str(hostfile), target="/etc/file-link")]
    script = ("echo pwned > /abs/pwned; echo pwned > /rel/t/pwned; echo pwned > /etc/file-link;"
              "cat /abs/pwned")
    code, out, extra = await env.run(rootfs, mounts, ["sh", "-c", script])
    assert (code, out) == (0, b"pwned\n")
    in_root = str(sentinels)
    assert [m["destination"] for m in extra] == [in_root, in_root + "/t",
                                                 in_root + "/secret"]
    assert Path(env.store.path("v-abs"), "pwned").read_text() == "pwned\n"
    assert hostfile.read_text() == "pwned\n"  # the bind went where the container looked
    assert (rootfs / in_root.lstrip("/")).is_dir()  # the mount point, made inside the root
    # The file's mount point lies under the volume's mount point: it was made in the volume.
    assert Path(env.store.path("v-abs"), "secret").is_file()
    # `sentinels` (checked by its fixture) kept its files, modes, owners and mtimes.


async def test_nested_target_through_a_symlink_inside_a_volume(env: Env,
                                                              sentinels: Path) -> None:
    """A volume (written by an earlier container) holds `link -> host dir`; a bind nested
    under the volume's mount point at /data/link/sub must resolve in the container's root."""
    rootfs = env.rootfs()
    env.store.create("planted")
    Path(env.store.path("planted"), "link").symlink_to(str(sentinels))
    src = env.base / "bind-src"
    src.mkdir()
    (src / "f").write_text("nested\n")
    mounts = [MountSpec(type="volume", source="planted", target="/data"),
              MountSpec(type="bind", source=str(src), target="/data/link/sub")]
    code, out, extra = await env.run(rootfs, mounts, ["cat", str(sentinels) + "/sub/f"])
    assert (code, out) == (0, b"nested\n")
    assert extra[1]["destination"] == str(sentinels) + "/sub"
    assert (rootfs / str(sentinels).lstrip("/") / "sub").is_dir()


async def test_symlink_loops_and_type_clashes_fail_clearly(env: Env) -> None:
    rootfs = env.rootfs()
    (rootfs / "loop").symlink_to("loop")
    with pytest.raises(InvalidArgument, match="too many levels of symlinks"):
        await env.run(rootfs, [MountSpec(type="tmpfs", target="/loop/x")], ["true"])
    (rootfs / "afile").write_text("")
    with pytest.raises(InvalidArgument, match="not a directory"):
        await env.run(rootfs, [MountSpec(type="volume", source="v1", target="/afile")],
                      ["true"])
    (rootfs / "root-link").symlink_to("/")
    with pytest.raises(InvalidArgument, match="resolves to the container's root"):
        await env.run(rootfs, [MountSpec(type="volume", source="v1", target="/root-link")],
                      ["true"])


BAD = ["../x", ".", "a/", "x" * 10_000, "a\x00b", "a\nb", "..", "a.", "./x"]


@pytest.mark.parametrize("bad", BAD, ids=lambda b: repr(b[:10]))
def test_traversal_is_refused_before_any_disk_access(base: Path, bad: str) -> None:
    root = base / "untouched"
    store = VolumeStore(root)
    stager = BindStager(root / "exec")
    with pytest.raises(InvalidArgument) as exc:
        plan_mounts([MountSpec(type="bind", source=bad, target="/x")])
    assert exc.value.message and len(exc.value.message) < 200
    with pytest.raises(InvalidArgument):
        plan_mounts([MountSpec(type="volume", source=bad, target="/x")])
    with pytest.raises(InvalidArgument):
        store.create(bad)
    with pytest.raises(InvalidArgument):
        stager.stage(secrets.token_hex(32), 0, bad)
    with pytest.raises(InvalidArgument):
        stager.stage(bad, 0, "/etc")  # container ids are names of directories too
    assert not root.exists()
