"""The layer seam's Linux implementation (`engine/drivers/layers/seam.py`): the layer store
and the content store under one state root, as the supervisor's start and its garbage
collector see them.

I/O: the layer and blob directories under the state root (through `unpack.LayerStore` and
`content.ContentStore`).
"""

from __future__ import annotations

from pathlib import Path

from engine.drivers.layers.content import ContentStore
from engine.drivers.layers.unpack import LayerStore


class ImageStorage:
    """The layer store and the content store; `content` and `layers` are the stores
    themselves, which pulls, loads and builds write through."""

    def __init__(self, root: Path) -> None:
        self.content = ContentStore(root)
        self.layers = LayerStore(root)

    def path(self, diff_id: str) -> str:
        return str(self.layers.path(diff_id))

    def delete(self, diff_id: str) -> None:
        self.layers.delete(diff_id)

    def delete_blob(self, digest: str) -> None:
        self.content.delete(digest)
