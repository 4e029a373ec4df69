"""Order ledger read model: table ``orders``, one row per customer id and order id, the state in
force (``fold.merge``) with the event that set it."""

from __future__ import annotations

import psycopg

from projections.orders.fold import OrderState
from projections.sql import pack

DDL = """
CREATE TABLE IF NOT EXISTS orders (
    customer_id uuid        NOT NULL,
    order_id    text        NOT NULL,
    status      text        NOT NULL,   -- placed | cancelled | refunded: the state in force
    amount      numeric     NOT NULL,
    currency    text        NOT NULL,
    occurred_at timestamptz NOT NULL,   -- event time of the state in force
    event_id    uuid        NOT NULL,   -- the event of the state in force
    placed_at   timestamptz,            -- event time of the earliest placement seen
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, order_id)
);
"""

_ARRAY = "string_to_array(%s, chr(31))"  # one packed list (projections.sql) per column
_COLUMNS = "customer_id, order_id, status, amount, currency, occurred_at, event_id, placed_at"
# The columns of an OrderState, times in the log's format (of rows named ``o``).
SELECT = ("o.customer_id::text, o.order_id, o.status, o.amount::text, o.currency, "
          "to_char(o.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
          "o.event_id::text, to_char(o.placed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")


def _state(row: tuple) -> OrderState:
    return OrderState(*row)


async def load(conn: psycopg.AsyncConnection,
               keys: list[tuple[str, str]]) -> dict[tuple[str, str], OrderState]:
    """The stored states of ``(customer_id, order_id)`` keys (those that have a row)."""
    if not keys:
        return {}
    cur = await conn.execute(
        f"SELECT {SELECT} FROM orders o WHERE (customer_id, order_id) IN ("
        f"SELECT c::uuid, o FROM unnest({_ARRAY}, {_ARRAY}) AS k(c, o))",
        (pack([k[0] for k in keys]), pack([k[1] for k in keys])))
    return {(r[0], r[1]): _state(r) for r in await cur.fetchall()}


async def save(conn: psycopg.AsyncConnection, states: list[OrderState]) -> None:
    """Upsert the states in force (one per key)."""
    if not states:
        return
    columns = list(zip(*states, strict=True))
    placed = [t or "" for t in columns[7]]
    await conn.execute(
        f"INSERT INTO orders ({_COLUMNS}) SELECT c::uuid, o, s, a::numeric, cu, t::timestamptz, "
        f"e::uuid, NULLIF(p, '')::timestamptz FROM unnest({', '.join([_ARRAY] * 8)}) "
        "AS v(c, o, s, a, cu, t, e, p) "
        "ON CONFLICT (customer_id, order_id) DO UPDATE SET status = excluded.status, "
        "amount = excluded.amount, currency = excluded.currency, "
        "occurred_at = excluded.occurred_at, event_id = excluded.event_id, "
        "placed_at = excluded.placed_at, updated_at = now()",
        tuple(pack(list(col)) for col in columns[:7]) + (pack(placed),))

