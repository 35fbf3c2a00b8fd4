"""The raw connection an `attach` or `exec start` takes over after `101 UPGRADED`.

I/O: reads and writes the client's connection (trio).
"""

from __future__ import annotations

import select

import trio

from engine.api.docker.stream import frame


class HijackedStream:
    """The raw connection after `101 UPGRADED`, with the bytes h11 had already buffered put
    back in front, so no stdin typed ahead of the upgrade is lost."""

    def __init__(self, stream: trio.abc.HalfCloseableStream, prefix: bytes = b"") -> None:
        self._stream = stream
        self._prefix = prefix
        self._eof = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Bytes from the client; b"" once the client closed its side (stdin EOF)."""
        if self._prefix:
            size = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            return data
        if self._eof:
            return b""
        try:
            data = bytes(await self._stream.receive_some(max_bytes))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self._eof = True
        return data

    async def send_all(self, data: bytes) -> None:
        await self._stream.send_all(data)

    async def send_frame(self, stream_id: int, data: bytes) -> None:
        await self._stream.send_all(frame(stream_id, data))

    async def send_eof(self) -> None:
        """Half-close: the client sees EOF on its read side and can still write."""
        try:
            await self._stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def aclose(self) -> None:
        await self._stream.aclose()

    def hung_up(self) -> bool:
        """True once the client closed the connection both ways, as opposed to a half-close
        (its end of stdin). A unix socket reports POLLHUP only then; a closed connection is
        hung up too."""
        sock = getattr(self._stream, "socket", None)
        try:
            fd = sock.fileno() if sock is not None else -1
        except OSError:
            return True
        if fd < 0:
            return sock is not None  # closed
        poller = select.poll()
        poller.register(fd, select.POLLHUP)
        return any(ev & (select.POLLHUP | select.POLLNVAL) for _, ev in poller.poll(0))
