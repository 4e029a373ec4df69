"""Value read models: ``customer_value`` (one row per customer: RFM, the model's figures as of the
row's last decision, tier, stage) and ``customer_changes`` (every tier and stage change, the
history read model and the outbox of topic ``customer-changes``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import psycopg

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
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS customer_value_review ON customer_value (review_at)
    WHERE review_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS customer_value_segment ON customer_value (tier, stage, clv DESC NULLS LAST);
CREATE TABLE IF NOT EXISTS customer_changes (
    change_id          uuid PRIMARY KEY,          -- from what changed: the same change, the same id
    seq                bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    customer_id        uuid        NOT NULL,
    kind               text        NOT NULL,      -- tier | stage
    old                text,                      -- NULL: the customer's first
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
"""

COLUMNS = ("customer_id, first_seen, as_of, frequency, first_purchase, last_purchase, "
           "previous_gap_days, monetary, trailing_12m, x, t_x, t_cal, m_x, p_alive, "
           "expected_purchases_90d, expected_order_value, clv, model_version, tier, tier_since, "
           "thresholds_version, stage, stage_since, stage_reason, review_at")
_TYPES = ("uuid", "timestamptz", "timestamptz", "int4", "date", "date", "int4", "numeric",
          "numeric", "int4", "float8", "float8", "float8", "float8", "float8", "float8", "float8",
          "int8", "text", "timestamptz", "int8", "text", "timestamptz", "text", "timestamptz")
CHANGE_ID = uuid.UUID("6f1c2a7e-4d0b-5a53-9e57-0c1d2b3a4f5e")


def row_of(r: tuple) -> Row:
    (cid, first_seen, as_of, frequency, first, last, gap, monetary, trailing, x, t_x, t_cal, m_x,
     p_alive, expected, aov, clv, model_version, tier, tier_since, th_version, stage, stage_since,
     reason, review) = r
    return Row(str(cid), first_seen, as_of,
               Facts(as_of, frequency, first, last, gap, monetary, trailing, x, t_x, t_cal, m_x),
               Figures(p_alive, expected, aov, clv), model_version, tier, tier_since, th_version,
               stage, stage_since, reason, review)


def _values(row: Row) -> tuple[Any, ...]:
    f, fig = row.facts, row.figures
    return (row.customer_id, row.first_seen, row.as_of, f.frequency, f.first, f.last,
            f.previous_gap_days, f.monetary, f.trailing_12m, f.x, f.t_x, f.T, f.m_x, fig.p_alive,
            fig.expected_purchases_90d, fig.expected_order_value, fig.clv, row.model_version,
            row.tier, row.tier_since, row.thresholds_version, row.stage, row.stage_since,
            row.stage_reason, row.review_at)


async def load(conn: psycopg.AsyncConnection, customer_ids: list[str],
               lock: bool = True) -> dict[str, Row]:
    """The value rows of these customers (locked for the transaction: the sweep skips them)."""
    if not customer_ids:
        return {}
    cur = await conn.execute(
        f"SELECT {COLUMNS} FROM customer_value WHERE customer_id = ANY(%s::uuid[]) "
        f"ORDER BY customer_id{' FOR UPDATE' if lock else ''}", (customer_ids,))
    return {str(r[0]): row_of(r) for r in await cur.fetchall()}


async def save(conn: psycopg.AsyncConnection, rows: Iterable[Row]) -> None:
    values = [_values(r) for r in rows]
    if not values:
        return
    columns = list(zip(*values, strict=True))
    arrays = ", ".join(f"%s::{t}[]" for t in _TYPES)
    names = COLUMNS.split(", ")
    updates = ", ".join(f"{n} = excluded.{n}" for n in names[1:])
    await conn.execute(
        f"INSERT INTO customer_value ({COLUMNS}) SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT (customer_id) DO UPDATE SET {updates}, updated_at = now()",
        [list(c) for c in columns])


def change_id(c: Change) -> str:
    """Deterministic: a replay or a retried batch finds the same change under the same id."""
    return str(uuid.uuid5(CHANGE_ID, f"{c.customer_id}|{c.kind}|{c.old}|{c.new}|"
                                     f"{c.occurred_at.isoformat()}|{c.event_id}"))


async def save_changes(conn: psycopg.AsyncConnection, changes: list[Change]) -> None:
    if not changes:
        return
    columns = list(zip(*[(change_id(c), *c) for c in changes], strict=True))
    await conn.execute(
        "INSERT INTO customer_changes (change_id, customer_id, kind, old, new, reason, event_id, "
        "thresholds_version, model_version, occurred_at) SELECT * FROM unnest(%s::uuid[], "
        "%s::uuid[], %s::text[], %s::text[], %s::text[], %s::text[], %s::uuid[], %s::int8[], "
        "%s::int8[], %s::timestamptz[]) ON CONFLICT (change_id) DO NOTHING",
        [list(c) for c in columns])


async def orders(conn: psycopg.AsyncConnection, customer_ids: list[str]) -> dict[str, list[Order]]:
    """The ledger's orders in force as placed, by customer."""
    if not customer_ids:
        return {}
    cur = await conn.execute(
        "SELECT customer_id::text, order_id, placed_at, amount, currency FROM orders "
        "WHERE customer_id = ANY(%s::uuid[]) AND status = 'placed' AND placed_at IS NOT NULL",
        (customer_ids,))
    out: dict[str, list[Order]] = {}
    for cid, order_id, placed_at, amount, currency in await cur.fetchall():
        out.setdefault(cid, []).append(Order(order_id, placed_at, Decimal(amount), currency))
    return out


async def history(conn: psycopg.AsyncConnection, customer_id: str, limit: int = 100
                  ) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT change_id::text, kind, old, new, reason, event_id::text, thresholds_version, "
        "model_version, occurred_at FROM customer_changes WHERE customer_id = %s "
        "ORDER BY occurred_at DESC, seq DESC LIMIT %s", (customer_id, limit))
    names = ("change_id", "kind", "old", "new", "reason", "event_id", "thresholds_version",
             "model_version", "occurred_at")
    return [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]

