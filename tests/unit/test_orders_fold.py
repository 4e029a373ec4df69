"""The order ledger: one state in force per order, whatever arrives twice, late or alone."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.orders.fold import merge, read, summary
from tests.unit.test_profile_fold import ANN, BOB, T1, T2, T3, order, touch


def ledger(events: list[dict[str, Any]]) -> dict[str, Any]:
    held: dict[tuple[str, str], Any] = {}
    for e in events:
        s = read(e)
        if s is not None:
            held[(s.customer_id, s.order_id)] = merge(held.get((s.customer_id, s.order_id)), s)
    return summary(list(held.values()))


def test_a_re_sent_order_counts_once() -> None:
    first = order("20.00", order_id="O-1", at=T1, event_id="e-1")
    again = order("20.00", order_id="O-1", at=T2, event_id="e-2")  # new event id, same order
    assert ledger([first, again]) == {"count": 1, "cancelled": 0, "refunded": 0,
                                      "spend": {"EUR": "20.00"}}


def test_a_cancellation_we_never_saw_placed_counts_nothing_and_spends_nothing() -> None:
    alone = [order("20.00", "cancelled", order_id="O-1"), order("5.00", "refunded", order_id="O-2")]
    assert ledger(alone) == {"count": 0, "cancelled": 1, "refunded": 1, "spend": {}}


def test_cancelled_and_refunded_orders_leave_count_and_spend() -> None:
    events = [order("20.00", order_id="O-1", at=T1), order("20.00", "cancelled", order_id="O-1", at=T2),
              order("9.99", order_id="O-2", at=T1), order("9.99", "refunded", order_id="O-2", at=T3),
              order("5", currency="USD", order_id="O-3")]
    assert ledger(events) == {"count": 1, "cancelled": 1, "refunded": 1, "spend": {"USD": "5"}}


def test_a_placement_after_a_cancellation_is_a_re_send_not_a_revival() -> None:
    events = [order("20.00", "cancelled", order_id="O-1", at=T1, event_id="e-1"),
              order("20.00", order_id="O-1", at=T3, event_id="e-2")]
    for arrival in itertools.permutations(events):
        assert ledger(list(arrival))["cancelled"] == 1


def test_among_placements_the_latest_amount_is_in_force() -> None:
    events = [order("20.00", order_id="O-1", at=T1, event_id="e-1"),
              order("25.00", order_id="O-1", at=T2, event_id="e-2")]
    assert ledger(events)["spend"] == {"EUR": "25.00"}
    assert ledger(events[::-1])["spend"] == {"EUR": "25.00"}


def test_placed_at_is_the_earliest_placement_seen() -> None:
    a = read(order("1", order_id="O-1", at=T2, event_id="e-2"))
    b = read(order("1", order_id="O-1", at=T1, event_id="e-1"))
    c = read(order("1", "refunded", order_id="O-1", at=T3, event_id="e-3"))
    assert a and b and c
    assert merge(merge(a, c), b).placed_at == T1
    assert merge(merge(a, c), b).status == "refunded"


def test_one_order_under_two_customer_ids_of_a_cluster_counts_once() -> None:
    mine, theirs = order("7.00", order_id="O-1", customer_id=ANN), order("7.00", order_id="O-1",
                                                                         customer_id=BOB)
    assert ledger([mine, theirs])["count"] == 1


def test_other_touchpoints_are_not_orders_and_bad_statuses_are_refused() -> None:
    assert read(touch("call")) is None
    with pytest.raises((ValueError, KeyError, ArithmeticError)):
        read(order("20.00", "lost"))
    with pytest.raises((ValueError, ArithmeticError)):
        read(order("lots"))


ORDER_EVENT = st.builds(
    lambda oid, amount, status, at, eid: order(amount, status, order_id=oid, at=at, event_id=eid),
    st.sampled_from(["O-1", "O-2", "O-3"]), st.sampled_from(["1.00", "2.50", "10"]),
    st.sampled_from(["placed", "cancelled", "refunded"]), st.sampled_from([T1, T2, T3]),
    st.uuids().map(str))


@settings(max_examples=300)
@given(st.lists(ORDER_EVENT, max_size=10, unique_by=lambda e: e["event_id"]), st.data())
def test_any_arrival_order_and_any_repeat_give_the_same_ledger(events, data) -> None:
    arrival = data.draw(st.permutations(events))
    repeats = data.draw(st.lists(st.sampled_from(events), max_size=3)) if events else []
    result = ledger(events)
    assert ledger([*arrival, *repeats]) == result
    assert result["count"] >= 0 and all(not a.startswith("-") for a in result["spend"].values())
