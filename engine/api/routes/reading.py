"""The read model (engine/shell/readmodel.py) of a route context: the daemon's live one, or a
read-only one frozen at a point of the log (`/shipslog/at/…`).

I/O: none; the model reads when asked.
"""

from __future__ import annotations

from typing import Any

import trio

from engine.api.docker import render
from engine.shell.outcomes import summary
from engine.shell.readmodel import ReadModel


def read_model(ctx: Any) -> ReadModel:
    """`ctx`: `.engine.state`, `.store`, `.paths`, `.clock()`; the daemon's also `.images`,
    `.runc_version`, `.replication` and a supervisor with health checks and outcomes."""
    engine = ctx.engine
    images = getattr(ctx, "images", None)

    def health(c: Any) -> Any:
        """State.Health with the last probes, which only the running daemon remembers."""
        checks = getattr(getattr(engine, "supervisor", None), "health", None)
        if checks is None:
            return None
        return render.health_state(c, checks.results(c.id), checks.failing_streak(c.id))

    def warnings() -> list[str]:
        # Docker's `info` warnings, plus the outcomes the log refused that the supervisor is
        # still retrying (issue 15); a stopped replication (a fork, a gap) needs a person.
        outcomes = getattr(getattr(engine, "supervisor", None), "outcomes", None)
        waiting = outcomes.waiting() if outcomes is not None else []
        out = [f"WARNING: {summary(waiting)}"] if waiting else []
        status = getattr(ctx, "replication", None)
        if status is not None and status.state == "stopped":
            out.append(f"WARNING: replication to {status.url} stopped: {status.error}")
        return out

    def replication() -> dict[str, object] | None:
        status = getattr(ctx, "replication", None)
        return None if status is None else status.document()  # type: ignore[no-any-return]

    return ReadModel(
        store=ctx.store, paths=ctx.paths, state=lambda: engine.state, clock=ctx.clock,
        engine_id=getattr(ctx, "engine_id", ""), runc_version=getattr(ctx, "runc_version", ""),
        content=images.content if images is not None else None, health=health,
        warnings=warnings, replication=replication,
        tasks=lambda: trio.lowlevel.current_statistics().tasks_living)
