"""The fleet's additions to the shared PostgreSQL schema (events/pg_schema.py): how a host on
SQLite ships its log to the center (`shipslogd --replicate-to`, issue 19).

I/O: none (DDL as data). Kept beside pg_schema.py, not in it, so that the store's and the
replicator's additions never edit the same lines; `events.central.ensure_schema` applies both.
Nothing here changes a table or a function of pg_schema.py: it only adds `shipslog.ingest` and
the grant to call it.
"""

from __future__ import annotations

from events.pg_schema import grant_roles

__all__ = ["REPLICA_SCHEMA", "grant_replica"]


# How a replicating host sends a batch: one call,
# one transaction; the chain trigger still checks every row. What it adds over a plain INSERT:
# rows the center already holds with the same hash are skipped (a resent batch is a no-op),
# and a refused batch leaves an alert behind (a plain INSERT's refusal rolls everything back,
# alert included). Returns NULL when stored, 'duplicate' when nothing was new, else the
# refusal as 'SQLSTATE message' (nothing of the batch stored).
REPLICA_SCHEMA = r"""
CREATE OR REPLACE FUNCTION shipslog.ingest(
    h text, seqs bigint[], streams text[], versions bigint[], schemas integer[], types text[],
    recorded bigint[], actors bytea[], op_ids text[], command_ids text[], payloads bytea[],
    hashes text[]) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, shipslog AS $$
DECLARE
    held bigint;
    new_rows bigint;
BEGIN
    SELECT head INTO held FROM shipslog.hosts WHERE host = h;
    SELECT count(*) INTO new_rows FROM unnest(seqs, hashes) AS u(s, hh)
        WHERE NOT EXISTS (SELECT 1 FROM shipslog.events e
                          WHERE e.host = h AND e.seq = u.s AND e.hash = u.hh);
    IF new_rows = 0 THEN
        RETURN 'duplicate';
    END IF;
    BEGIN
        INSERT INTO shipslog.events (host, seq, stream, stream_version, schema_version, type,
                                     recorded_at, actor, op_id, command_id, payload, hash)
        SELECT h, u.s, u.st, u.v, u.sv, u.t, u.r, u.a, u.o, u.c, u.p, u.hh
        FROM unnest(seqs, streams, versions, schemas, types, recorded, actors, op_ids,
                    command_ids, payloads, hashes)
             WITH ORDINALITY AS u(s, st, v, sv, t, r, a, o, c, p, hh, ord)
        WHERE u.s > coalesce(held, 0)
           OR NOT EXISTS (SELECT 1 FROM shipslog.events e
                          WHERE e.host = h AND e.seq = u.s AND e.hash = u.hh)
        ORDER BY u.ord;
    EXCEPTION WHEN SQLSTATE 'SL001' OR SQLSTATE 'SL002' OR SQLSTATE 'SL006'
                   OR foreign_key_violation OR unique_violation THEN
        INSERT INTO shipslog.alerts (host, at, kind, detail)
            VALUES (h, (extract(epoch FROM clock_timestamp()) * 1e9)::bigint, 'refused',
                    SQLSTATE || ' ' || SQLERRM);
        RETURN SQLSTATE || ' ' || SQLERRM;
    END;
    RETURN NULL;
END
$$;
"""


def grant_replica(role: str) -> str:
    """`grant_roles(role)` plus the right to send batches through `shipslog.ingest`."""
    return grant_roles(role) + (
        f"GRANT EXECUTE ON FUNCTION shipslog.ingest(text, bigint[], text[], bigint[], integer[],"
        f" text[], bigint[], bytea[], text[], text[], bytea[], text[]) TO {role};\n"
    )
