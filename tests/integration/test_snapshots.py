"""Overlay snapshots: pure planning, and real overlay mounts that are always unmounted."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.drivers.host import mountsys
from engine.drivers.layers.unpack import LayerStore
from engine.drivers.snapshots.overlay import (
    MAX_LAYERS,
    SnapshotError,
    Snapshotter,
    plan_rootfs,
)

# --- planning (pure) ---------------------------------------------------------------------------


def test_plan_orders_layers_top_first() -> None:
    plan = plan_rootfs("/s/containers/c", ["/s/layers/a/diff", "/s/layers/b/diff"])
    assert plan.lowerdirs == ("/s/layers/b/diff", "/s/layers/a/diff")
    assert plan.target == "/s/containers/c/rootfs"
    assert plan.options == (
        "lowerdir=/s/layers/b/diff:/s/layers/a/diff,upperdir=/s/containers/c/upper,"
        "workdir=/s/containers/c/work,index=off"
    )
    assert plan.fits_in_page
    assert "/s/containers/c/upper" in plan.dirs_to_create


def test_plan_for_image_without_layers_uses_an_empty_lower() -> None:
    plan = plan_rootfs("/s/containers/c", [])
    assert plan.lowerdirs == ("/s/containers/c/empty",)
    assert "/s/containers/c/empty" in plan.dirs_to_create


def test_long_plans_do_not_fit_a_page() -> None:
    layers = [f"/var/lib/shipslog/layers/{i:064x}/diff" for i in range(100)]
    assert not plan_rootfs("/var/lib/shipslog/containers/c", layers).fits_in_page


@pytest.mark.parametrize("bad", ["/s,x", "/s:x", "/s\\x", "/s=x"])
def test_plan_refuses_paths_overlay_cannot_parse(bad: str) -> None:
    with pytest.raises(SnapshotError):
        plan_rootfs("/s/containers/c", [bad])


def test_plan_refuses_too_many_layers() -> None:
    with pytest.raises(SnapshotError, match="at most"):
        plan_rootfs("/c", [f"/l/{i}" for i in range(MAX_LAYERS + 1)])


@pytest.mark.parametrize("cid", ["../x", ".", "..", "a/b", "", "a.", "x" * 200, "a\nb", "-a"])
def test_container_ids_are_validated(tmp_path: Path, cid: str) -> None:
    with pytest.raises(SnapshotError):
        Snapshotter(tmp_path).rootfs(cid)


def test_mountinfo_parser_unescapes() -> None:
    text = (
        "36 35 98:0 /mnt1 /a\\040b rw,noatime master:1 - overlay overlay rw,lowerdir=/l\n"
        "37 35 98:0 / /x rw - ext4 /dev/vda rw\n"
    )
    [a, b] = mountsys.parse_mountinfo(text)
    assert (a.mount_id, a.target, a.fstype, a.super_options) == (
        36,
        "/a b",
        "overlay",
        "rw,lowerdir=/l",
    )
    assert (b.target, b.source) == ("/x", "/dev/vda")


# --- real mounts -----------------------------------------------------------------------------


def layer_tar(
    files: dict[str, bytes],
    whiteouts: tuple[str, ...] = (),
    opaque: tuple[str, ...] = (),
    root_mode: int | None = None,
) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        if root_mode is not None:
            ti = tarfile.TarInfo("./")
            ti.type, ti.mode = tarfile.DIRTYPE, root_mode
            tf.addfile(ti)
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        for name in whiteouts:
            d, _, base = name.rpartition("/")
            tf.addfile(tarfile.TarInfo(f"{d}/.wh.{base}" if d else f".wh.{base}"))
        for d in opaque:
            tf.addfile(tarfile.TarInfo(f"{d}/.wh..wh..opq"))
    return buf.getvalue()


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    leaked = [m.target for m in mountsys.read_mountinfo() if m.target.startswith(str(tmp_path))]
    for target in reversed(leaked):
        mountsys.umount(target, detach=True)
    assert leaked == [], "test left mounts behind"


@pytest.mark.kernel
def test_overlay_stack_with_whiteouts_and_opaque_dirs(root: Path) -> None:
    layers = LayerStore(root)
    base = layers.unpack(
        io.BytesIO(
            layer_tar(
                {"etc/motd": b"base", "etc/keep": b"k", "var/cache/a": b"a", "bin/sh": b"sh"},
                root_mode=0o755,
            )
        )
    ).path
    top = layers.unpack(
        io.BytesIO(
            layer_tar(
                {"etc/new": b"n", "var/cache/b": b"b"},
                whiteouts=("etc/motd",),
                opaque=("var/cache",),
            )
        )
    ).path
    snaps = Snapshotter(root)
    rootfs = Path(snaps.prepare("c1", [base, top]))
    try:
        assert snaps.is_mounted("c1")
        assert sorted(os.listdir(rootfs / "etc")) == ["keep", "new"]
        assert os.listdir(rootfs / "var/cache") == ["b"]
        assert (rootfs / "bin/sh").read_bytes() == b"sh"
        assert stat.S_IMODE(os.stat(rootfs).st_mode) == 0o755
        # writes go to the upper layer and never into a lower one
        (rootfs / "etc/keep").write_bytes(b"changed")
        (rootfs / "bin/sh").unlink()
        assert (base / "etc/keep").read_bytes() == b"k"
        assert (base / "bin/sh").exists()
        assert (root / "containers/c1/upper/etc/keep").read_bytes() == b"changed"
        # idempotent: a second prepare keeps the mount (and its writes)
        assert snaps.prepare("c1", [base, top]) == str(rootfs)
        assert [m.container_id for m in snaps.list_mounts()] == ["c1"]
        assert snaps.mounted() == {"c1"}
        assert snaps.list_snapshots() == ["c1"]
        assert (rootfs / "etc/keep").read_bytes() == b"changed"
        snaps.unmount("c1")
        assert not snaps.is_mounted("c1") and snaps.mounted() == set()
        snaps.unmount("c1")  # idempotent
        # remount after unmount: the upper layer is kept
        snaps.prepare("c1", [base, top])
        assert (rootfs / "etc/keep").read_bytes() == b"changed"
    finally:
        snaps.remove("c1")
    assert not (root / "containers/c1").exists()
    assert snaps.list_snapshots() == []
    assert snaps.list_mounts() == []
    snaps.remove("c1")  # idempotent


@pytest.mark.kernel
def test_many_layers_mount_through_fsconfig(root: Path) -> None:
    layers = LayerStore(root)
    paths = [
        layers.unpack(
            io.BytesIO(layer_tar({f"l/{i:03d}": str(i).encode(), "top": str(i).encode()}))
        ).path
        for i in range(120)
    ]
    snaps = Snapshotter(root)
    assert not snaps.plan("big", [str(p) for p in paths]).fits_in_page
    rootfs = Path(snaps.prepare("big", paths))
    try:
        assert len(os.listdir(rootfs / "l")) == 120
        assert (rootfs / "top").read_bytes() == b"119"  # the last layer wins
        mounted = [m for m in snaps.list_mounts() if m.container_id == "big"]
        assert mounted and mounted[0].fstype == "overlay"
    finally:
        snaps.remove("big")


@pytest.mark.kernel
def test_image_without_layers(root: Path) -> None:
    snaps = Snapshotter(root)
    rootfs = Path(snaps.prepare("empty", []))
    try:
        assert os.listdir(rootfs) == []
        (rootfs / "x").write_bytes(b"1")
    finally:
        snaps.remove("empty")


@pytest.mark.kernel
def test_missing_layer_dir_is_a_clear_error(root: Path) -> None:
    snaps = Snapshotter(root)
    with pytest.raises(SnapshotError, match="missing"):
        snaps.prepare("c", [root / "layers" / ("0" * 64) / "diff"])
    assert not snaps.is_mounted("c")


@pytest.mark.kernel
def test_sweep_removes_half_deleted_snapshots(root: Path) -> None:
    snaps = Snapshotter(root)
    (snaps.containers_dir / ".del-abc" / "upper").mkdir(parents=True)
    assert snaps.sweep() == 1
    assert os.listdir(snaps.containers_dir) == []
