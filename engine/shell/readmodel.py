"""The read model: what the log and the state root answer to a read, as plain data (our
projections' views, dicts, lists, msgspec structs), shared by the daemon's GET routes and the
CLI's `--root` local mode (engine/cli/local.py), so that both answer alike and neither needs
the other's machinery: no HTTP types here, no trio. Which object a reference names and the
event filters are in `logobjects.py`.

I/O: SQLite reads through the `EventStore` (or a reader) each function is given; container
log files, disk usage and host facts through the drivers (`ReadModel`'s methods). The daemon
runs these in worker threads; local mode calls them directly.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from engine.core.errors import InvalidArgument, NotFound, ShipslogError
from engine.shell import replay
from engine.shell.logobjects import (
    KINDS,
    actor_filter_of,
    object_events,
    resolve,
)
from engine.shell.logread import (
    first_seq_at,
    point_of,
    seq_of,
    shown_envelopes,
    state_at,
    time_of,
)
from events import vocabulary as v
from events.envelope import Actor, Envelope
from events.store import EventStore
from projections import history as hist
from projections.actors import (
    ACTOR_KEYS,
    filter_timeline,
    filter_who,
)
from projections.compose import fold as compose_fold
from projections.compose import history as compose_history_of
from projections.compose import members as compose_members
from projections.compose import projects as compose_projects
from projections.state import EngineState
from projections.timetravel import Point, diff

WHO_KEYS = ACTOR_KEYS  # history and audit who: filters by who acted (issue 18)


# ------------------------------------------------------------------------ times


def parse_event_time(value: str | None, now_ns: int) -> int | None:
    """Docker sends `since`/`until` as Unix seconds (`1700000000.123456789`); we also take
    RFC 3339 from other clients."""
    if not value:
        return None
    try:
        secs, _, frac = value.partition(".")
        return int(secs) * 1_000_000_000 + int((frac + "000000000")[:9])
    except ValueError:
        pass
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e9)
    except ValueError:
        raise InvalidArgument(
            f"invalid time {value!r}", hint="use Unix seconds or RFC 3339"
        ) from None


def parse_event_until(value: str | None, now_ns: int) -> int | None:
    """An events `until`: whole Unix seconds (`--until $(date +%s)`) include that whole
    second, or the events of its last fraction are dropped (issue 18)."""
    until = parse_event_time(value, now_ns)
    if until is not None and value is not None and value.strip().isdigit():
        until += 999_999_999
    return until


# ------------------------------------------------------------------------ events as lines


def rfc3339_nano(ns: int) -> str:
    secs, nanos = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


class EventLine(msgspec.Struct, frozen=True):
    """An event in shipslog's own format: every envelope field and the whole payload (whose
    `type` is the event's name)."""

    seq: int
    time: str
    timeNano: int  # noqa: N815 - Docker's spelling, so `--format '{{.timeNano}}'` carries over
    type: str
    stream: str
    stream_version: int
    schema_version: int
    op_id: str
    actor: Actor
    event: Any
    hash: str
    command_id: str | None = None


_LINES = msgspec.json.Encoder()


def event_lines(envelopes: list[Envelope]) -> bytes:
    """Newline-delimited JSON of the envelopes (one encoder call per page: the stream's hot
    path)."""
    lines = []
    last_ns, last_text = -1, ""
    for env in shown_envelopes(envelopes):
        if env.recorded_at != last_ns:  # a batch shares its timestamp
            last_ns, last_text = env.recorded_at, rfc3339_nano(env.recorded_at)
        lines.append(EventLine(env.seq, last_text, env.recorded_at, type(env.event).__name__,
                               env.stream, env.stream_version, env.schema_version, env.op_id,
                               env.actor, env.event, env.hash, env.command_id))
    return _LINES.encode_lines(lines)


def envelope_json(env: Envelope) -> dict[str, Any]:
    """One event as a plain dict (the same fields `event_lines` writes)."""
    decoded: dict[str, Any] = msgspec.json.decode(event_lines([env]))
    return decoded


def config_history(reader: EventStore[Any], state: EngineState, ref: str,
                   archive: Path | None) -> dict[str, Any]:
    """`history CONTAINER --changes`: its configuration over time. Network connects are on
    the network's stream: found by type (indexed) and container id."""
    from projections.confighistory import config_changes

    _, cid, stream = resolve(reader, state, ref, "container")
    own = object_events(reader, stream, archive)
    nets = [e for e in reader.read(0, types=["NetworkConnected", "NetworkDisconnected"])
            if getattr(e.event, "container_id", None) == cid]
    names = {nid: n.name for nid, n in state.networks.items()}
    envs = shown_envelopes(sorted(own + nets, key=lambda e: e.seq))
    return {"kind": "container", "id": cid, "name": _name_in(own),
            "changes": config_changes(envs, names)}


def _name_in(envelopes: list[Envelope]) -> str:
    name = ""
    for env in envelopes:
        if isinstance(env.event, v.ContainerCreateRequested):
            name = env.event.name
        elif isinstance(env.event, v.ContainerRenamed):
            name = env.event.new_name
    return name


def page(reader: EventStore[Any], after: int, size: int, until: int) -> list[Envelope]:
    return list(reader.read(after, limit=size, until_seq=until))


def _hash_at(reader: EventStore[Any], seq: int) -> str | None:
    """The stored hash of event `seq`, live or archived (None if there is none). Reads the
    hash column only: on a tampered log the event's payload may not decode at all."""
    if seq < 1 or seq > reader.head():
        return None
    return reader.hash_at(seq)


def _first_at(reader: EventStore[Any], time_ns: int) -> int:
    """`after_seq` for a stream that starts at the first event recorded at or after a time."""
    return first_seq_at(reader, time_ns) - 1


def _within(row: hist.WhoRow, lo: Point | None, hi: Point | None) -> bool:
    for point, before in ((lo, False), (hi, True)):
        if point is None:
            continue
        value, bound = (row.seq, point.seq) if point.seq is not None else (row.time_ns,
                                                                          point.time_ns)
        assert bound is not None
        if (value > bound) if before else (value < bound):
            return False
    return True


def _compose_project(reader: EventStore[Any], name: str) -> Any:
    """The Compose projection folded from the log, once `name` is known to be one of its
    projects (a 404 with the way to find the right name otherwise)."""
    state = compose_fold(reader.read(after_seq=0))
    if name not in compose_projects(state):
        raise NotFound(f"no such Compose project: {name}",
                       hint="projects are named by Compose's -p or the project's "
                            "directory; see 'shipslog ps --filter project=NAME'")
    return state


# ------------------------------------------------------------------------ the engine's state


class HostFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What `version` and `info` say of the host."""

    python_version: str
    arch: str  # Go's name: amd64, arm64
    machine: str
    kernel: str
    node: str
    os_name: str
    cpus: int
    memory: int
    open_fds: int
    cgroup_version: str
    firewall: Any = None  # FirewallFacts, when asked for (it runs iptables/nft)


class ReadModel:
    """The state, the log and the state root as a reader sees them: the daemon's live state
    (or a state frozen at a point of the log, or the log folded by local mode), with what
    only the disk and the host know. Every method is blocking: the daemon calls the slow
    ones (sizes, log records, host facts with the firewall) in a worker thread."""

    def __init__(self, *, store: Any, paths: Any, state: Callable[[], EngineState],
                 clock: Callable[[], int], engine_id: str = "", runc_version: str = "",
                 content: Any = None, health: Callable[[Any], Any] | None = None,
                 warnings: Callable[[], list[str]] | None = None,
                 replication: Callable[[], dict[str, object] | None] | None = None,
                 tasks: Callable[[], int] | None = None) -> None:
        self.store = store
        self.paths = paths
        self._state = state
        self._clock = clock
        self.engine_id = engine_id
        self.runc_version = runc_version
        self.content = content  # the content store: image configs (None: answer from the log)
        self._health = health
        self._warnings = warnings
        self._replication = replication
        self._tasks = tasks

    @property
    def state(self) -> EngineState:
        return self._state()

    def now(self) -> int:
        return int(self._clock())

    def health_of(self, container: Any) -> Any:
        """State.Health with the last probes, which only the running daemon remembers."""
        return None if self._health is None else self._health(container)

    def warnings(self) -> list[str]:
        return [] if self._warnings is None else self._warnings()

    def replication(self) -> dict[str, object] | None:
        return None if self._replication is None else self._replication()

    def tasks(self) -> int:
        return 0 if self._tasks is None else self._tasks()

    def image_config(self, image_id: str, *, strict: bool) -> bytes | None:
        """The image's config blob; with `strict`, its absence is the content store's error,
        else None (the answer then comes from what the log recorded)."""
        if self.content is None:
            if strict:
                raise NotFound(f"the config of image {image_id} is in the daemon's content "
                               "store", hint="start shipslogd and ask again without --root")
            return None
        if strict:
            raw: bytes = self.content.read_bytes(image_id, max_size=8 << 20)
            return raw
        try:
            found: bytes = self.content.read_bytes(image_id, max_size=8 << 20)
            return found
        except (ShipslogError, OSError):
            return None

    def log_records(self, container_id: str, *, stdout: bool, stderr: bool, since_ns: int,
                    until_ns: int, tail: int | None) -> list[tuple[str, int, bytes]]:
        from engine.drivers.runtime.logs import read_logs

        return list(read_logs(self.paths.log_path(container_id), stdout=stdout,
                              stderr=stderr, since_ns=since_ns, until_ns=until_ns, tail=tail))

    def rw_sizes(self, container_ids: Iterable[str]) -> dict[str, int]:
        """The writable layers' sizes of these containers (`ps -s`; walks their upper dirs)."""
        from engine.shell.files import rw_size

        root = Path(self.paths.root)
        return {cid: rw_size(root, cid) for cid in container_ids}

    def sizes(self, state: EngineState, kinds: frozenset[str]
              ) -> tuple[dict[str, int], dict[str, int]]:
        """The sizes only the disk knows: containers' writable layers and volumes'
        contents."""
        from engine.shell.files import volume_size

        root = Path(self.paths.root)
        rw = self.rw_sizes(state.containers) if "container" in kinds else {}
        volumes = ({name: volume_size(root, name) for name in state.volumes}
                   if "volume" in kinds else {})
        return rw, volumes

    def unattributed(self) -> list[Any]:
        from engine.shell.leftovers import unattributed

        return unattributed(Path(self.paths.root))

    def release(self) -> tuple[str, str, str]:
        """What `version` says of the host: Python's version, Go's name for the
        architecture (amd64, arm64), the kernel release (uname, asked once per process)."""
        return host_release()

    def host(self, firewall: bool = False) -> HostFacts:
        """What `info` says of the host (blocking: /proc, /etc/os-release and, with
        `firewall`, iptables and nft)."""
        firewall_facts = None
        if firewall:
            from engine.drivers.network.hostfw import observe

            firewall_facts = observe()
        try:
            mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            mem = 0
        machine = platform.machine()
        return HostFacts(
            python_version=platform.python_version(),
            arch={"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine),
            machine=machine, kernel=platform.release(), node=platform.node(),
            os_name=_os_name(), cpus=os.cpu_count() or 1, memory=mem,
            open_fds=len(os.listdir("/proc/self/fd")),
            cgroup_version="2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1",
            firewall=firewall_facts)


def host_release() -> tuple[str, str, str]:
    machine = platform.machine()
    return (platform.python_version(), {"x86_64": "amd64", "aarch64": "arm64"}.get(
        machine, machine), platform.release())


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return sys.platform


# ------------------------------------------------------------------------ the log's answers
# Each takes a reader (the daemon gives each its own connection in a worker thread) and the
# state and time it answers against; each returns plain data.


def events_window(reader: EventStore[Any], since: str | None, until: str | None,
                  now_ns: int) -> tuple[int, int]:
    """`/shipslog/events`: the seq after which the stream starts and the one it ends at."""
    first = 0
    if since:
        p = point_of(since, now_ns, "since")
        first = p.seq - 1 if p.seq is not None else _first_at(reader, p.time_ns or 0)
    last = seq_of(reader, point_of(until, now_ns, "until")) if until else reader.head()
    return max(first, 0), last


def event_chunks(reader: EventStore[Any], after: int, last: int,
                 keep: Callable[[Envelope], bool] | None,
                 limit: int | None) -> Iterator[bytes]:
    """`/shipslog/events` without following: the events after `after` up to `last`, as
    pages of lines (the daemon asks for each page in a worker thread)."""
    sent = 0
    cursor = after
    while cursor < last:
        # A short first page: the first lines come out at once.
        size = 2000 if cursor > after else 100
        if limit is not None and keep is None:
            size = min(size, limit - sent)
        found = page(reader, cursor, size, last)
        if not found:
            return
        cursor = found[-1].seq
        chosen = found if keep is None else [e for e in found if keep(e)]
        if limit is not None:
            chosen = chosen[:limit - sent]
        sent += len(chosen)
        if chosen:
            yield event_lines(chosen)
        if limit is not None and sent >= limit:
            return


def history(reader: EventStore[Any], state: EngineState, ref: str, kind: str | None,
            filters: dict[str, list[str]], archive: Path | None, *,
            changes: bool = False) -> Any:
    """An object's timeline (removed objects too), filtered by who acted; with `changes`,
    a container's configuration over time."""
    if kind is not None and kind not in KINDS:
        raise InvalidArgument(f"unknown kind {kind!r}", hint="use " + ", ".join(KINDS))
    who = actor_filter_of(filters)
    if changes:
        return config_history(reader, state, ref, archive)
    k, ident, stream = resolve(reader, state, ref, kind)
    return filter_timeline(hist.build_timeline(k, ident, shown_envelopes(
        object_events(reader, stream, archive))), who)


def audit_head(reader: EventStore[Any]) -> dict[str, Any]:
    first = next(iter(reader.read(0, limit=1)), None)
    return {"seq": reader.head(), "hash": reader.last_hash(),
            "first_hash": first.hash if first else ""}


def audit_verify(reader: EventStore[Any], checkpoint_seq: int | None, until: int | None,
                 archive: str | None) -> dict[str, Any]:
    """The chain recomputed (archived events too); with `checkpoint_seq`, the stored hash
    there, for a checkpoint to be compared with."""
    result = reader.verify(until_seq=until, archive_dir=archive)
    out: dict[str, Any] = {
        "ok": result.ok, "checked": result.checked, "head": reader.head(),
        "first_bad_seq": result.first_bad_seq, "reason": result.reason,
        "last_hash": result.last_hash, "first_hash": _hash_at(reader, 1) or "",
        "archived": result.archived, "archived_checked": result.archived_checked,
        "missing_archives": list(result.missing_archives),
    }
    if checkpoint_seq is not None:
        out["hash_at_seq"] = _hash_at(reader, checkpoint_seq)
    return out


def audit_who(reader: EventStore[Any], state: EngineState, now_ns: int, *, ref: str | None,
              kind: str | None, uid: int | None, since: str | None, until: str | None,
              filters: dict[str, list[str]]) -> list[hist.WhoRow]:
    """Operations with their actors: of one object, or of the whole log."""
    who_of = actor_filter_of(filters)
    if ref:
        _, _, stream = resolve(reader, state, ref, kind)
        envs: Iterator[Envelope] = iter(object_events(reader, stream))
    else:
        envs = reader.read(0, types=["OperationRequested", "OperationCompleted",
                                     "OperationFailed", "OperationCompensated"])
    rows = hist.who(shown_envelopes(envs))
    lo = point_of(since, now_ns, "since") if since else None
    hi = point_of(until, now_ns, "until") if until else None
    return filter_who([row for row in rows
                       if (uid is None or row.uid == uid) and _within(row, lo, hi)], who_of)


def state_diff(reader: EventStore[Any], a: str | None, b: str | None,
               now_ns: int) -> dict[str, Any]:
    """What changed between two points of the log (`b` defaults to the head)."""
    pa = point_of(a, now_ns, "a")
    pb = point_of(b or f"seq:{1 << 62}", now_ns, "b")
    sa, sb = seq_of(reader, pa), seq_of(reader, pb)
    return {"a": sa, "b": sb, "changes": diff(state_at(reader, sa), state_at(reader, sb)),
            "a_time_ns": time_of(reader, sa, 0), "b_time_ns": time_of(reader, sb, 0)}


def state_at_point(reader: EventStore[Any], at: str | None,
                   now_ns: int) -> tuple[EngineState, int, int]:
    """The state at `at` (seq:N or a time), its seq, and the time it belongs to."""
    point = point_of(at, now_ns)
    seq = seq_of(reader, point)
    when = point.time_ns if point.time_ns is not None else time_of(reader, seq, now_ns)
    return state_at(reader, seq), seq, when


def replay_report(reader: EventStore[Any], to: int | None) -> dict[str, Any]:
    """Rebuild from zero up to `to` and compare with the live projection."""
    report = replay.replay_to(reader, to)
    out: dict[str, Any] = msgspec.to_builtins(report)
    out["ok"] = report.ok
    return out


def explain(reader: EventStore[Any], state: EngineState, ref: str) -> dict[str, Any]:
    """The core's decisions for a container, re-run."""
    _, cid, _ = resolve(reader, state, ref, "container")
    return {"id": cid, "steps": replay.explain(reader, cid)}


def compose_history(reader: EventStore[Any], name: str) -> list[dict[str, Any]]:
    # Compose projects are a fold of the log's labelled containers (issue 14).
    return compose_history_of(_compose_project(reader, name), name)


def compose_containers(reader: EventStore[Any], name: str) -> list[dict[str, Any]]:
    # The rows of `history project:NAME --html` (issue 18): removed containers too.
    return compose_members(_compose_project(reader, name), name)
