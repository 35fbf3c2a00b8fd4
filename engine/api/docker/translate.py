"""Docker request bodies and query strings → shipslog values, with Docker's semantics and errors.

I/O: none (pure; raises `engine.core.errors.InvalidArgument`, which the server turns into a 400).

`create_body_to_config` turns a `POST /containers/create` body into the fields of
`events.values.ContainerConfig` *before* the image's defaults are merged in; fields the image
may still fill are marked as such (`cmd`/`entrypoint`/`stop_signal` = None, `working_dir`/`user`
= ""). `merge_image_defaults` then applies moby's `runconfig.Merge` rules. `parse_filters`
reads Docker's `filters` query parameter in both its current and its legacy form.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Mapping
from typing import Any

import msgspec

from engine.api.docker.hostopts import host_options, update_fields
from engine.api.docker.models import ContainerCreateBody, HealthConfig, HostConfig, MountBody
from engine.core import health
from engine.core.errors import InvalidArgument
from engine.core.networks import check_network_name
from engine.core.security_opts import SYSTEMPATHS_UNCONFINED, parse_security_opts
from engine.core.signals import parse_signal_name
from engine.core.volume_plan import CREATE_HOST_PATH, PROPAGATIONS
from events.values import HealthCheck, ImageConfig, MountSpec, PortBinding, RestartPolicy
from events.vocabulary import ContainerUpdated

# moby daemon/names/names.go: RestrictedNameChars; RELIABILITY I-02.
NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
VOLUME_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")
LOG_DRIVERS = ("json-file", "local", "none")
MIN_MEMORY = 6 * 1024 * 1024  # moby daemon/daemon_unix.go linuxMinMemory
INT64_MAX = (1 << 63) - 1
DEFAULT_CPU_PERIOD = 100_000  # µs, the kernel's CFS default
_CONTROL = ("\n", "\r", "\0")
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

Fields = dict[str, Any]


def _no_control(what: str, value: str) -> str:
    # CVE-2022-4318 and its bypass: a newline in a field that reaches /etc/passwd or
    # /etc/hosts becomes an extra line there. Test the byte, not "\\n" (RELIABILITY I-03).
    if any(c in value for c in _CONTROL):
        raise InvalidArgument(f"invalid {what} {value!r}: control characters are not allowed")
    return value


def create_body_to_config(
    body: ContainerCreateBody | Mapping[str, Any], *, name: str = ""
) -> tuple[Fields, list[str], list[str]]:
    """(ContainerConfig fields except image_id/env, env as "K=V" strings, warnings)."""
    if not isinstance(body, ContainerCreateBody):
        try:
            body = msgspec.convert(body, ContainerCreateBody)
        except msgspec.ValidationError as exc:
            raise InvalidArgument(f"invalid JSON: {exc}") from None
    if name and not NAME_RE.match(name):
        raise InvalidArgument(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    host = body.HostConfig or HostConfig()
    warnings: list[str] = []
    image = (body.Image or "").strip()
    if not image:
        raise InvalidArgument("no image specified: Image is required")

    working_dir = _no_control("working directory", body.WorkingDir or "")
    if working_dir and not working_dir.startswith("/"):
        raise InvalidArgument(
            f"the working directory '{working_dir}' is invalid, it needs to be an absolute path"
        )
    env = [_env_entry(item) for item in body.Env or []]
    ports, exposed = _ports(host, body.ExposedPorts)
    fields: Fields = {
        "image": image,
        "cmd": tuple(body.Cmd) if body.Cmd is not None else None,
        "entrypoint": _entrypoint(body.Entrypoint),
        "working_dir": working_dir,
        "user": _no_control("user", body.User or ""),
        "hostname": _hostname(body.Hostname or ""),
        "domainname": _hostname(body.Domainname or ""),
        "labels": dict(body.Labels or {}),
        "tty": bool(body.Tty),
        "open_stdin": bool(body.OpenStdin),
        "stdin_once": bool(body.StdinOnce),
        "restart_policy": _restart_policy(host),
        "auto_remove": bool(host.AutoRemove),
        "memory": _memory(host.Memory),
        "nano_cpus": _nano_cpus(host),
        "pids_limit": max(host.PidsLimit or 0, 0),  # 0 and -1 both mean unlimited
        "read_only": bool(host.ReadonlyRootfs),
        "init": bool(host.Init),
        "privileged": bool(host.Privileged),
        "cap_add": _caps(host.CapAdd),
        "cap_drop": _caps(host.CapDrop),
        "no_new_privileges": parse_security_opts(host.SecurityOpt or [],
                                                 warnings).no_new_privileges,
        "security_opt": _security_opt(host),
        "network_mode": _network_mode(host.NetworkMode),
        "mounts": _mounts(host, body.Volumes),
        "binds_given": tuple(host.Binds or ()),
        "tmpfs_given": {target: opts or "" for target, opts in (host.Tmpfs or {}).items()},
        "ports": ports,
        "publish_all": bool(host.PublishAllPorts),
        "exposed_ports": exposed,
        "healthcheck": health_check(body.Healthcheck),
        "stop_signal": parse_signal_name(body.StopSignal) if body.StopSignal else None,
        "stop_timeout": body.StopTimeout,
        "log_driver": (host.LogConfig.Type if host.LogConfig and host.LogConfig.Type else "")
        or "json-file",
        "log_options": dict(host.LogConfig.Config or {}) if host.LogConfig else {},
    }
    fields.update(_endpoint(body, fields["network_mode"]))
    fields.update(host_options(body, host, fields, warnings))
    if fields["log_driver"] not in LOG_DRIVERS:
        raise InvalidArgument(
            f"logging driver {fields['log_driver']!r} is not supported; "
            f"use one of {', '.join(LOG_DRIVERS)}"
        )
    if fields["network_mode"].startswith("container:") and fields["hostname"]:
        # moby runconfig: the joined container's hostname is the one this container sees.
        raise InvalidArgument("conflicting options: hostname and the network mode",
                              hint="drop --hostname; the container takes the joined one's")
    if fields["auto_remove"] and fields["restart_policy"].name != "no":
        raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
    if fields["stop_timeout"] is not None and fields["stop_timeout"] < -1:
        raise InvalidArgument("invalid StopTimeout: must be -1 (wait forever) or more")
    if host.MemorySwap not in (None, 0, -1) and host.MemorySwap < fields["memory"]:
        raise InvalidArgument(
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        )
    return fields, env, warnings


def merge_image_defaults(
    fields: Fields, env: list[str], image: ImageConfig
) -> tuple[Fields, list[str]]:
    """Fill what the user left to the image, as moby `runconfig.Merge` does.

    Entrypoint and Cmd: a user entrypoint (non-empty) replaces both the image's entrypoint and
    its cmd; an explicitly empty entrypoint (`--entrypoint ""`) drops the image's entrypoint
    but keeps its cmd; no entrypoint at all inherits both unless the user gave a cmd.
    """
    merged = dict(fields)
    entrypoint, cmd = fields.get("entrypoint"), fields.get("cmd")
    if not entrypoint:
        if not cmd:
            cmd = image.cmd
        if entrypoint is None:
            entrypoint = image.entrypoint
    merged["entrypoint"] = tuple(entrypoint or ())
    merged["cmd"] = tuple(cmd or ())
    merged["working_dir"] = fields.get("working_dir") or image.working_dir
    merged["user"] = fields.get("user") or image.user
    merged["labels"] = {**image.labels, **fields.get("labels", {})}
    merged["exposed_ports"] = tuple(
        sorted(set(fields.get("exposed_ports", ())) | {_port_key(p) for p in image.exposed_ports})
    )
    # unset stays unset (Docker shows no StopSignal; stopping still sends SIGTERM)
    merged["stop_signal"] = fields.get("stop_signal") or image.stop_signal or ""
    merged["healthcheck"] = health.merge(fields.get("healthcheck"), image.healthcheck)
    mounts = list(fields.get("mounts", ()))
    taken = {m.target for m in mounts}
    for target in image.volumes:
        if target not in taken:  # image VOLUMEs become anonymous volumes, as in Docker
            mounts.append(MountSpec(type="volume", target=target, mode=""))
            taken.add(target)
    merged["mounts"] = tuple(mounts)
    user_keys = {item.split("=", 1)[0] for item in env}
    merged_env = [item for item in image.env if item.split("=", 1)[0] not in user_keys] + env
    return merged, merged_env


# ---------------------------------------------------------------------------------------------
# Pieces


# What `docker update` can change here; anything else it sets is refused with a 400
# (issue 13: never accepted and ignored).
UPDATABLE = ("Memory", "MemorySwap", "NanoCpus", "CpuQuota", "CpuPeriod", "PidsLimit",
             "RestartPolicy", "MemoryReservation", "CpuShares", "CpusetCpus", "CpusetMems")


def update_changes(body: HostConfig, raw: Mapping[str, Any]) -> tuple[ContainerUpdated,
                                                                       list[str]]:
    """`POST /containers/{id}/update` (Docker's `UpdateConfig`, decoded as a HostConfig and
    as the raw map to see which keys were sent): the changes, and no warnings — a setting
    that cannot be updated is refused by name."""
    for key, value in raw.items():
        if key not in UPDATABLE and value not in (None, 0, "", [], {}, False):
            raise InvalidArgument(f"{key} cannot be updated by shipslog",
                                  hint="update only memory, swap, reservation, CPUs, CPU "
                                       "shares, cpuset, pids limit or restart policy")
    if body.MemorySwap not in (None, 0, -1) and body.Memory and body.MemorySwap < body.Memory:
        raise InvalidArgument(
            "Minimum memoryswap limit should be larger than memory limit, see usage")
    nano = _nano_cpus(body) if body.NanoCpus or body.CpuQuota else None
    if body.CpuQuota and not body.NanoCpus:  # `--cpu-quota` with the default period
        nano = body.CpuQuota * 1_000_000_000 // (body.CpuPeriod or DEFAULT_CPU_PERIOD)
    pids = body.PidsLimit
    return ContainerUpdated(
        container_id="",
        memory=_memory(body.Memory) if body.Memory else None,
        nano_cpus=nano,
        pids_limit=None if pids is None else max(pids, 0),  # -1 and 0: no limit
        # Docker's CLI always sends a RestartPolicy; an empty name means "leave it".
        restart_policy=(_restart_policy(body) if body.RestartPolicy is not None
                        and body.RestartPolicy.Name else None),
        **update_fields(body),
    ), []


def health_check(body: HealthConfig | None) -> HealthCheck | None:
    """Docker's `Healthcheck` (ns durations; `["NONE"]` switches the image's off)."""
    if body is None:
        return None
    return health.validate(HealthCheck(
        test=tuple(body.Test or ()), interval_ns=body.Interval or 0, timeout_ns=body.Timeout or 0,
        retries=body.Retries or 0, start_period_ns=body.StartPeriod or 0))


def _entrypoint(value: list[str] | None) -> tuple[str, ...] | None:
    # `docker run --entrypoint ""` sends [""]: it means "no entrypoint", not a program named "".
    if value is None:
        return None
    return () if value == [""] else tuple(value)


def _env_entry(item: str) -> str:
    key, sep, value = item.partition("=")
    if not key:
        raise InvalidArgument(f"invalid environment variable {item!r}: empty name")
    if "\0" in item:  # execve cannot carry it; it would truncate the value silently
        raise InvalidArgument(f"invalid environment variable {key!r}: NUL byte")
    _no_control("environment variable name", key)
    if key == "HOME":
        _no_control("HOME", value)  # HOME is written into /etc/passwd (CVE-2022-4318)
    return item if sep else key


def _hostname(value: str) -> str:
    _no_control("hostname", value)
    if len(value) > 255:
        raise InvalidArgument("invalid hostname: longer than 255 characters")
    return value


def _restart_policy(host: HostConfig) -> RestartPolicy:
    policy = host.RestartPolicy
    name = (policy.Name if policy else None) or "no"
    count = (policy.MaximumRetryCount if policy else None) or 0
    if name not in RESTART_POLICIES:
        raise InvalidArgument(
            f"invalid restart policy: unknown policy '{name}'; use one of "
            "'no', 'always', 'on-failure', or 'unless-stopped'"
        )
    if count < 0:
        raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    if count and name != "on-failure":
        raise InvalidArgument(
            f"invalid restart policy: maximum retry count can only be used with 'on-failure'"
            f" (got '{name}')"
        )
    return RestartPolicy(name=name, maximum_retry_count=count)


def _memory(memory: int | None) -> int:
    memory = memory or 0
    if memory > INT64_MAX:  # Docker decodes an int64: its JSON decoder refuses the rest
        raise InvalidArgument(f"json: cannot unmarshal number {memory} into Go struct field "
                              "HostConfig.HostConfig.Memory of type int64",
                              hint="give a memory limit below 8 EiB")
    if memory < 0 or 0 < memory < MIN_MEMORY:
        # Docker's one check, below 6 MB, takes negatives too: `-m 9223372036854775807`
        # reaches it negative, as the docker CLI parses sizes through a float64.
        raise InvalidArgument("Minimum memory limit allowed is 6MB", hint="use -m 6m or more")
    return memory


def _nano_cpus(host: HostConfig) -> int:
    nano, quota, period = host.NanoCpus or 0, host.CpuQuota or 0, host.CpuPeriod or 0
    if nano < 0:
        raise InvalidArgument("invalid NanoCpus: must not be negative")
    if nano and (quota or period):
        raise InvalidArgument(
            "Conflicting options: Nano CPUs and CPU Period/Quota cannot both be set"
        )
    if nano:
        if nano < 10_000_000:
            raise InvalidArgument("Range of CPUs is from 0.01 upwards")
        return nano
    if period and not 1000 <= period <= 1_000_000:
        raise InvalidArgument(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
        )
    if quota < 0 and quota != -1:
        raise InvalidArgument("invalid CpuQuota: must be -1 (unlimited) or positive")
    if 0 < quota < 1000:
        raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if quota <= 0:
        return 0
    return quota * 1_000_000_000 // (period or DEFAULT_CPU_PERIOD)


def _caps(caps: list[str] | None) -> tuple[str, ...]:
    out: list[str] = []
    for cap in caps or []:
        cap = cap.strip().upper()
        if not re.fullmatch(r"[A-Z_]+", cap):
            raise InvalidArgument(f"invalid capability {cap!r}")
        if cap != "ALL" and not cap.startswith("CAP_"):
            cap = "CAP_" + cap
        if cap not in out:
            out.append(cap)
    return tuple(out)


def _security_opt(host: HostConfig) -> tuple[str, ...]:
    """The options as given; the docker CLI turns `--security-opt systempaths=unconfined`
    into empty MaskedPaths and ReadonlyPaths lists (null is the default), which we keep as
    that option (inspect shows the empty lists, as Docker does, not the option)."""
    opts = tuple(host.SecurityOpt or ())
    if (host.MaskedPaths == [] or host.ReadonlyPaths == []) \
            and SYSTEMPATHS_UNCONFINED not in opts:
        opts += (SYSTEMPATHS_UNCONFINED,)
    return opts


def _network_mode(mode: str | None) -> str:
    # "default" is Docker's name for the default bridge network.
    if not mode or mode == "default":
        return "bridge"
    if mode.startswith("container:"):
        target = mode.split(":", 1)[1]
        if not target or not NAME_RE.match(target):
            raise InvalidArgument(f"invalid network mode {mode!r}")
        return mode
    if mode not in ("none", "host", "bridge"):
        try:
            check_network_name(mode)  # a network's name: as Docker's, spaces allowed
        except InvalidArgument:
            raise InvalidArgument(f"invalid network mode {mode!r}") from None
    return mode


def _endpoint(body: ContainerCreateBody, mode: str) -> Fields:
    """`--ip` and `--network-alias`: NetworkingConfig.EndpointsConfig[<the network>] as
    Docker's CLI sends it (keyed by the network's name; one entry for a new container)."""
    endpoints = (body.NetworkingConfig.EndpointsConfig or {}) if body.NetworkingConfig else {}
    ep = endpoints.get(mode) or next((e for e in endpoints.values() if e), None)
    if ep is None:
        return {}
    ip = (ep.IPAMConfig.IPv4Address or "") if ep.IPAMConfig else ""
    ip6 = (ep.IPAMConfig.IPv6Address or "") if ep.IPAMConfig else ""
    aliases = tuple(_hostname(a) for a in ep.Aliases or () if a)
    if (ip or ip6 or aliases) and mode in ("bridge", "host", "none"):
        what = "user specified IP address" if ip or ip6 else "network-scoped alias"
        raise InvalidArgument(f"{what} is supported only for containers in user defined "
                              "networks")
    if ip:
        try:
            ip = str(ipaddress.IPv4Address(ip))
        except ValueError:
            raise InvalidArgument(f"invalid IPv4 address {ip!r}") from None
    if ip6:  # `run --ip6` (issue 13)
        try:
            ip6 = str(ipaddress.IPv6Address(ip6))
        except ValueError:
            raise InvalidArgument(f"invalid IPv6 address {ip6!r}") from None
    out: dict[str, Any] = {"ipv4_address": ip, "network_aliases": aliases}
    if ip6:
        out["ipv6_address"] = ip6
    return out


# -- ports --------------------------------------------------------------------------------------


def _port_key(spec: str) -> str:
    """ "80" → "80/tcp"; validates the number and protocol."""
    number, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid port {spec!r}: unknown protocol {proto!r}")
    if not number.isdigit() or not 1 <= int(number) <= 65535:
        raise InvalidArgument(f"invalid port {spec!r}: must be 1-65535")
    return f"{int(number)}/{proto}"


def _ports(
    host: HostConfig, exposed: Mapping[str, Any] | None
) -> tuple[tuple[PortBinding, ...], tuple[str, ...]]:
    keys = {_port_key(spec) for spec in exposed or {}}
    bindings: list[PortBinding] = []
    for spec, targets in (host.PortBindings or {}).items():
        key = _port_key(spec)
        keys.add(key)  # Docker exposes every published port
        number, proto = key.split("/")
        for target in targets or []:
            host_ip = (target.HostIp or "").strip()
            if host_ip:
                try:
                    host_ip = str(ipaddress.ip_address(host_ip.strip("[]")))
                except ValueError:
                    raise InvalidArgument(f"invalid host IP {target.HostIp!r} for {spec}") from None
            raw = (target.HostPort or "").strip()
            if raw and (not raw.isdigit() or not 1 <= int(raw) <= 65535):
                raise InvalidArgument(f"invalid host port {raw!r} for {spec}: must be 1-65535")
            bindings.append(
                PortBinding(
                    container_port=int(number),
                    protocol=proto,
                    host_ip=host_ip,
                    host_port=int(raw) if raw else 0,
                )
            )
    return tuple(bindings), tuple(sorted(keys))


# -- mounts -------------------------------------------------------------------------------------


def _target(value: str, what: str) -> str:
    _no_control(what, value)
    if not value.startswith("/"):
        raise InvalidArgument(f"invalid {what} {value!r}: mount path must be absolute")
    if value.rstrip("/") == "":
        raise InvalidArgument(f"invalid {what} {value!r}: destination can't be '/'")
    return value.rstrip("/")


def _source(value: str, spec: str) -> tuple[str, str]:
    """("bind", abs path) or ("volume", name); relative paths refused (RELIABILITY S-03)."""
    _no_control("mount source", value)
    if value.startswith("/"):
        if "/../" in value + "/" or value.endswith("/.."):
            raise InvalidArgument(f"invalid mount {spec!r}: '..' in the source path")
        return "bind", value
    if value.startswith(".") or "/" in value or not VOLUME_NAME_RE.match(value):
        raise InvalidArgument(
            f"invalid mount {spec!r}: {value!r} is neither an absolute path nor a valid "
            "volume name (relative bind sources are not allowed)"
        )
    return "volume", value


def _bind(spec: str) -> MountSpec:
    parts = spec.split(":")
    if len(parts) == 1:
        return MountSpec(type="volume", target=_target(parts[0], "mount target"), mode="")
    if len(parts) > 3:
        raise InvalidArgument(f"invalid bind spec {spec!r}: too many colons")
    kind, source = _source(parts[0], spec)
    target = _target(parts[1], "mount target")
    read_only, propagation, options = False, "", []
    for opt in parts[2].split(",") if len(parts) == 3 and parts[2] else []:
        if opt in ("ro", "rw"):
            read_only = opt == "ro"
        elif opt in PROPAGATIONS:
            if kind != "bind":
                raise InvalidArgument(f"invalid bind spec {spec!r}: propagation on a volume")
            propagation = opt
        elif opt in ("z", "Z", "nocopy", "consistent", "cached", "delegated"):
            if opt == "nocopy":
                options.append(opt)
        else:
            raise InvalidArgument(f"invalid bind spec {spec!r}: unknown option {opt!r}")
    if kind == "bind":
        options.append(CREATE_HOST_PATH)  # `-v /missing:/x` makes /missing, as Docker does
    given = parts[2] if len(parts) == 3 else ""
    return MountSpec(
        type=kind,
        target=target,
        source=source,
        read_only=read_only,
        propagation=propagation,
        options=tuple(options),
        mode=given or ("z" if kind == "volume" else ""),  # Docker's default label option
    )


def _mount(body: MountBody) -> MountSpec:
    kind = (body.Type or "").lower()
    target = _target(body.Target or "", "mount target")
    source = body.Source or ""
    label = f"{kind}:{source}:{target}"
    if kind == "bind":
        if not source:
            raise InvalidArgument(f"invalid mount {label!r}: a bind mount needs a source")
        if _source(source, label)[0] != "bind":
            raise InvalidArgument(f"invalid mount {label!r}: bind source must be absolute")
        propagation = (body.BindOptions.Propagation or "") if body.BindOptions else ""
        if propagation and propagation not in PROPAGATIONS:
            raise InvalidArgument(f"invalid mount {label!r}: propagation {propagation!r}")
        return MountSpec(
            type="bind",
            target=target,
            source=source,
            read_only=bool(body.ReadOnly),
            propagation=propagation,
            options=(CREATE_HOST_PATH,) if body.BindOptions and body.BindOptions.CreateMountpoint
            else (),
            mode="",
        )
    if kind == "volume":
        if source and _source(source, label)[0] != "volume":
            raise InvalidArgument(f"invalid mount {label!r}: volume source must be a name")
        nocopy = bool(body.VolumeOptions and body.VolumeOptions.NoCopy)
        return MountSpec(
            type="volume",
            target=target,
            source=source,
            read_only=bool(body.ReadOnly),
            options=("nocopy",) if nocopy else (),
            mode="z",
        )
    if kind == "tmpfs":
        if source:
            raise InvalidArgument(f"invalid mount {label!r}: tmpfs takes no source")
        size = body.TmpfsOptions.SizeBytes if body.TmpfsOptions else None
        mode = body.TmpfsOptions.Mode if body.TmpfsOptions else None
        if size is not None and size < 0:
            raise InvalidArgument(f"invalid mount {label!r}: negative tmpfs size")
        return MountSpec(
            type="tmpfs",
            target=target,
            read_only=bool(body.ReadOnly),
            tmpfs_size=size or 0,
            options=(f"mode={mode:o}",) if mode else (),
            mode="",
        )
    raise InvalidArgument(f"invalid mount type {body.Type!r}: use bind, volume or tmpfs")


def _tmpfs(target: str, opts: str) -> MountSpec:
    size, options, read_only = 0, [], False
    for opt in (o.strip() for o in opts.split(",") if o.strip()):
        _no_control("tmpfs option", opt)
        key, _, value = opt.partition("=")
        if key == "size":
            size = _parse_size(value, f"tmpfs {target}")
        elif opt in ("ro", "rw"):
            read_only = opt == "ro"
        else:
            options.append(opt)
    return MountSpec(
        type="tmpfs",
        target=_target(target, "tmpfs target"),
        read_only=read_only,
        tmpfs_size=size,
        options=tuple(options),
    )


def _parse_size(value: str, what: str) -> int:
    match = re.fullmatch(r"([0-9]+)([bkmgBKMG]?)", value.strip())
    if not match:
        raise InvalidArgument(f"invalid size {value!r} for {what}")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def _mounts(host: HostConfig, volumes: Mapping[str, Any] | None) -> tuple[MountSpec, ...]:
    mounts = [_bind(spec) for spec in host.Binds or []]
    mounts += [_mount(m) for m in host.Mounts or []]
    mounts += [_tmpfs(target, opts or "") for target, opts in (host.Tmpfs or {}).items()]
    seen: set[str] = set()
    for mount in mounts:
        if mount.target in seen:
            raise InvalidArgument(f"Duplicate mount point: {mount.target}")
        seen.add(mount.target)
    for target in volumes or {}:  # Config.Volumes (`-v /data`): anonymous volumes
        path = _target(target, "volume target")
        if path not in seen:
            mounts.append(MountSpec(type="volume", target=path, mode=""))
            seen.add(path)
    return tuple(mounts)


# ---------------------------------------------------------------------------------------------
# Filters


def parse_filters(raw: str | None, allowed: Collection[str] | None = None) -> dict[str, list[str]]:
    """Docker's `filters` query parameter → {key: [values]}.

    Accepts `{"status": ["running"]}` and the pre-1.22 map form `{"status": {"running": true}}`
    (values whose flag is true). `allowed` rejects unknown keys with Docker's "invalid filter".
    """
    if raw is None or not raw.strip():
        return {}
    try:
        decoded = msgspec.json.decode(raw.encode())
    except (msgspec.DecodeError, RecursionError):
        raise InvalidArgument(f"invalid filter: {raw!r} is not valid JSON") from None
    if not isinstance(decoded, dict):
        raise InvalidArgument("invalid filter: expected a JSON object")
    result: dict[str, list[str]] = {}
    for key, value in decoded.items():
        if allowed is not None and key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            values = list(value)
        elif isinstance(value, dict) and all(isinstance(v, bool) for v in value.values()):
            values = [k for k, flag in value.items() if flag]
        elif isinstance(value, str):
            values = [value]
        else:
            raise InvalidArgument(f"invalid filter '{key}': values must be strings")
        result[key] = values
    return result


def labels_match(labels: Mapping[str, str], wanted: Collection[str]) -> bool:
    """Docker's `label` filter: every `key` present, every `key=value` equal."""
    for item in wanted:
        key, _, value = item.partition("=")
        if key not in labels or (value and labels[key] != value):
            return False
    return True
