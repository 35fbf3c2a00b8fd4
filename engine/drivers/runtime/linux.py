"""The runtime seam's Linux implementation (engine/drivers/runtime/seam.py's `Runtime`): runc
+ conmon behind one async class, `LinuxRuntime`, which satisfies the Protocol directly.

I/O: writes bundles' config.json, spawns conmon/runc/ps, reads exit files and cgroup
files, waits on pidfds and inotify. runc's commands are in `runc.py`, conmon's spawning and
exit records in `monitor.py`, exec and attach streams in `execio.py`; reading the image's
/etc/passwd safely and the host's limits are in `engine/drivers/host/info.py` (re-exported).

Layout: `<exec-root>/bundles/<id>` is the OCI bundle, `<exec-root>/runc` is runc's state
root, `<exec-root>/containers/<id>/` holds conmon's pid files and exit/oom records,
`<exec-root>/exits/<id>` is conmon's exit file. Logs live wherever the caller says
(normally `<root>/containers/<id>/…log`). The records conmon writes carry the killing
signal as a number; the seam's `ExitRecord` names it, as Docker's API does.

Every operation is idempotent: creating a container that exists returns its monitor,
deleting a missing one succeeds, waiting on an exited one returns its record at once —
which is what a daemon adopting containers after a restart needs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shutil
import signal as signal_mod
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from engine.core.errors import Conflict, InvalidArgument
from engine.drivers.host.info import host_spec_inputs, read_rootfs_file
from engine.drivers.runtime import cgroups, execfifo, execio, monitor, sealedexe
from engine.drivers.runtime import logs as logs_mod
from engine.drivers.runtime.execio import AttachSession, ExecProcess, ExecResult
from engine.drivers.runtime.monitor import ExitRecord as MonitorRecord
from engine.drivers.runtime.monitor import MonitorPaths
from engine.drivers.runtime.runc import Runc
from engine.drivers.runtime.seam import ExitRecord, Rows, RuntimeState, Titles

if TYPE_CHECKING:
    from engine.shell.paths import Paths

__all__ = [
    "AttachSession",
    "ExecProcess",
    "ExecResult",
    "ExitRecord",
    "LinuxRuntime",
    "RuntimeState",
    "host_spec_inputs",
    "log_limits",
    "read_rootfs_file",
]

DELETE_WAIT_S = 10.0
_CONTROL = re.compile(r"[\x00-\x1f]")
# What an exec or a health probe takes from the container's process spec when it does not
# set it itself (moby daemon/exec.go copies the container's `spec.Process`).
_INHERITED_BY_EXEC = ("rlimits", "capabilities", "apparmorProfile", "selinuxLabel",
                      "oomScoreAdj")


def signal_name(num: int) -> str:
    try:
        return signal_mod.Signals(num).name if num else ""
    except ValueError:
        return str(num)


def _record(rec: MonitorRecord) -> ExitRecord:
    return ExitRecord(exit_code=rec.exit_code, signal=signal_name(rec.signal),
                      oom_killed=rec.oom_killed, finished_at_ns=rec.finished_at_ns,
                      lost=rec.lost, reason=rec.reason)


def signal_init(state_dir: Path, sig: int) -> bool:
    """Signal the container's init as `runc kill` does (runc reads its state.json and checks
    the process start time against PID reuse), without starting runc: a `compose down` of
    ten services ran ten runc processes at once on the stop path. False when the state is
    unreadable or the process is not the container's init any more; runc then answers."""
    try:
        st = json.loads((state_dir / "state.json").read_bytes())
        pid, start = int(st["init_process_pid"]), int(st["init_process_start"])
        fd = os.pidfd_open(pid)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    try:
        # checked after the pidfd is open: the pidfd pins this process, so a pid reused
        # between the check and the signal cannot get it
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
        if int(fields[19]) != start or fields[0] in (b"Z", b"X"):
            return False  # not its init, or already dead: runc says "not running"
        signal_mod.pidfd_send_signal(fd, sig)
        return True
    except (OSError, ValueError, IndexError):
        return False
    finally:
        os.close(fd)


def _signal_number(sig: int | str) -> int:
    if isinstance(sig, int):
        return sig
    s = sig.upper()
    if s.isdigit():
        return int(s)
    if not s.startswith("SIG"):
        s = "SIG" + s
    try:
        return int(signal_mod.Signals[s])
    except KeyError:
        raise InvalidArgument(
            f"Invalid signal: {sig}", "use a name like SIGTERM or a number"
        ) from None


def _remove_runtime_files(paths: MonitorPaths, container_id: str, cgroups_path: str) -> None:
    """A deleted container's runtime dir, exit file and empty cgroups (blocking)."""
    shutil.rmtree(paths.cdir, ignore_errors=True)
    (paths.exit_dir / container_id).unlink(missing_ok=True)
    if cgroups_path:
        cgroups.remove_empty(cgroups_path)


class LinuxRuntime:
    """runc and conmon for every container under one exec root (`paths.exec_root`)."""

    def __init__(
        self,
        paths: Paths,
        *,
        runc_binary: str | None = None,
        conmon_binary: str | None = None,
    ) -> None:
        self.state_paths = paths
        self.exec_root = Path(paths.exec_root)
        # Full paths, found once: a PATH search per container costs a dozen execve calls.
        chosen = runc_binary or os.environ.get("SHIPSLOG_RUNC")
        runc_binary = chosen or shutil.which("runc") or "/usr/sbin/runc"
        self.runc_binary = shutil.which(runc_binary) or runc_binary
        self.conmon_binary = conmon_binary or shutil.which("conmon") or monitor.CONMON
        # The host's runc runs from a sealed in-memory copy, which spares each `runc init`
        # its own copy-protection dance (`sealedexe.py`; CVE-2019-5736), and its created
        # containers are started through its exec fifo (`execfifo.py`). A runtime chosen by
        # name (another runtime, a wrapper, the fault tests' shim) is run as it is and hears
        # every command through its CLI: those are runc's internals.
        self.runc_exec = self.runc_binary if chosen else sealedexe.sealed_copy(self.runc_binary)
        self.fifo_start = not chosen
        self.runc = Runc(str(self.exec_root / "runc"), self.runc_exec)
        self._exec_seq = 0

    def monitor_paths(self, container_id: str) -> MonitorPaths:
        if not container_id or "/" in container_id or container_id in (".", ".."):
            raise InvalidArgument(f"invalid container id {container_id!r}", "")
        return MonitorPaths(
            cdir=self.exec_root / "containers" / container_id,
            exit_dir=self.exec_root / "exits",
            container_id=container_id,
        )

    async def check(self) -> str:
        """Refuse to run on a runc without the CVE-2024-21626 fix; return its version."""
        return (await self.runc.version()).version

    # -- lifecycle ---------------------------------------------------------------------

    async def create(
        self,
        container_id: str,
        spec: Mapping[str, Any],
        *,
        tty: bool = False,
        open_stdin: bool = False,
        stdin_once: bool = False,
        log_path: str = "",
        log_opts: Mapping[str, str] | None = None,
        name: str = "",
    ) -> int:
        """Write config.json, start conmon (which runs `runc create`); return monitor pid."""
        paths = self.monitor_paths(container_id)
        # runc keeps <root>/<id>/state.json per container: a cheap existence check on the
        # hot path; `runc state` confirms only when it is there.
        if (Path(self.runc.root) / container_id / "state.json").exists():
            if await self.runc.state(container_id) is not None:
                return monitor.read_monitor_pid(paths)
        bundle = self.state_paths.bundle_dir(container_id).absolute()
        bundle.mkdir(parents=True, exist_ok=True)
        paths.cdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        link = paths.cdir / "bundle"
        link.unlink(missing_ok=True)
        link.symlink_to(bundle)
        tmp = bundle / "config.json.tmp"
        # 0600: the spec carries the environment, secrets included (RELIABILITY S-08).
        write_private(tmp, json.dumps(spec).encode())
        os.replace(tmp, bundle / "config.json")
        opts = dict(log_opts or {})
        size_max, max_file = log_limits(opts)
        # conmon's own cap truncates in place: exactly Docker's max-file=1. With more files
        # the daemon rotates (`rotate_logs`), and conmon must not truncate behind it.
        conmon_cap = size_max if max_file == 1 else 0
        if log_path:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        argv = monitor.conmon_argv(
            paths,
            bundle=str(bundle),
            runc_binary=self.runc_exec,
            runc_root=self.runc.root,
            log_path=log_path,
            log_size_max=conmon_cap,
            tty=tty,
            open_stdin=open_stdin,
            stdin_once=stdin_once,
            name=name,
            conmon=self.conmon_binary,
        )
        try:
            monitor_pid, _ = await monitor.spawn(paths, argv)
        except BaseException:
            # Roll back a half-created container so a retry with the same id works (F-09).
            with trio.CancelScope(shield=True):
                await self.runc.delete(container_id, force=True)
            raise
        return monitor_pid

    async def start(self, container_id: str) -> int:
        """Start a created container; returns its pid. Starting a running one is a no-op.
        No runc process on the hot path: init is released through its exec fifo
        (`execfifo.py`; `runc start` answers when that cannot), the pid comes from conmon's
        pid file."""
        if not (self.fifo_start
                and await execfifo.release_init(Path(self.runc.root) / container_id)):
            try:
                await self.runc.start(container_id)
            except Conflict as e:
                if "already running" not in str(e):
                    raise
        pid = _read_int(self.monitor_paths(container_id).pidfile)
        if pid <= 0:
            st = await self.runc.state(container_id)
            pid = st.pid if st else 0
        return pid

    async def kill(
        self, container_id: str, signal: int | str = "SIGKILL", *, all: bool = False
    ) -> None:
        sig = _signal_number(signal)
        if not all and signal_init(Path(self.runc.root) / container_id, sig):
            return
        # runc's own answer for everything else: not found, not running, --all
        await self.runc.kill(container_id, sig, all=all)

    async def pause(self, container_id: str) -> None:
        await self.runc.pause(container_id)

    async def update(self, container_id: str, resources: Mapping[str, Any]) -> None:
        """Apply new limits (OCI `linux.resources` parts) to a running container."""
        f = execio.write_process_file(self.monitor_paths(container_id).cdir, resources)
        try:
            await self.runc.update(container_id, str(f))
        finally:
            f.unlink(missing_ok=True)

    async def resume(self, container_id: str) -> None:
        await self.runc.resume(container_id)

    def exit_record(self, container_id: str) -> ExitRecord | None:
        """The recorded exit, if the monitor wrote one (read after a daemon restart)."""
        rec = self._monitor_record(container_id)
        return None if rec is None else _record(rec)

    def _monitor_record(self, container_id: str) -> MonitorRecord | None:
        """conmon's record if the container has exited. The OOM flag is conmon's `oom` file
        or, if conmon missed the event, the cgroup's own oom_kill counter."""
        rec = monitor.read_exit_record(self.monitor_paths(container_id))
        if rec is not None and not rec.oom_killed and self._oom_in_cgroup(container_id):
            rec = dataclasses.replace(rec, oom_killed=True)
        return rec

    def _oom_in_cgroup(self, container_id: str) -> bool:
        cg = self._cgroups_path(container_id)
        return bool(cg) and cgroups.oom_kill_count(cg) > 0

    def _cgroups_path(self, container_id: str) -> str:
        try:
            cfg = json.loads((self._bundle_of(container_id) / "config.json").read_text())
            return str(cfg.get("linux", {}).get("cgroupsPath", ""))
        except (OSError, ValueError):
            return ""

    def _exec_process(self, container_id: str, process: Mapping[str, Any],
                      tty: bool) -> dict[str, Any]:
        """An exec's process on top of the container's own, as moby's exec starts from the
        container's spec: its rlimits (`--ulimit`, Compose `ulimits:`), capabilities,
        AppArmor/SELinux labels and OOM score unless the exec sets them. runc inherits the
        capabilities by itself, but not the rlimits: an exec ran with the daemon's."""
        merged = {**process, "terminal": tty}
        config = self._bundle_of(container_id) / "config.json"
        try:
            st = os.stat(config)
            own = _inherited_by_exec(str(config), st.st_mtime_ns, st.st_size)
        except (OSError, ValueError):
            own = {}  # no bundle (a test's runtime, a foreign container): runc's defaults
        for key, value in own.items():
            merged.setdefault(key, value)
        return merged

    def _bundle_of(self, container_id: str) -> Path:
        link = self.monitor_paths(container_id).cdir / "bundle"
        try:
            return Path(os.readlink(link))
        except OSError:
            return Path("/nonexistent")

    async def wait_exit(self, container_id: str) -> ExitRecord:
        """Wait for the container to exit and return conmon's record of it. Works for
        containers started by an earlier daemon: it waits on conmon's pidfd."""
        return _record(await self._wait_monitor_record(container_id))

    async def _wait_monitor_record(self, container_id: str) -> MonitorRecord:
        paths = self.monitor_paths(container_id)
        while True:
            rec = self._monitor_record(container_id)
            if rec is not None:
                # conmon writes the exit file, then drains the last output into the log and
                # exits: wait for that (briefly), so `logs` right after an exit is complete.
                fd = monitor.monitor_pidfd(paths)
                if fd is not None:
                    with trio.move_on_after(DELETE_WAIT_S):
                        await monitor.wait_pidfd(fd)
                return rec
            fd = monitor.monitor_pidfd(paths)
            if fd is not None:
                await monitor.wait_pidfd(fd)
                continue
            rec = self._monitor_record(container_id)
            if rec is not None:
                return rec
            return await self._wait_unmonitored(container_id)

    async def _wait_unmonitored(self, container_id: str) -> MonitorRecord:
        """The monitor died without an exit record (RELIABILITY F-10): watch the container's
        own pid; its exit code is then unknowable, so report 255 "lost" as Docker does."""
        st = await self.runc.state(container_id)
        # A "created" container without a monitor will never run: nothing to wait for.
        if st is not None and st.status in ("running", "paused") and st.pid:
            fd = monitor.open_pidfd(st.pid)
            if fd is not None:
                await monitor.wait_pidfd(fd)
        return MonitorRecord(
            exit_code=255,
            signal=0,
            oom_killed=self._oom_in_cgroup(container_id),
            finished_at_ns=time.time_ns(),
            lost=True,
            reason="the container monitor exited without recording an exit status",
        )

    async def delete(self, container_id: str, *, force: bool = False) -> None:
        """Remove the container from runc and its runtime files; the log stays."""
        paths = self.monitor_paths(container_id)
        cg = self._cgroups_path(container_id)
        # No `runc state` first: runc refuses to delete a live container without --force
        # ("not stopped" → Conflict) and a missing one is NotFound, i.e. already done.
        await self.runc.delete(container_id, force=force)
        # conmon writes its exit files after the container dies; wait for it so that no
        # file appears after we removed the directory.
        fd = monitor.monitor_pidfd(paths)
        if fd is not None:
            with trio.move_on_after(DELETE_WAIT_S):
                await monitor.wait_pidfd(fd)
        # Off the event loop: on a disk-backed exec root each unlink and cgroup rmdir can
        # take milliseconds, and Compose's `down` removes all its containers at once.
        await trio.to_thread.run_sync(_remove_runtime_files, paths, container_id, cg)
        # in a thread: an rmtree on the event loop stalled every concurrent removal (issue 14)
        await trio.to_thread.run_sync(shutil.rmtree,
                                      self.state_paths.bundle_dir(container_id), True)

    # -- log rotation ---------------------------------------------------------------------

    async def rotate_log(self, container_id: str, log_path: str, max_file: int) -> None:
        """Shift `log` → `log.1` → … → `log.<max_file-1>` and make conmon reopen `log`.
        Lines written between the rename and the reopen land in `log.1`: nothing is lost."""
        shift_log_files(Path(log_path), max_file)
        await self.reopen_log(container_id)

    async def rotate_logs(
        self,
        container_id: str,
        log_path: str,
        log_opts: Mapping[str, str],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Docker's json-file `max-size`/`max-file` while the daemon runs: wait on inotify
        for the log to grow past max-size, then rotate. Returns when the monitor is gone.
        (While the daemon is down the current file may outgrow max-size; it is rotated on
        the next start of this service.)"""
        size_max, max_file = log_limits(log_opts)
        if not size_max or max_file == 1:
            task_status.started()
            return  # nothing to do, or conmon's own cap does it
        base = Path(log_path)
        base.parent.mkdir(parents=True, exist_ok=True)
        pidfd = monitor.monitor_pidfd(self.monitor_paths(container_id))
        if pidfd is None:
            task_status.started()
            return
        ifd = logs_mod.inotify_dir(base.parent)
        try:
            task_status.started()
            monitor_gone = False
            while True:
                try:
                    size = base.stat().st_size
                except FileNotFoundError:
                    size = 0
                if size >= size_max:
                    if monitor_gone:
                        shift_log_files(base, max_file)  # no writer left to reopen
                        return
                    try:
                        await self.rotate_log(container_id, log_path, max_file)
                    except Conflict:
                        monitor_gone = True  # it exited meanwhile: its last lines are in log.1
                    continue
                if monitor_gone:
                    return
                async with trio.open_nursery() as nursery:

                    async def on_exit(scope: trio.CancelScope = nursery.cancel_scope) -> None:
                        nonlocal monitor_gone
                        await trio.lowlevel.wait_readable(pidfd)
                        monitor_gone = True
                        scope.cancel()

                    nursery.start_soon(on_exit)
                    await trio.lowlevel.wait_readable(ifd)
                    nursery.cancel_scope.cancel()
                logs_mod.drain_inotify(ifd)
        finally:
            os.close(ifd)
            os.close(pidfd)

    # -- queries -----------------------------------------------------------------------

    async def state(self, container_id: str) -> RuntimeState | None:
        st = await self.runc.state(container_id)
        if st is None:
            return None
        return RuntimeState(id=st.id, status=st.status, pid=st.pid)

    def monitor_pid(self, container_id: str) -> int:
        """conmon's pid for the container (0 when it has none)."""
        return monitor.read_monitor_pid(self.monitor_paths(container_id))

    async def list(self) -> list[RuntimeState]:
        return [RuntimeState(id=st.id, status=st.status, pid=st.pid)
                for st in await self.runc.list()]

    async def top(self, container_id: str, ps_args: str = "-ef") -> tuple[Titles, Rows]:
        """Docker's `top`: run host `ps <ps_args>` and keep the container's processes (the
        rows whose PID column is one of `runc ps`), as dockerd does."""
        if _CONTROL.search(ps_args):
            raise InvalidArgument("ps_args contains control characters", "")
        pids = set(await self.runc.ps(container_id))
        proc = await trio.run_process(
            ["ps", *ps_args.split()], capture_stdout=True, capture_stderr=True, check=False
        )
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip()
            raise InvalidArgument(f"ps {ps_args}: {err}", "check the ps options")
        return parse_ps(proc.stdout.decode("utf-8", "replace"), pids)

    # -- exec, attach, resize ------------------------------------------------------------

    async def exec(
        self,
        container_id: str,
        process: Mapping[str, Any],
        *,
        tty: bool = False,
        detach: bool = False,
        stdin: bytes = b"",
    ) -> ExecResult:
        """Run `process` (an OCI process object) in the container.

        Attached: waits and returns the exit code with the output (a tty merges stderr into
        stdout, as a terminal does). Detached: returns once the process runs, with its pid.
        For interactive streams use `open_exec`.
        """
        pfile = execio.write_process_file(
            self.monitor_paths(container_id).cdir, self._exec_process(container_id, process, tty)
        )
        try:
            if detach:
                return await execio.exec_detached(self.runc, container_id, pfile)
            if tty:
                return await execio.exec_tty_collect(self.runc, container_id, pfile)
            return await execio.exec_collect(self.runc, container_id, pfile, stdin)
        finally:
            pfile.unlink(missing_ok=True)

    async def probe(self, container_id: str, process: Mapping[str, Any], *, timeout_s: float,
                    max_output: int) -> ExecResult | None:
        """A health probe in the container; None when it timed out (and was killed)."""
        pfile = execio.write_process_file(
            self.monitor_paths(container_id).cdir, self._exec_process(container_id, process, False)
        )
        try:
            return await execio.exec_probe(self.runc, container_id, pfile, timeout_s,
                                           max_output)
        finally:
            pfile.unlink(missing_ok=True)

    @asynccontextmanager
    async def open_exec(
        self,
        container_id: str,
        process: Mapping[str, Any],
        *,
        tty: bool = False,
        size: tuple[int, int] | None = None,
        stdin: bool = True,
    ) -> AsyncIterator[execio.ExecProcess]:
        """An attached exec with live streams (`docker exec -i[t]`); `size` is the initial
        (rows, columns) of its terminal; `stdin=False` gives the process /dev/null."""
        pfile = execio.write_process_file(
            self.monitor_paths(container_id).cdir, self._exec_process(container_id, process, tty)
        )
        try:
            async with execio.open_exec(self.runc, container_id, pfile, tty=tty, size=size,
                                        pid_file=pfile.with_suffix(".pid"),
                                        stdin=stdin) as ep:
                yield ep
        finally:
            pfile.unlink(missing_ok=True)

    async def attach(self, container_id: str) -> execio.AttachSession:
        """Connect to the container's stdio through conmon's attach socket."""
        return await execio.connect_attach(self._bundle_of(container_id), container_id)

    async def resize(self, container_id: str, height: int, width: int) -> None:
        execio.write_ctl(
            self._bundle_of(container_id), container_id, f"1 {int(height)} {int(width)}\n"
        )

    async def reopen_log(self, container_id: str) -> None:
        execio.write_ctl(self._bundle_of(container_id), container_id, "2 0 0\n")


def write_private(path: Path, data: bytes) -> None:
    """Create or replace `path` with mode 0600 (never through a symlink)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def shift_log_files(base: Path, max_file: int) -> None:
    """`log.<n-2>` → `log.<n-1>` … `log` → `log.1`; the oldest beyond max_file is dropped."""
    base.with_name(f"{base.name}.{max_file - 1}").unlink(missing_ok=True)
    for i in range(max_file - 2, 0, -1):
        src = base.with_name(f"{base.name}.{i}")
        if src.exists():
            os.replace(src, base.with_name(f"{base.name}.{i + 1}"))
    if base.exists():
        os.replace(base, base.with_name(f"{base.name}.1"))


def parse_ps(output: str, pids: set[int]) -> tuple[Titles, Rows]:
    """Split `ps` output into titles and the rows of `pids`; the last column (the command)
    keeps its spaces."""
    lines = output.splitlines()
    if not lines:
        return [], []
    titles = lines[0].split()
    if "PID" not in titles:
        raise InvalidArgument("ps output has no PID column", "include pid in the ps options")
    col = titles.index("PID")
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
            rows.append(fields)
    return titles, rows


def log_limits(opts: Mapping[str, str]) -> tuple[int, int]:
    """(max-size in bytes or 0, max-file) from Docker's json-file log options."""
    size = monitor.parse_size(opts["max-size"]) if opts.get("max-size") else 0
    raw = opts.get("max-file", "1") or "1"
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidArgument(f"invalid max-file {raw!r}", "use a positive integer")
    if int(raw) > 1 and not size:
        raise InvalidArgument("max-file needs max-size", "set max-size as well")
    return size, int(raw)


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


@functools.lru_cache(maxsize=512)
def _inherited_by_exec(config: str, mtime_ns: int, size: int) -> dict[str, Any]:
    """What an exec takes from the container's own process (`_INHERITED_BY_EXEC`), read
    from its bundle's config.json once per version of the file (keyed by its mtime and
    size): every exec and health probe asked for it, and the file holds the whole seccomp
    profile. Callers copy the values into a new process; nothing mutates them."""
    del mtime_ns, size  # the cache key: a rewritten file is read again
    with open(config, "rb") as f:
        own = json.loads(f.read()).get("process") or {}
    return {key: own[key] for key in _INHERITED_BY_EXEC if key in own}
