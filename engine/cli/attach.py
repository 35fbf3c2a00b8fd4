"""Moving a container's stdio between the user's terminal and a hijacked API connection
(run, start -a, attach, exec) or a log stream, with the terminal in raw mode for `-t`.

I/O: reads stdin, writes stdout/stderr, reads and writes the hijacked socket; changes and
restores the terminal's mode. Frames are decoded by `engine.api.stream.FrameDecoder`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from engine.api.stream import STDERR, SYSTEMERR, FrameDecoder


class Demuxer:
    """Writes a (possibly chunk-split) multiplexed stream to stdout and stderr; a TTY stream is
    raw bytes and goes to stdout as is."""

    def __init__(self, stdout: BinaryIO, stderr: BinaryIO, *, tty: bool) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.tty = tty
        self.decoder = FrameDecoder()
        self.system_error = b""

    def feed(self, data: bytes) -> None:
        if self.tty:
            self.stdout.write(data)
            self.stdout.flush()
            return
        for stream_id, payload in self.decoder.feed(data):
            if stream_id == SYSTEMERR:
                self.system_error += payload
                continue
            target = self.stderr if stream_id == STDERR else self.stdout
            target.write(payload)
            target.flush()

    def copy(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self.feed(chunk)


@contextlib.contextmanager
def raw_terminal(fd: int, enabled: bool) -> Iterator[None]:
    """Put the terminal in raw mode (so Ctrl-C, Ctrl-D and arrows reach the container) and
    restore it however the block ends."""
    if not enabled:
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _forward_stdin(stdin_fd: int, sock: socket.socket) -> None:
    try:
        while True:
            data = os.read(stdin_fd, 65536)
            if not data:
                break
            sock.sendall(data)
    except OSError:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)  # the container sees EOF on its stdin


def pump(sock: socket.socket, *, tty: bool, stdin_fd: int | None,
         stdout: BinaryIO | None = None, stderr: BinaryIO | None = None) -> bytes:
    """Copy until the container closes its output. stdin (when given) is forwarded from a
    daemon thread, so a blocked read never holds the process open. Returns any system-error
    payload the daemon sent in-band."""
    out = stdout if stdout is not None else sys.stdout.buffer
    err = stderr if stderr is not None else sys.stderr.buffer
    demux = Demuxer(out, err, tty=tty)
    if stdin_fd is not None:
        threading.Thread(target=_forward_stdin, args=(stdin_fd, sock), daemon=True).start()
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            demux.feed(data)
    finally:
        with contextlib.suppress(OSError):
            sock.close()
    return demux.system_error


def terminal_size(fd: int) -> tuple[int, int] | None:
    """(height, width) of the terminal on fd, or None when it is not one."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return size.lines, size.columns
