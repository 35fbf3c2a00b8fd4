"""The kernel half of `system reset` (engine/admin/reset.py): runtime containers, monitors,
mounts and cgroups of one state root, taken down whatever state they are in.

I/O: runs runc and umount, signals conmon monitors (checked against their command line),
reads /proc/self/mountinfo and removes cgroup directories. Each step reports what it could
not do as a warning and goes on, as a reset must on damaged state.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


def stop_runtime(runc_root: Path, exec_root: Path, warnings: list[str]) -> set[str]:
    """Delete every runc container under `runc_root` and kill the conmon monitors whose pid
    files are under `exec_root`; the ids runc knew."""
    ids: set[str] = set()
    if runc_root.is_dir():
        listed = subprocess.run(["runc", "--root", str(runc_root), "list", "-q"],
                                capture_output=True, text=True, check=False)
        ids = set(listed.stdout.split())
        for cid in sorted(ids):
            done = subprocess.run(["runc", "--root", str(runc_root), "delete", "--force", cid],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                warnings.append(f"runc delete {cid[:12]}: {done.stderr.strip()}")
    for pid_file in exec_root.glob("containers/*/conmon.pid"):
        try:
            pid = int(pid_file.read_text().strip())
            if b"conmon" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            continue  # gone already, or not our monitor
    return ids


def unmount_all_under(*dirs: Path, warnings: list[str]) -> None:
    """Lazily unmount every mount below `dirs`, deepest first."""
    for target in reversed(mounts_under(*dirs)):
        done = subprocess.run(["umount", "-l", target], capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            warnings.append(f"cannot unmount {target}: {done.stderr.strip()}")


def mounts_under(*dirs: Path) -> list[str]:
    prefixes = tuple(str(d.absolute()) + "/" for d in dirs)
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4]
        if target.startswith(prefixes):
            found.append(target)
    return found


def remove_cgroups(ids: set[str], warnings: list[str]) -> None:
    for ctl in Path("/sys/fs/cgroup").iterdir():
        for cid in ids:
            cg = ctl / "shipslog" / cid
            if cg.is_dir():
                for sub in sorted(cg.rglob("*"), reverse=True):
                    if sub.is_dir():
                        try:
                            sub.rmdir()
                        except OSError:
                            pass
                try:
                    cg.rmdir()
                except OSError as exc:
                    warnings.append(f"cannot remove cgroup {cg}: {exc.strerror}")
