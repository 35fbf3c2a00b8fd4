"""Views to Docker's JSON: what `inspect`, `ps` and `images` show, in the API's shapes.

I/O: none. Takes projection views (and the time, for "Up 3 seconds") and returns the
msgspec models of `engine/api/docker/models.py`, so that the docker CLI and SDK read us unchanged.
"""

from __future__ import annotations

import heapq
import itertools
import operator
import shlex
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from engine.api.docker import inspect_host
from engine.api.docker import models as m
from engine.core import oci_spec
from engine.core.networks import start_networks
from engine.core.security_opts import SYSTEMPATHS_UNCONFINED, parse_security_opts
from engine.core.units import ZERO_TIME as ZERO_TIME  # re-exported: callers import it here
from engine.core.units import human_duration, rfc3339
from events.values import ContainerConfig, HealthCheck, ImageConfig, MountSpec
from projections.state import ContainerView, EngineState, ImageView, NetworkView


def status_template(c: ContainerView) -> tuple[str, int | None, str]:
    """`(head, since_ns, tail)`: STATUS is `head + human_duration(now - since_ns) + tail`,
    or just `head` when `since_ns` is None (it does not depend on the clock)."""
    if c.status == "running" and c.health:
        shown = "health: starting" if c.health == "starting" else c.health
        return "Up ", c.started_at, f" ({shown})"
    if c.status == "running":
        return "Up ", c.started_at, ""
    if c.status == "paused":
        return "Up ", c.started_at, " (Paused)"
    if c.status == "restarting":
        return f"Restarting ({c.exit_code}) ", c.finished_at, " ago"
    if c.status == "removing":
        return "Removal In Progress", None, ""
    if c.status == "exited" and c.finished_at:
        return f"Exited ({c.exit_code}) ", c.finished_at, " ago"
    if c.status == "exited":
        return f"Exited ({c.exit_code})", None, ""
    return "Created", None, ""


def status_line(c: ContainerView, now_ns: int) -> str:
    """`ps`'s STATUS column, as moby `container.State.String()` writes it."""
    head, since, tail = status_template(c)
    return head if since is None else head + human_duration((now_ns - since) / 1e9) + tail


def _docker_status(c: ContainerView) -> str:
    return "created" if c.status == "creating" else c.status


def _env_keys(config: ContainerConfig) -> list[str]:
    # Values never leave the secret store through the API either: `inspect` shows which
    # variables are set, with a marker instead of the value (DESIGN.md, "Secrets").
    return [f"{e.key}=<redacted>" if e.digest else e.key for e in config.env]


def _ports(c: ContainerView) -> dict[str, list[m.PortBindingOut] | None]:
    out: dict[str, list[m.PortBindingOut] | None] = {p: None for p in c.config.exposed_ports}
    for p in c.ports:
        key = f"{p.binding.container_port}/{p.binding.protocol}"
        out.setdefault(key, [])
        bound = out[key] or []
        bound.append(
            m.PortBindingOut(
                HostIp=p.binding.host_ip or "0.0.0.0", HostPort=str(p.binding.host_port)
            )
        )
        out[key] = bound
    return out


def container_config(c: ContainerView, image: ImageView | None) -> m.DockerContainerConfig:
    cfg = c.config
    image_env = list(image.config.env) if image else []
    return m.DockerContainerConfig(
        Hostname=cfg.hostname or c.id[:12],
        Domainname=cfg.domainname,
        User=cfg.user,
        AttachStdin=cfg.open_stdin,
        AttachStdout=True,
        AttachStderr=True,
        ExposedPorts={p: {} for p in cfg.exposed_ports} or None,
        Tty=cfg.tty,
        OpenStdin=cfg.open_stdin,
        StdinOnce=cfg.stdin_once,
        Env=image_env + _env_keys(cfg),
        Cmd=list(cfg.cmd) or None,
        Image=cfg.image,
        Volumes={mt.target: {} for mt in cfg.mounts if _anonymous_volume(mt)} or None,
        WorkingDir=cfg.working_dir,
        Entrypoint=list(cfg.entrypoint) or None,
        Labels=dict(cfg.labels),
        StopSignal=cfg.stop_signal or None,
        StopTimeout=cfg.stop_timeout,
        Healthcheck=_health_config(cfg.healthcheck),
        MacAddress=cfg.mac_address or None,  # API 1.43 keeps --mac-address here too
    )


def _anonymous_volume(mt: MountSpec) -> bool:
    """`Config.Volumes` lists the anonymous volumes (`-v /data`, the image's VOLUMEs), as
    Docker's does; a named volume or bind is in `HostConfig.Binds`/`Mounts` only. A record
    made before mounts kept their mode tells them by their generated 64-hex name."""
    if mt.type != "volume" or (mt.mode is not None and mt.mode != ""):
        return False
    return not mt.source or inspect_host.anonymous(mt)


def _health_config(check: HealthCheck | None) -> m.HealthConfig | None:
    if check is None:
        return None
    return m.HealthConfig(Test=list(check.test), Interval=check.interval_ns or None,
                          Timeout=check.timeout_ns or None, Retries=check.retries or None,
                          StartPeriod=check.start_period_ns or None)


def health_state(c: ContainerView, results: Sequence[Any] = (),
                 failing_streak: int | None = None) -> m.Health | None:
    """`State.Health`: the verdict from the log; the last probes from the daemon's memory."""
    if c.config.healthcheck is None or not c.config.healthcheck.enabled or not c.health:
        return None
    return m.Health(
        Status=c.health,
        FailingStreak=c.health_failing_streak if failing_streak is None else failing_streak,
        Log=[m.HealthcheckResult(Start=rfc3339(r.start_ns), End=rfc3339(r.end_ns),
                                 ExitCode=r.exit_code, Output=r.output) for r in results])


def _system_paths(cfg: ContainerConfig, default: Sequence[str]) -> list[str] | None:
    """Masked or read-only paths as inspect shows them: none when privileged, an empty
    list with systempaths=unconfined, else the defaults."""
    if cfg.privileged:
        return None
    return [] if parse_security_opts(cfg.security_opt).unconfined_paths else list(default)


def host_config(cfg: ContainerConfig) -> m.HostConfig:
    return m.HostConfig(
        NetworkMode=cfg.network_mode,
        RestartPolicy=m.RestartPolicyBody(
            Name=cfg.restart_policy.name, MaximumRetryCount=cfg.restart_policy.maximum_retry_count
        ),
        AutoRemove=cfg.auto_remove,
        Memory=cfg.memory,
        NanoCpus=cfg.nano_cpus,
        PidsLimit=cfg.pids_limit or None,
        ReadonlyRootfs=cfg.read_only,
        Init=cfg.init,
        Privileged=cfg.privileged,
        CapAdd=list(cfg.cap_add) or None,
        CapDrop=list(cfg.cap_drop) or None,
        # systempaths=unconfined shows as the empty lists below, as Docker shows it
        SecurityOpt=[o for o in cfg.security_opt if o != SYSTEMPATHS_UNCONFINED] or (
            ["no-new-privileges"] if cfg.no_new_privileges and not cfg.security_opt
            else None),
        # what the spec masks and makes read-only (none when privileged), as Docker shows
        MaskedPaths=_system_paths(cfg, oci_spec.MASKED_PATHS),
        ReadonlyPaths=_system_paths(cfg, oci_spec.READONLY_PATHS),
        LogConfig=m.LogConfig(Type=cfg.log_driver, Config=dict(cfg.log_options)),
        **inspect_host.host_config_fields(cfg),
    )


def inspect_container(
    state: EngineState, c: ContainerView, *, log_path: str = "", now_ns: int,
    health: m.Health | None = None, volumes_root: str = "", state_root: str = "",
) -> m.ContainerInspect:
    image = state.images.get(c.config.image_id)
    args = list(c.config.entrypoint) + list(c.config.cmd)
    status = _docker_status(c)
    return inspect_host.finish(state, c, m.ContainerInspect(
        Id=c.id,
        Created=rfc3339(c.created_at),
        Path=args[0] if args else "",
        Args=args[1:],
        State=m.ContainerState(
            Status=status,
            Running=status in ("running", "paused"),
            Paused=status == "paused",
            Restarting=status == "restarting",
            OOMKilled=c.oom_killed,
            Dead=status == "dead",
            Pid=c.pid,
            ExitCode=c.exit_code,
            Error=c.error,
            StartedAt=rfc3339(c.started_at),
            FinishedAt=rfc3339(c.finished_at),
            Health=health or health_state(c),
        ),
        Image=c.config.image_id,
        LogPath=log_path,
        Name="/" + c.name,
        RestartCount=c.restart_count,
        ExecIDs=list(c.execs) or None,
        HostConfig=host_config(c.config),
        GraphDriver=inspect_host.graph_driver(
            state_root, image.layers if image is not None else (), c.id),
        Mounts=inspect_host.mount_points(c, volumes_root),
        Config=container_config(c, image),
        NetworkSettings=m.NetworkSettings(Ports=_ports(c), Networks=_endpoints(state, c)),
    ))


def _mount_points(c: ContainerView) -> list[m.MountPoint]:
    """The list's `Mounts`: inspect's, without the volumes' host paths (the list has no
    state root at hand; Compose reads names and destinations)."""
    return inspect_host.mount_points(c)


def _endpoints(state: EngineState, c: ContainerView) -> dict[str, m.NetworkEndpoint]:
    # Docker keys endpoints by network name (`{{.NetworkSettings.Networks.bridge}}`).
    return {
        (n.name if (n := _net(state, nid)) else nid): m.NetworkEndpoint(
            NetworkID=nid,
            IPAddress=ep.ip,
            MacAddress=ep.mac,
            Gateway=n.gateway if n else "",
            IPPrefixLen=_prefix(_net(state, nid)),
            Aliases=_aliases(_net(state, nid), c, ep.aliases),
            **_v6_fields(_net(state, nid), ep.ip6),
        )
        for nid, ep in c.networks.items()
    } or _planned_networks(state, c)


def _aliases(net: NetworkView | None, c: ContainerView, given: Sequence[str]) -> list[str] | None:
    """An endpoint's aliases: the ones asked for, and on a user network the container's short
    ID (moby daemon.updateNetworkConfig), which Compose reads to tell its containers apart and
    our DNS answers (engine/core/dns_names.py)."""
    aliases = list(given)
    if net is not None and net.name != "bridge" and c.id[:12] not in aliases:
        aliases.append(c.id[:12])
    return aliases or None


def _planned_networks(state: EngineState, c: ContainerView) -> dict[str, m.NetworkEndpoint]:
    """A container with no endpoint (created, exited) still reports the networks it joins at
    start, as Docker does; on user networks its short ID is an alias (moby
    daemon.updateNetworkConfig), which Compose reads to tell its containers apart."""
    out = {}
    for nid, ep in start_networks(state, c).items():
        net = _net(state, nid)
        out[net.name if net else nid] = m.NetworkEndpoint(
            NetworkID=nid, Aliases=_aliases(net, c, ep.aliases),
            IPAMConfig={"IPv4Address": ep.ip} if ep.ip else None)
    return out


def _net(state: EngineState, nid: str) -> NetworkView | None:
    return state.networks.get(nid)  # type: ignore[no-any-return]


def _v6_fields(net: NetworkView | None, ip6: str) -> dict[str, Any]:
    """An endpoint's IPv6 address, prefix and gateway (issue 13), as Docker shows them."""
    if net is None or not ip6 or "/" not in net.subnet6:
        return {}
    return {"GlobalIPv6Address": ip6, "GlobalIPv6PrefixLen": int(net.subnet6.split("/")[1]),
            "IPv6Gateway": net.gateway6}


def _prefix(net: NetworkView | None) -> int:
    return int(net.subnet.split("/")[1]) if net is not None and "/" in net.subnet else 0


def command_line(c: ContainerView) -> str:
    return " ".join(
        shlex.quote(a) if " " in a else a for a in list(c.config.entrypoint) + list(c.config.cmd)
    )


def summary(state: EngineState, c: ContainerView, *, now_ns: int) -> m.ContainerSummary:
    return m.ContainerSummary(
        Id=c.id,
        Names=["/" + c.name],
        Image=c.config.image,
        ImageID=c.config.image_id,
        Command=command_line(c),
        Created=c.created_at // 1_000_000_000,
        Ports=[
            m.Port(
                PrivatePort=p.binding.container_port,
                Type=p.binding.protocol,
                IP=p.binding.host_ip or "0.0.0.0",
                PublicPort=p.binding.host_port,
            )
            for p in c.ports
        ],
        Labels=dict(c.config.labels),
        State=_docker_status(c),
        Status=status_line(c, now_ns),
        HostConfig=m.SummaryHostConfig(NetworkMode=c.config.network_mode),
        # Compose reads both from the list: a running service off one of its networks is
        # recreated, and a recreated one inherits its anonymous volumes (issue 14).
        NetworkSettings=m.SummaryNetworkSettings(Networks=_endpoints(state, c)),
        Mounts=_mount_points(c),
    )


# Two Status values of one length that differ in their first byte: a summary encoded with each
# differs exactly where its Status value starts (`SummaryCache` splices STATUS in there).
_MARK_A, _MARK_B = "A" * 16, "B" * 16
_STATUS_A, _STATUS_B = (f'"Status":"{mark}"'.encode() for mark in (_MARK_A, _MARK_B))


def _next_change(secs: int) -> int:
    """A whole number of seconds, above `secs`, before which `human_duration` spells every
    duration from `secs` on the same way (seconds, then minutes; past an hour it moves at
    :30 (hours rounded) or :00 (years), so every half hour)."""
    if secs < 60:
        return secs + 1
    if secs < 3600:
        return (secs // 60 + 1) * 60
    return (secs // 1800 + 1) * 1800


def _spell(head: str, since: int, tail: str, now_ns: int) -> tuple[bytes, int]:
    """STATUS as JSON string content, and the moment (ns) until which it stays the same
    (a millisecond early: float rounding in `status_line` may not move it first)."""
    secs = int((now_ns - since) / 1e9)
    text = msgspec.json.encode(head + human_duration(secs) + tail)[1:-1]
    return text, max(since + _next_change(secs) * 1_000_000_000 - 1_000_000, now_ns + 1)


class _Entry:
    """One container's summary as JSON: `block` is the whole of it; when STATUS depends on
    the clock, `block` is `before + STATUS text + after`, the text as spelled at `spelled_at`
    and good until `until` (ns)."""

    __slots__ = ("last_seq", "block", "before", "after", "head", "since", "tail",
                 "spelled_at", "until")

    def __init__(self, last_seq: int, block: bytes, before: bytes | None, after: bytes,
                 template: tuple[str, int | None, str]) -> None:
        self.last_seq, self.block, self.before, self.after = last_seq, block, before, after
        self.head, self.since, self.tail = template
        self.spelled_at, self.until = 0, -1

    def respell(self, now_ns: int) -> None:
        assert self.before is not None and self.since is not None
        text, self.until = _spell(self.head, self.since, self.tail, now_ns)
        self.spelled_at = now_ns
        self.block = self.before + text + self.after


class _Rendered:
    """One cached listing as JSON pieces, `[`, one block per container with `,` between,
    `]`, joined once: per call, only the blocks whose STATUS text is due (a heap by the
    moment each one changes) are spelled again."""

    def __init__(self, listing: list[ContainerView], parts: list[bytes],
                 heap: list[tuple[int, int, _Entry]], now_ns: int) -> None:
        self.listing, self.parts, self.heap, self.now_ns = listing, parts, heap, now_ns
        self.joined: bytes | None = None

    def body(self, now_ns: int) -> bytes:
        heap, parts = self.heap, self.parts
        changed = self.joined is None
        while heap and heap[0][0] <= now_ns:
            _, at, entry = heap[0]
            entry.respell(now_ns)
            changed = changed or entry.block != parts[2 * at + 1]
            parts[2 * at + 1] = entry.block
            heapq.heapreplace(heap, (entry.until, at, entry))
        self.now_ns = now_ns
        if changed:
            self.joined = b"".join(parts)
        assert self.joined is not None
        return self.joined

    def moved_on(self, listing: list[ContainerView], changed: list[int],
                 entries: list[_Entry]) -> _Rendered:
        """The same listing with the containers at `changed` replaced by `entries` (their
        blocks already spelled at or after `self.now_ns`): copies the pieces and the heap
        instead of encoding every container again."""
        parts = self.parts.copy()
        gone = set(changed)
        heap = [item for item in self.heap if item[1] not in gone]
        for at, entry in zip(changed, entries, strict=True):
            parts[2 * at + 1] = entry.block
            if entry.before is not None:
                heap.append((entry.until, at, entry))
        heapq.heapify(heap)
        return _Rendered(listing, parts, heap, self.now_ns)


def _pieces(blocks: list[bytes]) -> list[bytes]:
    """`[`, the blocks with `,` between them, `]`: block `at` is piece `2 * at + 1`."""
    if not blocks:
        return [b"[]"]
    parts = [b","] * (2 * len(blocks) + 1)
    parts[1::2] = blocks
    parts[0], parts[-1] = b"[", b"]"
    return parts


_CREATED_AT = operator.attrgetter("created_at")
_ID = operator.attrgetter("id")
_MOVE_ON_AT_MOST = 256  # changed containers patched into a kept listing; more: encode anew


class SummaryCache:
    """`ps` over thousands of containers. Per container, its summary is kept encoded (one
    JSON block, with STATUS spliced in) until the container changes (its `last_seq` moves);
    STATUS, which depends on the clock, is spelled again only when its text changes. The
    listings without filters (`ps`, `ps -a`) are kept per state (`state.containers` is a
    new map whenever any container changes), with their blocks: while the state stands
    still, a call re-spells only the STATUS texts that changed since the last one."""

    def __init__(self) -> None:
        self._by_id: dict[str, _Entry] = {}
        self._listed_of: object = None
        self._listings: dict[bool, list[ContainerView]] = {}
        self._rendered: list[_Rendered] = []

    def listing(self, state: EngineState, *, show_all: bool = True) -> list[ContainerView]:
        """`state`'s containers newest first (Docker's `ps` order); without `show_all`, the
        running, paused and restarting ones. Shared: callers must not change it."""
        if self._listed_of is not state.containers:
            self._move_on(state)
        found = self._listings.get(show_all)
        if found is None:
            found = sorted(state.containers.values(), key=_CREATED_AT, reverse=True)
            if not show_all:
                found = [c for c in found if c.status in ("running", "paused", "restarting")]
            self._listings[show_all] = found
        return found

    def _move_on(self, state: EngineState) -> None:
        """The containers map changed. When no container came or went and only a few
        changed (a start, a stop: the usual case), the new `ps -a` listing is the old one
        with those views swapped in place (a container's `created_at` never changes, so the
        order holds) and its blocks are the old ones with theirs re-encoded: no sort, no
        pass over every container in Python."""
        old = self._listings.get(True)
        rendered = next((r for r in self._rendered if r.listing is old), None)
        self._listings.clear()
        self._rendered.clear()
        self._listed_of = containers = state.containers
        if old is None or len(old) != len(containers):
            return
        # All in C (map, compress): a Python loop over 10,000 containers costs more than
        # the sort this saves.
        new: list[Any] = list(map(containers.get, map(_ID, old)))
        changed = list(itertools.compress(range(len(new)), map(operator.is_not, old, new)))
        if any(new[at] is None for at in changed):
            return  # as many containers, but not the same ones
        self._listings[True] = new
        if rendered is None or len(changed) > _MOVE_ON_AT_MOST:
            return
        entries = []
        for at in changed:
            entry = self._by_id[new[at].id] = self._entry(state, new[at])
            if entry.before is not None:
                entry.respell(rendered.now_ns)
            entries.append(entry)
        self._rendered.append(rendered.moved_on(new, changed, entries))

    def summaries(self, state: EngineState, containers: list[ContainerView], *,
                  now_ns: int) -> list[m.ContainerSummary]:
        return [msgspec.structs.replace(summary(state, c, now_ns=0), Status=status_line(c, now_ns))
                for c in containers]

    def encoded(self, state: EngineState, containers: list[ContainerView], *,
                now_ns: int) -> bytes:
        """`msgspec.json.encode(self.summaries(...))`, byte for byte, much faster."""
        for rendered in self._rendered:
            if rendered.listing is containers and self._listed_of is state.containers:
                if now_ns >= rendered.now_ns:
                    return rendered.body(now_ns)
                self._rendered.remove(rendered)  # the clock stepped back: spell all again
                break
        by_id = self._by_id
        blocks: list[bytes] = []
        add = blocks.append
        heap: list[tuple[int, int, _Entry]] = []
        for c in containers:
            entry = by_id.get(c.id)
            if entry is None or entry.last_seq != c.last_seq:
                entry = by_id[c.id] = self._entry(state, c)
            if entry.before is not None:
                if not entry.spelled_at <= now_ns < entry.until:  # else an earlier text holds
                    entry.respell(now_ns)
                heap.append((entry.until, len(blocks), entry))
            add(entry.block)
        if len(by_id) > 2 * len(state.containers) + 64:
            self._by_id = {k: v for k, v in by_id.items() if k in state.containers}
        if self._listed_of is state.containers and any(
                containers is kept for kept in self._listings.values()):
            heapq.heapify(heap)
            rendered = _Rendered(containers, _pieces(blocks), heap, now_ns)
            self._rendered.append(rendered)
            return rendered.body(now_ns)
        return b"".join(_pieces(blocks))

    @staticmethod
    def _entry(state: EngineState, c: ContainerView) -> _Entry:
        base = summary(state, c, now_ns=0)
        a = msgspec.json.encode(msgspec.structs.replace(base, Status=_MARK_A))
        at = a.find(_STATUS_A)
        if a.find(_STATUS_A, at + 1) != -1:
            # A label holds the same bytes as `"Status":"AAA…`: the Status value is where
            # an encoding with another mark differs.
            b = msgspec.json.encode(msgspec.structs.replace(base, Status=_MARK_B))
            while b[at:at + len(_STATUS_B)] != _STATUS_B:
                at = a.find(_STATUS_A, at + 1)
        at += len(b'"Status":"')
        before, after = a[:at], a[at + len(_MARK_A):]
        template = status_template(c)
        head, since, _ = template
        if since is None:  # STATUS does not depend on the clock
            return _Entry(c.last_seq, before + msgspec.json.encode(head)[1:-1] + after, None,
                          after, template)
        return _Entry(c.last_seq, b"", before, after, template)


def _image_created(cfg: ImageConfig, fallback_ns: int) -> tuple[str, int]:
    if cfg.created:
        try:
            dt = datetime.fromisoformat(cfg.created.replace("Z", "+00:00"))
            return cfg.created, int(dt.timestamp())
        except ValueError:
            pass
    return rfc3339(fallback_ns), fallback_ns // 1_000_000_000


def image_summary(state: EngineState, img: ImageView) -> m.ImageSummary:
    _, created = _image_created(img.config, img.created_at)
    users = sum(1 for c in state.containers.values() if c.config.image_id == img.id)
    return m.ImageSummary(
        Id=img.id,
        RepoTags=list(img.repo_tags),
        RepoDigests=list(img.repo_digests),
        Created=created,
        Size=img.size,
        VirtualSize=img.size,
        Labels=dict(img.config.labels),
        Containers=users,
    )


# moby api/types/container.Config, in its field order; the others are `omitempty`.
_CONFIG_ZERO: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "ExposedPorts": None, "Tty": False, "OpenStdin": False,
    "StdinOnce": False, "Env": None, "Cmd": None, "Healthcheck": None, "ArgsEscaped": None,
    "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None,
    "NetworkDisabled": None, "MacAddress": None, "OnBuild": None, "Labels": None,
    "StopSignal": None, "StopTimeout": None, "Shell": None,
}
_OMITEMPTY = frozenset({"ExposedPorts", "Healthcheck", "ArgsEscaped", "NetworkDisabled",
                        "MacAddress", "StopSignal", "StopTimeout", "Shell"})


def docker_config(doc: Any) -> dict[str, Any]:
    """An image config's `config` or `container_config` object as Docker's image inspect
    writes it (a Go container.Config): every field it always sends, in its order, zero
    values where the image has none, and the `omitempty` ones only when set."""
    doc = doc if isinstance(doc, dict) else {}
    out: dict[str, Any] = {}
    for key, zero in _CONFIG_ZERO.items():
        value = doc.get(key, zero)
        if key in _OMITEMPTY and not value:
            continue
        out[key] = zero if value is None else value
    return out


def _config_from_view(cfg: ImageConfig) -> dict[str, Any]:
    """`config` rebuilt from what the log recorded, when the config blob cannot be read."""
    health = _health_config(cfg.healthcheck)
    return docker_config({
        "Env": list(cfg.env) or None, "Cmd": list(cfg.cmd) or None,
        "Entrypoint": list(cfg.entrypoint) or None, "WorkingDir": cfg.working_dir,
        "User": cfg.user, "Labels": dict(cfg.labels) or None,
        "ExposedPorts": {p: {} for p in cfg.exposed_ports},
        "Volumes": {v: {} for v in cfg.volumes} or None, "StopSignal": cfg.stop_signal,
        "Healthcheck": msgspec.to_builtins(health) if health is not None else None,
    })


def image_inspect(img: ImageView, raw_config: bytes | None = None, *,
                  state_root: str = "") -> m.ImageInspect:
    """`raw_config`: the image's config blob. Docker answers from it, and clients of API 1.43
    still read its `ContainerConfig` (docker-compose 1.29: `KeyError: 'ContainerConfig'` on
    recreate); an image built without one (BuildKit) gets Docker 24's empty config."""
    created, _ = _image_created(img.config, img.created_at)
    cfg = img.config
    doc: Any = None
    if raw_config is not None:
        try:
            doc = msgspec.json.decode(raw_config)
        except msgspec.DecodeError:
            doc = None
    doc = doc if isinstance(doc, dict) else {}
    return m.ImageInspect(
        Id=img.id,
        RepoTags=list(img.repo_tags),
        RepoDigests=list(img.repo_digests),
        Created=created,
        Container=str(doc.get("container") or ""),
        ContainerConfig=docker_config(doc.get("container_config")),
        DockerVersion=str(doc.get("docker_version") or ""),
        Author=str(doc.get("author") or ""),
        Comment=str(doc.get("comment") or ""),
        Config=docker_config(doc["config"]) if isinstance(doc.get("config"), dict)
        else _config_from_view(cfg),
        Architecture=cfg.architecture,
        Os=cfg.os,
        Size=img.size,
        VirtualSize=img.size,
        GraphDriver=inspect_host.graph_driver(state_root, img.layers),
        RootFS=m.RootFS(Layers=list(img.layers)),
        Metadata=m.ImageMetadata(LastTagTime=rfc3339(img.last_tagged_at)),
    )
