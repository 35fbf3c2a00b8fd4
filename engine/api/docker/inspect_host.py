"""What `GET /containers/{id}/json` says about the create options of issue 13, where Docker
says it: the HostConfig fields, `Mounts` of binds and volumes, and the default bridge's
endpoint at the top of `NetworkSettings` (older clients read `.NetworkSettings.IPAddress`).

I/O: none. Values are the recorded `ContainerConfig` and the projections' view of the
container; the shape is API v1.43's (`/work/shared/spec/docker-engine-api-v1.43.yaml`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from engine.api.docker import models as m
from engine.core import links
from events.values import ContainerConfig
from projections.state import ContainerView, EngineState

DEFAULT_SHM_SIZE = 64 * 1024 * 1024


def host_config_fields(cfg: ContainerConfig) -> dict[str, Any]:
    """The HostConfig fields beyond those `render.host_config` fills itself."""
    swap = cfg.memory_swap or (2 * cfg.memory if cfg.memory else 0)  # moby adaptContainer…
    return {
        "Binds": (list(cfg.binds_given) if cfg.binds_given is not None else binds(cfg)) or None,
        "PortBindings": port_bindings(cfg),
        "PublishAllPorts": cfg.publish_all,
        "Tmpfs": (dict(cfg.tmpfs_given) if cfg.tmpfs_given is not None
                  else {t.target: ",".join(_tmpfs_opts(t)) for t in cfg.mounts
                        if t.type == "tmpfs"}) or None,
        "MemorySwap": swap,
        "MemoryReservation": cfg.memory_reservation,
        "MemorySwappiness": None if cfg.memory_swappiness < 0 else cfg.memory_swappiness,
        "OomKillDisable": cfg.oom_kill_disable,
        "OomScoreAdj": cfg.oom_score_adj,
        "CpuShares": cfg.cpu_shares,
        "CpusetCpus": cfg.cpuset_cpus,
        "CpusetMems": cfg.cpuset_mems,
        "Ulimits": [m.UlimitBody(Name=u.name, Soft=u.soft, Hard=u.hard)
                    for u in cfg.ulimits] or None,
        "Devices": [m.DeviceBody(PathOnHost=d.path_on_host,
                                 PathInContainer=d.path_in_container or d.path_on_host,
                                 CgroupPermissions=d.permissions) for d in cfg.devices],
        "DeviceCgroupRules": list(cfg.device_cgroup_rules) or None,
        "ShmSize": cfg.shm_size or DEFAULT_SHM_SIZE,
        "ExtraHosts": list(cfg.extra_hosts) or None,
        "Dns": list(cfg.dns),
        "DnsSearch": list(cfg.dns_search),
        "DnsOptions": list(cfg.dns_options),
        "Sysctls": dict(cfg.sysctls) or None,
        "CgroupParent": cfg.cgroup_parent,
        "GroupAdd": list(cfg.group_add) or None,
        "PidMode": cfg.pid_mode,
        "IpcMode": cfg.ipc_mode or "private",  # Docker's default-ipc-mode
        "UTSMode": cfg.uts_mode,
        # No cgroup namespace unless asked for: the host's, as Docker on cgroup v1 says.
        "CgroupnsMode": cfg.cgroupns_mode or "host",
        "VolumesFrom": list(cfg.volumes_from) or None,
        "Runtime": "runc",
        "Isolation": "",
    }


def _tmpfs_opts(t: Any) -> list[str]:
    opts = list(t.options)
    if t.tmpfs_size:
        opts.append(f"size={t.tmpfs_size}")
    if t.read_only:
        opts.append("ro")
    return opts


def binds(cfg: ContainerConfig) -> list[str]:
    """Docker's `Binds` form, `source:target[:ro]` for host paths and named volumes, rebuilt
    for a container recorded before `binds_given` was kept."""
    out = []
    for mt in cfg.mounts:
        if mt.type == "bind" or (mt.type == "volume" and mt.source and not anonymous(mt)):
            out.append(f"{mt.source}:{mt.target}" + (":ro" if mt.read_only else ""))
    return out


def anonymous(mt: Any) -> bool:
    """A volume named by the engine (64 hex digits): an anonymous one."""
    return len(mt.source) == 64 and all(c in "0123456789abcdef" for c in mt.source)


def port_bindings(cfg: ContainerConfig) -> dict[str, list[m.PortBindingBody] | None]:
    out: dict[str, list[m.PortBindingBody] | None] = {}
    for p in cfg.ports:
        out.setdefault(f"{p.container_port}/{p.protocol}", []).append(  # type: ignore[union-attr]
            m.PortBindingBody(HostIp=p.host_ip, HostPort=str(p.host_port) if p.host_port
                              else ""))
    return out


def mount_points(c: ContainerView, volumes_root: str = "") -> list[m.MountPoint]:
    """`Mounts`: binds with their host path, volumes with their name and data dir."""
    names = {v.destination: v for v in c.mounts}
    given_tmpfs = c.config.tmpfs_given
    out = []
    for mt in c.config.mounts:
        if mt.type == "bind":
            mode = mt.mode if mt.mode is not None else "ro" if mt.read_only else ""
            out.append(m.MountPoint(Type="bind", Source=mt.source, Destination=mt.target,
                                    Mode=mode, RW=not mt.read_only,
                                    Propagation=mt.propagation or "rprivate"))
        elif mt.type == "volume":
            name = names[mt.target].name if mt.target in names else mt.source
            mode = mt.mode if mt.mode is not None else "ro" if mt.read_only else "z"
            out.append(m.MountPoint(
                Type="volume", Name=name, Driver="local", Destination=mt.target,
                Source=f"{volumes_root}/{name}/_data" if volumes_root and name else "",
                Mode=mode, RW=not mt.read_only))
        elif given_tmpfs is not None and mt.target not in given_tmpfs:
            # a `--mount type=tmpfs` (Docker lists those; `--tmpfs` ones it does not)
            out.append(m.MountPoint(Type="tmpfs", Destination=mt.target, Mode="",
                                    RW=not mt.read_only))
    seen = {p.Destination for p in out}
    out += [m.MountPoint(Type="volume", Name=v.name, Destination=v.destination,
                         Driver="local", RW=not v.read_only,
                         Source=f"{volumes_root}/{v.name}/_data" if volumes_root else "")
            for v in c.mounts if v.destination not in seen]
    return out


def graph_driver(root: str, layers: Sequence[str], container_id: str = "") -> m.GraphDriverData:
    """`GraphDriver`: the overlay directories under the state root `root`, named as Docker's
    overlay2 names them, for scripts that reach a container's files from the host
    (`{{.GraphDriver.Data.MergedDir}}`). `layers` are diff_ids, bottom first; LowerDir lists
    them top first, as overlayfs takes them. A container's MergedDir is its root filesystem
    (mounted while it runs); an image has no merged or work directory here, so it names only
    its layers (Docker names directories for it that need not exist)."""
    if not root:
        return m.GraphDriverData()
    diffs = [f"{root}/layers/{d.partition(':')[2]}/diff" for d in reversed(layers)]
    if container_id:
        cdir = f"{root}/containers/{container_id}"
        data = {"LowerDir": ":".join(diffs), "MergedDir": f"{cdir}/rootfs",
                "UpperDir": f"{cdir}/upper", "WorkDir": f"{cdir}/work"}
        return m.GraphDriverData(Data={k: v for k, v in data.items() if v})
    data = {"UpperDir": diffs[0]} if diffs else {}
    if len(diffs) > 1:
        data["LowerDir"] = ":".join(diffs[1:])
    return m.GraphDriverData(Data=data)


def finish(state: EngineState, c: ContainerView, got: m.ContainerInspect) -> m.ContainerInspect:
    """What render.inspect_container leaves to this module: `HostConfig.Links` (names are
    read from the state) and the default bridge at the top of NetworkSettings."""
    host = msgspec.structs.replace(got.HostConfig, Links=links.shown(state, c) or None)
    return msgspec.structs.replace(got, HostConfig=host,
                                   NetworkSettings=with_bridge_settings(got.NetworkSettings))


def with_bridge_settings(settings: m.NetworkSettings) -> m.NetworkSettings:
    """The default bridge's endpoint, repeated at the top of NetworkSettings as Docker does
    (only for the network named "bridge")."""
    ep = settings.Networks.get("bridge")
    if ep is None:
        return settings
    return msgspec.structs.replace(
        settings, EndpointID=ep.EndpointID, Gateway=ep.Gateway, IPAddress=ep.IPAddress,
        IPPrefixLen=ep.IPPrefixLen, MacAddress=ep.MacAddress,
        GlobalIPv6Address=ep.GlobalIPv6Address, GlobalIPv6PrefixLen=ep.GlobalIPv6PrefixLen,
        IPv6Gateway=ep.IPv6Gateway)
