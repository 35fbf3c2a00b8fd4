"""Docker API handlers for the engine itself: version, info and the event stream.

I/O: reads /proc, uname and the host's firewall (iptables, nftables) for `info`; the event
stream reads the log (history, then live).
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import msgspec
import trio

from engine.api.docker.events import DockerEvents, matches
from engine.api.docker.models import (
    ComponentVersion,
    FirewallBackendInfo,
    SystemInfo,
    SystemVersion,
)
from engine.api.docker.render import rfc3339
from engine.api.docker.translate import parse_filters
from engine.api.routes.off import off_routes
from engine.api.server.router import Request, Response, Router, json_response, streaming
from engine.core.errors import InvalidArgument
from engine.core.fwd_plan import findings
from engine.shell.files import observe_host_firewall
from engine.shell.logread import first_seq_at
from engine.shell.outcomes import summary
from events.follow import follow

VERSION = "0.1.0"


def parse_event_time(value: str | None, now_ns: int) -> int | None:
    """Docker sends `since`/`until` as Unix seconds (`1700000000.123456789`); we also take
    RFC 3339 from other clients."""
    if not value:
        return None
    try:
        secs, _, frac = value.partition(".")
        return int(secs) * 1_000_000_000 + int((frac + "000000000")[:9])
    except ValueError:
        pass
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e9)
    except ValueError:
        raise InvalidArgument(
            f"invalid time {value!r}", hint="use Unix seconds or RFC 3339"
        ) from None


def parse_event_until(value: str | None, now_ns: int) -> int | None:
    """An events `until`: whole Unix seconds (`--until $(date +%s)`) include that whole
    second, or the events of its last fraction are dropped (issue 18)."""
    until = parse_event_time(value, now_ns)
    if until is not None and value is not None and value.strip().isdigit():
        until += 999_999_999
    return until


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def system_routes(ctx: Any) -> Router:
    r = Router()

    @r.route("GET", "/version")
    async def version(req: Request) -> Response:
        runc = getattr(ctx, "runc_version", "")
        return json_response(
            SystemVersion(
                Components=[
                    ComponentVersion(
                        Name="Engine",
                        Version=VERSION,
                        Details={"ApiVersion": "1.43", "Os": "linux"},
                    ),
                    ComponentVersion(Name="runc", Version=runc),
                ],
                Version=VERSION,
                GoVersion="python" + platform.python_version(),
                Arch=_arch(),
                KernelVersion=platform.release(),
                BuildTime="",
            )
        )

    @r.route("GET", "/info")
    async def info(req: Request) -> Response:
        state = ctx.engine.state
        statuses = [c.status for c in state.containers.values()]
        try:
            mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            mem = 0
        facts = await trio.to_thread.run_sync(observe_host_firewall)
        firewall = FirewallBackendInfo(
            Driver="nftables+iptables" if facts.iptables else "nftables",
            Info=[["Detected", line] for line in findings(facts)])
        return json_response(
            SystemInfo(
                ID=ctx.engine_id,
                Containers=len(statuses),
                ContainersRunning=statuses.count("running"),
                ContainersPaused=statuses.count("paused"),
                ContainersStopped=len(statuses)
                - statuses.count("running")
                - statuses.count("paused"),
                Images=len(state.images),
                DockerRootDir=str(ctx.paths.root),
                NFd=len(os.listdir("/proc/self/fd")),
                NGoroutines=trio.lowlevel.current_statistics().tasks_living,
                SystemTime=rfc3339(ctx.clock()),
                KernelVersion=platform.release(),
                OperatingSystem=_os_name(),
                OSType="linux",
                Architecture=platform.machine(),
                NCPU=os.cpu_count() or 1,
                MemTotal=mem,
                Name=platform.node(),
                ServerVersion=VERSION,
                CgroupVersion="2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1",
                Runtimes={"runc": {"path": "runc"}},
                SecurityOptions=["name=seccomp,profile=builtin"],
                DriverStatus=[
                    ["Backing Filesystem", "overlay"],
                    ["Event log", ctx.store.describe()],
                    # The folded head, not a query: `info` answers while the store is down.
                    ["Events", str(ctx.store.applied_seq)],
                ],
                FirewallBackend=firewall,
                Warnings=_waiting_outcomes(ctx) + _replication_warning(ctx),
                Replication=_replication(ctx),
            )
        )

    @r.route("GET", "/events")
    async def events(req: Request) -> Response:
        now = ctx.clock()
        since = parse_event_time(req.arg("since"), now)
        until = parse_event_until(req.arg("until"), now)
        filters = parse_filters(req.arg("filters"))
        converter = DockerEvents(lambda: ctx.engine.state)
        head = ctx.store.head()
        # Start where `since` begins (a binary search over seq), not at the log's first event.
        after = head if since is None else max(first_seq_at(ctx.store, since) - 1, 0)
        # With an `until` in the past the stream is history only: it ends at today's head.
        history_only = until is not None and until <= now

        async def body() -> AsyncIterator[bytes]:
            if history_only and after >= head:
                return
            stream: AsyncIterator[Any] = follow(ctx.store, ctx.writer, after_seq=after)
            if until is not None and not history_only:
                # An `until` ahead: the stream ends then, even if nothing happens meanwhile.
                stream = _ending_at(stream, trio.current_time() + (until - now) / 1e9)
            async for env in stream:
                if until is not None and env.recorded_at > until:
                    return
                for msg in converter.convert_all(env):
                    if ((since is None or env.recorded_at >= since)
                            and (not filters or matches(msg, filters))):
                        yield msgspec.json.encode(msg) + b"\n"
                if history_only and env.seq >= head:
                    return

        return streaming(body())

    r.include(off_routes(ctx))  # swarm and plugins, answered as Docker with them off
    return r


async def _ending_at(events: AsyncIterator[Any], deadline: float) -> AsyncIterator[Any]:
    """`events` until the trio clock reaches `deadline`. The cancel scope wraps only the
    wait for the next event, never a `yield`, so it cannot catch the consumer's work."""
    nothing = object()
    while True:
        item = nothing
        with trio.move_on_at(deadline):
            try:
                item = await events.__anext__()
            except StopAsyncIteration:
                return
        if item is nothing:  # the deadline came first; the cancelled `events` has ended
            return
        yield item


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return sys.platform


def _replication(ctx: Any) -> dict[str, object] | None:
    status = getattr(ctx, "replication", None)
    return None if status is None else status.document()  # type: ignore[no-any-return]


def _replication_warning(ctx: Any) -> list[str]:
    """A stopped replication (a fork, a gap) needs a person: say so where `info` warns."""
    status = getattr(ctx, "replication", None)
    if status is None or status.state != "stopped":
        return []
    return [f"WARNING: replication to {status.url} stopped: {status.error}"]


def _waiting_outcomes(ctx: Any) -> list[str]:
    """Docker's `info` warnings, plus the outcomes the log refused that the supervisor is
    still retrying (issue 15): a read-only context has no supervisor, hence nothing waiting."""
    outcomes = getattr(getattr(ctx.engine, "supervisor", None), "outcomes", None)
    waiting = outcomes.waiting() if outcomes is not None else []
    return [f"WARNING: {summary(waiting)}"] if waiting else []
