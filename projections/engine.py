"""`EngineProjection`: the engine's one inline projection, as the event store drives it.

I/O: none. The store calls `fold(state, envelopes)` inside the append transaction and writes
the returned rows into `proj_<table>`; `decode_row` turns a materialised row back into its
view for readers that only have the database (the CLI with `--root`, while the daemon is down).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from events.envelope import Envelope, RowChange
from projections import snapshot
from projections.fold import TABLES, fold, fold_batch
from projections.state import (
    ContainerView,
    EngineState,
    ExecView,
    ImageView,
    NetworkView,
    OperationView,
    VolumeView,
)

ROW_TYPES: dict[str, type] = {
    "containers": ContainerView,
    "images": ImageView,
    "volumes": VolumeView,
    "networks": NetworkView,
    "operations": OperationView,
    "execs": ExecView,
}
_encode = msgspec.json.Encoder().encode
_DECODERS: dict[str, msgspec.json.Decoder[object]] = {
    table: msgspec.json.Decoder(t) for table, t in ROW_TYPES.items()
}


class EngineProjection:
    """Containers, images, volumes, networks, exec sessions and pending operations."""

    name = "engine"
    tables: Sequence[str] = TABLES
    snapshot_version = snapshot.SNAPSHOT_VERSION

    def initial(self) -> EngineState:
        return EngineState()

    def fold(self, state: EngineState, envelopes: Sequence[Envelope]) -> tuple[
            EngineState, list[RowChange]]:
        new, rows = fold_batch(state, envelopes)
        return new, [RowChange(t, k, d) for t, k, d in rows]

    def fold_state(self, state: EngineState, envelopes: Sequence[Envelope]) -> EngineState:
        """The same fold without rows: rebuilds and time travel, several times faster."""
        return fold(envelopes, state)

    def encode_state(self, state: EngineState) -> bytes:
        """The whole state as a snapshot (the store keeps it with the seq it covers)."""
        return snapshot.encode_state(state)

    def decode_state(self, blob: bytes) -> EngineState:
        return snapshot.decode_state(blob)

    def rows_of(self, state: EngineState) -> list[RowChange]:
        """Every row of every table for `state` (what a rebuild writes)."""
        return [RowChange(table, key, _encode(view)) for table in self.tables
                for key, view in getattr(state, table).items()]


def decode_row(table: str, doc: bytes) -> object:
    return _DECODERS[table].decode(doc)
