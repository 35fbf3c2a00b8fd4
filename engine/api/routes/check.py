"""`POST /shipslog/system/check[?repair=1]`: the on-disk check of `engine/admin/check.py`.

I/O: the check reads (and with repair renames) files in a worker thread; each repair is then
appended to the log as a `ReconcileDifferenceFound` event, by the caller's identity.

Answer: `{"Findings": [{"Kind", "Subject", "Problem", "Action", "Path"}], "NeedsCleanup":
[{"OpId", "Kind", "Target", "Error"}], "Waiting": ["<n> outcome(s) waiting to be recorded:
…"], "Integrity": "ok", "Repaired": bool}`. `Waiting` lists outcomes the log refused that the
supervisor is still retrying; findings of kind `runtime` are disagreements between the
runtime (runc state, monitor exit files) and the projection. A finding with `"Uncertain":
true` is a check that could not conclude ("could not check <object>: <reason>"): never moved.

`POST /shipslog/system/check?restore=1` first moves every quarantined object back where it
came from (one `ReconcileDifferenceFound` each), then checks; the answer adds `"Restored":
[{"Kind", "Subject", "Path", "Quarantined", "Problem"}]` (`Problem` non-empty: stayed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from engine.admin.check import (
    Finding,
    Restored,
    finding_json,
    restore_quarantined,
    run_check,
    runtime_disagreements,
    unquarantine,
)
from engine.api.server.router import Request, Response, Router, json_response
from engine.core.errors import ShipslogError
from engine.shell.outcomes import summary
from events import vocabulary as v
from events.envelope import Pending
from events.store import StoreError

if TYPE_CHECKING:
    from engine.drivers.runtime.seam import Runtime


def _unquarantine_all(findings: list[Finding]) -> None:
    for f in findings:
        unquarantine(f)


def _restored(r: Restored) -> dict[str, str]:
    return {"Kind": r.kind, "Subject": r.subject, "Path": r.path,
            "Quarantined": r.quarantined, "Problem": r.problem}


async def _restore(ctx: Any, actor: Any) -> list[Restored]:
    journal = ctx.engine.journal
    restored = await trio.to_thread.run_sync(restore_quarantined, ctx.paths)
    back = [r for r in restored if not r.problem]
    if back:
        await journal.append([Pending(stream="reconcile", event=v.ReconcileDifferenceFound(
            subject=f"{r.kind}:{r.subject}", expected="in place",
            observed=f"in quarantine: {r.quarantined}", action=f"restored: {r.path}",
            reason="system check --restore")) for r in back],
            actor=actor, op_id=journal.new_id())
    return restored


async def _runtime_findings(runtime: Runtime, supervisor: Any, state: Any) -> list[Finding]:
    try:
        status = {st.id: st.status for st in await runtime.list()}
    except (ShipslogError, OSError) as exc:  # no view to compare with: say so, move nothing
        return [Finding(kind="runtime", subject="runc", uncertain=True,
                        problem=f"could not check runtime runc: {exc}")]
    exit_codes = {}
    for cid in state.containers:
        if status.get(cid) not in ("running", "paused"):
            record = runtime.exit_record(cid)
            if record is not None:
                exit_codes[cid] = record.exit_code
    waiting = {w.subject for w in supervisor.outcomes.waiting()}
    return runtime_disagreements(state, status, exit_codes, waiting)


def check_routes(ctx: Any) -> Router:
    """`ctx`: `.paths`, `.engine` (state and journal), `.runtime` (the runtime seam)."""
    r = Router()

    @r.route("POST", "/shipslog/system/check")
    async def system_check(req: Request) -> Response:
        repair = req.bool("repair")
        restored = await _restore(ctx, req.actor) if req.bool("restore") else None
        journal = ctx.engine.journal
        state = journal.state
        supervisor = ctx.engine.supervisor
        waiting = supervisor.outcomes.waiting()
        disagreements = await _runtime_findings(ctx.runtime, supervisor, state)
        report = await trio.to_thread.run_sync(
            lambda: run_check(ctx.paths, state, repair=repair))
        report.findings += disagreements  # reported, never "repaired": the log tells
        repaired = [f for f in report.findings if f.action]
        if repaired:
            try:
                await journal.append([Pending(stream="reconcile", event=v.ReconcileDifferenceFound(
                    subject=f"{f.kind}:{f.subject}", expected="intact", observed=f.problem,
                    action=f.action, reason="system check --repair")) for f in repaired],
                    actor=req.actor, op_id=journal.new_id())
            except StoreError:
                # a move the log cannot explain is not made: put everything back first
                await trio.to_thread.run_sync(_unquarantine_all, repaired)
                raise
        extra = {} if restored is None else {"Restored": [_restored(x) for x in restored]}
        return json_response({
            "Findings": [finding_json(f) for f in report.findings],
            "NeedsCleanup": report.needs_cleanup,
            "Waiting": [summary(waiting)] if waiting else [],
            "Integrity": report.integrity,
            "Repaired": repair,
            **extra,
        })

    return r
