"""Fitted purchase and spend models in PostgreSQL: every parameter set kept, one of them active.

Model sets and tier thresholds are shared by every schema a projection is built into (a rebuild
must rank customers by the same thresholds to give the same tiers); the value rows themselves are
the projection's (``projections.value.rows``).

A fit is stored with what it saw (customers, repeat buyers, where the transactions came from, the
calibration end) and how it went (log-likelihood, standard errors, iterations, fit time: in each
model's document). Activating a set deactivates the one before in the same transaction, so
readers always find exactly one active set once any was fitted; processors read the active
version and notice a new one without restarting.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import psycopg
from psycopg.types.json import Jsonb

from projections.value.fold import Thresholds
from projections.value.models import BgNbd, GammaGamma, Transaction

DDL = """
CREATE TABLE IF NOT EXISTS value_models (
    version         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fitted_at       timestamptz NOT NULL DEFAULT now(),
    calibration_end date        NOT NULL,
    purchases       jsonb       NOT NULL,   -- BG/NBD: parameters and fit (BgNbd.to_dict)
    spend           jsonb       NOT NULL,   -- Gamma-Gamma: parameters and fit
    data            jsonb       NOT NULL,   -- what the fit saw: source, customers, repeat buyers
    active          boolean     NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX IF NOT EXISTS value_models_one_active ON value_models (active) WHERE active;
CREATE TABLE IF NOT EXISTS value_thresholds (
    version        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    computed_at    timestamptz NOT NULL,
    rank_by        text        NOT NULL,   -- clv | trailing_12m
    model_version  bigint REFERENCES value_models (version),
    customers      integer     NOT NULL,   -- ranked customers (those with a purchase)
    cuts           jsonb       NOT NULL,   -- [[tier, least rank value], ...] from the top
    bottom         text        NOT NULL,   -- the tier of everyone below the last cut
    quintiles      jsonb       NOT NULL    -- RFM quintile cuts: {recency: [4], frequency, monetary}
);
-- computed_at is the jobs' time (event time while a backlog is worked off); this, the wall clock
ALTER TABLE value_thresholds ADD COLUMN IF NOT EXISTS recorded_at timestamptz NOT NULL DEFAULT now();
"""


class ModelSet(NamedTuple):
    version: int
    fitted_at: datetime
    calibration_end: date
    purchases: BgNbd
    spend: GammaGamma
    data: dict[str, Any]
    active: bool


_COLUMNS = "version, fitted_at, calibration_end, purchases, spend, data, active"


def _model_set(row: tuple) -> ModelSet:
    version, fitted_at, calibration_end, purchases, spend, data, active = row
    return ModelSet(version, fitted_at, calibration_end, BgNbd.from_dict(purchases),
                    GammaGamma.from_dict(spend), data, active)


async def save(conn: psycopg.AsyncConnection, calibration_end: date, purchases: BgNbd,
               spend: GammaGamma, data: dict[str, Any], activate: bool = True) -> int:
    """Keep a fitted set (and make it the active one); its version."""
    async with conn.transaction():
        if activate:
            await conn.execute("UPDATE value_models SET active = false WHERE active")
        cur = await conn.execute(
            "INSERT INTO value_models (calibration_end, purchases, spend, data, active) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING version",
            (calibration_end, Jsonb(purchases.to_dict()), Jsonb(spend.to_dict()), Jsonb(data),
             activate))
        return (await cur.fetchone())[0]


async def activate(conn: psycopg.AsyncConnection, version: int) -> None:
    """Make a stored set the active one (raises LookupError for an unknown version)."""
    async with conn.transaction():
        await conn.execute("UPDATE value_models SET active = false WHERE active")
        cur = await conn.execute("UPDATE value_models SET active = true WHERE version = %s", (version,))
        if cur.rowcount != 1:
            raise LookupError(f"no model set of version {version}")


async def active(conn: psycopg.AsyncConnection) -> ModelSet | None:
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM value_models WHERE active")
    row = await cur.fetchone()
    return _model_set(row) if row else None


async def history(conn: psycopg.AsyncConnection, limit: int = 20) -> list[ModelSet]:
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM value_models ORDER BY version DESC LIMIT %s",
                             (limit,))
    return [_model_set(r) for r in await cur.fetchall()]


async def ledger_transactions(conn: psycopg.AsyncConnection,
                              rates: dict[str, float] | None = None) -> list[Transaction]:
    """The purchases the order ledger knows: each order in force (placed) on the day it was first
    placed (UTC), by customer, converted at ``rates`` (orders in a currency without one are left
    out; no rates: amounts as they are). Cancelled and refunded orders are not purchases."""
    cur = await conn.execute(
        "SELECT customer_id::text, (placed_at AT TIME ZONE 'UTC')::date, amount, currency FROM orders "
        "WHERE status = 'placed' AND placed_at IS NOT NULL")
    if rates is None:
        return [Transaction(c, d, Decimal(a)) for c, d, a, _ in await cur.fetchall()]
    factor = {k: Decimal(str(v)) for k, v in rates.items()}
    return [Transaction(c, d, Decimal(a) * factor[cur_]) for c, d, a, cur_ in await cur.fetchall()
            if cur_ in factor]


async def save_thresholds(conn: psycopg.AsyncConnection, th: Thresholds, customers: int) -> int:
    """Record a recomputation of the tier cuts; its version."""
    cur = await conn.execute(
        "INSERT INTO value_thresholds (computed_at, rank_by, model_version, customers, cuts, bottom, "
        "quintiles) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING version",
        (th.computed_at, th.rank_by, th.model_version, customers,
         Jsonb([[t, c if c != float("inf") else None] for t, c in th.cuts]), th.bottom,
         Jsonb({k: list(v) for k, v in th.quintiles.items()})))
    return (await cur.fetchone())[0]


async def ranked_within(conn: psycopg.AsyncConnection, seconds: float, caught_up: bool) -> bool:
    """Whether any worker's jobs recorded a recomputation less than ``seconds`` ago by the wall
    clock; once the log is ``caught_up``, only one made then counts, not one made while a backlog
    was worked off (computed at a time more than ``seconds`` behind its recording: on a
    population and figures the rest of the backlog has changed since)."""
    cur = await conn.execute("SELECT EXISTS (SELECT FROM value_thresholds WHERE recorded_at > "
                             "now() - make_interval(secs => %(s)s) AND (NOT %(caught_up)s OR "
                             "computed_at >= recorded_at - make_interval(secs => %(s)s)))",
                             {"s": seconds, "caught_up": caught_up})
    return bool((await cur.fetchone())[0])


async def thresholds(conn: psycopg.AsyncConnection, limit: int | None = None) -> list[Thresholds]:
    """Recorded recomputations, oldest first (the last ``limit`` of them if given)."""
    cur = await conn.execute(
        "SELECT * FROM (SELECT version, computed_at, rank_by, model_version, cuts, bottom, quintiles "
        "FROM value_thresholds ORDER BY version DESC LIMIT %s) t ORDER BY version", (limit,))
    return [Thresholds(v, at, rank_by, mv,
                       tuple((t, float("inf") if c is None else float(c)) for t, c in cuts), bottom,
                       {k: tuple(q) for k, q in quintiles.items()})
            for v, at, rank_by, mv, cuts, bottom, quintiles in await cur.fetchall()]


async def versions(conn: psycopg.AsyncConnection) -> tuple[int | None, int | None]:
    """The active model version and the latest thresholds version (None: none yet)."""
    cur = await conn.execute("SELECT (SELECT version FROM value_models WHERE active), "
                             "(SELECT max(version) FROM value_thresholds)")
    return await cur.fetchone()
