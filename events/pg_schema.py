"""The PostgreSQL schema shared by every host whose events live in one database (issue 19).

I/O: none (DDL as data). Two kinds of writer use these tables:
- a daemon run with `--store postgresql://…` appends its own events (events/pg_backend.py);
- a daemon on SQLite run with `--replicate-to postgresql://…` ships its log here, in order.

Either way an event is keyed by `(host, seq)`: each host keeps its own gap-free sequence and
its own hash chain, so `audit verify --host NAME` checks one host's chain exactly as SQLite's
`verify` does, and a fleet query reads one table with a `host` column.

What the database itself enforces, whoever connects:
- `seq` is the host's head + 1 and `hash = sha256(prev_hash ‖ canonical bytes)` links to the
  host's last hash (`events_chain`, a row trigger that recomputes the link from the row's own
  columns, byte for byte what events/codec.canonical_bytes builds): a host cannot skip, repeat
  or rewrite a seq, nor insert an event whose hash does not follow from the chain it holds;
- UPDATE and DELETE of events, commands and tombstones are refused by triggers; the one
  sanctioned DELETE (compaction moving events to tombstones) runs inside a SECURITY DEFINER
  function of the owner with `shipslog.compacting` set for its transaction only;
- the roles a daemon or a replicator use are granted INSERT and SELECT, never UPDATE or DELETE
  (`grant_roles`).

`hosts.head`/`hosts.last_hash` are maintained by the chain trigger only (SECURITY DEFINER), so
a writer needs no UPDATE right on them; a writer registers its host with
`shipslog.register_host(name, 'store'|'replica', now_ns)`.
"""

from __future__ import annotations

__all__ = ["SCHEMA", "SCHEMA_VERSION", "grant_roles", "grant_store_role"]

SCHEMA_VERSION = 1

SCHEMA = r"""
CREATE SCHEMA IF NOT EXISTS shipslog;

CREATE TABLE IF NOT EXISTS shipslog.meta (key text PRIMARY KEY, value text NOT NULL);

-- One row per host: its name, how its events arrive, and the chain head the database holds.
CREATE TABLE IF NOT EXISTS shipslog.hosts (
    host text PRIMARY KEY CHECK (host ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
    mode text NOT NULL CHECK (mode IN ('store', 'replica')),
    head bigint NOT NULL DEFAULT 0,
    last_hash text NOT NULL DEFAULT repeat('0', 64),
    registered_at bigint NOT NULL
);
-- The role that registered the host: only it (or the schema's owner, or a superuser) may
-- write that host's chain (`shipslog.may_write`); a role holding another host's
-- INSERT right cannot append to this one, even with a correctly linked hash.
ALTER TABLE shipslog.hosts ADD COLUMN IF NOT EXISTS owner text;

CREATE TABLE IF NOT EXISTS shipslog.events (
    host text NOT NULL REFERENCES shipslog.hosts (host),
    seq bigint NOT NULL CHECK (seq > 0),
    stream text NOT NULL,
    stream_version bigint NOT NULL,
    schema_version integer NOT NULL,
    type text NOT NULL,
    recorded_at bigint NOT NULL,
    actor bytea NOT NULL,
    op_id text NOT NULL,
    command_id text,
    payload bytea NOT NULL,
    hash text NOT NULL,
    PRIMARY KEY (host, seq),
    UNIQUE (host, stream, stream_version)
);
CREATE UNIQUE INDEX IF NOT EXISTS events_command_id ON shipslog.events (host, command_id)
    WHERE command_id IS NOT NULL;
-- fleet queries: one stream (a container's history) across hosts, time windows, types
CREATE INDEX IF NOT EXISTS events_stream ON shipslog.events (stream, recorded_at);
CREATE INDEX IF NOT EXISTS events_recorded_at ON shipslog.events (recorded_at);
CREATE INDEX IF NOT EXISTS events_type ON shipslog.events (host, type);
CREATE INDEX IF NOT EXISTS events_op_id ON shipslog.events (host, op_id);

-- The extent of each batch appended with a command_id, so a retry returns all of it.
CREATE TABLE IF NOT EXISTS shipslog.commands (
    host text NOT NULL REFERENCES shipslog.hosts (host),
    command_id text NOT NULL,
    first_seq bigint NOT NULL,
    last_seq bigint NOT NULL,
    PRIMARY KEY (host, command_id)
);

-- Events compaction moved to an archive: their hash keeps the chain checkable across the gap.
CREATE TABLE IF NOT EXISTS shipslog.tombstones (
    host text NOT NULL REFERENCES shipslog.hosts (host),
    seq bigint NOT NULL,
    hash text NOT NULL,
    compaction bigint NOT NULL,
    PRIMARY KEY (host, seq)
);

-- What the center refused and why (a forked or forged batch, a gap): kept, never updated.
CREATE TABLE IF NOT EXISTS shipslog.alerts (
    id bigserial PRIMARY KEY,
    host text NOT NULL,
    at bigint NOT NULL,
    kind text NOT NULL,
    detail text NOT NULL
);

-- The bytes an event's hash covers (events/codec.canonical_bytes, byte for byte).
CREATE OR REPLACE FUNCTION shipslog.canonical(e shipslog.events) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT convert_to(
               e.seq::text || E'\x1f' || e.stream || E'\x1f' || e.stream_version::text
               || E'\x1f' || e.schema_version::text || E'\x1f' || e.recorded_at::text
               || E'\x1f', 'UTF8')
           || e.actor
           || convert_to(
               E'\x1f' || e.op_id || E'\x1f' || coalesce(e.command_id, E'\x1e') || E'\x1f'
               || e.type || E'\x1f', 'UTF8')
           || e.payload
$$;

CREATE OR REPLACE FUNCTION shipslog.events_chain() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, shipslog AS $$
DECLARE
    h shipslog.hosts%ROWTYPE;
    expected text;
BEGIN
    SELECT * INTO h FROM shipslog.hosts WHERE host = NEW.host FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'host % is not registered', NEW.host
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF NEW.seq <> h.head + 1 THEN
        RAISE EXCEPTION 'event % of host % does not follow its head %', NEW.seq, NEW.host, h.head
            USING ERRCODE = 'SL001';
    END IF;
    expected := encode(sha256(convert_to(h.last_hash, 'UTF8') || shipslog.canonical(NEW)), 'hex');
    IF NEW.hash <> expected THEN
        RAISE EXCEPTION 'event % of host % does not link to the chain the database holds',
            NEW.seq, NEW.host USING ERRCODE = 'SL002';
    END IF;
    UPDATE shipslog.hosts SET head = NEW.seq, last_hash = NEW.hash WHERE host = NEW.host;
    RETURN NEW;
END
$$;

-- Whether the session's role may write `name`'s chain: the role that registered it, the
-- schema's owner (and its members) or a superuser. SECURITY DEFINER: session_user is still
-- the role that logged in.
CREATE OR REPLACE FUNCTION shipslog.may_write(name text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, shipslog AS $$
    SELECT coalesce((SELECT h.owner IS NULL OR h.owner = session_user::text
                     FROM shipslog.hosts h WHERE h.host = name), true)
        OR coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = session_user), false)
        OR pg_has_role(session_user, (SELECT nspowner FROM pg_namespace
                                      WHERE nspname = 'shipslog'), 'MEMBER')
$$;

CREATE OR REPLACE FUNCTION shipslog.owner_only() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, shipslog AS $$
BEGIN
    IF NOT shipslog.may_write(NEW.host) THEN
        RAISE EXCEPTION 'host % belongs to another role: % may not write its log', NEW.host,
            session_user USING ERRCODE = 'SL006',
            HINT = 'each host writes with the role that registered it';
    END IF;
    RETURN NEW;
END
$$;

-- A writer registers its host through this (it has no INSERT right on hosts); idempotent, and a
-- host keeps the mode it was registered with (a host is either a store or a replica) and the
-- role that registered it first (a host registered before owners existed is claimed by the
-- next role to register it).
CREATE OR REPLACE FUNCTION shipslog.register_host(name text, how text, now_ns bigint)
RETURNS shipslog.hosts
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, shipslog AS $$
DECLARE
    h shipslog.hosts%ROWTYPE;
BEGIN
    INSERT INTO shipslog.hosts (host, mode, registered_at, owner)
        VALUES (name, how, now_ns, session_user) ON CONFLICT (host) DO NOTHING;
    IF NOT shipslog.may_write(name) THEN
        RAISE EXCEPTION 'host % is registered by another role: % may not write its log',
            name, session_user USING ERRCODE = 'SL006',
            HINT = 'give each host a name of its own, or connect with the role that registered it';
    END IF;
    UPDATE shipslog.hosts SET owner = session_user WHERE host = name AND owner IS NULL;
    SELECT * INTO h FROM shipslog.hosts WHERE host = name;
    IF h.mode <> how THEN
        RAISE EXCEPTION 'host % is registered as a %, not a %', name, h.mode, how
            USING ERRCODE = 'SL004';
    END IF;
    RETURN h;
END
$$;

-- Followers (`CentralLog.follow`, `shipslog --store … events -f`) LISTEN on shipslog_events:
-- one notification per host per inserting statement, '<host> <newest seq>', delivered at
-- COMMIT only (never for a rolled-back batch). It only says "look": the rows are read from the
-- table after the last seq a follower saw, so none is lost or doubled. Every writer's inserts
-- notify alike, a daemon's store and a replicator's batches.
CREATE OR REPLACE FUNCTION shipslog.notify_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT host, max(seq) AS head FROM added GROUP BY host LOOP
        PERFORM pg_notify('shipslog_events', r.host || ' ' || r.head);
    END LOOP;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION shipslog.refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'events'
       AND current_setting('shipslog.compacting', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% are append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'SL003';
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'events_chain') THEN
        CREATE TRIGGER events_chain BEFORE INSERT ON shipslog.events
            FOR EACH ROW EXECUTE FUNCTION shipslog.events_chain();
        CREATE TRIGGER events_no_change BEFORE UPDATE OR DELETE ON shipslog.events
            FOR EACH ROW EXECUTE FUNCTION shipslog.refuse_change();
        CREATE TRIGGER commands_no_change BEFORE UPDATE OR DELETE ON shipslog.commands
            FOR EACH ROW EXECUTE FUNCTION shipslog.refuse_change();
        CREATE TRIGGER tombstones_no_change BEFORE UPDATE OR DELETE ON shipslog.tombstones
            FOR EACH ROW EXECUTE FUNCTION shipslog.refuse_change();
        CREATE TRIGGER alerts_no_change BEFORE UPDATE OR DELETE ON shipslog.alerts
            FOR EACH ROW EXECUTE FUNCTION shipslog.refuse_change();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'events_notify') THEN
        CREATE TRIGGER events_notify AFTER INSERT ON shipslog.events
            REFERENCING NEW TABLE AS added FOR EACH STATEMENT
            EXECUTE FUNCTION shipslog.notify_events();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'events_owner') THEN
        CREATE TRIGGER events_owner BEFORE INSERT ON shipslog.events
            FOR EACH ROW EXECUTE FUNCTION shipslog.owner_only();
        CREATE TRIGGER commands_owner BEFORE INSERT ON shipslog.commands
            FOR EACH ROW EXECUTE FUNCTION shipslog.owner_only();
        CREATE TRIGGER tombstones_owner BEFORE INSERT ON shipslog.tombstones
            FOR EACH ROW EXECUTE FUNCTION shipslog.owner_only();
    END IF;
END
$$;

INSERT INTO shipslog.meta (key, value) VALUES ('schema_version', '1')
    ON CONFLICT (key) DO NOTHING;

-- Compaction of a host on PostgreSQL (events/pg_backend.py): the one sanctioned DELETE. Runs as
-- the owner with `shipslog.compacting` on for this transaction only; the tombstones keep each
-- moved event's own stored hash (taken from its row, not from the caller), and `compaction`
-- must be the seq the host's ChainCompacted event gets next, which a deferred check requires
-- to exist at COMMIT: events never leave the log without a summary in the chain.
CREATE OR REPLACE FUNCTION shipslog.compact_events(name text, seqs bigint[], compaction bigint)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, shipslog AS $$
DECLARE
    moved integer;
BEGIN
    IF compaction IS DISTINCT FROM (SELECT head + 1 FROM shipslog.hosts WHERE host = name
                                    AND mode = 'store') THEN
        RAISE EXCEPTION 'compaction % of host % is not its next event', compaction, name
            USING ERRCODE = 'SL005';
    END IF;
    INSERT INTO shipslog.tombstones (host, seq, hash, compaction)
        SELECT e.host, e.seq, e.hash, compaction FROM shipslog.events e
        WHERE e.host = name AND e.seq = ANY (seqs) ORDER BY e.seq;
    PERFORM set_config('shipslog.compacting', 'on', true);
    DELETE FROM shipslog.events WHERE host = name AND seq = ANY (seqs);
    GET DIAGNOSTICS moved = ROW_COUNT;
    PERFORM set_config('shipslog.compacting', 'off', true);
    IF moved <> cardinality(seqs) THEN
        RAISE EXCEPTION 'compaction of host % found % of % events', name, moved,
            cardinality(seqs) USING ERRCODE = 'SL005';
    END IF;
    RETURN moved;
END
$$;
REVOKE EXECUTE ON FUNCTION shipslog.compact_events(text, bigint[], bigint) FROM PUBLIC;

CREATE OR REPLACE FUNCTION shipslog.tombstone_summarised() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, shipslog AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM shipslog.events WHERE host = NEW.host
                   AND seq = NEW.compaction AND type = 'ChainCompacted') THEN
        RAISE EXCEPTION 'event % of host % was archived without a ChainCompacted event %',
            NEW.seq, NEW.host, NEW.compaction USING ERRCODE = 'SL005';
    END IF;
    RETURN NULL;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'tombstones_summarised') THEN
        CREATE CONSTRAINT TRIGGER tombstones_summarised AFTER INSERT ON shipslog.tombstones
            DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW EXECUTE FUNCTION shipslog.tombstone_summarised();
    END IF;
END
$$;
"""


def grant_roles(role: str) -> str:
    """SQL that lets `role` append and read, and nothing more (no UPDATE, no DELETE)."""
    if not role.replace("_", "").isalnum():
        raise ValueError(f"invalid role name {role!r}")
    return (
        f"GRANT USAGE ON SCHEMA shipslog TO {role};\n"
        f"GRANT SELECT, INSERT ON shipslog.events, shipslog.commands, shipslog.tombstones,"
        f" shipslog.alerts TO {role};\n"
        f"GRANT SELECT ON shipslog.hosts, shipslog.meta TO {role};\n"
        f"GRANT EXECUTE ON FUNCTION shipslog.register_host(text, text, bigint) TO {role};\n"
        f"GRANT USAGE ON SEQUENCE shipslog.alerts_id_seq TO {role};\n"
    )


def grant_store_role(role: str, database: str) -> str:
    """SQL for the role a daemon run with `--store postgresql://…` uses: `grant_roles` (append
    and read the shared tables), compaction through `shipslog.compact_events` (the owner's
    function: the role itself still has no UPDATE or DELETE), and CREATE on the database for
    its host's own schema (`host_<name>`: projection tables and snapshots, derived data)."""
    if not database.replace("_", "").isalnum():
        raise ValueError(f"invalid database name {database!r}")
    return grant_roles(role) + (
        f"GRANT EXECUTE ON FUNCTION shipslog.compact_events(text, bigint[], bigint) TO {role};\n"
        f"GRANT CREATE ON DATABASE {database} TO {role};\n"
    )
