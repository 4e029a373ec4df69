"""HTTP door out: customer value, segments and the value pyramid.

A customer's value is answered as of the moment of the request: the figures are recomputed from
the order ledger with the active model set (P(alive) falls while a customer is silent), and the
stage is the one the stored row reaches when the time since its last decision is applied. The
tier is the one last decided (at an order, or at a recomputation of the thresholds).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Request

from projections.value import fold, load_context, rows
from services.api.customers import Conn, _cluster, profile_of

router = APIRouter(tags=["value"])
SORTS = {  # sort key: (SQL expression, direction)
    "value": ("coalesce(clv, trailing_12m::float8, 0)", "DESC"),
    "p_alive": ("coalesce(p_alive, 1)", "ASC"),
    "recency": ("coalesce(last_purchase, DATE '9999-12-31')::timestamptz", "ASC"),
}


def _rules(request: Request) -> fold.Rules:
    s = request.app.state.settings
    return fold.Rules(s.value_at_risk_days, s.value_lapsed_days, s.value_at_risk_p_alive)


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _round(v: float | None, digits: int = 4) -> float | None:
    return None if v is None else round(v, digits)


@router.get("/v1/customers/{customer_id}/value")
async def read_value(customer_id: str, conn: Conn, request: Request) -> dict[str, Any]:
    """RFM and scores, P(alive), expected purchases, lifetime value, tier, stage, satisfaction,
    model version, an explanation of each figure, and the tier and stage history."""
    settings = request.app.state.settings
    root, members = await _cluster(conn, customer_id)
    held = await rows.load(conn, members, lock=False)
    # the cluster's row (its canonical id's), or a member's not yet taken into it
    row = held.get(root) or held.get(customer_id) or next(iter(held.values()), None)
    if row is None:
        raise HTTPException(404, {"error": "no value yet for this customer", "customer_id": customer_id})
    now = datetime.now(UTC)
    ctx = await load_context(conn, settings, _rules(request))
    rates = dict(settings.value_rates)
    orders = (await rows.orders(conn, [row.customer_id])).get(row.customer_id, [])
    days, unconverted = fold.purchases(orders, rates)
    planned = fold.plan(ctx, row.customer_id, row, days, [], until=now)
    if planned is not None and planned[1]:
        start, decisions = planned
        row, _ = fold.decide(ctx, start, decisions, fold.figures(ctx.models, [d.facts for d in decisions]))
    f = fold.facts(days, max(now, row.as_of))
    fig = fold.figures(ctx.models, [f])[0]
    th = fold.in_force(ctx.thresholds, now)
    recency = f.recency_days
    profile = await profile_of(conn, row.customer_id)
    return {
        "customer_id": row.customer_id,
        "as_of": _iso(f.as_of),
        "currency": settings.value_currency,
        "rfm": {"recency_days": _round(recency, 2), "frequency": f.frequency,
                "monetary": str(f.monetary.quantize(fold.CENTS)),
                "scores": fold.rfm_scores(th, recency, f.frequency, float(f.monetary))
                if recency is not None else None},
        "repeat_buyer": f.frequency > 1,
        "tenure_days": round((now - row.first_seen).total_seconds() / fold.DAY_S, 2),
        "first_seen": _iso(row.first_seen),
        "trailing_12m": str(f.trailing_12m.quantize(fold.CENTS)),
        "p_alive": _round(fig.p_alive),
        "expected_purchases_90d": _round(fig.expected_purchases_90d),
        "expected_order_value": _round(fig.expected_order_value, 2),
        "clv": _round(fig.clv, 2),
        "clv_horizon_weeks": settings.value_horizon_weeks,
        "discount_rate": settings.value_discount_rate,
        "model_version": ctx.models.version if ctx.models else None,
        "tier": row.tier, "tier_since": _iso(row.tier_since),
        "thresholds_version": row.thresholds_version,
        "stage": row.stage, "stage_since": _iso(row.stage_since), "stage_reason": row.stage_reason,
        "satisfaction": profile["satisfaction"] if profile else None,
        "explain": fold.explain(replace(row, facts=f, as_of=f.as_of), orders, unconverted,
                                ctx.models, th, settings.value_currency, rates),
        "history": [{**h, "change_id": h["change_id"], "occurred_at": _iso(h["occurred_at"])}
                    for h in await rows.history(conn, row.customer_id)],
    }


def _cursor(text: str | None) -> tuple[Any, str] | None:
    if not text:
        return None
    try:
        value, cid = orjson.loads(base64.urlsafe_b64decode(text.encode()))
        return value, str(cid)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise HTTPException(400, {"error": "not a cursor from this list", "field": "cursor"}) from None


def _split(values: list[str] | None, allowed: set[str], field: str) -> list[str] | None:
    if not values:
        return None
    out = [v for s in values for v in s.split(",") if v]
    bad = [v for v in out if v not in allowed]
    if bad:
        raise HTTPException(400, {"error": f"unknown {field}: {', '.join(bad)}; one of "
                                           f"{', '.join(sorted(allowed))}", "field": field})
    return out


@router.get("/v1/segments")
async def list_segment(
    conn: Conn, request: Request,
    tier: Annotated[list[str] | None, Query()] = None,
    stage: Annotated[list[str] | None, Query()] = None,
    min_value: Annotated[float | None, Query(ge=0)] = None,
    sort: Annotated[str, Query(pattern="^(value|p_alive|recency)$")] = "value",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Customers by tier and stage, most valuable first (``sort=value``), least likely alive
    first (``p_alive``) or longest without a purchase first (``recency``); comma lists allowed.
    The figures are those of each row's last decision (``as_of``); ``/value`` re-ages one."""
    settings = request.app.state.settings
    tiers = _split(tier, {*settings.value_tiers, "prospect", "unranked"}, "tier")
    stages = _split(stage, set(fold.STAGES), "stage")
    expr, direction = SORTS[sort]
    where, args = [], []
    if tiers:
        where.append("tier = ANY(%s)")
        args.append(tiers)
    if stages:
        where.append("stage = ANY(%s)")
        args.append(stages)
    if min_value is not None:
        where.append(f"{SORTS['value'][0]} >= %s")
        args.append(min_value)
    after = _cursor(cursor)
    if after is not None:
        op = "<" if direction == "DESC" else ">"
        where.append(f"({expr}, customer_id) {op} (%s, %s::uuid)" if sort != "recency"
                     else f"({expr}, customer_id) {op} (%s::timestamptz, %s::uuid)")
        args += list(after)
    sql = (f"SELECT customer_id::text, tier, stage, stage_reason, clv, p_alive, "
           f"expected_purchases_90d, frequency, monetary, trailing_12m, last_purchase, as_of, "
           f"{expr} AS sort_key FROM customer_value "
           f"{'WHERE ' + ' AND '.join(where) if where else ''} "
           f"ORDER BY {expr} {direction}, customer_id {direction} LIMIT %s")
    cur = await conn.execute(sql, [*args, limit + 1])
    found = await cur.fetchall()
    now = datetime.now(UTC)
    items = [{"customer_id": r[0], "tier": r[1], "stage": r[2], "stage_reason": r[3],
              "clv": _round(r[4], 2), "p_alive": _round(r[5]),
              "expected_purchases_90d": _round(r[6]), "frequency": r[7],
              "monetary": str(r[8].quantize(fold.CENTS)),
              "trailing_12m": str(r[9].quantize(fold.CENTS)),
              "recency_days": None if r[10] is None else
              (now.date() - r[10]).days, "as_of": _iso(r[11])} for r in found[:limit]]
    next_cursor = None
    if len(found) > limit:
        last = found[limit - 1]
        key = last[12].isoformat() if isinstance(last[12], datetime) else last[12]
        next_cursor = base64.urlsafe_b64encode(orjson.dumps([key, last[0]])).decode()
    return {"items": items, "next_cursor": next_cursor, "currency": settings.value_currency,
            "sort": sort}


@router.get("/v1/value/pareto")
async def read_pareto(conn: Conn, request: Request) -> dict[str, Any]:
    """The share of value each tier holds, and the share of the top 20% of customers, by expected
    lifetime value (the rank value, ``clv``) and by spend so far (``monetary``); customers per
    lifecycle stage."""
    settings = request.app.state.settings
    cur = await conn.execute(
        "SELECT tier, count(*), coalesce(sum(clv), 0), coalesce(sum(monetary), 0)::float8 "
        "FROM customer_value GROUP BY tier")
    tiers = {t: (n, clv, spend) for t, n, clv, spend in await cur.fetchall()}
    cur = await conn.execute(
        "WITH ranked AS (SELECT clv, monetary::float8 AS spend, "
        "row_number() OVER (ORDER BY coalesce(clv, 0) DESC, customer_id) AS by_clv, "
        "row_number() OVER (ORDER BY monetary DESC, customer_id) AS by_spend, "
        "count(*) OVER () AS n FROM customer_value WHERE frequency > 0) "
        "SELECT coalesce(sum(clv) FILTER (WHERE by_clv <= ceil(n * 0.2)), 0), "
        "coalesce(sum(clv), 0), coalesce(sum(spend) FILTER (WHERE by_spend <= ceil(n * 0.2)), 0), "
        "coalesce(sum(spend), 0), count(*) FROM ranked")
    top_clv, all_clv, top_spend, all_spend, buyers = await cur.fetchone()
    cur = await conn.execute("SELECT stage, count(*) FROM customer_value GROUP BY stage")
    stages = dict(await cur.fetchall())
    th = await conn.execute("SELECT version, computed_at FROM value_thresholds ORDER BY version DESC LIMIT 1")
    latest = await th.fetchone()
    order = [*settings.value_tiers, "unranked", "prospect"]

    def share(part: float, whole: float) -> float | None:
        return round(part / whole, 4) if whole else None

    return {
        "currency": settings.value_currency,
        "customers": sum(n for n, _, _ in tiers.values()), "buyers": buyers,
        "thresholds_version": latest[0] if latest else None,
        "thresholds_computed_at": _iso(latest[1]) if latest else None,
        "tiers": [{"tier": t, "customers": n, "clv": round(clv, 2), "clv_share": share(clv, all_clv),
                   "spend": round(spend, 2), "spend_share": share(spend, all_spend)}
                  for t in order for n, clv, spend in [tiers.get(t, (0, 0.0, 0.0))]],  # every tier
        "stages": {st: stages[st] for st in fold.STAGES if st in stages},
        "top_20_percent": {"customers": -(-buyers * 2 // 10) if buyers else 0,
                           "clv_share": share(top_clv, all_clv),
                           "spend_share": share(top_spend, all_spend)},
    }
