"""The snapshot seam: a container's root filesystem, mounted from its image's layers.

I/O: none here. The Linux implementation is `overlay.Snapshotter` (overlayfs, staged and
renamed into place), which satisfies `Snapshots` itself; the recording fake is
`FakeSnapshots` in `engine/testing/fakes.py`; the contract is
`tests/contracts/test_seam_contracts.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Snapshots(Protocol):
    def prepare(self, container_id: str, layer_paths: list[str]) -> str:
        """Mount the container's rootfs (idempotent); return its path."""

    def unmount(self, container_id: str) -> None: ...

    def remove(self, container_id: str) -> None: ...

    def mounted(self) -> set[str]:
        """Ids of containers whose rootfs is mounted now (for reconciliation)."""

    def container_dir(self, container_id: str) -> Path:
        """Where the container's snapshot lives (its overlay upper and work dirs)."""

    def rootfs(self, container_id: str) -> Path:
        """Where the container's rootfs is mounted (by `prepare`)."""
