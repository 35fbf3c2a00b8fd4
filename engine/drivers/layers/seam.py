"""The layer seam: unpacked layers and the blobs they came from, as the supervisor's start
(layer paths) and garbage collection (deletes after `rmi`) see them.

I/O: none here. The Linux implementation is `storage.ImageStorage` (the layer store and the
content store under the state root); the recording fake is `FakeLayers` in
`engine/testing/fakes.py`.
"""

from __future__ import annotations

from typing import Protocol


class Layers(Protocol):
    def path(self, diff_id: str) -> str:
        """The directory of an unpacked layer (an overlay lower dir)."""

    def delete(self, diff_id: str) -> None: ...

    def delete_blob(self, digest: str) -> None: ...
