"""Where the filesystem puts a layer's inodes: the layer store marks `layers/` as the top of
unrelated directory trees (FS_TOPDIR_FL, what `chattr +T` sets; ioctl_iflags(2)).

I/O: kernel (FS_IOC_GETFLAGS / FS_IOC_SETFLAGS on one directory fd).

Why (issue 17): ext4 puts a new directory near its parent, and a new file in its directory's
block group. On an ext4 without a journal (this project's machines), allocating an inode scans
its group past every inode freed in the last one to six minutes (`recently_deleted()` in
fs/ext4/ialloc.c, one page-cache lookup each), and when all the group's free inodes are such,
every create pays a scan of the whole group: 0.5-0.8 ms per file here, right after an image of
10,000 files was removed next to where the next one is unpacked (perf: 75% of the time in
`recently_deleted`/`find_get_block_common` under `ext4_create`). With the flag, each new
layer directory is placed as a top-level one (ext4's Orlov allocator: a group chosen from a
hash of its name, among those with the fewest directories and above-average free space), so
layers spread over the disk instead of refilling the groups the last `rmi` just emptied; the
layer's own subdirectories and files then stay near it. Layers are unrelated trees, which is
what the flag says. Filesystems without the flag (tmpfs, overlay, btrfs, xfs) say so with an
error, and nothing changes there.
"""

from __future__ import annotations

import array
import fcntl
import os

FS_IOC_GETFLAGS = 0x80086601  # _IOR('f', 1, long); the kernel reads and writes an int
FS_IOC_SETFLAGS = 0x40086602  # _IOW('f', 2, long)
FS_TOPDIR_FL = 0x00020000


def inode_flags(path: str | os.PathLike[str]) -> int | None:
    """The directory's inode flags, or None where the filesystem has none."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        buf = array.array("i", [0])
        try:
            fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf, True)
        except OSError:  # ENOTTY, EOPNOTSUPP: no inode flags on this filesystem
            return None
        return buf[0]
    finally:
        os.close(fd)


def mark_top_of_trees(path: str | os.PathLike[str]) -> bool:
    """Set FS_TOPDIR_FL on the directory `path`; True if it is set. Idempotent, and only a
    hint: any refusal (no such flags here, a read-only or sandboxed filesystem) is False."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        buf = array.array("i", [0])
        try:
            fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf, True)
            if buf[0] & FS_TOPDIR_FL:
                return True
            buf[0] |= FS_TOPDIR_FL
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, buf, True)
        except OSError:
            return False
        return True
    finally:
        os.close(fd)
