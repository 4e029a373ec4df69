"""Unified profile read model: table ``profiles`` (one row per customer id of the identity graph)
and view ``customer_profiles`` (the same, one column per field, with the order ledger's counts
and spend, for downstream readers).

The fold's whole state is one ``state`` document, so a batch reads and writes one value per
customer; the columns beside it are the fields people filter on. The API merges the rows of
customers the identity graph linked (``fold.merge``), so a link never rewrites stored rows.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson
import psycopg

from projections.orders import store as orders
from projections.orders.fold import OrderState
from projections.profile.fold import open_complaints
from projections.sql import UNPACK, array_literal, copy_field, pack

# The view reads the order ledger: its table must exist first (the registry creates it first).
DDL = """
CREATE TABLE IF NOT EXISTS profiles (
    customer_id     uuid PRIMARY KEY,
    emails          text[]  NOT NULL,
    phones          text[]  NOT NULL,
    first_seen      timestamptz,
    last_seen       timestamptz,
    events_count    bigint  NOT NULL,
    open_complaints int     NOT NULL,
    state           json    NOT NULL,   -- the fold's state; see customer_profiles for its fields
    updated_at      timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);  -- batches rewrite rows: room on a page lets PostgreSQL update in place (HOT)
DROP VIEW IF EXISTS customer_profiles;
ALTER TABLE profiles DROP COLUMN IF EXISTS orders_count;  -- now from the order ledger
DO $$ BEGIN  -- state was jsonb: parsing it on every write cost PostgreSQL (BENCHMARKS.md)
    IF (SELECT atttypid = 'jsonb'::regtype FROM pg_attribute
        WHERE attrelid = 'profiles'::regclass AND attname = 'state') THEN
        ALTER TABLE profiles ALTER state TYPE json;
    END IF;
END $$;
CREATE VIEW customer_profiles AS
SELECT p.customer_id, p.emails, p.phones, (p.state -> 'external_ids')::jsonb AS external_ids,
       (SELECT jsonb_object_agg(k, (v -> 2)::jsonb) FROM json_each(p.state -> 'attributes') AS a(k, v))
           AS attributes,
       p.first_seen, p.last_seen, p.events_count, (p.state -> 'by_channel')::jsonb AS by_channel,
       (p.state -> 'by_type')::jsonb AS by_type,
       (SELECT count(*) FROM orders o WHERE o.customer_id = p.customer_id AND o.status = 'placed')
           AS orders_count,
       (SELECT coalesce(jsonb_object_agg(currency, total), '{}') FROM (
            SELECT currency, sum(amount)::text AS total FROM orders o
            WHERE o.customer_id = p.customer_id AND o.status = 'placed' GROUP BY currency) s)
           AS spend,
       p.open_complaints, (p.state -> 'complaints')::jsonb AS complaints,
       (p.state -> 'last_contact')::jsonb AS last_contact,
       coalesce((p.state -> 'satisfaction')::jsonb, '{}') AS satisfaction, p.updated_at
FROM profiles p;
"""

NULL = "\\N"
_COLUMNS = ("customer_id, emails, phones, first_seen, last_seen, events_count, open_complaints, "
            "state")
_UPDATE = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS.split(", ")[1:])


def copy_text_states(states: dict[str, dict[str, Any]], documents: dict[str, str]) -> str:
    """Rows in COPY's text format, built in one pass (psycopg's per-value adaptation of the arrays
    and the document cost as much as the rest of the write; BENCHMARKS.md). Each state
    document, as written, goes into ``documents``."""
    lines = []
    for cid, state in states.items():
        doc = orjson.dumps(state).decode()
        documents[cid] = doc
        first, last = state["first_seen"], state["last_seen"]
        lines.append(
            f"{cid}\t{copy_field(array_literal(state['emails']))}\t"
            f"{copy_field(array_literal(state['phones']))}\t{copy_field(first) if first else NULL}\t"
            f"{copy_field(last) if last else NULL}\t{state['events_count']:d}\t"
            f"{len(open_complaints(state)):d}\t{copy_field(doc)}\n")
    return "".join(lines)


async def load_states(conn: psycopg.AsyncConnection, customer_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The stored state documents of ``customer_ids`` (those that have a row)."""
    if not customer_ids:
        return {}
    cur = await conn.execute(
        "SELECT customer_id::text, state FROM profiles "
        f"WHERE customer_id IN (SELECT c::uuid FROM {UNPACK} c)", (pack(customer_ids),))
    return dict(await cur.fetchall())


class Cluster(NamedTuple):
    canonical_id: str
    members: list[str]  # every customer id of the identity cluster, sorted
    states: dict[str, dict[str, Any]]  # the profile state documents among them
    orders: list[OrderState]  # the order ledger's rows of the members


async def load_cluster(conn: psycopg.AsyncConnection, customer_id: str) -> Cluster | None:
    """For a customer: its identity cluster with the members' profiles and orders, in one round
    trip (``None``: no such customer). The graph is flat (``identity.store.save`` repoints every
    member of a merged cluster), so the members are the customers that share the canonical id."""
    cur = await conn.execute(
        "SELECT c.canonical_id::text, m.customer_id::text, p.state, "
        f"(SELECT json_agg(json_build_array({orders.SELECT})) FROM orders o "
        " WHERE o.customer_id = m.customer_id) "
        "FROM identity_customers c JOIN identity_customers m ON m.canonical_id = c.canonical_id "
        "LEFT JOIN profiles p ON p.customer_id = m.customer_id WHERE c.customer_id = %s",
        (customer_id,))
    rows = await cur.fetchall()
    if not rows:
        return None
    return Cluster(rows[0][0], sorted(cid for _, cid, _, _ in rows),
                   {cid: state for _, cid, state, _ in rows if state is not None},
                   [OrderState(*o) for *_, found in rows for o in found or ()])


async def save_states(conn: psycopg.AsyncConnection, states: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Upsert whole rows from state documents: COPY into a temporary table, then one set-based
    INSERT ... ON CONFLICT. Returns each customer's state document as written (JSON text)."""
    documents: dict[str, str] = {}
    if not states:
        return documents
    await conn.execute("CREATE TEMP TABLE IF NOT EXISTS profiles_in "
                       "(LIKE profiles INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
    async with conn.cursor() as cur:
        async with cur.copy(f"COPY profiles_in ({_COLUMNS}) FROM STDIN") as copy:
            await copy.write(copy_text_states(states, documents))
        # moving the rows out leaves the staging table empty for a second save in this transaction
        await cur.execute(f"WITH staged AS (DELETE FROM profiles_in RETURNING *) "
                          f"INSERT INTO profiles ({_COLUMNS}) SELECT {_COLUMNS} FROM staged "
                          f"ON CONFLICT (customer_id) DO UPDATE SET {_UPDATE}, updated_at = now()")
    return documents
