"""Writing a container's hosts, hostname and resolv.conf files into its state dir.

I/O: filesystem. The bytes come from the pure generators in `engine.core.hostfiles`; the
files live in the daemon's container dir (never inside the rootfs, so a container cannot swap
a path under us) and are bind-mounted onto /etc/hosts, /etc/hostname and /etc/resolv.conf.

Before the container starts a file is replaced whole (temp file, fsync, rename). Once it is
bind-mounted, `rewrite` updates it in place instead: a rename would leave the container
looking at the old inode (what Docker does too when `network connect` adds a hosts line).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.core.hostfiles import ResolvConf, parse_resolv_conf

HOST_RESOLV_CONF = Path("/etc/resolv.conf")


@dataclass(frozen=True)
class HostFiles:
    hosts: Path
    hostname: Path
    resolv_conf: Path

    def mounts(self) -> list[tuple[str, str]]:
        """(source, destination) pairs for the OCI spec's bind mounts."""
        return [(str(self.hosts), "/etc/hosts"), (str(self.hostname), "/etc/hostname"),
                (str(self.resolv_conf), "/etc/resolv.conf")]


def _replace(path: Path, data: bytes, *, sync: bool = True) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o644)
    try:
        os.write(fd, data)
        os.fchmod(fd, 0o644)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def rewrite(path: Path, data: bytes) -> None:
    """Overwrite in place, keeping the inode a running container has bind-mounted."""
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_container_files(directory: Path, *, hosts: bytes, hostname: bytes,
                          resolv_conf: bytes, sync: bool = True) -> HostFiles:
    """Write the three files (idempotent: the same bytes give the same files). `sync=False`
    where they are made again at every start anyway (a crash loses nothing)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = HostFiles(hosts=directory / "hosts", hostname=directory / "hostname",
                      resolv_conf=directory / "resolv.conf")
    _replace(files.hosts, hosts, sync=sync)
    _replace(files.hostname, hostname, sync=sync)
    _replace(files.resolv_conf, resolv_conf, sync=sync)
    return files


def read_host_resolv_conf(path: Path = HOST_RESOLV_CONF) -> ResolvConf:
    try:
        return parse_resolv_conf(path.read_text(errors="replace"))
    except FileNotFoundError:
        return ResolvConf()
