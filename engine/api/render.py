"""Views to Docker's JSON: what `inspect`, `ps` and `images` show, in the API's shapes.

I/O: none. Takes projection views (and the time, for "Up 3 seconds") and returns the
msgspec models of `engine/api/models.py`, so that the docker CLI and SDK read us unchanged.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from engine.api import models as m
from engine.units import human_duration
from events.values import ContainerConfig, HealthCheck, ImageConfig
from projections.state import ContainerView, EngineState, ImageView, NetworkView

ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(ns: int) -> str:
    """Docker's RFC 3339 with nanoseconds (`2024-01-02T03:04:05.123456789Z`)."""
    if ns <= 0:
        return ZERO_TIME
    secs, frac = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}Z"


def status_line(c: ContainerView, now_ns: int) -> str:
    """`ps`'s STATUS column, as moby `container.State.String()` writes it."""
    if c.status == "running" and c.health:
        shown = "health: starting" if c.health == "starting" else c.health
        return f"Up {human_duration((now_ns - c.started_at) / 1e9)} ({shown})"
    if c.status == "running":
        return f"Up {human_duration((now_ns - c.started_at) / 1e9)}"
    if c.status == "paused":
        return f"Up {human_duration((now_ns - c.started_at) / 1e9)} (Paused)"
    if c.status == "restarting":
        return f"Restarting ({c.exit_code}) {human_duration((now_ns - c.finished_at) / 1e9)} ago"
    if c.status == "removing":
        return "Removal In Progress"
    if c.status == "exited" and c.finished_at:
        return f"Exited ({c.exit_code}) {human_duration((now_ns - c.finished_at) / 1e9)} ago"
    if c.status == "exited":
        return f"Exited ({c.exit_code})"
    return "Created"


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
        Volumes={mt.target: {} for mt in cfg.mounts if mt.type == "volume"} or None,
        WorkingDir=cfg.working_dir,
        Entrypoint=list(cfg.entrypoint) or None,
        Labels=dict(cfg.labels),
        StopSignal=cfg.stop_signal,
        StopTimeout=cfg.stop_timeout,
        Healthcheck=_health_config(cfg.healthcheck),
    )


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
        SecurityOpt=["no-new-privileges"] if cfg.no_new_privileges else None,
        LogConfig=m.LogConfig(Type=cfg.log_driver, Config=dict(cfg.log_options)),
        Binds=[
            f"{mt.source}:{mt.target}" + (":ro" if mt.read_only else "")
            for mt in cfg.mounts
            if mt.type == "bind"
        ]
        or None,
    )


def inspect_container(
    state: EngineState, c: ContainerView, *, log_path: str = "", now_ns: int,
    health: m.Health | None = None,
) -> m.ContainerInspect:
    image = state.images.get(c.config.image_id)
    args = list(c.config.entrypoint) + list(c.config.cmd)
    status = _docker_status(c)
    return m.ContainerInspect(
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
        Mounts=[
            m.MountPoint(
                Type="volume",
                Name=v.name,
                Destination=v.destination,
                Driver="local",
                RW=not v.read_only,
            )
            for v in c.mounts
        ],
        Config=container_config(c, image),
        NetworkSettings=m.NetworkSettings(
            Ports=_ports(c),
            # Docker keys endpoints by network name (`{{.NetworkSettings.Networks.bridge}}`).
            Networks={
                _net(state, nid).name if _net(state, nid) else nid: m.NetworkEndpoint(
                    NetworkID=nid,
                    IPAddress=ep.ip,
                    MacAddress=ep.mac,
                    Gateway=_net(state, nid).gateway if _net(state, nid) else "",
                    IPPrefixLen=_prefix(_net(state, nid)),
                    Aliases=list(ep.aliases) or None,
                )
                for nid, ep in c.networks.items()
            },
        ),
    )


def _net(state: EngineState, nid: str) -> NetworkView | None:
    return state.networks.get(nid)  # type: ignore[no-any-return]


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
    )


class SummaryCache:
    """`ps` renders thousands of summaries per call: each container's summary is kept until
    the container changes (its `last_seq` moves); only the STATUS column, which depends on
    the clock, is computed per call."""

    def __init__(self) -> None:
        self._by_id: dict[str, tuple[int, m.ContainerSummary]] = {}

    def summaries(self, state: EngineState, containers: list[ContainerView], *,
                  now_ns: int) -> list[m.ContainerSummary]:
        out = []
        replace = msgspec.structs.replace
        for c in containers:
            hit = self._by_id.get(c.id)
            if hit is None or hit[0] != c.last_seq:
                hit = (c.last_seq, summary(state, c, now_ns=now_ns))
                self._by_id[c.id] = hit
            out.append(replace(hit[1], Status=status_line(c, now_ns)))
        if len(self._by_id) > 2 * len(state.containers) + 64:
            self._by_id = {k: v for k, v in self._by_id.items() if k in state.containers}
        return out


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


def image_inspect(img: ImageView) -> m.ImageInspect:
    created, _ = _image_created(img.config, img.created_at)
    cfg = img.config
    return m.ImageInspect(
        Id=img.id,
        RepoTags=list(img.repo_tags),
        RepoDigests=list(img.repo_digests),
        Created=created,
        Config=m.DockerContainerConfig(
            Env=list(cfg.env),
            Cmd=list(cfg.cmd) or None,
            Entrypoint=list(cfg.entrypoint) or None,
            WorkingDir=cfg.working_dir,
            User=cfg.user,
            Labels=dict(cfg.labels),
            ExposedPorts={p: {} for p in cfg.exposed_ports} or None,
            Volumes={v: {} for v in cfg.volumes} or None,
            StopSignal=cfg.stop_signal or None,
        ),
        Architecture=cfg.architecture,
        Os=cfg.os,
        Size=img.size,
        VirtualSize=img.size,
        RootFS=m.RootFS(Layers=list(img.layers)),
    )
