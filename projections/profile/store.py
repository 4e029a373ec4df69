"""Unified profile read model: table ``profiles`` (one row per customer id of the identity graph)
and view ``customer_profiles`` (the same, one column per field, for downstream readers).

The fold's whole state is one ``state`` document, so a batch reads and writes one value per
customer; the columns beside it are the fields people filter on. The API merges the rows of
customers the identity graph linked (``fold.merge``), so a link never rewrites stored rows.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import psycopg

from projections.profile.fold import Profile, open_complaints
from projections.sql import UNPACK, array_literal, copy_field, pack

DDL = """
CREATE TABLE IF NOT EXISTS profiles (
    customer_id     uuid PRIMARY KEY,
    emails          text[]  NOT NULL,
    phones          text[]  NOT NULL,
    first_seen      timestamptz,
    last_seen       timestamptz,
    events_count    bigint  NOT NULL,
    orders_count    bigint  NOT NULL,
    open_complaints int     NOT NULL,
    state           json    NOT NULL,   -- the fold's state; see customer_profiles for its fields
    updated_at      timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);  -- batches rewrite rows: room on a page lets PostgreSQL update in place (HOT)
DO $$ BEGIN  -- state was jsonb: parsing it cost PostgreSQL a fifth of the profile write
    IF (SELECT atttypid = 'jsonb'::regtype FROM pg_attribute
        WHERE attrelid = 'profiles'::regclass AND attname = 'state') THEN
        DROP VIEW IF EXISTS customer_profiles;
        ALTER TABLE profiles ALTER state TYPE json;
    END IF;
END $$;
CREATE OR REPLACE VIEW customer_profiles AS
SELECT customer_id, emails, phones, (state -> 'external_ids')::jsonb AS external_ids,
       (SELECT jsonb_object_agg(k, (v -> 2)::jsonb) FROM json_each(state -> 'attributes') AS a(k, v))
           AS attributes,
       first_seen, last_seen, events_count, (state -> 'by_channel')::jsonb AS by_channel,
       (state -> 'by_type')::jsonb AS by_type, orders_count, (state -> 'spend')::jsonb AS spend,
       open_complaints, (state -> 'complaints')::jsonb AS complaints,
       (state -> 'last_contact')::jsonb AS last_contact, updated_at
FROM profiles;
"""

NULL = "\\N"
_COLUMNS = ("customer_id, emails, phones, first_seen, last_seen, events_count, orders_count, "
            "open_complaints, state")
_UPDATE = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS.split(", ")[1:])


def to_state(p: Profile) -> dict[str, Any]:
    ext: dict[str, list[str]] = {}
    for system, value in sorted(p.external_ids):
        ext.setdefault(system, []).append(value)
    return {
        "emails": sorted(p.emails), "phones": sorted(p.phones), "external_ids": ext,
        "attributes": {k: [s[0], s[1], v] for k, (s, v) in p.attributes.items()},
        "first_seen": p.first_seen, "last_seen": p.last_seen, "events_count": p.events_count,
        "by_channel": p.by_channel, "by_type": p.by_type, "orders_count": p.orders_count,
        "spend": {c: str(a) for c, a in p.spend.items()},
        "complaints": {k: [s[0], s[1], st] for k, (s, st) in p.complaints.items()},
        "last_contact": p.last_contact[1] if p.last_contact else None,
    }


def from_state(customer_id: str, d: dict[str, Any]) -> Profile:
    lc = d["last_contact"]
    return Profile(
        customer_id=customer_id,
        emails=frozenset(d["emails"]),
        phones=frozenset(d["phones"]),
        external_ids=frozenset((s, v) for s, vs in d["external_ids"].items() for v in vs),
        attributes={k: ((a[0], a[1]), a[2]) for k, a in d["attributes"].items()},
        first_seen=d["first_seen"],
        last_seen=d["last_seen"],
        events_count=d["events_count"],
        by_channel=d["by_channel"],
        by_type=d["by_type"],
        orders_count=d["orders_count"],
        spend={c: Decimal(a) for c, a in d["spend"].items()},
        complaints={k: ((c[0], c[1]), c[2]) for k, c in d["complaints"].items()},
        last_contact=((lc["occurred_at"], lc["event_id"]), lc) if lc else None,
    )


def copy_text_states(states: dict[str, dict[str, Any]], documents: dict[str, str]) -> str:
    """Rows in COPY's text format, built in one pass (psycopg's per-value adaptation of the arrays
    and the document cost as much as the rest of the write). Each state document, as written,
    goes into ``documents``."""
    lines = []
    for cid, state in states.items():
        doc = orjson.dumps(state).decode()
        documents[cid] = doc
        first, last = state["first_seen"], state["last_seen"]
        lines.append(
            f"{cid}\t{copy_field(array_literal(state['emails']))}\t"
            f"{copy_field(array_literal(state['phones']))}\t{copy_field(first) if first else NULL}\t"
            f"{copy_field(last) if last else NULL}\t{state['events_count']:d}\t"
            f"{state['orders_count']:d}\t{open_complaints(state):d}\t{copy_field(doc)}\n")
    return "".join(lines)


async def load(conn: psycopg.AsyncConnection, customer_ids: list[str]) -> dict[str, Profile]:
    cur = await conn.execute(
        "SELECT customer_id::text, state FROM profiles "
        f"WHERE customer_id IN (SELECT c::uuid FROM {UNPACK} c)", (pack(customer_ids),))
    return {cid: from_state(cid, state) for cid, state in await cur.fetchall()}


async def load_states(conn: psycopg.AsyncConnection, customer_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The stored state documents of ``customer_ids`` (those that have a row)."""
    if not customer_ids:
        return {}
    cur = await conn.execute(
        "SELECT customer_id::text, state FROM profiles "
        f"WHERE customer_id IN (SELECT c::uuid FROM {UNPACK} c)", (pack(customer_ids),))
    return dict(await cur.fetchall())


async def load_cluster(conn: psycopg.AsyncConnection,
                       customer_id: str) -> tuple[str, list[str], dict[str, Profile]] | None:
    """For a customer: the canonical id of its identity cluster, every customer id in the cluster,
    and the profiles among them, in one round trip (``None``: no such customer). The graph is
    flat (``identity.store.save`` repoints every member of a merged cluster), so the members are
    the customers that share the canonical id."""
    cur = await conn.execute(
        "SELECT c.canonical_id::text, m.customer_id::text, p.state FROM identity_customers c "
        "JOIN identity_customers m ON m.canonical_id = c.canonical_id "
        "LEFT JOIN profiles p ON p.customer_id = m.customer_id WHERE c.customer_id = %s",
        (customer_id,))
    rows = await cur.fetchall()
    if not rows:
        return None
    found = {cid: from_state(cid, state) for _, cid, state in rows if state is not None}
    return rows[0][0], sorted(cid for _, cid, _ in rows), found


async def save(conn: psycopg.AsyncConnection, profiles: list[Profile]) -> dict[str, str]:
    """Upsert whole rows (see ``save_states``). Returns each state document as written."""
    return await save_states(conn, {p.customer_id: to_state(p) for p in profiles})


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
