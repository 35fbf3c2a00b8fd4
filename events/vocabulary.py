"""The event vocabulary: every fact shipslog records, as frozen msgspec Structs.

I/O: none. Names are `<Noun><PastParticiple>` (STYLE.md). Each class is tagged with its
own name (`tag=True`), so a union of them round-trips through msgspec. A class's
`schema_version` rises when its payload changes incompatibly; `events/codec.py` holds the
upcasters from older versions. Adding a field with a default does not need a new version.

Streams: container events go to `container-<id>`, image events to `image-<id>` (layer
events to `layer-<digest>`), volumes to `volume-<name>`, networks to `network-<id>`,
operations to `op-<op_id>`, reconciliation to `reconcile`.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from events.values import ContainerConfig, ImageConfig, MountSpec, PortBinding, RestartPolicy


class BaseEvent(msgspec.Struct, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    schema_version: ClassVar[int] = 1


# --- operations ----------------------------------------------------------------------------


class OperationRequested(BaseEvent, frozen=True, kw_only=True):
    """An intent: the engine accepted a command and will carry it out."""

    op_id: str
    kind: str  # "container.start", "image.pull", …
    target: str  # the stream the operation acts on
    args: dict[str, str] = {}


class OperationStepDone(BaseEvent, frozen=True, kw_only=True):
    op_id: str
    step: str
    detail: dict[str, str] = {}


class OperationFailed(BaseEvent, frozen=True, kw_only=True):
    op_id: str
    step: str
    error: str
    needs_cleanup: bool = False


class OperationCompleted(BaseEvent, frozen=True, kw_only=True):
    op_id: str


class OperationCompensated(BaseEvent, frozen=True, kw_only=True):
    """A half-done operation was rolled back (by the supervisor or at recovery)."""

    op_id: str
    step: str
    action: str


# --- containers ----------------------------------------------------------------------------


class ContainerCreateRequested(BaseEvent, frozen=True, kw_only=True):
    """Reserves the name; the container exists (state "created") once ContainerCreated follows."""

    container_id: str
    name: str
    config: ContainerConfig


class NameClaimed(BaseEvent, frozen=True, kw_only=True):
    """Stream `name-<name>`: the name now belongs to this container. Appended with the
    create (or rename) in one transaction, with the name stream's expected version, so two
    creators racing for one name cannot both win."""

    name: str
    container_id: str


class NameReleased(BaseEvent, frozen=True, kw_only=True):
    name: str
    container_id: str


class ContainerCreated(BaseEvent, frozen=True, kw_only=True):
    container_id: str
    rootfs: str = ""  # where the supervisor prepared the container's root filesystem


class ContainerStartRequested(BaseEvent, frozen=True, kw_only=True):
    container_id: str


class ContainerStarted(BaseEvent, frozen=True, kw_only=True):
    container_id: str
    pid: int
    monitor_pid: int = 0


class ContainerStopRequested(BaseEvent, frozen=True, kw_only=True):
    container_id: str
    signal: str = "SIGTERM"
    timeout: int = 10


class ContainerSignalled(BaseEvent, frozen=True, kw_only=True):
    container_id: str
    signal: str
    # a user's kill that keeps the container down when it exits (moby `ExitOnNext`); older
    # logs recorded no such thing: False
    stops_restart: bool = False


class ContainerExited(BaseEvent, frozen=True, kw_only=True):
    container_id: str
    exit_code: int
    signal: str = ""
    oom_killed: bool = False
    finished_at: int = 0  # Unix ns as the monitor saw it; 0 when unknown


class ContainerStartFailed(BaseEvent, frozen=True, kw_only=True):
    container_id: str
    error: str
    exit_code: int = 128


class ContainerRestartedByPolicy(BaseEvent, frozen=True, kw_only=True):
    container_id: str
    restart_count: int
    delay_ms: int
    reason: str


class ContainerUpdated(BaseEvent, frozen=True, kw_only=True):
    """`docker update`: new limits or restart policy (None: unchanged). For a running
    container this follows the kernel change (`runc update`); a stopped one gets them at its
    next start."""

    container_id: str
    memory: int | None = None  # swap follows at twice the memory, as at create
    nano_cpus: int | None = None
    pids_limit: int | None = None
    restart_policy: RestartPolicy | None = None
    # Issue 13: the rest of what `docker update` sets (None: unchanged).
    memory_swap: int | None = None
    memory_reservation: int | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None


class ContainerHealthChanged(BaseEvent, frozen=True, kw_only=True):
    """The health check's verdict changed (starting -> healthy -> unhealthy …). Only changes
    are recorded, with the probe that caused them; each probe's output stays in memory, as
    it may print anything (Docker keeps the last five)."""

    container_id: str
    status: str  # "healthy" or "unhealthy"
    failing_streak: int = 0
    exit_code: int = 0  # of the probe that decided; -1: it timed out


class ContainerPaused(BaseEvent, frozen=True, kw_only=True):
    container_id: str


class ContainerUnpaused(BaseEvent, frozen=True, kw_only=True):
    container_id: str


class ContainerRenamed(BaseEvent, frozen=True, kw_only=True):
    container_id: str
    old_name: str
    new_name: str


class ContainerRemoveRequested(BaseEvent, frozen=True, kw_only=True):
    container_id: str
    force: bool = False
    remove_volumes: bool = False


class ContainerRemoved(BaseEvent, frozen=True, kw_only=True):
    container_id: str


class ContainerLost(BaseEvent, frozen=True, kw_only=True):
    """The engine lost track of a running container (reboot, monitor gone): never hidden."""

    container_id: str
    reason: str
    exit_code: int = 255


class ContainerLinkRemoved(BaseEvent, frozen=True, kw_only=True):
    """`docker rm --link /web/db`: the legacy link `alias` of the container is gone; its
    /etc/hosts entries and env vars are not made at its next start."""

    container_id: str
    alias: str


# --- exec sessions -------------------------------------------------------------------------


class ExecCreated(BaseEvent, frozen=True, kw_only=True):
    exec_id: str
    container_id: str
    cmd: tuple[str, ...]
    tty: bool = False
    user: str = ""
    working_dir: str = ""
    privileged: bool = False  # `exec --privileged`: every capability for this process


class ExecStarted(BaseEvent, frozen=True, kw_only=True):
    exec_id: str
    container_id: str
    pid: int = 0


class ExecExited(BaseEvent, frozen=True, kw_only=True):
    exec_id: str
    container_id: str
    exit_code: int


# --- images --------------------------------------------------------------------------------


class ImagePullRequested(BaseEvent, frozen=True, kw_only=True):
    reference: str
    platform: str = ""


class ImageManifestResolved(BaseEvent, frozen=True, kw_only=True):
    reference: str
    digest: str
    media_type: str


class LayerDownloaded(BaseEvent, frozen=True, kw_only=True):
    digest: str
    size: int
    media_type: str = ""


class LayerUnpacked(BaseEvent, frozen=True, kw_only=True):
    digest: str  # compressed blob digest
    diff_id: str  # digest of the uncompressed tar
    size: int  # bytes on disk after unpack


class LayerRemoved(BaseEvent, frozen=True, kw_only=True):
    """No image uses the layer any more; its directory was deleted."""

    diff_id: str


class ImagePulled(BaseEvent, frozen=True, kw_only=True):
    image_id: str
    reference: str
    digest: str
    layers: tuple[str, ...]  # diff_ids, bottom first
    config: ImageConfig
    size: int = 0
    layer_digests: tuple[str, ...] = ()  # blob digests in the content store, bottom first


class ImageLoaded(BaseEvent, frozen=True, kw_only=True):
    image_id: str
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]
    config: ImageConfig
    size: int = 0
    layer_digests: tuple[str, ...] = ()  # blob digests in the content store, bottom first


class ImageImported(BaseEvent, frozen=True, kw_only=True):
    image_id: str
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]
    config: ImageConfig
    size: int = 0
    layer_digests: tuple[str, ...] = ()  # blob digests in the content store, bottom first
    source: str = ""


class ImagePushed(BaseEvent, frozen=True, kw_only=True):
    image_id: str
    reference: str
    digest: str


class ImageTagged(BaseEvent, frozen=True, kw_only=True):
    image_id: str
    reference: str


class ImageUntagged(BaseEvent, frozen=True, kw_only=True):
    image_id: str
    reference: str


class ImageRemoved(BaseEvent, frozen=True, kw_only=True):
    image_id: str


# --- volumes -------------------------------------------------------------------------------


class VolumeCreated(BaseEvent, frozen=True, kw_only=True):
    name: str
    driver: str = "local"
    labels: dict[str, str] = {}
    options: dict[str, str] = {}
    anonymous: bool = False


class VolumeMounted(BaseEvent, frozen=True, kw_only=True):
    name: str
    container_id: str
    destination: str
    read_only: bool = False


class VolumeUnmounted(BaseEvent, frozen=True, kw_only=True):
    name: str
    container_id: str
    destination: str


class VolumeRemoved(BaseEvent, frozen=True, kw_only=True):
    name: str


# --- networks ------------------------------------------------------------------------------


class NetworkCreated(BaseEvent, frozen=True, kw_only=True):
    network_id: str
    name: str
    driver: str = "bridge"
    subnet: str = ""
    gateway: str = ""
    ip_range: str = ""
    internal: bool = False
    labels: dict[str, str] = {}
    options: dict[str, str] = {}
    bridge: str = ""  # kernel link name
    # IPv6 (issue 13): Docker's EnableIPv6 and the network's one v6 pool beside the v4 one
    enable_ipv6: bool = False
    subnet6: str = ""
    gateway6: str = ""
    ip_range6: str = ""
    # Docker's IPAM `AuxiliaryAddresses` of the v4 and the v6 pool (name -> address, issue
    # 13): reserved here, by this event, so IPAM never hands them to a container; and the
    # IPAM driver's `Options` (None: none given, shown as null as Docker does)
    aux_addresses: dict[str, str] = {}
    aux_addresses6: dict[str, str] = {}
    ipam_options: dict[str, str] | None = None
    attachable: bool = False  # Docker's Attachable: recorded and shown (swarm's, inert here)
    # issue 20: a macvlan/ipvlan network's parent link (in `bridge`) is one we make — a VLAN
    # sub-interface or a dummy — and remove with the network
    parent_created: bool = False


class NetworkAddressAllocated(BaseEvent, frozen=True, kw_only=True):
    network_id: str
    container_id: str
    address: str


class NetworkAddressReleased(BaseEvent, frozen=True, kw_only=True):
    network_id: str
    container_id: str
    address: str


class NetworkConnected(BaseEvent, frozen=True, kw_only=True):
    network_id: str
    container_id: str
    ip: str
    mac: str
    aliases: tuple[str, ...] = ()
    endpoint_id: str = ""
    ip6: str = ""  # the endpoint's IPv6 address on a network with EnableIPv6


class NetworkDisconnected(BaseEvent, frozen=True, kw_only=True):
    network_id: str
    container_id: str


class NetworkPortPublished(BaseEvent, frozen=True, kw_only=True):
    container_id: str
    binding: PortBinding
    container_ip: str = ""


class NetworkPortUnpublished(BaseEvent, frozen=True, kw_only=True):
    container_id: str
    binding: PortBinding


class NetworkRemoved(BaseEvent, frozen=True, kw_only=True):
    network_id: str


class NetworkConnectRecorded(BaseEvent, frozen=True, kw_only=True):
    """`network connect` of a container that is not running (on the container's stream):
    Docker records the endpoint config and the container joins the network at its next start
    (Compose connects a service's other networks between create and start). `ipv4_address`
    is the static address asked for, checked by IPAM at start."""

    network_id: str
    container_id: str
    aliases: tuple[str, ...] = ()
    ipv4_address: str = ""
    ipv6_address: str = ""


class NetworkConnectWithdrawn(BaseEvent, frozen=True, kw_only=True):
    """`network disconnect` of a container that is not running: it will not join the network
    at its next start (a recorded connect, or the network it was created on)."""

    network_id: str
    container_id: str


# --- reconciliation ------------------------------------------------------------------------


class ReconcileDifferenceFound(BaseEvent, frozen=True, kw_only=True):
    """The log and the kernel disagreed; says what was seen and what was done about it."""

    subject: str  # a stream name, or a kernel object ("mount:/path", "link:veth…")
    expected: str
    observed: str
    action: str  # "recorded", "removed", "repaired", "adopted"
    reason: str = ""


class DaemonStarted(BaseEvent, frozen=True, kw_only=True):
    version: str
    boot_id: str
    clean_shutdown: bool  # the previous run wrote its clean-shutdown marker


class DaemonStopped(BaseEvent, frozen=True, kw_only=True):
    reason: str = ""


# --- the log itself ------------------------------------------------------------------------


class ChainCompacted(BaseEvent, frozen=True, kw_only=True):
    """Events of objects removed before `before_ns` moved to an archive file (on the `chain`
    stream). Appended in the transaction that deletes them; `audit verify` checks the archive
    and the tombstones left in the live log against these fields."""

    before_ns: int
    count: int
    first_seq: int
    last_seq: int
    archive: str  # file name under <root>/archive/
    archive_sha256: str
    tombstones_sha256: str  # over "seq hash\n" of every archived event, in seq order
    streams: int = 0
    bytes: int = 0  # stored bytes of the archived rows


# --- copies in and out of a container (audit: they change no projected state) --------------


class ContainerPathArchived(BaseEvent, frozen=True, kw_only=True):
    """`cp` out: a path of the container was sent to the client (Docker's "archive-path")."""

    container_id: str
    path: str


class ContainerPathExtracted(BaseEvent, frozen=True, kw_only=True):
    """`cp` in: an archive was unpacked into a directory of the container ("extract-to-dir").
    `error` is set when the archive was refused part-way (what was written before stays)."""

    container_id: str
    path: str
    entries: int = 0
    skipped_devices: int = 0
    error: str = ""


class ContainerExported(BaseEvent, frozen=True, kw_only=True):
    """`export`: the container's whole root filesystem was streamed out ("export")."""

    container_id: str


class IngestDiscarded(BaseEvent, frozen=True, kw_only=True):
    """A write that never committed (a blob ingest, a staged layer, a spool) was found at
    daemon start and removed (issue 15 item 7: a killed `load` left 205 MB nobody saw)."""

    path: str
    bytes: int


# --- builds (issue 12) ------------------------------------------------------------------


class BuildRequested(BaseEvent, frozen=True, kw_only=True):
    """A Dockerfile build was accepted. Build-arg values never enter the log: `build_args`
    maps each key to its keyed digest, as env values are recorded (events/redact.py)."""

    op_id: str
    context_digest: str
    dockerfile_digest: str
    dockerfile: str = "Dockerfile"
    build_args: dict[str, str] = {}
    target: str = ""
    tags: tuple[str, ...] = ()
    no_cache: bool = False
    network_mode: str = ""
    labels: dict[str, str] = {}


class BuildStepCompleted(BaseEvent, frozen=True, kw_only=True):
    """One Dockerfile step ran or was taken from the cache (on the build's op stream). The
    build cache is a projection of these events (projections/build_record.py fold_cache)."""

    op_id: str
    step: int
    total: int
    stage: int
    instruction: str
    cache_key: str
    cached: bool
    image_id: str  # the image after this step
    layer: str = ""  # diff_id of the layer it made, if any
    exit_code: int = 0
    duration_ms: int = 0
    base_digest: str = ""  # FROM steps: the base image id


class ImageBuilt(BaseEvent, frozen=True, kw_only=True):
    """An image a build made: a step's intermediate image or (with tags) the result."""

    op_id: str
    image_id: str
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]
    config: ImageConfig
    size: int = 0
    layer_digests: tuple[str, ...] = ()
    parent: str = ""


Event = (
    OperationRequested
    | OperationStepDone
    | OperationFailed
    | OperationCompleted
    | OperationCompensated
    | ContainerCreateRequested
    | NameClaimed
    | NameReleased
    | ContainerCreated
    | ContainerStartRequested
    | ContainerStarted
    | ContainerStopRequested
    | ContainerSignalled
    | ContainerExited
    | ContainerStartFailed
    | ContainerRestartedByPolicy
    | ContainerPaused
    | ContainerHealthChanged
    | ContainerUpdated
    | ContainerUnpaused
    | ContainerRenamed
    | ContainerRemoveRequested
    | ContainerRemoved
    | ContainerLost
    | ContainerLinkRemoved
    | ExecCreated
    | ExecStarted
    | ExecExited
    | ImagePullRequested
    | ImageManifestResolved
    | LayerDownloaded
    | LayerUnpacked
    | LayerRemoved
    | ImagePulled
    | ImageLoaded
    | ImageImported
    | ImagePushed
    | ImageTagged
    | ImageUntagged
    | ImageRemoved
    | VolumeCreated
    | VolumeMounted
    | VolumeUnmounted
    | VolumeRemoved
    | NetworkCreated
    | NetworkAddressAllocated
    | NetworkAddressReleased
    | NetworkConnected
    | NetworkDisconnected
    | NetworkPortPublished
    | NetworkPortUnpublished
    | NetworkRemoved
    | ReconcileDifferenceFound
    | DaemonStarted
    | DaemonStopped
    | ChainCompacted
    | ContainerPathArchived
    | ContainerPathExtracted
    | ContainerExported
    | NetworkConnectRecorded
    | NetworkConnectWithdrawn
    | IngestDiscarded
    | BuildRequested
    | BuildStepCompleted
    | ImageBuilt
)

EVENT_TYPES: dict[str, type[BaseEvent]] = {
    cls.__name__: cls for cls in BaseEvent.__subclasses__()
}

# Unused imports are part of the vocabulary's public surface.
__all__ = ["Event", "EVENT_TYPES", "BaseEvent", "MountSpec"] + list(EVENT_TYPES)
