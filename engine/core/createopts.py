"""Create options that read other state: `--volumes-from`, `--add-host name:host-gateway`,
`--link` and `--pid container:X`.

I/O: none. `decide_create` calls `resolve_create_options` with the state it decides on, so
the mounts a container copies and the address `host-gateway` stands for are recorded in its
create event (history and time travel show what it got, not what it asked for).
"""

from __future__ import annotations

import msgspec

from engine.core import links
from engine.core.errors import Conflict, InvalidArgument
from engine.core.links import other_container, resolve_links
from events.values import ContainerConfig, MountSpec
from projections.state import ContainerView, EngineState

HOST_GATEWAY = "host-gateway"
DEFAULT_BRIDGE = "bridge"


def resolve_create_options(state: EngineState, config: ContainerConfig) -> ContainerConfig:
    changes: dict[str, object] = {}
    if config.volumes_from:
        changes["mounts"] = volumes_from(state, config)
    if any(h.endswith(":" + HOST_GATEWAY) for h in config.extra_hosts):
        changes["extra_hosts"] = _host_gateway(state, config.extra_hosts)
    if config.pid_mode.startswith("container:"):
        ref = config.pid_mode.split(":", 1)[1]
        changes["pid_mode"] = f"container:{other_container(state, ref, '--pid').id}"
    config = msgspec.structs.replace(config, **changes) if changes else config
    return resolve_links(state, config)


def for_start(state: EngineState, c: ContainerView) -> tuple[ContainerView, list[str]]:
    """What a start needs from other containers, for the spec maker only (never recorded):
    `--link` host entries and env, and `--pid container:X` as X's namespace path now.
    Raises Conflict when one of them is not running (decide_start asks first)."""
    c, env = links.for_start(state, c)
    if c.config.pid_mode.startswith("container:"):
        cid = c.config.pid_mode.split(":", 1)[1]
        target = state.containers.get(cid)
        if target is None or target.status not in ("running", "paused") or not target.pid:
            raise Conflict(f"cannot join PID of a non running container: {cid}",
                           hint="start that container first")
        config = msgspec.structs.replace(c.config, pid_mode=f"/proc/{target.pid}/ns/pid")
        c = msgspec.structs.replace(c, config=config)
    return c, env


def volumes_from(state: EngineState, config: ContainerConfig) -> tuple[MountSpec, ...]:
    """moby `daemon/volumes.go` registerMountPoints: the other container's volumes and binds
    at the same targets, read-only if it said `:ro` (or had them read-only and said nothing);
    the container's own mounts win, and replace image VOLUMEs (anonymous, no source)."""
    own = {m.target: m for m in config.mounts if m.source or m.type != "volume"}
    copied: dict[str, MountSpec] = {}
    for spec in config.volumes_from:
        ref, _, mode = spec.partition(":")
        other = other_container(state, ref.lstrip("/"), "--volumes-from")
        for m in other.config.mounts:
            if m.type == "tmpfs" or m.target in own or m.target in copied:
                continue
            read_only = m.read_only if mode in ("", "z", "Z") else mode == "ro"
            copied[m.target] = msgspec.structs.replace(m, read_only=read_only)
    rest = [m for m in config.mounts if m.target not in copied]
    return tuple(rest) + tuple(copied.values())


def _host_gateway(state: EngineState, hosts: tuple[str, ...]) -> tuple[str, ...]:
    # Docker resolves host-gateway to its default bridge's address (daemon --host-gateway-ip).
    nid = state.network_names.get(DEFAULT_BRIDGE)
    net = state.networks.get(nid) if nid else None
    if net is None or not net.gateway:
        raise InvalidArgument("unable to resolve host-gateway: the default bridge network "
                              "has no gateway", hint="give --add-host name:IP instead")
    return tuple(h[: -len(HOST_GATEWAY)] + net.gateway if h.endswith(":" + HOST_GATEWAY)
                 else h for h in hosts)
