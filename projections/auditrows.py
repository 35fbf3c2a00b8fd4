"""The log as flat rows for auditors' tools (issue 18, `audit export --sqlite`): one row per
event with its envelope, actor, object, operation and outcome, and the payload's fields as
columns; one row per operation. What each column means is written down here (`COLUMNS`), and
the export stores it in the database beside the tables.

I/O: none. Envelopes come in as every output shows them (the actor's command line already
redacted: `engine.api.routes.shipslog.shown_envelopes`); the caller writes the rows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from events import vocabulary as v
from events.envelope import Envelope
from projections.history import command_line, describe

__all__ = ["COLUMNS", "ENVELOPE_COLUMNS", "Operations", "event_row", "iso_time"]

ENVELOPE_COLUMNS = {
    "seq": "the event's place in the log (gap-free, from 1)",
    "time": "when it was recorded, RFC 3339 UTC with nanoseconds",
    "time_ns": "when it was recorded, Unix nanoseconds",
    "type": "the event's name (ContainerStarted, OperationFailed, …)",
    "object_kind": "container, image, volume, network, op (an operation), name, daemon …",
    "object_id": "the object's id (a volume's or name's name)",
    "stream": "object_kind-object_id: the stream the event belongs to",
    "stream_version": "the event's number within its stream",
    "schema_version": "the schema the event was recorded with",
    "op_id": "the operation the event belongs to",
    "operation": "that operation's kind (container.start, image.pull, …)",
    "outcome": "that operation's outcome: completed, failed, compensated, pending",
    "actor_uid": "uid of the caller (0 for the daemon's own events)",
    "actor_gid": "gid of the caller",
    "actor_pid": "pid of the caller",
    "actor_loginuid": "the caller's login uid (/proc/PID/loginuid), when known",
    "actor_via": "api (a client of the socket), cli (--root), daemon (supervisor, restarts)",
    "actor_command": "the caller's command line, secret values shown as <redacted>",
    "message": "what the event says, in one line (as `history` prints it)",
    "hash": "sha256 chaining the event to the one before (`audit verify`)",
}
OPERATION_COLUMNS = {
    "op_id": "the operation's id",
    "kind": "container.create, container.start, image.pull, …",
    "target": "the stream of the object it acted on",
    "requested_seq": "seq of its OperationRequested event",
    "requested_time": "when it was asked for, RFC 3339 UTC",
    "actor_uid": "uid of the caller who asked",
    "actor_via": "api, cli or daemon",
    "actor_command": "the caller's command line, secret values shown as <redacted>",
    "outcome": "completed, failed, compensated, pending",
    "error": "why it failed (or what was compensated)",
    "outcome_seq": "seq of its outcome event",
    "duration_ms": "milliseconds from request to outcome",
}
COLUMNS = {"events": ENVELOPE_COLUMNS, "operations": OPERATION_COLUMNS}

_OUTCOMES = (v.OperationCompleted, v.OperationFailed, v.OperationCompensated)
_OUTCOME: dict[type, str] = {v.OperationCompleted: "completed", v.OperationFailed: "failed",
                             v.OperationCompensated: "compensated"}


def iso_time(ns: int) -> str:
    secs, nanos = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def event_row(env: Envelope, operation: str = "") -> dict[str, Any]:
    """One event, flat. Payload fields keep their names; one that would hide an envelope
    column is prefixed `event_`; nested values are JSON text."""
    kind, _, ident = env.stream.partition("-")
    a = env.actor
    row: dict[str, Any] = {
        "seq": env.seq, "time": iso_time(env.recorded_at), "time_ns": env.recorded_at,
        "type": env.type, "object_kind": kind, "object_id": ident, "stream": env.stream,
        "stream_version": env.stream_version, "schema_version": env.schema_version,
        "op_id": env.op_id, "operation": operation, "outcome": "",
        "actor_uid": a.uid, "actor_gid": a.gid, "actor_pid": a.pid,
        "actor_loginuid": a.loginuid, "actor_via": a.via,
        "actor_command": command_line(a.command), "message": describe(env), "hash": env.hash,
    }
    for field in env.event.__struct_fields__:
        value = msgspec.to_builtins(getattr(env.event, field))
        if isinstance(value, dict | list | tuple):
            value = msgspec.json.encode(value).decode()
        row[f"event_{field}" if field in ENVELOPE_COLUMNS else field] = value
    return row


class Operations:
    """Operations folded from the events as they stream past: kind per op id (for the events'
    `operation` column) and one row per operation at the end."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self._at: dict[str, int] = {}

    def kind_of(self, op_id: str) -> str:
        row = self.rows.get(op_id)
        return row["kind"] if row else ""

    def see(self, env: Envelope) -> None:
        ev = env.event
        if isinstance(ev, v.OperationRequested):
            self._at[ev.op_id] = env.recorded_at
            self.rows[ev.op_id] = {
                "op_id": ev.op_id, "kind": ev.kind, "target": ev.target,
                "requested_seq": env.seq, "requested_time": iso_time(env.recorded_at),
                "actor_uid": env.actor.uid, "actor_via": env.actor.via,
                "actor_command": command_line(env.actor.command), "outcome": "pending",
                "error": "", "outcome_seq": None, "duration_ms": None}
        elif isinstance(ev, _OUTCOMES) and ev.op_id in self.rows:
            row = self.rows[ev.op_id]
            row["outcome"] = _OUTCOME[type(ev)]
            row["error"] = ev.error if isinstance(ev, v.OperationFailed) else (
                ev.action if isinstance(ev, v.OperationCompensated) else "")
            row["outcome_seq"] = env.seq
            row["duration_ms"] = (env.recorded_at - self._at[row["op_id"]]) / 1e6
