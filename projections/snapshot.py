"""Snapshots of `EngineState`: the whole state as bytes, and back.

I/O: none. The store keeps the bytes (events/store.py, table `projection_snapshots`) with the
seq they cover, and only trusts one whose `SNAPSHOT_VERSION` matches this build's, so that
restarts and time travel fold from the nearest snapshot instead of from zero (L-04).

`SNAPSHOT_VERSION` covers the state's layout (a fingerprint of the msgspec schema of every
view, taken automatically) and the fold's meaning (`FOLD_VERSION`, by hand): bump
`FOLD_VERSION` whenever a handler in projections/fold.py changes what it computes, or old
snapshots would be trusted with the old meaning. tests/property/test_snapshot_properties.py
holds `decode(encode(s)) == s` and `fold_from(snapshot@k, tail) == fold(all)`.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Mapping
from typing import Any

import immutables
import msgspec

from events.vocabulary import EVENT_TYPES
from projections.state import (
    ContainerView,
    EngineState,
    ExecView,
    ImageView,
    NetworkView,
    OperationView,
    VolumeView,
)

__all__ = ["SNAPSHOT_VERSION", "compress", "decode_state", "encode_maps", "encode_state"]

FOLD_VERSION = 1


class _StateDoc(msgspec.Struct, array_like=True):
    """`EngineState` with plain dicts for its persistent maps (field order = `EngineState`)."""

    seq: int
    containers: dict[str, ContainerView]
    names: dict[str, str]
    name_versions: dict[str, int]
    images: dict[str, ImageView]
    tags: dict[str, str]
    layers: dict[str, int]
    volumes: dict[str, VolumeView]
    networks: dict[str, NetworkView]
    network_names: dict[str, str]
    execs: dict[str, ExecView]
    operations: dict[str, OperationView]


try:
    from isal.isal_zlib import compress as _deflate
except ImportError:  # pragma: no cover - isal is a dependency; this keeps a bare venv working
    from zlib import compress as _deflate

_MAPS = _StateDoc.__struct_fields__[1:]
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_StateDoc)


def _fingerprint() -> str:
    layout = msgspec.json.encode(msgspec.json.schema(_StateDoc))
    events = ",".join(f"{name}:{cls.schema_version}" for name, cls in sorted(EVENT_TYPES.items()))
    digest = hashlib.sha256(layout + b"\0" + events.encode()).hexdigest()[:16]
    return f"engine-fold{FOLD_VERSION}-{digest}"


SNAPSHOT_VERSION = _fingerprint()


def encode_state(state: EngineState) -> bytes:
    """msgpack, deflated: views repeat their field names and configs, so level 1 shrinks a
    state ~8x for ~10 ms per MB (snapshots of a 1M-event log would otherwise weigh more
    than a quarter of it)."""
    return compress(encode_maps(state.seq, {name: getattr(state, name) for name in _MAPS}))


def encode_maps(seq: int, maps: Mapping[str, Mapping[str, Any]]) -> bytes:
    """The uncompressed half of `encode_state`, from any mappings by `EngineState` field
    name (a `FoldBuilder`'s live dicts): cheap, so a fold can take it and move on while
    `compress` runs on another thread (zlib lets go of the GIL)."""
    doc = _StateDoc(seq, *(m if isinstance(m, dict) else dict(m.items())
                           for m in (maps[name] for name in _MAPS)))
    return _ENCODER.encode(doc)


def compress(raw: bytes) -> bytes:
    """Deflate, level 1, through ISA-L when present: a standard zlib stream (older builds
    and `decode_state` read it with `zlib.decompress`, so the format and version stay),
    made ~6x faster than zlib's (6 against 38 ms for the 8 MB state of a 10,000-container
    log; a rebuild writes one every 50k events) and no bigger."""
    return _deflate(raw, 1)


def decode_state(blob: bytes) -> EngineState:
    """The state `encode_state` was given; raises zlib.error, msgspec.DecodeError or
    msgspec.ValidationError on bytes that are not such a snapshot."""
    doc = _DECODER.decode(zlib.decompress(blob))
    return EngineState(seq=doc.seq, **{name: immutables.Map(getattr(doc, name)) for name in _MAPS})
