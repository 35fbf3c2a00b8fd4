"""Confined extraction of one image layer tar into one directory, in overlayfs form.

I/O: filesystem (under one directory fd). `tarfile` is used only to parse headers; every
filesystem operation is ours and is relative to a directory fd opened with O_NOFOLLOW, so no
symlink that the layer creates is ever followed (RELIABILITY I-07, I-08, I-10: CVE-2021-32760,
CVE-2025-4517 and CPython #127987/#135034 cannot be replayed through this path; nor can anyone
"simplify" it into `extractall`).

Rules (OCI image-spec `layer.md`, containerd `archive/tar.go`, go-archive):

- names are split on "/"; "", "." dropped; any ".." component is an error ("invalid archive");
- parents are opened component by component with O_DIRECTORY|O_NOFOLLOW; a missing parent is
  created 0755 (implied directory); a parent that is a symlink or file is an error;
- regular files, directories, symlinks, FIFOs and hard links (to an earlier entry of this
  layer, never a directory) are created; device nodes are skipped (S-11), except a 0:0
  character device, which is already an overlay whiteout;
- `.wh.NAME` becomes an overlay whiteout (char device 0:0); `.wh..wh..opq` sets
  `trusted.overlay.opaque=y` on its directory; `.wh.`, `.wh..`, `.wh...` are errors (I-09);
  other `.wh..wh.*` names are aufs bookkeeping and are skipped;
- owner, mode (with setuid/setgid/sticky) and mtime are kept; tar xattrs are dropped
  (`security.capability` included, S-11); a directory given twice ends with its last entry's
  owner, mode and mtime, as with tarfile and go-archive (tests/property/test_unpack_vs_tarfile.py
  compares the trees both make);
- caps on entry count, path depth and path length (I-12) raise LayerTooLarge.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass, field
from typing import Protocol

from engine.core.errors import InvalidArgument, ShipslogError

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_NEWFILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_WHITEOUT_PREFIX = ".wh."
_OPAQUE = ".wh..wh..opq"
_OPAQUE_XATTR = "trusted.overlay.opaque"
_DIR_CACHE_MAX = 128
# errnos that mean "the machine is in trouble", not "the archive is bad": re-raised as-is.
_HOST_ERRNOS = {errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EROFS, errno.ENOMEM, errno.EMFILE}


def current_umask() -> int:
    """The process umask, read without changing it (os.umask would race other threads).

    Files are created with their final mode, and chmodded only when the umask took bits away.
    If the umask cannot be read, every file is chmodded (0o777 means "assume all bits lost").
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o777


class LayerError(ShipslogError):
    """Base for layer errors; `.hint` says what the user can do."""


class InvalidLayer(LayerError, InvalidArgument):
    """The archive is malformed or hostile ("invalid archive"). HTTP 400."""


class LayerTooLarge(InvalidLayer):
    """A size, ratio, entry-count or depth cap was hit (RELIABILITY I-12)."""


@dataclass(frozen=True)
class LayerLimits:
    """Caps against decompression bombs and hostile archives (RELIABILITY I-12)."""

    max_bytes: int = 32 << 30  # uncompressed tar stream
    max_ratio: int = 2000  # uncompressed / compressed, checked once past ratio_floor
    ratio_floor: int = 64 << 20
    max_entries: int = 1_000_000
    max_depth: int = 256  # path components
    max_path: int = 4096  # bytes, PATH_MAX


@dataclass
class ApplyStats:
    entries: int = 0
    files_bytes: int = 0
    skipped_devices: int = 0
    whiteouts: int = 0
    # directory -> mtime (ns) to set at the end; the last entry of a directory wins (as tarfile
    # and go-archive do), and a directory removed or replaced later is dropped from it
    dirs: dict[tuple[str, ...], int] = field(default_factory=dict)


class DataSource(Protocol):
    """What the applier needs from the tar stream: copy the current member's data to an fd."""

    def copy_to_fd(self, fd: int, n: int) -> None: ...


def split_name(name: str, limits: LayerLimits) -> tuple[str, ...]:
    """Split a tar member name into safe components, or raise InvalidLayer. Pure."""
    if "\x00" in name:
        raise InvalidLayer(f"invalid archive: NUL byte in path {name!r}")
    if len(os.fsencode(name)) > limits.max_path:
        raise LayerTooLarge(f"invalid archive: path longer than {limits.max_path} bytes")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise InvalidLayer(f"invalid archive: path {name[:200]!r} contains '..'")
    if len(parts) > limits.max_depth:
        raise LayerTooLarge(f"invalid archive: path deeper than {limits.max_depth} components")
    return parts


class Applier:
    """Applies tar members to the directory open as `root_fd`. Not thread-safe."""

    def __init__(self, root_fd: int, limits: LayerLimits) -> None:
        self.root_fd = root_fd
        self.limits = limits
        self.stats = ApplyStats()
        self._dirs: dict[tuple[str, ...], int] = {}
        # whether a directory is setgid: what is created in one takes its group, not ours
        self._sgid: dict[tuple[str, ...], bool] = {}
        self._is_root = os.geteuid() == 0
        self._umask = current_umask()

    # --- directory fds -----------------------------------------------------------------

    def close(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()

    def _dir(self, parts: tuple[str, ...], *, create: bool) -> int:
        """An fd for the directory `parts` below the root, never following a symlink."""
        if not parts:
            return self.root_fd
        fd = self._dirs.get(parts)
        if fd is not None:
            return fd
        i = len(parts) - 1
        while i > 0 and parts[:i] not in self._dirs:
            i -= 1
        fd = self._dirs[parts[:i]] if i > 0 else self.root_fd
        for j in range(i, len(parts)):
            name = parts[j]
            try:
                nfd = os.open(name, _O_DIR, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise InvalidLayer(
                        f"invalid archive: {'/'.join(parts)} does not exist in this layer"
                    ) from None
                os.mkdir(name, 0o755, dir_fd=fd)
                nfd = os.open(name, _O_DIR, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise InvalidLayer(
                        f"invalid archive: {'/'.join(parts[: j + 1])} is a symlink or not a "
                        "directory, refusing to write through it"
                    ) from None
                raise
            self._dirs[parts[: j + 1]] = nfd
            fd = nfd
        return fd

    def _trim_cache(self) -> None:
        # Called only between entries, so no fd handed out is still in use. The older half
        # goes (insertion order): a layer is written directory by directory, so the recent
        # ones are those its next entries need.
        if len(self._dirs) > _DIR_CACHE_MAX:
            for key in list(self._dirs)[: len(self._dirs) // 2]:
                os.close(self._dirs.pop(key))

    def _remove(self, parent: tuple[str, ...], pfd: int, name: str) -> None:
        """Remove whatever is at `name` under pfd (dir trees too); drop cached fds below it."""
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            gone = parent + (name,)
            for key in [k for k in self._dirs if k[: len(gone)] == gone]:
                os.close(self._dirs.pop(key))
            for key in [k for k in self.stats.dirs if k[: len(gone)] == gone]:
                del self.stats.dirs[key]  # its mtime would land on whatever replaces it
            for key in [k for k in self._sgid if k[: len(gone)] == gone]:
                del self._sgid[key]
            shutil.rmtree(name, dir_fd=pfd)
        else:
            os.unlink(name, dir_fd=pfd)

    # --- entries -----------------------------------------------------------------------

    def apply(self, m: tarfile.TarInfo, data: DataSource) -> None:
        """Apply one member. Raises InvalidLayer for anything hostile or malformed."""
        self.stats.entries += 1
        if self.stats.entries > self.limits.max_entries:
            raise LayerTooLarge(f"invalid archive: more than {self.limits.max_entries} entries")
        self._trim_cache()
        parts = split_name(m.name, self.limits)
        try:
            if not parts:
                self._apply_root(m)
                return
            parent, base = parts[:-1], parts[-1]
            if base.startswith(_WHITEOUT_PREFIX):
                self._whiteout(parent, base)
                return
            pfd = self._dir(parent, create=True)
            self._create(m, pfd, parts, base, data)
        except OSError as e:
            if e.errno in _HOST_ERRNOS:
                raise
            raise InvalidLayer(f"invalid archive: {m.name[:200]!r}: {e.strerror}") from None

    def _apply_root(self, m: tarfile.TarInfo) -> None:
        if not m.isdir():
            raise InvalidLayer("invalid archive: the layer root is not a directory")
        self._chown(self.root_fd, None, m.uid, m.gid, fresh=False)
        os.chmod(self.root_fd, m.mode & 0o7777)
        self._sgid[()] = bool(m.mode & stat.S_ISGID)
        self.stats.dirs[()] = int(m.mtime * 1_000_000_000)

    def _whiteout(self, parent: tuple[str, ...], base: str) -> None:
        if base == _OPAQUE:
            if not parent:
                raise InvalidLayer("invalid archive: opaque whiteout of the layer root")
            pfd = self._dir(parent, create=True)
            os.setxattr(pfd, _OPAQUE_XATTR, b"y")
            self.stats.whiteouts += 1
            return
        if base.startswith(_WHITEOUT_PREFIX + _WHITEOUT_PREFIX):
            return  # aufs metadata (.wh..wh.plnk, .wh..wh.aufs): docker skips these too
        target = base[len(_WHITEOUT_PREFIX) :]
        if target in ("", ".", ".."):
            raise InvalidLayer(f"invalid archive: invalid whiteout name {base!r}")
        pfd = self._dir(parent, create=True)
        self._remove(parent, pfd, target)
        os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=pfd)
        self.stats.whiteouts += 1

    def _setgid(self, parts: tuple[str, ...], fd: int) -> bool:
        """Whether the directory `parts` (open as fd) is setgid; one fstat per directory."""
        sgid = self._sgid.get(parts)
        if sgid is None:
            sgid = self._sgid[parts] = bool(os.fstat(fd).st_mode & stat.S_ISGID)
        return sgid

    def _chown(self, fd: int | None, name_pfd: tuple[str, int] | None, uid: int, gid: int,
               *, fresh: bool) -> None:
        """`fresh`: made just now by us, as root, in a directory that is not setgid, so it is
        0:0 already. Anything else gets its owner set, 0:0 included, as tarfile and Docker
        do (an existing directory given again, or a group taken from a setgid parent)."""
        if not self._is_root or (fresh and uid == 0 and gid == 0):
            return
        if fd is not None:
            os.fchown(fd, uid, gid)
        elif name_pfd is not None:
            os.chown(name_pfd[0], uid, gid, dir_fd=name_pfd[1], follow_symlinks=False)

    def _create(
        self,
        m: tarfile.TarInfo,
        pfd: int,
        parts: tuple[str, ...],
        base: str,
        data: DataSource,
    ) -> None:
        mode = m.mode & 0o7777
        mtime = int(m.mtime * 1_000_000_000)
        if m.isreg():
            if m.sparse is not None:
                raise InvalidLayer(f"invalid archive: sparse file {m.name[:200]!r} unsupported")
            try:
                fd = os.open(base, _O_NEWFILE, mode & 0o777, dir_fd=pfd)
            except FileExistsError:
                self._remove(parts[:-1], pfd, base)
                fd = os.open(base, _O_NEWFILE, mode & 0o777, dir_fd=pfd)
            try:
                if m.size:
                    data.copy_to_fd(fd, m.size)
                self._chown(fd, None, m.uid, m.gid, fresh=not self._setgid(parts[:-1], pfd))
                # chown clears setuid/setgid, and the umask may have dropped bits: chmod last.
                if mode & 0o7000 or mode & self._umask:
                    os.fchmod(fd, mode)
                os.utime(fd, ns=(mtime, mtime))
            finally:
                os.close(fd)
            self.stats.files_bytes += m.size
        elif m.isdir():
            made = True
            try:
                os.mkdir(base, mode & 0o777, dir_fd=pfd)
            except FileExistsError:
                st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    made = False  # implied earlier, or a duplicate entry: its mode is not ours
                else:
                    self._remove(parts[:-1], pfd, base)
                    os.mkdir(base, mode & 0o777, dir_fd=pfd)
            in_sgid = self._setgid(parts[:-1], pfd)
            self._chown(None, (base, pfd), m.uid, m.gid, fresh=made and not in_sgid)
            # A directory made just now has its mode unless the umask took bits, it needs
            # setuid/setgid/sticky (mkdir ignores those) or its parent's setgid was inherited:
            # chmod only then (issue 17; glibc does a no-follow chmodat in four syscalls).
            if not made or in_sgid or mode & 0o7000 or mode & self._umask:
                os.chmod(base, mode, dir_fd=pfd, follow_symlinks=False)
            self._sgid[parts] = bool(mode & stat.S_ISGID)
            self.stats.dirs[parts] = mtime
        elif m.issym():
            try:
                os.symlink(m.linkname, base, dir_fd=pfd)
            except FileExistsError:
                self._remove(parts[:-1], pfd, base)
                os.symlink(m.linkname, base, dir_fd=pfd)
            self._chown(None, (base, pfd), m.uid, m.gid,
                        fresh=not self._setgid(parts[:-1], pfd))
            os.utime(base, ns=(mtime, mtime), dir_fd=pfd, follow_symlinks=False)
        elif m.islnk():
            self._hardlink(m, pfd, parts, base)
        elif m.ischr() and m.devmajor == 0 and m.devminor == 0:
            # Already an overlay whiteout (some tools write overlay-form layers).
            self._remove(parts[:-1], pfd, base)
            os.mknod(base, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=pfd)
            self.stats.whiteouts += 1
        elif m.isfifo():
            try:
                os.mkfifo(base, mode & 0o777, dir_fd=pfd)
            except FileExistsError:
                self._remove(parts[:-1], pfd, base)
                os.mkfifo(base, mode & 0o777, dir_fd=pfd)
            self._chown(None, (base, pfd), m.uid, m.gid,
                        fresh=not self._setgid(parts[:-1], pfd))
            os.chmod(base, mode, dir_fd=pfd, follow_symlinks=False)
            os.utime(base, ns=(mtime, mtime), dir_fd=pfd, follow_symlinks=False)
        elif m.ischr() or m.isblk():
            # Device nodes from an image are never honoured (RELIABILITY S-11, CVE-2021-32760
            # family; go-archive TestHandleTarTypeBlockCharFifoDeviceRange).
            self.stats.skipped_devices += 1
        # Other types (GNU volume headers, unknown) carry nothing to create.

    def _hardlink(self, m: tarfile.TarInfo, pfd: int, parts: tuple[str, ...], base: str) -> None:
        target = split_name(m.linkname, self.limits)
        if not target:
            raise InvalidLayer(f"invalid archive: hard link {m.name[:200]!r} to the layer root")
        tfd = self._dir(target[:-1], create=False)
        try:
            st = os.stat(target[-1], dir_fd=tfd, follow_symlinks=False)
        except FileNotFoundError:
            raise InvalidLayer(
                f"invalid archive: hard link {m.name[:200]!r} to {m.linkname[:200]!r}, "
                "which is not in this layer"
            ) from None
        if stat.S_ISDIR(st.st_mode):
            raise InvalidLayer(f"invalid archive: hard link {m.name[:200]!r} to a directory")
        if target[: len(parts)] == parts:
            if target == parts:
                return  # a link to itself: nothing to do
            raise InvalidLayer(f"invalid archive: hard link {m.name[:200]!r} into itself")
        # _dir above may have filled the cache, but pfd stays valid: eviction only happens
        # between entries (_trim_cache).
        self._remove(parts[:-1], pfd, base)
        os.link(target[-1], base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)

    def finish(self) -> None:
        """Set directory mtimes last (creating children changed them). Order does not matter:
        setting a directory's times does not change its parent's."""
        for parts, mtime in self.stats.dirs.items():
            try:
                if parts:
                    pfd = self._dir(parts[:-1], create=False)
                    os.utime(parts[-1], ns=(mtime, mtime), dir_fd=pfd, follow_symlinks=False)
                else:
                    os.utime(self.root_fd, ns=(mtime, mtime))
            except (InvalidLayer, FileNotFoundError):
                continue  # replaced later in the archive by a non-directory
            self._trim_cache()
