"""The `local` volume driver, and turning a container's mount plan into OCI mount entries.

I/O: filesystem and kernel (mount(2), /proc/self/mountinfo). Layout, as Docker's:

    <root>/volumes/<name>/_data      what containers see; <name> validated (I-02)

`VolumeStore` records nothing: the event log is the truth about which volumes exist and who
uses them; the supervisor appends `VolumeCreated`/`VolumeRemoved`/`VolumeMounted`/
`VolumeUnmounted` around these calls. A volume created with the local driver's options
(`type=tmpfs`, or `type=none,o=bind,device=/host/dir`) is mounted on its `_data` at first use
(`mount`, idempotent, options passed in from the log) and unmounted when the last user is gone
(`unmount`). A bind device is opened by fd without following symlinks, like bind mounts.

`Mounter.prepare` executes an `engine.core.volume_plan.MountPlan` for one container start: it
mounts option volumes, stages bind sources through fds (`bindsafe.BindStager`), resolves each
target inside the rootfs (never following a symlink out of it) and returns the OCI mount
entries for `build_spec(..., extra_mounts=...)`.
"""

from __future__ import annotations

import builtins
import errno
import functools
import os
import secrets
import shutil
import stat
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

from engine.core.errors import Conflict, KernelError, NotFound
from engine.core.volume_plan import MountPlan, check_volume_name, parse_local_options
from engine.drivers.host import mountsys
from engine.drivers.volumes import bindsafe
from engine.drivers.volumes.seed import SeedStats, copy_tree

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


# mount(8) flag words and their MS_* bits (linux/mount.h); the rest goes to tmpfs as data.
_MS_FLAGS = {"ro": 0x1, "nosuid": 0x2, "nodev": 0x4, "noexec": 0x8, "sync": 0x10,
             "mand": 0x40, "dirsync": 0x80, "noatime": 0x400, "nodiratime": 0x800,
             "relatime": 1 << 21, "strictatime": 1 << 24}
_MS_CLEAR = {"rw": "ro", "suid": "nosuid", "dev": "nodev", "exec": "noexec", "async": "sync",
             "nomand": "mand", "atime": "noatime", "diratime": "nodiratime",
             "norelatime": "relatime", "nostrictatime": "strictatime"}


def tmpfs_flags(options: tuple[str, ...]) -> tuple[int, str]:
    """Split merged tmpfs options into mount(2) flags and the filesystem's data string."""
    flags, data = 0, []
    for opt in options:
        if opt in _MS_FLAGS:
            flags |= _MS_FLAGS[opt]
        elif opt in _MS_CLEAR:
            flags &= ~_MS_FLAGS[_MS_CLEAR[opt]]
        elif "=" in opt:
            data.append(opt)
    return flags, ",".join(data)


# The kernel filesystems `engine.core.oci_spec` always mounts (Docker's defaults).
SPEC_MOUNTS = ("/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm")

_F = TypeVar("_F", bound=Callable[..., Any])


def _locked(method: _F) -> _F:
    @functools.wraps(method)
    def wrapper(self: VolumeStore, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)
    return cast(_F, wrapper)


class VolumeStore:
    """Volumes of the local driver under `<root>/volumes/`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.base = Path(root).absolute() / "volumes"
        # Starts run in worker threads: two first uses of one tmpfs volume must not stack
        # two tmpfs mounts (each container would see a different one).
        self._lock = threading.RLock()

    def _dir(self, name: str) -> Path:
        return self.base / check_volume_name(name)

    def path(self, name: str) -> str:
        """The host path containers see for volume `name` (its `_data`)."""
        return str(self._dir(name) / "_data")

    def exists(self, name: str) -> bool:
        return os.path.isdir(self.path(name))

    def list(self) -> list[str]:
        try:
            entries = sorted(os.scandir(self.base), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        return [e.name for e in entries if not e.name.startswith(".")
                and e.is_dir(follow_symlinks=False) and os.path.isdir(Path(e.path) / "_data")]

    @_locked
    def create(self, name: str, options: Mapping[str, str] | None = None) -> str:
        """Make the volume's directory (idempotent); return its `_data` path. Options are
        validated here and used by `mount`."""
        vdir = self._dir(name)
        parse_local_options(options)
        if (vdir / "_data").is_dir():
            return str(vdir / "_data")
        self.base.mkdir(mode=0o701, parents=True, exist_ok=True)
        # Staged, then renamed into place: a crash never leaves a half-made volume.
        tmp = self.base / f".tmp-{os.getpid()}-{secrets.token_hex(8)}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(mode=0o755)
        (tmp / "_data").mkdir(mode=0o755)
        try:
            os.rename(tmp, vdir)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        return str(vdir / "_data")

    def _mounted_under(self, name: str) -> builtins.list[str]:
        prefix = str(self._dir(name))
        return [m.target for m in mountsys.read_mountinfo()
                if m.target == prefix or m.target.startswith(prefix + "/")]

    def is_mounted(self, name: str) -> bool:
        return self.path(name) in self._mounted_under(name)

    def mounted(self) -> set[str]:
        """Volumes whose `_data` has a mount on it now (for reconciliation: a volume mounted
        with no running user is unmounted, and the log told)."""
        prefix = str(self.base) + "/"
        return {m.target[len(prefix):-len("/_data")] for m in mountsys.read_mountinfo()
                if m.target.startswith(prefix) and m.target.endswith("/_data")
                and m.target.count("/") == prefix.count("/") + 1}

    @_locked
    def mount(self, name: str, options: Mapping[str, str] | None = None) -> str:
        """Make the volume usable and return its `_data` path: for a volume with local
        options, mount its tmpfs or bind device there unless already mounted."""
        data = self.path(name)
        if not os.path.isdir(data):
            raise NotFound(f"no such volume: {name}")
        opts = parse_local_options(options)
        if not opts.kind or self.is_mounted(name):
            return data
        try:
            if opts.kind == "tmpfs":
                flags, fsdata = tmpfs_flags(opts.options)
                mountsys.mount(opts.device, data, "tmpfs", flags, fsdata)
            else:
                fd = bindsafe.open_host_path(opts.device)
                try:
                    if not stat.S_ISDIR(os.fstat(fd).st_mode):
                        raise bindsafe.BindSourceError(
                            f"volume {name}: device {opts.device} is not a directory")
                    bindsafe.bind_fd(fd, data, recursive=opts.recursive,
                                     read_only="ro" in opts.options)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise KernelError(f"mounting volume {name} failed: {exc.strerror}") from exc
        return data

    @_locked
    def unmount(self, name: str) -> None:
        """Unmount what `mount` put on the volume's `_data` (idempotent)."""
        data = self.path(name)
        while self.is_mounted(name):
            try:
                mountsys.umount(data)
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise KernelError(f"unmounting volume {name}: {exc.strerror}") from exc
                mountsys.umount(data, detach=True)

    @_locked
    def remove(self, name: str) -> None:
        """Delete the volume and its data (idempotent). Refuses while anything is mounted
        under it — deleting through a bind would delete the host directory's files."""
        vdir = self._dir(name)
        self.unmount(name)
        left = self._mounted_under(name)
        if left:
            raise Conflict(f"volume {name} is still mounted at {left[0]}",
                           hint="stop the containers that use it")
        if not os.path.lexists(vdir):
            return
        # rmtree works by fds and never follows symlinks (shutil.rmtree.avoids_symlink_attacks)
        assert shutil.rmtree.avoids_symlink_attacks
        shutil.rmtree(vdir)

    @_locked
    def seed(self, name: str, rootfs_dir: str, target: str,
             options: Mapping[str, str] | None = None) -> SeedStats | None:
        """Copy the image's content at `target` (resolved in-root) into the volume if the
        volume is empty, as Docker does; None when nothing was copied. A volume with local
        options is mounted for the copy and unmounted again if it was not mounted before."""
        was_mounted = self.is_mounted(name)
        data = self.mount(name, options)
        try:
            try:
                resolved, is_dir = bindsafe.resolve_in_root(rootfs_dir, target)
            except NotFound:
                return None
            if not is_dir:
                return None
            dfd = os.open(data, _O_DIR)
            try:
                if os.listdir(dfd):
                    return None  # moby copies only into an empty volume
                sfd = _open_in_root(rootfs_dir, resolved)
                try:
                    return copy_tree(sfd, dfd)
                finally:
                    os.close(sfd)
            finally:
                os.close(dfd)
        finally:
            if not was_mounted:
                self.unmount(name)


def _open_in_root(rootfs: str, resolved: str) -> int:
    """A readable dir fd for an already-resolved (symlink-free) container path."""
    fd = os.open(rootfs, _O_DIR)
    try:
        for comp in [p for p in resolved.split("/") if p]:
            nfd = os.open(comp, _O_DIR, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


class Mounter:
    """Executes mount plans: volume mounts, bind staging, in-root targets."""

    def __init__(self, store: VolumeStore, stager: bindsafe.BindStager, *,
                 spec_mounts: Sequence[str] = SPEC_MOUNTS) -> None:
        self.store = store
        self.stager = stager
        # runc mounts these before ours; a target below one of them is resolved in what
        # runc puts there (a fresh /dev tmpfs), not in the image's own /dev.
        self.spec_layers = [bindsafe.Layer(destination=d, host=None) for d in spec_mounts]

    def prepare(self, container_id: str, plan: MountPlan, rootfs: str, *,
                volume_options: Mapping[str, Mapping[str, str]] | None = None
                ) -> list[dict[str, Any]]:
        """The OCI mount entries for `plan`, in order, ready for `extra_mounts`. On error
        the staging mounts made so far are released; volumes stay as they were."""
        vopts = volume_options or {}
        layers: list[bindsafe.Layer] = list(self.spec_layers)
        out: list[dict[str, Any]] = []
        try:
            for i, m in enumerate(plan.mounts):
                host: str | None
                if m.kind == "volume":
                    host, is_dir = self.store.mount(m.source, vopts.get(m.source)), True
                elif m.kind == "bind":
                    if m.create_source:
                        bindsafe.ensure_host_dir(m.source)
                    staged = self.stager.stage(container_id, i, m.source,
                                               read_only=m.read_only, propagation=m.propagation)
                    host, is_dir = staged.path, staged.is_dir
                else:
                    host, is_dir = None, True
                create = "parents" if m.kind == "tmpfs" else "dir" if is_dir else "file"
                dest, _ = bindsafe.resolve_in_root(rootfs, m.target, layers=layers,
                                                   create=create)
                layers.append(bindsafe.Layer(destination=dest, host=host, is_dir=is_dir))
                out.append(m.oci(source=host or "", destination=dest))
        except BaseException:
            self.stager.release(container_id)
            raise
        return out

    def release(self, container_id: str) -> None:
        """Drop the container's staging mounts (idempotent); call after `runc create` (the
        container holds its own copies), after a failed start, and at stop/remove."""
        self.stager.release(container_id)


class LocalVolumes:
    """The volume seam (`engine/drivers/volumes/seam.py`) on Linux: the local volume store
    under the state root and the fd-safe mounter, with bind staging under the exec root."""

    def __init__(self, root: str | os.PathLike[str], exec_root: str | os.PathLike[str]) -> None:
        self.store = VolumeStore(root)
        self.mounter = Mounter(self.store, bindsafe.BindStager(Path(exec_root) / "containers"))

    def create(self, name: str, options: dict[str, str]) -> None:
        self.store.create(name, options)

    def remove(self, name: str) -> None:
        self.store.remove(name)

    def seed(self, name: str, rootfs: str, target: str, options: dict[str, str]) -> None:
        self.store.seed(name, rootfs, target, options)

    def prepare(self, container_id: str, plan: Any, rootfs: str,
                volume_options: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
        return self.mounter.prepare(container_id, plan, rootfs, volume_options=volume_options)

    def release(self, container_id: str) -> None:
        self.mounter.release(container_id)

    def path(self, name: str) -> str:
        return self.store.path(name)
