"""Docker Engine API v1.43 request and response bodies, as msgspec Structs.

I/O: none. Field names are Docker's (PascalCase, and the odd lower-case ones such as `timeNano`)
exactly as `/work/shared/spec/docker-engine-api-v1.43.yaml` spells them, so these encode and
decode the wire format directly.

Request bodies (`ContainerCreateBody`, `ExecConfig`, …) accept what real clients send: unknown
fields are ignored and every field may be `null` — the docker CLI sends `"Cmd": null`,
`"PidsLimit": null`, `"Binds": null` and so on — so every request field is `X | None = None`
and `engine/api/docker/translate.py` gives `None` its Docker meaning. Response bodies have Docker's
defaults (`""`, `0`, `false`, `[]`) so a handler fills only what it knows.
"""

from __future__ import annotations

from typing import Any

import msgspec

# ---------------------------------------------------------------------------------------------
# Requests


class _Body(msgspec.Struct, kw_only=True):
    """Base for request bodies: unknown fields ignored (msgspec's default), nulls accepted."""


class RestartPolicyBody(_Body):
    Name: str | None = None
    MaximumRetryCount: int | None = None


class LogConfig(_Body):
    Type: str | None = None
    Config: dict[str, str] | None = None


class BindOptions(_Body):
    Propagation: str | None = None
    NonRecursive: bool | None = None
    CreateMountpoint: bool | None = None  # API 1.44: make a missing host directory


class DriverConfig(_Body):
    Name: str | None = None
    Options: dict[str, str] | None = None


class VolumeOptions(_Body):
    NoCopy: bool | None = None
    Labels: dict[str, str] | None = None
    DriverConfig: DriverConfig | None = None


class TmpfsOptions(_Body):
    SizeBytes: int | None = None
    Mode: int | None = None


class MountBody(_Body):
    """`HostConfig.Mounts[]` (`--mount`)."""

    Target: str | None = None
    Source: str | None = None
    Type: str | None = None  # "bind", "volume", "tmpfs", "npipe", "cluster"
    ReadOnly: bool | None = None
    Consistency: str | None = None
    BindOptions: BindOptions | None = None
    VolumeOptions: VolumeOptions | None = None
    TmpfsOptions: TmpfsOptions | None = None


class PortBindingBody(_Body):
    HostIp: str | None = None
    HostPort: str | None = None


class HostConfig(_Body):
    """The subset of `HostConfig` that `docker run` sends and we act on (plus a few we echo)."""

    Binds: list[str] | None = None
    Mounts: list[MountBody] | None = None
    Tmpfs: dict[str, str] | None = None
    PortBindings: dict[str, list[PortBindingBody] | None] | None = None
    PublishAllPorts: bool | None = None
    NetworkMode: str | None = None
    RestartPolicy: RestartPolicyBody | None = None
    AutoRemove: bool | None = None
    Memory: int | None = None
    MemorySwap: int | None = None
    NanoCpus: int | None = None
    CpuQuota: int | None = None
    CpuPeriod: int | None = None
    CpuShares: int | None = None
    PidsLimit: int | None = None
    ReadonlyRootfs: bool | None = None
    Init: bool | None = None
    Privileged: bool | None = None
    CapAdd: list[str] | None = None
    CapDrop: list[str] | None = None
    SecurityOpt: list[str] | None = None
    LogConfig: LogConfig | None = None
    Dns: list[str] | None = None
    DnsOptions: list[str] | None = None
    DnsSearch: list[str] | None = None
    ExtraHosts: list[str] | None = None
    ShmSize: int | None = None
    Runtime: str | None = None
    # Issue 13: the rest of API v1.43's HostConfig, each applied or refused in translate.py.
    MemoryReservation: int | None = None
    MemorySwappiness: int | None = None
    OomKillDisable: bool | None = None
    OomScoreAdj: int | None = None
    CpusetCpus: str | None = None
    CpusetMems: str | None = None
    Ulimits: list[UlimitBody] | None = None
    Devices: list[DeviceBody] | None = None
    DeviceCgroupRules: list[str] | None = None
    Sysctls: dict[str, str] | None = None
    CgroupParent: str | None = None
    GroupAdd: list[str] | None = None
    PidMode: str | None = None
    IpcMode: str | None = None
    UTSMode: str | None = None
    CgroupnsMode: str | None = None
    Isolation: str | None = None
    VolumesFrom: list[str] | None = None
    Links: list[str] | None = None
    # Refused when set (translate.REFUSED): no cgroup or runtime support here yet.
    BlkioWeight: int | None = None
    BlkioWeightDevice: list[object] | None = None
    BlkioDeviceReadBps: list[object] | None = None
    BlkioDeviceWriteBps: list[object] | None = None
    BlkioDeviceReadIOps: list[object] | None = None
    BlkioDeviceWriteIOps: list[object] | None = None
    CpuRealtimePeriod: int | None = None
    CpuRealtimeRuntime: int | None = None
    CpuCount: int | None = None
    CpuPercent: int | None = None
    IOMaximumIOps: int | None = None
    IOMaximumBandwidth: int | None = None
    KernelMemoryTCP: int | None = None
    DeviceRequests: list[object] | None = None
    UsernsMode: str | None = None
    VolumeDriver: str | None = None
    StorageOpt: dict[str, str] | None = None
    Cgroup: str | None = None
    MaskedPaths: list[str] | None = None
    ReadonlyPaths: list[str] | None = None
    Annotations: dict[str, str] | None = None


class UlimitBody(_Body):
    Name: str | None = None
    Soft: int | None = None
    Hard: int | None = None


class DeviceBody(_Body):
    PathOnHost: str | None = None
    PathInContainer: str | None = None
    CgroupPermissions: str | None = None


class EndpointIPAMConfig(_Body):
    IPv4Address: str | None = None
    IPv6Address: str | None = None
    LinkLocalIPs: list[str] | None = None


class EndpointSettings(_Body):
    IPAMConfig: EndpointIPAMConfig | None = None
    Links: list[str] | None = None
    Aliases: list[str] | None = None
    NetworkID: str | None = None
    EndpointID: str | None = None
    Gateway: str | None = None
    IPAddress: str | None = None
    IPPrefixLen: int | None = None
    MacAddress: str | None = None
    DriverOpts: dict[str, str] | None = None


class NetworkingConfig(_Body):
    EndpointsConfig: dict[str, EndpointSettings | None] | None = None


class HealthConfig(_Body):
    Test: list[str] | None = None
    Interval: int | None = None
    Timeout: int | None = None
    Retries: int | None = None
    StartPeriod: int | None = None


class DockerContainerConfig(_Body):
    """Docker's `ContainerConfig` (the top level of a create body, and `Config` in inspect)."""

    Hostname: str | None = None
    Domainname: str | None = None
    User: str | None = None
    AttachStdin: bool | None = None
    AttachStdout: bool | None = None
    AttachStderr: bool | None = None
    ExposedPorts: dict[str, dict[str, object] | None] | None = None
    Tty: bool | None = None
    OpenStdin: bool | None = None
    StdinOnce: bool | None = None
    Env: list[str] | None = None
    Cmd: list[str] | None = None
    Healthcheck: HealthConfig | None = None
    Image: str | None = None
    Volumes: dict[str, dict[str, object] | None] | None = None
    WorkingDir: str | None = None
    Entrypoint: list[str] | None = None
    Labels: dict[str, str] | None = None
    StopSignal: str | None = None
    StopTimeout: int | None = None
    MacAddress: str | None = None  # deprecated in v1.44 for EndpointSettings.MacAddress
    NetworkDisabled: bool | None = None


class ContainerCreateBody(DockerContainerConfig):
    """`POST /containers/create`: the container config plus host and networking config."""

    HostConfig: HostConfig | None = None
    NetworkingConfig: NetworkingConfig | None = None


class ExecConfig(_Body):
    """`POST /containers/{id}/exec`."""

    AttachStdin: bool | None = None
    AttachStdout: bool | None = None
    AttachStderr: bool | None = None
    ConsoleSize: list[int] | None = None
    DetachKeys: str | None = None
    Tty: bool | None = None
    Env: list[str] | None = None
    Cmd: list[str] | None = None
    Privileged: bool | None = None
    User: str | None = None
    WorkingDir: str | None = None


class ExecStartConfig(_Body):
    """`POST /exec/{id}/start`."""

    Detach: bool | None = None
    Tty: bool | None = None
    ConsoleSize: list[int] | None = None


# ---------------------------------------------------------------------------------------------
# Responses


class _Out(msgspec.Struct, kw_only=True):
    """Base for response bodies."""


class ErrorResponse(_Out):
    message: str


class IdResponse(_Out):
    Id: str


class ContainerCreateResponse(_Out):
    Id: str
    Warnings: list[str] = []


class WaitExitError(_Out):
    Message: str = ""


class ContainerWaitResponse(_Out):
    StatusCode: int
    Error: WaitExitError | None = None


class HealthcheckResult(_Out):
    Start: str = ""
    End: str = ""
    ExitCode: int = 0
    Output: str = ""


class Health(_Out):
    Status: str = "none"  # "none", "starting", "healthy", "unhealthy"
    FailingStreak: int = 0
    Log: list[HealthcheckResult] = []


class ContainerState(_Out):
    Status: str = "created"  # created running paused restarting removing exited dead
    Running: bool = False
    Paused: bool = False
    Restarting: bool = False
    OOMKilled: bool = False
    Dead: bool = False
    Pid: int = 0
    ExitCode: int = 0
    Error: str = ""
    StartedAt: str = "0001-01-01T00:00:00Z"  # Go's zero time, as Docker prints it
    FinishedAt: str = "0001-01-01T00:00:00Z"
    Health: Health | None = None


class GraphDriverData(_Out):
    Name: str = "overlay2"
    Data: dict[str, str] = {}


class MountPoint(_Out):
    Type: str
    Name: str = ""
    Source: str = ""
    Destination: str = ""
    Driver: str = ""
    Mode: str = ""
    RW: bool = True
    Propagation: str = ""


class PortBindingOut(_Out):
    HostIp: str = ""
    HostPort: str = ""


class NetworkEndpoint(_Out):
    IPAMConfig: dict[str, object] | None = None
    Links: list[str] | None = None
    Aliases: list[str] | None = None
    NetworkID: str = ""
    EndpointID: str = ""
    Gateway: str = ""
    IPAddress: str = ""
    IPPrefixLen: int = 0
    IPv6Gateway: str = ""
    GlobalIPv6Address: str = ""
    GlobalIPv6PrefixLen: int = 0
    MacAddress: str = ""
    DriverOpts: dict[str, str] | None = None


class NetworkSettings(_Out):
    Bridge: str = ""
    SandboxID: str = ""
    HairpinMode: bool = False
    SandboxKey: str = ""
    Ports: dict[str, list[PortBindingOut] | None] = {}
    EndpointID: str = ""
    Gateway: str = ""
    IPAddress: str = ""
    IPPrefixLen: int = 0
    MacAddress: str = ""
    # the default bridge's IPv6 endpoint, repeated here as Docker does; the rest is legacy
    # Docker still sends (templates read them: a missing key prints "<no value>")
    GlobalIPv6Address: str = ""
    GlobalIPv6PrefixLen: int = 0
    IPv6Gateway: str = ""
    LinkLocalIPv6Address: str = ""
    LinkLocalIPv6PrefixLen: int = 0
    SecondaryIPAddresses: list[str] | None = None
    SecondaryIPv6Addresses: list[str] | None = None
    Networks: dict[str, NetworkEndpoint] = {}


class ContainerInspect(_Out):
    """`GET /containers/{id}/json`."""

    Id: str
    Created: str  # RFC 3339 with nanoseconds
    Path: str = ""
    Args: list[str] = []
    State: ContainerState = msgspec.field(default_factory=ContainerState)
    Image: str = ""  # the image ID
    ResolvConfPath: str = ""
    HostnamePath: str = ""
    HostsPath: str = ""
    LogPath: str = ""
    Name: str = ""  # with Docker's leading "/"
    RestartCount: int = 0
    Driver: str = "overlay2"
    Platform: str = "linux"
    MountLabel: str = ""
    ProcessLabel: str = ""
    AppArmorProfile: str = ""
    ExecIDs: list[str] | None = None
    HostConfig: HostConfig = msgspec.field(default_factory=HostConfig)
    GraphDriver: GraphDriverData = msgspec.field(default_factory=GraphDriverData)
    Mounts: list[MountPoint] = []
    Config: DockerContainerConfig = msgspec.field(default_factory=DockerContainerConfig)
    NetworkSettings: NetworkSettings = msgspec.field(default_factory=NetworkSettings)


class Port(_Out):
    PrivatePort: int
    Type: str = "tcp"
    IP: str | None = None
    PublicPort: int | None = None


class SummaryHostConfig(_Out):
    NetworkMode: str = "default"


class SummaryNetworkSettings(_Out):
    Networks: dict[str, NetworkEndpoint] = {}


class ContainerSummary(_Out):
    """One entry of `GET /containers/json`."""

    Id: str
    Names: list[str] = []  # with Docker's leading "/"
    Image: str = ""
    ImageID: str = ""
    Command: str = ""
    Created: int = 0  # Unix seconds
    Ports: list[Port] = []
    Labels: dict[str, str] = {}
    State: str = "created"
    Status: str = ""  # "Up 2 minutes", "Exited (0) 3 seconds ago"
    HostConfig: SummaryHostConfig = msgspec.field(default_factory=SummaryHostConfig)
    NetworkSettings: SummaryNetworkSettings = msgspec.field(default_factory=SummaryNetworkSettings)
    Mounts: list[MountPoint] = []
    SizeRw: int | None = None
    SizeRootFs: int | None = None


class ImageSummary(_Out):
    """One entry of `GET /images/json`."""

    Id: str
    ParentId: str = ""
    RepoTags: list[str] = []
    RepoDigests: list[str] = []
    Created: int = 0
    Size: int = 0
    SharedSize: int = -1
    VirtualSize: int | None = None
    Labels: dict[str, str] = {}
    Containers: int = -1


class RootFS(_Out):
    Type: str = "layers"
    Layers: list[str] = []


class ImageMetadata(_Out):
    LastTagTime: str | None = None


class ImageInspect(_Out):
    """`GET /images/{name}/json`."""

    Id: str
    RepoTags: list[str] = []
    RepoDigests: list[str] = []
    Parent: str = ""
    Comment: str = ""
    Created: str = ""
    Container: str = ""
    # Docker's container.Config as the image holds it (render.docker_config): plain objects,
    # so its `omitempty` fields stay out and the rest are sent even when empty.
    ContainerConfig: dict[str, Any] = {}
    DockerVersion: str = ""
    Author: str = ""
    Config: dict[str, Any] | None = None
    Architecture: str = "amd64"
    Variant: str | None = None
    Os: str = "linux"
    OsVersion: str | None = None
    Size: int = 0
    VirtualSize: int | None = None
    GraphDriver: GraphDriverData = msgspec.field(default_factory=GraphDriverData)
    RootFS: RootFS = msgspec.field(default_factory=RootFS)
    Metadata: ImageMetadata = msgspec.field(default_factory=ImageMetadata)


class PlatformName(_Out):
    Name: str = "shipslog"


class ComponentVersion(_Out):
    Name: str
    Version: str
    Details: dict[str, str] | None = None


class SystemVersion(_Out):
    """`GET /version`."""

    Platform: PlatformName = msgspec.field(default_factory=PlatformName)
    Components: list[ComponentVersion] = []
    Version: str = ""
    ApiVersion: str = "1.43"
    MinAPIVersion: str = "1.24"
    GitCommit: str = ""
    GoVersion: str = ""  # the CLI prints it; we put the Python version here
    Os: str = "linux"
    Arch: str = "amd64"
    KernelVersion: str = ""
    Experimental: bool = False
    BuildTime: str = ""


class PluginsInfo(_Out):
    Volume: list[str] = msgspec.field(default_factory=lambda: ["local"])
    Network: list[str] = msgspec.field(default_factory=lambda: ["bridge", "host", "none"])
    Authorization: list[str] | None = None
    Log: list[str] = msgspec.field(default_factory=lambda: ["json-file", "local", "none"])


class SwarmInfo(_Out):
    """Always inactive: `docker info` prints "Swarm: inactive" from LocalNodeState."""

    NodeID: str = ""
    NodeAddr: str = ""
    LocalNodeState: str = "inactive"
    ControlAvailable: bool = False
    Error: str = ""
    RemoteManagers: list[dict[str, str]] | None = None


class FirewallBackendInfo(_Out):
    """`FirewallBackend` of `GET /info` (Docker API 1.48's shape): our driver, and in `Info`
    one ["Detected", "…"] pair per firewall manager that would drop our bridges' traffic."""

    Driver: str = ""
    Info: list[list[str]] = []


class SystemInfo(_Out):
    """`GET /info` (the fields `docker info` prints that we can answer)."""

    ID: str = ""
    Containers: int = 0
    ContainersRunning: int = 0
    ContainersPaused: int = 0
    ContainersStopped: int = 0
    Images: int = 0
    Driver: str = "overlay2"
    DriverStatus: list[list[str]] = []
    DockerRootDir: str = ""
    Plugins: PluginsInfo = msgspec.field(default_factory=PluginsInfo)
    MemoryLimit: bool = True
    SwapLimit: bool = False
    CpuCfsPeriod: bool = True
    CpuCfsQuota: bool = True
    PidsLimit: bool = True
    IPv4Forwarding: bool = True
    Debug: bool = False
    NFd: int = 0
    NGoroutines: int = 0  # we report live trio tasks here
    SystemTime: str = ""
    LoggingDriver: str = "json-file"
    CgroupDriver: str = "cgroupfs"
    CgroupVersion: str = ""
    NEventsListener: int = 0
    KernelVersion: str = ""
    OperatingSystem: str = ""
    OSVersion: str = ""
    OSType: str = "linux"
    Architecture: str = ""
    NCPU: int = 0
    MemTotal: int = 0
    IndexServerAddress: str = "https://index.docker.io/v1/"
    Name: str = ""
    Labels: list[str] = []
    ExperimentalBuild: bool = False
    ServerVersion: str = ""
    Runtimes: dict[str, dict[str, str]] = {}
    DefaultRuntime: str = "runc"
    Swarm: SwarmInfo = msgspec.field(default_factory=SwarmInfo)
    LiveRestoreEnabled: bool = True  # containers outlive the daemon (DESIGN.md, monitors)
    Isolation: str = ""
    SecurityOptions: list[str] = []
    Warnings: list[str] = []
    FirewallBackend: FirewallBackendInfo | None = None
    # shipslog's own (issue 19): `shipslogd --replicate-to`'s progress, None when not set
    Replication: dict[str, object] | None = None


class EventActor(_Out):
    ID: str
    Attributes: dict[str, str] = {}


class EventMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One `GET /events` message. `status`/`id`/`from` are the deprecated fields Docker still
    sends for container events; older clients read them."""

    Type: str  # container image volume network daemon ...
    Action: str  # create start die destroy pull tag ...
    Actor: EventActor
    scope: str  # "local" (Docker omits nothing here; no default so omit_defaults keeps it)
    time: int  # Unix seconds
    timeNano: int
    status: str = ""
    id: str = ""
    from_: str = msgspec.field(default="", name="from")


class ProcessConfig(_Out):
    privileged: bool = False
    user: str = ""
    tty: bool = False
    entrypoint: str = ""
    arguments: list[str] = []


class ExecInspect(_Out):
    """`GET /exec/{id}/json`."""

    ID: str
    ContainerID: str
    Running: bool = False
    ExitCode: int | None = None
    Pid: int = 0
    CanRemove: bool = False
    DetachKeys: str = ""
    OpenStdin: bool = False
    OpenStdout: bool = False
    OpenStderr: bool = False
    ProcessConfig: ProcessConfig = msgspec.field(default_factory=ProcessConfig)
