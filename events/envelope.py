"""The envelope: what the store adds around every event, kept apart from the payload.

I/O: none. The store (`events/store.py`) fills the envelope fields; the rest of the
engine only ever reads them.

`seq` is global and gap-free; `stream`/`stream_version` give optimistic concurrency per
object; `schema_version` drives upcasting; `recorded_at` is Unix time in nanoseconds;
`actor` says who asked; `op_id` ties the event to the operation it belongs to;
`command_id` makes a retried append idempotent; `hash` chains the event to the one
before it (`sha256(prev_hash || canonical bytes)`).
"""

from __future__ import annotations

import msgspec

from events.vocabulary import Event


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    """Who caused an event: the peer credentials of the API caller, or the daemon itself."""

    uid: int
    gid: int
    pid: int
    loginuid: int | None = None
    command: tuple[str, ...] | None = None
    via: str = "api"  # "api", "daemon" (supervisor, restart policy, reconciler), "cli"


SYSTEM_ACTOR = Actor(uid=0, gid=0, pid=0, via="daemon")


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """One recorded event with its envelope. Immutable once written."""

    seq: int
    stream: str
    stream_version: int
    schema_version: int
    recorded_at: int
    actor: Actor
    op_id: str
    event: Event
    command_id: str | None = None
    hash: str = ""

    @property
    def type(self) -> str:
        return type(self.event).__name__


class Pending(msgspec.Struct, frozen=True, kw_only=True):
    """An event on its way into the store: the caller's half of an envelope.

    `expected_version` is the stream version the caller decided against: `None` means
    "don't check", `0` means "the stream must not exist yet".
    """

    stream: str
    event: Event
    expected_version: int | None = None


class RowChange(msgspec.Struct, frozen=True):
    """One row of a projection table to upsert (`doc`) or delete (`doc is None`): what a
    pure projection asks the store to write in the append's transaction."""

    table: str
    key: str
    doc: bytes | None


def stream_of(kind: str, ident: str) -> str:
    """Stream names are `<kind>-<id>`: `container-<64 hex>`, `image-sha256:<hex>`, `op-<id>`."""
    return f"{kind}-{ident}"
