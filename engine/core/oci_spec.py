"""Build the OCI runtime spec (config.json) for a container, as a plain dict.

I/O: none. Everything the builder needs from the host (rlimits, kernel version, the
contents of the rootfs's /etc/passwd and /etc/group) is passed in by the driver, which
reads it (`engine/drivers/runtime/linux.py`), so this module can be tested without a kernel.

The defaults are Docker's (moby `oci/defaults.go`, `daemon/oci_linux.go`): 14
capabilities, masked and read-only /proc paths, the /dev, /proc, /sys mounts, runc's
default device allow-list, and Docker's default seccomp profile resolved for the final
capability set. `--init` binds Debian docker.io's tini (`/usr/bin/docker-init`) at
`/sbin/docker-init` and makes it pid 1, as `docker run --init` does.

Rejected here, before anything reaches runc:
  * NUL, CR or LF in hostname, user, environment names and HOME's value (RELIABILITY I-03;
    CVE-2022-4318: a newline in HOME became an extra /etc/passwd line). Other environment
    values may hold CR and LF, as Docker's may; none may hold NUL.
  * a working directory under /proc/<pid>/fd (CVE-2024-21626: runc leaked a host
    directory fd that a cwd of /proc/self/fd/N reached).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from engine.core import seccomp
from engine.core.errors import InvalidArgument
from engine.core.security_opts import parse_security_opts
from events.values import ContainerConfig, ImageConfig

OCI_VERSION = "1.0.2-dev"
INIT_PATH_IN_CONTAINER = "/sbin/docker-init"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

ALL_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip

MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# runc's libcontainer/specconv AllowedDevices, which Docker also grants by default.
DEFAULT_DEVICE_RULES: tuple[dict[str, Any], ...] = (
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},  # null
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},  # random
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},  # full
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},  # tty
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},  # zero
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},  # urandom
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},  # pts
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},  # ptmx
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},  # tun
)

# Docker's default for RLIMIT_NOFILE comes from containerd (1048576); it is clamped to the
# host's hard limit because asking for more makes setrlimit fail inside `runc init`.
DEFAULT_RLIMITS: dict[str, tuple[int, int]] = {"RLIMIT_NOFILE": (1048576, 1048576)}

INT64_MAX = (1 << 63) - 1
_BAD_BYTES = re.compile(r"[\x00\r\n]")
_PROC_FD = re.compile(r"^/proc/[^/]+(/task/[^/]+)?/fd(/|$)")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,62})?$")
PASSWD_MAX_BYTES = 1 << 20  # RELIABILITY I-13: a 10^6-line /etc/group must not stall us


def _check_line_safe(what: str, value: str) -> None:
    if _BAD_BYTES.search(value):
        raise InvalidArgument(
            f"{what} contains a NUL, CR or LF character",
            "remove control characters; they could inject lines into generated files",
        )


DEFAULT_SHM_SIZE = 64 * 1024 * 1024  # Docker's --shm-size default


def _default_mounts(*, read_only_sys: bool = True, shm_size: int = 0,
                    ipc_mode: str = "") -> list[dict[str, Any]]:
    sys_opts = ["nosuid", "noexec", "nodev", "ro" if read_only_sys else "rw"]
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
    ]  # fmt: skip
    # moby daemon/container_operations_unix.go setupIpcDirs: `--ipc none` has no /dev/shm,
    # `--ipc host` sees the host's.
    if ipc_mode == "host":
        mounts.append({"destination": "/dev/shm", "type": "bind", "source": "/dev/shm",
                       "options": ["rbind", "nosuid", "noexec", "nodev"]})
    elif ipc_mode != "none":
        mounts.append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                       "options": ["nosuid", "noexec", "nodev", "mode=1777",
                                   f"size={shm_size or DEFAULT_SHM_SIZE}"]})
    return mounts


def normalize_capability(name: str) -> str:
    cap = name.strip().upper()
    if cap == "ALL":
        return cap
    if not cap.startswith("CAP_"):
        cap = "CAP_" + cap
    if cap not in ALL_CAPABILITIES:
        raise InvalidArgument(f"unknown capability: {name!r}", "see capabilities(7) for names")
    return cap


def capabilities_for(
    cap_add: Iterable[str], cap_drop: Iterable[str], *, privileged: bool
) -> list[str]:
    """The bounding/effective/permitted set after --cap-add/--cap-drop (Docker's order:
    drop ALL first, then add, then drop the rest)."""
    if privileged:
        return list(ALL_CAPABILITIES)
    adds = [normalize_capability(c) for c in cap_add]
    drops = [normalize_capability(c) for c in cap_drop]
    caps = [] if "ALL" in drops else list(DEFAULT_CAPABILITIES)
    if "ALL" in adds:
        caps = list(ALL_CAPABILITIES)
    else:
        caps += [c for c in adds if c not in caps]
    return [c for c in caps if c not in drops or c in adds]


def parse_user_db(data: bytes, fields: int) -> list[list[str]]:
    """Rows of a colon-separated user/group db; comments and short lines skipped."""
    rows: list[list[str]] = []
    for raw in data[:PASSWD_MAX_BYTES].decode("utf-8", "replace").splitlines():
        if not raw or raw.startswith("#"):
            continue
        parts = raw.split(":")
        if len(parts) >= fields:
            rows.append(parts)
    return rows


def resolve_user(user: str, passwd: bytes | None, group: bytes | None) -> dict[str, Any]:
    """Resolve Docker's `--user` forms (`name`, `uid`, `name:group`, `uid:gid`, …) to the
    OCI `process.user` object, using the *contents* of the rootfs's passwd/group files.

    As in Docker, a numeric uid need not exist in /etc/passwd (its gid is then 0), a name
    must; supplementary groups are the groups that list the user as a member.
    """
    _check_line_safe("user", user)
    name_part, _, group_part = user.partition(":")
    users = parse_user_db(passwd or b"", 7)
    groups = parse_user_db(group or b"", 4)
    uid, gid, username = 0, 0, "root"
    if name_part:
        if name_part.isdigit():
            uid = int(name_part)
            match = next((u for u in users if u[2] == name_part), None)
            username = match[0] if match else ""
            gid = int(match[3]) if match and match[3].isdigit() else 0
        else:
            match = next((u for u in users if u[0] == name_part), None)
            if match is None or not match[2].isdigit():
                raise InvalidArgument(
                    f"unable to find user {name_part}: no matching entries in passwd file",
                    "use a numeric uid or add the user to the image",
                )
            uid, username = int(match[2]), match[0]
            gid = int(match[3]) if match[3].isdigit() else 0
    elif users:
        match = next((u for u in users if u[2] == "0"), None)
        username = match[0] if match else "root"
    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            g = next((g for g in groups if g[0] == group_part), None)
            if g is None or not g[2].isdigit():
                raise InvalidArgument(
                    f"unable to find group {group_part}: no matching entries in group file",
                    "use a numeric gid or add the group to the image",
                )
            gid = int(g[2])
    if uid > 0xFFFFFFFE or gid > 0xFFFFFFFE:
        raise InvalidArgument(f"uid/gid out of range in user {user!r}", "")
    # The process keeps its primary group among its supplementary ones, as under Docker
    # (`id` prints `groups=GID,…`): files shared through it stay reachable after a process
    # changes its gid. The image's /etc/group adds the user's memberships (implicit group).
    extra = [gid]
    if username and not group_part:
        for g in groups:
            members = g[3].split(",") if g[3] else []
            if username in members and g[2].isdigit():
                extra.append(int(g[2]))
    return {"uid": uid, "gid": gid, "additionalGids": sorted(set(extra))}


def group_ids(groups: Sequence[str], group: bytes | None) -> list[int]:
    """`--group-add`: numbers as given, names looked up in the container's /etc/group."""
    rows = parse_user_db(group or b"", 4)
    out: list[int] = []
    for name in groups:
        if name.isdigit():
            out.append(int(name))
            continue
        row = next((g for g in rows if g[0] == name), None)
        if row is None or not row[2].isdigit():
            raise InvalidArgument(
                f"Unable to find group {name}: no matching entries in group file",
                "use a numeric gid or a group that the image's /etc/group names")
        out.append(int(row[2]))
    return out


def merge_env(*layers: Sequence[str]) -> list[str]:
    """Later layers override earlier ones by key; order of first appearance is kept.

    A bare `KEY` (`docker run --env KEY` with KEY unset in the client's environment) is kept in
    the container's config, as Docker keeps it, but sets nothing: the process gets no KEY,
    not even the image's."""
    merged: dict[str, str] = {}
    for layer in layers:
        for entry in layer:
            key, sep, value = entry.partition("=")
            _check_line_safe("environment variable", key)
            if key == "HOME" or "\x00" in value:
                # Other values may span lines, as Docker's do (a PEM key given with -e).
                _check_line_safe("environment variable", value)
            if not key:
                raise InvalidArgument(
                    f"invalid environment entry {entry!r}", "use KEY=VALUE"
                )
            if not sep:
                merged.pop(key, None)
                continue
            merged[key] = entry
    return list(merged.values())


def check_working_dir(path: str) -> str:
    _check_line_safe("working directory", path)
    if not path.startswith("/"):
        raise InvalidArgument(
            f"the working directory '{path}' is invalid, it needs to be an absolute path", ""
        )
    norm = posixpath.normpath(path)
    norm = "/" + norm.lstrip("/")
    if _PROC_FD.match(norm):
        raise InvalidArgument(
            f"working directory {path!r} is under /proc/*/fd",
            "refused: such a cwd can reach a host directory (CVE-2024-21626)",
        )
    return norm


def check_hostname(hostname: str) -> str:
    _check_line_safe("hostname", hostname)
    if not _HOSTNAME.match(hostname):
        raise InvalidArgument(f"invalid hostname {hostname!r}", "use letters, digits, '-', '.'")
    return hostname


def rlimits_for(
    requested: Mapping[str, tuple[int, int]], host_rlimits: Mapping[str, tuple[int, int]]
) -> list[dict[str, Any]]:
    """Rlimits clamped to the host's hard limits: runc cannot raise a hard limit past what
    the daemon itself holds (here `ulimit -Hn` is 20000), and would fail the start."""
    wanted = dict(DEFAULT_RLIMITS)
    wanted.update(requested)
    out = []
    for name, (soft, hard) in sorted(wanted.items()):
        host = host_rlimits.get(name)
        if host is not None and host[1] >= 0:
            hard = min(hard, host[1])
            soft = min(soft, hard)
        out.append({"type": name, "soft": soft, "hard": hard})
    return out


def _resources(config: ContainerConfig, *, privileged: bool) -> dict[str, Any]:
    res: dict[str, Any] = {
        "devices": [{"allow": True, "access": "rwm"}]
        if privileged
        else [dict(d) for d in DEFAULT_DEVICE_RULES]
    }
    if config.memory:
        if config.memory < 6 * 1024 * 1024:
            raise InvalidArgument(
                "minimum memory limit allowed is 6MB", "raise --memory to at least 6m"
            )
        # Docker: with --memory and no --memory-swap, swap is allowed up to the same amount.
        # runc reads an int64: past 2^62 the double would not fit (a 500 from runc create).
        res["memory"] = {"limit": config.memory, "swap": min(2 * config.memory, INT64_MAX)}
    if config.nano_cpus:
        period = 100_000
        res["cpu"] = {"period": period, "quota": config.nano_cpus * period // 1_000_000_000}
    if config.pids_limit:
        res["pids"] = {"limit": config.pids_limit}
    _more_resources(config, res)
    return res


def _more_resources(config: ContainerConfig, res: dict[str, Any]) -> None:
    """Issue 13's limits: --memory-swap, --memory-reservation, --memory-swappiness,
    --oom-kill-disable, --cpu-shares and --cpuset-* (OCI linux.resources)."""
    memory = res.setdefault("memory", {})
    if config.memory_swap and config.memory:
        memory["swap"] = config.memory_swap  # Docker's total of memory + swap; -1: no limit
    if config.memory_reservation:
        memory["reservation"] = config.memory_reservation
    if config.memory_swappiness >= 0:
        memory["swappiness"] = config.memory_swappiness
    if config.oom_kill_disable:
        memory["disableOOMKiller"] = True
    if not memory:
        del res["memory"]
    cpu = res.setdefault("cpu", {})
    if config.cpu_shares:
        cpu["shares"] = config.cpu_shares
    if config.cpuset_cpus:
        cpu["cpus"] = config.cpuset_cpus
    if config.cpuset_mems:
        cpu["mems"] = config.cpuset_mems
    if not cpu:
        del res["cpu"]


def device_rule(rule: str) -> dict[str, Any]:
    """`--device-cgroup-rule 'c 1:3 rwm'` (validated by the API) as an OCI allow rule."""
    kind, numbers, access = rule.split(" ")
    major, minor = numbers.split(":")
    out: dict[str, Any] = {"allow": True, "type": kind, "access": access}
    if major != "*":
        out["major"] = int(major)
    if minor != "*":
        out["minor"] = int(minor)
    return out


def _namespaces(config: ContainerConfig, netns_path: str | None) -> list[dict[str, Any]]:
    """Each `host` mode drops its namespace from the spec: the container shares the host's
    (Docker's --pid/--ipc/--uts host; --cgroupns private adds one)."""
    namespaces: list[dict[str, Any]] = [{"type": "mount"}]
    if config.pid_mode.startswith("/proc/"):  # `--pid container:X`, resolved at start
        namespaces.insert(0, {"type": "pid", "path": config.pid_mode})
    elif config.pid_mode != "host":
        namespaces.insert(0, {"type": "pid"})
    if config.ipc_mode != "host":
        namespaces.insert(len(namespaces) - 1, {"type": "ipc"})
    if config.network_mode != "host":
        if config.uts_mode != "host":
            namespaces.append({"type": "uts"})
        if netns_path:
            namespaces.append({"type": "network", "path": netns_path})
        else:
            namespaces.append({"type": "network"})  # a new, empty one: `--network none`
    if config.cgroupns_mode == "private":
        namespaces.append({"type": "cgroup"})
    return namespaces


def update_resources(config: ContainerConfig) -> dict[str, Any]:
    """The limits `runc update` sets for `docker update`: the same ones as at create, with
    "no limit" spelled out (a limit once set must be lifted explicitly)."""
    res = _resources(config, privileged=False)
    res.pop("devices")
    res.setdefault("pids", {"limit": -1})  # cgroup v1: "max"
    cpu = res.setdefault("cpu", {})
    cpu.setdefault("period", 100_000)
    cpu.setdefault("quota", -1)
    return res


def _tmpfs_mounts(config: ContainerConfig) -> list[dict[str, Any]]:
    out = []
    for m in config.mounts:
        if m.type != "tmpfs":
            continue  # bind and volume mounts arrive resolved, through extra_mounts
        opts = ["nosuid", "nodev", "noexec", *m.options]
        if m.tmpfs_size:
            opts.append(f"size={m.tmpfs_size}")
        if m.read_only:
            opts.append("ro")
        out.append({"destination": m.target, "type": "tmpfs", "source": "tmpfs", "options": opts})
    return out


def build_spec(
    config: ContainerConfig,
    image: ImageConfig | None,
    *,
    env: Sequence[str],
    rootfs: str,
    hostname: str,
    netns_path: str | None,
    cgroups_path: str,
    host_rlimits: Mapping[str, tuple[int, int]],
    extra_mounts: Sequence[Mapping[str, Any]] = (),
    passwd: bytes | None = None,
    group: bytes | None = None,
    ulimits: Mapping[str, tuple[int, int]] | None = None,
    devices: Sequence[Mapping[str, Any]] = (),
    init_host_path: str = "/usr/bin/docker-init",
    goarch: str = "amd64",
    kernel: tuple[int, int] = (5, 10),
    seccomp_native_only: bool = False,
) -> dict[str, Any]:
    """The OCI runtime spec for `config` (merged over `image`), as a JSON-ready dict.

    `env` holds the container's own `KEY=VALUE` entries (secret values already resolved
    by the caller); image env comes from `image`. `passwd`/`group` are the contents of
    the rootfs files (read by the driver, in-root, size-capped) for name resolution.
    """
    img = image or ImageConfig()
    entrypoint = list(config.entrypoint or img.entrypoint)
    cmd = list(config.cmd) if (config.cmd or config.entrypoint) else list(img.cmd)
    args = entrypoint + cmd
    if not args:
        raise InvalidArgument("no command specified", "give a command or use an image with CMD")
    for a in args:
        if "\x00" in a:
            raise InvalidArgument("command argument contains a NUL byte", "")
    if config.init:
        args = [INIT_PATH_IN_CONTAINER, "--", *args]

    hostname = check_hostname(hostname)
    defaults = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"]
    if config.tty:
        defaults.append("TERM=xterm")
    full_env = merge_env(defaults, img.env, env)
    cwd = check_working_dir(config.working_dir or img.working_dir or "/")
    user = resolve_user(config.user or img.user, passwd, group)
    if config.group_add:
        gids = set(user.get("additionalGids", ())) | set(group_ids(config.group_add, group))
        user["additionalGids"] = sorted(gids)
    # `--ulimit` is given as asked, never clamped: past the host's hard limit runc's
    # refusal reaches the user, rather than a silently lower limit (issue 13).
    rlimits = [r for r in rlimits_for(ulimits or {}, host_rlimits)
               if r["type"] not in {f"RLIMIT_{u.name.upper()}" for u in config.ulimits}]
    rlimits += [{"type": f"RLIMIT_{u.name.upper()}", "soft": u.soft, "hard": u.hard}
                for u in config.ulimits]

    privileged = config.privileged
    caps = capabilities_for(config.cap_add, config.cap_drop, privileged=privileged)
    process: dict[str, Any] = {
        "terminal": config.tty,
        "user": user,
        "args": args,
        "env": full_env,
        "cwd": cwd,
        "capabilities": {
            "bounding": caps, "effective": caps, "permitted": caps,
            "inheritable": [], "ambient": [],  # empty: CVE-2022-27649
        },
        "rlimits": sorted(rlimits, key=lambda r: str(r["type"])),
        "noNewPrivileges": config.no_new_privileges,
    }  # fmt: skip
    if config.oom_score_adj:
        process["oomScoreAdj"] = config.oom_score_adj

    namespaces = _namespaces(config, netns_path)
    mounts = _default_mounts(read_only_sys=not privileged, shm_size=config.shm_size,
                             ipc_mode=config.ipc_mode)
    if config.init:
        mounts.append(
            {
                "destination": INIT_PATH_IN_CONTAINER,
                "type": "bind",
                "source": init_host_path,
                "options": ["rbind", "ro", "nosuid", "nodev"],
            }
        )
    mounts += _tmpfs_mounts(config)
    mounts += [dict(m) for m in extra_mounts]

    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "cgroupsPath": cgroups_path,
        "resources": _resources(config, privileged=privileged),
    }
    if devices:
        linux["devices"] = [{k: v for k, v in d.items() if k != "access"} for d in devices]
        if not privileged:
            linux["resources"]["devices"] += [
                {"allow": True, "type": d["type"], "major": d["major"], "minor": d["minor"],
                 "access": d.get("access", "rwm")} for d in devices]
    if config.device_cgroup_rules and not privileged:
        linux["resources"]["devices"] += [device_rule(r) for r in config.device_cgroup_rules]
    if config.sysctls:
        linux["sysctl"] = dict(config.sysctls)
    security = parse_security_opts(config.security_opt)
    if not privileged and not security.unconfined_paths:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    if not privileged and security.seccomp != "unconfined":
        linux["seccomp"] = seccomp.translate(
            security.profile or seccomp.load_default_profile(),
            capabilities=caps,
            goarch=goarch,
            kernel=kernel,
            native_only=seccomp_native_only and security.profile is None,
        )

    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": rootfs, "readonly": config.read_only},
        "mounts": mounts,
        "linux": linux,
    }
    if config.network_mode != "host" and config.uts_mode != "host":
        spec["hostname"] = hostname
        if config.domainname:
            _check_line_safe("domainname", config.domainname)
            spec["domainname"] = config.domainname
    return spec


DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def exec_process(config: ContainerConfig, image_env: list[str], env: list[str], *,
                 cmd: Sequence[str], user: str = "", working_dir: str = "",
                 tty: bool = False, passwd: bytes | None = None,
                 group: bytes | None = None, privileged: bool = False) -> dict[str, Any]:
    """The OCI process for an exec or a health probe: the container's own settings unless
    the caller overrides them (the runtime fills in the container's rlimits and
    capabilities). A user name (`exec -u nobody`) is resolved in the contents of the
    container's /etc/passwd and /etc/group (`passwd`, `group`), as `run -u` is.
    `privileged` (`exec --privileged`) gives this process every capability, as Docker does."""
    if not any(e.startswith("PATH=") for e in image_env + env):
        image_env = [DEFAULT_PATH, *image_env]
    user = user or config.user or "0"
    uid, _, gid = user.partition(":")
    if uid.isdigit() and (not gid or gid.isdigit()):
        oci_user: dict[str, Any] = {"uid": int(uid), "gid": int(gid or 0)}
    else:
        oci_user = resolve_user(user, passwd, group)
    process: dict[str, Any] = {
        "args": list(cmd),
        "env": image_env + env + (["TERM=xterm"] if tty else []),
        "cwd": working_dir or config.working_dir or "/",
        "user": oci_user,
        "terminal": tty,
        "noNewPrivileges": config.no_new_privileges,
    }
    if privileged:
        caps = capabilities_for((), (), privileged=True)
        process["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps,
                                   "inheritable": [], "ambient": []}
    return process
