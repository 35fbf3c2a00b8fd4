"""`shipslog audit export`: the log in auditors' and SIEMs' own formats (issue 18).

    audit export --sqlite FILE      a flat SQLite database made with sqlite-utils: `events`
                                    (one row per event: envelope, actor, object, operation,
                                    outcome, the payload's fields as columns), `operations`,
                                    views per object type (`container_events`, …,
                                    `failed_operations`), full-text search over commands and
                                    messages (`events_fts`, `operations_fts`), and `columns`
                                    saying what every column means
    audit export --format ocsf      OCSF 1.1.0 API Activity / Process Activity records, one
                                    JSON object per line (stdout, or -o FILE)

No secret values: the events come as every other output shows them (`shown_envelopes`:
command lines redacted; the log itself holds keyed digests, never values).

I/O: the daemon's `/shipslog/events` stream, or the state root's database with `--root`;
writes FILE (staged as FILE.tmp, fsynced, renamed into place) or stdout; reads the host's
passwd for user names (OCSF `actor.user.name`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from typing import Any

from engine.cli.context import Context
from engine.cli.errors import CliError, UsageError

KINDS = ("container", "image", "volume", "network")


def register_export(asub: Any) -> None:
    e = asub.add_parser(
        "export", help="Write the log as a SQLite database or OCSF records (no secret values)",
        description="--sqlite FILE: a flat, documented database for sqlite-utils and "
        "Datasette (tables events and operations, views per object type, full-text search "
        "over commands and messages). --format ocsf: OCSF API Activity and Process Activity "
        "records as JSON lines, for SIEMs.")
    e.add_argument("--sqlite", default=None, metavar="FILE", help="write a SQLite database")
    e.add_argument("--format", default="", choices=["", "ocsf"],
                   help="'ocsf': OCSF 1.1.0 records, one JSON object per line")
    e.add_argument("-o", "--output", default="-", metavar="FILE",
                   help="with --format ocsf: where to write (default: stdout)")
    e.add_argument("--since", default="", help="seq:N, Unix time, RFC 3339 or a duration")
    e.add_argument("--until", default="")
    e.set_defaults(func=cmd_export)


def cmd_export(ctx: Context, args: argparse.Namespace) -> int:
    if bool(args.sqlite) == (args.format == "ocsf"):
        raise UsageError("give one of --sqlite FILE or --format ocsf", "audit export")
    if args.sqlite:
        if os.path.exists(args.sqlite):
            raise CliError(f"{args.sqlite} already exists",
                           "export into a new file, or remove the old one first")
        report = write_sqlite(args.sqlite, envelopes(ctx, args))
        ctx.err(f"exported {report['events']} events and {report['operations']} operations "
                f"to {args.sqlite}")
        return 0
    return _write_ocsf(ctx, args)


# ------------------------------------------------------------------ reading the log


def envelopes(ctx: Context, args: argparse.Namespace) -> Iterator[Any]:
    """The log's events as every output shows them, in seq order."""
    from engine.cli.logargs import point_arg

    params = {flag: point_arg(getattr(args, flag), ctx.clock(), flag, "audit export")
              for flag in ("since", "until") if getattr(args, flag)}
    if ctx.local is not None:
        yield from _local(ctx, params)
        return
    yield from _remote(ctx, params)


def _local(ctx: Context, params: dict[str, str]) -> Iterator[Any]:
    """With --root: straight from the database (a 1M-event export must not build the whole
    stream in memory first, as the read-only router's GET does)."""
    from engine.shell.logread import first_seq_at, point_of, seq_of, shown_envelopes

    assert ctx.local is not None
    store = ctx.local.context().store
    now = int(ctx.clock() * 1e9)
    after = 0
    if "since" in params:
        p = point_of(params["since"], now, "since")
        after = p.seq - 1 if p.seq is not None else first_seq_at(store, p.time_ns or 0) - 1
    last = seq_of(store, point_of(params["until"], now, "until")) if "until" in params \
        else store.head()
    yield from shown_envelopes(store.read(max(after, 0), until_seq=last))


def _remote(ctx: Context, params: dict[str, str]) -> Iterator[Any]:
    import msgspec

    from events.envelope import Actor, Envelope
    from events.vocabulary import Event

    # Built here, not at import (CLI start-up); defstruct, as annotations are strings here.
    Line = msgspec.defstruct("Line", [
        ("seq", int), ("timeNano", int), ("stream", str), ("stream_version", int),
        ("schema_version", int), ("op_id", str), ("actor", Actor), ("event", Event),
        ("hash", str), ("command_id", str | None, None)])
    decode = msgspec.json.Decoder(Line).decode
    rest = b""
    with ctx.client.stream("GET", "/shipslog/events", params) as chunks:
        for chunk in chunks:
            *lines, rest = (rest + chunk).split(b"\n")
            for raw in lines:
                if raw.strip():
                    e: Any = decode(raw)
                    yield Envelope(seq=e.seq, stream=e.stream, stream_version=e.stream_version,
                                   schema_version=e.schema_version, recorded_at=e.timeNano,
                                   actor=e.actor, op_id=e.op_id, event=e.event, hash=e.hash,
                                   command_id=e.command_id)


# ------------------------------------------------------------------ SQLite


def write_sqlite(path: str, source: Iterator[Any], batch: int = 5000) -> dict[str, int]:
    """Write the flat database to `path` (staged, fsynced, renamed)."""
    import sqlite_utils

    from projections.auditrows import COLUMNS, Operations, event_row

    tmp = path + ".tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)
    db = sqlite_utils.Database(tmp)
    # A new file renamed into place when complete: no journal needed while it is written.
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    ops = Operations()
    count = 0
    head = {"seq": 0, "hash": ""}

    def rows() -> Iterator[dict[str, Any]]:
        nonlocal count
        for env in source:
            ops.see(env)
            count += 1
            head["seq"], head["hash"] = env.seq, env.hash
            yield event_row(env, ops.kind_of(env.op_id))

    events = db.table("events")
    events.create({**dict.fromkeys(COLUMNS["events"], str), "seq": int, "time_ns": int,
                   "stream_version": int, "schema_version": int, "actor_uid": int,
                   "actor_gid": int, "actor_pid": int, "actor_loginuid": int}, pk="seq")
    _insert_rows(db, events, rows(), batch)
    db.table("operations").insert_all(ops.rows.values(), pk="op_id", alter=True,
                                      batch_size=batch)
    if not ops.rows:
        db.table("operations").create(dict.fromkeys(COLUMNS["operations"], str), pk="op_id")
    db.execute("UPDATE events SET outcome = o.outcome FROM operations o "
               "WHERE o.op_id = events.op_id")
    _finish(db, COLUMNS, head)
    db.conn.commit()
    db.close()
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return {"events": count, "operations": len(ops.rows)}


def _insert_rows(db: Any, table: Any, rows: Iterator[dict[str, Any]], batch: int) -> None:
    """sqlite-utils makes the schema (a column per payload field, added as it first shows
    up, typed by its first value); the rows go in with one executemany per event shape —
    sqlite-utils' own insert_all pads and re-checks every row against the union of all
    columns, three times slower on a million events."""
    known = set(table.columns_dict)
    chunk: list[dict[str, Any]] = []

    def flush() -> None:
        shapes: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for row in chunk:
            shapes.setdefault(tuple(row), []).append(tuple(row.values()))
        for cols, values in shapes.items():
            for col in cols:
                if col not in known:
                    sample = next((v[cols.index(col)] for v in values
                                   if v[cols.index(col)] is not None), "")
                    table.add_column(col, int if isinstance(sample, bool) else type(sample))
                    known.add(col)
            names = ", ".join(f'"{c}"' for c in cols)
            marks = ", ".join("?" * len(cols))
            db.conn.executemany(f"INSERT INTO events ({names}) VALUES ({marks})", values)
        chunk.clear()

    for row in rows:
        chunk.append(row)
        if len(chunk) >= batch:
            flush()
    flush()


def _finish(db: Any, columns: dict[str, dict[str, str]], head: dict[str, Any]) -> None:
    events = db.table("events")
    for cols in (["op_id"], ["object_kind", "object_id"], ["type"], ["actor_uid"],
                 ["time_ns"]):
        events.create_index(cols)
    for kind in KINDS:
        db.create_view(f"{kind}_events",
                       f"SELECT * FROM events WHERE object_kind = '{kind}'")
    db.create_view("failed_operations", "SELECT * FROM operations WHERE outcome = 'failed'")
    events.enable_fts(["actor_command", "message"])
    db.table("operations").enable_fts(["actor_command", "error"])
    db.table("columns").insert_all(
        ({"table_name": table, "column_name": name, "meaning": text}
         for table, cols in columns.items() for name, text in cols.items()),
        pk=("table_name", "column_name"))
    db.table("export_meta").insert_all(
        [{"key": "format", "value": "shipslog audit export 1"},
         {"key": "head_seq", "value": str(head["seq"])},
         {"key": "head_hash", "value": head["hash"]},
         {"key": "payload_columns", "value": "every other column of events is a field of "
          "the event's payload (prefixed event_ where it would hide an envelope column)"}],
        pk="key")


# ------------------------------------------------------------------ OCSF


def _write_ocsf(ctx: Context, args: argparse.Namespace) -> int:
    import json
    import socket

    from engine.drivers.host.users import name_of
    from projections.ocsf import records

    out = ctx.stdout if args.output == "-" else open(args.output + ".tmp", "w")  # noqa: SIM115
    count = 0
    try:
        for rec in records(envelopes(ctx, args), socket.gethostname(), name_of):
            out.write(json.dumps(rec, separators=(",", ":")) + "\n")
            count += 1
    finally:
        if out is not ctx.stdout:
            out.flush()
            os.fsync(out.fileno())
            out.close()
    if args.output != "-":
        os.replace(args.output + ".tmp", args.output)
        ctx.err(f"exported {count} OCSF records to {args.output}")
    return 0
