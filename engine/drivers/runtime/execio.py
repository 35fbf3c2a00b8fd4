"""Processes and streams into running containers: exec (collected, streamed, detached),
conmon's attach socket and control fifo.

I/O: runs `runc exec`, allocates ptys, connects to unix sockets, writes fifos and process
files under the container's runtime directory.

A tty exec gives runc the slave side of a pty we hold: runc, attached and with
`terminal: true`, relays between its own terminal and the container's pty (and resizes the
latter on SIGWINCH), so the caller just reads and writes our master.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import termios
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from engine.core.errors import Conflict
from engine.drivers.runtime.runc import Runc, classify_error

EXEC_STOP_GRACE_S = 10.0
_seq = 0


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    pid: int = 0  # set for detached execs


def write_process_file(cdir: Path, process: Mapping[str, Any]) -> Path:
    global _seq
    cdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _seq += 1
    f = cdir / f"exec-{os.getpid()}-{_seq}.json"
    # 0600 and O_EXCL: the process spec carries the environment (RELIABILITY S-08).
    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(json.dumps(process).encode())
    return f


async def exec_collect(runc: Runc, container_id: str, pfile: Path, stdin: bytes) -> ExecResult:
    proc = await trio.run_process(
        runc.argv("exec", "--process", str(pfile), container_id),
        stdin=stdin,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    err = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0 and "exec failed" in err:
        raise classify_error("exec", container_id, err)
    return ExecResult(proc.returncode, proc.stdout, proc.stderr)


async def exec_probe(runc: Runc, container_id: str, pfile: Path, timeout_s: float,
                     max_output: int) -> ExecResult | None:
    """A health probe: output (stdout then stderr) cut to `max_output` bytes; None when it
    outlived `timeout_s` — then the probe process itself is SIGKILLed by the pid runc wrote
    (runc cannot forward SIGKILL), so no probe outlives its timeout inside the container."""
    pid_file = pfile.with_suffix(".pid")

    async def kill_probe(proc: trio.Process) -> None:
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            proc.kill()  # not started (or gone): stop runc itself
            return
        with trio.move_on_after(5):
            await proc.wait()
        proc.kill()

    result: ExecResult | None = None
    try:
        with trio.move_on_after(timeout_s):
            proc = await trio.run_process(
                runc.argv("exec", "--pid-file", str(pid_file), "--process", str(pfile),
                          container_id),
                stdin=subprocess.DEVNULL, capture_stdout=True, capture_stderr=True,
                check=False, deliver_cancel=kill_probe)
            output = (proc.stdout + proc.stderr)[:max_output]
            result = ExecResult(proc.returncode, output, b"")
    finally:
        pid_file.unlink(missing_ok=True)
    return result


async def exec_detached(runc: Runc, container_id: str, pfile: Path) -> ExecResult:
    pid_file = pfile.with_suffix(".pid")
    # runc's stderr goes to an unlinked file, not a pipe: the detached process inherits it,
    # and a pipe would stay open (and our read blocked) for the process's whole life.
    err_file = pfile.with_suffix(".err")
    with open(err_file, "w+b") as err:
        err_file.unlink()
        try:
            # A detached tty exec would need a holder for the pty master (a console socket);
            # detached execs therefore run without a terminal.
            code = await runc.exec(
                container_id,
                str(pfile),
                detach=True,
                pid_file=str(pid_file),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        except BaseException:
            pid_file.unlink(missing_ok=True)
            raise
        if code != 0:
            err.seek(0)
            pid_file.unlink(missing_ok=True)
            raise classify_error("exec", container_id, err.read(65536).decode("utf-8", "replace"))
    try:
        pid = int(pid_file.read_text().strip() or 0)
    finally:
        pid_file.unlink(missing_ok=True)
    return ExecResult(0, b"", b"", pid=pid)


class ExecProcess:
    """A running attached exec. With a tty, `stdout` is the terminal (stderr merged, as on
    any terminal) and `stdin` writes to it; without, three pipes."""

    def __init__(
        self,
        proc: trio.Process,
        *,
        stdin: trio.abc.SendStream | None,
        stdout: trio.abc.ReceiveStream,
        stderr: trio.abc.ReceiveStream | None,
        master: int = -1,
        pid_file: Path | None = None,
    ) -> None:
        self._proc = proc
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self._master = master
        self._pid_file = pid_file

    @property
    def tty(self) -> bool:
        return self._master >= 0

    async def started(self) -> int:
        """The process's pid once runc has started it, or 0 when runc gave up first (an
        executable not found: runc writes its pid file only for a process it started)."""
        while self._pid_file is not None:
            ended = self._proc.returncode is not None
            # Checked before the read: runc may write the file, run a short command to its
            # end and exit between a failed read and the check (a 126 for `true` in CI).
            try:
                return int(self._pid_file.read_text().strip())
            except (OSError, ValueError):
                if ended:
                    return 0
                await trio.sleep(0.01)  # runc writes it right after the start
        return 0

    async def close_stdin(self) -> None:
        """The client half-closed: the process reads EOF. A terminal has no half-close (its
        master is stdin and stdout at once), so there it is left open: Docker's CLI ends an
        `exec -it` by closing its connection when the detach keys are typed, and the
        process must run on (an EOF character would end a shell)."""
        if self.stdin is not None and self._master < 0:
            await self.stdin.aclose()

    async def wait(self) -> int:
        code: int = await self._proc.wait()
        return code

    @property
    def returncode(self) -> int | None:
        """runc's exit status (the process's) once it is known, even after a cancelled wait."""
        code: int | None = self._proc.returncode
        return code

    def resize(self, height: int, width: int) -> None:
        if self._master < 0:
            raise Conflict("this exec has no terminal", "resize needs an exec with tty")
        _set_winsize(self._master, height, width)
        self._proc.send_signal(signal.SIGWINCH)  # runc copies the new size to the container

    def signal(self, sig: int) -> None:
        """runc forwards the signals it gets to the exec'd process."""
        self._proc.send_signal(sig)


@asynccontextmanager
async def open_exec(
    runc: Runc,
    container_id: str,
    pfile: Path,
    *,
    tty: bool,
    size: tuple[int, int] | None = None,
    pid_file: Path | None = None,
    stdin: bool = True,
) -> AsyncIterator[ExecProcess]:
    """Start `runc exec` attached; on leaving, a still-running process gets SIGTERM (which
    runc forwards), then SIGKILL to runc after a grace period.

    `size` (rows, columns) is set on the pty before runc starts: runc copies it into the
    container's terminal at setup, whereas a SIGWINCH sent before runc installed its
    handler would be lost."""
    argv = runc.argv("exec", *(["--tty"] if tty else []),
                     *(["--pid-file", str(pid_file)] if pid_file else []),
                     "--process", str(pfile), container_id)
    if tty:
        master, slave = pty.openpty()
        os.set_blocking(master, False)
        if size is not None:
            _set_winsize(master, *size)
        try:
            proc = await trio.lowlevel.open_process(
                argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        term = trio.lowlevel.FdStream(master)
        ep = ExecProcess(proc, stdin=term, stdout=term, stderr=None, master=master,
                         pid_file=pid_file)
    else:
        # Without stdin the process reads /dev/null, as under Docker (`exec` without -i).
        proc = await trio.lowlevel.open_process(
            argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert proc.stdout is not None and proc.stderr is not None
        ep = ExecProcess(proc, stdin=proc.stdin, stdout=proc.stdout, stderr=proc.stderr,
                         pid_file=pid_file)
    try:
        yield ep
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                if tty:
                    # A terminal that goes away hangs up: an interactive shell ignores
                    # SIGTERM but not SIGHUP (runc forwards both).
                    proc.send_signal(signal.SIGHUP)
                proc.send_signal(signal.SIGTERM)
                with trio.move_on_after(EXEC_STOP_GRACE_S):
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            for s in {id(x): x for x in (ep.stdin, ep.stdout, ep.stderr) if x}.values():
                await s.aclose()
            if pid_file is not None:
                pid_file.unlink(missing_ok=True)


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


async def exec_tty_collect(runc: Runc, container_id: str, pfile: Path) -> ExecResult:
    out = bytearray()
    async with open_exec(runc, container_id, pfile, tty=True) as ep:
        try:
            while chunk := await ep.stdout.receive_some(65536):
                out.extend(chunk)
        except (trio.BrokenResourceError, OSError):
            pass  # EIO once the last slave closed: the process and runc are done
        code = await ep.wait()
    return ExecResult(code, bytes(out), b"")


class AttachSession:
    """One attach connection: conmon prefixes every message with the stream it came from
    (2 stdout, 3 stderr); what we send is the container's stdin."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self._sock = sock

    async def receive(self) -> tuple[str, bytes] | None:
        msg = await self._sock.recv(32768 + 1)
        if not msg:
            return None
        # conmon tags messages with its pipe_type enum: 1 stdin, 2 stdout, 3 stderr.
        stream = {2: "stdout", 3: "stderr"}.get(msg[0], "stdout")
        return stream, msg[1:]

    async def send(self, data: bytes) -> None:
        await self._sock.send(data)

    def close_stdin(self) -> None:
        """The client's stdin ended: conmon closes the container's stdin (StdinOnce)."""
        try:
            self._sock.shutdown(trio.socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self._sock.close()


async def connect_attach(bundle: Path, container_id: str) -> AttachSession:
    """Connect to conmon's attach socket (SOCK_SEQPACKET at <bundle>/attach)."""
    try:
        dfd = os.open(bundle, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise Conflict(f"cannot attach to {container_id}: no bundle", "is it created?") from e
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_SEQPACKET)
    try:
        # Through /proc/self/fd: bundle paths can exceed sun_path's 108 bytes.
        await sock.connect(f"/proc/self/fd/{dfd}/attach")
    except OSError as e:
        sock.close()
        raise Conflict(f"cannot attach to {container_id}: {e.strerror}", "is it running?") from e
    finally:
        os.close(dfd)
    return AttachSession(sock)


def write_ctl(bundle: Path, container_id: str, line: str) -> None:
    """conmon's control fifo: `1 <h> <w>` resizes the tty, `2 0 0` reopens the log."""
    try:
        fd = os.open(bundle / "ctl", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise Conflict(f"container {container_id} has no running monitor", "") from e
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
