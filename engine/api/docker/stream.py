"""Docker's stream formats: multiplexed stdout/stderr frames, JSON lines, hijacked connections.

I/O: none: pure framing used by both the server and the (sync) client, which must not pay for
importing trio. The hijacked connection itself is `engine/api/server/hijack.py`.

Multiplexed stream (Docker Engine API, "Attach to a container" → "Stream format"): each frame is
an 8-byte header `[STREAM_TYPE, 0, 0, 0, SIZE1, SIZE2, SIZE3, SIZE4]` (size big-endian uint32)
followed by SIZE bytes of payload; stream type 0 = stdin, 1 = stdout, 2 = stderr. A TTY stream
is raw, without frames.
"""

from __future__ import annotations

import json
import struct

# typing and collections.abc are for the type checker only: importing typing costs
# every CLI start ~3 ms (issue 17)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

STDIN = 0
STDOUT = 1
STDERR = 2
SYSTEMERR = 3  # Docker uses it for an error that ends a logs stream

HEADER = struct.Struct(">BxxxI")
MAX_FRAME = 0xFFFF_FFFF


def frame(stream_id: int, data: bytes) -> bytes:
    """One multiplexed frame. Payloads over 4 GiB are split (never happens in practice)."""
    if not 0 <= stream_id <= 3:
        raise ValueError(f"stream id must be 0-3, not {stream_id}")
    if len(data) <= MAX_FRAME:
        return HEADER.pack(stream_id, len(data)) + data
    return b"".join(
        HEADER.pack(stream_id, len(part)) + part
        for part in (data[i : i + MAX_FRAME] for i in range(0, len(data), MAX_FRAME))
    )


class FrameDecoder:
    """Incremental decoder for a multiplexed stream: feed bytes, get (stream_id, payload)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        frames: list[tuple[int, bytes]] = []
        while len(self._buffer) >= HEADER.size:
            stream_id, size = HEADER.unpack_from(self._buffer)
            if stream_id > 3:
                raise ValueError(f"not a multiplexed stream: stream id {stream_id}")
            end = HEADER.size + size
            if len(self._buffer) < end:
                break
            frames.append((stream_id, bytes(self._buffer[HEADER.size : end])))
            del self._buffer[:end]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame still buffered (non-zero at EOF means truncation)."""
        return len(self._buffer)


# ---------------------------------------------------------------------------------------------
# JSON lines (pull/push/load progress, /events)

def json_line(obj: Any) -> bytes:
    """One JSON object and a newline, as Docker writes progress messages and events.

    The standard `json` module here: this file is imported by the CLI, which should not pay
    for loading msgspec on every command."""
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def progress(
    status: str,
    *,
    id: str = "",
    progress: str = "",
    current: int | None = None,
    total: int | None = None,
) -> bytes:
    """A progress message in Docker's `jsonmessage` shape."""
    message: dict[str, Any] = {"status": status}
    if id:
        message["id"] = id
    if current is not None:
        detail: dict[str, int] = {"current": current}
        if total is not None:
            detail["total"] = total
        message["progressDetail"] = detail
    if progress:
        message["progress"] = progress
    return json_line(message)


def error_line(message: str) -> bytes:
    """A failure inside an already-started progress stream (HTTP status is 200 by then)."""
    return json_line({"errorDetail": {"message": message}, "error": message})


class JsonLineDecoder:
    """Incremental decoder for newline-delimited JSON (also accepts back-to-back objects
    separated by whitespace only at line ends, which is what Docker sends)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[Any]:
        self._buffer += data
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                return
            line = bytes(self._buffer[:newline]).strip()
            del self._buffer[: newline + 1]
            if line:
                yield json.loads(line)

    def close(self) -> Iterator[Any]:
        line = bytes(self._buffer).strip()
        self._buffer.clear()
        if line:
            yield json.loads(line)


# ---------------------------------------------------------------------------------------------
# Hijacked connections (attach, exec start)
