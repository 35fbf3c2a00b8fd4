"""One sealed in-memory copy of the runc binary per daemon, which every runc it starts runs from.

I/O: reads the runc binary once, creates a memfd (memfd_create, F_ADD_SEALS).

Why (issue 14): for CVE-2019-5736 every `runc init` (a container's start, and every `exec`,
health probes included) makes sure it does not run from the host's binary, which a container
could otherwise overwrite through /proc/self/exe. runc 1.1.5 as Debian ships it
(`libcontainer/nsenter/cloned_binary.c`) does it by bind-mounting /proc/self/exe read-only on
a file in its state dir, reopening it, detaching the mount (`umount2(MNT_DETACH)`) and
re-executing itself (`try_bindfd`; a memfd copy is its fallback). With ten `runc init`s at once the
detaches queue on the host's mount lock and RCU: strace of ten concurrent `runc create`s here
showed single `umount2` calls of 0.2–80 ms. runc skips all of it when /proc/self/exe is
already a memfd sealed with exactly F_SEAL_SEAL|F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_WRITE
(`is_self_cloned`, RUNC_MEMFD_SEALS): the copy runc itself would make. This module makes that
copy once; the daemon, and conmon through `/proc/<daemon pid>/fd/<n>`, run runc from it (runc
ships the same idea as a service of its own, `contrib/cmd/memfd-bind`).

When a memfd cannot be made or sealed (an old kernel, `vm.memfd_noexec=2`), the binary's own
path is used and runc protects itself as before.
"""

from __future__ import annotations

import fcntl
import logging
import os

log = logging.getLogger("shipslog.runtime")

MFD_EXEC = 0x0010  # linux/memfd.h (6.3+): an executable memfd, said explicitly
# exactly runc's RUNC_MEMFD_SEALS: one seal more (F_SEAL_EXEC) and runc would not trust it
RUNC_MEMFD_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE

_copies: dict[tuple[int, int, int, int, int], str] = {}  # (pid, dev, ino, size, mtime) → path


def _memfd(name: str) -> int:
    flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
    try:
        return os.memfd_create(name, flags | MFD_EXEC)
    except OSError:  # a kernel before 6.3 refuses the flag it does not know
        return os.memfd_create(name, flags)


def sealed_copy(binary: str) -> str:
    """A path that executes a sealed memfd copy of `binary`, made once per process and
    binary version; `binary` itself when no such copy can be made."""
    try:
        st = os.stat(binary)
    except OSError:
        return binary  # missing: the caller's own error says so
    key = (os.getpid(), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _copies:
        return _copies[key]
    fd = -1
    try:
        fd = _memfd(os.path.basename(binary))
        with open(binary, "rb") as src:
            size, done = os.fstat(src.fileno()).st_size, 0
            while done < size:
                sent = os.sendfile(fd, src.fileno(), done, size - done)
                if sent == 0:
                    raise OSError(f"{binary} shrank while it was copied")
                done += sent
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, RUNC_MEMFD_SEALS)
        if fcntl.fcntl(fd, fcntl.F_GET_SEALS) != RUNC_MEMFD_SEALS:
            raise OSError("the memfd carries other seals than runc's")
    except OSError as exc:
        if fd >= 0:
            os.close(fd)
        log.warning("runs %s from disk (no sealed copy: %s)", binary, exc)
        return binary
    path = f"/proc/{os.getpid()}/fd/{fd}"
    _copies[key] = path  # kept open for the life of the process, ~9 MB
    return path
