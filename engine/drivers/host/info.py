"""Facts about the host and the image's files that the OCI spec builder needs.

I/O: reads rlimits and uname (the kernel, and the machine's architecture in OCI spelling),
and files inside a container rootfs — opened in-root, never following a symlink, size-capped
and only if regular (RELIABILITY I-13; CVE-2024-9676: an image's /etc/passwd pointing at a
host file or a FIFO).
"""

from __future__ import annotations

import os
import platform
import resource
import stat
from typing import Any

from engine.core import seccomp
from engine.core.errors import InvalidArgument
from engine.core.oci_spec import PASSWD_MAX_BYTES


def read_rootfs_file(rootfs: str, relpath: str, *, limit: int = PASSWD_MAX_BYTES) -> bytes | None:
    """Read `relpath` inside `rootfs` without ever leaving it: every component is opened
    with O_NOFOLLOW relative to its parent, the last must be a regular file, and at most
    `limit` bytes are read. None if absent or not a regular file (CVE-2024-9676 class)."""
    parts = [p for p in relpath.split("/") if p and p != "."]
    if not parts or ".." in parts:
        raise InvalidArgument(f"bad in-root path {relpath!r}", "")
    flags_dir = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(rootfs, flags_dir)
    except OSError:
        return None
    try:
        for name in parts[:-1]:
            nfd = os.open(name, flags_dir, dir_fd=fd)
            os.close(fd)
            fd = nfd
        ffd = os.open(
            parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd
        )
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        if not stat.S_ISREG(os.fstat(ffd).st_mode):
            return None
        return os.read(ffd, limit)
    finally:
        os.close(ffd)


def host_spec_inputs(rootfs: str | None = None) -> dict[str, Any]:
    """What `build_spec` needs to know about this host (and, given a rootfs, the image's
    user database): pass as `build_spec(..., **host_spec_inputs(rootfs))`."""
    release = os.uname().release.split("-")[0].split(".")
    kernel = (int(release[0]), int(release[1]) if len(release) > 1 and release[1].isdigit() else 0)
    out: dict[str, Any] = {
        "host_rlimits": {
            "RLIMIT_NOFILE": resource.getrlimit(resource.RLIMIT_NOFILE),
            "RLIMIT_NPROC": resource.getrlimit(resource.RLIMIT_NPROC),
        },
        "kernel": kernel,
        "goarch": seccomp.GOARCH_OF_MACHINE.get(platform.machine(), platform.machine()),
    }
    if rootfs is not None:
        out["passwd"] = read_rootfs_file(rootfs, "etc/passwd")
        out["group"] = read_rootfs_file(rootfs, "etc/group")
    return out


def user_db(rootfs: str, user: str) -> tuple[bytes | None, bytes | None]:
    """The rootfs's /etc/passwd and /etc/group when `user` (`name[:group]`) names a user or
    group, else (None, None): what `exec -u NAME` and a health probe of a container that runs
    as a named user resolve the name with (issue 18)."""
    name, _, grp = user.partition(":")
    if not rootfs or ((not name or name.isdigit()) and (not grp or grp.isdigit())):
        return None, None
    return read_rootfs_file(rootfs, "etc/passwd"), read_rootfs_file(rootfs, "etc/group")


def machine_arch() -> str:
    """The host architecture in OCI/GOARCH spelling (image-spec config `architecture`)."""
    m = platform.machine()
    return {
        "x86_64": "amd64",
        "aarch64": "arm64",
        "armv7l": "arm",
        "i686": "386",
        "ppc64le": "ppc64le",
        "s390x": "s390x",
        "riscv64": "riscv64",
    }.get(m, m)
