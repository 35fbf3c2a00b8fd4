"""The central PostgreSQL log of a fleet, as a replicator writes it and as fleet queries read it.

I/O: PostgreSQL over psycopg 3 (network or Unix socket). The schema is events/pg_schema.py;
every event of every host lives in `shipslog.events` keyed by `(host, seq)`.

Writing (a host's replicator, engine/shell/replication.py): register the host as a 'replica',
read its head and last hash, insert one batch per transaction, record an alert in a
transaction of its own. The database's chain trigger refuses any row that does not follow the
host's head or does not link to its last hash (SQLSTATE SL001/SL002): `Refused`. A lost
connection is `Unreachable` (the caller backs off and resumes from the center's head).

Reading (the CLI's `--store postgresql://…`): events of one host or of all hosts, in
`(recorded_at, host, seq)` order, as Envelopes with their host; one host's rows for `verify`.

TLS: the URL's libpq parameters (sslmode, sslrootcert, sslcert, sslkey, …) and the PG*
environment variables go to libpq unchanged; nothing here downgrades them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import msgspec

from events.codec import CodecError, canonical_bytes, decode_actor, decode_event
from events.envelope import Envelope
from events.hashing import GENESIS_HASH, VerifyResult, verify_chain
from events.pg_replica import REPLICA_SCHEMA
from events.pg_schema import SCHEMA
from events.pgurl import display_url

__all__ = [
    "CentralError", "CentralLog", "HostEnvelope", "Refused", "Row", "Unreachable", "Unreadable",
    "display_url", "ensure_schema",
]

COLUMNS = ("seq, stream, stream_version, schema_version, type, recorded_at, actor, op_id, "
           "command_id, payload, hash")
_PAGE = 5_000
_HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class Row(NamedTuple):
    """One event as stored, byte for byte (what its hash covers): the unit of replication."""

    seq: int
    stream: str
    stream_version: int
    schema_version: int
    type: str
    recorded_at: int
    actor: bytes
    op_id: str
    command_id: str | None
    payload: bytes
    hash: str

    def canonical(self) -> bytes:
        return canonical_bytes(
            seq=self.seq, stream=self.stream, stream_version=self.stream_version,
            schema_version=self.schema_version, recorded_at=self.recorded_at, actor=self.actor,
            op_id=self.op_id, command_id=self.command_id, type_name=self.type,
            payload=self.payload)


class HostEnvelope(NamedTuple):
    host: str
    envelope: Envelope


class Unreadable(NamedTuple):
    """A stored event this build cannot decode (a type or schema version from a newer host,
    or a damaged row): what a lenient reader is told instead of the envelope."""

    host: str
    seq: int
    type: str
    message: str
    hint: str


class CentralError(Exception):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class Unreachable(CentralError):
    """The center could not be reached or the connection broke: retry later."""


class Refused(CentralError):
    """The center refused a batch (SQLSTATE SL001: not the head's successor; SL002: does not
    link to the chain it holds; SL004: the host is registered as a store)."""

    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate




def valid_host_name(name: str) -> bool:
    return bool(_HOST_RE.match(name))


def ensure_schema(url: str) -> None:
    """Create the shared schema (idempotent); needs the owner's rights, not a replicator's."""
    with _connect(url) as conn:
        conn.execute(SCHEMA)
        conn.execute(REPLICA_SCHEMA)


def _connect(url: str, timeout: float = 5.0) -> Any:
    import psycopg

    try:
        return psycopg.connect(url, connect_timeout=max(1, int(timeout)))
    except psycopg.OperationalError as exc:
        raise Unreachable(f"cannot reach {display_url(url)}: {_first_line(exc)}",
                          "check that the server runs and the URL is right") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class CentralLog:
    """One connection to the center, for one replicator or one CLI command."""

    def __init__(self, url: str,
                 on_unreadable: Callable[[Unreadable], None] | None = None) -> None:
        """`on_unreadable`: the readers leave out an event they cannot decode and call it
        (a fleet mixes versions while it upgrades: a newer host's event must not stop an
        older reader's whole answer); without it they raise, as a local read does."""
        self.url = url
        self.conn: Any = None
        self.on_unreadable = on_unreadable

    def open(self) -> CentralLog:
        if self.conn is None:
            self.conn = _connect(self.url)
        return self

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a broken connection closes as best it can
                pass

    def __enter__(self) -> CentralLog:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, fn: Any) -> Any:
        """Run `fn(conn)` in one transaction; errors translated once, here."""
        import psycopg

        self.open()
        try:
            with self.conn.transaction():
                return fn(self.conn)
        except psycopg.OperationalError as exc:
            self.close()
            raise Unreachable(f"lost {display_url(self.url)}: {_first_line(exc)}",
                              "replication resumes when the center is back") from None
        except psycopg.Error as exc:
            state = exc.sqlstate or ""
            if state in ("SL001", "SL002", "SL004", "23505"):
                raise Refused(_first_line(exc), state) from None
            if self.conn is not None and self.conn.broken:
                self.close()
                raise Unreachable(f"lost {display_url(self.url)}: {_first_line(exc)}") from None
            raise CentralError(f"{display_url(self.url)}: {_first_line(exc)}",
                               "see the server's log") from None

    # -- the replicator's side -----------------------------------------------------------

    def register(self, host: str, now_ns: int) -> tuple[int, str]:
        """Register `host` as a replica (idempotent); its head and last hash at the center."""
        row = self._run(lambda c: c.execute(
            "SELECT head, last_hash FROM shipslog.register_host(%s, 'replica', %s)",
            (host, now_ns)).fetchone())
        return int(row[0]), str(row[1])

    def head(self, host: str) -> tuple[int, str]:
        row = self._run(lambda c: c.execute(
            "SELECT head, last_hash FROM shipslog.hosts WHERE host = %s", (host,)).fetchone())
        return (0, GENESIS_HASH) if row is None else (int(row[0]), str(row[1]))

    def insert(self, host: str, rows: Sequence[Row]) -> bool:
        """One batch in one transaction through `shipslog.ingest`: all of it is stored, or none
        of it (then the center has recorded an alert and this raises Refused). False: the
        center already held every row (a duplicate batch, a no-op)."""
        columns = [list(c) for c in zip(*rows, strict=True)]
        outcome = self._run(lambda c: c.execute(
            "SELECT shipslog.ingest(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (host, *columns)).fetchone()[0])
        if outcome is None:
            return True
        if outcome == "duplicate":
            return False
        state, _, message = str(outcome).partition(" ")
        raise Refused(message, state)

    def alert(self, host: str, at_ns: int, kind: str, detail: str) -> None:
        self._run(lambda c: c.execute(
            "INSERT INTO shipslog.alerts (host, at, kind, detail) VALUES (%s, %s, %s, %s)",
            (host, at_ns, kind, detail)))

    # -- the fleet's readers -------------------------------------------------------------

    def hosts(self) -> list[tuple[str, str, int]]:
        return [(str(h), str(m), int(n)) for h, m, n in self._run(lambda c: c.execute(
            "SELECT host, mode, head FROM shipslog.hosts ORDER BY host").fetchall())]

    def alerts(self, host: str | None = None) -> list[tuple[str, int, str, str]]:
        where, params = ("WHERE host = %s", (host,)) if host else ("", ())
        return list(self._run(lambda c: c.execute(
            f"SELECT host, at, kind, detail FROM shipslog.alerts {where} ORDER BY id",
            params).fetchall()))

    def streams(self, prefix: str, host: str | None = None,
                limit: int = 50) -> list[tuple[str, str]]:
        """(host, stream) of the streams that start with `prefix` (an id prefix): a range scan
        of the `events_stream` index, not of the log."""
        where, params = "stream >= %s AND stream < %s", [prefix, prefix + "~"]
        if host is not None:
            where += " AND host = %s"
            params.append(host)
        return [(str(h), str(st)) for h, st in self._run(lambda c: c.execute(
            f"SELECT DISTINCT host, stream FROM shipslog.events WHERE {where} "
            "ORDER BY host, stream LIMIT %s", (*params, limit)).fetchall())]

    def stream_events(self, host: str, streams: Sequence[str]) -> list[Envelope]:
        """One host's events of these streams, in seq order (the `events_stream` index)."""
        rows = self._run(lambda c: c.execute(
            f"SELECT {COLUMNS} FROM shipslog.events WHERE stream = ANY(%s) AND host = %s "
            "ORDER BY seq", (list(streams), host)).fetchall())
        envelopes = (self._envelope(host, _row(r)) for r in rows)
        return [e for e in envelopes if e is not None]

    def rows(self, host: str, after_seq: int = 0) -> Iterator[Row]:
        """One host's events in seq order, as stored (keyset pages: no long transaction)."""
        cursor = after_seq
        while True:
            page = self._run(lambda c, after=cursor: c.execute(
                f"SELECT {COLUMNS} FROM shipslog.events WHERE host = %s AND seq > %s "
                "ORDER BY seq LIMIT %s", (host, after, _PAGE)).fetchall())
            for r in page:
                yield _row(r)
            if len(page) < _PAGE:
                return
            cursor = page[-1][0]

    def verify(self, host: str) -> VerifyResult:
        """Re-walk `host`'s chain from the center's rows (events/hashing.verify_chain)."""
        return verify_chain((r.seq, r.hash, r.canonical()) for r in self.rows(host))

    def follow(self, *, host: str | None = None, after: dict[str, int] | None = None,
               wait_s: float = 1.0) -> Iterator[HostEnvelope]:
        """Every event appended after `after` (host -> last seq seen; a host not in it from
        its first event), then each new one as it commits, per host in seq order; never
        ends (the caller stops iterating). A notification on shipslog_events (the schema's
        insert trigger) wakes it; `wait_s` is the longest it sleeps without one, so a
        connection that dropped its notifications still follows. None lost or doubled: the
        rows come from the table, after the last seq seen of each host."""
        import psycopg

        last = dict(after or {})
        listener = _connect(self.url)
        woken: set[str] | None = None  # hosts a notification named; None: look at all
        try:
            listener.autocommit = True
            listener.execute("LISTEN shipslog_events")
            while True:
                if host is not None:
                    hosts = [host]
                elif woken is not None:
                    hosts = sorted(woken)
                else:
                    hosts = [h for h, _, _ in self.hosts()]
                for name in hosts:
                    while True:
                        rows = self._run(lambda c, n=name: c.execute(
                            f"SELECT {COLUMNS} FROM shipslog.events WHERE host = %s AND "
                            "seq > %s ORDER BY seq LIMIT %s",
                            (n, last.get(n, 0), _PAGE)).fetchall())
                        for r in rows:
                            last[name] = int(r[0])
                            env = self._envelope(name, _row(r))
                            if env is not None:
                                yield HostEnvelope(name, env)
                        if len(rows) < _PAGE:
                            break
                try:
                    # Wake on the first notification, then take those already queued: only
                    # the hosts they name are read; after a quiet `wait_s`, every host is.
                    woken = {n.payload.partition(" ")[0]
                             for n in listener.notifies(timeout=wait_s, stop_after=1)} or None
                    if woken is not None:
                        woken |= {n.payload.partition(" ")[0]
                                  for n in listener.notifies(timeout=0)}
                except psycopg.OperationalError as exc:
                    raise Unreachable(f"lost {display_url(self.url)}: {_first_line(exc)}",
                                      "follow again when the center is back") from None
        finally:
            listener.close()

    def events(self, *, host: str | None = None, stream: str | None = None,
               since_ns: int | None = None, until_ns: int | None = None,
               types: Sequence[str] | None = None,
               limit: int | None = None) -> Iterator[HostEnvelope]:
        """Events of one host or all, ordered by (recorded_at, host, seq). A `stream` query
        uses the `events_stream (stream, recorded_at)` index; a time window the
        `events_recorded_at` one."""
        clauses: list[str] = ["(recorded_at, host, seq) > (%s, %s, %s)"]
        params: list[Any] = []
        for clause, value in (("host = %s", host), ("stream = %s", stream),
                              ("recorded_at >= %s", since_ns), ("recorded_at <= %s", until_ns)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if types is not None:
            clauses.append("type = ANY(%s)")
            params.append(list(types))
        key: tuple[Any, ...] = (-1, "", 0)
        remaining = limit
        while remaining is None or remaining > 0:
            size = _PAGE if remaining is None else min(_PAGE, remaining)
            page = self._run(lambda c, k=key, n=size: c.execute(
                f"SELECT host, {COLUMNS} FROM shipslog.events WHERE {' AND '.join(clauses)} "
                "ORDER BY recorded_at, host, seq LIMIT %s", (*k, *params, n)).fetchall())
            for r in page:
                env = self._envelope(str(r[0]), _row(r[1:]))
                if env is not None:
                    yield HostEnvelope(str(r[0]), env)
            if len(page) < size:
                return
            if remaining is not None:
                remaining -= len(page)
            last = page[-1]
            key = (last[6], last[0], last[1])


    def _envelope(self, host: str, row: Row) -> Envelope | None:
        try:
            return envelope_of(row)
        except (CodecError, msgspec.MsgspecError) as exc:
            if self.on_unreadable is None:
                raise
            if isinstance(exc, CodecError):
                message, hint = str(exc), exc.hint
            else:  # the actor's bytes
                message, hint = f"cannot decode the actor: {exc}", "run `shipslog audit verify`"
            self.on_unreadable(Unreadable(host, row.seq, row.type, message, hint))
            return None


def _row(r: Sequence[Any]) -> Row:
    return Row(int(r[0]), str(r[1]), int(r[2]), int(r[3]), str(r[4]), int(r[5]), bytes(r[6]),
               str(r[7]), r[8], bytes(r[9]), str(r[10]))


def envelope_of(row: Row) -> Envelope:
    return Envelope(
        seq=row.seq, stream=row.stream, stream_version=row.stream_version,
        schema_version=row.schema_version, recorded_at=row.recorded_at,
        actor=decode_actor(row.actor), op_id=row.op_id, command_id=row.command_id,
        event=decode_event(row.type, row.schema_version, row.payload), hash=row.hash)
