"""The engine's state as the log says it is: views of containers, images, volumes, networks,
exec sessions and pending operations.

I/O: none. Views are frozen msgspec Structs (so a materialised row is just their JSON);
`EngineState` holds them in persistent maps (`immutables.Map`), so folding an event makes a
new state in O(log n) while every older state stays valid — the store relies on that to
stage a batch and drop it if its savepoint rolls back, and time travel relies on it to
keep states side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import immutables
import msgspec

from events.values import ContainerConfig, ImageConfig, PortBinding


class Endpoint(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    network_id: str
    ip: str = ""
    mac: str = ""
    aliases: tuple[str, ...] = ()
    endpoint_id: str = ""
    ip6: str = ""


class PublishedPort(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    binding: PortBinding
    container_ip: str = ""


class VolumeMount(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    name: str
    destination: str
    read_only: bool = False


class ContainerView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    name: str
    config: ContainerConfig
    # Docker's statuses plus "creating" (name reserved, rootfs not yet prepared).
    status: str = "creating"
    created_at: int = 0
    created_by: int = -1  # uid of the actor who asked for it
    rootfs: str = ""
    pid: int = 0
    monitor_pid: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""
    started_at: int = 0
    finished_at: int = 0
    restart_count: int = 0
    restart_delay_ms: int = 0  # the last back-off delay, for Docker's doubling
    has_been_started: bool = False
    manually_stopped: bool = False  # `unless-stopped` and `always` after a user stop
    health: str = ""  # "", or Docker's "starting", "healthy", "unhealthy"
    health_failing_streak: int = 0
    networks: dict[str, Endpoint] = {}
    # What `network connect` recorded while it was not running: networks it joins at every
    # start besides the one it was created on (id -> aliases, and in `ip` the static address
    # asked for); `left_primary`: `network disconnect` took it off that one before a start.
    joins: dict[str, Endpoint] = {}
    left_primary: bool = False
    ports: tuple[PublishedPort, ...] = ()
    mounts: tuple[VolumeMount, ...] = ()
    execs: tuple[str, ...] = ()
    stream_version: int = 0
    last_seq: int = 0


class ImageView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    config: ImageConfig
    layers: tuple[str, ...] = ()  # diff_ids, bottom first
    layer_digests: tuple[str, ...] = ()  # blob digests in the content store, bottom first
    repo_tags: tuple[str, ...] = ()
    repo_digests: tuple[str, ...] = ()
    size: int = 0
    created_at: int = 0  # when it entered this engine
    source: str = ""  # "loaded", "pulled", "imported"
    last_seq: int = 0
    # Docker's Metadata.LastTagTime (ns): when a tag was last given to it by tag, build,
    # commit or import; 0 when it only came by pull or load, as moby's TagImage alone stamps it
    last_tagged_at: int = 0


class VolumeView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    name: str
    driver: str = "local"
    labels: dict[str, str] = {}
    options: dict[str, str] = {}
    anonymous: bool = False
    created_at: int = 0
    users: tuple[str, ...] = ()  # container ids that mount it
    last_seq: int = 0


class NetworkView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    name: str
    driver: str = "bridge"
    subnet: str = ""
    gateway: str = ""
    ip_range: str = ""
    internal: bool = False
    labels: dict[str, str] = {}
    options: dict[str, str] = {}
    bridge: str = ""
    enable_ipv6: bool = False
    subnet6: str = ""
    gateway6: str = ""
    ip_range6: str = ""
    created_at: int = 0
    allocations: dict[str, str] = {}  # address -> container id
    endpoints: dict[str, Endpoint] = {}  # container id -> endpoint
    stream_version: int = 0
    last_seq: int = 0
    aux_addresses: dict[str, str] = {}  # IPAM AuxiliaryAddresses of the v4 pool: never handed out
    aux_addresses6: dict[str, str] = {}  # … of the v6 pool
    ipam_options: dict[str, str] | None = None
    attachable: bool = False
    parent_created: bool = False  # macvlan/ipvlan: we made the parent link in `bridge`


class ExecView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    container_id: str
    cmd: tuple[str, ...]
    tty: bool = False
    user: str = ""
    working_dir: str = ""
    running: bool = False
    pid: int = 0
    exit_code: int | None = None
    privileged: bool = False


class OperationView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An operation that has been requested and has no outcome yet (or needs cleanup)."""

    op_id: str
    kind: str
    target: str
    args: dict[str, str] = {}
    steps: tuple[str, ...] = ()
    requested_at: int = 0
    requested_seq: int = 0
    actor_uid: int = -1
    needs_cleanup: bool = False
    error: str = ""


def _empty() -> immutables.Map[Any, Any]:
    return immutables.Map()


@dataclass(frozen=True, slots=True)
class EngineState:
    """Everything the engine knows, as of `seq`."""

    seq: int = 0
    containers: immutables.Map[str, ContainerView] = field(default_factory=_empty)  # by id
    names: immutables.Map[str, str] = field(default_factory=_empty)  # name -> container id
    name_versions: immutables.Map[str, int] = field(default_factory=_empty)  # stream versions
    images: immutables.Map[str, ImageView] = field(default_factory=_empty)  # id -> ImageView
    tags: immutables.Map[str, str] = field(default_factory=_empty)  # "repo:tag" -> image id
    layers: immutables.Map[str, int] = field(default_factory=_empty)  # diff_id -> size on disk
    volumes: immutables.Map[str, VolumeView] = field(default_factory=_empty)  # name -> VolumeView
    networks: immutables.Map[str, NetworkView] = field(default_factory=_empty)  # id -> NetworkView
    network_names: immutables.Map[str, str] = field(default_factory=_empty)  # name -> network id
    execs: immutables.Map[str, ExecView] = field(default_factory=_empty)  # id -> ExecView
    operations: immutables.Map[str, OperationView] = field(default_factory=_empty)  # by op_id
