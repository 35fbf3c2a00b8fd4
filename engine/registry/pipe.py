"""Byte pipes from trio to worker threads, for downloads that are stored and unpacked at once.

I/O: none of its own (threads and queues). A `Pipe` carries chunks from a trio task to one
thread, bounded to `depth` chunks so a fast network cannot outrun the disk; `abort(exc)`
ends it from either side, and a blocked producer or consumer wakes up.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import trio

_END = object()


class PipeAborted(Exception):
    """The other side of the pipe gave up."""


class Pipe:
    def __init__(self, depth: int = 8) -> None:
        self._q: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._dead = threading.Event()
        self.error: BaseException | None = None
        self.consumed = 0  # bytes taken by the consumer (its progress)

    # -- producer side (trio or a thread) --------------------------------------------------

    def put_blocking(self, item: object) -> None:
        while not self._dead.is_set():
            try:
                self._q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        raise PipeAborted(str(self.error or "pipe closed"))

    async def put(self, chunk: bytes) -> None:
        try:
            self._q.put_nowait(chunk)
            return
        except queue.Full:
            pass
        await trio.to_thread.run_sync(self.put_blocking, chunk, abandon_on_cancel=True)

    def close(self) -> None:
        """No more data: the consumer sees EOF after what is queued."""
        self.put_blocking(_END)

    def abort(self, exc: BaseException) -> None:
        """End the pipe with an error, waking whoever waits on it."""
        if self.error is None:
            self.error = exc
        self._dead.set()
        try:
            while True:
                self._q.get_nowait()
        except queue.Empty:
            pass
        try:
            self._q.put_nowait(exc)
        except queue.Full:
            pass

    @property
    def aborted(self) -> bool:
        return self._dead.is_set()

    # -- consumer side (a thread) ----------------------------------------------------------

    def chunks(self) -> Iterator[bytes]:
        while True:
            item = self._q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise PipeAborted(str(item)) from item
            assert isinstance(item, bytes)
            self.consumed += len(item)
            yield item


class PipeReader:
    """A binary file object over a pipe, for `LayerStore.unpack` (it only calls read)."""

    def __init__(self, pipe: Pipe) -> None:
        self._it = pipe.chunks()
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes; fewer only at the end of the stream (a short read is EOF to
        the magic-byte sniffing of the unpacker)."""
        want = (1 << 62) if n is None or n < 0 else n
        parts: list[bytes] = []
        have = 0
        while have < want:
            if not self._buf:
                self._buf = next(self._it, b"")
                if not self._buf:
                    break
            take = self._buf[: want - have]
            self._buf = self._buf[len(take):]
            parts.append(take)
            have += len(take)
            if n is None or n < 0:
                continue
        return b"".join(parts) if len(parts) != 1 else parts[0]

    def readable(self) -> bool:
        return True
