"""Archive files of compacted events: self-contained, re-hashable, written durably.

I/O: reads archive files (`read_archive`, `file_sha256`); `encode_lines` makes the bytes of a
new one, which the engine's shell writes durably (engine/shell/compaction.py: temporary name, fsync,
rename, directory fsync) inside the store's compaction transaction, before any row leaves the
live table. `events/store.py` reads archives back in `verify`.

Format (`shipslog-archive/1`), JSON lines:
    line 1   {"format": ..., "before_ns": ..., "count": N, "first_seq": ..., "last_seq": ...}
    line 2.. one event per line, every stored column in `events` order:
             [seq, stream, stream_version, schema_version, type, recorded_at, actor (base64),
              op_id, command_id, payload (base64), hash]
Each event can be re-hashed from its line alone (`canonical`); the whole file's sha256 is
recorded in the `ChainCompacted` event that removed the rows from the live log.

"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from events.codec import canonical_bytes, decode_actor, decode_event
from events.envelope import Envelope

__all__ = [
    "FORMAT",
    "ArchiveError",
    "ArchiveHeader",
    "ArchivedEvent",
    "canonical",
    "file_sha256",
    "encode_lines",
    "envelope_of",
    "events_of_streams",
    "read_archive",
]

FORMAT = "shipslog-archive/1"


class ArchiveError(ValueError):
    """An archive file that is missing, unreadable or malformed."""


class ArchiveHeader(msgspec.Struct, frozen=True, kw_only=True):
    format: str = FORMAT
    before_ns: int
    count: int
    first_seq: int
    last_seq: int


class ArchivedEvent(msgspec.Struct, frozen=True, array_like=True):
    """One row of `events`, column for column."""

    seq: int
    stream: str
    stream_version: int
    schema_version: int
    type: str
    recorded_at: int
    actor: bytes
    op_id: str
    command_id: str | None
    payload: bytes
    hash: str

    @classmethod
    def of_row(cls, row: Sequence[Any]) -> ArchivedEvent:
        return cls(row[0], row[1], row[2], row[3], row[4], row[5], bytes(row[6]), row[7],
                   row[8], bytes(row[9]), row[10])


def canonical(ev: ArchivedEvent) -> bytes:
    """The bytes the event's hash covers (events/codec.py)."""
    return canonical_bytes(seq=ev.seq, stream=ev.stream, stream_version=ev.stream_version,
                           schema_version=ev.schema_version, recorded_at=ev.recorded_at,
                           actor=ev.actor, op_id=ev.op_id, command_id=ev.command_id,
                           type_name=ev.type, payload=ev.payload)


_encode = msgspec.json.Encoder().encode
_header = msgspec.json.Decoder(ArchiveHeader)
_event = msgspec.json.Decoder(ArchivedEvent)


def encode_lines(header: ArchiveHeader, events: Sequence[ArchivedEvent]) -> Iterator[bytes]:
    """The file's bytes, in chunks of up to 4096 lines."""
    yield _encode(header) + b"\n"
    batch: list[bytes] = []
    for ev in events:
        batch.append(_encode(ev) + b"\n")
        if len(batch) == 4096:
            yield b"".join(batch)
            batch = []
    if batch:
        yield b"".join(batch)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_archive(path: str | Path) -> tuple[ArchiveHeader, list[ArchivedEvent | None]]:
    """The header and events of an archive. A line that no longer decodes (the file was
    altered) comes back as None in its place, so the caller can name the event it held."""
    try:
        with open(path, "rb") as fh:
            first = fh.readline()
            try:
                header = _header.decode(first)
            except msgspec.MsgspecError as exc:
                raise ArchiveError(f"{path}: not a shipslog archive: {exc}") from None
            if header.format != FORMAT:
                raise ArchiveError(f"{path}: unknown archive format {header.format!r}")
            events: list[ArchivedEvent | None] = []
            for line in fh:
                try:
                    events.append(_event.decode(line))
                except msgspec.MsgspecError:
                    events.append(None)
    except OSError as exc:
        raise ArchiveError(f"cannot read archive {path}: {exc.strerror}") from None
    return header, events


def envelope_of(ev: ArchivedEvent) -> Envelope:
    """An archived event as the Envelope the live log gave before compaction."""
    return Envelope(seq=ev.seq, stream=ev.stream, stream_version=ev.stream_version,
                    schema_version=ev.schema_version, recorded_at=ev.recorded_at,
                    actor=decode_actor(ev.actor), op_id=ev.op_id,
                    event=decode_event(ev.type, ev.schema_version, ev.payload),
                    command_id=ev.command_id, hash=ev.hash)


def events_of_streams(directory: str | Path, streams: Collection[str]) -> list[Envelope]:
    """Every archived event of `streams` in the archives under `directory`, in seq order
    (`history` of a compacted object). Reads every archive file: meant for one object."""
    folder = Path(directory)
    found: list[Envelope] = []
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("chain-*.jsonl")):
        try:
            _, events = read_archive(path)
        except ArchiveError:
            continue  # `audit verify` reports it
        found.extend(envelope_of(ev) for ev in events if ev is not None and ev.stream in streams)
    found.sort(key=lambda env: env.seq)
    return found
