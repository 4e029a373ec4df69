"""Value read models: ``customer_value`` (one row per customer: RFM, the model's figures as of the
row's last decision, tier, stage) and ``customer_changes`` (every tier and stage change, the
history read model and the outbox of topic ``customer-changes``)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg

from projections.orders.fold import RANK
from projections.sql import UNPACK, copy_field, pack
from projections.value.fold import Change, Facts, Figures, Order, Row

DDL = """
CREATE TABLE IF NOT EXISTS customer_value (
    customer_id            uuid PRIMARY KEY,
    first_seen             timestamptz NOT NULL,  -- first touchpoint: tenure starts here
    as_of                  timestamptz NOT NULL,  -- time of the last decision (event time)
    frequency              integer     NOT NULL,  -- purchase days
    first_purchase         date,
    last_purchase          date,
    previous_gap_days      integer,               -- days between the last two purchase days
    monetary               numeric     NOT NULL,  -- value of all purchases (value currency)
    trailing_12m           numeric     NOT NULL,  -- ... of the 12 months before as_of
    x                      integer     NOT NULL,  -- repeat purchase days
    t_x                    double precision NOT NULL,  -- weeks, first to last purchase
    t_cal                  double precision NOT NULL,  -- weeks, first purchase to as_of (T)
    m_x                    double precision NOT NULL,  -- mean value of the repeat purchase days
    p_alive                double precision,      -- model figures as of as_of (reads re-age them)
    expected_purchases_90d double precision,
    expected_order_value   double precision,
    clv                    double precision,
    model_version          bigint,
    tier                   text        NOT NULL,
    tier_since             timestamptz NOT NULL,
    thresholds_version     bigint,
    stage                  text        NOT NULL,
    stage_since            timestamptz NOT NULL,
    stage_reason           text        NOT NULL,
    review_at              timestamptz,           -- when the stage next changes without events
    changes                integer     NOT NULL DEFAULT 0,  -- tier and stage changes so far
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS customer_value_review ON customer_value (review_at)
    WHERE review_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS customer_value_segment ON customer_value (tier, stage, clv DESC NULLS LAST);
CREATE TABLE IF NOT EXISTS customer_changes (
    change_id          uuid PRIMARY KEY,          -- from (customer_id, n): a retried batch, the same id
    seq                bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    customer_id        uuid        NOT NULL,
    n                  integer     NOT NULL DEFAULT 0,  -- the customer's n-th change (1, 2, ...)
    kind               text        NOT NULL,      -- tier | stage
    old                text,                      -- a customer starts as a prospect
    new                text        NOT NULL,
    reason             text        NOT NULL,
    event_id           uuid,                      -- the event that caused it (NULL: time, thresholds)
    thresholds_version bigint,
    model_version      bigint,
    occurred_at        timestamptz NOT NULL,      -- event time of the change
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    published_at       timestamptz                -- on topic customer-changes since
);
CREATE INDEX IF NOT EXISTS customer_changes_customer ON customer_changes (customer_id, occurred_at);
CREATE INDEX IF NOT EXISTS customer_changes_unpublished ON customer_changes (seq)
    WHERE published_at IS NULL;
ALTER TABLE customer_value ADD COLUMN IF NOT EXISTS changes integer NOT NULL DEFAULT 0;
ALTER TABLE customer_changes ADD COLUMN IF NOT EXISTS n integer NOT NULL DEFAULT 0;
"""

COLUMNS = ("customer_id, first_seen, as_of, frequency, first_purchase, last_purchase, "
           "previous_gap_days, monetary, trailing_12m, x, t_x, t_cal, m_x, p_alive, "
           "expected_purchases_90d, expected_order_value, clv, model_version, tier, tier_since, "
           "thresholds_version, stage, stage_since, stage_reason, review_at, changes")
CHANGE_ID = uuid.UUID("6f1c2a7e-4d0b-5a53-9e57-0c1d2b3a4f5e")


def row_of(r: tuple) -> Row:
    (cid, first_seen, as_of, frequency, first, last, gap, monetary, trailing, x, t_x, t_cal, m_x,
     p_alive, expected, aov, clv, model_version, tier, tier_since, th_version, stage, stage_since,
     reason, review, changes) = r
    return Row(str(cid), first_seen, as_of,
               Facts(as_of, frequency, first, last, gap, monetary, trailing, x, t_x, t_cal, m_x),
               Figures(p_alive, expected, aov, clv), model_version, tier, tier_since, th_version,
               stage, stage_since, reason, review, changes)


def _f(v: float | None) -> str:
    return "\\N" if v is None else repr(float(v))


def _o(v: Any) -> str:
    return "\\N" if v is None else v.isoformat() if hasattr(v, "isoformat") else str(v)


def copy_line(row: Row) -> str:
    """A value row in COPY's text format, column by column as ``COLUMNS`` (a writer generic
    over the values' types took a tenth of the projection worker)."""
    f, g = row.facts, row.figures
    return (f"{row.customer_id}\t{row.first_seen.isoformat()}\t{row.as_of.isoformat()}\t"
            f"{f.frequency:d}\t{_o(f.first)}\t{_o(f.last)}\t{_o(f.previous_gap_days)}\t"
            f"{f.monetary}\t{f.trailing_12m}\t{f.x:d}\t{_f(f.t_x)}\t{_f(f.T)}\t{_f(f.m_x)}\t"
            f"{_f(g.p_alive)}\t{_f(g.expected_purchases_90d)}\t{_f(g.expected_order_value)}\t"
            f"{_f(g.clv)}\t{_o(row.model_version)}\t{copy_field(row.tier)}\t"
            f"{row.tier_since.isoformat()}\t{_o(row.thresholds_version)}\t{row.stage}\t"
            f"{row.stage_since.isoformat()}\t{copy_field(row.stage_reason)}\t{_o(row.review_at)}\t"
            f"{row.changes:d}\n")


async def load(conn: psycopg.AsyncConnection, customer_ids: list[str],
               lock: bool = True) -> dict[str, Row]:
    """The value rows of these customers (locked for the transaction: the sweep skips them)."""
    if not customer_ids:
        return {}
    cur = await conn.execute(
        f"SELECT {COLUMNS} FROM customer_value WHERE customer_id IN "
        f"(SELECT c::uuid FROM {UNPACK} AS c) "
        f"ORDER BY customer_id{' FOR UPDATE' if lock else ''}", (pack(customer_ids),))
    return {str(r[0]): row_of(r) for r in await cur.fetchall()}


async def peek(conn: psycopg.AsyncConnection, where: str, params: tuple[Any, ...], limit: int
               ) -> dict[str, tuple[Row, datetime]]:
    """Rows (and the version each was read at: ``updated_at``) without locking them: the jobs
    decide on them unlocked and write only those still unchanged (``claim``), so that a batch
    never waits on a job's computing."""
    cur = await conn.execute(f"SELECT {COLUMNS}, updated_at FROM customer_value WHERE {where} "
                             f"LIMIT %s", (*params, limit))
    return {str(r[0]): (row_of(r[:-1]), r[-1]) for r in await cur.fetchall()}


async def claim(conn: psycopg.AsyncConnection, versions: dict[str, datetime]) -> set[str]:
    """Lock, for the transaction, the rows still at the version read, skipping rows a batch
    holds; the customers claimed."""
    if not versions:
        return set()
    cur = await conn.execute(
        f"SELECT customer_id::text, updated_at FROM customer_value WHERE customer_id IN "
        f"(SELECT c::uuid FROM {UNPACK} AS c) ORDER BY customer_id FOR UPDATE SKIP LOCKED",
        (pack(list(versions)),))
    return {cid for cid, at in await cur.fetchall() if versions.get(cid) == at}


async def save(conn: psycopg.AsyncConnection, rows: Iterable[Row]) -> None:
    """Upsert whole rows: COPY into a staging table, then one set-based INSERT ... ON CONFLICT."""
    text = "".join([copy_line(r) for r in rows])
    if not text:
        return
    names = COLUMNS.split(", ")
    updates = ", ".join(f"{n} = excluded.{n}" for n in names[1:])
    async with _atomic(conn):
        await _stage(conn, "customer_value", text)
        await conn.execute(
            f"WITH staged AS (DELETE FROM customer_value_in RETURNING *) "
            f"INSERT INTO customer_value ({COLUMNS}) SELECT {COLUMNS} FROM staged "
            f"ON CONFLICT (customer_id) DO UPDATE SET {updates}, updated_at = now()")


def _atomic(conn: psycopg.AsyncConnection) -> AbstractAsyncContextManager[Any]:
    """A transaction when the connection is outside one (autocommit): the staged rows live until
    the commit."""
    if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        return conn.transaction()
    return contextlib.nullcontext()


async def _stage(conn: psycopg.AsyncConnection, table: str, text: str, columns: str = COLUMNS,
                 like: str | None = None) -> None:
    """COPY rows into ``<table>_in``, a temporary table emptied by the statement that moves them
    out (so a second save in one transaction starts empty) and at commit."""
    await conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table}_in "
                       f"({like or f'LIKE {table} INCLUDING DEFAULTS'}) ON COMMIT DELETE ROWS")
    async with conn.cursor() as cur, cur.copy(f"COPY {table}_in ({columns}) FROM STDIN") as copy:
        await copy.write(text)


def change_id(c: Change) -> str:
    """The customer's n-th change: a retried batch or a replay finds the same change under the
    same id, and two changes of one customer never share one (a customer can go gold, bronze,
    gold, bronze at one time, by one thresholds version)."""
    return str(uuid.uuid5(CHANGE_ID, f"{c.customer_id}|{c.n}"))


CHANGE_COLUMNS = ("change_id, customer_id, kind, old, new, reason, event_id, thresholds_version, "
                  "model_version, occurred_at, n")
_CHANGES_IN = ("change_id uuid, customer_id uuid, kind text, old text, new text, reason text, "
               "event_id uuid, thresholds_version int8, model_version int8, occurred_at timestamptz, "
               "n int4, ord int4")


def change_line(c: Change, ord_: int) -> str:
    """A change in COPY's text format, column by column as ``CHANGE_COLUMNS``, then ``ord``."""
    return (f"{change_id(c)}\t{c.customer_id}\t{c.kind}\t{_o(c.old)}\t{copy_field(c.new)}\t"
            f"{copy_field(c.reason)}\t{_o(c.event_id)}\t{_o(c.thresholds_version)}\t"
            f"{_o(c.model_version)}\t{c.occurred_at.isoformat()}\t{c.n:d}\t{ord_:d}\n")


async def save_changes(conn: psycopg.AsyncConnection, changes: list[Change]) -> None:
    """Insert the changes in their order (``seq`` follows each customer's chain)."""
    if not changes:
        return
    text = "".join([change_line(c, i) for i, c in enumerate(changes)])
    async with _atomic(conn):
        await _stage(conn, "customer_changes", text, f"{CHANGE_COLUMNS}, ord", _CHANGES_IN)
        await conn.execute(
            f"WITH staged AS (DELETE FROM customer_changes_in RETURNING *) "
            f"INSERT INTO customer_changes ({CHANGE_COLUMNS}) SELECT {CHANGE_COLUMNS} FROM staged "
            f"ORDER BY ord ON CONFLICT (change_id) DO NOTHING")


async def clusters(conn: psycopg.AsyncConnection, customer_ids: list[str]) -> dict[str, str]:
    """``member -> canonical id`` for every other member of the identity clusters of these
    customers that have more than one (the graph is flat: ``projections.identity.store``)."""
    if not customer_ids:
        return {}
    cur = await conn.execute(
        "SELECT m.customer_id::text, m.canonical_id::text FROM identity_customers m "
        "WHERE m.canonical_id IN (SELECT canonical_id FROM identity_customers "
        f"WHERE customer_id IN (SELECT c::uuid FROM {UNPACK} AS c)) "
        "AND m.customer_id <> m.canonical_id", (pack(customer_ids),))
    return dict(await cur.fetchall())


async def drop(conn: psycopg.AsyncConnection, customer_ids: list[str]) -> None:
    """Remove the rows of customers linked into others (their changes stay, under their ids)."""
    if customer_ids:
        await conn.execute(f"DELETE FROM customer_value WHERE customer_id IN "
                           f"(SELECT c::uuid FROM {UNPACK} AS c)", (pack(customer_ids),))


async def orders(conn: psycopg.AsyncConnection, customer_ids: list[str]) -> dict[str, list[Order]]:
    """The ledger's orders in force as placed, by customer. A customer others were linked into
    (identity's canonical id) holds the orders of the whole cluster; an order the ledger holds
    under two of its ids counts once, in its state in force (``orders.fold``: a cancellation
    outranks a placement, then the latest event; placed when it was first placed)."""
    if not customer_ids:
        return {}
    cur = await conn.execute(
        f"WITH asked AS (SELECT c::uuid AS id FROM {UNPACK} AS c) "
        "SELECT w.id::text, o.order_id, o.status, o.placed_at, o.amount, o.currency, "
        "o.occurred_at, o.event_id, w.id <> o.customer_id FROM ("
        "  SELECT id, id FROM asked UNION ALL"
        "  SELECT m.canonical_id, m.customer_id FROM identity_customers m"
        "  WHERE m.canonical_id IN (SELECT id FROM asked) AND m.customer_id <> m.canonical_id"
        ") AS w (id, owner) JOIN orders o ON o.customer_id = w.owner", (pack(customer_ids),))
    out: dict[str, list[Order]] = {}
    pooled: dict[tuple[str, str], list[tuple]] = {}
    found = await cur.fetchall()
    if any(r[8] for r in found):  # some customer holds others' orders: merged per order below
        for r in found:
            pooled.setdefault((r[0], r[1]), []).append(r)
        found = [_in_force(states) for states in pooled.values()]
    for cid, order_id, status, placed_at, amount, currency, *_ in found:
        if status == "placed" and placed_at is not None:
            out.setdefault(cid, []).append(Order(order_id, placed_at, Decimal(amount), currency))
    return out


def _in_force(states: list[tuple]) -> tuple:
    """One order's state in force among the rows of its cluster (``orders.fold.merge``)."""
    won = max(states, key=lambda r: (RANK[r[2]], r[6], str(r[7])))
    placed = [r[3] for r in states if r[3] is not None]
    return (*won[:3], min(placed) if placed else None, *won[4:])


async def history(conn: psycopg.AsyncConnection, customer_id: str, limit: int = 100
                  ) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT change_id::text, kind, old, new, reason, event_id::text, thresholds_version, "
        "model_version, occurred_at, n FROM customer_changes WHERE customer_id = %s "
        "ORDER BY occurred_at DESC, seq DESC LIMIT %s", (customer_id, limit))
    names = ("change_id", "kind", "old", "new", "reason", "event_id", "thresholds_version",
             "model_version", "occurred_at", "n")
    return [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]

