"""The layer store marks `layers/` as the top of unrelated trees (FS_TOPDIR_FL, `chattr +T`),
so that ext4 spreads new layers over the disk instead of refilling the block groups the last
removal emptied (engine/drivers/layers/placement.py, issue 17). No root needed: the owner of a
directory may set this flag. Skipped where the test's filesystem has no inode flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.drivers.layers.placement import FS_TOPDIR_FL, inode_flags, mark_top_of_trees
from engine.drivers.layers.unpack import LayerStore


def _flags_or_skip(path: Path) -> int:
    flags = inode_flags(path)
    if flags is None:
        pytest.skip(f"{path} is on a filesystem without inode flags")
    return flags


def test_layer_store_marks_its_layers_dir_top_of_trees(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    probe.mkdir()
    _flags_or_skip(probe)
    if not mark_top_of_trees(probe):
        pytest.skip("this filesystem does not take FS_TOPDIR_FL")
    store = LayerStore(tmp_path / "state")
    assert _flags_or_skip(store.layers_dir) & FS_TOPDIR_FL
    # The root itself is left alone: only layers are unrelated trees.
    assert not _flags_or_skip(store.root) & FS_TOPDIR_FL


def test_marking_is_idempotent_and_keeps_other_flags(tmp_path: Path) -> None:
    before = _flags_or_skip(tmp_path)
    if not mark_top_of_trees(tmp_path):
        pytest.skip("this filesystem does not take FS_TOPDIR_FL")
    assert mark_top_of_trees(tmp_path)
    assert _flags_or_skip(tmp_path) == before | FS_TOPDIR_FL


def test_a_filesystem_without_inode_flags_is_left_alone(tmp_path: Path) -> None:
    # procfs has no inode flags: the hint says no and nothing fails.
    assert mark_top_of_trees("/proc/sys") is False
    assert inode_flags("/proc/sys") is None
