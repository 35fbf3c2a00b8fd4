"""Named network namespaces that the engine prepares before `runc create` joins them.

I/O: kernel (unshare, setns, bind mounts, an ioctl), filesystem (the run dir). No `ip`, no
fork: a short-lived thread unshares its own network namespace, brings `lo` up, and bind-mounts
`/proc/thread-self/ns/net` onto `<run dir>/<name>` — the same file layout `ip netns` and Docker
use, so `nsenter --net=<path>` works on it. The thread then ends; the process's other threads
never change namespace.

    create_netns(run_dir, name) -> path     idempotent: an existing netns mount is kept
    delete_netns(run_dir, name)             idempotent: a missing one is fine
    list_netns(run_dir) -> [name]           for reconciliation
    run_in_netns(path, fn, *args) -> result  fn runs in a fresh thread that has joined `path`
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from engine.core.errors import InvalidArgument, KernelError

CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MNT_DETACH = 0x2
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
NAME = re.compile(r"^slg-[0-9a-f]{12}$")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]

R = TypeVar("R")


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _path(run_dir: str | os.PathLike[str], name: str) -> Path:
    if not NAME.match(name):
        raise InvalidArgument(f"invalid netns name {name!r}", hint="slg-<12 hex>")
    return Path(run_dir) / name


def _in_thread(fn: Callable[..., R], *args: Any) -> R:
    """Run fn in a fresh thread (namespace changes die with it); re-raise its error."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            box["error"] = exc

    t = threading.Thread(target=body, name="shipslog-netns")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def set_link_up(ifname: str) -> None:
    """ifconfig-style up in the calling thread's namespace (cheaper than a netlink socket)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sh22x", ifname.encode(), 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh22x", ifname.encode(), flags | IFF_UP))


def _is_netns(path: Path) -> bool:
    try:
        return os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return False


def _unshare_and_bind(target: bytes) -> None:
    _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
    set_link_up("lo")
    _check(_libc.mount(b"/proc/thread-self/ns/net", target, None, MS_BIND, None),
           "bind-mount netns")


def create_netns(run_dir: str | os.PathLike[str], name: str) -> str:
    path = _path(run_dir, name)
    if _is_netns(path):
        return str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o444)
    os.close(fd)
    try:
        _in_thread(_unshare_and_bind, os.fsencode(path))
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise KernelError(f"cannot create network namespace {name}: {exc}") from exc
    return str(path)


def delete_netns(run_dir: str | os.PathLike[str], name: str) -> None:
    path = _path(run_dir, name)
    while _is_netns(path):  # a path may carry stacked mounts after a crash-and-retry
        if _libc.umount2(os.fsencode(path), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err in (errno.EINVAL, errno.ENOENT):
                break
            raise KernelError(f"cannot unmount network namespace {name}: {os.strerror(err)}")
    path.unlink(missing_ok=True)


def list_netns(run_dir: str | os.PathLike[str]) -> list[str]:
    try:
        return sorted(p.name for p in Path(run_dir).iterdir() if NAME.match(p.name))
    except FileNotFoundError:
        return []


def _enter(path: str, fn: Callable[..., R], *args: Any) -> R:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, CLONE_NEWNET), f"setns({path})")
    finally:
        os.close(fd)
    return fn(*args)


def run_in_netns(path: str, fn: Callable[..., R], *args: Any) -> R:
    """Call fn(*args) in a fresh thread that has joined the network namespace at `path`."""
    return _in_thread(_enter, path, fn, *args)
