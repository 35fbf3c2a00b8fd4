"""The rest of Docker's create options (issue 13): each one applied or refused, never dropped.

I/O: none (pure; raises `engine.core.errors.InvalidArgument`, which the server turns into a 400).

`host_options` reads the HostConfig fields that `translate.create_body_to_config` does not
handle itself — ulimits, devices, shm size, extra hosts, DNS, sysctls, cgroup parent, group
add, cpuset, CPU shares, swap and swappiness, OOM settings, the pid/ipc/uts/cgroup namespace
modes, the MAC address and `--volumes-from` — validates them with Docker's rules and messages
(moby `daemon/daemon_unix.go` `verifyPlatformContainerSettings`, `runconfig/hostconfig_unix.go`,
docker/cli `opts/`), and returns `ContainerConfig` fields. What shipslog cannot do yet
(`REFUSED`, `container:<id>` namespace modes, another runtime or isolation) is
answered with a 400 that names the option, instead of being accepted and ignored.
"""

from __future__ import annotations

import re
from typing import Any

from engine.api.docker.models import ContainerCreateBody, HostConfig
from engine.core import oci_spec
from engine.core.errors import InvalidArgument
from engine.core.hostfiles import check_hostname, parse_extra_host
from events.values import DeviceMapping, Ulimit

Fields = dict[str, Any]

HOST_GATEWAY = "host-gateway"  # Docker's special --add-host value: the bridge's gateway
RUNTIMES = ("runc",)
MIN_MEMORY = 6 * 1024 * 1024  # moby linuxMinMemory

# go-units ulimit.go: the names Docker accepts for --ulimit.
ULIMIT_NAMES = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
                "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")

# docker/cli opts.ValidateSysctl: only sysctls that are namespaced may be set per container.
SYSCTL_IPC = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
              "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")
SYSCTL_IPC_PREFIX = "fs.mqueue."
SYSCTL_NET_PREFIX = "net."

# HostConfig fields with no kernel support here yet: (field, the docker flag that sets it).
REFUSED = (
    ("BlkioWeight", "--blkio-weight"), ("BlkioWeightDevice", "--blkio-weight-device"),
    ("BlkioDeviceReadBps", "--device-read-bps"), ("BlkioDeviceWriteBps", "--device-write-bps"),
    ("BlkioDeviceReadIOps", "--device-read-iops"),
    ("BlkioDeviceWriteIOps", "--device-write-iops"),
    ("CpuRealtimePeriod", "--cpu-rt-period"), ("CpuRealtimeRuntime", "--cpu-rt-runtime"),
    ("CpuCount", "--cpu-count"), ("CpuPercent", "--cpu-percent"),
    ("IOMaximumIOps", "--io-maxiops"), ("IOMaximumBandwidth", "--io-maxbandwidth"),
    ("KernelMemoryTCP", "KernelMemoryTCP"),
    ("DeviceRequests", "--gpus"), ("UsernsMode", "--userns"),
    ("VolumeDriver", "--volume-driver"), ("StorageOpt", "--storage-opt"),
    ("Cgroup", "--cgroup"), ("MaskedPaths", "MaskedPaths"), ("ReadonlyPaths", "ReadonlyPaths"),
    ("Annotations", "--annotation"),
)  # fmt: skip

_CPUSET = re.compile(r"^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$")
_CGROUP_RULE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")
_CGROUP_PARENT = re.compile(r"^[A-Za-z0-9_.@:/-]+$")
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_NAME_REF = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _set(value: Any) -> bool:
    """Docker's CLI sends zero values for flags not given (0, "", null, [], {})."""
    return value not in (None, 0, "", [], {}, False)


def _default_paths(field: str, value: Any) -> bool:
    """MaskedPaths/ReadonlyPaths that are the defaults inspect shows (ours, or an older
    Docker's without /sys/devices/virtual/powercap): a client that sends an inspected
    HostConfig back asks for nothing unusual."""
    if value == []:
        return True  # the docker CLI's `--security-opt systempaths=unconfined`
    if field == "MaskedPaths":
        default = set(oci_spec.MASKED_PATHS)
        return set(value) in (default, default - {"/sys/devices/virtual/powercap"})
    return field == "ReadonlyPaths" and set(value) == set(oci_spec.READONLY_PATHS)


def refuse_unsupported(host: HostConfig) -> None:
    for field, flag in REFUSED:
        value = getattr(host, field)
        if _set(value) and not _default_paths(field, value):
            raise InvalidArgument(f"{flag} is not supported by shipslog",
                                  hint=f"leave {flag} out; {field} cannot be applied here yet")


def host_options(body: ContainerCreateBody, host: HostConfig, fields: Fields,
                 warnings: list[str]) -> Fields:
    """ContainerConfig fields for the options above; `fields` holds those already read."""
    refuse_unsupported(host)
    if body.NetworkDisabled:
        raise InvalidArgument("NetworkDisabled is not supported by shipslog",
                              hint="use --network none for a container without a network")
    _runtime_and_isolation(host)
    memory = fields.get("memory", 0)
    out: Fields = {
        "memory_swap": _memory_swap(host.MemorySwap),
        "memory_swappiness": _swappiness(host.MemorySwappiness),
        "memory_reservation": _reservation(host.MemoryReservation, memory),
        "oom_kill_disable": bool(host.OomKillDisable),
        "oom_score_adj": _oom_score_adj(host.OomScoreAdj),
        "cpu_shares": _cpu_shares(host.CpuShares),
        "cpuset_cpus": _cpuset(host.CpusetCpus, "cpuset cpus"),
        "cpuset_mems": _cpuset(host.CpusetMems, "cpuset mems"),
        "ulimits": tuple(_ulimit(u.Name or "", u.Soft, u.Hard) for u in host.Ulimits or ()),
        "devices": tuple(_device(d.PathOnHost or "", d.PathInContainer or "",
                                 d.CgroupPermissions or "") for d in host.Devices or ()),
        "device_cgroup_rules": tuple(device_cgroup_rule(r) for r in host.DeviceCgroupRules or ()),
        "shm_size": _shm_size(host.ShmSize),
        "extra_hosts": tuple(extra_host(h) for h in host.ExtraHosts or ()),
        "dns": tuple(_dns(s) for s in host.Dns or ()),
        "dns_search": tuple(_dns_search(d) for d in host.DnsSearch or ()),
        "dns_options": tuple(_dns_option(o) for o in host.DnsOptions or ()),
        "cgroup_parent": _cgroup_parent(host.CgroupParent or ""),
        "group_add": tuple(_group(g) for g in host.GroupAdd or ()),
        "pid_mode": _ns_mode("PID", "--pid", host.PidMode, ("host",)),
        "ipc_mode": _ns_mode("IPC", "--ipc", host.IpcMode,
                             ("host", "private", "shareable", "none")),
        "uts_mode": _ns_mode("UTS", "--uts", host.UTSMode, ("host",)),
        "cgroupns_mode": _ns_mode("cgroup namespace", "--cgroupns", host.CgroupnsMode,
                                  ("host", "private")),
        "mac_address": _mac(body.MacAddress or ""),
        "volumes_from": tuple(_volumes_from(v) for v in host.VolumesFrom or ()),
        "links": tuple(link(spec) for spec in host.Links or ()),
    }
    out["sysctls"] = sysctls(host.Sysctls or {}, network_mode=fields.get("network_mode", ""),
                             ipc_mode=out["ipc_mode"], uts_mode=out["uts_mode"])
    if out["memory_swap"] > 0 and not memory:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap "
                              "limit, see usage", hint="add --memory")
    if out["oom_kill_disable"] and not memory:
        # moby daemon_unix.go, word for word
        warnings.append("OOM killer is disabled for the container, but no memory limit is set, "
                        "this can result in the system running out of resources.")
    if out["uts_mode"] == "host" and fields.get("hostname"):
        raise InvalidArgument("conflicting options: hostname and the UTS mode",
                              hint="drop --hostname or --uts=host")
    if out["mac_address"] and fields.get("network_mode", "bridge") in ("host", "none") or (
            out["mac_address"] and fields.get("network_mode", "").startswith("container:")):
        raise InvalidArgument("conflicting options: mac-address and the network mode",
                              hint="a MAC address needs a network of the container's own")
    mode = fields.get("network_mode", "")
    if out["links"] and (mode == "host" or mode.startswith("container:")):
        kind = "host" if mode == "host" else "container"
        raise InvalidArgument(f"conflicting options: {kind} type networking can't be used "
                              "with links. This would result in undefined behavior",
                              hint="drop --link, or use a network of the container's own")
    return {k: v for k, v in out.items() if _set(v) or k == "memory_swappiness"}


def update_fields(body: HostConfig) -> Fields:
    """`docker update --cpu-shares/--cpuset-*/--memory-reservation/--memory-swap`: the
    `ContainerUpdated` fields beyond those translate.update_changes reads (None: unchanged)."""
    return {
        "memory_swap": _memory_swap(body.MemorySwap) or None,
        "memory_reservation": _reservation(body.MemoryReservation, body.Memory or 0) or None,
        "cpu_shares": _cpu_shares(body.CpuShares) or None,
        "cpuset_cpus": _cpuset(body.CpusetCpus, "cpuset cpus") or None,
        "cpuset_mems": _cpuset(body.CpusetMems, "cpuset mems") or None,
    }


def _runtime_and_isolation(host: HostConfig) -> None:
    runtime = host.Runtime or ""
    if runtime and runtime not in RUNTIMES:
        raise InvalidArgument(f"unknown or invalid runtime name: {runtime}",
                              hint="shipslog runs containers with runc; leave --runtime out")
    isolation = host.Isolation or ""
    if isolation not in ("", "default"):
        # moby daemon_unix.go verifyPlatformContainerSettings
        raise InvalidArgument(f"invalid isolation '{isolation}' on linux",
                              hint="Linux only supports --isolation=default")


def _memory_swap(value: int | None) -> int:
    if value is None or value == 0:
        return 0
    if value < -1:
        raise InvalidArgument("invalid MemorySwap: must be -1 (unlimited) or positive")
    return value


def _swappiness(value: int | None) -> int:
    if value is None or value == -1:
        return -1
    if not 0 <= value <= 100:
        raise InvalidArgument(
            f"Invalid value: {value}, valid memory swappiness range is 0-100")
    return value


def _reservation(value: int | None, memory: int) -> int:
    value = value or 0
    if value < 0:
        raise InvalidArgument("invalid memory reservation: must not be negative")
    if 0 < value < MIN_MEMORY:
        raise InvalidArgument("Minimum memory reservation allowed is 6MB")
    if memory and value > memory:
        raise InvalidArgument("Minimum memory limit can not be less than memory reservation "
                              "limit, see usage")
    return value


def _oom_score_adj(value: int | None) -> int:
    value = value or 0
    if not -1000 <= value <= 1000:
        raise InvalidArgument(
            f"Invalid value {value}, range for oom score adj is [-1000, 1000]")
    return value


def _cpu_shares(value: int | None) -> int:
    value = value or 0
    if value < 0:
        raise InvalidArgument("invalid CPU shares: must not be negative")
    # moby adaptContainerSettings: cgroup v1 takes 2..262144
    return min(max(value, 2), 262144) if value else 0


def _cpuset(value: str | None, what: str) -> str:
    value = (value or "").strip()
    if value and not _CPUSET.match(value):
        raise InvalidArgument(f"Invalid value {value} for {what}",
                              hint="use a list such as 0-2,4")
    return value


def _ulimit(name: str, soft: int | None, hard: int | None) -> Ulimit:
    if name not in ULIMIT_NAMES:
        raise InvalidArgument(f"invalid ulimit type: {name}",
                              hint=f"use one of {', '.join(ULIMIT_NAMES)}")
    soft = soft if soft is not None else 0
    hard = hard if hard is not None else soft
    if soft > hard and hard != -1:
        raise InvalidArgument(
            f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
    return Ulimit(name=name, soft=soft, hard=hard)


def _abs_path(value: str, what: str) -> str:
    if _CONTROL.search(value) or not value.startswith("/") or "/../" in value + "/":
        raise InvalidArgument(f"invalid {what} {value!r}: must be an absolute path")
    return value


def _device(on_host: str, in_container: str, permissions: str) -> DeviceMapping:
    on_host = _abs_path(on_host, "device path")
    in_container = _abs_path(in_container or on_host, "device path in the container")
    permissions = permissions or "rwm"
    if not re.fullmatch(r"[rwm]{1,3}", permissions) or len(set(permissions)) != len(permissions):
        raise InvalidArgument(f"invalid device mode: {permissions}", hint="use r, w and m")
    return DeviceMapping(path_on_host=on_host, path_in_container=in_container,
                         permissions=permissions)


def device_cgroup_rule(rule: str) -> str:
    if not _CGROUP_RULE.match(rule):
        raise InvalidArgument(f"invalid device cgroup format '{rule}'",
                              hint="use TYPE MAJOR:MINOR ACCESS, e.g. 'c 1:3 rwm'")
    return rule


def _shm_size(value: int | None) -> int:
    value = value or 0
    if value < 0:
        raise InvalidArgument("SHM size can not be less than 0")
    return value


def extra_host(spec: str) -> str:
    """`name:ip`, `name=ip` or `name:host-gateway`, kept as `name:ip` (Docker's form)."""
    sep = "=" if "=" in spec else ":"
    name, _, ip = spec.partition(sep)
    if ip == HOST_GATEWAY:
        return f"{check_hostname(name, 'extra host name')}:{HOST_GATEWAY}"
    name, ip = parse_extra_host(spec)
    return f"{name}:{ip}"


def _dns(server: str) -> str:
    return parse_extra_host(f"dns:{server}")[1]  # an IP address, no control bytes


def _dns_search(domain: str) -> str:
    return "." if domain == "." else check_hostname(domain, "search domain")


def _dns_option(option: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", option):
        raise InvalidArgument(f"invalid DNS option {option!r}", hint="e.g. ndots:2")
    return option


def _cgroup_parent(value: str) -> str:
    if value and (not _CGROUP_PARENT.match(value) or ".." in value.split("/")):
        raise InvalidArgument(f"invalid cgroup parent {value!r}",
                              hint="use a cgroup path such as /mygroup")
    return value


def _group(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}", value):
        raise InvalidArgument(f"invalid group {value!r} in --group-add")
    return value


def _ns_mode(what: str, flag: str, value: str | None, allowed: tuple[str, ...]) -> str:
    value = value or ""
    if value.startswith("container:") and what == "PID":
        if not _NAME_REF.match(value.split(":", 1)[1]):
            raise InvalidArgument(f"invalid PID mode: {value}")
        return value  # decide_create resolves the name; the start joins its namespace
    if value.startswith("container:") and what == "IPC":
        # Docker shares the donor's /dev/shm too, which a tmpfs inside its mount namespace
        # cannot give: refused rather than half done.
        raise InvalidArgument(f"{flag}={value} is not supported by shipslog yet",
                              hint=f"use {flag}=host or {flag}=shareable, or leave it out")
    if value and value not in allowed:
        raise InvalidArgument(f"invalid {what} mode: {value}")
    return value


def _mac(value: str) -> str:
    if value and not _MAC.match(value):
        raise InvalidArgument(f"invalid MAC address: {value}", hint="e.g. 02:42:ac:11:00:02")
    if value and int(value[:2], 16) & 1:
        raise InvalidArgument(f"invalid MAC address: {value}: a multicast address",
                              hint="use a unicast address (even first octet)")
    return value.lower()


def _volumes_from(spec: str) -> str:
    name, _, mode = spec.partition(":")
    if not _NAME_REF.match(name) or mode not in ("", "ro", "rw", "z", "Z"):
        raise InvalidArgument(f"invalid --volumes-from {spec!r}", hint="use CONTAINER[:ro|:rw]")
    return spec


def link(spec: str) -> str:
    """`--link NAME[:ALIAS]` (or Docker's stored `/name:/me/alias` form) → "name:alias";
    decide_create swaps the name for the container's id."""
    name, _, alias = spec.partition(":")
    name, alias = name.lstrip("/"), alias.rsplit("/", 1)[-1] or name.lstrip("/")
    if not _NAME_REF.match(name) or not _NAME_REF.match(alias):
        raise InvalidArgument(f"invalid --link {spec!r}", hint="use --link CONTAINER[:ALIAS]")
    return f"{name}:{alias}"


def sysctls(values: dict[str, str], *, network_mode: str, ipc_mode: str,
            uts_mode: str) -> dict[str, str]:
    """Only namespaced sysctls, and only when the container has its own namespace
    (docker/cli ValidateSysctl; runc's validator words the namespace refusals)."""
    for key, value in values.items():
        if _CONTROL.search(key) or _CONTROL.search(value):
            raise InvalidArgument(f"invalid sysctl {key!r}: control characters")
        if key in SYSCTL_IPC or key.startswith(SYSCTL_IPC_PREFIX):
            if ipc_mode == "host":
                raise InvalidArgument(f"sysctl {key!r} is not allowed in the hosts ipc "
                                      "namespace")
        elif key.startswith(SYSCTL_NET_PREFIX):
            if network_mode == "host" or network_mode.startswith("container:"):
                raise InvalidArgument(f"sysctl {key!r} not allowed in host network namespace")
        else:
            raise InvalidArgument(f"sysctl '{key}={value}' is not whitelisted",
                                  hint="only namespaced sysctls (kernel.shm*, kernel.msg*, "
                                       "kernel.sem, fs.mqueue.*, net.*) can be set")
    return dict(values)
