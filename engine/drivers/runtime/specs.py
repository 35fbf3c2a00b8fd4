"""The OCI spec of one start, made on the host: the runtime seam's `SpecMaker`
(`engine/drivers/runtime/seam.py`) on Linux.

I/O: reads the container's /etc/passwd and /etc/group in-root, the host's rlimits, kernel,
/etc/hosts and /etc/resolv.conf and `--device` nodes; writes /etc/hosts, /etc/hostname and
/etc/resolv.conf into the container's state dir. The spec itself is planned as data by
`engine/core/oci_spec.py`.
"""

from __future__ import annotations

import os
import platform
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from engine.core import hostfiles
from engine.core.errors import InvalidArgument
from engine.core.oci_spec import build_spec
from engine.drivers.host.info import host_spec_inputs, read_rootfs_file
from engine.drivers.network.hostfiles import read_host_resolv_conf, write_container_files

if TYPE_CHECKING:
    from engine.shell.paths import Paths
    from projections.state import ContainerView, ImageView


class SpecMaker:
    """Builds a container's OCI spec: reads what it needs from the rootfs, in-root."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.host = host_spec_inputs()  # rlimits, kernel and arch: read once
        # `--init` binds a static tini into the container (it has no libc of ours to use).
        self.init_path = (shutil.which("docker-init") or shutil.which("tini-static")
                          or "/usr/bin/tini-static")

    def make(self, container: ContainerView, image: ImageView, env: list[str],
             rootfs: str, mounts: list[dict[str, Any]] | None = None,
             rootfs_propagation: str = "", netns_path: str | None = None,
             addresses: Sequence[str] = (), embedded_dns: str = "",
             hostname: str = "") -> dict[str, Any]:
        """The OCI spec for one start. `hostname`: the one a `--network container:X` start
        takes from X (its own otherwise)."""
        # Every mount the user asked for comes planned and staged in `mounts`.
        cfg = msgspec.structs.replace(container.config, mounts=())
        passwd = group = None
        hostname = hostname or cfg.hostname or container.id[:12]
        mounts = list(mounts or ()) + self._host_files(container, addresses, embedded_dns,
                                                       hostname)
        name, _, grp = cfg.user.partition(":")
        if ((name and not name.isdigit()) or (grp and not grp.isdigit())
                or not all(g.isdigit() for g in cfg.group_add)):
            passwd = read_rootfs_file(rootfs, "etc/passwd")
            group = read_rootfs_file(rootfs, "etc/group")
        # `--cgroup-parent` (cgroupfs driver form, as Docker's): <parent>/<id>
        parent = "/" + (cfg.cgroup_parent.strip("/") or "shipslog")
        spec = build_spec(
            cfg, image.config, env=env, rootfs=rootfs, extra_mounts=mounts,
            hostname=hostname, netns_path=netns_path,
            cgroups_path=f"{parent}/{container.id}", passwd=passwd, group=group,
            devices=[host_device(d) for d in cfg.devices],
            init_host_path=self.init_path, **self.host,
            # Only this machine's syscall ABI: 32-bit compat syscalls are refused outright
            # (stricter than Docker), and runc compiles a third of the filter (~40 ms less).
            seccomp_native_only=True,
        )
        if rootfs_propagation:
            spec.setdefault("linux", {})["rootfsPropagation"] = rootfs_propagation
        return spec

    def _host_files(self, container: ContainerView, addresses: Sequence[str],
                    embedded_dns: str, hostname: str) -> list[dict[str, Any]]:
        """/etc/hosts, /etc/hostname and /etc/resolv.conf, generated safely (no line breaks
        can reach them: RELIABILITY I-03) in the daemon's container dir and bind-mounted."""
        cfg = container.config
        host_mode = cfg.network_mode == "host"
        hostname = platform.node() if host_mode else hostname
        if host_mode:
            try:
                hosts = Path("/etc/hosts").read_bytes()[:1 << 20]
            except OSError:
                hosts = hostfiles.hosts_file(hostname)
        else:
            hosts = hostfiles.hosts_file(
                hostname, addresses=addresses, domainname=cfg.domainname,
                extra_hosts=[tuple(h.split(":", 1)) for h in cfg.extra_hosts])  # type: ignore[misc]
        resolv = hostfiles.container_resolv_conf(
            read_host_resolv_conf(), embedded_dns=embedded_dns, dns=cfg.dns,
            dns_search=cfg.dns_search, dns_options=cfg.dns_options)
        files = write_container_files(
            self.paths.container_dir(container.id) / "etc", hosts=hosts,
            hostname=hostfiles.hostname_file(hostname), resolv_conf=resolv,
            sync=False)  # regenerated at every start: durability buys nothing here
        return [{"destination": dest, "type": "bind", "source": src,
                 "options": ["rbind", "rprivate"]} for src, dest in files.mounts()]


def host_device(device: Any) -> dict[str, Any]:
    """`--device`: the host node's type and numbers, for the OCI `linux.devices` entry and
    its cgroup allow rule (moby `oci/devices_linux.go` DevicesFromPath)."""
    try:
        st = os.stat(device.path_on_host)
    except OSError as exc:
        raise InvalidArgument(
            "error gathering device information while adding custom device "
            f"\"{device.path_on_host}\": {exc.strerror.lower() if exc.strerror else exc}",
            hint="give a device node that exists on the host") from None
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise InvalidArgument(f"{device.path_on_host} is not a device node",
                              hint="--device takes a character or block device")
    return {"path": device.path_in_container or device.path_on_host, "type": kind,
            "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
            "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
            "access": device.permissions}
