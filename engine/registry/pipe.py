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
SMALL_READ = 4096


class PipeAborted(Exception):
    """The other side of the pipe gave up."""


class Pipe:
    def __init__(self, depth: int = 16) -> None:
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

    async def aclose(self) -> None:
        if self._dead.is_set():
            return
        try:
            self._q.put_nowait(_END)
        except queue.Full:
            await trio.to_thread.run_sync(self.close, abandon_on_cancel=True)

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
            try:
                item = self._q.get(timeout=0.5)
            except queue.Empty:
                if self._dead.is_set():  # aborted while its error could not be queued
                    raise PipeAborted(str(self.error or "pipe closed")) from self.error
                continue
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
        """Up to `n` bytes, without joining chunks for large reads (the decompressors take
        what comes). A small read (the unpacker sniffing magic bytes) is filled: a short
        read there would be taken for the end of the stream."""
        if n is None or n < 0:
            return b"".join([self._buf, *self._it])
        if n > SMALL_READ:
            if not self._buf:
                self._buf = next(self._it, b"")
            out, self._buf = self._buf[:n], self._buf[n:]
            return out
        while len(self._buf) < n:
            more = next(self._it, b"")
            if not more:
                break
            self._buf += more
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def readable(self) -> bool:
        return True
