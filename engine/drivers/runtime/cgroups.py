"""Read and remove container cgroups on cgroup v1, v2 and hybrid hosts.

I/O: reads `/sys/fs/cgroup/...` files; `remove_empty` rmdirs cgroup directories.

runc creates and fills the cgroups from the spec's `cgroupsPath`; we only need two things
it does not do: an OOM check that does not depend on the monitor having seen the event
(conmon's `oom` file is the first source; this is the fallback), and removing the parent
directory (`/shipslog`) that runc leaves behind when the last container goes.
"""

from __future__ import annotations

import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _is_v2(root: Path) -> bool:
    return (root / "cgroup.controllers").exists()


def _memory_dir(root: Path, cgroups_path: str) -> Path:
    rel = cgroups_path.strip("/")
    return root / rel if _is_v2(root) else root / "memory" / rel


def oom_kill_count(cgroups_path: str, *, root: Path = CGROUP_ROOT) -> int:
    """How many processes the kernel OOM-killed in this cgroup; 0 if unknown or gone."""
    d = _memory_dir(root, cgroups_path)
    name = "memory.events" if _is_v2(root) else "memory.oom_control"
    try:
        text = (d / name).read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return 0


def controller_dirs(cgroups_path: str, *, root: Path = CGROUP_ROOT) -> list[Path]:
    """Every directory for `cgroups_path` that exists, one per v1 hierarchy (or the v2 one)."""
    rel = cgroups_path.strip("/")
    if _is_v2(root):
        return [root / rel] if (root / rel).is_dir() else []
    out = []
    for hierarchy in sorted(root.iterdir()):
        if hierarchy.is_dir() and not hierarchy.is_symlink() and (hierarchy / rel).is_dir():
            out.append(hierarchy / rel)
    unified = root / "unified" / rel
    if unified.is_dir() and unified not in out:
        out.append(unified)
    return out


def remove_empty(cgroups_path: str, *, root: Path = CGROUP_ROOT) -> None:
    """rmdir the cgroup in every hierarchy; a non-empty one (EBUSY) is left in place."""
    for d in controller_dirs(cgroups_path, root=root):
        try:
            os.rmdir(d)
        except OSError:
            pass
