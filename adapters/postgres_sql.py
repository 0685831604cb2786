"""The SQL of the PostgreSQL backend: the schema (version 1) and one statement per step.

Every step is ONE statement run in autocommit mode, so it is its own transaction and
needs no session state: it runs the same through PgBouncer in transaction (or even
statement) pooling. Nothing here uses advisory locks, prepared statements across
transactions, temporary tables or ``SET``; only :data:`CREATE` (run once, by the first
client or ``tenure postgres init``) takes a transaction-scoped advisory lock so that
clients creating the schema at once do not collide.

The reasoning behind each statement is in the docstring of
:mod:`tenure.adapters.postgres`. ``{s}`` is the schema, always quoted as an identifier.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from psycopg import sql

SCHEMA_VERSION = 1
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

CREATE = """
SELECT pg_advisory_xact_lock(hashtext('tenure schema ' || {name}));
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.schema_version (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS {s}.sessions (
    id uuid PRIMARY KEY,
    ttl interval NOT NULL,
    expires_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS {s}.elections (name text PRIMARY KEY);
CREATE TABLE IF NOT EXISTS {s}.candidates (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    election text NOT NULL,
    candidate_id text NOT NULL,
    session_id uuid NOT NULL REFERENCES {s}.sessions (id) ON DELETE CASCADE,
    value bytea NOT NULL,
    led_at timestamptz);
CREATE INDEX IF NOT EXISTS candidates_by_election ON {s}.candidates (election, seq);
CREATE INDEX IF NOT EXISTS candidates_by_session ON {s}.candidates (session_id);
CREATE TABLE IF NOT EXISTS {s}.data (
    key text PRIMARY KEY, value bytea NOT NULL, token bigint NOT NULL);
CREATE OR REPLACE FUNCTION {s}.ring() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenure_' || left(md5(TG_TABLE_SCHEMA || '/' || CASE TG_OP
        WHEN 'DELETE' THEN OLD.election ELSE NEW.election END), 24), '');
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS candidates_ring ON {s}.candidates;
CREATE TRIGGER candidates_ring AFTER INSERT OR DELETE OR UPDATE OF value
    ON {s}.candidates FOR EACH ROW EXECUTE FUNCTION {s}.ring();
INSERT INTO {s}.schema_version
    SELECT {version} WHERE NOT EXISTS (SELECT 1 FROM {s}.schema_version);
"""
"""Creates schema version 1 (idempotent). Every change of a candidate row -- enqueue,
withdraw, proclaim, and rows deleted with a dead session -- rings the election's
channel (see :func:`channel`) when its transaction commits."""

VERSION = "SELECT max(version) FROM {s}.schema_version"

GRANT = """
GRANT USAGE ON SCHEMA {s} TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {role};
"""
"""What a user without DDL rights needs on the tables ``tenure postgres init`` made."""

_LIVE = "s.expires_at > clock_timestamp()"
_TTL = "make_interval(secs => %(ttl)s)"

OPEN = f"""
WITH gone AS (DELETE FROM {{s}}.sessions WHERE expires_at <= clock_timestamp())
INSERT INTO {{s}}.sessions (id, ttl, expires_at)
VALUES (%(sid)s, {_TTL}, clock_timestamp() + {_TTL})"""

RENEW = """
WITH renewed AS (
    UPDATE {s}.sessions SET expires_at = clock_timestamp() + ttl
    WHERE id = %(sid)s AND expires_at > clock_timestamp() RETURNING id)
SELECT EXISTS (SELECT 1 FROM renewed),
       ARRAY(SELECT seq FROM {s}.candidates WHERE session_id = %(sid)s)"""

CLOSE = "DELETE FROM {s}.sessions WHERE id = %(sid)s"

ENQUEUE = f"""
WITH turn AS (
    INSERT INTO {{s}}.elections (name) VALUES (%(e)s)
    ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING name),
stale AS (DELETE FROM {{s}}.candidates WHERE session_id = %(sid)s AND election = %(e)s)
INSERT INTO {{s}}.candidates (election, candidate_id, session_id, value)
SELECT turn.name, %(cid)s, s.id, %(v)s FROM turn, {{s}}.sessions s
WHERE s.id = %(sid)s AND {_LIVE}
RETURNING seq"""
"""The upsert locks the election's row until commit, before the identity value is
drawn: enqueues of one election commit in ``seq`` order (see the adapter)."""

UNQUEUE = "DELETE FROM {s}.candidates WHERE session_id = %(sid)s AND election = %(e)s"

TRY_LEAD = f"""
WITH gone AS (
    DELETE FROM {{s}}.sessions s USING {{s}}.candidates c
    WHERE c.session_id = s.id AND c.election = %(e)s AND c.seq < %(seq)s
      AND s.expires_at <= clock_timestamp()
    RETURNING s.id),
mine AS (
    SELECT c.seq FROM {{s}}.candidates c JOIN {{s}}.sessions s ON s.id = c.session_id
    WHERE c.seq = %(seq)s AND {_LIVE}),
ahead AS (
    SELECT s.expires_at FROM {{s}}.candidates c JOIN {{s}}.sessions s ON s.id = c.session_id
    WHERE c.election = %(e)s AND c.seq < %(seq)s AND s.id NOT IN (SELECT id FROM gone)),
won AS (
    UPDATE {{s}}.candidates SET led_at = clock_timestamp()
    WHERE seq = %(seq)s AND EXISTS (SELECT 1 FROM mine) AND NOT EXISTS (SELECT 1 FROM ahead)
    RETURNING seq)
SELECT EXISTS (SELECT 1 FROM mine), EXISTS (SELECT 1 FROM won),
       extract(epoch FROM (SELECT min(expires_at) FROM ahead) - clock_timestamp())::float8"""

WITHDRAW = "DELETE FROM {s}.candidates WHERE seq = %(seq)s"

_LEADING = f"""
WITH me AS (
    SELECT c.seq FROM {{s}}.candidates c JOIN {{s}}.sessions s ON s.id = c.session_id
    WHERE c.seq = %(seq)s AND c.session_id = %(sid)s AND c.led_at IS NOT NULL AND {_LIVE}
      AND NOT EXISTS (
          SELECT 1 FROM {{s}}.candidates o WHERE o.election = %(e)s AND o.seq < %(seq)s)
    FOR KEY SHARE OF c, s)"""

PROCLAIM = _LEADING + """
UPDATE {s}.candidates SET value = %(v)s WHERE seq IN (SELECT seq FROM me) RETURNING seq"""

GUARDED_WRITE = _LEADING + """
INSERT INTO {s}.data (key, value, token) SELECT %(k)s, %(v)s, seq FROM me
ON CONFLICT (key) DO UPDATE SET value = excluded.value, token = excluded.token
RETURNING token"""

READ = "SELECT value FROM {s}.data WHERE key = %(k)s"

CONTENDERS = f"""
SELECT c.seq, c.candidate_id, c.value,
       extract(epoch FROM s.expires_at - clock_timestamp())::float8
FROM {{s}}.candidates c JOIN {{s}}.sessions s ON s.id = c.session_id
WHERE c.election = %(e)s AND {_LIVE} ORDER BY c.seq"""

LEADER = CONTENDERS + " LIMIT 1"


def channel(schema: str, election: str) -> str:
    """The NOTIFY channel of ``election``: what the ``ring`` trigger computes in SQL."""
    digest = hashlib.md5(f"{schema}/{election}".encode(), usedforsecurity=False)
    return "tenure_" + digest.hexdigest()[:24]


@dataclass(frozen=True)
class Statements:
    """Every statement above, composed for one schema."""

    schema: str
    create: sql.Composed
    version: sql.Composed
    open: sql.Composed
    renew: sql.Composed
    close: sql.Composed
    enqueue: sql.Composed
    unqueue: sql.Composed
    try_lead: sql.Composed
    withdraw: sql.Composed
    proclaim: sql.Composed
    guarded_write: sql.Composed
    read: sql.Composed
    contenders: sql.Composed
    leader: sql.Composed

    def grant(self, role: str) -> sql.Composed:
        """:data:`GRANT` for ``role``."""
        return sql.SQL(GRANT).format(s=sql.Identifier(self.schema), role=sql.Identifier(role))

    @classmethod
    def for_schema(cls, schema: str) -> Statements:
        """``schema`` must match :data:`SCHEMA_NAME` (checked by the adapter)."""
        ident = sql.Identifier(schema)

        def compose(text: str) -> sql.Composed:
            return sql.SQL(text).format(s=ident)

        create = sql.SQL(CREATE).format(s=ident, name=sql.Literal(schema),
                                        version=sql.Literal(SCHEMA_VERSION))
        return cls(
            schema, create, compose(VERSION), compose(OPEN), compose(RENEW), compose(CLOSE),
            compose(ENQUEUE), compose(UNQUEUE), compose(TRY_LEAD), compose(WITHDRAW),
            compose(PROCLAIM), compose(GUARDED_WRITE), compose(READ), compose(CONTENDERS),
            compose(LEADER),
        )
