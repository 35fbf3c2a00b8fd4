"""The real drivers behind the supervisor's seams: overlay snapshots, the layer and content
stores, runc with conmon, the secret store, and the OCI spec maker.

I/O: all of it, through the driver modules. This module only adapts their shapes to
`engine/drivers/protocols.py` (e.g. the monitor's numeric killing signal to a name).
"""

from __future__ import annotations

import os
import platform
import shutil
import signal as signals
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import trio

from engine.core import hostfiles
from engine.core.errors import InvalidArgument
from engine.core.oci_spec import build_spec
from engine.drivers.host.info import host_spec_inputs
from engine.drivers.layers.content import ContentStore
from engine.drivers.layers.unpack import LayerStore
from engine.drivers.network.hostfiles import read_host_resolv_conf, write_container_files
from engine.drivers.protocols import ExitRecord, RuntimeState
from engine.drivers.runtime.linux import Runtime, read_rootfs_file
from engine.drivers.snapshots.overlay import Snapshotter
from engine.drivers.volumes.bindsafe import BindStager
from engine.drivers.volumes.linux import Mounter, VolumeStore
from engine.shell.paths import Paths
from projections.state import ContainerView, ImageView


def _signal_name(num: int) -> str:
    try:
        return signals.Signals(num).name if num else ""
    except ValueError:
        return str(num)


class RealRuntime:
    """`Runtime` (runc + conmon) in the supervisor's shape: bundles live under the exec root."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        # Full paths, found once: a PATH search per container costs a dozen execve calls.
        runc = os.environ.get("SHIPSLOG_RUNC") or shutil.which("runc") or "/usr/sbin/runc"
        self.rt = Runtime(paths.exec_root,
                          runc_binary=runc,
                          conmon_binary=shutil.which("conmon") or "/usr/bin/conmon")

    async def check(self) -> str:
        return await self.rt.check()

    async def create(self, container_id: str, spec: dict[str, Any], *, tty: bool,
                     open_stdin: bool, stdin_once: bool, log_path: str,
                     log_opts: dict[str, str]) -> int:
        return await self.rt.create(container_id, self.paths.bundle_dir(container_id), spec,
                                    tty=tty, open_stdin=open_stdin, stdin_once=stdin_once,
                                    log_path=log_path, log_opts=log_opts)

    async def start(self, container_id: str) -> int:
        return await self.rt.start(container_id)

    async def kill(self, container_id: str, signal: str) -> None:
        await self.rt.kill(container_id, signal)

    @staticmethod
    def _record(rec: Any) -> ExitRecord:
        return ExitRecord(exit_code=rec.exit_code, signal=_signal_name(rec.signal),
                          oom_killed=rec.oom_killed, finished_at_ns=rec.finished_at_ns,
                          lost=rec.lost, reason=rec.reason)

    async def wait_exit(self, container_id: str) -> ExitRecord:
        return self._record(await self.rt.wait_exit(container_id))

    def exit_record(self, container_id: str) -> ExitRecord | None:
        rec = self.rt.exit_record_nowait(container_id)
        return None if rec is None else self._record(rec)

    async def delete(self, container_id: str, *, force: bool = False) -> None:
        await self.rt.delete(container_id, force=force)
        # in a thread: an rmtree on the event loop stalled every concurrent removal (issue 14)
        await trio.to_thread.run_sync(shutil.rmtree, self.paths.bundle_dir(container_id), True)

    async def pause(self, container_id: str) -> None:
        await self.rt.pause(container_id)

    async def update(self, container_id: str, resources: dict[str, Any]) -> None:
        await self.rt.update(container_id, resources)

    async def resume(self, container_id: str) -> None:
        await self.rt.resume(container_id)

    async def state(self, container_id: str) -> RuntimeState | None:
        st = await self.rt.state(container_id)
        return None if st is None else RuntimeState(id=st.id, status=st.status, pid=st.pid)

    async def list(self) -> list[RuntimeState]:
        return [RuntimeState(id=s.id, status=s.status, pid=s.pid) for s in await self.rt.list()]

    async def attach(self, container_id: str) -> Any:
        return await self.rt.attach(container_id)

    async def probe(self, container_id: str, process: dict[str, Any], *, timeout_s: float,
                    max_output: int) -> Any:
        return await self.rt.probe(container_id, process, timeout_s=timeout_s,
                                   max_output=max_output)

    async def rotate_logs(self, container_id: str, log_path: str,
                          log_opts: dict[str, str]) -> None:
        await self.rt.run_log_rotation(container_id, log_path, log_opts)


class RealSnapshots:
    def __init__(self, root: Path) -> None:
        self.s = Snapshotter(root)

    def prepare(self, container_id: str, layer_paths: list[str]) -> str:
        return str(self.s.prepare(container_id, list(layer_paths)))

    def unmount(self, container_id: str) -> None:
        self.s.unmount(container_id)

    def remove(self, container_id: str) -> None:
        self.s.remove(container_id)

    def mounted(self) -> set[str]:
        return {m.container_id for m in self.s.list_mounts()}


class RealVolumes:
    """The local volume driver and the fd-safe mounter, in the supervisor's shape."""

    def __init__(self, paths: Paths) -> None:
        self.store = VolumeStore(paths.root)
        self.mounter = Mounter(self.store, BindStager(paths.exec_root / "containers"))

    def create(self, name: str, options: dict[str, str]) -> None:
        self.store.create(name, options)

    def remove(self, name: str) -> None:
        self.store.remove(name)

    def seed(self, name: str, rootfs: str, target: str, options: dict[str, str]) -> None:
        self.store.seed(name, rootfs, target, options)

    def prepare(self, container_id: str, plan: Any, rootfs: str,
                volume_options: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
        return self.mounter.prepare(container_id, plan, rootfs, volume_options=volume_options)

    def release(self, container_id: str) -> None:
        self.mounter.release(container_id)


class ImageStorage:
    """The layer store and the content store, as the supervisor's garbage collector sees them."""

    def __init__(self, root: Path) -> None:
        self.content = ContentStore(root)
        self.layers = LayerStore(root)

    def path(self, diff_id: str) -> str:
        return str(self.layers.path(diff_id))

    def delete(self, diff_id: str) -> None:
        self.layers.delete(diff_id)

    def delete_blob(self, digest: str) -> None:
        self.content.delete(digest)


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


class ContainerFiles:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths

    def log_path(self, container_id: str) -> str:
        d = self.paths.container_dir(container_id)
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        return str(self.paths.log_path(container_id))

    def remove_container_files(self, container_id: str) -> None:
        d = self.paths.container_dir(container_id)
        if d.exists():
            shutil.rmtree(d, ignore_errors=True)
        os.makedirs(self.paths.containers_root, exist_ok=True)
