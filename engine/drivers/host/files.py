"""Per-container files that are not the rootfs: the host seam's `Files`
(`engine/drivers/host/seam.py`) on Linux.

I/O: makes the container's state dir (0700) for its log; removes the dir with the container.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.shell.paths import Paths


class ContainerFiles:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths

    def log_path(self, container_id: str) -> str:
        d = self.paths.container_dir(container_id)
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        return str(self.paths.log_path(container_id))

    def remove_container_files(self, container_id: str) -> None:
        d = self.paths.container_dir(container_id)
        if d.exists():
            shutil.rmtree(d, ignore_errors=True)
        os.makedirs(self.paths.containers_root, exist_ok=True)
