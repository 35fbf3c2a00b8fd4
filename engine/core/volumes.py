"""Deciding volume commands: create and remove.

I/O: none. Mounting and unmounting are recorded by the supervisor as it does them
(`VolumeMounted`/`VolumeUnmounted`); here we only guard names and usage.
"""

from __future__ import annotations

from engine.core.decision import Decision, Step
from engine.core.errors import Conflict, NotFound
from engine.core.lookup import find_volume
from engine.core.validate import check_name
from engine.core.volume_plan import parse_local_options
from events import vocabulary as v
from events.envelope import Pending, stream_of
from projections.state import EngineState

# moby volume/service AnonymousLabel: Docker 23+ marks every volume made without a name, and
# `volume prune` (API >= 1.42) takes only those unless asked for all.
ANONYMOUS_LABEL = "com.docker.volume.anonymous"


def volume_users(state: EngineState, name: str) -> list[str]:
    """Containers whose mounts name the volume, running or not (Docker refuses `volume rm`
    while any container, even a stopped one, refers to it)."""
    return [c.id for c in state.containers.values()
            if any(m.type == "volume" and m.source == name for m in c.config.mounts)]


def decide_volume_create(state: EngineState, name: str, *, op_id: str, driver: str = "local",
                         labels: dict[str, str] | None = None,
                         options: dict[str, str] | None = None,
                         anonymous: bool = False) -> Decision:
    check_name(name, "volume")
    if driver != "local":
        # moby volume/drivers: the driver is looked up as a plugin, and there are none.
        raise NotFound(f'create {name}: error looking up volume plugin {driver}: plugin '
                       f'"{driver}" not found', hint="shipslog has the local driver only")
    parse_local_options(options)  # bad driver options are a 400 before anything is recorded
    if anonymous:
        labels = {**(labels or {}), ANONYMOUS_LABEL: ""}
    existing = state.volumes.get(name)
    if existing is not None:
        # Docker returns the existing volume when the driver matches.
        if existing.driver != driver:
            raise Conflict(f"volume {name} already exists with driver {existing.driver}",
                           hint="pick another name or the same driver")
        return Decision(op_id=op_id, target=name, not_modified=True)
    return Decision(op_id=op_id, target=name, pending=(Pending(
        stream=stream_of("volume", name), expected_version=None,
        event=v.VolumeCreated(name=name, driver=driver, labels=labels or {},
                              options=options or {}, anonymous=anonymous)),),
        plan=(Step(name="volume.create", args={"name": name}),))


def decide_volume_remove(state: EngineState, name: str, *, op_id: str,
                         force: bool = False) -> Decision:
    find_volume(state, name)  # NotFound first, as Docker
    users = volume_users(state, name)
    if users:
        raise Conflict(
            f"remove {name}: volume is in use - [{', '.join(users)}]",
            hint="remove the containers that use it first")
    return Decision(op_id=op_id, target=name, pending=(
        Pending(stream=stream_of("op", op_id), expected_version=0, event=v.OperationRequested(
            op_id=op_id, kind="volume.remove", target=stream_of("volume", name))),
        Pending(stream=stream_of("volume", name), event=v.VolumeRemoved(name=name))),
        plan=(Step(name="volume.remove", args={"name": name}),))
