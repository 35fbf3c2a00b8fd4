"""How a build meets the outside: its messages handed to the API response as they come, and
the step containers a crash left swept at daemon start.

I/O: none of its own; the build runs in the supervisor's nursery, the sweep through the engine.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import trio

from engine.core.errors import ShipslogError
from engine.shell.build.builder import Emit

log = logging.getLogger("shipslog.build")


async def sweep_step_containers(engine: Any) -> None:
    """At daemon start: a build does not outlive the daemon (recovery records it abandoned),
    so a RUN step container still here was left by a crash mid-step. Remove it through the
    engine, so the log says so (RELIABILITY: nothing fixed silently)."""
    from events.envelope import SYSTEM_ACTOR
    for c in list(engine.state.containers.values()):
        if c.config.labels.get("shipslog.build") == "step":
            try:
                await engine.remove(c.id, SYSTEM_ACTOR, force=True)
            except ShipslogError as exc:
                log.warning("build step container %s left by a crash not removed: %s",
                            c.id[:12], exc)



async def to_lines(run: Callable[[Emit], Awaitable[str]],
                   spawn: Callable[[Callable[[], Awaitable[None]]], None]
                   ) -> AsyncIterator[dict[str, Any]]:
    """Run a build as a background task (`spawn`: the supervisor's) and yield its messages as
    they come. When the consumer stops (the client went away: the API server cancels or
    closes this generator), the build is cancelled and cleans up in its own task; no nursery
    lives inside this generator, as trio requires of async generators."""
    send, recv = trio.open_memory_channel[dict[str, Any]](64)
    scope = trio.CancelScope()

    async def emit(msg: dict[str, Any]) -> None:
        await send.send(msg)

    async def go() -> None:
        with scope:
            async with send:
                try:
                    await run(emit)
                except ShipslogError as exc:
                    # moby's JSONError: a failed RUN's exit code rides along as `code`
                    code = getattr(exc, "code", 0)
                    detail = {"code": code, "message": exc.message} if code else \
                        {"message": exc.message}
                    await send.send({"errorDetail": detail, "error": exc.message})
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # the reader is gone; the build was recorded as failed

    spawn(go)
    try:
        async with recv:
            async for msg in recv:
                yield msg
    finally:
        scope.cancel()
