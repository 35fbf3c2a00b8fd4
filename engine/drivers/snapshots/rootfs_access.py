"""Reading and writing inside a container's root filesystem without ever leaving it:
`docker cp` in and out, `docker export`, `docker diff`.

I/O: the filesystem, under one directory fd per operation. Every path a user names is
resolved by the kernel with `openat2(2)` RESOLVE_IN_ROOT (symlinks, absolute ones included,
and ".." are resolved against the container's root, never the host's: CVE-2018-15664,
CVE-2019-14271), RESOLVE_NO_MAGICLINKS (no /proc/self/fd jumps) and RESOLVE_NO_XDEV (no
other mount). Below the resolved point, tree walks go through directory fds with O_NOFOLLOW:
a symlink met on the way is archived as a symlink, never followed, and a swap between our
check and our open cannot redirect it. Copying in hands the resolved directory fd to the
confined layer unpacker (`tarsafe.Applier`, through `layers.apply_tar`), which refuses "..",
writes through no symlink, and here also refuses whiteouts and skips device nodes.

- `stat_resource` / `archive_resource`: `HEAD/GET /containers/{id}/archive`.
- `extract_into`: `PUT /containers/{id}/archive` (into a running container through its own
  mount namespace's root, `/proc/PID/root`, so its /dev tmpfs is reached).
- `export_rootfs`: `GET /containers/{id}/export`, streamed (a tree walk yielding chunks).
- `upper_entries`: the overlay upper dir for `GET /containers/{id}/changes`.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from engine.core.errors import Conflict, InvalidArgument, KernelError, NotFound
from engine.core.fs_plan import CopyPath, UpperEntry, go_file_mode
from engine.drivers.layers.tarsafe import Applier, ApplyStats, InvalidLayer, LayerLimits
from engine.drivers.layers.unpack import apply_tar
from engine.drivers.volumes.bindsafe import (
    RESOLVE_NO_MAGICLINKS,
    RESOLVE_NO_SYMLINKS,
    BindSourceError,
    open_host_path,
    openat2,
)

RESOLVE_NO_XDEV = 0x01
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
IN_ROOT = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV
_IN_ROOT_MOUNTS = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS  # may cross mounts: checked after

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CHUNK = 256 * 1024
_OPAQUE_XATTR = "trusted.overlay.opaque"


def open_in_root(root_fd: int, path: str, flags: int, resolve: int = IN_ROOT) -> int:
    """Open container `path` with every symlink resolved inside the root. NotFound if missing."""
    try:
        return openat2(root_fd, path.lstrip("/") or ".", flags, resolve)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise NotFound(f"Could not find the file {path} in container",
                           hint="check the path with: shipslog exec CONTAINER ls") from None
        if exc.errno == errno.EXDEV:
            raise InvalidArgument(f"{path} is on another mount (a volume or bind mount)",
                                  hint="copy through the container's own filesystem, or "
                                       "reach the volume's files from the host") from None
        if exc.errno == errno.ELOOP:
            raise InvalidArgument(f"{path}: too many levels of symbolic links") from None
        raise KernelError(f"opening {path} in the container: {exc.strerror}") from exc


@dataclass(frozen=True)
class PathStat:
    """Docker's `types.ContainerPathStat` (the X-Docker-Container-Path-Stat header)."""

    name: str
    size: int
    mode: int  # Go os.FileMode
    mtime_ns: int
    link_target: str
    is_dir: bool


class Resource:
    """A resolved copy source: the parent directory's fd and the entry in it (None: itself).

    `rootfs` is the container's root, or the host directory of a volume or bind mount that
    stands in for the container's tree at `at` (`plan` is then relative to the mount)."""

    def __init__(self, rootfs: str, plan: CopyPath, pid: int = 0, *, at: str = "/") -> None:
        """`pid`: a running container's, to resolve in its own mount namespace
        (`open_live_root`); 0: under the rootfs we mounted. A mount's host directory
        (`at` not "/") is reached the same way, running or stopped (`open_mount_root`)."""
        self.rootfs = rootfs
        self.plan = plan
        self.at = at
        self.devs: set[int] | None = None
        self.resolve = IN_ROOT
        if at != "/":
            self.root_fd = open_mount_root(rootfs)
        elif pid:
            self.root_fd, self.devs = open_live_root(rootfs, pid)
            self.resolve = _IN_ROOT_MOUNTS
        else:
            self.root_fd = open_root(rootfs)
        try:
            self.parent_fd = open_in_root(self.root_fd, plan.parent,
                                          os.O_PATH | os.O_DIRECTORY, self.resolve)
        except BaseException:
            os.close(self.root_fd)
            raise
        try:
            if plan.entry is None:
                self.st = os.fstat(self.parent_fd)
            else:
                self.st = os.stat(plan.entry, dir_fd=self.parent_fd, follow_symlinks=False)
            # A stat may look anywhere; a copy only at the rootfs and /dev (`check_mount`).
            self.elsewhere = self.devs is not None and not (
                os.fstat(self.parent_fd).st_dev in self.devs
                and (self.st.st_dev in self.devs
                     or (self.st.st_dev, self.st.st_ino) in runtime_files(self.root_fd)))
        except FileNotFoundError:
            self.close()
            raise NotFound(f"Could not find the file {plan.requested} in container",
                           hint="check the path with: shipslog exec CONTAINER ls") from None
        except BaseException:
            self.close()
            raise

    def check_mount(self) -> None:
        if self.elsewhere:
            raise other_mount(self.plan.requested)

    def _path(self, fd: int) -> str:
        return live_container_path(fd) if self.devs is not None else \
            container_path(fd, self.rootfs, self.at)

    def close(self) -> None:
        os.close(self.parent_fd)
        os.close(self.root_fd)

    def stat(self) -> PathStat:
        link = ""
        if stat.S_ISLNK(self.st.st_mode) and self.plan.entry is not None:
            link = self._link_target()
        return PathStat(name=self.plan.name, size=self.st.st_size,
                        mode=go_file_mode(self.st.st_mode), mtime_ns=self.st.st_mtime_ns,
                        link_target=link, is_dir=stat.S_ISDIR(self.st.st_mode))

    def _link_target(self) -> str:
        """Where the symlink leads, as a container path (resolved in-root, like Docker's
        FollowSymlinkInScope); for a dangling link, its target made absolute lexically."""
        assert self.plan.entry is not None
        full = posixpath.join(self.plan.parent, self.plan.entry)
        try:
            fd = openat2(self.root_fd, full.lstrip("/"), os.O_PATH, self.resolve)
        except OSError:
            target = os.readlink(self.plan.entry, dir_fd=self.parent_fd)
            return posixpath.normpath(posixpath.join(self.plan.parent, target))
        try:
            return self._path(fd)
        finally:
            os.close(fd)

    def container_path(self) -> str:
        """Where the resource is, as a container path, its parent's symlinks resolved."""
        parent = self._path(self.parent_fd)
        if self.plan.entry is None:
            return parent
        return posixpath.join(parent, self.plan.entry)

    def chunks(self) -> Iterator[bytes]:
        """The resource as a tar stream; the top entry is named `plan.rebase`."""
        writer = _TarWriter()
        if self.plan.entry is None:
            fd = os.open(".", _O_DIR, dir_fd=self.parent_fd)
            yield from writer.entry_of_dir(fd, self.st, self.plan.rebase)
        else:
            yield from writer.entry(self.parent_fd, self.plan.entry, self.st, self.plan.rebase)
        yield writer.end()


def resolved_dir(rootfs: str, path: str) -> str:
    """Where container directory `path` resolves to in-root, as a container path (its
    symlinks followed inside the root). NotFound if missing."""
    root_fd = open_root(rootfs)
    try:
        fd = open_in_root(root_fd, path, os.O_PATH | os.O_DIRECTORY)
        try:
            return container_path(fd, rootfs)
        finally:
            os.close(fd)
    finally:
        os.close(root_fd)


def container_path(fd: int, rootfs: str, at: str = "/") -> str:
    """The container path of an fd opened inside `rootfs` (from /proc/self/fd); `rootfs`
    stands for the container's tree at `at` (a mount's host directory, or the root)."""
    host = os.readlink(f"/proc/self/fd/{fd}")
    root = os.path.realpath(rootfs)
    if host == root:
        return at
    if host.startswith(root + "/"):
        return posixpath.join(at, host[len(root) + 1:])
    raise KernelError(f"{host} is outside the container's root")


def open_root(rootfs: str) -> int:
    return os.open(rootfs, _O_DIR)


def open_live_root(rootfs: str, pid: int) -> tuple[int, set[int]]:
    """The root of a running container's own mount namespace (/proc/PID/root) and the
    devices a copy may reach under it: its root filesystem and the tmpfs the runtime mounts
    on /dev, which the rootfs we mounted does not show (a copy into /dev went to the overlay
    beneath it and never appeared: issue 15 item 9). Resolution under it stays
    RESOLVE_IN_ROOT. The pid must still have this rootfs as its root: a recycled pid is not
    the container."""
    gone = Conflict("the container is not running any more",
                    hint="copy again; a stopped container's files are reached too")
    try:
        root_fd = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        raise gone from None
    try:
        have, want = os.fstat(root_fd), os.stat(rootfs)
        if (have.st_dev, have.st_ino) != (want.st_dev, want.st_ino):
            raise gone
        devs = {have.st_dev}
        try:
            dev = open_in_root(root_fd, "/dev", os.O_PATH | os.O_DIRECTORY, _IN_ROOT_MOUNTS)
        except (NotFound, KernelError):
            return root_fd, devs
        devs.add(os.fstat(dev).st_dev)
        os.close(dev)
        return root_fd, devs
    except BaseException:
        os.close(root_fd)
        raise


# The files the runtime bind-mounts over the image's (engine/drivers/network/hostfiles.py): Docker's
# cp reads them as the container sees them, so a copy out reaches them too.
RUNTIME_FILES = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")


def runtime_files(root_fd: int) -> set[tuple[int, int]]:
    """(device, inode) of the runtime's bind-mounted files under a live root: a copy out of
    exactly these is allowed although they sit on another mount (not their directories, not
    anything else on the device they come from)."""
    found = set()
    for path in RUNTIME_FILES:
        try:
            fd = open_in_root(root_fd, path, os.O_PATH | os.O_NOFOLLOW, _IN_ROOT_MOUNTS)
        except (NotFound, KernelError, InvalidArgument):
            continue
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode):
                found.add((st.st_dev, st.st_ino))
        finally:
            os.close(fd)
    return found


def other_mount(path: str) -> InvalidArgument:
    """Under a live root, what is on neither the rootfs nor /dev (a volume, /dev/shm, /proc)
    is refused, as RESOLVE_NO_XDEV refuses it under the rootfs we mount."""
    return InvalidArgument(f"{path} is on another mount (a volume, bind mount or tmpfs)",
                           hint="copy through the container's own filesystem, or reach the "
                                "volume's files from the host")


def live_container_path(fd: int) -> str:
    """The container path of an fd opened under a live root: outside our own root, the
    kernel names it as the container sees it."""
    return os.readlink(f"/proc/self/fd/{fd}")


def open_mount_root(host_dir: str) -> int:
    """A volume's or bind mount's host directory, reached as the mount reaches it: a clean
    absolute path with no symlink on the way (engine/drivers/volumes/bindsafe.py), so a swapped
    component cannot redirect a copy out of it (RELIABILITY S-04). NotFound when it is gone
    or not a directory (a bind of a single file is reached through its parent's mount)."""
    try:
        fd = open_host_path(host_dir)
    except BindSourceError as exc:
        raise NotFound(exc.message, exc.hint) from None
    try:
        return os.open(".", _O_DIR, dir_fd=fd)
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            raise NotFound(f"{host_dir} is not a directory") from None
        raise KernelError(f"opening {host_dir}: {exc.strerror}") from exc
    finally:
        os.close(fd)


# -- tar writing --------------------------------------------------------------------------


class _TarWriter:
    """Writes a tree as tar, one directory fd at a time, never following a symlink and never
    leaving the filesystem it started on. Hard links within the tree stay hard links."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.links: dict[tuple[int, int], str] = {}
        self.dev: int | None = None

    def _flush(self, force: bool = False) -> Iterator[bytes]:
        if self.buf and (force or len(self.buf) >= _CHUNK):
            yield bytes(self.buf)
            self.buf.clear()

    def _header(self, name: str, st: os.stat_result, kind: bytes, linkname: str = "",
                size: int = 0) -> None:
        info = tarfile.TarInfo(name + ("/" if kind == tarfile.DIRTYPE else ""))
        info.type = kind
        info.mode = st.st_mode & 0o7777
        info.uid, info.gid = st.st_uid, st.st_gid
        info.mtime = st.st_mtime
        info.size = size
        info.linkname = linkname
        if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        self.buf += info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")

    def entry(self, dir_fd: int, name: str, st: os.stat_result, member: str) -> Iterator[bytes]:
        """One entry of `dir_fd` (and, for a directory, everything below it)."""
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            try:
                fd = os.open(name, _O_DIR, dir_fd=dir_fd)
            except OSError as exc:  # swapped for a symlink since the stat: skip it
                if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                    return
                raise
            yield from self.entry_of_dir(fd, st, member)
        elif stat.S_ISREG(mode):
            yield from self._file(dir_fd, name, st, member)
        elif stat.S_ISLNK(mode):
            self._header(member, st, tarfile.SYMTYPE, os.readlink(name, dir_fd=dir_fd))
        elif stat.S_ISFIFO(mode):
            self._header(member, st, tarfile.FIFOTYPE)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            self._header(member, st, tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE)
        # sockets are not archived (Docker skips them too)
        yield from self._flush()

    def entry_of_dir(self, fd: int, st: os.stat_result, member: str | None) -> Iterator[bytes]:
        """Directory `fd` (owned, closed here) and its contents. `member` None: the contents
        only, named relative to it (export)."""
        try:
            if self.dev is None:
                self.dev = st.st_dev
            if member is not None:
                self._header(member, st, tarfile.DIRTYPE)
            if st.st_dev != self.dev:
                return  # a mount point inside the tree: its own filesystem is not ours to copy
            for name in sorted(os.listdir(fd)):
                try:
                    child = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed while we walked
                yield from self.entry(fd, name, child, name if member is None
                                      else f"{member}/{name}")
        finally:
            os.close(fd)

    def _file(self, dir_fd: int, name: str, st: os.stat_result, member: str) -> Iterator[bytes]:
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self.links:
            self._header(member, st, tarfile.LNKTYPE, self.links[key])
            return
        try:
            fd = os.open(name, _O_FILE, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOENT, errno.ENXIO):
                return  # swapped or removed since the stat
            raise
        try:
            st = os.fstat(fd)  # what we actually opened
            if not stat.S_ISREG(st.st_mode):
                return
            if st.st_nlink > 1:
                self.links[key] = member
            self._header(member, st, tarfile.REGTYPE, size=st.st_size)
            left = st.st_size
            while left > 0:
                data = os.read(fd, min(left, 1 << 20))
                if not data:  # shrank while we read: pad, the header promised the size
                    data = b"\0" * min(left, 1 << 20)
                self.buf += data
                left -= len(data)
                yield from self._flush()
            pad = -st.st_size % tarfile.BLOCKSIZE
            self.buf += b"\0" * pad
        finally:
            os.close(fd)

    def end(self) -> bytes:
        self.buf += b"\0" * (2 * tarfile.BLOCKSIZE)
        self.buf += b"\0" * (-len(self.buf) % tarfile.RECORDSIZE)
        out = bytes(self.buf)
        self.buf.clear()
        return out


def export_rootfs(rootfs: str) -> Iterator[bytes]:
    """The whole merged root filesystem as a tar stream, entries named relative to `/`."""
    fd = open_root(rootfs)
    writer = _TarWriter()
    yield from writer.entry_of_dir(fd, os.fstat(fd), None)
    yield writer.end()


# -- copying in -----------------------------------------------------------------------------


class ContainerApplier(Applier):
    """The layer unpacker, for a copy into a live root: the overlay whiteout conventions do
    not apply (a `.wh.` name is refused rather than turned into a deletion), and no device
    node is ever created (a 0:0 character device would be a whiteout)."""

    def _whiteout(self, parent: tuple[str, ...], base: str) -> None:
        raise InvalidLayer(f"invalid archive: refusing to copy {base!r}: names starting with "
                           "'.wh.' are overlay whiteouts")

    keep_kinds = False  # refuse to replace a directory by a non-directory and vice versa

    def _create(self, m: tarfile.TarInfo, pfd: int, parts: tuple[str, ...], base: str,
                data: object) -> None:
        if m.ischr() or m.isblk():
            self.stats.skipped_devices += 1
            return
        if self.keep_kinds:
            self._check_kind(m, pfd, parts, base)
        super()._create(m, pfd, parts, base, data)  # type: ignore[arg-type]

    @staticmethod
    def _check_kind(m: tarfile.TarInfo, pfd: int, parts: tuple[str, ...], base: str) -> None:
        try:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode) and not m.isdir():
            raise InvalidLayer(f"cannot overwrite directory {'/'.join(parts)!r} with "
                               "non-directory", "remove the directory first, or copy elsewhere")
        if m.isdir() and not stat.S_ISDIR(st.st_mode):
            raise InvalidLayer(f"cannot overwrite non-directory {'/'.join(parts)!r} with "
                               "directory", "remove the file first, or copy elsewhere")


class _KindKeepingApplier(ContainerApplier):
    keep_kinds = True


def open_directory(rootfs: str, path: str, *, at: str = "/",
                   asked: str | None = None) -> tuple[int, str]:
    """An fd for container directory `path`, resolved in-root, and its resolved container
    path. NotFound if missing, InvalidArgument (Docker's 400 "not a directory") if it is
    something else. With `at`, `rootfs` is a mount's host directory standing for the
    container's tree at `at`, and `path` is relative to it (`asked`: as the user named it)."""
    root_fd = open_root(rootfs) if at == "/" else open_mount_root(rootfs)
    try:
        fd = open_in_root(root_fd, path, os.O_PATH)
        try:
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                raise InvalidArgument(f"extraction point {asked or path} is not a directory",
                                      hint="copy into a directory, or name the new file's path")
            return os.open(".", _O_DIR, dir_fd=fd), container_path(fd, rootfs, at)
        finally:
            os.close(fd)
    finally:
        os.close(root_fd)


def open_live_directory(rootfs: str, pid: int, path: str) -> tuple[int, str, bool]:
    """`open_directory` for a running container, in its own mount namespace (see
    `open_live_root`); also whether the directory is on another mount (`other_mount`: the
    caller refuses it, after its own check that names a volume)."""
    root_fd, devs = open_live_root(rootfs, pid)
    try:
        fd = open_in_root(root_fd, path, os.O_PATH, _IN_ROOT_MOUNTS)
        try:
            st = os.fstat(fd)
            if not stat.S_ISDIR(st.st_mode):
                raise InvalidArgument(f"extraction point {path} is not a directory",
                                      hint="copy into a directory, or name the new file's path")
            return (os.open(".", _O_DIR, dir_fd=fd), live_container_path(fd),
                    st.st_dev not in devs)
        finally:
            os.close(fd)
    finally:
        os.close(root_fd)


def extract_into(dest_fd: int, source: BinaryIO, limits: LayerLimits | None = None, *,
                 no_overwrite_dir_non_dir: bool = False) -> ApplyStats:
    """Unpack the (possibly compressed) tar `source` into the directory `dest_fd`.
    `no_overwrite_dir_non_dir`: Docker's flag of that name (the docker CLI always sets it)."""
    applier = _KindKeepingApplier if no_overwrite_dir_non_dir else ContainerApplier
    _, used = apply_tar(source, dest_fd, limits or LayerLimits(), applier_class=applier)
    return used.stats


# -- diff -----------------------------------------------------------------------------------


def upper_entries(upper: str, lowers: Sequence[str]) -> list[UpperEntry]:
    """Every entry of the overlay upper dir, with what the image's layers (`lowers`, top-most
    first) hold at the same path. Reads only; follows no symlink."""
    lower_fds = []
    try:
        for lower in lowers:
            try:
                lower_fds.append(os.open(lower, _O_DIR))
            except FileNotFoundError:
                continue
        top = os.open(upper, _O_DIR)
        out: list[UpperEntry] = []
        _walk_upper(top, "", lower_fds, out)
        return out
    finally:
        for fd in lower_fds:
            os.close(fd)


def _walk_upper(fd: int, prefix: str, lowers: list[int], out: list[UpperEntry]) -> None:
    try:
        for name in sorted(os.listdir(fd)):
            path = f"{prefix}/{name}"
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            below = _lower_stat(lowers, path)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out.append(UpperEntry(path, "whiteout", below is not None))
                continue
            if not stat.S_ISDIR(st.st_mode):
                out.append(UpperEntry(path, "file", below is not None))
                continue
            try:
                child = os.open(name, _O_DIR, dir_fd=fd)
            except OSError:
                continue
            opaque = _is_opaque(child)
            meta = below is not None and (
                not stat.S_ISDIR(below.st_mode)
                or (below.st_mode, below.st_uid, below.st_gid)
                != (st.st_mode, st.st_uid, st.st_gid))
            out.append(UpperEntry(path, "opaque" if opaque else "dir", below is not None,
                                  meta_changed=meta))
            _walk_upper(child, path, lowers, out)
    finally:
        os.close(fd)


def _is_opaque(fd: int) -> bool:
    try:
        return os.getxattr(fd, _OPAQUE_XATTR) == b"y"
    except OSError:
        return False


def _lower_stat(lowers: list[int], path: str) -> os.stat_result | None:
    """The entry at `path` in the image (the first layer that has it, top-most first); None
    if no layer has it or the top-most one whites it out."""
    for fd in lowers:
        try:
            entry = openat2(fd, path.lstrip("/"), os.O_PATH | os.O_NOFOLLOW,
                            RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
        except OSError:
            continue
        try:
            st = os.fstat(entry)
        finally:
            os.close(entry)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return None
        return st
    return None
