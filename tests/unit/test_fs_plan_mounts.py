"""Copy paths inside a volume or bind mount (engine/core/fs_plan.py): the part of a container
path below the mount point, and a plan re-rooted where a rootfs symlink led."""

from __future__ import annotations

import pytest

from engine.core.fs_plan import plan_copy_path, plan_in_mount, plan_resolved


@pytest.mark.parametrize(("path", "target", "parent", "entry"), [
    ("/data", "/data", "/", None),
    ("/data/", "/data", "/", None),
    ("/data/.", "/data", "/", None),
    ("/data/a", "/data", "/", "a"),
    ("/data/sub/b", "/data", "/sub", "b"),
    ("/data/sub/", "/data", "/sub", None),
    ("/data/sub/.", "/data", "/sub", None),
    ("/a/b/c/d", "/a/b", "/c", "d"),
])
def test_plan_in_mount(path: str, target: str, parent: str, entry: str | None) -> None:
    plan = plan_copy_path(path)
    inner = plan_in_mount(plan, target)
    assert (inner.parent, inner.entry) == (parent, entry)
    # what the user asked for still names the tar's top entry and the stat header
    assert (inner.requested, inner.name, inner.rebase) == (plan.requested, plan.name,
                                                           plan.rebase)


def test_plan_resolved_keeps_the_entry_and_the_names() -> None:
    plan = plan_copy_path("/tmp/datalink/sub/b")
    moved = plan_resolved(plan, "/data/sub/b")
    assert (moved.parent, moved.entry, moved.name, moved.rebase) == ("/data/sub", "b", "b", "b")
    plan = plan_copy_path("/tmp/datalink/")
    moved = plan_resolved(plan, "/data")
    assert (moved.parent, moved.entry) == ("/data", None)
    assert plan_in_mount(moved, "/data").parent == "/"
