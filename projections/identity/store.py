"""Identity graph in PostgreSQL: customers, their keys, and the links between them."""

from __future__ import annotations

import psycopg

from projections.identity.resolve import Resolution
from projections.sql import UNPACK, pack

DDL = """
CREATE TABLE IF NOT EXISTS identity_customers (
    customer_id  uuid PRIMARY KEY,
    canonical_id uuid NOT NULL,             -- itself, or the customer it was linked into
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS identity_customers_canonical ON identity_customers (canonical_id);
CREATE TABLE IF NOT EXISTS identity_keys (
    key         text PRIMARY KEY,           -- id:<uuid> | email:<email> | phone:<e164> | ext:<system>:<id>
    customer_id uuid NOT NULL
);
CREATE TABLE IF NOT EXISTS identity_links (
    link_id   bigserial PRIMARY KEY,
    survivor  uuid NOT NULL,
    merged    uuid NOT NULL,
    event_id  uuid NOT NULL,                -- the touchpoint that carried both identities
    keys      text[] NOT NULL,
    linked_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (survivor, merged, event_id)
);
"""

_GRAPH_LOCK = 7_201_502


async def lock_graph(conn: psycopg.AsyncConnection) -> None:
    """Serialise graph writers for the rest of the transaction (several identity workers)."""
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_GRAPH_LOCK,))


async def known(conn: psycopg.AsyncConnection, keys: list[str]) -> dict[str, tuple[str, str]]:
    """``key -> (customer, canonical)``. The graph is kept flat (``save`` repoints every member of
    a merged cluster), so a canonical id is always a root and needs no chain walking."""
    cur = await conn.execute(
        "SELECT k.key, k.customer_id::text, c.canonical_id::text FROM identity_keys k "
        f"JOIN identity_customers c USING (customer_id) WHERE k.key IN (SELECT {UNPACK})", (pack(keys),))
    found = {k: (c, cc) for k, c, cc in await cur.fetchall()}
    # A customer id the API handed out names a customer even when no event carried it as a key.
    named = [k[3:] for k in keys if k.startswith("id:") and k not in found]
    if named:
        cur = await conn.execute(
            "SELECT customer_id::text, canonical_id::text FROM identity_customers "
            "WHERE customer_id = ANY(%s::uuid[])", (named,))
        found.update({f"id:{c}": (c, cc) for c, cc in await cur.fetchall()})
    return found


async def save(conn: psycopg.AsyncConnection, res: Resolution) -> None:
    if res.new_customers:
        await conn.execute(
            "INSERT INTO identity_customers (customer_id, canonical_id) "
            f"SELECT c::uuid, c::uuid FROM {UNPACK} AS c ON CONFLICT DO NOTHING", (pack(res.new_customers),))
    if res.new_keys:
        await conn.execute(
            "INSERT INTO identity_keys (key, customer_id) SELECT k, c::uuid "
            f"FROM {UNPACK} WITH ORDINALITY AS a(k, i) JOIN {UNPACK} WITH ORDINALITY AS b(c, j) ON i = j "
            "ON CONFLICT DO NOTHING", (pack(list(res.new_keys)), pack(list(res.new_keys.values()))))
    for link in res.links:
        await conn.execute(
            "UPDATE identity_customers SET canonical_id = %s WHERE canonical_id = %s",
            (link.survivor, link.merged))
        await conn.execute(
            "INSERT INTO identity_links (survivor, merged, event_id, keys) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING", (link.survivor, link.merged, link.event_id, list(link.keys)))


async def cluster(conn: psycopg.AsyncConnection, customer_id: str) -> tuple[str, list[str]] | None:
    """The canonical id of a customer and every customer id linked into it (for reads)."""
    cur = await conn.execute(
        "WITH RECURSIVE up(id, next) AS ("
        "  SELECT customer_id, canonical_id FROM identity_customers WHERE customer_id = %s"
        "  UNION SELECT c.customer_id, c.canonical_id FROM identity_customers c"
        "  JOIN up ON c.customer_id = up.next WHERE up.id <> up.next)"
        " SELECT id::text FROM up WHERE id = next", (customer_id,))
    row = await cur.fetchone()
    if row is None:
        return None
    root = row[0]
    cur = await conn.execute(
        "WITH RECURSIVE down(id) AS (SELECT %s::uuid UNION "
        "  SELECT c.customer_id FROM identity_customers c JOIN down ON c.canonical_id = down.id"
        "  WHERE c.customer_id <> c.canonical_id) SELECT id::text FROM down", (root,))
    return root, sorted(r[0] for r in await cur.fetchall())


async def find(conn: psycopg.AsyncConnection, key: str) -> str | None:
    cur = await conn.execute("SELECT customer_id::text FROM identity_keys WHERE key = %s", (key,))
    row = await cur.fetchone()
    return row[0] if row else None
