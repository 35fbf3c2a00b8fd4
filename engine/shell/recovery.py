"""Recovery at daemon start: finish or undo half-done operations, then make the log and the
kernel agree — recording every difference as an event, never fixing anything silently.

I/O: through the driver Protocols and the journal.

Order matters: pending operations first (each knows what it was doing), then containers the
log believes are running (adopt them, or record how they ended: the monitor's exit file has
the real code; without one the container is `ContainerLost` with 255, as Docker reports a
container it lost track of), then kernel objects no event owns (orphans), then restart
policies. After a reboot (`boot_changed`) nothing that was running can still be.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import trio

from engine.core.decision import Step
from engine.core.errors import NotFound, ShipslogError
from engine.core.restart import restart_on_daemon_start
from engine.drivers.runtime.seam import RuntimeState
from engine.shell.supervisor import Supervisor
from events import vocabulary as v
from events.envelope import SYSTEM_ACTOR, Pending, stream_of
from projections.state import ContainerView, OperationView

log = logging.getLogger("shipslog.recovery")

RUNNING = ("running", "paused", "restarting")
STOP_SETTLE_S = 10.0  # a stop resumed at start waits this long for its SIGKILL's exit
RESTORE_CONCURRENCY = 16  # containers restored (or restarted by policy) at once at start
T = TypeVar("T")


def _op(op_id: str) -> str:
    return stream_of("op", op_id)


def _cid(target: str) -> str:
    return target.removeprefix("container-")


class Recovery:
    def __init__(self, supervisor: Supervisor, *, boot_changed: bool) -> None:
        self.sup = supervisor
        self.journal = supervisor.journal
        self.d = supervisor.d
        self.boot_changed = boot_changed

    async def _append(self, pending: list[Pending], op_id: str = "recovery") -> None:
        await self.journal.append(pending, actor=SYSTEM_ACTOR, op_id=op_id)

    async def run(self) -> list[str]:
        """Returns the ids of containers to start again under their restart policy."""
        for op in sorted(self.journal.state.operations.values(), key=lambda o: o.requested_seq):
            try:
                await self._resolve(op)
            except (ShipslogError, OSError) as exc:
                log.warning("recovery of operation %s (%s) failed: %s", op.op_id, op.kind, exc)
        began = time.monotonic()
        runtime = {r.id: r for r in await self.d.runtime.list()}
        await self._containers(runtime)
        await self._orphans(runtime)
        log.info("recovery: %d containers, %d in the runtime, restored in %.2f s",
                 len(self.journal.state.containers), len(runtime), time.monotonic() - began)
        return [c.id for c in self.journal.state.containers.values()
                if c.status == "exited" and restart_on_daemon_start(c)
                and c.has_been_started]

    # -- pending operations ----------------------------------------------------------------

    async def _resolve(self, op: OperationView) -> None:
        cid = _cid(op.target)
        c = self.journal.state.containers.get(cid)
        if op.needs_cleanup:
            await self._cleanup(op, cid)
            return
        if op.kind == "container.create" and c is not None and c.status == "creating":
            await self.sup.run_step(op.op_id, _step("rootfs.prepare", cid), SYSTEM_ACTOR)
        elif op.kind == "container.start" and c is not None:
            await self._resolve_start(op, cid)
        elif op.kind == "container.restart" and c is not None and c.status not in RUNNING:
            # The stop half is done (the exit is in the log): finish or undo the start half.
            await self._resolve_start(op, cid)
        elif op.kind == "container.remove" and c is not None:
            await self.sup.run_step(op.op_id, _step("container.remove", cid), SYSTEM_ACTOR)
        elif op.kind in ("container.pause", "container.unpause") and c is not None:
            await self._resolve_pause(op, cid)
        elif op.kind == "container.update" and c is not None:
            # `runc update` is idempotent: do it again (or just record it if it stopped).
            step = Step(name="container.update", args={**op.args, "container_id": cid})
            await self.sup.run_step(op.op_id, step, SYSTEM_ACTOR)
        elif op.kind in ("image.remove", "image.prune"):
            await self.sup.run_step(op.op_id, _step("image.gc", ""), SYSTEM_ACTOR)
        elif op.kind == "container.stop" and c is not None and c.status in RUNNING:
            # The user asked for it to stop; the grace period went with the old daemon.
            try:
                await self.d.runtime.kill(cid, "SIGKILL")
                # Wait for the exit (a SIGKILL lands in milliseconds), so the container
                # pass below sees it stopped and records it before the daemon serves: a
                # stop the user asked for is settled at start, not later by a watcher.
                with trio.move_on_after(STOP_SETTLE_S):
                    await self.d.runtime.wait_exit(cid)
            except NotFound:
                pass  # already gone: the container pass below records the exit
            except ShipslogError as exc:
                await self._append([Pending(stream=_op(op.op_id), event=v.OperationFailed(
                    op_id=op.op_id, step="runtime.kill",
                    error=f"kill failed, the container still runs: {exc}"))], op.op_id)
            # The exit is recorded by the container pass below, which completes this op.
        else:
            await self._append([Pending(stream=_op(op.op_id), event=v.OperationCompensated(
                op_id=op.op_id, step="recovery",
                action="abandoned: the daemon stopped before it finished"))], op.op_id)

    async def _resolve_start(self, op: OperationView, cid: str) -> None:
        rs = None if self.boot_changed else await self.d.runtime.state(cid)
        if rs is not None and rs.status in ("running", "paused"):
            self.sup._exited[cid] = trio.Event()
            await self._append([
                Pending(stream=stream_of("container", cid), event=v.ContainerStarted(
                    container_id=cid, pid=rs.pid)),
                Pending(stream=_op(op.op_id), event=v.OperationCompleted(op_id=op.op_id)),
            ], op.op_id)
            self.sup.watch(cid)
            return
        record = None if self.boot_changed else self.d.runtime.exit_record(cid)
        if rs is not None and rs.status == "stopped" and record is not None:
            # It started and ended while we were down: both facts go into the log.
            await self._append([
                Pending(stream=stream_of("container", cid), event=v.ContainerStarted(
                    container_id=cid, pid=rs.pid)),
                Pending(stream=_op(op.op_id), event=v.OperationCompleted(op_id=op.op_id)),
            ], op.op_id)
            await self.sup.record_exit(cid, record)
            await self.d.runtime.delete(cid, force=True)
            return
        try:
            await self.d.runtime.delete(cid, force=True)
        except ShipslogError as exc:
            # The rollback failed too (F-11): the record stays, visible as needs-cleanup,
            # and the next start retries it.
            await self._append([
                Pending(stream=stream_of("container", cid), event=v.ContainerStartFailed(
                    container_id=cid,
                    error="the daemon stopped while the container was starting")),
                Pending(stream=_op(op.op_id), event=v.OperationFailed(
                    op_id=op.op_id, step="runtime.delete", error=str(exc),
                    needs_cleanup=True)),
            ], op.op_id)
            return
        await self._append([
            Pending(stream=stream_of("container", cid), event=v.ContainerStartFailed(
                container_id=cid, error="the daemon stopped while the container was starting")),
            Pending(stream=_op(op.op_id), event=v.OperationCompensated(
                op_id=op.op_id, step="runtime", action="runtime state deleted")),
        ], op.op_id)

    async def _resolve_pause(self, op: OperationView, cid: str) -> None:
        rs = await self.d.runtime.state(cid)
        want = "paused" if op.kind == "container.pause" else "running"
        if rs is not None and rs.status == want:
            event: v.Event = (v.ContainerPaused(container_id=cid) if want == "paused"
                                  else v.ContainerUnpaused(container_id=cid))
            await self._append([
                Pending(stream=stream_of("container", cid), event=event),
                Pending(stream=_op(op.op_id), event=v.OperationCompleted(op_id=op.op_id)),
            ], op.op_id)
        else:
            await self._append([Pending(stream=_op(op.op_id), event=v.OperationCompensated(
                op_id=op.op_id, step="recovery", action=f"container was not {want}"))],
                op.op_id)

    async def _cleanup(self, op: OperationView, cid: str) -> None:
        """Retry the cleanup a failed rollback left (RELIABILITY F-11)."""
        c = self.journal.state.containers.get(cid)
        if op.kind == "container.create" and c is not None:
            await trio.to_thread.run_sync(self.d.snapshots.remove, cid)
            self.d.secrets.wipe(cid)
            await self._append([
                Pending(stream=stream_of("container", cid), event=v.ContainerRemoved(
                    container_id=cid)),
                Pending(stream=stream_of("name", c.name), event=v.NameReleased(
                    name=c.name, container_id=cid)),
                Pending(stream=_op(op.op_id), event=v.OperationCompensated(
                    op_id=op.op_id, step="cleanup", action="rootfs removed")),
            ], op.op_id)
        elif op.kind == "container.remove" and c is not None:
            await self.sup.run_step(op.op_id, _step("container.remove", cid), SYSTEM_ACTOR)
        else:
            if c is not None and c.status not in RUNNING:
                await self.d.runtime.delete(cid, force=True)
            await self._append([Pending(stream=_op(op.op_id), event=v.OperationCompensated(
                op_id=op.op_id, step="cleanup", action="runtime state deleted"))], op.op_id)

    # -- containers ------------------------------------------------------------------------

    async def _containers(self, runtime: dict[str, RuntimeState]) -> None:
        """Each container the log believes is running, in parallel but at most
        RESTORE_CONCURRENCY at a time (a lost one costs a runc delete and a network
        teardown; Docker bounds the same loop, daemon.go `parallelLimit`)."""
        running = [c for c in self.journal.state.containers.values() if c.status in RUNNING]
        await run_bounded(lambda c: self._container(c, runtime), running)

    async def _container(self, c: ContainerView, runtime: dict[str, RuntimeState]) -> None:
        rs = None if self.boot_changed else runtime.get(c.id)
        if rs is not None and rs.status in ("running", "paused"):
            if (rs.status == "paused") != (c.status == "paused"):
                event: v.Event = (v.ContainerPaused(container_id=c.id)
                                      if rs.status == "paused"
                                      else v.ContainerUnpaused(container_id=c.id))
                await self._append([
                    Pending(stream=stream_of("container", c.id), event=event),
                    _difference(c.id, c.status, rs.status, "recorded"),
                ])
            self.sup._exited.setdefault(c.id, trio.Event())
            self.sup.watch(c.id)
            return
        record = None if self.boot_changed else self.d.runtime.exit_record(c.id)
        if record is not None:
            await self.sup.record_exit(c.id, record)
        else:
            reason = ("the host rebooted while the container was running"
                      if self.boot_changed else
                      "the container's process and its exit record are gone")
            await self._append([Pending(stream=stream_of("container", c.id),
                                        event=v.ContainerLost(container_id=c.id,
                                                              reason=reason))])
        try:
            await self.d.runtime.delete(c.id, force=True)
        except ShipslogError as exc:
            log.warning("deleting runtime state of %s failed: %s", c.id, exc)
        await self.sup.network.release(c.id, "recovery")

    async def _orphans(self, runtime: dict[str, RuntimeState]) -> None:
        known = self.journal.state.containers
        for rid, rs in runtime.items():
            if rid not in known:
                await self.d.runtime.delete(rid, force=True)
                await self._append([_difference(
                    f"runtime:{rid}", "no container", rs.status, "removed",
                    "a runtime container that no event owns")])
        for cid in await trio.to_thread.run_sync(self.d.snapshots.mounted):
            if cid not in known:
                await trio.to_thread.run_sync(self.d.snapshots.remove, cid)
                await self._append([_difference(
                    f"rootfs:{cid}", "no container", "mounted", "removed",
                    "a root filesystem that no event owns")])


async def run_bounded(work: Callable[[T], Awaitable[None]], items: Sequence[T],
                      limit: int = RESTORE_CONCURRENCY) -> None:
    """`work(item)` for every item, concurrently but at most `limit` at once (restore at
    daemon start; the restart-policy starts after it)."""
    limiter = trio.CapacityLimiter(limit)

    async def one(item: T) -> None:
        async with limiter:
            await work(item)

    async with trio.open_nursery() as nursery:
        for item in items:
            nursery.start_soon(one, item)


def _step(name: str, cid: str) -> Step:
    return Step(name=name, args={"container_id": cid} if cid else {})


def _difference(subject: str, expected: str, observed: str, action: str,
                reason: str = "") -> Pending:
    return Pending(stream="reconcile", event=v.ReconcileDifferenceFound(
        subject=subject, expected=expected, observed=observed, action=action, reason=reason))
