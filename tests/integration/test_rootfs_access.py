"""engine/drivers/snapshots/rootfs_access.py on the real kernel, against a directory that plays a
container's root: hostile archives copied in (`..`, absolute symlinks, links through a
symlink, hard links out, device nodes, whiteouts) are refused or contained and never touch
the host's sentinel files; copies out and exports never follow a symlink out of the root
(RELIABILITY A, CVE-2018-15664 / CVE-2019-14271)."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.core.errors import InvalidArgument, NotFound
from engine.core.fs_plan import plan_copy_path
from engine.drivers.snapshots import rootfs_access as ra
from engine.testing.daemon import TEST_BASE

pytestmark = pytest.mark.kernel

SECRET = b"host secret, must never be read or written\n"


@pytest.fixture
def world() -> Iterator[tuple[Path, Path]]:
    """(rootfs, host dir with a sentinel file) under the test base, removed afterwards."""
    TEST_BASE.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="rootfs-", dir=TEST_BASE))
    try:
        root, host = base / "rootfs", base / "host"
        for d in ("etc", "tmp", "bin"):
            (root / d).mkdir(parents=True)
        (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
        host.mkdir()
        (host / "sentinel").write_bytes(SECRET)
        # the container's own symlinks, pointing "out": at / and at the host's path
        os.symlink("/", root / "tmp" / "rootlink")
        os.symlink(str(host), root / "tmp" / "hostlink")
        os.symlink("../../../../../../../..", root / "tmp" / "dotdot")
        yield root, host
    finally:
        shutil.rmtree(base)


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    buf.seek(0)
    return buf


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "",
            mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, mode
    return info


def _extract(root: Path, path: str, archive: io.BytesIO) -> object:
    dest, _ = ra.open_directory(str(root), path)
    try:
        return ra.extract_into(dest, archive)
    finally:
        os.close(dest)


def _host_untouched(host: Path) -> None:
    assert sorted(p.name for p in host.iterdir()) == ["sentinel"]
    assert (host / "sentinel").read_bytes() == SECRET


def test_copy_in_lands_where_asked(world: tuple[Path, Path]) -> None:
    root, host = world
    stats = _extract(root, "/tmp", _tar((_member("d/a"), b"hello"), (_member("f"), b"x")))
    assert (root / "tmp" / "d" / "a").read_bytes() == b"hello"
    assert (root / "tmp" / "f").read_bytes() == b"x"
    assert stats.entries == 2  # type: ignore[attr-defined]
    _host_untouched(host)


@pytest.mark.parametrize("dest", ["/tmp/rootlink", "/tmp/../../tmp/rootlink",
                                  "/tmp/dotdot", "/tmp/dotdot/tmp/rootlink/."])
def test_destination_symlinks_resolve_inside_the_root(world: tuple[Path, Path],
                                                     dest: str) -> None:
    root, host = world
    _extract(root, dest, _tar((_member("dropped"), b"in the container")))
    assert (root / "dropped").read_bytes() == b"in the container"
    _host_untouched(host)


def test_destination_through_a_link_to_a_host_path_is_not_the_host(
        world: tuple[Path, Path]) -> None:
    root, host = world
    with pytest.raises(NotFound):  # the host path, read inside the root, does not exist
        _extract(root, "/tmp/hostlink", _tar((_member("pwned"), b"x")))
    (root / host.relative_to("/")).mkdir(parents=True)  # now it does, in the container
    _extract(root, "/tmp/hostlink", _tar((_member("pwned"), b"x")))
    assert (root / host.relative_to("/") / "pwned").exists()
    _host_untouched(host)


def test_destination_must_be_a_directory(world: tuple[Path, Path]) -> None:
    root, _ = world
    with pytest.raises(InvalidArgument, match="not a directory"):
        ra.open_directory(str(root), "/etc/passwd")


@pytest.mark.parametrize("members", [
    [(_member("../../escape"), b"x")],
    [(_member("a/../../escape"), b"x")],
    [(_member("evil", tarfile.SYMTYPE, "/"), b""),
     (_member("evil/tmp/escape"), b"x")],
    [(_member("out", tarfile.SYMTYPE, "HOST"), b""), (_member("out/sentinel"), b"x")],
    [(_member("hl", tarfile.LNKTYPE, "../../../../../../HOST/sentinel"), b"")],
    [(_member(".wh.passwd"), b"")],
])
def test_hostile_archives_are_refused(world: tuple[Path, Path],
                                      members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    root, host = world
    for info, _ in members:
        info.linkname = info.linkname.replace("HOST", str(host).lstrip("/"))
    with pytest.raises(InvalidArgument):
        _extract(root, "/tmp", _tar(*members))
    _host_untouched(host)
    assert not (root / "escape").exists() and not (root.parent / "escape").exists()
    assert (root / "etc" / "passwd").exists()


def test_absolute_member_names_stay_below_the_destination(world: tuple[Path, Path]) -> None:
    root, host = world
    sentinel = str(host / "sentinel")
    _extract(root, "/tmp", _tar((_member(sentinel), b"overwrite?")))
    assert (root / "tmp" / sentinel.lstrip("/")).read_bytes() == b"overwrite?"
    _host_untouched(host)


def test_device_nodes_are_never_created(world: tuple[Path, Path]) -> None:
    root, host = world
    mem = _member("mem", tarfile.CHRTYPE)
    mem.devmajor, mem.devminor = 1, 1
    whiteout = _member("wh", tarfile.CHRTYPE)  # 0:0 would be an overlay whiteout
    disk = _member("sda", tarfile.BLKTYPE)
    disk.devmajor, disk.devminor = 8, 0
    stats = _extract(root, "/tmp", _tar((mem, b""), (whiteout, b""), (disk, b""),
                                        (_member("ok"), b"fine")))
    assert stats.skipped_devices == 3  # type: ignore[attr-defined]
    assert sorted(os.listdir(root / "tmp")) == ["dotdot", "hostlink", "ok", "rootlink"]
    _host_untouched(host)


def _archive(root: Path, path: str) -> tuple[ra.PathStat, dict[str, tarfile.TarInfo], bytes]:
    res = ra.Resource(str(root), plan_copy_path(path))
    try:
        st = res.stat()
        data = b"".join(res.chunks())
    finally:
        res.close()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        members = {m.name.rstrip("/"): m for m in tf.getmembers()}
    return st, members, data


def test_copy_out_of_a_symlink_is_the_symlink(world: tuple[Path, Path]) -> None:
    root, host = world
    st, members, data = _archive(root, "/tmp/hostlink")
    assert list(members) == ["hostlink"] and members["hostlink"].issym()
    assert st.link_target == str(host)  # a container path (it does not exist in there)
    assert SECRET not in data
    st, members, _ = _archive(root, "/tmp/rootlink")
    assert st.link_target == "/" and members["rootlink"].linkname == "/"


def test_copy_out_through_symlinks_reads_the_container(world: tuple[Path, Path]) -> None:
    root, host = world
    with pytest.raises(NotFound):
        _archive(root, "/tmp/hostlink/sentinel")
    _, members, data = _archive(root, "/tmp/dotdot/etc/passwd")
    assert list(members) == ["passwd"] and b"root:x:0:0" in data
    st, members, data = _archive(root, "/tmp/rootlink/")  # trailing slash: follow it
    assert st.is_dir and "rootlink/etc/passwd" in members
    assert members["rootlink/tmp/hostlink"].issym() and SECRET not in data


def test_export_walks_the_root_without_following_links(world: tuple[Path, Path]) -> None:
    root, host = world
    data = b"".join(ra.export_rootfs(str(root)))
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        names = {m.name.rstrip("/"): m for m in tf.getmembers()}
    assert {"etc", "etc/passwd", "tmp/hostlink", "tmp/rootlink", "bin"} <= set(names)
    assert names["tmp/hostlink"].issym()
    assert SECRET not in data and not any(n.startswith("/") for n in names)


def test_no_overwrite_dir_non_dir(world: tuple[Path, Path]) -> None:
    root, _ = world
    file_over_dir = _tar((_member("etc"), b"a file where /etc is"))
    dest, _ = ra.open_directory(str(root), "/")
    try:
        with pytest.raises(InvalidArgument, match="cannot overwrite directory"):
            ra.extract_into(dest, file_over_dir, no_overwrite_dir_non_dir=True)
        assert (root / "etc" / "passwd").exists()
        dir_over_file = _tar((_member("etc/passwd", tarfile.DIRTYPE, mode=0o755), b""))
        with pytest.raises(InvalidArgument, match="cannot overwrite non-directory"):
            ra.extract_into(dest, dir_over_file, no_overwrite_dir_non_dir=True)
        assert (root / "etc" / "passwd").is_file()
        ra.extract_into(dest, _tar((_member("etc/passwd"), b"replaced\n")),
                        no_overwrite_dir_non_dir=True)  # a file over a file is fine
        assert (root / "etc" / "passwd").read_bytes() == b"replaced\n"
        ra.extract_into(dest, _tar((_member("etc"), b"now a file")))  # without the flag
        assert (root / "etc").read_bytes() == b"now a file"
    finally:
        os.close(dest)
