"""Docker's legacy links (`--link NAME:ALIAS`): /etc/hosts entries and `ALIAS_PORT_…` env.

I/O: none. At create `resolve_links` swaps each linked container's name for its id (a
rename keeps the link, as in Docker); at every start `for_start` reads where the linked
containers are now and returns what the generated files and the environment get (moby
`daemon/links/links.go`); `decide_remove_link` drops one (`docker rm --link`). The linked
containers' own environment (`ALIAS_ENV_*` in Docker) is left out: its values live in the
secret store and never cross containers here.
"""

from __future__ import annotations

import msgspec

from engine.core.decision import Decision
from engine.core.errors import Conflict, InvalidArgument, NotFound
from engine.core.lookup import find_container
from events import vocabulary as v
from events.envelope import Pending, stream_of
from events.values import ContainerConfig
from projections.state import ContainerView, EngineState


def resolve_links(state: EngineState, config: ContainerConfig) -> ContainerConfig:
    if not config.links:
        return config
    resolved = []
    for spec in config.links:
        name, _, alias = spec.partition(":")
        resolved.append(f"{other_container(state, name, '--link').id}:{alias}")
    return msgspec.structs.replace(config, links=tuple(resolved))


def other_container(state: EngineState, ref: str, flag: str) -> ContainerView:
    """A container another one's options name: a 400, not a 404, when it is missing — a 404
    on create makes docker's CLI try to pull the *image* (moby registerLinks does the same)."""
    try:
        return find_container(state, ref)
    except NotFound as exc:
        raise InvalidArgument(f"could not get container for {ref}: {exc}",
                              hint=f"{flag} names an existing container") from None


def shown(state: EngineState, c: ContainerView) -> list[str]:
    """`HostConfig.Links` as Docker shows it: `/target:/me/alias`."""
    out = []
    for spec in c.config.links:
        cid, _, alias = spec.partition(":")
        target = state.containers.get(cid)
        out.append(f"/{target.name if target else cid[:12]}:/{c.name}/{alias}")
    return out


def for_start(state: EngineState, c: ContainerView) -> tuple[ContainerView, list[str]]:
    """The container with its links' host entries added to `extra_hosts`, and the link env."""
    if not c.config.links:
        return c, []
    hosts: list[str] = []
    env: list[str] = []
    for spec in c.config.links:
        cid, _, alias = spec.partition(":")
        target = state.containers.get(cid)
        if target is None or target.status not in ("running", "paused"):
            name = target.name if target else cid[:12]
            raise Conflict(f"Cannot link to a non running container: /{name} AS "
                           f"/{c.name}/{alias}", hint=f"start {name} first")
        ip = _address(c, target)
        hosts += [f"{n}:{ip}" for n in dict.fromkeys((alias, target.name, target.id[:12]))]
        env += link_env(alias, f"/{c.name}/{alias}", ip, target.config.exposed_ports)
    config = msgspec.structs.replace(c.config, extra_hosts=c.config.extra_hosts + tuple(hosts))
    return msgspec.structs.replace(c, config=config), env


def _address(c: ContainerView, target: ContainerView) -> str:
    shared = [nid for nid in c.networks if nid in target.networks] or list(c.networks)
    for nid in shared + list(target.networks):
        ep = target.networks.get(nid)
        if ep is not None and ep.ip:
            return ep.ip
    raise InvalidArgument(f"cannot link to {target.name}: it has no address",
                          hint="link to a container on a network")


def link_env(alias: str, name: str, ip: str, exposed: tuple[str, ...]) -> list[str]:
    """moby links.go Env: `ALIAS_NAME`, and for each exposed port `ALIAS_PORT_80_TCP*`,
    the lowest port also as `ALIAS_PORT`."""
    prefix = alias.upper().replace("-", "_").replace(".", "_")
    ports = sorted((int(p.split("/")[0]), p.split("/")[1] if "/" in p else "tcp")
                   for p in exposed)
    env: list[str] = []
    if ports:
        port, proto = ports[0]
        env.append(f"{prefix}_PORT={proto}://{ip}:{port}")
    for port, proto in ports:
        key = f"{prefix}_PORT_{port}_{proto.upper()}"
        env += [f"{key}={proto}://{ip}:{port}", f"{key}_ADDR={ip}", f"{key}_PORT={port}",
                f"{key}_PROTO={proto}"]
    env.append(f"{prefix}_NAME={name}")
    return env


def decide_remove_link(state: EngineState, ref: str, *, op_id: str) -> Decision:
    """`DELETE /containers/web/db?link=1`: drop the link `db` of `web` (moby rmLink)."""
    parent, sep, alias = ref.strip("/").rpartition("/")
    if not sep:
        raise Conflict("Conflict, cannot remove the default link name of the container",
                       hint="name the link as /CONTAINER/ALIAS")
    c = find_container(state, parent)
    if not any(x.partition(":")[2] == alias for x in c.config.links):
        raise NotFound(f"Could not find entity for /{c.name}/{alias}",
                       hint=f"see the links of {c.name}: shipslog inspect {c.name}")
    event = v.ContainerLinkRemoved(container_id=c.id, alias=alias)
    return Decision(op_id=op_id, target=c.id, pending=(
        Pending(stream=stream_of("container", c.id), event=event,
                expected_version=c.stream_version),))
