"""The fold: `apply(state, envelope) -> state`, and the same over batches with the rows to write.

I/O: none. Unknown event types are ignored, so an old engine can read a newer log and a
projection never fails on an event it does not care about.

A batch is folded inside one `_Tx`, which holds `immutables.Map.mutate()` views of the
state's maps: events in the batch mutate them in place (fast — this is the rebuild path), the
original state is untouched (so a batch whose savepoint rolls back is simply dropped), and
the keys the batch touched become the `RowChange`s the store writes in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import immutables
import msgspec

from events import vocabulary as v
from events.envelope import Envelope
from events.values import ContainerConfig
from projections.state import (
    ContainerView,
    Endpoint,
    EngineState,
    ExecView,
    ImageView,
    NetworkView,
    OperationView,
    PublishedPort,
    VolumeMount,
    VolumeView,
)

TABLES = ("containers", "images", "volumes", "networks", "operations", "execs")

_encode = msgspec.json.Encoder().encode
replace = msgspec.structs.replace


_MAPS = (
    "containers", "names", "name_versions", "images", "tags", "layers", "volumes", "networks",
    "network_names", "execs", "operations",
)


class _Tx:
    """A batch being folded.

    Incremental batches (`rebuild=False`) hold `immutables.Map.mutate()` views: the original
    state is untouched, and the keys the batch touched become rows. A rebuild from zero holds
    plain dicts (no state to preserve, no rows to compute — several times faster) and turns
    them into persistent maps once, at the end.
    """

    __slots__ = ("seq", *_MAPS, "touched", "track")
    # the _MAPS, set in __init__: a `mutate()` view, or a dict on rebuild (for mypy)
    containers: Any
    names: Any
    name_versions: Any
    images: Any
    tags: Any
    layers: Any
    volumes: Any
    networks: Any
    network_names: Any
    execs: Any
    operations: Any

    def __init__(self, s: EngineState, *, rebuild: bool = False) -> None:
        self.seq = s.seq
        self.track = not rebuild
        for name in _MAPS:
            m = getattr(s, name)
            setattr(self, name, dict(m.items()) if rebuild else m.mutate())
        self.touched: set[tuple[str, str]] = set()

    def finish(self) -> EngineState:
        if self.track:
            maps = {name: getattr(self, name).finish() for name in _MAPS}
        else:
            maps = {name: immutables.Map(getattr(self, name)) for name in _MAPS}
        return EngineState(seq=self.seq, **maps)

    def rows(self) -> list[tuple[str, str, bytes | None]]:
        out: list[tuple[str, str, bytes | None]] = []
        for table, key in sorted(self.touched):
            view = getattr(self, table).get(key)
            out.append((table, key, None if view is None else _encode(view)))
        return out

    # -- small helpers every handler uses -------------------------------------------------

    def container(self, cid: str) -> ContainerView | None:
        view: ContainerView | None = self.containers.get(cid)
        return view

    def put(self, table: str, key: str, view: Any) -> None:
        getattr(self, table)[key] = view
        if self.track:
            self.touched.add((table, key))

    def drop(self, table: str, key: str) -> None:
        m = getattr(self, table)
        if key in m:
            del m[key]
        if self.track:
            self.touched.add((table, key))

    def update_container(self, env: Envelope, cid: str, **changes: Any) -> None:
        c = self.containers.get(cid)
        if c is None:
            return
        changes["last_seq"] = env.seq
        if env.stream == "container-" + cid:  # the version optimistic concurrency checks
            changes["stream_version"] = env.stream_version
        self.containers[cid] = replace(c, **changes)
        if self.track:
            self.touched.add(("containers", cid))


Handler = Callable[[_Tx, Envelope, Any], None]
HANDLERS: dict[type, Handler] = {}
# The event types whose handler reads the envelope's `actor` or `op_id`: a rows-free fold
# fetches those two columns for these types only (None for the rest), because they were a
# third of a rebuild's fetch. tests/property/test_fold_builder_properties.py catches a
# handler that reads them without saying so.
WHO_TYPES: set[str] = set()


def on(event_type: type, *, who: bool = False) -> Callable[[Handler], Handler]:
    """Register a handler; `who=True` if it reads `env.actor` or `env.op_id`."""
    def register(fn: Handler) -> Handler:
        HANDLERS[event_type] = fn
        if who:
            WHO_TYPES.add(event_type.__name__)
        return fn

    return register


# --- operations ----------------------------------------------------------------------------


@on(v.OperationRequested, who=True)
def _op_requested(tx: _Tx, env: Envelope, ev: v.OperationRequested) -> None:
    tx.put("operations", ev.op_id, OperationView(
        op_id=ev.op_id, kind=ev.kind, target=ev.target, args=dict(ev.args),
        requested_at=env.recorded_at, requested_seq=env.seq, actor_uid=env.actor.uid,
    ))


@on(v.OperationStepDone)
def _op_step(tx: _Tx, env: Envelope, ev: v.OperationStepDone) -> None:
    op = tx.operations.get(ev.op_id)
    if op is not None:
        tx.put("operations", ev.op_id, replace(op, steps=op.steps + (ev.step,)))


@on(v.OperationFailed)
def _op_failed(tx: _Tx, env: Envelope, ev: v.OperationFailed) -> None:
    op = tx.operations.get(ev.op_id)
    if op is None:
        return
    if ev.needs_cleanup:
        tx.put("operations", ev.op_id, replace(op, needs_cleanup=True, error=ev.error))
    else:
        tx.drop("operations", ev.op_id)


@on(v.OperationCompleted)
@on(v.OperationCompensated)
def _op_done(tx: _Tx, env: Envelope, ev: Any) -> None:
    if ev.op_id in tx.operations:
        tx.drop("operations", ev.op_id)


# --- names and containers ------------------------------------------------------------------


@on(v.NameClaimed)
def _name_claimed(tx: _Tx, env: Envelope, ev: v.NameClaimed) -> None:
    tx.names[ev.name] = ev.container_id
    tx.name_versions[ev.name] = env.stream_version


@on(v.NameReleased)
def _name_released(tx: _Tx, env: Envelope, ev: v.NameReleased) -> None:
    if tx.names.get(ev.name) == ev.container_id:
        del tx.names[ev.name]
    tx.name_versions[ev.name] = env.stream_version


@on(v.ContainerCreateRequested, who=True)
def _create_requested(tx: _Tx, env: Envelope, ev: v.ContainerCreateRequested) -> None:
    tx.put("containers", ev.container_id, ContainerView(
        id=ev.container_id, name=ev.name, config=ev.config, status="creating",
        created_at=env.recorded_at, created_by=env.actor.uid,
        stream_version=env.stream_version, last_seq=env.seq,
    ))


@on(v.ContainerCreated)
def _created(tx: _Tx, env: Envelope, ev: v.ContainerCreated) -> None:
    tx.update_container(env, ev.container_id, status="created", rootfs=ev.rootfs)


@on(v.ContainerStartRequested)
def _start_requested(tx: _Tx, env: Envelope, ev: v.ContainerStartRequested) -> None:
    tx.update_container(env, ev.container_id, error="", manually_stopped=False)


@on(v.ContainerStarted)
def _started(tx: _Tx, env: Envelope, ev: v.ContainerStarted) -> None:
    tx.update_container(
        env, ev.container_id, status="running", pid=ev.pid, monitor_pid=ev.monitor_pid,
        started_at=env.recorded_at, has_been_started=True, exit_code=0, oom_killed=False,
        error="", health=_initial_health(tx.container(ev.container_id)),
        health_failing_streak=0,
    )


def _initial_health(c: ContainerView | None) -> str:
    check = c.config.healthcheck if c is not None else None
    return "starting" if check is not None and check.enabled else ""


@on(v.ContainerUpdated)
def _updated(tx: _Tx, env: Envelope, ev: v.ContainerUpdated) -> None:
    c = tx.container(ev.container_id)
    if c is None:
        return
    tx.update_container(env, ev.container_id, config=updated_config(c.config, ev))


UPDATE_FIELDS = ("memory", "nano_cpus", "pids_limit", "restart_policy", "memory_swap",
                 "memory_reservation", "cpu_shares", "cpuset_cpus", "cpuset_mems")


def updated_config(config: ContainerConfig, ev: v.ContainerUpdated) -> ContainerConfig:
    """The config after `docker update`: every field the event sets (None: unchanged)."""
    changes = {k: getattr(ev, k) for k in UPDATE_FIELDS if getattr(ev, k) is not None}
    return replace(config, **changes)


@on(v.ContainerHealthChanged)
def _health_changed(tx: _Tx, env: Envelope, ev: v.ContainerHealthChanged) -> None:
    tx.update_container(env, ev.container_id, health=ev.status,
                        health_failing_streak=ev.failing_streak)


@on(v.ContainerStartFailed)
def _start_failed(tx: _Tx, env: Envelope, ev: v.ContainerStartFailed) -> None:
    c = tx.container(ev.container_id)
    if c is None:
        return
    status = "exited" if c.has_been_started else "created"
    tx.update_container(
        env, ev.container_id, status=status, error=ev.error, exit_code=ev.exit_code, pid=0,
        finished_at=env.recorded_at if c.has_been_started else c.finished_at,
    )


@on(v.ContainerStopRequested)
def _stop_requested(tx: _Tx, env: Envelope, ev: v.ContainerStopRequested) -> None:
    c = tx.container(ev.container_id)
    if c is not None and c.status == "restarting":
        # Stopped while waiting out its restart back-off: it stays down, as it is now.
        tx.update_container(env, ev.container_id, manually_stopped=True, status="exited")
    else:
        tx.update_container(env, ev.container_id, manually_stopped=True)


@on(v.ContainerSignalled)
def _signalled(tx: _Tx, env: Envelope, ev: v.ContainerSignalled) -> None:
    if ev.stops_restart:  # a kill is a stop: no restart policy brings it back
        tx.update_container(env, ev.container_id, manually_stopped=True)
    else:
        tx.update_container(env, ev.container_id)


@on(v.ContainerExited)
def _exited(tx: _Tx, env: Envelope, ev: v.ContainerExited) -> None:
    tx.update_container(
        env, ev.container_id, status="exited", exit_code=ev.exit_code, oom_killed=ev.oom_killed,
        finished_at=ev.finished_at or env.recorded_at, pid=0, monitor_pid=0,
    )


@on(v.ContainerLost)
def _lost(tx: _Tx, env: Envelope, ev: v.ContainerLost) -> None:
    tx.update_container(
        env, ev.container_id, status="exited", exit_code=ev.exit_code, error=ev.reason,
        finished_at=env.recorded_at, pid=0, monitor_pid=0,
    )


@on(v.ContainerRestartedByPolicy)
def _restarted(tx: _Tx, env: Envelope, ev: v.ContainerRestartedByPolicy) -> None:
    tx.update_container(
        env, ev.container_id, status="restarting", restart_count=ev.restart_count,
        restart_delay_ms=ev.delay_ms,
    )


@on(v.ContainerPaused)
def _paused(tx: _Tx, env: Envelope, ev: v.ContainerPaused) -> None:
    tx.update_container(env, ev.container_id, status="paused")


@on(v.ContainerUnpaused)
def _unpaused(tx: _Tx, env: Envelope, ev: v.ContainerUnpaused) -> None:
    tx.update_container(env, ev.container_id, status="running")


@on(v.ContainerRenamed)
def _renamed(tx: _Tx, env: Envelope, ev: v.ContainerRenamed) -> None:
    tx.update_container(env, ev.container_id, name=ev.new_name)


@on(v.ContainerRemoveRequested)
def _remove_requested(tx: _Tx, env: Envelope, ev: v.ContainerRemoveRequested) -> None:
    tx.update_container(env, ev.container_id, status="removing")


@on(v.ContainerRemoved)
def _removed(tx: _Tx, env: Envelope, ev: v.ContainerRemoved) -> None:
    c = tx.container(ev.container_id)
    if c is None:
        return
    tx.drop("containers", ev.container_id)
    for exec_id in c.execs:
        tx.drop("execs", exec_id)


# --- exec sessions -------------------------------------------------------------------------


@on(v.ExecCreated)
def _exec_created(tx: _Tx, env: Envelope, ev: v.ExecCreated) -> None:
    c = tx.container(ev.container_id)
    if c is None:
        return
    tx.put("execs", ev.exec_id, ExecView(
        id=ev.exec_id, container_id=ev.container_id, cmd=ev.cmd, tty=ev.tty, user=ev.user,
        working_dir=ev.working_dir, privileged=ev.privileged,
    ))
    tx.update_container(env, ev.container_id, execs=c.execs + (ev.exec_id,))


@on(v.ExecStarted)
def _exec_started(tx: _Tx, env: Envelope, ev: v.ExecStarted) -> None:
    x = tx.execs.get(ev.exec_id)
    if x is not None:
        tx.put("execs", ev.exec_id, replace(x, running=True, pid=ev.pid))
    tx.update_container(env, ev.container_id)


@on(v.ExecExited)
def _exec_exited(tx: _Tx, env: Envelope, ev: v.ExecExited) -> None:
    x = tx.execs.get(ev.exec_id)
    if x is not None:
        tx.put("execs", ev.exec_id, replace(x, running=False, pid=0, exit_code=ev.exit_code))
    tx.update_container(env, ev.container_id)


# --- images --------------------------------------------------------------------------------


def _move_tag(tx: _Tx, env: Envelope, ref: str, image_id: str) -> None:
    """A tag names one image: giving it to a new image takes it from the old one (as Docker)."""
    old = tx.tags.get(ref)
    if old is not None and old != image_id:
        prev = tx.images.get(old)
        if prev is not None:
            tags = tuple(t for t in prev.repo_tags if t != ref)
            tx.put("images", old, replace(prev, repo_tags=tags, last_seq=env.seq))
    tx.tags[ref] = image_id
    img = tx.images.get(image_id)
    if img is not None and ref not in img.repo_tags:
        tx.put("images", image_id, replace(img, repo_tags=img.repo_tags + (ref,), last_seq=env.seq))


def _image_arrived(tx: _Tx, env: Envelope, ev: Any, source: str, tags: Iterable[str],
                   digests: tuple[str, ...] = ()) -> None:
    img = tx.images.get(ev.image_id)
    if img is None:
        img = ImageView(
            id=ev.image_id, config=ev.config, layers=ev.layers, size=ev.size,
            layer_digests=ev.layer_digests or ev.layers,
            created_at=env.recorded_at, source=source, last_seq=env.seq,
        )
    merged = tuple(dict.fromkeys(img.repo_digests + digests))
    tx.put("images", ev.image_id, replace(img, repo_digests=merged, last_seq=env.seq))
    for ref in tags:
        _move_tag(tx, env, ref, ev.image_id)


def _stamp_tag_time(tx: _Tx, env: Envelope, image_id: str) -> None:
    img = tx.images.get(image_id)
    if img is not None:
        tx.put("images", image_id, replace(img, last_tagged_at=env.recorded_at,
                                           last_seq=env.seq))


@on(v.ImageLoaded)
def _image_loaded(tx: _Tx, env: Envelope, ev: v.ImageLoaded) -> None:
    _image_arrived(tx, env, ev, "loaded", ev.repo_tags)


@on(v.ImageImported)
def _image_imported(tx: _Tx, env: Envelope, ev: v.ImageImported) -> None:
    _image_arrived(tx, env, ev, "imported", ev.repo_tags)
    if ev.repo_tags:
        _stamp_tag_time(tx, env, ev.image_id)


@on(v.ImageBuilt)
def _image_built(tx: _Tx, env: Envelope, ev: v.ImageBuilt) -> None:
    _image_arrived(tx, env, ev, "built", ev.repo_tags)
    if ev.repo_tags:
        _stamp_tag_time(tx, env, ev.image_id)


@on(v.ImagePulled)
def _image_pulled(tx: _Tx, env: Envelope, ev: v.ImagePulled) -> None:
    repo = ev.reference.split("@", 1)[0]
    tags = (ev.reference,) if "@" not in ev.reference else ()
    base = repo.rsplit(":", 1)[0] if ":" in repo.rsplit("/", 1)[-1] else repo
    _image_arrived(tx, env, ev, "pulled", tags, (f"{base}@{ev.digest}",))


@on(v.ImageTagged)
def _image_tagged(tx: _Tx, env: Envelope, ev: v.ImageTagged) -> None:
    _move_tag(tx, env, ev.reference, ev.image_id)
    _stamp_tag_time(tx, env, ev.image_id)


@on(v.ImageUntagged)
def _image_untagged(tx: _Tx, env: Envelope, ev: v.ImageUntagged) -> None:
    if tx.tags.get(ev.reference) == ev.image_id:
        del tx.tags[ev.reference]
    img = tx.images.get(ev.image_id)
    if img is not None:
        tags = tuple(t for t in img.repo_tags if t != ev.reference)
        tx.put("images", ev.image_id, replace(img, repo_tags=tags, last_seq=env.seq))


@on(v.ImageRemoved)
def _image_removed(tx: _Tx, env: Envelope, ev: v.ImageRemoved) -> None:
    img = tx.images.get(ev.image_id)
    if img is None:
        return
    for ref in img.repo_tags:
        if tx.tags.get(ref) == ev.image_id:
            del tx.tags[ref]
    tx.drop("images", ev.image_id)


@on(v.LayerUnpacked)
def _layer_unpacked(tx: _Tx, env: Envelope, ev: v.LayerUnpacked) -> None:
    tx.layers[ev.diff_id] = ev.size


@on(v.LayerRemoved)
def _layer_removed(tx: _Tx, env: Envelope, ev: v.LayerRemoved) -> None:
    if ev.diff_id in tx.layers:
        del tx.layers[ev.diff_id]


# --- volumes -------------------------------------------------------------------------------


@on(v.VolumeCreated)
def _volume_created(tx: _Tx, env: Envelope, ev: v.VolumeCreated) -> None:
    tx.put("volumes", ev.name, VolumeView(
        name=ev.name, driver=ev.driver, labels=dict(ev.labels), options=dict(ev.options),
        anonymous=ev.anonymous, created_at=env.recorded_at, last_seq=env.seq,
    ))


@on(v.VolumeMounted)
def _volume_mounted(tx: _Tx, env: Envelope, ev: v.VolumeMounted) -> None:
    vol = tx.volumes.get(ev.name)
    if vol is not None and ev.container_id not in vol.users:
        tx.put("volumes", ev.name, replace(vol, users=vol.users + (ev.container_id,)))
    c = tx.container(ev.container_id)
    if c is not None:
        m = VolumeMount(name=ev.name, destination=ev.destination, read_only=ev.read_only)
        mounts = tuple(x for x in c.mounts if x.destination != ev.destination) + (m,)
        tx.update_container(env, ev.container_id, mounts=mounts)


@on(v.VolumeUnmounted)
def _volume_unmounted(tx: _Tx, env: Envelope, ev: v.VolumeUnmounted) -> None:
    vol = tx.volumes.get(ev.name)
    if vol is not None:
        users = tuple(u for u in vol.users if u != ev.container_id)
        tx.put("volumes", ev.name, replace(vol, users=users))
    c = tx.container(ev.container_id)
    if c is not None:
        mounts = tuple(x for x in c.mounts if x.destination != ev.destination)
        tx.update_container(env, ev.container_id, mounts=mounts)


@on(v.VolumeRemoved)
def _volume_removed(tx: _Tx, env: Envelope, ev: v.VolumeRemoved) -> None:
    tx.drop("volumes", ev.name)


# --- networks ------------------------------------------------------------------------------


def _net(env: Envelope, net: NetworkView, **changes: Any) -> NetworkView:
    """Network events live on the network's stream: keep its version for optimistic IPAM."""
    if env.stream == "network-" + net.id:
        changes["stream_version"] = env.stream_version
    return replace(net, last_seq=env.seq, **changes)


@on(v.NetworkCreated)
def _network_created(tx: _Tx, env: Envelope, ev: v.NetworkCreated) -> None:
    tx.put("networks", ev.network_id, NetworkView(
        id=ev.network_id, name=ev.name, driver=ev.driver, subnet=ev.subnet, gateway=ev.gateway,
        ip_range=ev.ip_range, internal=ev.internal, labels=dict(ev.labels),
        options=dict(ev.options), bridge=ev.bridge, created_at=env.recorded_at, last_seq=env.seq,
        stream_version=env.stream_version, enable_ipv6=ev.enable_ipv6, subnet6=ev.subnet6,
        gateway6=ev.gateway6, ip_range6=ev.ip_range6, aux_addresses=dict(ev.aux_addresses),
        aux_addresses6=dict(ev.aux_addresses6),
        ipam_options=None if ev.ipam_options is None else dict(ev.ipam_options),
        attachable=ev.attachable, parent_created=ev.parent_created,
    ))
    tx.network_names[ev.name] = ev.network_id


@on(v.NetworkAddressAllocated)
def _addr_allocated(tx: _Tx, env: Envelope, ev: v.NetworkAddressAllocated) -> None:
    net = tx.networks.get(ev.network_id)
    if net is not None:
        alloc = {**net.allocations, ev.address: ev.container_id}
        tx.put("networks", ev.network_id, _net(env, net, allocations=alloc))


@on(v.NetworkAddressReleased)
def _addr_released(tx: _Tx, env: Envelope, ev: v.NetworkAddressReleased) -> None:
    net = tx.networks.get(ev.network_id)
    if net is not None:  # even a no-op advances the stream version IPAM checks against
        alloc = {a: c for a, c in net.allocations.items() if a != ev.address}
        tx.put("networks", ev.network_id, _net(env, net, allocations=alloc))


@on(v.NetworkConnected)
def _connected(tx: _Tx, env: Envelope, ev: v.NetworkConnected) -> None:
    ep = Endpoint(network_id=ev.network_id, ip=ev.ip, mac=ev.mac, aliases=ev.aliases,
                  endpoint_id=ev.endpoint_id, ip6=ev.ip6)
    net = tx.networks.get(ev.network_id)
    if net is not None:
        eps = {**net.endpoints, ev.container_id: ep}
        tx.put("networks", ev.network_id, _net(env, net, endpoints=eps))
    c = tx.container(ev.container_id)
    if c is not None:
        tx.update_container(env, ev.container_id, networks={**c.networks, ev.network_id: ep})


@on(v.NetworkDisconnected)
def _disconnected(tx: _Tx, env: Envelope, ev: v.NetworkDisconnected) -> None:
    net = tx.networks.get(ev.network_id)
    if net is not None:  # even a no-op advances the stream version IPAM checks against
        eps = {k: e for k, e in net.endpoints.items() if k != ev.container_id}
        tx.put("networks", ev.network_id, _net(env, net, endpoints=eps))
    c = tx.container(ev.container_id)
    if c is not None and ev.network_id in c.networks:
        nets = {k: e for k, e in c.networks.items() if k != ev.network_id}
        tx.update_container(env, ev.container_id, networks=nets)


@on(v.NetworkPortPublished)
def _published(tx: _Tx, env: Envelope, ev: v.NetworkPortPublished) -> None:
    c = tx.container(ev.container_id)
    if c is not None:
        port = PublishedPort(binding=ev.binding, container_ip=ev.container_ip)
        tx.update_container(env, ev.container_id, ports=c.ports + (port,))


@on(v.NetworkPortUnpublished)
def _unpublished(tx: _Tx, env: Envelope, ev: v.NetworkPortUnpublished) -> None:
    c = tx.container(ev.container_id)
    if c is not None:
        ports = tuple(p for p in c.ports if p.binding != ev.binding)
        tx.update_container(env, ev.container_id, ports=ports)


@on(v.NetworkConnectRecorded)
def _connect_recorded(tx: _Tx, env: Envelope, ev: v.NetworkConnectRecorded) -> None:
    c = tx.container(ev.container_id)
    if c is not None:
        ep = Endpoint(network_id=ev.network_id, ip=ev.ipv4_address, ip6=ev.ipv6_address,
                      aliases=ev.aliases)
        tx.update_container(env, ev.container_id, joins={**c.joins, ev.network_id: ep})


@on(v.NetworkConnectWithdrawn)
def _connect_withdrawn(tx: _Tx, env: Envelope, ev: v.NetworkConnectWithdrawn) -> None:
    c = tx.container(ev.container_id)
    if c is None:
        return
    if ev.network_id in c.joins:
        joins = {k: e for k, e in c.joins.items() if k != ev.network_id}
        tx.update_container(env, ev.container_id, joins=joins)
    else:  # not a recorded connect: the network it was created on
        tx.update_container(env, ev.container_id, left_primary=True)


@on(v.NetworkRemoved)
def _network_removed(tx: _Tx, env: Envelope, ev: v.NetworkRemoved) -> None:
    net = tx.networks.get(ev.network_id)
    if net is None:
        return
    if tx.network_names.get(net.name) == net.id:
        del tx.network_names[net.name]
    tx.drop("networks", ev.network_id)


@on(v.ContainerLinkRemoved)
def _link_removed(tx: _Tx, env: Envelope, ev: v.ContainerLinkRemoved) -> None:
    c = tx.container(ev.container_id)
    if c is None:
        return
    kept = tuple(x for x in c.config.links if x.partition(":")[2] != ev.alias)
    tx.update_container(env, ev.container_id, config=replace(c.config, links=kept))


# --- copies in and out (audit facts) ------------------------------------------------------


@on(v.ContainerPathArchived)
@on(v.ContainerPathExtracted)
@on(v.ContainerExported)
def _container_audited(tx: _Tx, env: Envelope, ev: Any) -> None:
    """A copy or export changes no state, but it is on the container's stream: its version
    moves, or the next command's optimistic check would fail forever."""
    tx.update_container(env, ev.container_id)


# --- the fold ------------------------------------------------------------------------------


def fold_batch(state: EngineState, envelopes: Sequence[Envelope]) -> tuple[
        EngineState, list[tuple[str, str, bytes | None]]]:
    """Fold a batch; return the new state and the rows (table, key, doc or None) it changed."""
    tx = _Tx(state)
    handlers = HANDLERS
    for env in envelopes:
        handler = handlers.get(type(env.event))
        if handler is not None:
            handler(tx, env, env.event)
        tx.seq = env.seq
    return tx.finish(), tx.rows()


def apply(state: EngineState, envelope: Envelope) -> EngineState:
    """One event onto a state: the definition the property tests hold the batch fold to."""
    return fold_batch(state, (envelope,))[0]


def fold(envelopes: Iterable[Envelope], state: EngineState | None = None) -> EngineState:
    """Fold any number of envelopes without computing rows (rebuild and time travel)."""
    builder = FoldBuilder(state or EngineState())
    builder.feed(envelopes)
    return builder.state()


class FoldBuilder:
    """A rows-free fold kept open across many stretches of the log (a rebuild that snapshots
    on its way): its maps stay plain dicts between `feed`s, so each stretch costs only its
    events, not two copies of the whole state (persistent maps → dicts → persistent maps).
    `state()` freezes what has been folded so far; the builder can go on after it."""

    __slots__ = ("_tx",)

    def __init__(self, state: EngineState) -> None:
        self._tx = _Tx(state, rebuild=True)

    @property
    def seq(self) -> int:
        return self._tx.seq

    def feed(self, envelopes: Iterable[Envelope]) -> None:
        tx = self._tx
        get = HANDLERS.get
        env = None
        for env in envelopes:
            handler = get(type(env.event))
            if handler is not None:
                handler(tx, env, env.event)
        if env is not None:  # no handler reads tx.seq: set it once, not per event
            tx.seq = env.seq

    def maps(self) -> dict[str, dict[str, Any]]:
        """The live dicts, by `EngineState` field name: read them, never keep them."""
        return {name: getattr(self._tx, name) for name in _MAPS}

    def state(self) -> EngineState:
        return self._tx.finish()
