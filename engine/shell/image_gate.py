"""The gate between commands that start to use images and those that delete them
(RELIABILITY L-07, "prune/rmi racing create/pull").

A decision is made on the state as of its start, and the state only shows an append once it
is committed; between the two another command can decide on the old state. For images that
window matters: a create can pin an image that an `rmi` is deleting at the same moment, or a
pull can find a layer stored that a garbage collection is about to delete. So a create holds
the gate *shared* while it decides and appends (afterwards its container is in the state, in
use), and so does a pull, load or import while it records its start (afterwards the pending
operation stops the collector, `engine.core.images.unused_layers`); `rmi` and prune hold it
*alone* while they decide, append and collect. Shared holders never wait for each other.

I/O: none; trio synchronisation only. One gate per journal (`gate_for`), so every part of a
daemon (the engine, the puller, image load) finds the same one without extra wiring.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio


class ImageGate:
    def __init__(self) -> None:
        self._turn = trio.Lock()  # FIFO: a waiting deleter is not overtaken by new users
        self._users = 0
        self._idle = trio.Event()
        self._idle.set()

    @asynccontextmanager
    async def using(self) -> AsyncIterator[None]:
        """Shared: many at once, none while a deleter holds the gate."""
        async with self._turn:
            self._users += 1
            if self._users == 1:
                self._idle = trio.Event()
        try:
            yield
        finally:
            self._users -= 1
            if self._users == 0:
                self._idle.set()

    @asynccontextmanager
    async def deleting(self) -> AsyncIterator[None]:
        """Alone: waits for the shared holders to leave, and keeps new ones out."""
        async with self._turn:
            await self._idle.wait()
            yield


_gates: weakref.WeakKeyDictionary[Any, ImageGate] = weakref.WeakKeyDictionary()


def gate_for(journal: Any) -> ImageGate:
    gate = _gates.get(journal)
    if gate is None:
        gate = _gates[journal] = ImageGate()
    return gate
