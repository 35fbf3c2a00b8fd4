"""The volume seam: named and anonymous volumes (the local driver) and a container's mounts.

I/O: none here. The Linux implementation is `linux.LocalVolumes` (the volume store and the
fd-safe mounter); the recording fake is `FakeVolumes` in `engine/testing/fakes.py`; the
contract is `tests/contracts/test_seam_contracts.py`.
"""

from __future__ import annotations

from typing import Any, Protocol


class Volumes(Protocol):
    """Named and anonymous volumes (the local driver) and a container's mounts."""

    def create(self, name: str, options: dict[str, str]) -> None: ...

    def remove(self, name: str) -> None: ...

    def seed(self, name: str, rootfs: str, target: str, options: dict[str, str]) -> None:
        """Copy the image's content at `target` into the volume if it is empty (Docker)."""

    def prepare(self, container_id: str, plan: Any, rootfs: str,
                volume_options: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
        """Mount volumes, stage binds by fd; return the OCI mount entries."""

    def release(self, container_id: str) -> None:
        """Drop the staging mounts once the runtime holds its own copies."""

    def path(self, name: str) -> str:
        """The host directory a volume's files are in (its `_data`)."""
