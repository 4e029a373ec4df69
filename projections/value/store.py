"""Fitted purchase and spend models in PostgreSQL: every parameter set kept, one of them active.

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


async def ledger_transactions(conn: psycopg.AsyncConnection) -> list[Transaction]:
    """The purchases the order ledger knows: each order in force (placed) on the day it was first
    placed (UTC), by customer. Cancelled and refunded orders are not purchases."""
    cur = await conn.execute(
        "SELECT customer_id::text, (placed_at AT TIME ZONE 'UTC')::date, amount FROM orders "
        "WHERE status = 'placed' AND placed_at IS NOT NULL")
    return [Transaction(c, d, Decimal(a)) for c, d, a in await cur.fetchall()]
