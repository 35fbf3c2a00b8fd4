"""The host seam: per-container files that are not the rootfs (the state dir and its log).

I/O: none here. The Linux implementation is `files.ContainerFiles`; the recording fake is
`FakeFiles` in `engine/testing/fakes.py`.
"""

from __future__ import annotations

from typing import Protocol


class Files(Protocol):
    """Per-container files that are not the rootfs: the state dir with its log."""

    def log_path(self, container_id: str) -> str: ...

    def remove_container_files(self, container_id: str) -> None: ...
