"""Bind sources opened by file descriptor, and mount targets resolved inside the rootfs.

I/O: kernel and filesystem. `open_host_path` opens a host path with `openat2(2)`
RESOLVE_NO_SYMLINKS (or an O_PATH|O_NOFOLLOW walk, one component at a time, where openat2 is
missing), so a path component swapped for a symlink makes the open fail instead of leading
elsewhere. `BindStager.stage` bind-mounts that very fd (`/proc/self/fd/N`) onto a private
staging path under `<root>/<container-id>/mounts/`, which only the daemon can reach, and runc
is given the staging path: between our check and runc's mount there is no path a container or
a user can swap (RELIABILITY S-04; CVE-2021-30465, GHSA-wp3j-xq48-xpjw). `release` unmounts
every staging mount of a container (found in /proc/self/mountinfo, so it works after a daemon
restart) and removes the staging entries without ever recursing into them.

`resolve_in_root` resolves a container path the way runc's securejoin does — a symlink is
read and resolved against the container's root, never the host's — walking directory fds with
O_NOFOLLOW and creating missing directories (or the final file) in-root. It also knows the
mounts that will sit on top of the rootfs (`Layer`s: a volume's `_data`, a bind's staging
path, a fresh tmpfs), so a target nested in another mount is resolved in what the container
will see there.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.core.errors import InvalidArgument, KernelError, NotFound
from engine.core.validate import check_id
from engine.drivers.host import mountsys

_libc = mountsys._libc
_long = ctypes.c_long

_SYS_OPENAT2 = 437  # the same on every architecture (allocated after the tables merged)
_SYS_MOUNT_SETATTR = 442
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MS_BIND = 0x1000
MS_REC = 0x4000
MS_REMOUNT = 0x20
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
_PROPAGATION_FLAGS = {"": MS_PRIVATE, "private": MS_PRIVATE, "rprivate": MS_PRIVATE,
                      "slave": MS_SLAVE, "rslave": MS_SLAVE, "shared": 0, "rshared": 0}
MAX_SYMLINKS = 40  # the kernel's MAXSYMLINKS: ELOOP past it

_O_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_O_PATHDIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


_have_openat2 = True
_have_mount_setattr = True


class BindSourceError(InvalidArgument):
    """A bind source that cannot be mounted safely (a symlink, a missing path). HTTP 400."""


def _symlink_error(path: str, component: str) -> BindSourceError:
    return BindSourceError(
        f"bind source {path}: {component} is a symbolic link",
        hint="give the real path (see `realpath`); symlinks in bind sources are never "
             "followed, a swapped path must not redirect the mount (RELIABILITY S-04)")


def openat2(dir_fd: int, path: str, flags: int, resolve: int) -> int:
    """openat2(2) (O_CLOEXEC always added); raises OSError with the kernel's errno."""
    how = _OpenHow(flags=flags | os.O_CLOEXEC, mode=0, resolve=resolve)
    ret = _libc.syscall(_long(_SYS_OPENAT2), _long(dir_fd),
                        ctypes.c_char_p(os.fsencode(path)), ctypes.byref(how),
                        ctypes.c_size_t(ctypes.sizeof(how)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(ret)


def _openat2(path: str) -> int:
    return openat2(mountsys.AT_FDCWD, path, os.O_PATH | os.O_NOFOLLOW,
                   RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)


def _walk_open(path: str) -> int:
    fd = os.open("/", _O_PATHDIR)
    try:
        for comp in [p for p in path.split("/") if p]:
            nfd = os.open(comp, _O_PATH, dir_fd=fd)
            os.close(fd)
            fd = nfd
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise OSError(errno.ELOOP, "symbolic link", comp)
    except BaseException:
        os.close(fd)
        raise
    return fd


def ensure_host_dir(path: str) -> None:
    """Create the missing directories of the clean absolute host `path` (mode 0755), as
    `docker run -v /missing:/x` does, one component at a time by directory fd: an existing
    component that is a symlink is refused, never followed (the mount would otherwise land
    wherever a user pointed it). Existing paths are left untouched."""
    if not path.startswith("/") or ".." in path.split("/") or "\x00" in path:
        raise BindSourceError(f"bind source {path!r} is not a clean absolute path")
    fd = os.open("/", _O_PATHDIR)
    try:
        for comp in [p for p in path.split("/") if p]:
            try:
                nfd = os.open(comp, _O_PATH, dir_fd=fd)
            except FileNotFoundError:
                try:
                    os.mkdir(comp, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass  # created meanwhile by someone else: open what is there now
                except OSError as exc:
                    raise KernelError(f"creating bind source {path}: {exc.strerror}",
                                      hint="create it on the host first") from exc
                nfd = os.open(comp, _O_PATH, dir_fd=fd)
            os.close(fd)
            fd = nfd
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise _symlink_error(path, "a path component")
    finally:
        os.close(fd)


def open_host_path(path: str, *, use_openat2: bool | None = None) -> int:
    """An O_PATH fd for the absolute, clean host `path`, reached without following any
    symlink. Raises BindSourceError (symlink, missing, not absolute)."""
    global _have_openat2
    if not path.startswith("/") or ".." in path.split("/") or "\x00" in path:
        raise BindSourceError(f"bind source {path!r} is not a clean absolute path")
    want = _have_openat2 if use_openat2 is None else use_openat2
    try:
        if want:
            try:
                fd = _openat2(path)
            except OSError as exc:
                if exc.errno != errno.ENOSYS:
                    raise
                _have_openat2 = False
                fd = _walk_open(path)
        else:
            fd = _walk_open(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _symlink_error(path, "a path component") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise BindSourceError(f"bind source path does not exist: {path}",
                                  hint="create it on the host first") from None
        raise KernelError(f"opening bind source {path}: {exc.strerror}") from exc
    if stat.S_ISLNK(os.fstat(fd).st_mode):  # O_PATH|O_NOFOLLOW returns the link itself
        os.close(fd)
        raise _symlink_error(path, "the last component")
    return fd


def _mount_setattr(path: str, *, read_only: bool, propagation: int) -> None:
    """Recursively make a mount read-only and/or set its propagation (Linux 5.12+)."""
    global _have_mount_setattr
    if _have_mount_setattr:
        attr = _MountAttr(attr_set=MOUNT_ATTR_RDONLY if read_only else 0, attr_clr=0,
                          propagation=propagation, userns_fd=0)
        ret = _libc.syscall(_long(_SYS_MOUNT_SETATTR), _long(mountsys.AT_FDCWD),
                            ctypes.c_char_p(os.fsencode(path)),
                            ctypes.c_uint(AT_RECURSIVE | 0x100),  # AT_SYMLINK_NOFOLLOW
                            ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
        if ret == 0:
            return
        err = ctypes.get_errno()
        if err != errno.ENOSYS:
            raise OSError(err, f"mount_setattr: {os.strerror(err)}", path)
        _have_mount_setattr = False
    if propagation:
        mountsys.mount("", path, "", propagation | MS_REC)
    if read_only:  # only the top mount: older kernels have no recursive read-only
        mountsys.mount("", path, "", MS_REMOUNT | MS_BIND | mountsys.MS_RDONLY)


def bind_fd(fd: int, target: str, *, recursive: bool = True, read_only: bool = False,
            propagation: str = "") -> None:
    """Bind-mount what `fd` (O_PATH) refers to onto `target`, then set read-only and the
    propagation. The magic link /proc/self/fd/N names the fd's own dentry and mount: no path
    is resolved again, so nothing can be swapped in between."""
    flags = MS_BIND | (MS_REC if recursive else 0)
    mountsys.mount(f"/proc/self/fd/{fd}", target, "", flags)
    try:
        _mount_setattr(target, read_only=read_only,
                       propagation=_PROPAGATION_FLAGS.get(propagation, MS_PRIVATE))
    except OSError:
        mountsys.umount(target, detach=True)
        raise


@dataclass(frozen=True)
class Staged:
    path: str  # what runc gets as the mount source
    is_dir: bool


class BindStager:
    """Staging mounts for bind sources under `<root>/<container-id>/mounts/<n>`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()

    def staging_dir(self, container_id: str) -> Path:
        return self.root / check_id(container_id) / "mounts"

    def stage(self, container_id: str, key: int, source: str, *, read_only: bool = False,
              propagation: str = "", recursive: bool = True) -> Staged:
        """Open `source` by fd (no symlinks) and bind it onto a fresh staging path; return
        that path. Idempotent per (container, key): a previous staging mount is replaced."""
        base = self.staging_dir(container_id)
        staging = base / str(int(key))
        fd = open_host_path(source)  # validates `source` before we touch the disk
        try:
            base.mkdir(mode=0o700, parents=True, exist_ok=True)
            is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
            self._fresh_entry(staging, is_dir)
            try:
                bind_fd(fd, str(staging), recursive=recursive, read_only=read_only,
                        propagation=propagation)
            except OSError as exc:
                raise KernelError(f"bind mount of {source} failed: {exc.strerror}") from exc
        finally:
            os.close(fd)
        return Staged(path=str(staging), is_dir=is_dir)

    def _fresh_entry(self, staging: Path, is_dir: bool) -> None:
        while str(staging) in {m.target for m in mountsys.read_mountinfo()}:
            mountsys.umount(str(staging), detach=True)
        _remove_empty(staging)
        if is_dir:
            os.mkdir(staging, 0o700)
        else:
            os.close(os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600))

    def staged(self, container_id: str) -> list[str]:
        """Staging mounts of this container present in the mount table."""
        prefix = str(self.staging_dir(container_id)) + "/"
        return [m.target for m in mountsys.read_mountinfo() if m.target.startswith(prefix)]

    def sweep(self) -> list[str]:
        """Release the staging mounts of every container (daemon start: after a crash
        between `prepare` and `release`); return the ids that had some."""
        prefix = str(self.root) + "/"
        ids = sorted({m.target[len(prefix):].split("/", 1)[0]
                      for m in mountsys.read_mountinfo() if m.target.startswith(prefix)})
        for cid in ids:
            self.release(cid)
        return ids

    def release(self, container_id: str) -> None:
        """Unmount every staging mount of the container and remove the staging entries.
        Idempotent. Safe once `runc create` has run: the container holds its own copies."""
        base = self.staging_dir(container_id)
        for target in sorted(self.staged(container_id), key=len):
            try:
                mountsys.umount(target, detach=True)
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOENT):
                    raise KernelError(f"unmounting {target} failed: {exc.strerror}") from exc
        left = self.staged(container_id)
        if left:
            raise KernelError(f"staging mounts of {container_id[:12]} still mounted: {left}")
        if base.is_dir():
            for entry in os.scandir(base):
                _remove_empty(Path(entry.path))  # never rmtree: a bind may still be there
            os.rmdir(base)
        try:
            os.rmdir(base.parent)
        except OSError:
            pass  # not ours alone, or not there


def _remove_empty(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        os.rmdir(path)  # ENOTEMPTY is an error we want to see
    else:
        os.unlink(path)


# -- resolving targets inside the rootfs --------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """A mount that will be in place above the rootfs when a later mount is made."""

    destination: str  # container path, already resolved
    host: str | None  # host dir or file seen there; None for a fresh tmpfs
    is_dir: bool = True


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


class _Walker:
    def __init__(self, rootfs: str, layers: Sequence[Layer]) -> None:
        self.rootfs = rootfs
        self.layers = {tuple(_parts(x.destination)): x for x in layers}

    def open_base(self, cur: list[str]) -> int | None:
        """The fd of the directory at container path `cur`, which is a mount point or /."""
        if not cur:
            return os.open(self.rootfs, _O_PATHDIR)
        layer = self.layers[tuple(cur)]
        if layer.host is None:
            return None
        return os.open(layer.host, os.O_PATH | os.O_CLOEXEC)


def resolve_in_root(rootfs: str, path: str, *, layers: Sequence[Layer] = (),
                    create: str | None = None) -> tuple[str, bool]:
    """Resolve container `path` in-root like securejoin; return (resolved path, is_dir).

    `create` = "dir" or "file" makes missing components (0755 dirs; the last one as asked)
    and checks the type of an existing last component; "parents" makes all but the last
    (for tmpfs: runc gives the tmpfs the mode of an existing mount point, which would
    override `mode=`). With `create=None` a missing component raises NotFound. Never opens
    anything outside `rootfs` and the `layers`' hosts.
    """
    walker = _Walker(rootfs, layers)
    todo: deque[str] = deque(_parts(path))
    cur: list[str] = []
    fd = walker.open_base(cur)
    fresh = False  # below a tmpfs that runc mounts fresh: nothing there yet
    links = 0
    is_dir = True
    missing = False
    try:
        while todo:
            comp = todo.popleft()
            if comp == ".":
                continue
            if comp == "..":  # lexical on a path without symlinks; re-walk from the root
                todo.extendleft(reversed(cur[:-1]))
                cur = []
                if fd is not None:
                    os.close(fd)
                fd, fresh, is_dir = walker.open_base(cur), False, True
                continue
            if not is_dir:
                raise InvalidArgument(f"mount target {path}: /{'/'.join(cur)} is not a directory")
            cur.append(comp)
            if tuple(cur) in walker.layers:  # a mount point: what is mounted there counts
                if fd is not None:
                    os.close(fd)
                fd = walker.open_base(cur)
                fresh = fd is None
                is_dir = walker.layers[tuple(cur)].is_dir
                continue
            if fresh:
                continue
            assert fd is not None
            if not todo:
                nfd = _open_or_create(fd, comp, None if create == "parents" else create)
            else:
                nfd = _open_or_create(fd, comp, "dir" if create else None)
            if nfd is None:
                if create == "parents" and not todo:
                    missing = True
                    break
                raise NotFound(f"{path} does not exist in the container's filesystem")
            st = os.fstat(nfd)
            if stat.S_ISLNK(st.st_mode):
                os.close(nfd)
                links += 1
                if links > MAX_SYMLINKS:
                    raise InvalidArgument(f"mount target {path}: too many levels of symlinks")
                target = os.readlink(comp, dir_fd=fd)
                cur.pop()
                if target.startswith("/"):  # absolute: from the container's root
                    todo.extendleft(reversed(_parts(target)))
                    cur = []
                    os.close(fd)
                    fd, is_dir = walker.open_base(cur), True
                else:
                    todo.extendleft(reversed(target.split("/")))
                continue
            os.close(fd)
            fd = nfd
            is_dir = stat.S_ISDIR(st.st_mode)
    finally:
        if fd is not None:
            os.close(fd)
    resolved = "/" + "/".join(cur)
    if create and not cur:
        raise InvalidArgument(f"mount target {path} resolves to the container's root",
                              hint="mount somewhere below /")
    if missing:
        return resolved, True
    if create and not fresh:
        if create in ("dir", "parents") and not is_dir:
            raise InvalidArgument(f"mount target {path} is not a directory",
                                  hint="a directory can only be mounted on a directory")
        if create == "file" and is_dir:
            raise InvalidArgument(f"mount target {path} is a directory",
                                  hint="a file can only be mounted on a file")
    return resolved, is_dir if not fresh else create != "file"


def _open_or_create(dir_fd: int, name: str, create: str | None) -> int | None:
    """An O_PATH|O_NOFOLLOW fd for `name` in `dir_fd`, made first if missing and asked."""
    for _ in range(8):  # another writer can race us between the open and the create
        try:
            return os.open(name, _O_PATH, dir_fd=dir_fd)
        except FileNotFoundError:
            if create is None:
                return None
        try:
            if create == "dir":
                os.mkdir(name, 0o755, dir_fd=dir_fd)
            else:
                os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, 0o644, dir_fd=dir_fd))
        except FileExistsError:
            pass
    raise KernelError(f"could not create mount target {name!r}: it keeps changing")
