"""The per-container monitor: Podman's `conmon`, driven the way libpod drives it.

I/O: spawns `conmon` (which runs `runc create`), reads its sync pipe, its pid file and the
exit/oom files it leaves behind; opens pidfds to wait for it.

Why conmon (choice (a) of the issue) rather than a monitor of our own: conmon is packaged
by Debian, ~2 MB RSS per container, and already does everything the engine needs while the
daemon is down — it is the subreaper of the container, holds its stdio and pty, writes the
log, records the exit code (`<persist-dir>/exit`, `<exit-dir>/<id>`), notices OOM kills
(`<persist-dir>/oom`) and serves an attach socket and a control fifo (resize, reopen log).
Its one gap is the log format: conmon writes CRI `k8s-file` lines, not Docker's json-file.
`engine/drivers/runtime/logs.py` converts when reading, which costs nothing at write time. Size
capping uses conmon's `--log-size-max`, which truncates in place (Docker's `max-file=1`
behaviour); keeping older files (`max-file>1`) is `Runtime.rotate_log`'s job, see there.

How it is driven (libpod `oci_conmon_linux.go`): conmon daemonizes itself (double fork), so
the process we spawn exits at once; the daemonized child reports the container's pid — or
runc's error — as JSON on the pipe named by `_OCI_SYNCPIPE`, and writes its own pid into
`--conmon-pidfile`. The exit code it records is the wait status folded Docker's way
(128+signal for a killed process).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import trio

from engine.core.errors import InvalidArgument, KernelError, Unavailable
from engine.core.runc_messages import runc_message
from engine.drivers.runtime.runc import RuncError

CONMON = "conmon"
SYNC_TIMEOUT_S = 120.0  # runc create can be slow on a loaded host; never a fixed sleep


@dataclass(frozen=True)
class ExitRecord:
    exit_code: int
    signal: int  # the killing signal when exit_code > 128, else 0 (Docker's convention)
    oom_killed: bool
    finished_at_ns: int  # wall clock; 0 when unknown
    lost: bool = False  # the monitor died without recording an exit
    reason: str = ""


@dataclass(frozen=True)
class MonitorPaths:
    """Where one container's runtime files live: everything under the exec root."""

    cdir: Path  # <exec-root>/containers/<id>: conmon's persist dir (exit, oom), pid files
    exit_dir: Path  # <exec-root>/exits: conmon writes <id> here too (one dir to watch)
    container_id: str

    @property
    def conmon_pidfile(self) -> Path:
        return self.cdir / "conmon.pid"

    @property
    def pidfile(self) -> Path:
        return self.cdir / "pidfile"

    @property
    def exit_file(self) -> Path:
        return self.cdir / "exit"

    @property
    def oom_file(self) -> Path:
        return self.cdir / "oom"


def parse_size(text: str) -> int:
    """Docker's size strings for log options: `10m`, `1k`, `2g`, `512` (bytes)."""
    t = text.strip().lower().removesuffix("b")
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(t[-1:], 1)
    num = t[:-1] if t[-1:] in "kmg" else t
    try:
        value = int(float(num) * mult)
    except ValueError:
        raise InvalidArgument(f"invalid size {text!r}", "use a number with k, m or g") from None
    if value <= 0:
        raise InvalidArgument(f"invalid size {text!r}", "the size must be positive")
    return value


def conmon_argv(
    paths: MonitorPaths,
    *,
    bundle: str,
    runc_binary: str,
    runc_root: str,
    log_path: str,
    log_size_max: int = 0,
    tty: bool = False,
    open_stdin: bool = False,
    stdin_once: bool = False,
    name: str = "",
    conmon: str = CONMON,
) -> list[str]:
    cid = paths.container_id
    argv = [
        conmon, "--api-version", "1",
        "-c", cid, "-u", cid, "-n", name or cid,
        "-r", runc_binary, "-b", bundle,
        "-p", str(paths.pidfile),
        "--exit-dir", str(paths.exit_dir),
        "--persist-dir", str(paths.cdir),
        "--socket-dir-path", str(paths.cdir),
        "--full-attach",  # attach socket at <bundle>/attach, no 108-byte path truncation
        "--conmon-pidfile", str(paths.conmon_pidfile),
        "--runtime-arg", "--root", "--runtime-arg", runc_root,
        "-l", f"k8s-file:{log_path}" if log_path else "none",
    ]  # fmt: skip
    if log_size_max > 0:
        argv += ["--log-size-max", str(log_size_max)]
    if tty:
        argv.append("-t")
    if open_stdin:
        argv.append("-i")
        if not stdin_once:
            argv.append("--leave-stdin-open")
    return argv


def _decode_sync(buf: bytes) -> dict[str, object] | None:
    text = buf.decode("utf-8", "replace").lstrip()
    if not text:
        return None
    try:
        obj, _ = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


async def spawn(
    paths: MonitorPaths, argv: list[str], *, env: Mapping[str, str] | None = None
) -> tuple[int, int]:
    """Start conmon; return (monitor pid, container pid) once `runc create` succeeded."""
    paths.cdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths.exit_dir.mkdir(parents=True, exist_ok=True)
    for stale in (paths.exit_file, paths.oom_file, paths.exit_dir / paths.container_id):
        stale.unlink(missing_ok=True)
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        child_env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        child_env.update(env or {})
        child_env["_OCI_SYNCPIPE"] = str(write_fd)
        # stdout/stderr to /dev/null: the daemonized child would hold a captured pipe open
        # for the container's whole life. Errors come back on the sync pipe instead.
        proc = await trio.run_process(
            argv,
            pass_fds=(write_fd,),
            env=child_env,
            cwd=str(paths.cdir),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError:
        os.close(read_fd)
        raise Unavailable(
            f"{argv[0]} not found", "install conmon (Debian package conmon)"
        ) from None
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    buf = b""
    stream = trio.lowlevel.FdStream(read_fd)
    try:
        with trio.fail_after(SYNC_TIMEOUT_S):
            while (msg := _decode_sync(buf)) is None:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                buf += chunk
    except trio.TooSlowError:
        raise KernelError(
            f"conmon for {paths.container_id} did not report within {SYNC_TIMEOUT_S:.0f}s",
            "runc create may be hung; check the host",
        ) from None
    finally:
        await stream.aclose()
    if msg is None:
        raise KernelError(
            f"conmon exited (status {proc.returncode}) without reporting a container pid",
            f"run `{' '.join(argv[:1])} --version` and check the bundle",
        )
    pid = int(msg.get("data", -1))  # type: ignore[call-overload]
    if pid <= 0:
        said = str(msg.get("message", ""))
        # Docker's words around runc's own message (a missing command: exit 127 at the CLI)
        raise RuncError(
            f"OCI runtime create failed: {runc_message(said) or 'no message'}: unknown",
            "see the runtime's message",
            stderr=said,
        )
    return read_monitor_pid(paths), pid


def read_monitor_pid(paths: MonitorPaths) -> int:
    try:
        return int(paths.conmon_pidfile.read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def exit_record_of(code_text: str, finished_at_ns: int, oom: bool) -> ExitRecord:
    code = int(code_text.strip())
    signal = code - 128 if 128 < code < 128 + 65 else 0
    return ExitRecord(exit_code=code, signal=signal, oom_killed=oom, finished_at_ns=finished_at_ns)


def read_exit_record(paths: MonitorPaths, *, oom_hint: bool = False) -> ExitRecord | None:
    """The exit conmon recorded, or None while the container has not exited."""
    for f in (paths.exit_file, paths.exit_dir / paths.container_id):
        try:
            text = f.read_text()
            mtime = f.stat().st_mtime_ns
        except FileNotFoundError:
            continue
        if text.strip().lstrip("-").isdigit():
            return exit_record_of(text, mtime, oom_hint or paths.oom_file.exists())
    return None


def open_pidfd(pid: int, *, cmdline_has: bytes = b"") -> int | None:
    """A pidfd for `pid`, or None if it is gone. With `cmdline_has`, a pid recycled by an
    unrelated process is refused: the check runs after the pidfd pins the process."""
    if pid <= 0:
        return None
    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return None
    if cmdline_has:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            cmdline = b""
        if cmdline_has not in cmdline:
            os.close(fd)
            return None
    return fd


async def wait_pidfd(fd: int) -> None:
    """Wait until the process behind `fd` has exited; closes `fd`."""
    try:
        await trio.lowlevel.wait_readable(fd)
    finally:
        os.close(fd)


def monitor_pidfd(paths: MonitorPaths) -> int | None:
    return open_pidfd(read_monitor_pid(paths), cmdline_has=paths.container_id.encode())
