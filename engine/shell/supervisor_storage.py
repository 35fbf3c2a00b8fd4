"""The supervisor's storage work: volumes a container needs (created, seeded, released,
dropped with it), `volume create/rm`, and garbage collection of layers and blobs after `rmi`.

I/O: through the driver Protocols (volumes, layers) and the journal, as the supervisor does.
A collaborator the supervisor holds (`Supervisor.storage`) and calls, not a mixin: it sees
only the volume and layer drivers, the journal and the supervisor's outcome recorder.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from engine.core.errors import ShipslogError
from engine.core.images import unused_blobs, unused_layers
from engine.core.volume_plan import plan_mounts
from engine.drivers.host import failpoints
from engine.drivers.layers.seam import Layers
from engine.drivers.volumes.seam import Volumes
from engine.shell.journal import Journal
from events import vocabulary as v
from events.envelope import Actor, Pending, stream_of
from projections.state import ContainerView


def _opstream(op_id: str) -> str:
    return stream_of("op", op_id)


# Supervisor._append: record an outcome, retried until the log takes it
Append = Callable[[list[Pending], str, Actor], Awaitable[None]]


class StorageSteps:
    """The storage half of the supervisor's steps: volumes and image garbage collection."""

    def __init__(self, journal: Journal, volumes: Volumes, layers: Layers,
                 append: Append) -> None:
        self.journal = journal
        self.volumes = volumes
        self.layers = layers
        self._append = append

    def mount_plan(self, c: ContainerView) -> Any:
        return plan_mounts(c.config.mounts, None,
                           known_volumes=set(self.journal.state.volumes.keys()))

    def volume_options(self) -> dict[str, dict[str, str]]:
        return {name: dict(vol.options) for name, vol in self.journal.state.volumes.items()}

    def prepare_volumes(self, c: ContainerView, rootfs: str) -> None:
        """Make the container's volumes exist, and seed new ones with the image's content."""
        opts = self.volume_options()
        for m in self.mount_plan(c).mounts:
            if m.kind == "volume":
                self.volumes.create(m.source, opts.get(m.source, {}))
                if m.seed:
                    self.volumes.seed(m.source, rootfs, m.target, opts.get(m.source, {}))

    async def drop_anonymous_volumes(self, c: ContainerView) -> list[str]:
        """Anonymous volumes of `c` that no other container refers to: deleted (`rm -v`,
        `--rm`, a failed create). Returns their names for the VolumeRemoved events."""
        state = self.journal.state
        mine = {m.source for m in c.config.mounts if m.type == "volume" and m.source}
        gone = []
        for name in sorted(mine):
            vol = state.volumes.get(name)
            if vol is None or not vol.anonymous:
                continue
            if any(o.id != c.id and any(m.source == name for m in o.config.mounts)
                   for o in state.containers.values()):
                continue
            await trio.to_thread.run_sync(self.volumes.remove, name)
            gone.append(name)
        return gone

    @staticmethod
    def volumes_removed(names: list[str]) -> list[Pending]:
        return [Pending(stream=stream_of("volume", n), event=v.VolumeRemoved(name=n))
                for n in names]

    # -- volumes --------------------------------------------------------------------------

    async def volume_create(self, op_id: str, args: dict[str, str], actor: Actor) -> None:
        name = args["name"]
        vol = self.journal.state.volumes.get(name)
        opts = dict(vol.options) if vol is not None else {}
        await trio.to_thread.run_sync(self.volumes.create, name, opts)
        failpoints.hit("volume.after_create")

    async def volume_remove(self, op_id: str, args: dict[str, str], actor: Actor) -> None:
        name = args["name"]
        try:
            await trio.to_thread.run_sync(self.volumes.remove, name)
            failpoints.hit("volume.after_remove")
        except (ShipslogError, OSError) as exc:
            await self._append([Pending(stream=_opstream(op_id), event=v.OperationFailed(
                op_id=op_id, step="volume.remove", error=str(exc), needs_cleanup=True))],
                op_id, actor)
            raise
        await self._append([Pending(stream=_opstream(op_id),
                                    event=v.OperationCompleted(op_id=op_id))], op_id, actor)

    # -- images ---------------------------------------------------------------------------

    async def image_gc(self, op_id: str, args: dict[str, str], actor: Actor) -> None:
        state = self.journal.state
        pending: list[Pending] = []
        for diff_id in unused_layers(state):
            await trio.to_thread.run_sync(self.layers.delete, diff_id)
            pending.append(Pending(stream=stream_of("layer", diff_id),
                                   event=v.LayerRemoved(diff_id=diff_id)))
        for digest in unused_blobs(state, args.get("blobs", "").split(",")):
            await trio.to_thread.run_sync(self.layers.delete_blob, digest)
        pending.append(Pending(stream=_opstream(op_id), event=v.OperationCompleted(op_id=op_id)))
        await self._append(pending, op_id, actor)

