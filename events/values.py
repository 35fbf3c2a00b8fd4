"""Value types that events carry: container and image configuration, mounts, ports.

I/O: none. These are plain frozen msgspec Structs. Anything that could hold a secret
(environment values) is held as `EnvEntry(key, digest)`: the value itself lives in the
engine's secret store, never in the log (DESIGN.md, "Secrets").
"""

from __future__ import annotations

import msgspec


class EnvEntry(msgspec.Struct, frozen=True, omit_defaults=True):
    """An environment variable as the log sees it: its key and a keyed hash of its value."""

    key: str
    digest: str  # hex HMAC-SHA256 of the value under the engine's secret key; "" if unset


class RestartPolicy(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    name: str = "no"  # "no", "always", "on-failure", "unless-stopped"
    maximum_retry_count: int = 0


class MountSpec(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A mount a container asked for: volume, bind or tmpfs."""

    type: str  # "volume", "bind", "tmpfs"
    target: str
    source: str = ""  # volume name, host path; empty for tmpfs or anonymous volume
    read_only: bool = False
    propagation: str = ""
    tmpfs_size: int = 0
    options: tuple[str, ...] = ()
    # `Mounts[].Mode` as Docker reports it, from what the client wrote (`-v a:/b:ro,z` →
    # "ro,z"; a named volume without options → "z"); None in records made before it was kept.
    mode: str | None = None


class Ulimit(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`--ulimit nofile=1024:2048`: an rlimit by Docker's short name."""

    name: str  # "nofile", "nproc", … (Docker's names, without RLIMIT_)
    soft: int = 0
    hard: int = 0


class DeviceMapping(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`--device /dev/x[:/dev/y[:rwm]]`: a host device node made inside the container."""

    path_on_host: str
    path_in_container: str = ""
    permissions: str = "rwm"


class PortBinding(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""
    host_port: int = 0  # 0: pick a free port


class HealthCheck(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Docker's HEALTHCHECK: `test` is `["CMD", arg…]`, `["CMD-SHELL", "cmd"]`, `["NONE"]`
    (switched off) or `()` (inherit the image's); durations in ns, 0 = Docker's default."""

    test: tuple[str, ...] = ()
    interval_ns: int = 0
    timeout_ns: int = 0
    retries: int = 0
    start_period_ns: int = 0

    @property
    def enabled(self) -> bool:
        return bool(self.test) and self.test[0] != "NONE"


class ContainerConfig(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a container is to run, after the image's defaults have been merged in."""

    image: str  # the reference the user gave
    image_id: str  # sha256:<hex> of the image config
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    env: tuple[EnvEntry, ...] = ()
    working_dir: str = ""
    user: str = ""
    hostname: str = ""
    domainname: str = ""
    labels: dict[str, str] = {}
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    restart_policy: RestartPolicy = RestartPolicy()
    auto_remove: bool = False
    memory: int = 0
    nano_cpus: int = 0
    pids_limit: int = 0
    read_only: bool = False
    init: bool = False
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    no_new_privileges: bool = False
    network_mode: str = "none"
    ipv4_address: str = ""  # a static address on the container's network (`run --ip`)
    ipv6_address: str = ""  # the same for IPv6 (`run --ip6`, IPAMConfig.IPv6Address)
    network_aliases: tuple[str, ...] = ()  # extra DNS names on its network (`--network-alias`)
    mounts: tuple[MountSpec, ...] = ()
    ports: tuple[PortBinding, ...] = ()
    publish_all: bool = False
    exposed_ports: tuple[str, ...] = ()
    stop_signal: str = "SIGTERM"
    stop_timeout: int | None = None
    log_driver: str = "json-file"
    log_options: dict[str, str] = {}
    healthcheck: HealthCheck | None = None  # merged with the image's; None: no check
    # Issue 13: the rest of Docker's HostConfig, each applied at start (engine/core/oci_spec.py
    # and engine/daemon/wiring.py). Defaults mean "as before", so older logs load unchanged.
    memory_swap: int = 0  # 0: Docker's default (twice --memory); -1: unlimited
    memory_swappiness: int = -1  # -1: the kernel's
    memory_reservation: int = 0
    oom_kill_disable: bool = False
    oom_score_adj: int = 0
    cpu_shares: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    ulimits: tuple[Ulimit, ...] = ()
    devices: tuple[DeviceMapping, ...] = ()
    device_cgroup_rules: tuple[str, ...] = ()
    shm_size: int = 0  # bytes; 0: Docker's 64 MiB
    extra_hosts: tuple[str, ...] = ()  # "name:ip" as given; "host-gateway" resolved at start
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    sysctls: dict[str, str] = {}
    cgroup_parent: str = ""
    group_add: tuple[str, ...] = ()
    pid_mode: str = ""  # "" (private) or "host"
    ipc_mode: str = ""  # "", "private", "shareable", "none" or "host"
    uts_mode: str = ""  # "" or "host"
    cgroupns_mode: str = ""  # "", "private" or "host"
    mac_address: str = ""  # on eth0, the first network's veth
    volumes_from: tuple[str, ...] = ()  # as given; their mounts are copied into `mounts`
    links: tuple[str, ...] = ()  # legacy `--link`: "<container id>:<alias>"
    # `--security-opt` as given (a seccomp profile inline); engine/core/security_opts.py
    # says what each does. Older records have only `no_new_privileges`.
    security_opt: tuple[str, ...] = ()
    # `HostConfig.Binds` and `HostConfig.Tmpfs` as the client wrote them (inspect shows them
    # so, as Docker does: an explicit `:rw`, a size in the user's units); None in records made
    # before they were kept, whose inspect rebuilds them from `mounts`.
    binds_given: tuple[str, ...] | None = None
    tmpfs_given: dict[str, str] | None = None


class ImageConfig(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The parts of an OCI image config that containers inherit."""

    architecture: str = "amd64"
    os: str = "linux"
    created: str = ""
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    env: tuple[str, ...] = ()  # image env is public data, as in the image config blob
    working_dir: str = ""
    user: str = ""
    labels: dict[str, str] = {}
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    stop_signal: str = ""
    healthcheck: HealthCheck | None = None
