"""Container root filesystems as overlayfs mounts of unpacked layers.

I/O: `plan_rootfs` is pure (it returns a `MountPlan`, the containerd habit of describing mounts
as data); `Snapshotter` creates directories under `root/containers/<id>/` and calls mount(2),
umount2(2) or the new mount API through `mountsys`, and reads /proc/self/mountinfo.

Layout for one container:

    containers/<id>/upper     overlay upperdir (the container's writes)
    containers/<id>/work      overlay workdir (same filesystem as upper, kernel requirement)
    containers/<id>/rootfs    the mount point handed to the OCI runtime
    containers/<id>/empty     an empty lowerdir, only for an image without layers

The legacy mount(2) data argument is limited to one page; when `lowerdir=…` would not fit
(deep images, long state roots) the plan says so and the driver appends layers one by one with
`fsconfig(…, "lowerdir+", …)` (Linux 6.8+) instead of relying on chdir tricks that would race in
a threaded daemon.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.core.errors import KernelError
from engine.drivers.host import mountsys

MAX_LAYERS = 500  # overlayfs OVL_MAX_STACK
PAGE_LIMIT = 4096  # mount(2) copies at most one page of options (fs/namespace.c)
_ID_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}", re.ASCII)
# Characters overlay's option parser treats specially in a path (fs/overlayfs/params.c).
_BAD_PATH_CHARS = (",", ":", "\\", "\n", "=")


class SnapshotError(KernelError):
    """A snapshot could not be planned or mounted; `.hint` says what to do. HTTP 500."""


@dataclass(frozen=True)
class MountPlan:
    """Everything needed to mount one container rootfs; no I/O has happened yet."""

    target: str
    lowerdirs: tuple[str, ...]  # top-most first, as overlay wants them
    upperdir: str
    workdir: str
    dirs_to_create: tuple[str, ...]
    flags: tuple[str, ...] = ("index=off",)
    fstype: str = "overlay"
    source: str = "overlay"

    @property
    def options(self) -> str:
        return ",".join(
            (
                "lowerdir=" + ":".join(self.lowerdirs),
                "upperdir=" + self.upperdir,
                "workdir=" + self.workdir,
                *self.flags,
            )
        )

    @property
    def fits_in_page(self) -> bool:
        return len(self.options.encode()) < PAGE_LIMIT


def validate_container_id(container_id: str) -> str:
    # RELIABILITY I-02: paths derive only from validated ids.
    if not isinstance(container_id, str) or not _ID_RE.fullmatch(container_id):
        raise SnapshotError(f"invalid container id {container_id[:80]!r}")
    if container_id.endswith("."):
        raise SnapshotError(f"invalid container id {container_id[:80]!r}")
    return container_id


def plan_rootfs(container_dir: str | os.PathLike[str], layer_paths: list[str]) -> MountPlan:
    """Plan the overlay for a container. `layer_paths` are layer dirs, bottom layer first. Pure."""
    cdir = os.path.abspath(os.fspath(container_dir))
    if len(layer_paths) > MAX_LAYERS:
        raise SnapshotError(
            f"image has {len(layer_paths)} layers; overlayfs stacks at most {MAX_LAYERS}",
            "squash the image",
        )
    lowers = [os.path.abspath(os.fspath(p)) for p in reversed(layer_paths)]
    dirs = [os.path.join(cdir, d) for d in ("upper", "work", "rootfs")]
    if not lowers:
        empty = os.path.join(cdir, "empty")
        lowers = [empty]
        dirs.append(empty)
    for p in [cdir, *lowers]:
        if any(c in p for c in _BAD_PATH_CHARS):
            raise SnapshotError(
                f"path {p!r} contains a character overlayfs cannot take in an option",
                "choose a state root without ',', ':', '=' or '\\'",
            )
    return MountPlan(
        target=os.path.join(cdir, "rootfs"),
        lowerdirs=tuple(lowers),
        upperdir=os.path.join(cdir, "upper"),
        workdir=os.path.join(cdir, "work"),
        dirs_to_create=tuple(dirs),
    )


def execute_plan(plan: MountPlan) -> None:
    """Create the directories and mount the overlay described by `plan`."""
    fresh = not os.path.isdir(plan.upperdir)
    for d in plan.dirs_to_create:
        os.makedirs(d, mode=0o700 if d == plan.workdir else 0o755, exist_ok=True)
    # The merged root directory takes its mode and owner from the upperdir; give it the image's
    # (top layer's) root attributes, or `/` inside the container would be 0700 or 0755 by chance.
    # Only on a fresh upper: later the container's own chmod of / lives there.
    top = os.stat(plan.lowerdirs[0])
    up = os.stat(plan.upperdir)
    if fresh and (up.st_mode & 0o7777, up.st_uid, up.st_gid) != (
        top.st_mode & 0o7777,
        top.st_uid,
        top.st_gid,
    ):
        os.chown(plan.upperdir, top.st_uid, top.st_gid)
        os.chmod(plan.upperdir, top.st_mode & 0o7777)
    if plan.fits_in_page:
        mountsys.mount(plan.source, plan.target, plan.fstype, 0, plan.options)
    else:
        mountsys.mount_overlay_fsconfig(
            plan.target, list(plan.lowerdirs), plan.upperdir, plan.workdir, list(plan.flags)
        )


@dataclass(frozen=True)
class SnapshotMount:
    container_id: str
    target: str
    fstype: str
    options: str


class Snapshotter:
    """Overlay rootfs mounts for containers under `root/containers/`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self.containers_dir = self.root / "containers"
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.containers_dir.mkdir(mode=0o700, exist_ok=True)

    def container_dir(self, container_id: str) -> Path:
        return self.containers_dir / validate_container_id(container_id)

    def rootfs(self, container_id: str) -> Path:
        return self.container_dir(container_id) / "rootfs"

    def plan(self, container_id: str, layer_paths: list[str]) -> MountPlan:
        return plan_rootfs(self.container_dir(container_id), [os.fspath(p) for p in layer_paths])

    def prepare(self, container_id: str, layer_paths: Sequence[str | os.PathLike[str]]) -> str:
        """Mount the container's rootfs (idempotent: an existing mount is kept); return its path.

        `layer_paths` are the layers' directories (`LayerStore.path`), bottom layer first.
        """
        plan = self.plan(container_id, [os.fspath(p) for p in layer_paths])
        if self.is_mounted(container_id):
            return plan.target
        for lower in plan.lowerdirs:
            if lower not in plan.dirs_to_create and not os.path.isdir(lower):
                raise SnapshotError(
                    f"layer directory {lower} is missing", "the image is damaged; pull it again"
                )
        try:
            execute_plan(plan)
        except OSError as e:
            hint = "check that the kernel has overlayfs and the state root is on ext4/xfs"
            if not plan.fits_in_page:
                hint = (
                    f"{len(plan.lowerdirs)} layers need overlay's lowerdir+ (Linux 6.8+); "
                    "use a shorter --root or a smaller image on older kernels"
                )
            raise SnapshotError(f"mount overlay at {plan.target}: {e.strerror}", hint) from e
        return plan.target

    def is_mounted(self, container_id: str) -> bool:
        target = os.fspath(self.rootfs(container_id))
        return any(m.target == target for m in mountsys.read_mountinfo())

    def unmount(self, container_id: str) -> None:
        """Unmount the rootfs (idempotent). Lazy-detaches a busy mount."""
        target = os.fspath(self.rootfs(container_id))
        # A mount may be stacked (a retried prepare racing another); peel every layer.
        while any(m.target == target for m in mountsys.read_mountinfo()):
            try:
                mountsys.umount(target)
            except OSError as e:
                if e.errno == errno.EBUSY:
                    mountsys.umount(target, detach=True)
                elif e.errno == errno.EINVAL:
                    break
                else:
                    raise

    def remove(self, container_id: str) -> None:
        """Unmount and delete the container's snapshot (upper layer included). Idempotent."""
        self.unmount(container_id)
        if self.is_mounted(container_id):
            raise SnapshotError(f"rootfs of {container_id} is still mounted; not deleting it")
        cdir = self.container_dir(container_id)
        if not cdir.exists():
            return
        # Renamed away first so a half-deleted snapshot never looks like a live one.
        doomed = self.containers_dir / f".del-{container_id}"
        try:
            os.rename(cdir, doomed)
        except FileNotFoundError:
            return
        shutil.rmtree(doomed)

    def mounted(self) -> set[str]:
        """Ids of containers whose rootfs is mounted now (for reconciliation)."""
        return {m.container_id for m in self.list_mounts()}

    def list_mounts(self) -> list[SnapshotMount]:
        """Overlay rootfs mounts under our containers dir, for reconciliation."""
        prefix = os.fspath(self.containers_dir) + "/"
        out = []
        for m in mountsys.read_mountinfo():
            if not m.target.startswith(prefix) or not m.target.endswith("/rootfs"):
                continue
            cid = m.target[len(prefix) : -len("/rootfs")]
            if "/" in cid:
                continue
            out.append(SnapshotMount(cid, m.target, m.fstype, m.super_options))
        return out

    def list_snapshots(self) -> list[str]:
        """Ids of containers that have a snapshot directory, mounted or not (reconciliation)."""
        return sorted(
            e.name
            for e in os.scandir(self.containers_dir)
            if e.is_dir(follow_symlinks=False) and _ID_RE.fullmatch(e.name)
        )

    def sweep(self) -> int:
        """Delete half-removed snapshot dirs left by a crash."""
        n = 0
        for entry in os.scandir(self.containers_dir):
            if entry.name.startswith(".del-"):
                shutil.rmtree(entry.path, ignore_errors=True)
                n += 1
        return n
