"""The event log of one host in PostgreSQL (issue 19): `PostgresBackend`, the second
implementation of `events.backend.StoreBackend`, on psycopg 3.

I/O: PostgreSQL over the network (psycopg). The shared tables are events/pg_schema.py's:
every host's events in `shipslog.events` keyed by `(host, seq)`, where the database itself
checks seq = head + 1 and the hash link, and refuses UPDATE and DELETE. What is this host's
alone (inline projection tables, their applied seq, snapshots: derived data) lives in a schema
of its own, `host_<name>`, so hosts never see each other's projections.

How the store's guarantees map here:
- one writer per host: `begin()` takes a transaction-scoped advisory lock named after the host
  (with `lock_timeout` = the store's busy timeout), the twin of SQLite's `BEGIN IMMEDIATE`; a group
  commit is one transaction, its rows sent in one pipeline (`executemany`);
- durability: COMMIT returns once PostgreSQL has flushed its WAL (`synchronous_commit` is
  forced `on` for our sessions, whatever the server's default);
- follow: the daemon's followers are fed by its own writer (events/follow.py), exactly as on
  SQLite, since the daemon is the host's only appender (the database refuses a second chain).
  Each commit also notifies `shipslog_events` with '<host> <head>' (the schema's statement
  trigger, delivered at COMMIT, never for a rolled-back group), so another process can LISTEN
  and then `SELECT seq > last` (`events.central.CentralLog.follow`): the notification only says
  "look", the rows come from the table, so none is lost or doubled.
  LISTEN/NOTIFY over logical decoding: no replication slot to create, retain WAL for and clean
  up; the table is already the ordered, gap-free record a reader needs.
- compaction: `shipslog.compact_events` (SECURITY DEFINER, owned by the schema owner) moves
  the rows to tombstones with `shipslog.compacting` set for its transaction only; the store
  writes the archive file as for SQLite;
- readers (followers, API reads) take connections from a psycopg_pool `ConnectionPool` the
  writer's backend owns (checked on checkout, so a connection that died with a restarted server
  is replaced, not handed out); past `_READERS_MAX` held at once a reader gets its own;
- errors: a lost or refused connection is `StoreUnavailable`, naming the server's host:port;
  a lock wait past the timeout `StoreBusy`; a full disk `StoreFull`; anything else a
  `StoreError`. A broken connection is reopened at the next transaction or read.

TLS and the like are the driver's: every libpq parameter in the URL's query string
(`sslmode`, `sslrootcert`, `connect_timeout`, …) is passed through unchanged. The URL's
password is never shown (`display_url`).
"""

from __future__ import annotations

import platform
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from events.backend import EventFilter, Row, RowChangeLike
from events.hashing import GENESIS_HASH, WindowResult, check_window, verify_chain
from events.pg_schema import SCHEMA
from events.pgurl import display_url
from events.store_errors import StoreBusy, StoreError, StoreFull, StoreUnavailable

__all__ = ["PostgresBackend", "default_host_name", "display_url"]

_VERIFY_WINDOW = 8192
_CONNECT_TIMEOUT_S = 5  # unless the URL says otherwise: appends must fail fast when it is down
_READERS_MAX = 64  # pooled reader connections (followers hold one each while they follow)
_HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

_EVENT_COLUMNS = (
    "seq, stream, stream_version, schema_version, type, recorded_at, actor, op_id, command_id, "
    "payload, hash"
)
_FOLD_COLUMNS = (
    "seq, stream, stream_version, schema_version, type, recorded_at, actor, op_id, payload"
)
_FOLD_COLUMNS_WHO = (
    "seq, stream, stream_version, schema_version, type, recorded_at, "
    "CASE WHEN type = ANY(%s) THEN actor END, CASE WHEN type = ANY(%s) THEN op_id END, payload"
)
_HOST_TABLES = """
CREATE TABLE IF NOT EXISTS {schema}.projection_meta (
    name text PRIMARY KEY, applied_seq bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.projection_snapshots (
    name text NOT NULL,
    seq bigint NOT NULL,
    version text NOT NULL,
    event_hash text NOT NULL,
    digest text NOT NULL,
    state bytea NOT NULL,
    PRIMARY KEY (name, seq)
);
"""


def default_host_name() -> str:
    """This machine's name, as a host of the shared log (`--host-name` overrides it)."""
    return platform.node().split(".")[0] or "localhost"




def _server(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"


class PostgresBackend:
    """One connection to one host's log in a shared PostgreSQL database."""

    path: str | None = None  # no file: sequential verify, archives where the daemon says

    def __init__(self, url: str, host: str, *, readonly: bool, timeout: float) -> None:
        self.url = url
        self.host = host
        self.readonly = readonly
        self.timeout = timeout
        self.location = url
        self.schema = "host_" + re.sub(r"[^a-z0-9_]", "_", host.lower())
        self._ident = sql.Identifier(self.schema)
        self.conn: psycopg.Connection[Any] | None = None
        # Readers' connections (follow, API reads) come from a pool the writer's backend owns.
        self._pool: ConnectionPool[Any] | None = None
        self._pool_lock = threading.Lock()
        self._borrowed_from: ConnectionPool[Any] | None = None

    # --- connection and schema ---------------------------------------------------------

    @classmethod
    def connect(
        cls, url: str, *, host_name: str | None = None, readonly: bool = False,
        timeout: float = 10.0,
    ) -> PostgresBackend:
        host = host_name or default_host_name()
        if not _HOST_RE.match(host):
            raise StoreError(
                f"invalid host name {host!r} for the event store",
                "use --host-name with letters, digits, '.', '_' or '-' (at most 63)")
        backend = cls(url, host, readonly=readonly, timeout=timeout)
        backend._open()
        return backend

    def _conninfo(self) -> str:
        try:
            params = conninfo_to_dict(self.url)
        except psycopg.Error as exc:
            raise StoreError(f"invalid PostgreSQL URL {display_url(self.url)}: {exc}",
                             "use postgresql://user@host:port/database?sslmode=…") from exc
        params.setdefault("connect_timeout", _CONNECT_TIMEOUT_S)
        params.setdefault("application_name", f"shipslogd {self.host}")
        return make_conninfo("", **params)

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        # Durable commits even if the server's default is `off`; a finite lock wait (F-13).
        conn.execute("SET synchronous_commit = on")
        conn.execute(sql.SQL("SET lock_timeout = {}").format(
            sql.Literal(f"{int(self.timeout * 1000)}ms")))
        if self.readonly:
            conn.execute("SET default_transaction_read_only = on")

    def _open(self) -> None:
        if self._borrowed_from is not None:
            try:
                self.conn = self._borrowed_from.getconn(timeout=_CONNECT_TIMEOUT_S)
            except PoolTimeout as exc:
                raise self._unavailable(exc) from exc
            return
        try:
            conn = psycopg.connect(self._conninfo(), autocommit=True)
        except psycopg.Error as exc:
            raise self._unavailable(exc) from exc
        self._configure(conn)
        self.conn = conn

    def _conn(self) -> psycopg.Connection[Any]:
        """The connection, reopened if the server went away since the last statement."""
        conn = self.conn
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                self._release(conn)
            self.conn = None
            self._open()
            conn = self.conn
        assert conn is not None
        return conn

    def _release(self, conn: psycopg.Connection[Any]) -> None:
        if self._borrowed_from is not None:
            self._borrowed_from.putconn(conn)  # a broken one is discarded by the pool
        else:
            conn.close()

    def _in_transaction(self) -> bool:
        conn = self.conn
        # A broken connection holds no transaction: the server rolled it back.
        return conn is not None and not conn.closed and not conn.broken and \
            conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def _one(self, query: Any, params: Sequence[Any] | None = None) -> Any:
        """The first row of a statement that always returns one (an aggregate)."""
        row = self._run(query, params).fetchone()
        assert row is not None
        return row

    def _run(self, query: Any, params: Sequence[Any] | None = None) -> psycopg.Cursor[Any]:
        """Execute one statement; outside a transaction a dropped connection is reopened and
        the statement tried once more. Errors leave as store errors."""
        for attempt in (0, 1):
            inside = self._in_transaction()
            try:
                return self._conn().execute(query, params)
            except psycopg.OperationalError as exc:
                if attempt == 0 and not inside and self.conn is not None and self.conn.broken:
                    continue
                raise self.translate(exc) from exc
            except psycopg.Error as exc:
                raise self.translate(exc) from exc
        raise AssertionError("unreachable")

    def create_schema(self) -> None:
        """The shared schema when this role owns it (or it is missing), then the host's
        registration and its own schema; all under one advisory lock, so daemons starting
        together do not race on CREATE … IF NOT EXISTS."""
        self.begin(lock_host=False)
        try:
            self._run("SELECT pg_advisory_xact_lock(hashtext('shipslog.schema'))")
            owner = self._run(
                "SELECT pg_has_role(nspowner, 'USAGE') FROM pg_namespace "
                "WHERE nspname = 'shipslog'").fetchone()
            if owner is None or owner[0]:
                self._run(SCHEMA)
            self._run(
                "SELECT shipslog.register_host(%s, 'store', "
                "(extract(epoch FROM clock_timestamp()) * 1e9)::bigint)", (self.host,))
            exists = self._run("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                               (self.schema,)).fetchone()
            if exists is None:
                self._run(sql.SQL("CREATE SCHEMA {}").format(self._ident))
            self._run(sql.SQL(_HOST_TABLES.replace("{schema}", "{s}")).format(s=self._ident))
            self.commit()
        except BaseException as exc:
            self.rollback()
            if isinstance(exc, StoreError) and "permission denied" in exc.message:
                raise StoreError(
                    exc.message,
                    "have the database owner run events.pg_schema.SCHEMA and "
                    "grant_store_role(ROLE, DATABASE) for this role") from exc
            raise

    def describe(self) -> str:
        return f"{display_url(self.url)} (host {self.host})"

    def schema_version(self) -> int:
        if self._one("SELECT to_regclass('shipslog.meta')")[0] is None:
            raise StoreError(f"no shipslog event log in {display_url(self.url)}",
                             "start a daemon on it once (it creates the schema)")
        row = self._run("SELECT value FROM shipslog.meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def reader(self) -> PostgresBackend:
        """A read-only backend on a connection from this log's reader pool: an API read
        costs a checked-out connection (~0.2 ms here), not a new one (~13 ms)."""
        with self._pool_lock:
            if self._pool is None:
                readers = PostgresBackend(self.url, self.host, readonly=True,
                                          timeout=self.timeout)
                self._pool = ConnectionPool(
                    self._conninfo(), kwargs={"autocommit": True}, min_size=0,
                    max_size=_READERS_MAX, configure=readers._configure,
                    check=ConnectionPool.check_connection, max_idle=60.0,
                    name=f"shipslog-readers-{self.host}", open=True)
        backend = PostgresBackend(self.url, self.host, readonly=True, timeout=self.timeout)
        stats = self._pool.get_stats()
        if stats.get("pool_size", 0) < _READERS_MAX or stats.get("pool_available", 0):
            backend._borrowed_from = self._pool
        # else every pooled connection is held (long followers): one of its own, not a wait
        backend._open()
        return backend

    def close(self) -> None:
        if self.conn is not None:
            self._release(self.conn)
            self.conn = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    # --- errors --------------------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = lines[0][:200] if lines else type(exc).__name__
        hint = ("start PostgreSQL or restore the network to it; nothing of this operation was "
                "recorded or done, reads keep working")
        # The hint is in the message too: the API's error body carries the message only.
        error = StoreUnavailable(
            f"the event store is unavailable: PostgreSQL at {_server(self.url)} cannot be "
            f"reached ({reason}) (hint: {hint})", hint)
        error.__cause__ = exc
        return error

    def translate(self, exc: BaseException) -> Exception:
        if isinstance(exc, StoreError):
            return exc
        error: StoreError
        if isinstance(exc, pg_errors.LockNotAvailable):
            error = StoreBusy(
                f"could not write the event log of host {self.host} within {self.timeout:g}s: "
                "another connection holds it",
                "another daemon may be running with the same --host-name: stop it, or give "
                "this one its own")
        elif isinstance(exc, pg_errors.DiskFull):
            error = StoreFull(
                "no space left on the PostgreSQL server: the event log could not record the "
                "operation", "free space on the database server; nothing of it was recorded")
        elif isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)) and not \
                isinstance(exc, pg_errors.QueryCanceled):
            return self._unavailable(exc)
        elif isinstance(exc, psycopg.Error):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            error = StoreError(f"event log write failed: {first}",
                               "check the database's permissions and the server's log")
        else:
            assert isinstance(exc, Exception)
            return exc
        error.__cause__ = exc
        return error

    # --- transactions --------------------------------------------------------------------

    def begin(self, *, lock_host: bool = True) -> None:
        if self._in_transaction():
            raise StoreError("a transaction is already open on this connection",
                             "this is a bug in the store")
        self._run("BEGIN")
        if lock_host:
            try:
                # An advisory lock, not FOR UPDATE: that needs an UPDATE right this role
                # must not have. lock_timeout bounds the wait like a busy timeout.
                self._run("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                          (f"shipslog.host {self.host}",))
            except BaseException:
                self.rollback()
                raise

    def commit(self) -> None:
        self._run("COMMIT")

    def rollback(self) -> None:
        conn = self.conn
        if conn is None or conn.closed or conn.broken:
            return  # the server rolled back what the lost connection had begun
        if self._in_transaction():
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                pass  # the connection died under us: the server rolls back too

    def checkpoint(self) -> tuple[int, int] | None:
        return None  # PostgreSQL checkpoints by itself

    # --- events --------------------------------------------------------------------------

    def head(self) -> tuple[int, str]:
        row = self._run("SELECT head, last_hash FROM shipslog.hosts WHERE host = %s",
                        (self.host,)).fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)

    def hash_at(self, seq: int) -> str:
        if seq == 0:
            return GENESIS_HASH
        row = self._run("SELECT hash FROM shipslog.events WHERE host = %s AND seq = %s",
                        (self.host, seq)).fetchone()
        return str(row[0]) if row else GENESIS_HASH

    def stream_version(self, stream: str) -> int:
        row = self._one(
            "SELECT max(stream_version) FROM shipslog.events WHERE host = %s AND stream = %s",
            (self.host, stream))
        return int(row[0] or 0)

    def stream_versions(self, streams: Sequence[str]) -> dict[str, int]:
        found = dict.fromkeys(streams, 0)
        found.update(self._run(
            "SELECT stream, max(stream_version) FROM shipslog.events "
            "WHERE host = %s AND stream = ANY(%s) GROUP BY stream",
            (self.host, list(streams))).fetchall())
        return found

    def find_command(self, command_id: str) -> tuple[int, int] | None:
        row = self._run(
            "SELECT first_seq, last_seq FROM shipslog.commands WHERE host = %s "
            "AND command_id = %s", (self.host, command_id)).fetchone()
        return (int(row[0]), int(row[1])) if row else None

    def insert_events(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        host = self.host
        try:
            with self._conn().cursor() as cur:
                # The schema's statement trigger notifies shipslog_events at COMMIT.
                cur.executemany(
                    f"INSERT INTO shipslog.events (host, {_EVENT_COLUMNS}) "
                    "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    [(host, *row) for row in rows])
        except psycopg.Error as exc:
            raise self.translate(exc) from exc

    def insert_commands(self, commands: Sequence[tuple[str, int, int]]) -> None:
        if not commands:
            return
        try:
            with self._conn().cursor() as cur:
                cur.executemany(
                    "INSERT INTO shipslog.commands (host, command_id, first_seq, last_seq) "
                    "VALUES (%s, %s, %s, %s)", [(self.host, *c) for c in commands])
        except psycopg.Error as exc:
            raise self.translate(exc) from exc

    def select_events(self, after_seq: int, where: EventFilter, limit: int) -> list[Row]:
        clauses = ["host = %s", "seq > %s"]
        params: list[Any] = [self.host, after_seq]
        for column, values in (("stream", where.streams), ("type", where.types)):
            if values is not None:
                clauses.append(f"{column} = ANY(%s)")
                params.append(list(values))
        for clause, value in (
            ("recorded_at >= %s", where.since_ns),
            ("recorded_at <= %s", where.until_ns),
            ("op_id = %s", where.op_id),
            ("seq <= %s", where.until_seq),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        query = (f"SELECT {_EVENT_COLUMNS} FROM shipslog.events WHERE {' AND '.join(clauses)} "
                 "ORDER BY seq LIMIT %s")
        return self._run(query, (*params, limit)).fetchall()

    def events_between(self, after_seq: int, until_seq: int) -> list[Row]:
        return self._run(
            f"SELECT {_EVENT_COLUMNS} FROM shipslog.events WHERE host = %s AND seq > %s "
            "AND seq <= %s ORDER BY seq", (self.host, after_seq, until_seq)).fetchall()

    def fold_rows(
        self, after_seq: int, until_seq: int, who_types: Sequence[str] | None = None
    ) -> list[Row]:
        if who_types is None:
            return self._run(
                f"SELECT {_FOLD_COLUMNS} FROM shipslog.events WHERE host = %s AND seq > %s "
                "AND seq <= %s ORDER BY seq", (self.host, after_seq, until_seq)).fetchall()
        types = list(who_types)
        return self._run(
            f"SELECT {_FOLD_COLUMNS_WHO} FROM shipslog.events WHERE host = %s AND seq > %s "
            "AND seq <= %s ORDER BY seq", (types, types, self.host, after_seq, until_seq)
        ).fetchall()

    def last_seq_before(self, until_ns: int) -> int:
        row = self._one("SELECT max(seq) FROM shipslog.events WHERE host = %s "
                        "AND recorded_at <= %s", (self.host, until_ns))
        return int(row[0] or 0)

    def canonical_rows(
        self, until_seq: int, after_seq: int = 0
    ) -> Iterable[tuple[int, str, bytes]]:
        # shipslog.canonical is the schema's SQL twin of events/codec.canonical_bytes.
        return self._run(
            "SELECT seq, hash, shipslog.canonical(e) FROM shipslog.events e "
            "WHERE host = %s AND seq > %s AND seq <= %s ORDER BY seq",
            (self.host, after_seq, until_seq)).fetchall()

    # --- verify and compaction -----------------------------------------------------------

    def has_tombstones(self) -> bool:
        return True

    def count_tombstones(self, after_seq: int, until_seq: int) -> int:
        row = self._one("SELECT count(*) FROM shipslog.tombstones WHERE host = %s "
                        "AND seq > %s AND seq <= %s", (self.host, after_seq, until_seq))
        return int(row[0])

    def stored_hash(self, seq: int) -> str | None:
        if seq == 0:
            return GENESIS_HASH
        row = self._run(
            "SELECT hash FROM shipslog.events WHERE host = %s AND seq = %s UNION ALL "
            "SELECT hash FROM shipslog.tombstones WHERE host = %s AND seq = %s LIMIT 1",
            (self.host, seq, self.host, seq)).fetchone()
        return None if row is None else str(row[0])

    def check_span(self, lo: int, hi: int) -> WindowResult:
        """As SQLite's: window by window, each read in one REPEATABLE READ transaction so a
        compaction in between cannot make an event look missing."""
        live_total = archived_total = 0
        start = lo
        nested = self._in_transaction()
        while start < hi:
            end = min(hi, start + _VERIFY_WINDOW)
            if not nested:
                self._run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                prev = self.stored_hash(start) or ""
                dead = self._run(
                    "SELECT seq, convert_to(hash, 'UTF8') FROM shipslog.tombstones "
                    "WHERE host = %s AND seq > %s AND seq <= %s ORDER BY seq",
                    (self.host, start, end)).fetchall()
                if dead:
                    live = self._run(
                        "SELECT seq, convert_to(hash, 'UTF8'), shipslog.canonical(e) "
                        "FROM shipslog.events e WHERE host = %s AND seq > %s AND seq <= %s "
                        "ORDER BY seq", (self.host, start, end)).fetchall()
                    result = check_window(live, dead, start, end, prev.encode("ascii"))
                else:
                    chain = verify_chain(self.canonical_rows(end, start), first_seq=start + 1,
                                         prev_hash=prev)
                    if not chain.ok:
                        result = WindowResult(chain.first_bad_seq, chain.reason,
                                              chain.checked, 0)
                    elif chain.checked != end - start:
                        missing = start + chain.checked + 1
                        result = WindowResult(missing, f"event {missing} is missing",
                                              chain.checked, 0)
                    else:
                        result = WindowResult(None, "", chain.checked, 0)
            finally:
                if not nested:
                    self.rollback()
            live_total += result.live
            archived_total += result.archived
            if result.bad_seq is not None:
                return WindowResult(result.bad_seq, result.reason, live_total, archived_total)
            start = end
        return WindowResult(None, "", live_total, archived_total)

    def compactions(self, until_seq: int) -> list[tuple[int, bytes, int]]:
        return self._run(
            "SELECT seq, payload, schema_version FROM shipslog.events WHERE host = %s "
            "AND type = 'ChainCompacted' AND seq <= %s ORDER BY seq",
            (self.host, until_seq)).fetchall()

    def tombstones_of(self, compaction: int) -> list[tuple[int, str]]:
        return self._run(
            "SELECT seq, hash FROM shipslog.tombstones WHERE host = %s AND compaction = %s "
            "ORDER BY seq", (self.host, compaction)).fetchall()

    def orphan_tombstone(self, until_seq: int) -> int | None:
        row = self._run(
            "SELECT min(t.seq) FROM shipslog.tombstones t WHERE t.host = %s AND t.seq <= %s "
            "AND NOT EXISTS (SELECT 1 FROM shipslog.events e WHERE e.host = t.host "
            "AND e.seq = t.compaction AND e.type = 'ChainCompacted')",
            (self.host, until_seq)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def stored_hashes(self, seqs: Sequence[int]) -> dict[int, str]:
        wanted = list(seqs)
        found: dict[int, str] = dict(self._run(
            "SELECT seq, hash FROM shipslog.events WHERE host = %s AND seq = ANY(%s) UNION ALL "
            "SELECT seq, hash FROM shipslog.tombstones WHERE host = %s AND seq = ANY(%s)",
            (self.host, wanted, self.host, wanted)).fetchall())
        if 0 in seqs:
            found[0] = GENESIS_HASH
        return found

    def streams_with_types(self, types: Sequence[str], before_ns: int) -> list[str]:
        return [row[0] for row in self._run(
            "SELECT DISTINCT stream FROM shipslog.events WHERE host = %s AND type = ANY(%s) "
            "AND recorded_at < %s", (self.host, list(types), before_ns)).fetchall()]

    def rows_of_streams(self, streams: Sequence[str]) -> list[Row]:
        return self._run(
            f"SELECT {_EVENT_COLUMNS} FROM shipslog.events WHERE host = %s "
            "AND stream = ANY(%s) ORDER BY seq", (self.host, list(streams))).fetchall()

    def move_to_tombstones(self, seqs: Sequence[tuple[int, str]], compaction: int) -> None:
        """Through the owner's `shipslog.compact_events`: this role has no DELETE right."""
        assert self._in_transaction()
        self._run("SELECT shipslog.compact_events(%s, %s::bigint[], %s)",
                  (self.host, [seq for seq, _ in seqs], compaction))

    # --- projections ---------------------------------------------------------------------

    def _table(self, name: str) -> sql.Composed:
        _check_table(name)
        return sql.SQL("{}.{}").format(self._ident, sql.Identifier(name))

    def applied_seq(self, name: str) -> int | None:
        row = self._run(sql.SQL("SELECT applied_seq FROM {} WHERE name = %s").format(
            self._table("projection_meta")), (name,)).fetchone()
        return None if row is None else int(row[0])

    def set_applied_seq(self, name: str, seq: int) -> None:
        self._run(sql.SQL(
            "INSERT INTO {} (name, applied_seq) VALUES (%s, %s) ON CONFLICT (name) "
            "DO UPDATE SET applied_seq = excluded.applied_seq").format(
                self._table("projection_meta")), (name, seq))

    def create_table(self, name: str) -> None:
        self._run(sql.SQL("CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, doc bytea)")
                  .format(self._table(name)))

    def drop_table(self, name: str) -> None:
        self._run(sql.SQL("DROP TABLE IF EXISTS {}").format(self._table(name)))

    def rename_table(self, old: str, new: str) -> None:
        _check_table(new)
        self._run(sql.SQL("ALTER TABLE {} RENAME TO {}").format(
            self._table(old), sql.Identifier(new)))

    def apply_changes(self, prefix: str, changes: Sequence[RowChangeLike]) -> None:
        if not changes:
            return
        upsert = "INSERT INTO {} (key, doc) VALUES (%s, %s) ON CONFLICT (key) " \
                 "DO UPDATE SET doc = excluded.doc"
        # Later changes win, so one statement per table only when no key is both upserted
        # and deleted in the group; else in order.
        final: dict[tuple[str, str], bytes | None] = {}
        for change in changes:
            final[(change.table, change.key)] = change.doc
        upserts: dict[str, list[tuple[str, bytes]]] = {}
        deletes: dict[str, list[tuple[str]]] = {}
        for (table, key), doc in final.items():
            if doc is None:
                deletes.setdefault(table, []).append((key,))
            else:
                upserts.setdefault(table, []).append((key, doc))
        try:
            with self._conn().cursor() as cur:
                for table, rows in upserts.items():
                    cur.executemany(sql.SQL(upsert).format(self._table(prefix + table)), rows)
                for table, keys in deletes.items():
                    cur.executemany(sql.SQL("DELETE FROM {} WHERE key = %s").format(
                        self._table(prefix + table)), keys)
        except psycopg.Error as exc:
            raise self.translate(exc) from exc

    def read_rows(self, table: str) -> list[tuple[str, bytes]] | None:
        name = self._table(table)
        exists = self._run("SELECT to_regclass(%s)", (f"{self.schema}.{table}",)).fetchone()
        if exists is None or exists[0] is None:
            return None
        return self._run(sql.SQL("SELECT key, doc FROM {} ORDER BY key COLLATE \"C\"")
                         .format(name)).fetchall()

    # --- snapshots -----------------------------------------------------------------------

    def snapshots(self, name: str, at_most: int) -> Iterator[tuple[int, str, str, str, bytes]]:
        yield from self._run(sql.SQL(
            "SELECT seq, version, event_hash, digest, state FROM {} WHERE name = %s "
            "AND seq <= %s ORDER BY seq DESC").format(self._table("projection_snapshots")),
            (name, at_most)).fetchall()

    def snapshot_seqs(self, name: str) -> list[int]:
        return [row[0] for row in self._run(sql.SQL(
            "SELECT seq FROM {} WHERE name = %s ORDER BY seq").format(
                self._table("projection_snapshots")), (name,)).fetchall()]

    def put_snapshot(
        self, name: str, seq: int, version: str, event_hash: str, digest: str, state: bytes
    ) -> None:
        self._run(sql.SQL(
            "INSERT INTO {} (name, seq, version, event_hash, digest, state) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name, seq) DO UPDATE SET "
            "version = excluded.version, event_hash = excluded.event_hash, "
            "digest = excluded.digest, state = excluded.state").format(
                self._table("projection_snapshots")),
            (name, seq, version, event_hash, digest, state))

    def drop_snapshots(self, name: str, *, after: int = -1) -> None:
        self._run(sql.SQL("DELETE FROM {} WHERE name = %s AND seq > %s").format(
            self._table("projection_snapshots")), (name, after))


def _check_table(name: str) -> None:
    # Table names come from projection code, not users; quoted as identifiers anyway.
    if not name.replace("_", "").isalnum() or not name.isascii():
        raise StoreError(f"invalid projection table name {name!r}", "use [a-z0-9_] only")
