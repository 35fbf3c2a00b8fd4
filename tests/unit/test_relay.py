"""The exec relay on in-memory streams: output goes out as it comes in bounded frames,
framing follows the caller's choice, a half-close ends only the process's stdin, the detach
keys release the client while the output is drained, and a client gone is not the end of
the process."""

from __future__ import annotations

import trio
import trio.testing

from engine.api.docker.escape import EscapeScanner
from engine.api.docker.stream import FrameDecoder
from engine.api.server.hijack import HijackedStream
from engine.api.server.relay import CHUNK, RelayState, relay_exec


class FakeExec:
    """An exec's streams: what the relay writes to stdin is readable from `stdin_sent`;
    `print`/`finish` play the process's output."""

    def __init__(self, *, tty: bool) -> None:
        self.tty = tty
        self.stdin, self.stdin_sent = trio.testing.memory_stream_one_way_pair()
        self.out_w, self.stdout = trio.testing.memory_stream_one_way_pair()
        self.err_w, self.stderr = (None, None) if tty else \
            trio.testing.memory_stream_one_way_pair()
        self.stdin_closed = False

    async def close_stdin(self) -> None:
        self.stdin_closed = True
        await self.stdin.aclose()

    async def finish(self) -> None:
        await self.out_w.aclose()
        if self.err_w is not None:
            await self.err_w.aclose()


async def test_output_flows_before_input_ends_and_half_close_closes_stdin() -> None:
    client, server = trio.testing.memory_stream_pair()
    ep = FakeExec(tty=False)
    state = RelayState()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: relay_exec(HijackedStream(server), ep, mux=True,
                                              stdin=True, escape=None, state=state))
        await ep.out_w.send_all(b"ready\n")
        assert FrameDecoder().feed(await client.receive_some()) == [(1, b"ready\n")]
        await client.send_all(b"ping")
        assert await ep.stdin_sent.receive_some() == b"ping"
        await client.send_eof()
        await trio.testing.wait_all_tasks_blocked()
        assert ep.stdin_closed
        await ep.err_w.send_all(b"late\n")  # output keeps flowing after the half-close
        assert FrameDecoder().feed(await client.receive_some()) == [(2, b"late\n")]
        await ep.finish()
    assert not (state.detached or state.client_gone)


class RecordingStream(HijackedStream):
    """The sizes of the relay's writes: each is one bounded chunk."""

    sizes: list[int]

    async def send_all(self, data: bytes) -> None:
        self.sizes.append(len(data))
        await super().send_all(data)


async def test_raw_framing_and_bounded_chunks() -> None:
    client, server = trio.testing.memory_stream_pair()
    conn = RecordingStream(server)
    conn.sizes = []
    ep = FakeExec(tty=False)
    big = b"x" * (CHUNK * 3 + 5)
    received = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: relay_exec(conn, ep, mux=False, stdin=False, escape=None,
                                              state=RelayState()))

        async def produce() -> None:
            await ep.out_w.send_all(big)
            await ep.finish()

        nursery.start_soon(produce)
        while len(received) < len(big):
            received += await client.receive_some()
    assert bytes(received) == big  # a raw stream: no headers
    assert max(conn.sizes) <= CHUNK  # never a whole stream at once


async def test_detach_keys_release_the_client_and_drain_the_output() -> None:
    client, server = trio.testing.memory_stream_pair()
    ep = FakeExec(tty=True)
    state = RelayState()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: relay_exec(HijackedStream(server), ep, mux=False,
                                              stdin=True, escape=EscapeScanner(b"\x10\x11"),
                                              state=state))
        await client.send_all(b"ls\r\x10\x11")
        await state.released.wait()
        assert state.detached and not ep.stdin_closed  # the process keeps its terminal
        assert await ep.stdin_sent.receive_some() == b"ls\r"
        await ep.out_w.send_all(b"after detach")  # drained, not sent, never blocking
        await ep.finish()
    assert await client.receive_some() == b""  # the client's side was closed


async def test_a_client_gone_releases_without_ending_the_process() -> None:
    client, server = trio.testing.memory_stream_pair()
    ep = FakeExec(tty=False)
    state = RelayState()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: relay_exec(HijackedStream(server), ep, mux=True,
                                              stdin=False, escape=None, state=state))
        await client.aclose()
        await ep.out_w.send_all(b"to nobody")
        await state.released.wait()
        assert state.client_gone
        await ep.out_w.send_all(b"still drained")
        await ep.finish()  # the relay ends with the process's output, not before


def test_runc_messages_in_both_of_its_log_formats() -> None:
    from engine.core.runc_messages import runc_message as _runc_message

    want = 'exec failed: exec: "nosuch": executable file not found in $PATH'
    piped = 'time="2026-12-07T05:47:32Z" level=error msg="exec failed: exec: \\"nosuch\\": ' \
        'executable file not found in $PATH"\n'
    on_a_terminal = '\x1b[31mERRO\x1b[0m[0000] exec failed: exec: "nosuch": executable ' \
        'file not found in $PATH \r\n'
    assert _runc_message(piped) == want
    assert _runc_message(on_a_terminal) == want
    assert _runc_message("something else\n") == "something else"
