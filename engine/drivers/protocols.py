"""The seams between the supervisor and the kernel, re-exported for compatibility.

I/O: none. Each seam keeps its Protocol beside its Linux implementation, one folder each
(issue 16): `engine/drivers/{runtime,snapshots,layers,volumes,secrets,host,network}/seam.py`.
Import from there; this module only keeps old imports working.
"""

from __future__ import annotations

from engine.drivers.host.seam import Files
from engine.drivers.layers.seam import Layers
from engine.drivers.runtime.seam import (
    AttachSession,
    ExitRecord,
    Runtime,
    RuntimeState,
    SpecMaker,
)
from engine.drivers.secrets.seam import Secrets
from engine.drivers.snapshots.seam import Snapshots
from engine.drivers.volumes.seam import Volumes

__all__ = ["AttachSession", "ExitRecord", "Files", "Layers", "Runtime", "RuntimeState",
           "Secrets", "Snapshots", "SpecMaker", "Volumes"]
