"""The supervisor: carries out decided plans through the kernel drivers and records outcomes.

I/O: through the driver Protocols only (`engine/drivers/<seam>/seam.py`), plus the journal.

Every step follows one shape: the intent is already in the log (the decision appended it),
the step does its kernel work (idempotent, keyed by the op id), hits a failpoint, and appends
its outcome. A failure appends a failure event and compensates what the step had done, so
the log explains every state; a failed compensation leaves the operation `needs_cleanup`
(RELIABILITY F-11) for the reconciler to retry. Exits are watched for every running
container; restart policies and `--rm` act on them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import trio

from engine.core import createopts
from engine.core.decision import Decision, Step
from engine.core.errors import Conflict, KernelError, NotFound, ShipslogError, leaf_of, user_error
from engine.core.oci_spec import update_resources
from engine.core.restart import kill_stops_restart, restart_delay_ms
from engine.drivers.host import failpoints
from engine.drivers.host.seam import Files
from engine.drivers.layers.seam import Layers
from engine.drivers.runtime.seam import ExitRecord, Runtime, SpecMaker
from engine.drivers.secrets.seam import Secrets
from engine.drivers.snapshots.seam import Snapshots
from engine.drivers.volumes.seam import Volumes
from engine.shell.health import HealthChecks
from engine.shell.journal import Journal
from engine.shell.outcomes import OutcomeRecorder, error_message
from engine.shell.supervisor_network import NetworkSteps
from engine.shell.supervisor_storage import StorageSteps
from events import vocabulary as v
from events.envelope import SYSTEM_ACTOR, Actor, Pending, stream_of
from events.store import StoreError
from projections.fold import updated_config
from projections.state import ContainerView

log = logging.getLogger("shipslog.supervisor")


@dataclass
class Drivers:
    snapshots: Snapshots
    runtime: Runtime
    secrets: Secrets
    layers: Layers
    specs: SpecMaker
    files: Files
    volumes: Volumes
    network: Any = None  # engine.shell.network.NetworkOps; None where there is no networking


def _c(cid: str) -> str:
    return stream_of("container", cid)


def _opstream(op_id: str) -> str:
    return stream_of("op", op_id)


def step_error(raw: Exception, doing: str) -> ShipslogError | StoreError:
    """A step's failure as the error its outcome records and its caller sees: a trio
    ExceptionGroup of one failure becomes that failure, an OSError the user's words for its
    errno (issue 15 item 6: a port in use reached users as "ExceptionGroup: Exceptions from
    Trio nursery" and left the start pending). Anything else is a bug: its traceback goes
    to the daemon log and the user gets one line."""
    leaf = leaf_of(raw)
    if isinstance(leaf, StoreError):
        return leaf
    err = user_error(leaf, doing)
    if err is None:
        log.error("%s", doing, exc_info=raw)
        err = KernelError(f"{doing}: internal error: {type(leaf).__name__}: {leaf}",
                          "the daemon's log has the details; please report it")
    return err


def exit_code_for_start_error(message: str) -> int:
    """Docker's codes: 127 when the command is not found, 126 when it cannot be invoked."""
    low = message.lower()
    if "executable file not found" in low or "no such file or directory" in low:
        return 127
    if "permission denied" in low:
        return 126
    return 128


class Supervisor:
    def __init__(self, journal: Journal, drivers: Drivers, nursery: trio.Nursery) -> None:
        self.journal = journal
        self.outcomes = OutcomeRecorder(journal)
        self.d = drivers
        self.nursery = nursery
        self._watching: set[str] = set()
        self._exited: dict[str, trio.Event] = {}
        # Clients that attached before the container started (`docker run` does): they get
        # their session between `runc create` and `runc start`, so no output is missed.
        self._attach_waiters: dict[str, list[trio.MemorySendChannel[Any]]] = {}
        # Client sessions (execs) that shutdown ends first; the event is set when none runs.
        self._sessions: set[trio.CancelScope] = set()
        self._sessions_idle = trio.Event()
        self._sessions_idle.set()
        self.health = HealthChecks(journal, drivers.runtime, drivers.secrets, self._append)
        # The steps' collaborators: storage (volumes, image GC) and networking; the
        # container lifecycle (rootfs, runtime, exits) is the supervisor's own.
        self.storage = StorageSteps(journal, drivers.volumes, drivers.layers, self._append)
        self.network = NetworkSteps(journal, drivers.network)
        self._steps: dict[str, Callable[[str, dict[str, str], Actor], Awaitable[None]]] = {
            "rootfs.prepare": self._rootfs_prepare,
            "container.start": self._start,
            "container.stop": self._stop,
            "container.kill": self._kill,
            "container.pause": self._pause,
            "container.unpause": self._unpause,
            "container.remove": self._remove,
            "container.update": self._update,
            "image.gc": self.storage.image_gc,
            "volume.create": self.storage.volume_create,
            "volume.remove": self.storage.volume_remove,
        }

    # -- background work ------------------------------------------------------------------

    def spawn(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Start a background task that can fail without taking the daemon with it: a bug in
        one container's watcher must never stop the API or the other containers' watchers."""
        async def guarded() -> None:
            try:
                await fn(*args)
            except Exception:  # noqa: BLE001 - the barrier; the log keeps the traceback
                log.exception("background task %s failed", getattr(fn, "__name__", fn))

        self.nursery.start_soon(guarded)

    def spawn_session(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        """A background task that serves a client (an exec, attached or detached): like
        `spawn`, but ended by `close_sessions` at shutdown, so that what it records when it
        ends lands before `DaemonStopped` (issue 15, item 8)."""
        scope = trio.CancelScope()
        if not self._sessions:
            self._sessions_idle = trio.Event()
        self._sessions.add(scope)

        async def session() -> None:
            try:
                with scope:
                    await fn(*args)
            finally:
                self._sessions.discard(scope)
                if not self._sessions:
                    self._sessions_idle.set()

        self.spawn(session)

    async def close_sessions(self, grace_s: float) -> bool:
        """Cancel every client session; wait up to `grace_s` for them to record how they
        ended. False if some were still busy when the grace ran out."""
        for scope in list(self._sessions):
            scope.cancel()
        with trio.move_on_after(grace_s):
            await self._sessions_idle.wait()
        return not self._sessions

    # -- running plans --------------------------------------------------------------------

    async def execute(self, decision: Decision, actor: Actor) -> None:
        for step in decision.plan:
            await self.run_step(decision.op_id, step, actor)

    async def run_step(self, op_id: str, step: Step, actor: Actor) -> None:
        handler = self._steps.get(step.name)
        if handler is None:
            raise KernelError(f"no handler for step {step.name}")
        await handler(op_id, dict(step.args), actor)

    async def _append(self, pending: list[Pending], op_id: str, actor: Actor = SYSTEM_ACTOR
                      ) -> None:
        """Record what the kernel work did. A refusal the log may later accept is retried
        until it lands (engine/shell/outcomes.py, issue 15): the kernel work is done, and a
        dropped outcome would leave the projection wrong until a restart."""
        await self.outcomes.record(pending, actor=actor, op_id=op_id)

    async def _append_or_undo(self, pending: list[Pending], op_id: str, actor: Actor,
                              undo: Callable[[str], Awaitable[None]]) -> None:
        """Record the outcome of kernel work that succeeded. When the log refuses it (full
        disk, I/O error, lock timeout: RELIABILITY F-12) the work is undone, so no kernel
        object is left without an owning event, and the error goes to the caller: the user
        never sees success. The undo's own record is retried until it lands (or the daemon
        stops: then the operation stays open in the log and recovery settles it from the
        kernel at the next start)."""
        try:  # one try: a refusal is answered by the undo, whose record is retried
            await self.journal.append(pending, actor=actor, op_id=op_id)
        except StoreError as exc:
            log.warning("the log refused the outcome of %s (%s); undoing it", op_id, exc.message)
            with trio.CancelScope(shield=True):
                try:
                    await undo(exc.message)
                except (ShipslogError, OSError, StoreError) as undo_exc:
                    log.warning("undo of %s failed: %s; recovery settles it at the next "
                                "start", op_id, error_message(undo_exc))
            raise

    def _container(self, cid: str) -> ContainerView:
        c = self.journal.state.containers.get(cid)
        if c is None:
            raise NotFound(f"No such container: {cid}")
        return c

    # -- create ---------------------------------------------------------------------------

    async def _rootfs_prepare(self, op_id: str, args: dict[str, str], actor: Actor) -> None:
        cid = args["container_id"]
        c = self._container(cid)
        try:
            rootfs = await self._prepare_rootfs(c)
            await trio.to_thread.run_sync(self.storage.prepare_volumes, c, rootfs)
            failpoints.hit("create.after_rootfs")
        except ShipslogError as exc:
            await self._undo_create(op_id, c, "rootfs.prepare", str(exc), actor)
            raise
        except OSError as exc:
            await self._undo_create(op_id, c, "rootfs.prepare", str(exc), actor)
            raise KernelError(f"preparing the root filesystem failed: {exc}") from exc
        await self._append([
            Pending(stream=_c(cid), event=v.ContainerCreated(container_id=cid, rootfs=rootfs)),
            Pending(stream=_opstream(op_id), event=v.OperationCompleted(op_id=op_id)),
        ], op_id, actor)

    async def _prepare_rootfs(self, c: ContainerView) -> str:
        image = self.journal.state.images.get(c.config.image_id)
        if image is None:
            raise NotFound(f"No such image: {c.config.image}")
        paths = [self.d.layers.path(d) for d in image.layers]
        return await trio.to_thread.run_sync(self.d.snapshots.prepare, c.id, paths)

    async def _undo_create(self, op_id: str, c: ContainerView, step: str, error: str,
                           actor: Actor) -> None:
        cleanup_failed = False
        dropped: list[str] = []
        try:
            await trio.to_thread.run_sync(self.d.snapshots.remove, c.id)
            self.d.secrets.wipe(c.id)
            dropped = await self.storage.drop_anonymous_volumes(c)
        except (OSError, ShipslogError) as exc:
            log.warning("cleanup after failed create of %s failed: %s", c.id, exc)
            cleanup_failed = True
        pending = [Pending(stream=_opstream(op_id), event=v.OperationFailed(
            op_id=op_id, step=step, error=error, needs_cleanup=cleanup_failed))]
        if not cleanup_failed:
            pending += [
                Pending(stream=_c(c.id), event=v.ContainerRemoved(container_id=c.id)),
                Pending(stream=stream_of("name", c.name),
                        event=v.NameReleased(name=c.name, container_id=c.id)),
                *self.storage.volumes_removed(dropped),
            ]
        await self._append(pending, op_id, actor)

    # -- start ----------------------------------------------------------------------------

    async def _start(self, op_id: str, args: dict[str, str], actor: Actor) -> None:
        cid = args["container_id"]
        c = self._container(cid)
        rt = self.d.runtime
        step = "rootfs.prepare"
        try:
            rootfs = await self._prepare_rootfs(c)
            image = self.journal.state.images[c.config.image_id]
            step = "mounts.prepare"
            plan = self.storage.mount_plan(c)
            mounts = await trio.to_thread.run_sync(
                self.d.volumes.prepare, cid, plan, rootfs, self.storage.volume_options()
            ) if plan.mounts else []
            if plan.mounts:
                failpoints.hit("start.after_volume_mount")
            step = "network.attach"
            netns_path, addresses, dns, hostname = await self.network.attach(c, op_id, actor)
            step = "runtime.create"
            env = self.d.secrets.get(cid) if c.config.env else []
            # `--link` hosts and env, `--pid container:X`: read from the others now
            linked, link_env = createopts.for_start(self.journal.state, c)
            # Off the event loop: it writes the container's /etc files (~5 ms each on this
            # disk), and Compose starts a project's containers at once (issue 14).
            spec = await trio.to_thread.run_sync(
                self.d.specs.make, linked, image, env + link_env, rootfs, mounts,
                plan.rootfs_propagation, netns_path, addresses, dns, hostname)
            if c.has_been_started:  # the runtime still holds the previous run's state
                await rt.delete(cid, force=True)
            try:
                monitor_pid = await rt.create(
                    cid, spec, tty=c.config.tty, open_stdin=c.config.open_stdin,
                    stdin_once=c.config.stdin_once, log_path=self.d.files.log_path(cid),
                    log_opts=dict(c.config.log_options))
            finally:
                # runc holds its own copies of the mounts now (or failed): drop the staging.
                if plan.mounts:
                    await trio.to_thread.run_sync(self.d.volumes.release, cid)
            failpoints.hit("start.after_runtime_create")
            await self._hand_out_attach_sessions(cid)
            step = "runtime.start"
            pid = await rt.start(cid)
            running_since = trio.current_time()
            failpoints.hit("start.after_runtime_start")
        except Exception as raw:  # noqa: BLE001 - every failure becomes an outcome here
            exc = step_error(raw, f"starting container {c.name} failed")
            if step in ("mounts.prepare", "network.attach"):
                # staging mounts made before `runc create` (which drops them) was reached
                await trio.to_thread.run_sync(self.d.volumes.release, cid)
            await self._start_failed(op_id, cid, step, error_message(exc), actor)
            if exc is raw:
                raise
            raise exc from None
        self._exited[cid] = trio.Event()
        outcome = [
            Pending(stream=_c(cid), event=v.ContainerStarted(container_id=cid, pid=pid,
                                                             monitor_pid=monitor_pid)),
            *(Pending(stream=stream_of("volume", m.source), event=v.VolumeMounted(
                name=m.source, container_id=cid, destination=m.target, read_only=m.read_only))
              for m in plan.mounts if m.kind == "volume"),
            Pending(stream=_opstream(op_id), event=v.OperationCompleted(op_id=op_id)),
        ]

        async def undo(error: str) -> None:
            self._exited.pop(cid, None)
            await self._start_failed(op_id, cid, "record", error, actor)

        await self._append_or_undo(outcome, op_id, actor, undo)
        self.watch(cid, running_since=running_since)

    async def _hand_out_attach_sessions(self, cid: str) -> None:
        for waiter in self._attach_waiters.pop(cid, []):
            try:
                session = await self.d.runtime.attach(cid)
            except ShipslogError as exc:
                log.warning("attach to %s before start failed: %s", cid[:12], exc)
                waiter.close()
                continue
            try:
                waiter.send_nowait(session)
            except (trio.BrokenResourceError, trio.WouldBlock):
                session.close()  # the client went away meanwhile

    async def attach_at_start(self, cid: str) -> Any:
        """Wait for the container's next start and return an attach session to it."""
        send, receive = trio.open_memory_channel[Any](1)
        self._attach_waiters.setdefault(cid, []).append(send)
        async with receive:
            try:
                return await receive.receive()
            except trio.EndOfChannel:
                raise KernelError(f"attaching to container {cid[:12]} failed") from None

    async def _start_failed(self, op_id: str, cid: str, step: str, error: str,
                            actor: Actor) -> None:
        cleanup_failed = False
        await self.network.release(cid, op_id)
        try:
            await self.d.runtime.delete(cid, force=True)
        except (ShipslogError, OSError) as exc:
            log.warning("cleanup after failed start of %s failed: %s", cid, exc)
            cleanup_failed = True
        await self._append([
            Pending(stream=_c(cid), event=v.ContainerStartFailed(
                container_id=cid, error=error, exit_code=exit_code_for_start_error(error))),
            Pending(stream=_opstream(op_id), event=v.OperationFailed(
                op_id=op_id, step=step, error=error, needs_cleanup=cleanup_failed)),
        ], op_id, actor)
        for waiter in self._attach_waiters.pop(cid, []):
            waiter.close()  # attached clients learn the start failed
        c = self.journal.state.containers.get(cid)
        if c is not None and c.config.auto_remove and not cleanup_failed:
            # `run --rm` of a command that cannot start leaves nothing behind, as in Docker.
            self.spawn(self._auto_remove, c)

    # -- exits ----------------------------------------------------------------------------

    def watch(self, cid: str, *, running_since: float | None = None) -> None:
        """Watch a running container's exit (also for containers adopted at recovery), and
        rotate its log while it runs. `running_since`: the trio time its process started,
        from which its health check's first interval runs (now: adopted at recovery)."""
        if cid in self._watching:
            return
        self._watching.add(cid)
        self._exited.setdefault(cid, trio.Event())
        self.spawn(self._watch, cid)
        c = self.journal.state.containers.get(cid)
        if c is not None and c.config.healthcheck is not None and c.config.healthcheck.enabled:
            self.spawn(self.health.run, cid, self._exited[cid], running_since)
        if c is not None and c.config.log_options.get("max-file", "1") != "1":
            self.spawn(self._rotate_logs, cid, dict(c.config.log_options))

    async def _rotate_logs(self, cid: str, opts: dict[str, str]) -> None:
        try:
            await self.d.runtime.rotate_logs(cid, self.d.files.log_path(cid), opts)
        except (ShipslogError, OSError) as exc:
            log.warning("log rotation for %s stopped: %s", cid[:12], exc)

    async def _watch(self, cid: str) -> None:
        try:
            record = await self.d.runtime.wait_exit(cid)
        except (ShipslogError, OSError) as exc:
            record = ExitRecord(exit_code=255, lost=True,
                                reason=f"lost track of the container's monitor: {exc}")
        finally:
            self._watching.discard(cid)
        await self.record_exit(cid, record)
        await self.network.release(cid, "exit-" + cid[:12])
        self._exited.pop(cid, trio.Event()).set()
        await self._after_exit(cid)

    async def record_exit(self, cid: str, record: ExitRecord) -> None:
        state = self.journal.state
        if cid not in state.containers:
            return
        event: v.BaseEvent
        if record.lost:
            event = v.ContainerLost(container_id=cid, exit_code=record.exit_code,
                                    reason=record.reason or "the container's monitor died")
        else:
            event = v.ContainerExited(
                container_id=cid, exit_code=record.exit_code, signal=record.signal,
                oom_killed=record.oom_killed, finished_at=record.finished_at_ns)
        pending = [Pending(stream=_c(cid), event=event)]
        c = state.containers[cid]
        pending += [Pending(stream=stream_of("volume", m.name), event=v.VolumeUnmounted(
            name=m.name, container_id=cid, destination=m.destination)) for m in c.mounts]
        for op in state.operations.values():  # a stop is complete when the process is gone
            if op.target == _c(cid) and op.kind == "container.stop" and not op.needs_cleanup:
                pending.append(Pending(stream=_opstream(op.op_id),
                                       event=v.OperationCompleted(op_id=op.op_id)))
        await self._append(pending, "exit-" + cid[:12])

    async def _after_exit(self, cid: str) -> None:
        state = self.journal.state
        c = state.containers.get(cid)
        if c is None or c.status != "exited":
            return
        busy = any(op.target == _c(cid) and op.kind in (
            "container.stop", "container.kill", "container.remove", "container.restart")
            for op in state.operations.values())
        if c.config.auto_remove and not busy:
            await self._auto_remove(c)
            return
        if busy:
            return
        delay = restart_delay_ms(c, now_ns=self.journal.clock())
        if delay is None:
            return
        op_id = self.journal.new_id()
        await self._append([
            Pending(stream=_c(cid), event=v.ContainerRestartedByPolicy(
                container_id=cid, restart_count=c.restart_count + 1, delay_ms=delay,
                reason=f"exited with code {c.exit_code}; restart policy "
                       f"{c.config.restart_policy.name}")),
            Pending(stream=_opstream(op_id), expected_version=0, event=v.OperationRequested(
                op_id=op_id, kind="container.start", target=_c(cid),
                args={"by": "restart-policy"})),
        ], op_id)
        self.spawn(self._restart_later, op_id, cid, delay)

    async def _restart_later(self, op_id: str, cid: str, delay_ms: int) -> None:
        await trio.sleep(delay_ms / 1000)
        c = self.journal.state.containers.get(cid)
        if c is None or c.status != "restarting" or c.manually_stopped:
            await self._append([Pending(stream=_opstream(op_id), event=v.OperationCompensated(
                op_id=op_id, step="restart", action="not restarted: container changed"))],
                op_id)
            return
        try:
            await self._start(op_id, {"container_id": cid}, SYSTEM_ACTOR)
        except ShipslogError as exc:
            log.warning("restart of %s failed: %s", cid, exc)

    async def _auto_remove(self, c: ContainerView) -> None:
        op_id = self.journal.new_id()
        await self._append([
            Pending(stream=_opstream(op_id), expected_version=0, event=v.OperationRequested(
                op_id=op_id, kind="container.remove", target=_c(c.id), args={"by": "--rm"})),
            Pending(stream=_c(c.id), event=v.ContainerRemoveRequested(container_id=c.id)),
        ], op_id)
        try:
            await self._remove(op_id, {"container_id": c.id}, SYSTEM_ACTOR)
        except ShipslogError as exc:
            log.warning("auto-remove of %s failed: %s", c.id, exc)

    async def wait_exited(self, cid: str, timeout: float) -> bool:
        ev = self._exited.get(cid)
        if ev is None:
            return True
        with trio.move_on_after(timeout):
            await ev.wait()
            return True
        return False

    # -- stop, kill, pause ----------------------------------------------------------------

    async def _stop(self, op_id: str, args: dict[str, str], actor: Actor) -> None:
        cid = args["container_id"]
        sig = args.get("signal", "SIGTERM")
        timeout = int(args.get("timeout", "10"))
        c = self._container(cid)
        try:
            if c.status == "paused":
                await self.d.runtime.resume(cid)  # a paused process cannot act on SIGTERM
            if timeout != 0:
                await self._signal(cid, sig)
                failpoints.hit("stop.after_signal")
            if timeout < 0:
                await self.wait_exited(cid, math.inf)
            elif timeout == 0 or not await self.wait_exited(cid, timeout):
                await self._signal(cid, "SIGKILL")
                await self.wait_exited(cid, 30)
        except ShipslogError as exc:
            await self._append([Pending(stream=_opstream(op_id), event=v.OperationFailed(
                op_id=op_id, step="runtime.kill", error=str(exc)))], op_id, actor)
            raise
        op = self.journal.state.operations.get(op_id)
        if op is not None and op.kind == "container.stop":  # exited before the stop recorded
            await self._append([Pending(stream=_opstream(op_id),
                                        event=v.OperationCompleted(op_id=op_id))], op_id, actor)

    async def _signal(self, cid: str, sig: str) -> None:
        try:
            await self.d.runtime.kill(cid, sig)
        except (NotFound, Conflict):
            pass  # already gone or between restarts: the exit watcher records what happened

    async def _kill(self, op_id: str, args: dict[str, str], actor: Actor) -> None:
        cid, sig = args["container_id"], args["signal"]
        c = self._container(cid)
        stops = kill_stops_restart(c, sig)
        try:
            await self.d.runtime.kill(cid, sig)
        except ShipslogError as exc:
            await self._append([Pending(stream=_opstream(op_id), event=v.OperationFailed(
                op_id=op_id, step="runtime.kill", error=str(exc)))], op_id, actor)
            raise
        # An exit recorded before this append finds the kill op open and leaves it down; one
        # recorded after finds the container manually stopped: a kill never restarts it.
        await self._append([
            Pending(stream=_c(cid), event=v.ContainerSignalled(
                container_id=cid, signal=sig, stops_restart=stops)),
            Pending(stream=_opstream(op_id), event=v.OperationCompleted(op_id=op_id)),
        ], op_id, actor)
        if sig == "SIGKILL" and c.status == "running":
            # moby `daemon.Kill`: answer once the container is no longer running, so an
            # `inspect` right after `docker kill` shows the exit. (A paused container dies
            # only when thawed on cgroup v1: its exit is recorded when that happens.)
            await self.wait_exited(cid, 30)

    async def _pause(self, op_id: str, args: dict[str, str], actor: Actor) -> None:
        await self._simple(op_id, args["container_id"], actor, self.d.runtime.pause,
                           v.ContainerPaused(container_id=args["container_id"]), "runtime.pause")

    async def _unpause(self, op_id: str, args: dict[str, str], actor: Actor) -> None:
        await self._simple(op_id, args["container_id"], actor, self.d.runtime.resume,
                           v.ContainerUnpaused(container_id=args["container_id"]),
                           "runtime.resume")

    async def _update(self, op_id: str, args: dict[str, str], actor: Actor) -> None:
        """`docker update` of a running container: the kernel first (`runc update`), then
        the new settings are recorded; a container that stopped meanwhile just records them."""
        cid = args["container_id"]
        changes = msgspec.json.decode(args["changes"], type=v.ContainerUpdated)
        c = self._container(cid)
        if c.status not in ("running", "paused"):
            await self._append([
                Pending(stream=_c(cid), event=changes),
                Pending(stream=_opstream(op_id), event=v.OperationCompleted(op_id=op_id)),
            ], op_id, actor)
            return
        resources = update_resources(updated_config(c.config, changes))
        await self._simple(op_id, cid, actor,
                           lambda cid: self.d.runtime.update(cid, resources), changes,
                           "runtime.update")

    async def _simple(self, op_id: str, cid: str, actor: Actor,
                      action: Callable[[str], Awaitable[None]], event: v.Event,
                      step: str) -> None:
        try:
            await action(cid)
        except ShipslogError as exc:
            await self._append([Pending(stream=_opstream(op_id), event=v.OperationFailed(
                op_id=op_id, step=step, error=str(exc)))], op_id, actor)
            raise
        await self._append([
            Pending(stream=_c(cid), event=event),
            Pending(stream=_opstream(op_id), event=v.OperationCompleted(op_id=op_id)),
        ], op_id, actor)

    # -- remove ---------------------------------------------------------------------------

    async def _remove(self, op_id: str, args: dict[str, str], actor: Actor) -> None:
        cid = args["container_id"]
        c = self._container(cid)
        rt = self.d.runtime
        try:
            if c.status in ("running", "paused", "restarting", "removing"):
                state = await rt.state(cid)
                if state is not None and state.status in ("running", "paused", "created"):
                    if state.status == "paused":
                        await rt.resume(cid)
                    await self._signal(cid, "SIGKILL")
                    if cid in self._exited:
                        await self.wait_exited(cid, 30)
            await rt.delete(cid, force=True)
            if c.config.mounts:
                await trio.to_thread.run_sync(self.d.volumes.release, cid)
                failpoints.hit("remove.after_volume_unmount")
            await self.network.release(cid, op_id, strict=True)
            failpoints.hit("remove.after_runtime_delete")
            await trio.to_thread.run_sync(self.d.snapshots.remove, cid)
            failpoints.hit("remove.after_rootfs")
            self.d.secrets.wipe(cid)
            self.health.forget(cid)
            await trio.to_thread.run_sync(self.d.files.remove_container_files, cid)
            dropped: list[str] = []
            if args.get("volumes") == "true" or c.config.auto_remove:
                dropped = await self.storage.drop_anonymous_volumes(c)
        except (ShipslogError, OSError, StoreError) as exc:
            await self._append([Pending(stream=_opstream(op_id), event=v.OperationFailed(
                op_id=op_id, step="remove", error=error_message(exc), needs_cleanup=True))],
                op_id, actor)
            if isinstance(exc, (ShipslogError, StoreError)):
                raise
            raise KernelError(f"removing container {c.name} failed: {exc}") from exc
        c = self.journal.state.containers.get(cid, c)
        await self._append([
            Pending(stream=_c(cid), event=v.ContainerRemoved(container_id=cid)),
            Pending(stream=stream_of("name", c.name),
                    event=v.NameReleased(name=c.name, container_id=cid)),
            *self.storage.volumes_removed(dropped),
            Pending(stream=_opstream(op_id), event=v.OperationCompleted(op_id=op_id)),
        ], op_id, actor)
