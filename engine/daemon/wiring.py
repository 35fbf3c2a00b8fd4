"""The real drivers behind the supervisor's seams, put together for one state root.

I/O: none itself; each driver does its own (engine/drivers/<seam>/). Every driver satisfies
its seam's Protocol directly (`engine/drivers/<seam>/seam.py`; `engine/testing/seams.py` has
mypy prove it), so there is nothing to adapt here, only to choose and build.
"""

from __future__ import annotations

from typing import Any

from engine.drivers.host.files import ContainerFiles
from engine.drivers.layers.storage import ImageStorage
from engine.drivers.runtime.linux import LinuxRuntime
from engine.drivers.runtime.specs import SpecMaker
from engine.drivers.secrets.store import SecretStore
from engine.drivers.snapshots.overlay import Snapshotter
from engine.drivers.volumes.linux import LocalVolumes
from engine.shell.paths import Paths
from engine.shell.supervisor import Drivers

__all__ = ["ContainerFiles", "ImageStorage", "LinuxRuntime", "SpecMaker", "real_drivers"]


def real_drivers(paths: Paths, *, runtime: LinuxRuntime, secrets: SecretStore,
                 storage: ImageStorage, network: Any) -> Drivers:
    """The supervisor's drivers on this host: overlay snapshots, runc with conmon, the
    secret store, the layer and content stores, the local volume driver and `network`
    (the daemon starts it first: engine/shell/network.py)."""
    return Drivers(snapshots=Snapshotter(paths.root), runtime=runtime, secrets=secrets,
                   layers=storage, specs=SpecMaker(paths), files=ContainerFiles(paths),
                   volumes=LocalVolumes(paths.root, paths.exec_root), network=network)
