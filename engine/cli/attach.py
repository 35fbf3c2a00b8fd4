"""Moving a container's stdio between the user's terminal and a hijacked API connection
(run, start -a, attach, exec) or a log stream, with the terminal in raw mode for `-t`.

I/O: reads stdin, writes stdout/stderr, reads and writes the hijacked socket; changes and
restores the terminal's mode. Frames are decoded by `engine.api.docker.stream.FrameDecoder`.
"""

from __future__ import annotations

import contextlib
import os
import sys

from engine.api.docker.escape import EscapeScanner
from engine.api.docker.stream import STDERR, SYSTEMERR, FrameDecoder

# typing and collections.abc are for the type checker only: importing typing costs
# every CLI start ~3 ms (issue 17); socket, threading and signal are imported where used
# (`logs` and `start` need none of them: ~5 ms)
TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    import threading
    from collections.abc import Callable, Iterable, Iterator
    from typing import IO, Any, BinaryIO


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
def raw_terminal(stdin: IO[bytes] | None, enabled: bool) -> Iterator[None]:
    """Put the terminal in raw mode (so Ctrl-C, Ctrl-D and arrows reach the container) and
    restore it however the block ends. Does nothing unless enabled and stdin is a terminal."""
    if not enabled or stdin is None or not _isatty(stdin):
        yield
        return
    import termios
    import tty

    fd = stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _reader(stdin: IO[bytes]) -> Callable[[], bytes]:
    """Unbuffered reads from a real fd (so typed keys go out at once), else the stream's own."""
    try:
        fd = stdin.fileno()
    except (OSError, AttributeError, ValueError):
        return lambda: stdin.read(65536)
    return lambda: os.read(fd, 65536)


def _forward_stdin(stdin: IO[bytes], sock: socket.socket, escape: EscapeScanner | None,
                   detached: threading.Event | None) -> None:
    import socket

    read = _reader(stdin)
    try:
        while True:
            data = read()
            if not data:
                break
            hit = False
            if escape is not None:
                data, hit = escape.feed(data)
            if data:
                sock.sendall(data)
            if hit and detached is not None:
                # Docker's CLI (hijack.go setupInput): the detach keys end the attach on the
                # client's side, leaving the container running; no wait for its exit.
                detached.set()
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                return
    except OSError:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)  # the container sees EOF on its stdin


def pump(sock: socket.socket, *, tty: bool, stdin: IO[bytes] | None,
         stdout: BinaryIO | None = None, stderr: BinaryIO | None = None,
         detach_keys: bytes | None = None, detached: threading.Event | None = None) -> bytes:
    """Copy until the container closes its output. stdin (when given) is forwarded from a
    daemon thread, so a blocked read never holds the process open. With `detach_keys`,
    typing them ends the copy and sets `detached`. Returns any system-error payload the
    daemon sent in-band."""
    out = stdout if stdout is not None else sys.stdout.buffer
    err = stderr if stderr is not None else sys.stderr.buffer
    demux = Demuxer(out, err, tty=tty)
    if stdin is not None:
        import threading

        escape = EscapeScanner(detach_keys) if detach_keys else None
        threading.Thread(target=_forward_stdin, args=(stdin, sock, escape, detached),
                         daemon=True).start()
    try:
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                if detached is not None and detached.is_set():
                    break
                raise
            if not data or (detached is not None and detached.is_set()):
                break
            demux.feed(data)
    finally:
        with contextlib.suppress(OSError):
            sock.close()
    return demux.system_error


# the signals `docker run` forwards to the container (--sig-proxy); SIGCHLD, SIGPIPE, SIGURG
# and the job-control signals stay with the CLI
PROXIED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")


@contextlib.contextmanager
def proxy_signals(send: Callable[[str], None], enabled: bool = True) -> Iterator[None]:
    """While the block runs, a signal the CLI receives is sent to the container instead of
    ending the CLI (Ctrl-C stops the container, which then ends the run with its own status).
    Only the main thread may install handlers; elsewhere this does nothing."""
    import signal
    import threading

    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    saved: dict[int, Any] = {}

    def forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(Exception):  # the container may already be gone
            send(signal.Signals(signum).name)

    for name in PROXIED_SIGNALS:
        if name == "SIGWINCH":
            continue  # a terminal resize is not a signal for a non-tty container
        number = getattr(signal, name)
        saved[number] = signal.signal(number, forward)
    try:
        yield
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def on_resize(resize: Callable[[], None], enabled: bool = True) -> Iterator[None]:
    """Call `resize` whenever the terminal changes size (SIGWINCH), as `docker run -t` does."""
    import signal
    import threading

    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: Any) -> None:
        with contextlib.suppress(Exception):  # a failed resize is cosmetic
            resize()

    saved = signal.signal(signal.SIGWINCH, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, saved)


def _isatty(stream: IO[bytes]) -> bool:
    try:
        return stream.isatty()
    except (OSError, AttributeError, ValueError):
        return False


def terminal_size(stream: IO[bytes] | None) -> tuple[int, int] | None:
    """(height, width) of the terminal stream is, or None when it is not one."""
    if stream is None or not _isatty(stream):
        return None
    try:
        size = os.get_terminal_size(stream.fileno())
    except OSError:
        return None
    return size.lines, size.columns
