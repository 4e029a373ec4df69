"""Customer value, pure: what a customer's purchases say as of a time, their lifecycle stage, their
tier in the value pyramid, and when the stage would next change if nothing happened.

Purchases come from the order ledger (orders in force as placed), one per customer-day in the
value currency, as the purchase models count them. Everything here is a function of those days,
the time asked about, the active model set and the tier thresholds in force at that time, so the
value row a customer ends with does not depend on the order its events arrived in.

Stages, first rule that holds (``Rules`` holds the thresholds):
- ``prospect``: touchpoints, no purchase;
- ``lapsed``: no purchase for ``lapsed_days``;
- ``at_risk``: no purchase for ``at_risk_days``, or P(alive) at or below ``at_risk_p_alive``;
- ``won_back``: the last purchase came after a gap of ``lapsed_days`` or more;
- ``new``: one purchase day; ``repeat``: more.
Tiers: ``prospect`` without a purchase; ``unranked`` before any thresholds were computed; else
the first tier whose cut the customer's rank value reaches (a value equal to a cut takes the
higher tier, so tied customers share a tier), the last tier otherwise.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import numpy as np

from projections.value.models import BgNbd, GammaGamma, expected_value

DAY_S = 86400.0
WEEK_S = 7 * DAY_S
HORIZON_90D_WEEKS = 90 / 7
TRAILING = timedelta(days=365)
STEP_WEEKS = 4.0  # CLV discounts by 4-week periods: 13 evaluations a year instead of 52
CENTS = Decimal("0.01")
STAGES = ("prospect", "new", "repeat", "at_risk", "lapsed", "won_back")


class Touch(NamedTuple):
    """What the value projection reads of a touchpoint."""

    customer_id: str
    at: datetime
    event_id: str
    order: bool  # an order event, or customers linked into this one: the ledger may have changed


class Rules(NamedTuple):
    at_risk_days: float = 60.0
    lapsed_days: float = 120.0
    at_risk_p_alive: float = 0.3


class Models(NamedTuple):
    """The active model set and how lifetime value is reckoned."""

    version: int
    purchases: BgNbd
    spend: GammaGamma
    horizon_weeks: float
    discount_rate: float


@dataclass(frozen=True)
class Thresholds:
    """One recomputation of the tier cuts (and the RFM quintile cuts) over the population."""

    version: int
    computed_at: datetime
    rank_by: str  # clv | trailing_12m
    model_version: int | None
    cuts: tuple[tuple[str, float], ...]  # (tier, least rank value), from the top; excludes `bottom`
    bottom: str
    quintiles: dict[str, tuple[float, ...]] = field(default_factory=dict)  # recency/frequency/monetary

    def tier_of(self, value: float) -> str:
        for tier, cut in self.cuts:
            if value >= cut:
                return tier
        return self.bottom


def in_force(thresholds: Sequence[Thresholds], at: datetime) -> Thresholds | None:
    """The thresholds in force at ``at``: the latest computed by then. Before the first
    recomputation the first one applies (there is no earlier population to rank against)."""
    if not thresholds:
        return None
    times = [t.computed_at for t in thresholds]
    i = bisect_right(times, at)
    return thresholds[max(i - 1, 0)]


def compute_thresholds(version: int, computed_at: datetime, rank_by: str, model_version: int | None,
                       shares: dict[str, float], values: Sequence[float],
                       rfm: tuple[Sequence[float], Sequence[float], Sequence[float]] | None = None
                       ) -> Thresholds:
    """Cuts that give each tier its share of the ranked customers (``values``: one rank value per
    customer with a purchase). A tier's cut is the value of the customer at the bottom of its
    share; a tier whose cut would be 0 or less is out of reach (nobody is worth a tier for
    nothing)."""
    ranked = sorted(values, reverse=True)
    names = list(shares)
    cuts, share = [], 0.0
    for name in names[:-1]:
        share += shares[name]
        if ranked:
            cut = ranked[max(math.ceil(share * len(ranked) - 1e-9) - 1, 0)]
            cuts.append((name, cut if cut > 0 else math.inf))
        else:
            cuts.append((name, math.inf))
    quintiles = {}
    if rfm is not None:
        for name, column in zip(("recency", "frequency", "monetary"), rfm, strict=True):
            ordered = sorted(column)
            quintiles[name] = tuple(float(np.quantile(ordered, q)) for q in (0.2, 0.4, 0.6, 0.8)) \
                if ordered else ()
    return Thresholds(version, computed_at, rank_by, model_version, tuple(cuts), names[-1], quintiles)


def rfm_scores(thresholds: Thresholds | None, recency_days: float, frequency: int,
               monetary: float) -> dict[str, int] | None:
    """Quintile scores 1-5 (5 best: most recent, most frequent, most spent) by the cuts of the
    thresholds in force; a value equal to a cut scores in the lower quintile."""
    if thresholds is None or not thresholds.quintiles.get("recency"):
        return None
    q = thresholds.quintiles
    return {"recency": 5 - bisect_left(q["recency"], recency_days),
            "frequency": 1 + bisect_left(q["frequency"], frequency),
            "monetary": 1 + bisect_left(q["monetary"], monetary)}


# --- purchases ---------------------------------------------------------------------------------

class Order(NamedTuple):
    """An order in force as placed, from the ledger."""

    order_id: str
    placed_at: datetime
    amount: Decimal
    currency: str


def purchases(orders: Sequence[Order], rates: dict[str, float]
              ) -> tuple[list[tuple[datetime, Decimal]], list[Order]]:
    """Each order's (placing time, value in the value currency), by time; and the orders whose
    currency has no rate (left out)."""
    out, unconverted = [], []
    for o in orders:
        rate = rates.get(o.currency)
        if rate is None:
            unconverted.append(o)
        else:
            out.append((o.placed_at, o.amount * Decimal(str(rate))))
    out.sort(key=lambda p: p[0])
    return out, unconverted


When = datetime | date  # a purchase's time; a date stands for its midnight UTC


def by_day(bought: Sequence[tuple[When, Decimal]], as_of: datetime | None = None
           ) -> list[tuple[date, Decimal]]:
    """One (UTC day, value) per purchase day, sorted, of the purchases made by ``as_of``."""
    days: dict[date, Decimal] = {}
    for when, value in bought:
        if isinstance(when, datetime):
            if as_of is not None and when > as_of:
                continue
            day = when.astimezone(UTC).date()
        else:
            if as_of is not None and _midnight(when) > as_of:
                continue
            day = when
        days[day] = days.get(day, Decimal(0)) + value
    return sorted(days.items())


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


class Facts(NamedTuple):
    """A customer's purchases as of a time: RFM and the purchase models' summary."""

    as_of: datetime
    frequency: int  # purchase days
    first: date | None
    last: date | None
    previous_gap_days: int | None  # days between the last purchase and the one before
    monetary: Decimal  # all purchases
    trailing_12m: Decimal
    x: int  # repeat purchase days
    t_x: float  # weeks, first to last purchase
    T: float  # weeks, first purchase to as_of
    m_x: float  # mean value of the repeat purchase days

    @property
    def recency_days(self) -> float | None:
        return None if self.last is None else (self.as_of - _midnight(self.last)).total_seconds() / DAY_S


def facts(bought: Sequence[tuple[When, Decimal]], as_of: datetime) -> Facts:
    """What the purchases made by ``as_of`` say (later ones had not happened at that time)."""
    upto = by_day(bought, as_of)
    if not upto:
        return Facts(as_of, 0, None, None, None, Decimal(0), Decimal(0), 0, 0.0, 0.0, 0.0)
    first, last = upto[0][0], upto[-1][0]
    repeats = upto[1:]
    trailing_from = as_of - TRAILING
    return Facts(
        as_of, len(upto), first, last,
        (last - upto[-2][0]).days if len(upto) > 1 else None,
        sum((a for _, a in upto), Decimal(0)),
        sum((a for d, a in upto if _midnight(d) > trailing_from), Decimal(0)),
        len(repeats), (last - first).days / 7,
        max((as_of - _midnight(first)).total_seconds() / WEEK_S, (last - first).days / 7),
        float(sum((a for _, a in repeats), Decimal(0)) / len(repeats)) if repeats else 0.0)


def p_alive(model: BgNbd, f: Facts) -> float:
    """P(alive) as of ``f.as_of`` (scalar: the same formula as ``BgNbd.p_alive``)."""
    if f.x == 0:
        return 1.0
    r, alpha, a, b = model.params
    log_odds = (math.log(a) - math.log(b + f.x - 1)
                + (r + f.x) * (math.log(alpha + f.T) - math.log(alpha + f.t_x)))
    return 1.0 / (1.0 + math.exp(log_odds)) if log_odds < 700 else 0.0


def stage(f: Facts, alive: float | None, rules: Rules) -> tuple[str, str]:
    """The lifecycle stage as of ``f.as_of`` and why."""
    if f.frequency == 0:
        return "prospect", "touchpoints but no order yet"
    recency = f.recency_days
    assert recency is not None and f.last is not None
    if recency >= rules.lapsed_days:
        return "lapsed", f"no purchase for {recency:.0f} days (lapsed from {rules.lapsed_days:g})"
    if recency >= rules.at_risk_days:
        return "at_risk", f"no purchase for {recency:.0f} days (at risk from {rules.at_risk_days:g})"
    if alive is not None and f.x > 0 and alive <= rules.at_risk_p_alive:
        return "at_risk", f"P(alive) {alive:.2f}, at or below {rules.at_risk_p_alive:g}"
    if f.previous_gap_days is not None and f.previous_gap_days >= rules.lapsed_days:
        return "won_back", (f"ordered on {f.last.isoformat()} after {f.previous_gap_days} days "
                            "without a purchase")
    if f.frequency == 1:
        return "new", f"one purchase, on {f.last.isoformat()}"
    return "repeat", f"{f.frequency} purchase days, the last on {f.last.isoformat()}"


def review_at(f: Facts, models: Models | None, rules: Rules) -> datetime | None:
    """The next time after ``f.as_of`` at which the stage changes if no purchase comes."""
    if f.last is None:
        return None
    last = _midnight(f.last)
    candidates = [last + timedelta(days=rules.at_risk_days), last + timedelta(days=rules.lapsed_days)]
    if models is not None and f.x > 0 and 0 < rules.at_risk_p_alive < 1:
        # P(alive) falls as T grows: solve 1 / (1 + odds(T)) = p for T (the odds are monotone)
        r, alpha, a, b = models.purchases.params
        odds = (1 - rules.at_risk_p_alive) / rules.at_risk_p_alive
        weeks = (alpha + f.t_x) * (odds * (b + f.x - 1) / a) ** (1 / (r + f.x)) - alpha
        if weeks < 1e5:
            candidates.append(_midnight(f.first) + timedelta(weeks=weeks))  # type: ignore[arg-type]
    later = [math.ceil(c.timestamp()) for c in candidates if c > f.as_of]
    return datetime.fromtimestamp(min(later), UTC) if later else None


# --- figures -----------------------------------------------------------------------------------

class Figures(NamedTuple):
    p_alive: float | None
    expected_purchases_90d: float | None
    expected_order_value: float | None
    clv: float | None


NO_FIGURES = Figures(None, None, None, None)


def figures(models: Models | None, many: Sequence[Facts]) -> list[Figures]:
    """The model's figures for many customers at once (vectorised: one call per batch)."""
    out = [NO_FIGURES] * len(many)
    bought = [i for i, f in enumerate(many) if f.frequency > 0]
    if models is None or not bought:
        return out
    x = np.array([many[i].x for i in bought], dtype=float)
    t_x = np.array([many[i].t_x for i in bought])
    T = np.array([many[i].T for i in bought])
    m_x = np.array([many[i].m_x for i in bought])
    alive = models.purchases.p_alive(x, t_x, T)
    expected = models.purchases.expected_purchases(HORIZON_90D_WEEKS, x, t_x, T)
    aov = models.spend.expected_order_value(x, m_x)
    clv = expected_value(models.purchases, models.spend, x, t_x, T, m_x, models.horizon_weeks,
                         models.discount_rate, STEP_WEEKS)
    for k, i in enumerate(bought):
        out[i] = Figures(float(alive[k]), float(expected[k]), float(aov[k]), float(clv[k]))
    return out


def rank_value(rank_by: str, f: Facts, fig: Figures) -> float:
    if rank_by == "clv" and fig.clv is not None:
        return fig.clv
    return float(f.trailing_12m)


# --- the value row and its changes -------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    """A customer's value row (table ``customer_value``)."""

    customer_id: str
    first_seen: datetime
    as_of: datetime
    facts: Facts
    figures: Figures
    model_version: int | None
    tier: str
    tier_since: datetime
    thresholds_version: int | None
    stage: str
    stage_since: datetime
    stage_reason: str
    review_at: datetime | None
    changes: int = 0  # tier and stage changes so far: the next one is the customer's changes + 1


class Change(NamedTuple):
    """A tier or stage change (topic ``customer-changes``, table ``customer_changes``)."""

    customer_id: str
    kind: str  # tier | stage
    old: str | None
    new: str
    reason: str
    event_id: str | None  # the event that caused it (None: time passing, or a recomputation)
    thresholds_version: int | None
    model_version: int | None
    occurred_at: datetime
    n: int  # the customer's n-th change (1, 2, ...): with the customer, it names the change


@dataclass
class Context:
    rules: Rules
    models: Models | None
    thresholds: list[Thresholds]


class _Decision(NamedTuple):
    at: datetime
    event_id: str | None
    order: bool
    facts: Facts


def plan(ctx: Context, customer_id: str, row: Row | None, days: Sequence[tuple[When, Decimal]],
         touches: Sequence[Touch], until: datetime | None = None, seen: datetime | None = None
         ) -> tuple[Row, list[_Decision]] | None:
    """A customer's decisions: at each touch that may change something (an order; the first touch
    of a customer), in log order, and at each time their stage changes by itself before it or
    before ``until``. Time never runs backwards: an order older than the last decision is decided
    at that decision's time (with the ledger as it now stands). A touch that decides nothing moves
    no time, so the final row is the same whatever order the touches arrive in.
    Returns the row to start from (a prospect's for a new customer) and the decisions, or None
    if there is nothing to write. ``decide`` evaluates the plan with the model's figures.
    ``seen``: when customers linked into this one were first seen (their tenure is its)."""
    first_seen = min([t.at for t in touches] + ([row.first_seen] if row else [])
                     + ([seen] if seen else []))
    as_of = row.as_of if row else first_seen  # the time of the last decision: never goes back
    review = row.review_at if row else None
    out: list[_Decision] = []

    def crossings(upto: datetime) -> None:
        nonlocal review, as_of
        while review is not None and review <= upto:
            f = facts(days, review)
            out.append(_Decision(review, None, False, f))
            as_of, review = review, review_at(f, ctx.models, ctx.rules)

    for t in touches:
        crossings(t.at)
        if t.order or (row is None and not out):
            at = max(as_of, t.at)
            f = facts(days, at)
            out.append(_Decision(at, t.event_id, t.order, f))
            as_of, review = at, review_at(f, ctx.models, ctx.rules)
    if until is not None:
        crossings(until)
    if row is not None:
        if not out and first_seen == row.first_seen:
            return None
        return replace(row, first_seen=first_seen), out
    if not out:
        return None
    start = out[0].at
    return Row(customer_id, first_seen, start, facts((), start), NO_FIGURES, None, "prospect", start,
               None, "prospect", start, "touchpoints but no order yet", None), out


def decide(ctx: Context, row: Row, plan: Sequence[_Decision], figs: Sequence[Figures]
           ) -> tuple[Row, list[Change]]:
    """Evaluate a plan (``figs``: the model's figures at each decision) into the final row and the
    changes on the way. Tiers are decided at orders (by the thresholds in force then); stages at
    every decision. Every customer starts as a prospect (``plan``'s starting row) without a
    change: a customer's first change leaves ``prospect``."""
    changes: list[Change] = []
    model_version = ctx.models.version if ctx.models else None
    for d, fig in zip(plan, figs, strict=True):
        name, reason = stage(d.facts, fig.p_alive, ctx.rules)
        stage_since, n = row.stage_since, row.changes
        if name != row.stage:
            n += 1
            changes.append(Change(row.customer_id, "stage", row.stage, name, reason, d.event_id,
                                  row.thresholds_version, model_version, d.at, n))
            stage_since = d.at
        tier, version, tier_since = row.tier, row.thresholds_version, row.tier_since
        if d.facts.frequency == 0:
            tier = "prospect"
        elif d.order:
            th = in_force(ctx.thresholds, d.at)
            if th is None:
                tier, version = "unranked", None
            else:
                value = rank_value(th.rank_by, d.facts, fig)
                tier, version = th.tier_of(value), th.version
        if tier != row.tier:
            n += 1
            changes.append(Change(row.customer_id, "tier", row.tier, tier,
                                  tier_reason(ctx, version, d, fig), d.event_id, version,
                                  model_version, d.at, n))
            tier_since = d.at
        row = replace(row, stage=name, stage_since=stage_since, stage_reason=reason, tier=tier,
                      tier_since=tier_since, changes=n, thresholds_version=version, as_of=d.at,
                      facts=d.facts, figures=fig, model_version=model_version,
                      review_at=review_at(d.facts, ctx.models, ctx.rules))
    return row, changes


def tier_reason(ctx: Context, version: int | None, d: _Decision, fig: Figures) -> str:
    if d.facts.frequency == 0:
        return "no purchase"
    th = next((t for t in ctx.thresholds if t.version == version), None)
    if th is None:
        return "no tier thresholds computed yet"
    value = rank_value(th.rank_by, d.facts, fig)
    cut = dict(th.cuts).get(th.tier_of(value))
    reach = f"reaches the {th.tier_of(value)} cut {cut:,.2f}" if cut is not None \
        else "is below every cut"
    return f"{th.rank_by} {value:,.2f} {reach} (thresholds v{th.version})"


def retier(ctx: Context, row: Row, th: Thresholds, f: Facts, fig: Figures) -> tuple[Row, list[Change]]:
    """Re-decide a customer's tier as of a recomputation of the thresholds."""
    model_version = ctx.models.version if ctx.models else None
    tier = "prospect" if f.frequency == 0 else th.tier_of(rank_value(th.rank_by, f, fig))
    row = replace(row, as_of=max(row.as_of, f.as_of), facts=f, figures=fig,
                  model_version=model_version, thresholds_version=th.version)
    if tier == row.tier:
        return row, []
    d = _Decision(f.as_of, None, False, f)
    change = Change(row.customer_id, "tier", row.tier, tier,
                    f"recomputed: {tier_reason(ctx, th.version, d, fig)}", None, th.version,
                    model_version, th.computed_at, row.changes + 1)
    return replace(row, tier=tier, tier_since=th.computed_at, changes=row.changes + 1), [change]


def explain(row: Row, orders: Sequence[Order], unconverted: Sequence[Order], models: Models | None,
            th: Thresholds | None, currency: str, rates: dict[str, float]) -> dict[str, Any]:
    """Which inputs produced each figure of a value answer."""
    f = row.facts
    out: dict[str, Any] = {
        "as_of": row.as_of.isoformat(),
        "orders": [{"order_id": o.order_id, "placed_at": o.placed_at.isoformat(),
                    "amount": str(o.amount), "currency": o.currency,
                    "value": str(o.amount * Decimal(str(rates[o.currency])))}
                   for o in orders if o.currency in rates],
        "orders_without_rate": [o.order_id for o in unconverted],
        "currency": currency,
        "purchase_days": f.frequency,
        "rfm": "recency: days since the last purchase day; frequency: purchase days (several "
               "orders on one day are one purchase); monetary: their total value",
        "model_inputs": {"x": f.x, "t_x_weeks": round(f.t_x, 4), "T_weeks": round(f.T, 4),
                         "m_x": round(f.m_x, 2)},
        "stage": row.stage_reason,
    }
    if models is not None:
        out["model"] = {
            "version": models.version,
            "bgnbd": dict(zip(models.purchases.PARAMS, models.purchases.params, strict=True)),
            "gamma_gamma": dict(zip(models.spend.PARAMS, models.spend.params, strict=True)),
            "p_alive": "BG/NBD P(alive | x, t_x, T) (Fader, Hardie and Lee 2008)",
            "expected_purchases_90d": "BG/NBD E[Y(90 days) | x, t_x, T] (FHL 2005a, eq. 10)",
            "expected_order_value": "Gamma-Gamma E[M | x, m_x] (Fader and Hardie 2013)",
            "clv": (f"E[M] x purchases expected over {models.horizon_weeks:g} weeks, discounted "
                    f"at {models.discount_rate:.0%} a year by {STEP_WEEKS:g}-week periods"),
        }
    else:
        out["model"] = None
    if th is not None:
        out["tier"] = {"thresholds_version": th.version, "computed_at": th.computed_at.isoformat(),
                       "rank_by": th.rank_by, "cuts": dict(th.cuts), "bottom": th.bottom}
    return out
