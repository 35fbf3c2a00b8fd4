"""Relaying an attached exec both ways over a hijacked connection, as it happens.

I/O: reads and writes the client's hijacked connection and the exec's pipes or pty (trio).

Issue 13: the daemon used to read the client's stdin to its end, run the process, then send all
its output at once: `exec -it` showed no prompt and 100 MB of output cost 190 MB of RSS. Here
every byte goes on as soon as it arrives, in chunks of at most `CHUNK` bytes, and a slow
client holds back the process (a full pipe), never the daemon's memory.

Docker's rules (moby `container/stream/attach.go`, `daemon/exec.go`): the stream is multiplexed
(8-byte headers) unless the *start request* asked for a tty; the client's half-close closes the
process's stdin while its output keeps flowing; with a terminal, the detach keys end the
attach and leave the process running.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import trio

from engine.api.docker.escape import EscapeScanner
from engine.api.server.hijack import HijackedStream

CHUNK = 32768
HANGUP_POLL_S = 0.5


@dataclass
class RelayState:
    """What a relay found out: whether the client detached or went away."""

    detached: bool = False
    client_gone: bool = False
    released: trio.Event = field(default_factory=trio.Event)
    lock: trio.StrictFIFOLock = field(default_factory=trio.StrictFIFOLock)

    def release(self, *, detached: bool = False) -> None:
        """The client is done with this exec (detach keys, or gone): its output is dropped
        from now on and the process runs on, as under Docker."""
        if detached:
            self.detached = True
        else:
            self.client_gone = True
        self.released.set()


async def relay_exec(conn: HijackedStream, ep: Any, *, mux: bool, stdin: bool,
                     escape: EscapeScanner | None, state: RelayState) -> RelayState:
    """Copy until the process closed its output. When the client detaches or goes away
    (`state.released` is set) the output is drained and dropped, so the process runs on and
    never blocks on a full pipe: Docker's CLI detaches an `exec -it` by closing its
    connection, and the exec must survive that."""
    async with trio.open_nursery() as nursery:
        if stdin and ep.stdin is not None:
            nursery.start_soon(_pump_input, conn, ep, escape, state)
        nursery.start_soon(_watch_hangup, conn, state)
        async with trio.open_nursery() as outputs:
            outputs.start_soon(_pump_output, ep.stdout, conn, 1 if mux else 0, state)
            if ep.stderr is not None:
                outputs.start_soon(_pump_output, ep.stderr, conn, 2 if mux else 0, state)
        nursery.cancel_scope.cancel()  # the process is done: stop reading the client
    return state


async def _watch_hangup(conn: HijackedStream, state: RelayState) -> None:
    """A client that closed its connection while the process prints nothing is noticed by
    polling (there is nothing to write that would fail); half-closed ones are not gone."""
    while not state.released.is_set():
        if conn.hung_up():
            state.release()
            return
        await trio.sleep(HANGUP_POLL_S)


async def _pump_input(conn: HijackedStream, ep: Any, escape: EscapeScanner | None,
                      state: RelayState) -> None:
    while data := await conn.receive_some(CHUNK):
        hit = False
        if escape is not None:
            data, hit = escape.feed(data)
        if data:
            try:
                await ep.stdin.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return  # the process closed its stdin; its output may still flow
        if hit:
            state.release(detached=True)
            await conn.aclose()  # the client's attach ends; the process runs on
            return
    try:
        await ep.close_stdin()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass


async def _pump_output(source: trio.abc.ReceiveStream, conn: HijackedStream, stream_id: int,
                       state: RelayState) -> None:
    while True:
        try:
            data = bytes(await source.receive_some(CHUNK))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return  # EIO on a pty master once the last slave closed: the process is done
        if not data:
            return
        if state.detached or state.client_gone:
            continue
        try:
            async with state.lock:  # stdout and stderr share the one connection
                if stream_id:
                    await conn.send_frame(stream_id, data)
                else:
                    await conn.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            if not state.released.is_set():
                state.release()
