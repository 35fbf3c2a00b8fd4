"""`EngineProjection`: the engine's one inline projection, as the event store drives it.

I/O: none. The store calls `fold(state, envelopes)` inside the append transaction and writes
the returned rows into `proj_<table>`; `decode_row` turns a materialised row back into its
view for readers that only have the database (the CLI with `--root`, while the daemon is down).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import msgspec

from events.envelope import Envelope, RowChange
from projections import snapshot
from projections.fold import TABLES, WHO_TYPES, FoldBuilder, fold, fold_batch
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
    # `fold_state`/`fold_builder` read `actor` and `op_id` of these event types only.
    fold_who_types: Sequence[str] = tuple(sorted(WHO_TYPES))

    def initial(self) -> EngineState:
        return EngineState()

    def fold(self, state: EngineState, envelopes: Sequence[Envelope]) -> tuple[
            EngineState, list[RowChange]]:
        new, rows = fold_batch(state, envelopes)
        return new, [RowChange(t, k, d) for t, k, d in rows]

    def fold_state(self, state: EngineState, envelopes: Sequence[Envelope]) -> EngineState:
        """The same fold without rows: rebuilds and time travel, several times faster."""
        return fold(envelopes, state)

    def fold_builder(self, state: EngineState) -> StateBuilder:
        """`fold_state` kept open across stretches: what a rebuild or a load that snapshots
        on its way uses (events/store.py `_fold_range`)."""
        return StateBuilder(state)

    def encode_state(self, state: EngineState) -> bytes:
        """The whole state as a snapshot (the store keeps it with the seq it covers)."""
        return snapshot.encode_state(state)

    def decode_state(self, blob: bytes) -> EngineState:
        return snapshot.decode_state(blob)

    def rows_of(self, state: EngineState) -> list[RowChange]:
        """Every row of every table for `state` (what a rebuild writes)."""
        return [RowChange(table, key, _encode(view)) for table in self.tables
                for key, view in getattr(state, table).items()]


class StateBuilder:
    """A `FoldBuilder` as the store drives it: feed stretches, take snapshots on the way,
    freeze the state once at the end. Pure; `snapshot()` returns the part of the encoding
    that may run on another thread while the fold goes on."""

    def __init__(self, state: EngineState) -> None:
        self._fold = FoldBuilder(state)

    def feed(self, envelopes: Iterable[Envelope]) -> None:
        self._fold.feed(envelopes)

    def snapshot(self) -> Callable[[], bytes]:
        """Encode the state folded so far now (it changes with the next `feed`); the
        returned call compresses it into what `encode_state` would give for that state."""
        raw = snapshot.encode_maps(self._fold.seq, self._fold.maps())
        return lambda: snapshot.compress(raw)

    def state(self) -> EngineState:
        return self._fold.state()


def decode_row(table: str, doc: bytes) -> object:
    return _DECODERS[table].decode(doc)
