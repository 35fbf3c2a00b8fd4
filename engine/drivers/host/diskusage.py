"""How much disk a directory tree uses, for `system df` and `ps --size`.

I/O: reads directory entries and lstat()s under one path; never follows a symlink, never
crosses into another filesystem (a volume or bind mounted inside a container's upper dir is
not the container's), counts a hard-linked inode once. Sizes are apparent sizes (st_size), as
Docker's `directory.Size` reports them.
"""

from __future__ import annotations

import os
import stat


def tree_size(path: str | os.PathLike[str]) -> int:
    """Bytes of the regular files and symlinks under `path` (0 when it does not exist)."""
    try:
        top = os.lstat(path)
    except OSError:
        return 0
    if not stat.S_ISDIR(top.st_mode):
        return top.st_size
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [os.fspath(path)]
    while stack:
        current = stack.pop()
        try:
            entries = os.scandir(current)
        except OSError:  # removed meanwhile, or unreadable: count what we can see
            continue
        with entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if st.st_dev == top.st_dev:
                        stack.append(entry.path)
                    continue
                if st.st_nlink > 1:
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                total += st.st_size
    return total
