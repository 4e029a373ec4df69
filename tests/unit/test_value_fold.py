"""Customer value, pure: purchase days, facts, P(alive), lifecycle stages and when they change by
themselves, tier thresholds, and the plan/decide pair that turns a customer's touches into a value
row and its tier/stage changes (no database)."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from projections.sql import copy_field
from projections.value import fold
from projections.value import rows as value_rows
from projections.value.fold import Change, Context, Order, Row, Rules, Thresholds, Touch
from projections.value.models import BgNbd, GammaGamma

# --- helpers -----------------------------------------------------------------------------------

D0 = date(2024, 1, 1)
RULES = Rules(at_risk_days=60, lapsed_days=120, at_risk_p_alive=0.3)
PURCHASES = BgNbd(r=0.243, alpha=4.414, a=0.793, b=2.426)  # FHL 2005a, CDNOW
SPEND = GammaGamma(p=6.25, q=3.74, gamma=15.44)
MODELS = fold.Models(version=1, purchases=PURCHASES, spend=SPEND, horizon_weeks=52,
                     discount_rate=0.1)
SHARES = {"platinum": 0.01, "gold": 0.04, "silver": 0.15, "bronze": 0.8}
ONE_SECOND = timedelta(seconds=1)


def midnight(n: float) -> datetime:
    """Midnight UTC of day D0 + n."""
    return datetime(D0.year, D0.month, D0.day, tzinfo=UTC) + timedelta(days=n)


def noon(n: float) -> datetime:
    return midnight(n) + timedelta(hours=12)


def days_at(*offsets: int, amount: str = "10") -> list[tuple[date, Decimal]]:
    """Purchase days D0 + offset, each worth ``amount``."""
    return [(D0 + timedelta(days=n), Decimal(amount)) for n in offsets]


def history(x: int, t_x: float, T: float) -> fold.Facts:
    """Facts that carry just a purchase history (x, t_x, T), for the P(alive) formulas."""
    return fold.Facts(noon(0), x + 1, D0, D0, None, Decimal(0), Decimal(0), x, t_x, T, 0.0)


def view(n: float, event_id: str = "view") -> Touch:
    return Touch("c-1", noon(n), event_id, False)


def order(n: float, event_id: str = "order") -> Touch:
    return Touch("c-1", noon(n), event_id, True)


def thresholds(version: int, computed_at: datetime, cuts: dict[str, float],
               rank_by: str = "trailing_12m", bottom: str = "bronze") -> Thresholds:
    return Thresholds(version, computed_at, rank_by, None, tuple(cuts.items()), bottom)


def context(models: fold.Models | None = None, tiers: Sequence[Thresholds] = ()) -> Context:
    return Context(RULES, models, list(tiers))


def run(ctx: Context, touches: Sequence[Touch], days: Sequence[tuple[date, Decimal]],
        row: Row | None = None, until: datetime | None = None) -> tuple[Row | None, list[Change]]:
    """One customer through plan and decide, with the figures computed as ``apply`` does."""
    planned = fold.plan(ctx, "c-1", row, days, touches, until)
    if planned is None:
        return row, []
    start, decisions = planned
    figs = fold.figures(ctx.models, [d.facts for d in decisions])
    return fold.decide(ctx, start, decisions, figs)


def moves(changes: Sequence[Change], kind: str) -> list[tuple[str | None, str]]:
    return [(c.old, c.new) for c in changes if c.kind == kind]


def stage_at(days: Sequence[tuple[date, Decimal]], at: datetime,
             models: fold.Models | None = None) -> tuple[str, str]:
    f = fold.facts(days, at)
    alive = fold.figures(models, [f])[0].p_alive
    return fold.stage(f, alive, RULES)


def final(row: Row) -> tuple[object, ...]:
    """What a final row must agree on whatever the arrival order (not its history fields)."""
    return row.tier, row.thresholds_version, row.stage, row.facts, row.figures, row.review_at


# --- purchase days -----------------------------------------------------------------------------

def test_orders_on_one_utc_day_are_one_purchase_day_with_their_value_summed() -> None:
    orders = [  # unsorted; the UTC day decides, not the local one
        Order("o-3", datetime.fromisoformat("2024-03-02T10:00:00+00:00"), Decimal("7"), "EUR"),
        Order("o-1", datetime.fromisoformat("2024-03-01T00:00:00+00:00"), Decimal("10.00"), "EUR"),
        Order("o-2", datetime.fromisoformat("2024-03-01T18:59:00-05:00"), Decimal("5.50"), "EUR"),
        Order("o-4", datetime.fromisoformat("2024-03-02T00:30:00+02:00"), Decimal("4.50"), "EUR"),
        Order("o-5", datetime.fromisoformat("2024-03-01T23:00:00-02:00"), Decimal("2"), "EUR"),
    ]
    bought, unconverted = fold.purchases(orders, {"EUR": 1.0})
    assert fold.by_day(bought) == [(date(2024, 3, 1), Decimal("20.00")), (date(2024, 3, 2), Decimal("9"))]
    assert unconverted == []


def test_orders_are_converted_to_the_value_currency_by_the_rates() -> None:
    orders = [Order("o-1", noon(0), Decimal("10"), "USD"), Order("o-2", noon(0), Decimal("3"), "EUR"),
              Order("o-3", noon(1), Decimal("100"), "SEK")]
    bought, _ = fold.purchases(orders, {"EUR": 1.0, "USD": 0.9, "SEK": 0.087})
    assert fold.by_day(bought) == [(D0, Decimal("12")), (D0 + timedelta(days=1), Decimal("8.7"))]


def test_orders_in_a_currency_without_a_rate_are_returned_apart() -> None:
    kept = Order("o-1", noon(0), Decimal("10"), "EUR")
    odd = [Order("o-2", noon(0), Decimal("99"), "XYZ"), Order("o-3", noon(5), Decimal("1"), "GBP")]
    bought, unconverted = fold.purchases([odd[0], kept, odd[1]], {"EUR": 1.0})
    assert fold.by_day(bought) == [(D0, Decimal("10"))]
    assert unconverted == odd


# --- facts -------------------------------------------------------------------------------------

def test_facts_summarise_the_purchase_days_for_rfm_and_the_models() -> None:
    days = days_at(0, amount="100") + days_at(14, amount="40") + days_at(35, amount="60")
    f = fold.facts(days, noon(49))
    assert (f.frequency, f.first, f.last, f.previous_gap_days) == (3, D0, D0 + timedelta(35), 21)
    assert f.monetary == Decimal("200")
    assert f.x == 2  # repeat days: the first is the trial
    # weeks: t_x from the first purchase day to the last, T from the first day's midnight to as_of
    assert (f.t_x, f.T) == pytest.approx((5.0, 49.5 / 7))
    assert f.m_x == pytest.approx(50.0)  # mean of the repeat days only: (40 + 60) / 2
    assert f.recency_days == pytest.approx(14.5)  # from the last day's midnight UTC


def test_facts_without_purchases_are_empty() -> None:
    f = fold.facts([], noon(3))
    assert (f.frequency, f.first, f.last, f.recency_days, f.x, f.T) == (0, None, None, None, 0, 0.0)
    assert f.monetary == f.trailing_12m == Decimal(0)


def test_trailing_12m_counts_only_the_last_365_days() -> None:
    days = days_at(0, amount="100") + days_at(300, amount="20") + days_at(400, amount="5")
    f = fold.facts(days, noon(400))
    assert f.monetary == Decimal("125")
    assert f.trailing_12m == Decimal("25")


def test_facts_as_of_an_earlier_time_ignore_the_later_days() -> None:
    days = days_at(0, 10, 20, 30)
    assert fold.facts(days, noon(15)) == fold.facts(days_at(0, 10), noon(15))
    assert fold.facts(days, noon(15)).frequency == 2


# --- P(alive) ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("x", "t_x", "T"), [
    (1, 2.0, 10.0), (3, 5.0, 5.0), (5, 10.0, 40.0), (10, 30.0, 31.0), (2, 1.0, 80.0), (40, 52.0, 60.0),
])
def test_scalar_p_alive_is_the_models_p_alive(x: int, t_x: float, T: float) -> None:
    expected = float(PURCHASES.p_alive(x, t_x, T))
    assert fold.p_alive(PURCHASES, history(x, t_x, T)) == pytest.approx(expected, rel=1e-12, abs=1e-300)


def test_p_alive_is_one_without_a_repeat_purchase() -> None:
    assert fold.p_alive(PURCHASES, history(0, 0.0, 100.0)) == 1.0
    assert float(PURCHASES.p_alive(0, 0.0, 100.0)) == 1.0


# --- lifecycle stages --------------------------------------------------------------------------

def test_a_customer_without_a_purchase_is_a_prospect() -> None:
    assert stage_at([], noon(0))[0] == "prospect"


def test_one_purchase_day_is_new_and_more_are_repeat() -> None:
    assert stage_at(days_at(0), noon(10))[0] == "new"
    assert stage_at(days_at(0, 5), noon(10))[0] == "repeat"


def test_at_risk_from_exactly_at_risk_days_after_the_last_purchase_days_midnight() -> None:
    days = days_at(0, 5)
    assert stage_at(days, midnight(65) - ONE_SECOND)[0] == "repeat"
    assert stage_at(days, midnight(65))[0] == "at_risk"
    assert stage_at(days_at(0), midnight(60))[0] == "at_risk"  # a new customer too


def test_lapsed_from_exactly_lapsed_days() -> None:
    days = days_at(0, 5)
    assert stage_at(days, midnight(125) - ONE_SECOND)[0] == "at_risk"
    assert stage_at(days, midnight(125))[0] == "lapsed"


def test_at_risk_when_p_alive_is_at_or_below_the_threshold() -> None:
    f = fold.facts(days_at(0, 5, 10), noon(12))
    assert fold.stage(f, 0.3, RULES)[0] == "at_risk"
    assert "P(alive)" in fold.stage(f, 0.3, RULES)[1]
    assert fold.stage(f, 0.3001, RULES)[0] == "repeat"
    assert fold.stage(f, None, RULES)[0] == "repeat"  # no model: no P(alive) rule


def test_p_alive_does_not_put_a_customer_without_a_repeat_at_risk() -> None:
    f = fold.facts(days_at(0), noon(3))
    assert fold.stage(f, 0.0, RULES)[0] == "new"


def test_recency_comes_before_p_alive_and_lapsed_before_at_risk() -> None:
    days = days_at(0, 5)
    assert fold.stage(fold.facts(days, noon(70)), 0.01, RULES)[1].startswith("no purchase for")
    assert fold.stage(fold.facts(days, noon(200)), 0.01, RULES)[0] == "lapsed"


def test_a_purchase_after_a_gap_of_lapsed_days_or_more_is_won_back() -> None:
    assert stage_at(days_at(0, 120), noon(121))[0] == "won_back"  # exactly lapsed_days
    assert stage_at(days_at(0, 119), noon(121))[0] == "repeat"
    assert stage_at(days_at(0, 5, 200), noon(201))[0] == "won_back"


def test_won_back_becomes_repeat_on_the_next_regular_purchase() -> None:
    assert stage_at(days_at(0, 130, 140), noon(141))[0] == "repeat"


def test_a_customers_life_through_every_stage() -> None:
    """prospect -> new -> repeat -> at_risk -> (order) repeat -> at_risk -> lapsed -> won_back
    -> repeat, the time-driven changes dated when they happen and caused by no event."""
    touches = [view(0, "v"), order(1, "o1"), order(10, "o2"), order(75, "o3"), order(200, "o4"),
               order(210, "o5")]
    row, changes = run(context(), touches, days_at(1, 10, 75, 200, 210), until=noon(215))
    stages = [(c.old, c.new, c.event_id, c.occurred_at) for c in changes if c.kind == "stage"]
    assert stages == [
        ("prospect", "new", "o1", noon(1)),
        ("new", "repeat", "o2", noon(10)),
        ("repeat", "at_risk", None, midnight(70)),
        ("at_risk", "repeat", "o3", noon(75)),
        ("repeat", "at_risk", None, midnight(135)),
        ("at_risk", "lapsed", None, midnight(195)),
        ("lapsed", "won_back", "o4", noon(200)),
        ("won_back", "repeat", "o5", noon(210)),
    ]
    assert row is not None and row.stage == "repeat" and row.stage_since == noon(210)


# --- when the stage changes by itself ----------------------------------------------------------

def test_review_at_is_at_risk_days_then_lapsed_days_after_the_last_purchase_days_midnight() -> None:
    days = days_at(0, 5)
    first = fold.review_at(fold.facts(days, noon(6)), None, RULES)
    assert first == midnight(65)
    assert stage_at(days, first)[0] == "at_risk"
    second = fold.review_at(fold.facts(days, first), None, RULES)
    assert second == midnight(125)
    assert stage_at(days, second)[0] == "lapsed"
    assert fold.review_at(fold.facts(days, second), None, RULES) is None


def test_a_prospect_has_no_review_at() -> None:
    assert fold.review_at(fold.facts([], noon(0)), MODELS, RULES) is None


def test_review_at_with_a_model_is_when_p_alive_crosses_the_threshold() -> None:
    days = days_at(0, 7, 14, 21, 28, 35, 42)  # weekly buyer: P(alive) falls fast after silence
    crossing = fold.review_at(fold.facts(days, noon(42)), MODELS, RULES)
    assert crossing is not None and noon(42) < crossing < midnight(42 + 60)
    before = fold.facts(days, crossing - ONE_SECOND)
    after = fold.facts(days, crossing)
    alive_before = fold.figures(MODELS, [before])[0].p_alive
    assert alive_before is not None and alive_before > RULES.at_risk_p_alive
    assert fold.p_alive(PURCHASES, after) <= RULES.at_risk_p_alive
    assert stage_at(days, crossing - ONE_SECOND, MODELS)[0] == "repeat"
    name, reason = stage_at(days, crossing, MODELS)
    assert name == "at_risk" and "P(alive)" in reason
    # then the recency rule and lapsing are still ahead
    assert fold.review_at(after, MODELS, RULES) == midnight(42 + 60)


def test_review_at_without_a_repeat_purchase_ignores_the_model() -> None:
    f = fold.facts(days_at(0), noon(0))
    assert fold.review_at(f, MODELS, RULES) == fold.review_at(f, None, RULES) == midnight(60)


# --- tier thresholds ---------------------------------------------------------------------------

def test_shares_give_each_tier_its_count_of_customers() -> None:
    values = [float(v) for v in range(1, 1001)]
    random.Random(7).shuffle(values)
    th = fold.compute_thresholds(1, noon(0), "clv", 1, SHARES, values)
    assert Counter(th.tier_of(v) for v in values) == {"platinum": 10, "gold": 40, "silver": 150,
                                                       "bronze": 800}
    assert [tier for tier, _ in th.cuts] == ["platinum", "gold", "silver"] and th.bottom == "bronze"


def test_customers_tied_at_a_cut_all_take_the_higher_tier() -> None:
    values = [10.0, 8.0, 5.0, 5.0, 5.0, 5.0, 2.0, 1.0, 1.0, 1.0]
    th = fold.compute_thresholds(1, noon(0), "trailing_12m", None,
                                 {"gold": 0.1, "silver": 0.3, "bronze": 0.6}, values)
    assert dict(th.cuts) == {"gold": 10.0, "silver": 5.0}
    assert Counter(th.tier_of(v) for v in values) == {"gold": 1, "silver": 5, "bronze": 4}


def test_a_cut_that_would_be_zero_is_out_of_reach() -> None:
    values = [100.0] + [0.0] * 9
    th = fold.compute_thresholds(1, noon(0), "trailing_12m", None,
                                 {"gold": 0.1, "silver": 0.5, "bronze": 0.4}, values)
    assert dict(th.cuts) == {"gold": 100.0, "silver": np.inf}
    assert th.tier_of(0.0) == "bronze"
    assert th.tier_of(99.0) == "bronze"


def test_an_empty_population_puts_everyone_in_the_last_tier() -> None:
    th = fold.compute_thresholds(1, noon(0), "clv", 1, SHARES, [], ([], [], []))
    assert all(cut == np.inf for _, cut in th.cuts)
    assert th.tier_of(1e12) == "bronze"
    assert fold.rfm_scores(th, 1.0, 1, 1.0) is None


def test_in_force_is_the_latest_computed_by_then_and_the_first_before_any() -> None:
    ths = [thresholds(v, noon(10 * v), {"gold": 1.0}) for v in (1, 2, 3)]
    assert fold.in_force([], noon(0)) is None
    assert fold.in_force(ths, noon(0)).version == 1  # type: ignore[union-attr]
    assert fold.in_force(ths, noon(20)).version == 2  # type: ignore[union-attr]
    assert fold.in_force(ths, noon(25)).version == 2  # type: ignore[union-attr]
    assert fold.in_force(ths, noon(20) - ONE_SECOND).version == 1  # type: ignore[union-attr]
    assert fold.in_force(ths, noon(99)).version == 3  # type: ignore[union-attr]


def test_rfm_scores_are_quintiles_one_to_five_with_the_most_recent_scoring_five() -> None:
    n = 100
    recency = [float(i) for i in range(n)]
    frequency = [i % 10 + 1 for i in range(n)]
    monetary = [float(10 * i) for i in range(n)]
    th = fold.compute_thresholds(1, noon(0), "trailing_12m", None, SHARES, monetary,
                                 (recency, frequency, monetary))
    assert fold.rfm_scores(th, 0.0, 10, 990.0) == {"recency": 5, "frequency": 5, "monetary": 5}
    assert fold.rfm_scores(th, 99.0, 1, 0.0) == {"recency": 1, "frequency": 1, "monetary": 1}
    assert fold.rfm_scores(th, 50.0, 5, 500.0) == {"recency": 3, "frequency": 3, "monetary": 3}
    scores = [fold.rfm_scores(th, r, f, m) for r, f, m in zip(recency, frequency, monetary, strict=True)]
    for name in ("recency", "frequency", "monetary"):
        assert Counter(s[name] for s in scores if s).keys() == {1, 2, 3, 4, 5}
    assert fold.rfm_scores(None, 0.0, 1, 1.0) is None


def test_rfm_a_value_equal_to_a_cut_scores_in_the_lower_quintile() -> None:
    th = Thresholds(1, noon(0), "trailing_12m", None, (), "bronze",
                    {"recency": (10, 20, 30, 40), "frequency": (2, 3, 4, 5),
                     "monetary": (10, 20, 30, 40)})
    assert fold.rfm_scores(th, 10.0, 2, 10.0) == {"recency": 5, "frequency": 1, "monetary": 1}
    assert fold.rfm_scores(th, 10.5, 3, 40.5) == {"recency": 4, "frequency": 2, "monetary": 5}


# --- plan and decide ---------------------------------------------------------------------------

def test_a_new_customer_starts_as_a_prospect_with_no_change() -> None:
    row, changes = run(context(), [view(0, "v1"), view(1, "v2")], [])
    assert changes == []
    assert row is not None and row.changes == 0
    assert (row.stage, row.tier, row.first_seen, row.as_of, row.review_at) == \
        ("prospect", "prospect", noon(0), noon(0), None)


def test_a_new_customers_first_touch_being_an_order_leaves_prospect_at_once() -> None:
    row, changes = run(context(), [order(0, "o1")], days_at(0))
    assert [(c.kind, c.old, c.new, c.event_id, c.n) for c in changes] == [
        ("stage", "prospect", "new", "o1", 1), ("tier", "prospect", "unranked", "o1", 2)]
    assert row is not None and row.changes == 2


def test_an_order_ranks_the_customer_by_the_thresholds_in_force_at_the_order() -> None:
    tiers = [thresholds(1, noon(-30), {"gold": 50.0, "silver": 20.0}),
             thresholds(2, noon(20), {"gold": 500.0, "silver": 200.0})]
    ctx = context(tiers=tiers)
    prospect, _ = run(ctx, [view(0)], [])
    row, changes = run(ctx, [order(10, "o1")], days_at(10, amount="60"), row=prospect)
    assert [(c.kind, c.old, c.new, c.event_id, c.occurred_at) for c in changes] == [
        ("stage", "prospect", "new", "o1", noon(10)), ("tier", "prospect", "gold", "o1", noon(10))]
    tier = changes[1]
    assert tier.thresholds_version == 1 and "v1" in tier.reason
    assert row is not None and (row.tier, row.thresholds_version, row.tier_since) == ("gold", 1, noon(10))


def test_an_order_before_any_thresholds_is_unranked() -> None:
    prospect, _ = run(context(), [view(0)], [])
    row, changes = run(context(), [order(3, "o1")], days_at(3), row=prospect)
    assert moves(changes, "tier") == [("prospect", "unranked")]
    assert row is not None and row.thresholds_version is None


def test_a_non_order_touch_before_review_at_changes_nothing() -> None:
    bought, _ = run(context(), [order(0)], days_at(0))
    assert bought is not None and bought.review_at == midnight(60)
    assert fold.plan(context(), "c-1", bought, days_at(0), [view(30)]) is None


def test_a_non_order_touch_past_review_at_records_the_time_driven_change_at_review_at() -> None:
    bought, _ = run(context(), [order(0)], days_at(0))
    row, changes = run(context(), [view(70, "late-view")], days_at(0), row=bought)
    assert [(c.kind, c.old, c.new, c.event_id, c.occurred_at) for c in changes] == [
        ("stage", "new", "at_risk", None, midnight(60))]
    assert row is not None
    assert (row.as_of, row.stage_since, row.review_at) == (midnight(60), midnight(60), midnight(120))


def test_until_brings_the_time_driven_changes_up_to_that_time() -> None:
    bought, _ = run(context(), [order(0)], days_at(0))
    row, changes = run(context(), [], days_at(0), row=bought, until=noon(200))
    assert [(c.old, c.new, c.event_id, c.occurred_at) for c in changes] == [
        ("new", "at_risk", None, midnight(60)), ("at_risk", "lapsed", None, midnight(120))]
    assert row is not None and row.stage == "lapsed" and row.review_at is None
    assert moves(changes, "tier") == []  # time alone never re-tiers


def test_a_late_touch_is_decided_at_the_latest_time_seen() -> None:
    row, changes = run(context(), [view(5, "v"), order(2, "late-order")], days_at(2))
    late = [c for c in changes if c.event_id == "late-order"]
    assert late and all(c.occurred_at == noon(5) for c in late)
    assert row is not None and row.facts.as_of == noon(5)


# the touches of the order-invariance checks: orders on days 0, 3, 20, 150, 170; the latest an
# order, so every arrival order ends deciding at its time
TOUCHES = [view(-3, "v1"), order(0, "o1"), order(3, "o2"), view(10, "v2"), order(150, "o3"),
           order(170, "o4")]
TOUCH_DAYS = days_at(0, amount="30") + days_at(3, amount="12") + days_at(150, amount="45") + \
    days_at(170, amount="80")
RECOMPUTED = [thresholds(1, noon(-10), {"gold": 60.0, "silver": 25.0}, rank_by="clv"),
              thresholds(2, noon(100), {"gold": 150.0, "silver": 60.0}, rank_by="clv")]


def arrivals(touches: Sequence[Touch], n: int) -> list[list[Touch]]:
    """The log order, its reverse and ``n`` other permutations, the same every run."""
    sample = random.Random(2024).sample(list(itertools.permutations(touches)), n)
    return [list(touches), list(reversed(touches))] + [list(p) for p in sample]


def test_the_final_row_does_not_depend_on_the_order_the_touches_arrive_in() -> None:
    ctx = context(MODELS, RECOMPUTED)
    rows = []
    for arrival in arrivals(TOUCHES, 30):
        row, _ = run(ctx, arrival, TOUCH_DAYS)
        assert row is not None
        rows.append(row)
    assert all(final(r) == final(rows[0]) for r in rows), {final(r)[:3] for r in rows}
    assert rows[0].facts.as_of == noon(170) and rows[0].facts.frequency == 4
    assert rows[0].first_seen == noon(-3)
    assert rows[0].figures.clv is not None and rows[0].thresholds_version == 2


def test_touches_in_separate_batches_end_in_the_row_of_one_batch() -> None:
    ctx = context(MODELS, RECOMPUTED)
    whole, _ = run(ctx, TOUCHES, TOUCH_DAYS)
    row: Row | None = None
    for t in TOUCHES:  # the ledger at each batch: the orders up to it
        known = [d for d in TOUCH_DAYS if d[0] <= t.at.date()]
        row, _ = run(ctx, [t], known, row=row)
    assert row is not None and whole is not None
    assert final(row) == final(whole)


def test_the_final_row_does_not_depend_on_arrival_order_when_the_latest_touch_is_a_view() -> None:
    touches = [view(-3, "v1"), order(0, "o1"), view(10, "v2"), order(20, "o2"), order(150, "o3"),
               view(170, "v3")]
    days = days_at(0, 20, 150, amount="30")
    ctx = context(MODELS, [thresholds(1, noon(-10), {"gold": 70.0, "silver": 25.0}, rank_by="clv")])
    in_log_order, _ = run(ctx, touches, days)
    o3_after_v3 = [t for t in touches if t.event_id != "o3"] + [touches[4]]
    late_order, _ = run(ctx, o3_after_v3, days)
    assert in_log_order is not None and late_order is not None
    assert (in_log_order.tier, in_log_order.facts) == (late_order.tier, late_order.facts)


def test_a_touch_before_the_first_order_on_the_same_day_is_still_a_prospect() -> None:
    morning = Touch("c-1", midnight(0) + timedelta(hours=8), "view", False)
    evening = Touch("c-1", midnight(0) + timedelta(hours=20), "order", True)
    _, changes = run(context(), [morning, evening], [(evening.at, Decimal("10"))])
    assert [(c.kind, c.old, c.new, c.event_id) for c in changes] == [
        ("stage", "prospect", "new", "order"), ("tier", "prospect", "unranked", "order")]


# --- re-tiering on a recomputation -------------------------------------------------------------

def test_a_recomputed_thresholds_version_re_tiers_dated_at_its_computation() -> None:
    v1 = thresholds(1, noon(-10), {"gold": 50.0, "silver": 20.0})
    v2 = thresholds(2, noon(30), {"gold": 100.0, "silver": 40.0})
    ctx = context(tiers=[v1])
    prospect, _ = run(ctx, [view(0)], [])
    row, _ = run(ctx, [order(5)], days_at(5, amount="60"), row=prospect)
    assert row is not None and (row.tier, row.thresholds_version) == ("gold", 1)
    ctx.thresholds.append(v2)
    f = fold.facts(days_at(5, amount="60"), noon(30))
    fig = fold.figures(None, [f])[0]
    retiered, changes = fold.retier(ctx, row, v2, f, fig)
    assert [(c.kind, c.old, c.new, c.event_id, c.thresholds_version, c.occurred_at)
            for c in changes] == [("tier", "gold", "silver", None, 2, noon(30))]
    assert "v2" in changes[0].reason and changes[0].reason.startswith("recomputed")
    assert (retiered.tier, retiered.tier_since, retiered.thresholds_version) == ("silver", noon(30), 2)


def test_a_customers_changes_are_numbered_and_one_version_can_re_tier_her_twice() -> None:
    """The same move (gold to silver, by v2, at v2's time) twice in one customer's history, after
    a stale batch tiered her back by v1 in between: two changes, numbered apart, so two ids."""
    v1 = thresholds(1, noon(-10), {"gold": 50.0, "silver": 20.0})
    v2 = thresholds(2, noon(30), {"gold": 100.0, "silver": 40.0})
    ctx = context(tiers=[v1])
    row, first = run(ctx, [view(0), order(5)], days_at(5, amount="60"))
    assert row is not None and [c.n for c in first] == list(range(1, len(first) + 1))
    assert row.changes == len(first)
    f = fold.facts(days_at(5, amount="60"), noon(30))
    fig = fold.figures(None, [f])[0]
    down, [a] = fold.retier(ctx, row, v2, f, fig)
    back = replace(down, tier="gold", thresholds_version=1, changes=down.changes + 1)
    again, [b] = fold.retier(ctx, back, v2, f, fig)
    assert (a.old, a.new, a.occurred_at) == (b.old, b.new, b.occurred_at)
    assert (a.n, b.n) == (len(first) + 1, len(first) + 3)
    assert value_rows.change_id(a) != value_rows.change_id(b)
    assert again.changes == len(first) + 3


def test_a_recomputation_that_keeps_the_tier_records_no_change() -> None:
    v1 = thresholds(1, noon(-10), {"gold": 50.0})
    v2 = thresholds(2, noon(30), {"gold": 55.0})
    ctx = context(tiers=[v1, v2])
    row, _ = run(ctx, [order(5)], days_at(5, amount="60"))
    assert row is not None and row.thresholds_version == 1
    f = fold.facts(days_at(5, amount="60"), noon(31))
    retiered, changes = fold.retier(ctx, row, v2, f, fold.figures(None, [f])[0])
    assert changes == []
    assert (retiered.tier, retiered.tier_since, retiered.thresholds_version) == ("gold", noon(5), 2)


# --- COPY text of the value rows and changes -----------------------------------------------------

def _copy_value(value: object) -> str:
    """The oracle: one value in COPY's text format, by its type."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return copy_field(value)
    if isinstance(value, float):
        return repr(float(value))  # numpy's floats print their type otherwise
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"no COPY text for {type(value).__name__}")


def copy_rows(rows: Sequence[tuple]) -> str:
    return "".join("\t".join(_copy_value(v) for v in row) + "\n" for row in rows)


def _values(row: Row) -> tuple:
    """A value row's columns, in the order of ``rows.COLUMNS``."""
    f, fig = row.facts, row.figures
    return (row.customer_id, row.first_seen, row.as_of, f.frequency, f.first, f.last,
            f.previous_gap_days, f.monetary, f.trailing_12m, f.x, f.t_x, f.T, f.m_x, fig.p_alive,
            fig.expected_purchases_90d, fig.expected_order_value, fig.clv, row.model_version,
            row.tier, row.tier_since, row.thresholds_version, row.stage, row.stage_since,
            row.stage_reason, row.review_at, row.changes)


def test_value_rows_and_changes_in_copy_text_are_what_the_generic_writer_gives() -> None:
    """The hand-written lines (fast) against ``copy_rows`` (every value by its type), with
    NULLs, numpy floats, escapes and a first purchase date."""
    row, changes = run(context(), [view(0), order(3, "o1"), order(40, "o2")],
                       days_at(3, 40, amount="12.50"), until=noon(130))
    assert row is not None and changes
    odd = replace(row, stage_reason="tab\there, back\\slash", figures=fold.Figures(
        np.float64(0.25), None, np.float64(7.0), 3.5))
    for r in (row, odd):
        assert value_rows.copy_line(r) == copy_rows([_values(r)])
    for i, c in enumerate(changes):
        assert value_rows.change_line(c, i) == copy_rows([(value_rows.change_id(c), *c, i)])
