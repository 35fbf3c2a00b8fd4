"""Event codec: payload bytes <-> event Structs, upcasting, and the canonical bytes we hash.

I/O: none (pure). The store keeps a payload exactly as `encode_event` produced it and hashes
those bytes *as stored*; decoding upgrades old payloads through `UPCASTERS` on the way out,
so an upcaster never changes what the hash chain covers (DESIGN.md, "Schema evolution").

Payloads are msgspec JSON with a deterministic key order (struct fields in declaration order,
dict keys sorted), and carry their own `"type"` tag: a payload read on its own still says
what it is, and the per-type decoder rejects a payload stored under the wrong type.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, lru_cache
from typing import Any

import msgspec

from events.envelope import Actor
from events.vocabulary import EVENT_TYPES, BaseEvent, Event

__all__ = [
    "CodecError",
    "UPCASTERS",
    "actor_bytes",
    "canonical_bytes",
    "decode_actor",
    "decode_event",
    "decoders",
    "encode_event",
]


class CodecError(Exception):
    """A payload that cannot be decoded: unknown type, no upcaster path, or bad bytes."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


# (type name, stored schema_version) -> pure function from the old payload dict to the dict of
# schema_version + 1. Chained until the class's current `schema_version` is reached.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[tuple[str, int], Upcaster] = {}

_ENCODER = msgspec.json.Encoder(order="deterministic")
_ACTOR_DECODER = msgspec.json.Decoder(Actor)


@cache
def _decoder(type_name: str) -> msgspec.json.Decoder[Any]:
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise CodecError(
            f"unknown event type {type_name!r}",
            "the log was written by a newer shipslog; upgrade this binary to read it",
        )
    return msgspec.json.Decoder(cls)


def decoders() -> dict[str, tuple[type[BaseEvent], Callable[[bytes], Any]]]:
    """`{type name: (class, decode)}` for hot loops that check `schema_version` themselves
    and fall back to `decode_event` for anything else (old versions, damaged payloads)."""
    return {name: (cls, _decoder(name).decode) for name, cls in EVENT_TYPES.items()}


def encode_event(event: BaseEvent | Event) -> bytes:
    """The payload bytes for `event`: canonical JSON, tag included."""
    return _ENCODER.encode(event)


def decode_event(type_name: str, schema_version: int, payload: bytes) -> Event:
    """Decode a stored payload, upcasting it from `schema_version` to the current version."""
    decoder = _decoder(type_name)
    cls = EVENT_TYPES[type_name]
    current = cls.schema_version
    try:
        if schema_version == current:
            return decoder.decode(payload)  # type: ignore[no-any-return]
        if schema_version > current:
            raise CodecError(
                f"{type_name} has schema_version {schema_version}, this build knows {current}",
                "upgrade shipslog: the log was written by a newer version",
            )
        doc = msgspec.json.decode(payload)
        for version in range(schema_version, current):
            step = UPCASTERS.get((type_name, version))
            if step is None:
                raise CodecError(
                    f"no upcaster for {type_name} from schema_version {version}",
                    "add one to events/codec.py UPCASTERS",
                )
            doc = step(doc)
        doc["type"] = type_name
        return msgspec.convert(doc, cls)  # type: ignore[return-value]
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CodecError(
            f"cannot decode {type_name} (schema_version {schema_version}): {exc}",
            "the stored payload is damaged; run `shipslog audit verify`",
        ) from exc


def actor_bytes(actor: Actor) -> bytes:
    """How an actor is stored (and hashed): compact JSON, fields in declaration order."""
    return _ENCODER.encode(actor)


@lru_cache(maxsize=4096)
def decode_actor(blob: bytes) -> Actor:
    """Actors repeat (the daemon, a handful of users): cache the decoded Struct by its bytes."""
    return _ACTOR_DECODER.decode(blob)


# Field separator and "no command_id" marker (ASCII US and RS). No field may contain them: the
# store refuses them (and NUL) in stream, op_id and command_id; JSON escapes every control
# character, so actor bytes never hold one; ints are digits; type names are identifiers. The
# payload comes last, so its bytes need no separator. Hence the encoding is unambiguous: no
# choice of values can move bytes from one field into its neighbour and keep the same hash.
SEPARATOR = "\x1f"
NO_COMMAND = "\x1e"
FORBIDDEN_IN_FIELDS = ("\x00", SEPARATOR, NO_COMMAND)


def canonical_bytes(
    *,
    seq: int,
    stream: str,
    stream_version: int,
    schema_version: int,
    recorded_at: int,
    actor: bytes,
    op_id: str,
    command_id: str | None,
    type_name: str,
    payload: bytes,
) -> bytes:
    """The bytes an event's hash covers: envelope fields separated by 0x1F, then the payload.

    `actor` and `payload` are the stored bytes. `events/store.py` builds the same bytes in
    SQL for `verify`; a test keeps the two equal.
    """
    return b"%d\x1f%b\x1f%d\x1f%d\x1f%d\x1f%b\x1f%b\x1f%b\x1f%b\x1f%b" % (
        seq,
        stream.encode(),
        stream_version,
        schema_version,
        recorded_at,
        actor,
        op_id.encode(),
        b"\x1e" if command_id is None else command_id.encode(),
        type_name.encode(),
        payload,
    )
