"""The files service: what the API reads and writes of a container's files and of the host,
so that route modules call the shell and never a driver (issue 16, "files").

I/O: through the drivers only: a container's root filesystem (in-root resolution,
`engine/drivers/snapshots/rootfs_access.py`), its overlay mount (the snapshot seam), its
cgroup counters (`engine/drivers/runtime/stats.py`), its log file
(`engine/drivers/runtime/logs.py`), disk usage of its writable layer and of volumes
(`engine/drivers/host/diskusage.py`), the passwd in its rootfs and the host's
(`engine/drivers/host/{info,users}.py`) and the host's firewall facts
(`engine/drivers/network/hostfw.py`).

Two parts: functions that need no daemon (log readers, user lookups, host facts; the CLI's
`--root` mode reaches them through the read-only routes too), and `FileService`, which the
daemon wires with its real snapshot, layer and volume drivers (engine/daemon/main.py): it
mounts a stopped container's rootfs for a copy under the container's lock and unmounts it
afterwards, so no route touches the snapshot driver or the engine's lock itself.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from engine.core.errors import Conflict
from engine.core.lookup import find_container
from engine.drivers.host.diskusage import tree_size
from engine.drivers.host.info import user_db
from engine.drivers.host.users import uid_of
from engine.drivers.layers.seam import Layers
from engine.drivers.network.hostfw import observe as observe_host_firewall
from engine.drivers.runtime.logs import follow_logs, read_logs
from engine.drivers.runtime.stats import host_memory, read_sample
from engine.drivers.snapshots.rootfs_access import (
    PathStat,
    Resource,
    export_rootfs,
    extract_into,
    open_directory,
    open_live_directory,
    other_mount,
    resolved_dir,
    upper_entries,
)
from engine.drivers.snapshots.seam import Snapshots
from projections.state import ContainerView

if TYPE_CHECKING:
    from engine.shell.service import Engine

# The in-root primitives a copy is made of: the files service hands them to the archive
# routes, which decide what to reach (a mount's host directory, the live namespace) as data.
__all__ = [
    "FileService", "PathStat", "Resource", "export_rootfs", "extract_into", "follow_logs",
    "host_memory", "observe_host_firewall", "open_directory", "open_live_directory",
    "other_mount", "read_logs", "read_sample", "resolved_dir", "rw_size", "uid_of",
    "upper_entries", "user_db", "volume_size",
]

LIVE = ("running", "paused", "restarting")
NO_ROOTFS = ("creating", "removing", "dead")


class FileService:
    """A container's files for `cp`, `diff`, `export` and `stats`; disk usage for `df` and
    `prune`."""

    def __init__(self, engine: Engine, snapshots: Snapshots, layers: Layers,
                 volume_dir: Callable[[str], str], root: str | os.PathLike[str]) -> None:
        self.engine = engine
        self.snapshots = snapshots
        self.layers = layers
        self.volume_dir = volume_dir  # the host directory a named volume's files are in
        self.root = Path(root)

    def rootfs(self, container_id: str) -> str:
        return str(self.snapshots.rootfs(container_id))

    def upper_dir(self, container_id: str) -> str:
        """The container's writable layer (overlay's upper dir)."""
        return str(self.snapshots.container_dir(container_id) / "upper")

    def layer_paths(self, c: ContainerView) -> list[str]:
        image = self.engine.state.images.get(c.config.image_id)
        if image is None:
            raise Conflict(f"the image of container {c.name} is gone",
                           hint="its files cannot be reached without the image's layers")
        return [self.layers.path(d) for d in image.layers]

    @asynccontextmanager
    async def container_root(self, ref: str) -> AsyncIterator[tuple[ContainerView, str]]:
        """The container and its mounted rootfs; mounted just for this when it was not
        (after a daemon restart a stopped container's is not), under the container's lock
        so that no start or removal runs meanwhile, and unmounted afterwards."""
        engine = self.engine
        c = find_container(engine.state, ref)
        if c.status in NO_ROOTFS:
            raise Conflict(f"container {c.name} is {c.status}",
                           hint="its root filesystem is not available now")
        if c.status in LIVE:
            yield c, self.rootfs(c.id)
            return
        async with engine.locked(c.id):
            c = find_container(engine.state, c.id)
            if c.status in NO_ROOTFS:
                raise Conflict(f"container {c.name} is {c.status}",
                               hint="its root filesystem is not available now")
            mounted = c.id in await trio.to_thread.run_sync(self.snapshots.mounted)
            if not mounted:
                await trio.to_thread.run_sync(self.snapshots.prepare, c.id,
                                              self.layer_paths(c))
            try:
                yield c, self.rootfs(c.id)
            finally:
                if not mounted and c.status not in LIVE:
                    with trio.CancelScope(shield=True):
                        await trio.to_thread.run_sync(self.snapshots.unmount, c.id)


def rw_size(root: str | os.PathLike[str], container_id: str) -> int:
    """Bytes in a container's writable layer under state root `root` (blocking: run it in a
    thread). A function of the root, not of a `FileService`: `df` is answered with the
    daemon down too (`--root`)."""
    return tree_size(Path(root) / "containers" / container_id / "upper")


def volume_size(root: str | os.PathLike[str], name: str) -> int:
    """Bytes in a local volume's `_data` under state root `root` (blocking)."""
    return tree_size(Path(root) / "volumes" / name / "_data")
