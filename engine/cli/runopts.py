"""The flags of `run` and `create`, and their translation into the body of
`POST /containers/create` (Config, HostConfig, NetworkingConfig), as Docker's CLI builds it.

I/O: reads files named by `--env-file` and `--label-file`; otherwise pure.
"""

from __future__ import annotations

import argparse

from engine.cli import parse
from engine.cli.errors import UsageError

# typing and collections.abc are for the type checker only: importing typing costs
# every CLI start ~3 ms (issue 17)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


def add_run_flags(p: argparse.ArgumentParser, *, run: bool) -> None:
    """Flags shared by `run` and `create`, spelled as Docker spells them."""
    if run:
        p.add_argument("-d", "--detach", action="store_true")
        p.add_argument("--sig-proxy", default="true", choices=["true", "false"])
        p.add_argument("--detach-keys", default="")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-a", "--attach", action="append", default=[])
    p.add_argument("--rm", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true", help="suppress the pull output")
    p.add_argument("--name", default="")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("--env-file", action="append", default=[])
    p.add_argument("-w", "--workdir", default="")
    p.add_argument("-u", "--user", default="")
    p.add_argument("--entrypoint", default=None)
    p.add_argument("-h", "--hostname", default="")
    p.add_argument("--domainname", default="")
    p.add_argument("--restart", default="")
    p.add_argument("-m", "--memory", default="")
    p.add_argument("--memory-swap", default="")
    p.add_argument("--cpus", default="")
    p.add_argument("--cpu-shares", "-c", type=int, default=0)
    p.add_argument("--pids-limit", type=int, default=None)
    p.add_argument("--read-only", action="store_true")
    p.add_argument("-l", "--label", action="append", default=[])
    p.add_argument("--label-file", action="append", default=[])
    p.add_argument("--init", action="store_true")
    p.add_argument("--network", "--net", default="")
    p.add_argument("--network-alias", action="append", default=[])
    p.add_argument("--ip", default="")
    p.add_argument("--ip6", default="")
    p.add_argument("-v", "--volume", action="append", default=[])
    p.add_argument("--mount", action="append", default=[])
    p.add_argument("--tmpfs", action="append", default=[])
    p.add_argument("-p", "--publish", action="append", default=[])
    p.add_argument("-P", "--publish-all", action="store_true")
    p.add_argument("--expose", action="append", default=[])
    p.add_argument("--log-driver", default="")
    p.add_argument("--log-opt", action="append", default=[])
    p.add_argument("--stop-signal", default="")
    p.add_argument("--stop-timeout", type=int, default=None)
    p.add_argument("--health-cmd", default="", help="command to run to check health")
    p.add_argument("--health-interval", default="", help="time between checks (e.g. 30s)")
    p.add_argument("--health-timeout", default="", help="longest a check may run")
    p.add_argument("--health-retries", type=int, default=0,
                   help="consecutive failures before unhealthy")
    p.add_argument("--health-start-period", default="",
                   help="failures in this time after start do not count")
    p.add_argument("--no-healthcheck", action="store_true",
                   help="disable any container-specified HEALTHCHECK")
    p.add_argument("--privileged", action="store_true")
    p.add_argument("--cap-add", action="append", default=[])
    p.add_argument("--cap-drop", action="append", default=[])
    p.add_argument("--security-opt", action="append", default=[])
    p.add_argument("--add-host", action="append", default=[])
    p.add_argument("--dns", action="append", default=[])
    p.add_argument("--shm-size", default="")
    p.add_argument("--ulimit", action="append", default=[])
    # Issue 13: the rest of Docker's create flags, sent as Docker's CLI sends them.
    p.add_argument("--device", action="append", default=[])
    p.add_argument("--device-cgroup-rule", action="append", default=[])
    p.add_argument("--dns-search", action="append", default=[])
    p.add_argument("--dns-option", action="append", default=[])
    p.add_argument("--sysctl", action="append", default=[])
    p.add_argument("--cgroup-parent", default="")
    p.add_argument("--runtime", default="")
    p.add_argument("--isolation", default="")
    p.add_argument("--group-add", action="append", default=[])
    p.add_argument("--cpuset-cpus", default="")
    p.add_argument("--cpuset-mems", default="")
    p.add_argument("--memory-swappiness", type=int, default=None)
    p.add_argument("--memory-reservation", default="")
    p.add_argument("--oom-kill-disable", action="store_true")
    p.add_argument("--oom-score-adj", type=int, default=0)
    p.add_argument("--pid", default="")
    p.add_argument("--ipc", default="")
    p.add_argument("--uts", default="")
    p.add_argument("--cgroupns", default="")
    p.add_argument("--mac-address", default="")
    p.add_argument("--volumes-from", action="append", default=[])
    p.add_argument("--link", action="append", default=[])
    p.add_argument("--help", action="help", help="show this help message and exit")
    p.add_argument("image")
    p.add_argument("command", nargs=argparse.REMAINDER)


def _attach_streams(args: argparse.Namespace, detach: bool, verb: str) -> set[str]:
    wanted = {a.lower() for a in args.attach}
    for stream in wanted:
        if stream not in ("stdin", "stdout", "stderr"):
            raise UsageError(f"invalid argument \"{stream}\" for \"-a, --attach\" flag: valid "
                             "streams are STDIN, STDOUT and STDERR", verb)
    if detach:
        if wanted:
            raise UsageError("Conflicting options: -a and -d", verb)
        return set()
    if not wanted:
        wanted = {"stdout", "stderr"} | ({"stdin"} if args.interactive else set())
    return wanted


def _value(flag: str, verb: str, fn: Any, *a: Any) -> Any:
    try:
        return fn(*a)
    except ValueError as exc:
        raise UsageError(f"invalid argument for {flag}: {exc}", verb) from None


def build_create(args: argparse.Namespace, environ: Mapping[str, str],
                 verb: str = "run") -> tuple[str, dict[str, Any]]:
    """(name, body) for `POST /containers/create?name=NAME`; empty fields are left out."""
    detach = bool(getattr(args, "detach", False))
    if args.rm and args.restart and args.restart not in ("no", ""):
        raise UsageError("Conflicting options: --restart and --rm", verb)
    attach = _attach_streams(args, detach, verb)

    env: list[str] = []
    for path in args.env_file:
        env += _value("--env-file", verb, parse.read_env_file, path, environ)
    env += [_value("-e", verb, parse.parse_env, e, environ) for e in args.env]
    label_values: list[str] = []
    for path in args.label_file:
        label_values += _value("--label-file", verb, parse.read_label_file, path)
    labels = _value("--label", verb, parse.parse_labels, label_values + args.label)

    exposed: dict[str, dict[str, Any]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in args.publish:
        ports, binds = _value("-p", verb, parse.parse_publish, spec)
        exposed.update(ports)
        for key, value in binds.items():
            bindings.setdefault(key, []).extend(value)
    for spec in args.expose:
        exposed.update({p: {} for p in _value("--expose", verb, parse.parse_expose, spec)})

    binds_list: list[str] = []
    volumes: dict[str, dict[str, Any]] = {}
    for spec in args.volume:
        bind, anonymous = _value("-v", verb, parse.parse_volume, spec)
        if bind:
            binds_list.append(bind)
        if anonymous:
            volumes[anonymous] = {}
    mounts = [_value("--mount", verb, parse.parse_mount, m) for m in args.mount]
    tmpfs = dict(_value("--tmpfs", verb, parse.parse_tmpfs, t) for t in args.tmpfs)

    config: dict[str, Any] = {
        "Hostname": args.hostname,
        "Domainname": args.domainname,
        "User": args.user,
        "AttachStdin": "stdin" in attach,
        "AttachStdout": "stdout" in attach,
        "AttachStderr": "stderr" in attach,
        "ExposedPorts": exposed,
        "Tty": args.tty,
        "OpenStdin": args.interactive,
        "StdinOnce": "stdin" in attach,
        "Env": env,
        "Cmd": list(args.command) or None,
        "Image": args.image,
        "Volumes": volumes,
        "WorkingDir": args.workdir,
        "Labels": labels,
        "StopSignal": args.stop_signal,
        "StopTimeout": args.stop_timeout,
    }
    health = _health(args, verb)
    if health:
        config["Healthcheck"] = health
    if args.entrypoint is not None:
        # `--entrypoint ""` resets the image's entrypoint, which Docker sends as [""]
        config["Entrypoint"] = [args.entrypoint]

    host: dict[str, Any] = {
        "Binds": binds_list,
        "Mounts": mounts,
        "Tmpfs": tmpfs,
        "PortBindings": bindings,
        "PublishAllPorts": args.publish_all,
        "AutoRemove": args.rm,
        "NetworkMode": args.network,
        "Privileged": args.privileged,
        "ReadonlyRootfs": args.read_only,
        "Init": True if args.init else None,
        "CapAdd": normalize_caps(args.cap_add),
        "CapDrop": normalize_caps(args.cap_drop),
        "SecurityOpt": [_security_opt(o, verb) for o in args.security_opt],
        "ExtraHosts": args.add_host,
        "Dns": args.dns,
        "PidsLimit": args.pids_limit,
        "CpuShares": args.cpu_shares or None,
    }
    if args.restart:
        host["RestartPolicy"] = _value("--restart", verb, parse.parse_restart, args.restart)
    if args.memory:
        host["Memory"] = _value("--memory", verb, parse.parse_size, args.memory)
    if args.memory_swap:
        host["MemorySwap"] = (-1 if args.memory_swap == "-1" else
                              _value("--memory-swap", verb, parse.parse_size, args.memory_swap))
    if args.shm_size:
        host["ShmSize"] = _value("--shm-size", verb, parse.parse_size, args.shm_size)
    if args.cpus:
        host["NanoCpus"] = _value("--cpus", verb, parse.parse_cpus, args.cpus)
    if args.log_driver or args.log_opt:
        host["LogConfig"] = {
            "Type": args.log_driver,
            "Config": _value("--log-opt", verb, parse.parse_key_value_opts, args.log_opt,
                             "--log-opt"),
        }
    if args.ulimit:
        host["Ulimits"] = [_value("--ulimit", verb, _ulimit, u) for u in args.ulimit]
    host.update(_more_host(args, verb))
    if args.mac_address:
        config["MacAddress"] = args.mac_address
    config["HostConfig"] = _compact(host)
    body = _compact(config)
    if args.network_alias or args.ip or args.ip6:
        if not args.network:
            raise UsageError("network-scoped aliases and --ip are only supported for "
                             "user-defined networks", verb)
        endpoint: dict[str, Any] = {"Aliases": args.network_alias}
        if args.ip or args.ip6:
            endpoint["IPAMConfig"] = {k: v for k, v in (("IPv4Address", args.ip),
                                                        ("IPv6Address", args.ip6)) if v}
        body["NetworkingConfig"] = {"EndpointsConfig": {args.network: endpoint}}
    return args.name, body


def _security_opt(opt: str, verb: str) -> str:
    """As the docker CLI does: `seccomp=PATH` sends the profile file's contents."""
    key, sep, value = opt.replace(":", "=", 1).partition("=") if opt.startswith(
        "seccomp") else opt.partition("=")
    if key != "seccomp" or not sep or value in ("unconfined", "builtin"):
        return opt
    try:
        with open(value, "rb") as f:
            return "seccomp=" + f.read(1 << 20).decode("utf-8", "replace")
    except OSError as exc:
        raise UsageError(f"opening seccomp profile ({value}) failed: "
                         f"{exc.strerror or exc}", verb) from None


def normalize_caps(caps: list[str]) -> list[str]:
    """`net_admin` → `CAP_NET_ADMIN`, `all` → `ALL`, duplicates dropped (Docker's
    NormalizeCapabilities, so the daemon sees one spelling)."""
    out: list[str] = []
    for cap in caps:
        name = cap.strip().upper()
        if name != "ALL" and not name.startswith("CAP_"):
            name = "CAP_" + name
        if name not in out:
            out.append(name)
    return out


def _more_host(args: argparse.Namespace, verb: str) -> dict[str, Any]:
    """The HostConfig fields of the flags added for issue 13 (empty ones are dropped later)."""
    host: dict[str, Any] = {
        "Devices": [_value("--device", verb, _device, d) for d in args.device],
        "DeviceCgroupRules": args.device_cgroup_rule,
        "DnsSearch": args.dns_search,
        "DnsOptions": args.dns_option,
        "Sysctls": _value("--sysctl", verb, parse.parse_key_value_opts, args.sysctl,
                          "--sysctl"),
        "CgroupParent": args.cgroup_parent,
        "Runtime": args.runtime,
        "Isolation": args.isolation,
        "GroupAdd": args.group_add,
        "CpusetCpus": args.cpuset_cpus,
        "CpusetMems": args.cpuset_mems,
        "MemorySwappiness": args.memory_swappiness,
        "OomKillDisable": args.oom_kill_disable,
        "OomScoreAdj": args.oom_score_adj or None,
        "PidMode": args.pid,
        "IpcMode": args.ipc,
        "UTSMode": args.uts,
        "CgroupnsMode": args.cgroupns,
        "VolumesFrom": args.volumes_from,
        "Links": args.link,
    }
    if args.memory_reservation:
        host["MemoryReservation"] = _value("--memory-reservation", verb, parse.parse_size,
                                           args.memory_reservation)
    return host


def _device(spec: str) -> dict[str, str]:
    """docker/cli parseDevice: `SRC[:DST][:PERMISSIONS]`."""
    parts = spec.split(":")
    if len(parts) > 3 or not parts[0]:
        raise ValueError(f"bad format for path: {spec}")
    perms = "rwm"
    if len(parts) == 3 or (len(parts) == 2 and set(parts[1]) <= set("rwm") and parts[1]):
        perms = parts.pop()
    dst = parts[1] if len(parts) == 2 else parts[0]
    return {"PathOnHost": parts[0], "PathInContainer": dst, "CgroupPermissions": perms}


def _ulimit(spec: str) -> dict[str, Any]:
    name, sep, limits = spec.partition("=")
    if not sep:
        raise ValueError(f"invalid ulimit argument: {spec}")
    soft, _, hard = limits.partition(":")
    return {"Name": name, "Soft": int(soft), "Hard": int(hard or soft)}


_ALWAYS = {"AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce",
           "Image", "HostConfig"}


def _health(args: argparse.Namespace, verb: str) -> dict[str, Any] | None:
    """Docker's CLI: `--health-*` flags into `Healthcheck` (ns); `--no-healthcheck` sends
    `["NONE"]` and conflicts with the others."""
    def ns(flag: str, text: str) -> int:
        return int(_value(flag, verb, parse.parse_go_duration, text) * 1e9)

    given = {"Interval": ns("--health-interval", args.health_interval),
             "Timeout": ns("--health-timeout", args.health_timeout),
             "StartPeriod": ns("--health-start-period", args.health_start_period),
             "Retries": args.health_retries}
    if args.no_healthcheck:
        if args.health_cmd or any(given.values()):
            raise UsageError("--no-healthcheck conflicts with --health-* options", verb)
        return {"Test": ["NONE"]}
    if not args.health_cmd and not any(given.values()):
        return None
    test = ["CMD-SHELL", args.health_cmd] if args.health_cmd else []
    return {"Test": test, **{k: v for k, v in given.items() if v}}


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    """Leave out unset fields (None, False, "", [], {}) except those Docker always sends."""
    return {k: v for k, v in values.items()
            if k in _ALWAYS or (v is not None and v is not False and v != "" and v != []
                                and v != {})}
