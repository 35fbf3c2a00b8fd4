"""Deciding container commands: create, start, stop, kill, restart, pause, unpause, rename,
remove, exec — and what happens when a container exits (restart policies).

I/O: none. Each `decide_*` takes the current `EngineState`, the command's inputs and the ids
and time the shell made for it, and returns a `Decision` (events + plan) or raises an
`engine.core.errors` exception with a hint. Names are claimed on their own stream (`name-<name>`)
with the stream version the decision saw, so two concurrent creates of one name cannot both
commit: the loser gets a ConcurrencyConflict, re-decides, and is told the name is in use.
"""

from __future__ import annotations

import msgspec

from engine.core.createopts import for_start, resolve_create_options
from engine.core.decision import Decision, Step
from engine.core.errors import Conflict, InvalidArgument, NotFound
from engine.core.lookup import find_container, find_image
from engine.core.validate import check_line, check_name
from engine.core.volume_plan import plan_mounts
from engine.core.volumes import ANONYMOUS_LABEL
from events import vocabulary as v
from events.envelope import Pending, stream_of
from events.values import ContainerConfig
from projections.state import ContainerView, EngineState

RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")


def _cstream(cid: str) -> str:
    return stream_of("container", cid)


def _op(op_id: str, kind: str, target: str, **args: str) -> Pending:
    return Pending(
        stream=stream_of("op", op_id),
        event=v.OperationRequested(op_id=op_id, kind=kind, target=target, args=args),
        expected_version=0,
    )


def _on(c: ContainerView, event: v.Event) -> Pending:
    """An event on a container's stream, expecting the version the decision saw."""
    return Pending(stream=_cstream(c.id), event=event, expected_version=c.stream_version)


def _name_stream(state: EngineState, name: str) -> tuple[str, int]:
    return stream_of("name", name), state.name_versions.get(name, 0)


def claim_name(state: EngineState, name: str, container_id: str) -> Pending:
    check_name(name)
    holder = state.names.get(name)
    if holder is not None:
        raise Conflict(
            f'Conflict. The container name "/{name}" is already in use by container '
            f'"{holder}". You have to remove (or rename) that container to be able to reuse '
            "that name.",
            hint="remove or rename that container, or pick another name",
        )
    stream, version = _name_stream(state, name)
    return Pending(stream=stream, event=v.NameClaimed(name=name, container_id=container_id),
                   expected_version=version)


def release_name(state: EngineState, name: str, container_id: str) -> Pending:
    stream, version = _name_stream(state, name)
    return Pending(stream=stream, event=v.NameReleased(name=name, container_id=container_id),
                   expected_version=version)


class CreateContainer(msgspec.Struct, frozen=True, kw_only=True):
    """`config` holds what the user asked for, merged over the image's defaults by the API
    layer; the decision pins the image id and plans the mounts."""

    name: str
    config: ContainerConfig  # image_id may be empty: the decision resolves `config.image`
    anonymous_ids: tuple[str, ...] = ()  # fresh names for anonymous volumes (see plan_mounts)


def resolve_image(state: EngineState, config: ContainerConfig) -> ContainerConfig:
    """Pin the container to the image id its reference names now; the user's settings were
    merged over the image's defaults by the caller (`engine.api.docker.translate`)."""
    image = find_image(state, config.image)
    if not config.entrypoint and not config.cmd:
        raise InvalidArgument(
            "no command specified",
            hint="give a command after the image name, or use an image with a CMD",
        )
    return msgspec.structs.replace(config, image_id=image.id)


def _validate_network_container(state: EngineState, config: ContainerConfig) -> None:
    """`--network container:<name|id>`: the container must exist now (it must run when this
    one starts, checked then); what belongs to the other container's network is refused, as
    Docker's runconfig does ("conflicting options")."""
    ref = config.network_mode.split(":", 1)[1]
    try:
        find_container(state, ref)
    except NotFound:
        # Not a 404: Docker's CLI would take that for a missing image and try to pull it.
        raise InvalidArgument(f"No such container: {ref}",
                              hint="--network container:NAME names an existing container") \
            from None
    for given, what in ((config.hostname, "hostname"), (config.ports, "port publishing"),
                        (config.publish_all, "publish all ports"),
                        (config.ipv4_address, "a static IP address"),
                        (config.network_aliases, "network aliases")):
        if given:
            raise InvalidArgument(f"conflicting options: {what} and the network mode",
                                  hint="the container uses the network of " + ref)


def _validate_config(config: ContainerConfig, state: EngineState | None = None) -> None:
    if state is not None and config.network_mode.startswith("container:"):
        _validate_network_container(state, config)
    check_line(config.hostname, "hostname")
    check_line(config.user, "user")
    check_line(config.working_dir, "working directory")
    if config.working_dir and not config.working_dir.startswith("/"):
        raise InvalidArgument(
            f"the working directory '{config.working_dir}' is invalid, it needs to be an "
            "absolute path", hint="use an absolute path such as /app")
    if config.working_dir.startswith("/proc/") and "/fd" in config.working_dir:
        # CVE-2024-21626: a cwd under /proc/self/fd leaks a host directory into the container.
        raise InvalidArgument("working directory under /proc/*/fd is not allowed",
                              hint="use a directory inside the container's filesystem")
    rp = config.restart_policy
    if rp.name not in RESTART_POLICIES:
        raise InvalidArgument(f"invalid restart policy '{rp.name}'",
                              hint="use one of: no, always, on-failure[:N], unless-stopped")
    if rp.maximum_retry_count and rp.name != "on-failure":
        raise InvalidArgument("maximum retry count cannot be used with restart policy "
                              f"'{rp.name}'", hint="use --restart on-failure:N")
    if rp.maximum_retry_count < 0:
        raise InvalidArgument("maximum retry count cannot be negative", hint="use 0 or more")
    if config.auto_remove and rp.name not in ("", "no"):
        raise InvalidArgument("can't create 'AutoRemove' container with restart policy",
                              hint="drop --rm or --restart")
    for name in ("memory", "nano_cpus", "pids_limit"):
        if getattr(config, name) < 0 and not (name == "pids_limit" and config.pids_limit == -1):
            raise InvalidArgument(f"invalid {name}: must not be negative", hint="use 0 for none")
    if 0 < config.memory < 6 * 1024 * 1024:
        raise InvalidArgument("Minimum memory limit allowed is 6MB", hint="use -m 6m or more")
    for e in config.env:
        check_line(e.key, "environment variable name")
        if not e.key or "=" in e.key:
            raise InvalidArgument(f"invalid environment variable name {e.key!r}",
                                  hint="use KEY=VALUE")


def decide_create(state: EngineState, cmd: CreateContainer, *, op_id: str,
                  container_id: str) -> Decision:
    config = resolve_create_options(state, resolve_image(state, cmd.config))
    _validate_config(config, state)
    # Mounts are checked before anything is recorded (RELIABILITY S-03); volumes the
    # container needs and that do not exist yet are created with it, as `docker run` does.
    plan = plan_mounts(config.mounts, None, known_volumes=set(state.volumes.keys()),
                       anonymous_ids=cmd.anonymous_ids)
    config = msgspec.structs.replace(config, mounts=plan.specs)
    cid = container_id
    stream = _cstream(cid)
    pending = (
        _op(op_id, "container.create", stream),
        # Not `expected_version=0`: a volume removed earlier keeps its stream, and a name
        # used again must work (`volume rm x; run -v x:/d`), as `volume create` does.
        *(Pending(stream=stream_of("volume", vol.name), expected_version=None,
                  event=v.VolumeCreated(name=vol.name, anonymous=vol.anonymous,
                                        labels={ANONYMOUS_LABEL: ""} if vol.anonymous else {}))
          for vol in plan.create),
        Pending(stream=stream, event=v.ContainerCreateRequested(
            container_id=cid, name=cmd.name, config=config), expected_version=0),
        claim_name(state, cmd.name, cid),
    )
    steps = (Step(name="rootfs.prepare", args={"container_id": cid}),)
    return Decision(op_id=op_id, pending=pending, plan=steps, target=cid)


def decide_start(state: EngineState, ref: str, *, op_id: str) -> Decision:
    c = find_container(state, ref)
    if c.status in ("running", "restarting"):
        return Decision(op_id=op_id, target=c.id, not_modified=True)
    if c.status == "paused":
        raise Conflict(f"cannot start a paused container {c.name}",
                       hint=f"unpause it with: shipslog unpause {c.name}")
    if c.status in ("creating", "removing"):
        raise Conflict(f"container {c.name} is {c.status}",
                       hint="wait for the operation in progress to finish")
    if c.config.image_id not in state.images:
        raise NotFound(f"the image of container {c.name} is gone ({c.config.image_id})",
                       hint="remove the container and create it again")
    for_start(state, c)  # a linked/joined container not running: 409, nothing recorded
    return Decision(
        op_id=op_id,
        target=c.id,
        pending=(_op(op_id, "container.start", _cstream(c.id)),
                 _on(c, v.ContainerStartRequested(container_id=c.id))),
        plan=(Step(name="container.start", args={"container_id": c.id}),),
    )


def decide_stop(state: EngineState, ref: str, *, op_id: str, timeout: int | None,
                signal: str | None) -> Decision:
    c = find_container(state, ref)
    if c.status not in ("running", "paused", "restarting"):
        return Decision(op_id=op_id, target=c.id, not_modified=True)
    sig = signal or c.config.stop_signal or "SIGTERM"
    t = timeout if timeout is not None else (
        c.config.stop_timeout if c.config.stop_timeout is not None else 10)
    return Decision(
        op_id=op_id,
        target=c.id,
        pending=(_op(op_id, "container.stop", _cstream(c.id), signal=sig, timeout=str(t)),
                 _on(c, v.ContainerStopRequested(container_id=c.id, signal=sig, timeout=t))),
        plan=(Step(name="container.stop", args={"container_id": c.id, "signal": sig,
                                                "timeout": str(t)}),),
    )


def decide_kill(state: EngineState, ref: str, *, op_id: str, signal: str) -> Decision:
    c = find_container(state, ref)
    if c.status not in ("running", "paused"):
        raise Conflict(f"Cannot kill container: {ref}: Container {c.id} is not running",
                       hint=f"start it first: shipslog start {c.name}")
    return Decision(
        op_id=op_id,
        target=c.id,
        pending=(_op(op_id, "container.kill", _cstream(c.id), signal=signal),),
        plan=(Step(name="container.kill", args={"container_id": c.id, "signal": signal}),),
    )


def decide_restart(state: EngineState, ref: str, *, op_id: str, timeout: int | None) -> Decision:
    c = find_container(state, ref)
    if c.status in ("creating", "removing"):
        raise Conflict(f"container {c.name} is {c.status}", hint="wait for it to finish")
    t = timeout if timeout is not None else (
        c.config.stop_timeout if c.config.stop_timeout is not None else 10)
    pending = [_op(op_id, "container.restart", _cstream(c.id), timeout=str(t))]
    plan = []
    if c.status in ("running", "paused", "restarting"):
        sig = c.config.stop_signal or "SIGTERM"
        pending.append(_on(c, v.ContainerStopRequested(container_id=c.id, signal=sig, timeout=t)))
        plan.append(Step(name="container.stop", args={"container_id": c.id, "signal": sig,
                                                      "timeout": str(t)}))
        # Same batch, same stream: the stop request above already checks the version.
        start_req = Pending(stream=_cstream(c.id),
                            event=v.ContainerStartRequested(container_id=c.id))
    else:
        start_req = _on(c, v.ContainerStartRequested(container_id=c.id))
    pending.append(start_req)
    plan.append(Step(name="container.start", args={"container_id": c.id}))
    return Decision(op_id=op_id, target=c.id, pending=tuple(pending), plan=tuple(plan))


def decide_pause(state: EngineState, ref: str, *, op_id: str, pause: bool) -> Decision:
    c = find_container(state, ref)
    if pause and c.status != "running":
        raise Conflict(f"Container {c.id} is not running", hint="only running containers pause")
    if not pause and c.status != "paused":
        raise Conflict(f"Container {c.id} is not paused", hint="nothing to unpause")
    kind = "container.pause" if pause else "container.unpause"
    return Decision(op_id=op_id, target=c.id,
                    pending=(_op(op_id, kind, _cstream(c.id)),),
                    plan=(Step(name=kind, args={"container_id": c.id}),))


def decide_update(state: EngineState, ref: str, *, op_id: str,
                  changes: v.ContainerUpdated) -> Decision:
    """`docker update`. A running container's new limits are an operation (the kernel is
    changed first, then `ContainerUpdated` recorded); a stopped one's are just recorded and
    apply at its next start."""
    c = find_container(state, ref)
    changes = msgspec.structs.replace(changes, container_id=c.id)
    if c.status in ("creating", "removing"):
        raise Conflict(f"container {c.name} is {c.status}", hint="wait for it to finish")
    policy = changes.restart_policy
    if policy is not None and policy.name != "no" and c.config.auto_remove:
        raise Conflict("Restart policy cannot be updated because AutoRemove is enabled for "
                       "the container", hint="recreate it without --rm")
    resources = (changes.memory, changes.nano_cpus, changes.pids_limit, changes.memory_swap,
                 changes.memory_reservation, changes.cpu_shares, changes.cpuset_cpus,
                 changes.cpuset_mems)
    if all(x is None for x in resources) and policy is None:
        raise InvalidArgument("nothing to update",
                              hint="give --memory, --cpus, --pids-limit or --restart")
    if c.status in ("running", "paused") and any(x is not None for x in resources):
        encoded = msgspec.json.encode(changes).decode()
        return Decision(op_id=op_id, target=c.id,
                        pending=(_op(op_id, "container.update", _cstream(c.id),
                                     changes=encoded),),
                        plan=(Step(name="container.update",
                                   args={"container_id": c.id, "changes": encoded}),))
    return Decision(op_id=op_id, target=c.id, pending=(_on(c, changes),))


def decide_rename(state: EngineState, ref: str, new_name: str, *, op_id: str) -> Decision:
    c = find_container(state, ref)
    new_name = new_name.lstrip("/")
    if new_name == c.name:
        raise Conflict("Renaming a container with the same name as its current name",
                       hint="pick a different name")
    if c.status in ("creating", "removing"):
        raise Conflict(f"container {c.name} is {c.status}", hint="wait for it to finish")
    claim = claim_name(state, new_name, c.id)
    return Decision(op_id=op_id, target=c.id, pending=(
        _on(c, v.ContainerRenamed(container_id=c.id, old_name=c.name, new_name=new_name)),
        release_name(state, c.name, c.id),
        claim,
    ))


def decide_remove(state: EngineState, ref: str, *, op_id: str, force: bool,
                  remove_volumes: bool) -> Decision:
    c = find_container(state, ref)
    in_flight = [op for op in state.operations.values()
                 if op.target == _cstream(c.id) and op.kind == "container.remove"
                 and not op.needs_cleanup]
    if c.status == "removing" and in_flight:
        raise Conflict(f"removal of container {c.name} is already in progress",
                       hint="wait for it to finish")
    # A removal that failed half-way (needs_cleanup) may be asked for again: it resumes.
    if c.status in ("running", "paused", "restarting") and not force:
        raise Conflict(
            f"You cannot remove a {c.status} container {c.id}. Stop the container before "
            "attempting removal or force remove",
            hint=f"stop it first (shipslog stop {c.name}) or use: shipslog rm -f {c.name}")
    return Decision(
        op_id=op_id,
        target=c.id,
        pending=(_op(op_id, "container.remove", _cstream(c.id), force=str(force).lower(),
                     volumes=str(remove_volumes).lower()),
                 _on(c, v.ContainerRemoveRequested(container_id=c.id, force=force,
                                                   remove_volumes=remove_volumes))),
        plan=(Step(name="container.remove", args={"container_id": c.id,
                                                  "volumes": str(remove_volumes).lower()}),),
    )


def decide_exec_create(state: EngineState, ref: str, *, op_id: str, exec_id: str,
                       cmd: tuple[str, ...], tty: bool, user: str, working_dir: str,
                       privileged: bool = False) -> Decision:
    c = find_container(state, ref)
    if c.status == "paused":
        raise Conflict(f"Container {c.id} is paused, unpause the container before exec",
                       hint=f"shipslog unpause {c.name}")
    if c.status != "running":
        raise Conflict(f"Container {c.id} is not running", hint=f"shipslog start {c.name}")
    if not cmd:
        raise InvalidArgument("No exec command specified", hint="give the command to run")
    check_line(user, "user")
    check_line(working_dir, "working directory")
    return Decision(op_id=op_id, target=exec_id, pending=(_on(c, v.ExecCreated(
        exec_id=exec_id, container_id=c.id, cmd=cmd, tty=tty, user=user,
        working_dir=working_dir, privileged=privileged)),))
