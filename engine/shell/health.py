"""Health checks, the shell: one trio task per running container with a check runs its probe
every interval (`docker run --health-cmd`, an image's HEALTHCHECK) and records each change
of verdict as a `ContainerHealthChanged` event.

I/O: `runc exec` through the runtime driver (for a container that runs as a named user, its
/etc/passwd and /etc/group are read in-root to resolve the name); appends through the
journal. Probe results (output included) stay in memory, the last five per container, as
Docker keeps them: the log records verdicts and who decided them, never what a probe printed.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from engine.core.errors import ShipslogError
from engine.core.health import MAX_OUTPUT, Probe, after_probe, probe_of
from engine.core.oci_spec import exec_process
from engine.drivers.host.info import user_db
from events import vocabulary as v
from events.envelope import Pending, stream_of

log = logging.getLogger("shipslog.health")

KEPT_RESULTS = 5


@dataclass(frozen=True)
class ProbeResult:
    start_ns: int
    end_ns: int
    exit_code: int  # -1: timed out
    output: str


class HealthChecks:
    """The probes of every running container with a health check."""

    def __init__(self, journal: Any, runtime: Any, secrets: Any,
                 append: Callable[[list[Pending], str], Awaitable[None]]) -> None:
        self.journal = journal
        self.runtime = runtime
        self.secrets = secrets
        self._append = append
        self._results: dict[str, deque[ProbeResult]] = {}
        self._streaks: dict[str, int] = {}

    def results(self, cid: str) -> list[ProbeResult]:
        return list(self._results.get(cid, ()))

    def failing_streak(self, cid: str) -> int | None:
        return self._streaks.get(cid)

    def forget(self, cid: str) -> None:
        self._results.pop(cid, None)
        self._streaks.pop(cid, None)

    async def run(self, cid: str, exited: trio.Event, since: float | None = None) -> None:
        """Probe until the container exits (`exited` is set). The first probe comes one
        interval after `since` (trio time; default now): Docker starts that interval when the
        task has started, before it records the start, so a start whose outcome took a
        while to record must not push its first probe later than Docker's (issue 14)."""
        c = self.journal.state.containers.get(cid)
        probe = probe_of(c.config.healthcheck) if c is not None else None
        if c is None or probe is None:
            return
        self._results[cid] = deque(maxlen=KEPT_RESULTS)
        async with trio.open_nursery() as nursery:
            async def stop_on_exit() -> None:
                await exited.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_exit)
            await self._loop(cid, probe, trio.current_time() if since is None else since)

    async def _loop(self, cid: str, probe: Probe, since: float) -> None:
        c = self.journal.state.containers[cid]
        status = c.health or "starting"
        streak = c.health_failing_streak
        self._streaks[cid] = streak
        # Each later interval runs from the end of the previous probe (Docker resets its
        # timer after handling the result).
        due = since + probe.interval_s
        while True:
            await trio.sleep_until(due)
            due = trio.current_time() + probe.interval_s
            c = self.journal.state.containers.get(cid)
            if c is None or c.status not in ("running", "paused"):
                return
            if c.status == "paused":
                continue  # a frozen process cannot answer; Docker skips these too
            result = await self._probe_once(c, probe)
            self._results[cid].append(result)
            now = self.journal.clock()
            verdict = after_probe(
                status, streak, passed=result.exit_code == 0, retries=probe.retries,
                in_start_period=now - c.started_at < probe.start_period_s * 1e9)
            streak = self._streaks[cid] = verdict.failing_streak
            if verdict.status != status and await self._record(cid, verdict.status, streak,
                                                               result.exit_code):
                status = verdict.status
            due = trio.current_time() + probe.interval_s

    async def _probe_once(self, c: Any, probe: Probe) -> ProbeResult:
        start = self.journal.clock()
        try:
            image = self.journal.state.images.get(c.config.image_id)
            env = self.secrets.get(c.id) if c.config.env else []
            passwd, group = await trio.to_thread.run_sync(user_db, c.rootfs, c.config.user)
            process = exec_process(c.config, list(image.config.env) if image else [], env,
                                   cmd=probe.argv, passwd=passwd, group=group)
            got = await self.runtime.probe(c.id, process, timeout_s=probe.timeout_s,
                                           max_output=MAX_OUTPUT)
        except (ShipslogError, OSError) as exc:
            return ProbeResult(start, self.journal.clock(), 1, f"probe failed: {exc}")
        if got is None:
            output = f"Health check exceeded timeout ({probe.timeout_s:g}s)"
            return ProbeResult(start, self.journal.clock(), -1, output)
        text = got.stdout.decode("utf-8", "replace")
        return ProbeResult(start, self.journal.clock(), got.exit_code, text)

    async def _record(self, cid: str, status: str, streak: int, exit_code: int) -> bool:
        """Append the new verdict; False when it was not recorded (tried again next probe)."""
        c = self.journal.state.containers.get(cid)
        if c is None or c.status not in ("running", "paused"):
            return False  # it stopped meanwhile: its verdict no longer matters
        event = v.ContainerHealthChanged(container_id=cid, status=status,
                                         failing_streak=streak, exit_code=exit_code)
        try:
            await self._append([Pending(stream=stream_of("container", cid), event=event)],
                               "health-" + cid[:12])
        except ShipslogError as exc:  # the probes go on; the next one tries again
            log.warning("recording health of %s failed: %s", cid[:12], exc)
            return False
        return True
