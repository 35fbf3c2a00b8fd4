"""Thin ctypes bindings for the mount syscalls the snapshotter and unpacker need.

I/O: kernel. `mount(2)`, `umount2(2)`, `syncfs(2)` and the new mount API (`fsopen`,
`fsconfig`, `fsmount`, `move_mount`) called straight through libc, which is much faster than
spawning `mount(8)` and lets us pass overlay's `lowerdir+` one layer at a time when the option
string would not fit in a page (the legacy `mount(2)` data argument is limited to PAGE_SIZE).
Also a parser for /proc/self/mountinfo (proc(5)), used for reconciliation.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.mount.restype = ctypes.c_int
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.umount2.restype = ctypes.c_int
_libc.syncfs.argtypes = [ctypes.c_int]
_libc.syncfs.restype = ctypes.c_int
_libc.syscall.restype = ctypes.c_long

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

# New mount API (Linux 5.2+; overlay `lowerdir+` needs 6.8+). The syscall numbers are the
# same on every architecture because they were allocated after the tables were unified (424+).
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_FSOPEN = 430
_SYS_FSCONFIG = 431
_SYS_FSMOUNT = 432
FSOPEN_CLOEXEC = 1
FSMOUNT_CLOEXEC = 1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
MOVE_MOUNT_F_EMPTY_PATH = 0x4
AT_FDCWD = -100

# Arguments to libc's variadic syscall() must be passed with explicit C types.
_long = ctypes.c_long


def _check(ret: int, what: str, path: str = "") -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path or None)
    return ret


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> None:
    """mount(2). Raises OSError with the kernel's errno."""
    _check(
        _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data) if data else None),
        f"mount {fstype}",
        target,
    )


def umount(target: str, *, detach: bool = False) -> None:
    """umount2(2) with UMOUNT_NOFOLLOW, so a symlink planted at the target is never followed."""
    flags = UMOUNT_NOFOLLOW | (MNT_DETACH if detach else 0)
    _check(_libc.umount2(_b(target), flags), "umount", target)


def syncfs(fd: int) -> None:
    """syncfs(2): flush the whole filesystem holding fd (one call instead of an fsync per file)."""
    _check(_libc.syncfs(fd), "syncfs")


def mount_overlay_fsconfig(
    target: str, lowerdirs: list[str], upperdir: str, workdir: str, flags: list[str]
) -> None:
    """Mount overlayfs with the new mount API, appending lower layers one by one (`lowerdir+`).

    Used when the option string would exceed PAGE_SIZE (mount(2)'s data limit).
    `lowerdirs` is top-most first, as for the `lowerdir=` option.
    """
    sc = _libc.syscall
    fsfd = _check(
        sc(_long(_SYS_FSOPEN), ctypes.c_char_p(b"overlay"), _long(FSOPEN_CLOEXEC)), "fsopen overlay"
    )
    try:

        def set_string(key: str, value: str) -> None:
            _check(
                sc(
                    _long(_SYS_FSCONFIG),
                    _long(fsfd),
                    _long(FSCONFIG_SET_STRING),
                    ctypes.c_char_p(key.encode()),
                    ctypes.c_char_p(os.fsencode(value)),
                    _long(0),
                ),
                f"fsconfig {key}",
                value,
            )

        for lower in lowerdirs:
            set_string("lowerdir+", lower)
        set_string("upperdir", upperdir)
        set_string("workdir", workdir)
        for flag in flags:
            key, _, value = flag.partition("=")
            if value:
                set_string(key, value)
            else:
                _check(
                    sc(
                        _long(_SYS_FSCONFIG),
                        _long(fsfd),
                        _long(FSCONFIG_SET_FLAG),
                        ctypes.c_char_p(key.encode()),
                        ctypes.c_void_p(None),
                        _long(0),
                    ),
                    f"fsconfig {key}",
                )
        _check(
            sc(
                _long(_SYS_FSCONFIG),
                _long(fsfd),
                _long(FSCONFIG_CMD_CREATE),
                ctypes.c_void_p(None),
                ctypes.c_void_p(None),
                _long(0),
            ),
            "fsconfig create",
        )
        mfd = _check(
            sc(_long(_SYS_FSMOUNT), _long(fsfd), _long(FSMOUNT_CLOEXEC), _long(0)), "fsmount"
        )
        try:
            _check(
                sc(
                    _long(_SYS_MOVE_MOUNT),
                    _long(mfd),
                    ctypes.c_char_p(b""),
                    _long(AT_FDCWD),
                    ctypes.c_char_p(os.fsencode(target)),
                    _long(MOVE_MOUNT_F_EMPTY_PATH),
                ),
                "move_mount",
                target,
            )
        finally:
            os.close(mfd)
    finally:
        os.close(fsfd)


@dataclass(frozen=True)
class MountInfo:
    """One line of /proc/self/mountinfo (proc(5))."""

    mount_id: int
    target: str
    fstype: str
    source: str
    options: str  # per-mount options
    super_options: str  # per-superblock options (overlay's lowerdir=… lives here)


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal (fs/proc_namespace.c).
    if "\\" not in field:
        return field
    out = bytearray()
    raw = field.encode("utf-8", "surrogateescape")
    i = 0
    while i < len(raw):
        if raw[i] == 0x5C and i + 3 < len(raw) and raw[i + 1 : i + 4].isdigit():
            out.append(int(raw[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return os.fsdecode(bytes(out))


def parse_mountinfo(text: str) -> list[MountInfo]:
    """Parse the text of a mountinfo file. Pure."""
    mounts: list[MountInfo] = []
    for line in text.splitlines():
        if not line:
            continue
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split(" ")
        rfields = right.split(" ")
        if len(fields) < 6 or len(rfields) < 3:
            continue
        mounts.append(
            MountInfo(
                mount_id=int(fields[0]),
                target=_unescape(fields[4]),
                fstype=rfields[0],
                source=_unescape(rfields[1]),
                options=fields[5],
                super_options=rfields[2],
            )
        )
    return mounts


def read_mountinfo() -> list[MountInfo]:
    """The calling process's mount table."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return parse_mountinfo(f.read())


def page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")
