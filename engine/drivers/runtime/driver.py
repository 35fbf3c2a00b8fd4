"""The runtime seam's Linux implementation: runc with conmon, in the shape of
`engine/drivers/runtime/seam.py`'s `Runtime`.

I/O: all of it, through `linux.Runtime` (runc, conmon, cgroups, pidfds) with bundles under
the exec root. The records conmon writes carry the killing signal as a number; the seam's
`ExitRecord` names it, as Docker's API does.
"""

from __future__ import annotations

import os
import shutil
import signal as signals
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import trio

from engine.drivers.runtime.linux import Runtime as RuncConmon
from engine.drivers.runtime.monitor import ExitRecord as MonitorRecord
from engine.drivers.runtime.seam import ExitRecord, Rows, RuntimeState, Titles

if TYPE_CHECKING:
    from engine.drivers.runtime.execio import AttachSession, ExecProcess
    from engine.shell.paths import Paths


def signal_name(num: int) -> str:
    try:
        return signals.Signals(num).name if num else ""
    except ValueError:
        return str(num)


def _record(rec: MonitorRecord) -> ExitRecord:
    return ExitRecord(exit_code=rec.exit_code, signal=signal_name(rec.signal),
                      oom_killed=rec.oom_killed, finished_at_ns=rec.finished_at_ns,
                      lost=rec.lost, reason=rec.reason)


class LinuxRuntime:
    """`Runtime` on runc + conmon: bundles live under the exec root."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        # Full paths, found once: a PATH search per container costs a dozen execve calls.
        runc = os.environ.get("SHIPSLOG_RUNC") or shutil.which("runc") or "/usr/sbin/runc"
        self.rt = RuncConmon(paths.exec_root,
                             runc_binary=runc,
                             conmon_binary=shutil.which("conmon") or "/usr/bin/conmon")

    async def check(self) -> str:
        return await self.rt.check()

    async def create(self, container_id: str, spec: dict[str, Any], *, tty: bool,
                     open_stdin: bool, stdin_once: bool, log_path: str,
                     log_opts: dict[str, str]) -> int:
        return await self.rt.create(container_id, self.paths.bundle_dir(container_id), spec,
                                    tty=tty, open_stdin=open_stdin, stdin_once=stdin_once,
                                    log_path=log_path, log_opts=log_opts)

    async def start(self, container_id: str) -> int:
        return await self.rt.start(container_id)

    async def kill(self, container_id: str, signal: str) -> None:
        await self.rt.kill(container_id, signal)

    async def wait_exit(self, container_id: str) -> ExitRecord:
        return _record(await self.rt.wait_exit(container_id))

    def exit_record(self, container_id: str) -> ExitRecord | None:
        rec = self.rt.exit_record_nowait(container_id)
        return None if rec is None else _record(rec)

    async def delete(self, container_id: str, *, force: bool = False) -> None:
        await self.rt.delete(container_id, force=force)
        # in a thread: an rmtree on the event loop stalled every concurrent removal (issue 14)
        await trio.to_thread.run_sync(shutil.rmtree, self.paths.bundle_dir(container_id), True)

    async def pause(self, container_id: str) -> None:
        await self.rt.pause(container_id)

    async def update(self, container_id: str, resources: dict[str, Any]) -> None:
        await self.rt.update(container_id, resources)

    async def resume(self, container_id: str) -> None:
        await self.rt.resume(container_id)

    async def state(self, container_id: str) -> RuntimeState | None:
        st = await self.rt.state(container_id)
        return None if st is None else RuntimeState(id=st.id, status=st.status, pid=st.pid)

    async def list(self) -> list[RuntimeState]:
        return [RuntimeState(id=s.id, status=s.status, pid=s.pid) for s in await self.rt.list()]

    async def attach(self, container_id: str) -> AttachSession:
        return await self.rt.attach(container_id)

    async def probe(self, container_id: str, process: dict[str, Any], *, timeout_s: float,
                    max_output: int) -> Any:
        return await self.rt.probe(container_id, process, timeout_s=timeout_s,
                                   max_output=max_output)

    async def rotate_logs(self, container_id: str, log_path: str,
                          log_opts: dict[str, str]) -> None:
        await self.rt.run_log_rotation(container_id, log_path, log_opts)

    def open_exec(self, container_id: str, process: dict[str, Any], *, tty: bool = False,
                  size: tuple[int, int] | None = None,
                  stdin: bool = True) -> AbstractAsyncContextManager[ExecProcess]:
        return self.rt.open_exec(container_id, process, tty=tty, size=size, stdin=stdin)

    async def top(self, container_id: str,
                  ps_args: str = "-ef") -> tuple[Titles, Rows]:
        return await self.rt.top(container_id, ps_args)

    async def resize(self, container_id: str, height: int, width: int) -> None:
        await self.rt.resize(container_id, height, width)
