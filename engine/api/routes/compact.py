"""`POST /shipslog/system/compact?before=TIME`: archive the history of objects removed before
TIME (engine/shell/compaction.py), on the daemon's writer thread.

I/O: the event store and `<root>/archive/` through the writer; reads the log in a worker
thread to turn `seq:N` into a time.

`before`: `seq:N` (objects removed before event N was recorded), Unix seconds, RFC 3339, or
a duration (`720h`: removed more than 720 hours ago). Answer: `{"Count", "Streams",
"FirstSeq", "LastSeq", "Archive", "ArchiveSha256", "BytesFreed", "SummarySeq", "BeforeNs",
"LiveEvents"}`; Count 0 means nothing was old enough (and nothing was appended).
"""

from __future__ import annotations

from typing import Any

import trio

from engine.api.server.router import Request, Response, Router, json_response
from engine.shell.compaction import before_ns_of, compact_in_writer, live_events, report_json


def compact_routes(ctx: Any) -> Router:
    """`ctx`: `.writer`, `.store`, `.paths` (the state root), `.clock()`, and
    `.compaction_hold` (with `--replicate-to`: the newest recorded_at the center holds; a
    manual compaction stops there too, as the automatic one does)."""
    r = Router()

    @r.route("POST", "/shipslog/system/compact")
    async def system_compact(req: Request) -> Response:
        now = int(ctx.clock())
        reader = ctx.store
        before = await trio.to_thread.run_sync(before_ns_of, reader, req.arg("before"), now)
        hold = getattr(ctx, "compaction_hold", None)
        if hold is not None:  # --replicate-to: nothing leaves before the center holds it
            before = min(before, await trio.to_thread.run_sync(hold))
        report = await compact_in_writer(ctx.writer, ctx.paths.root, before_ns=before,
                                         actor=req.actor, now_ns=now)
        live = await trio.to_thread.run_sync(live_events, ctx.writer.store)
        return json_response(report_json(report, live))

    return r
