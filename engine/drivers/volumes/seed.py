"""Copy an image directory into a new volume, as Docker does on first use ("copy-up").

I/O: filesystem. Both trees are walked through directory fds opened with O_NOFOLLOW, one
component at a time, and every file is created with O_CREAT|O_EXCL|O_NOFOLLOW relative to its
parent's fd, so a symlink in the image — or one planted in the volume by another container
that shares it — is copied as a symlink and never followed (RELIABILITY S-04, I-13; moby
`copyExistingContents`, CVE-2021-30465 class). Modes (setuid bits included), owners, mtimes,
and `user.*`/`security.capability` xattrs are kept; hard links inside the tree stay linked.
FIFOs are recreated; device nodes and sockets are skipped (S-11: device nodes from images are
not honoured). Only regular files are read, non-blocking, so a FIFO can never stall us.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_XATTRS = ("security.capability",)
_MAX_LINKED = 4096  # hard-link fds kept open at most; past that, further links become copies


@dataclass
class SeedStats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)


def _copy_xattrs(src_fd: int, dst_fd: int) -> None:
    try:
        names = os.listxattr(src_fd)
    except OSError:
        return
    for name in names:
        if name.startswith("user.") or name in _XATTRS:
            try:
                os.setxattr(dst_fd, name, os.getxattr(src_fd, name))
            except OSError as exc:
                if exc.errno not in (errno.ENOTSUP, errno.EPERM):
                    raise


def _set_meta(fd: int, st: os.stat_result) -> None:
    os.fchown(fd, st.st_uid, st.st_gid)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))  # after chown, which clears setuid bits
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_file(sdir: int, ddir: int, name: str, st: os.stat_result, stats: SeedStats,
               linked: dict[tuple[int, int], int]) -> None:
    key = (st.st_dev, st.st_ino)
    if st.st_nlink > 1 and key in linked:
        # linkat(AT_FDCWD, "/proc/self/fd/N", …, AT_SYMLINK_FOLLOW) links the open inode itself
        os.link(f"/proc/self/fd/{linked[key]}", name, dst_dir_fd=ddir, follow_symlinks=True)
        return
    sfd = os.open(name, _O_READ, dir_fd=sdir)
    try:
        sst = os.fstat(sfd)
        if not stat.S_ISREG(sst.st_mode) or (sst.st_dev, sst.st_ino) != key:
            stats.skipped.append(name)  # changed under us: copy nothing rather than a lie
            return
        dfd = os.open(name, _O_NEW, 0o600, dir_fd=ddir)
        try:
            left = sst.st_size
            while left > 0:
                n = os.sendfile(dfd, sfd, None, min(left, 1 << 30))
                if n == 0:
                    break
                left -= n
                stats.bytes += n
            _copy_xattrs(sfd, dfd)
            _set_meta(dfd, sst)
            if st.st_nlink > 1 and len(linked) < _MAX_LINKED:
                linked[key] = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC,
                                      dir_fd=ddir)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)
    stats.files += 1


def _copy_symlink(sdir: int, ddir: int, name: str, st: os.stat_result,
                  stats: SeedStats) -> None:
    target = os.readlink(name, dir_fd=sdir)
    os.symlink(target, name, dir_fd=ddir)
    os.chown(name, st.st_uid, st.st_gid, dir_fd=ddir, follow_symlinks=False)
    os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=ddir, follow_symlinks=False)
    stats.symlinks += 1


def _copy_fifo(ddir: int, name: str, st: os.stat_result) -> None:
    os.mkfifo(name, 0o600, dir_fd=ddir)
    pfd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=ddir)
    try:
        if not stat.S_ISFIFO(os.fstat(pfd).st_mode):
            return
        proc = f"/proc/self/fd/{pfd}"  # chmod/chown the inode we made, not a swapped name
        os.chown(proc, st.st_uid, st.st_gid)
        os.chmod(proc, stat.S_IMODE(st.st_mode))
        os.utime(proc, ns=(st.st_atime_ns, st.st_mtime_ns))
    finally:
        os.close(pfd)


def copy_tree(src_fd: int, dst_fd: int) -> SeedStats:
    """Copy the contents of directory `src_fd` into the (empty) directory `dst_fd`, and the
    source directory's owner, mode and mtime onto the destination. Iterative: the depth of
    the tree costs fds, not Python stack."""
    stats = SeedStats()
    linked: dict[tuple[int, int], int] = {}
    root_st = os.fstat(src_fd)
    # (source fd, destination fd, names still to copy, the source dir's stat); the root pair
    # belongs to the caller and is not closed here.
    stack: list[tuple[int, int, list[str], os.stat_result]] = [
        (src_fd, dst_fd, sorted(os.listdir(src_fd), reverse=True), root_st)]
    try:
        while stack:
            sdir, ddir, names, dst_st = stack[-1]
            if not names:
                stack.pop()
                _copy_xattrs(sdir, ddir)
                _set_meta(ddir, dst_st)
                if stack:
                    os.close(sdir)
                    os.close(ddir)
                continue
            name = names.pop()
            st = os.stat(name, dir_fd=sdir, follow_symlinks=False)
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                os.mkdir(name, 0o700, dir_fd=ddir)
                nsd = os.open(name, _O_DIR, dir_fd=sdir)
                nsst = os.fstat(nsd)
                if (nsst.st_dev, nsst.st_ino) != (st.st_dev, st.st_ino):
                    os.close(nsd)
                    stats.skipped.append(name)
                    continue
                nsdd = os.open(name, _O_DIR, dir_fd=ddir)
                stack.append((nsd, nsdd, sorted(os.listdir(nsd), reverse=True), nsst))
                stats.dirs += 1
            elif stat.S_ISREG(mode):
                _copy_file(sdir, ddir, name, st, stats, linked)
            elif stat.S_ISLNK(mode):
                _copy_symlink(sdir, ddir, name, st, stats)
            elif stat.S_ISFIFO(mode):
                _copy_fifo(ddir, name, st)
            else:
                stats.skipped.append(name)
    finally:
        for sdir, ddir, _, _ in stack[1:]:
            os.close(sdir)
            os.close(ddir)
        for fd in linked.values():
            os.close(fd)
    return stats
