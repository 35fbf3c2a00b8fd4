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

from engine.api.routes.shipslog import point_of
from engine.api.server.router import Request, Response, Router, json_response
from engine.core.errors import InvalidArgument
from engine.shell.compaction import compact_in_writer, live_events
from events.store import CompactionReport, EventStore


def report_json(report: CompactionReport, live: int) -> dict[str, Any]:
    return {"Count": report.count, "Streams": report.streams, "FirstSeq": report.first_seq,
            "LastSeq": report.last_seq, "Archive": report.archive,
            "ArchiveSha256": report.archive_sha256, "BytesFreed": report.bytes_freed,
            "SummarySeq": report.summary_seq, "BeforeNs": report.before_ns,
            "LiveEvents": live}


def before_ns_of(store: EventStore[Any], text: str | None, now_ns: int) -> int:
    """The `before` bound as a time; `seq:N` is the time event N was recorded."""
    point = point_of(text, now_ns, "before")
    if point.seq is None:
        assert point.time_ns is not None
        return point.time_ns
    head = store.head()
    if not 1 <= point.seq <= head:
        raise InvalidArgument(f"no event seq:{point.seq} in the log (head is {head})",
                              hint="give a seq between 1 and the head, or a time")
    env = next(iter(store.read(point.seq - 1, limit=1)), None)
    if env is None or env.seq != point.seq:
        raise InvalidArgument(f"event seq:{point.seq} was itself archived",
                              hint="give a later seq, or a time")
    return env.recorded_at


def compact_routes(ctx: Any) -> Router:
    """`ctx`: `.writer`, `.store`, `.paths` (the state root), `.clock()`."""
    r = Router()

    @r.route("POST", "/shipslog/system/compact")
    async def system_compact(req: Request) -> Response:
        now = int(ctx.clock())
        reader = ctx.store
        before = await trio.to_thread.run_sync(before_ns_of, reader, req.arg("before"), now)
        report = await compact_in_writer(ctx.writer, ctx.paths.root, before_ns=before,
                                         actor=req.actor, now_ns=now)
        live = await trio.to_thread.run_sync(live_events, ctx.writer.store)
        return json_response(report_json(report, live))

    return r
