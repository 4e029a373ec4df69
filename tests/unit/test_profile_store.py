"""A profile survives the trip to its ``profiles`` row and back (no database needed)."""

from __future__ import annotations

from decimal import Decimal

import orjson
from hypothesis import given, settings

from projections.profile.fold import Profile, empty
from projections.profile.store import from_state, to_state
from tests.unit.test_profile_fold import ANN, T1, T2, T3, complaint, fold, histories, order, touch


def round_trip(p: Profile) -> Profile:
    """Through the JSON that PostgreSQL stores and hands back."""
    return from_state(p.customer_id, orjson.loads(orjson.dumps(to_state(p))))


def rich_profile() -> Profile:
    return fold([
        touch("call", at=T2, event_id="e-2", channel="phone", email="ann@example.com",
              external_ids={"crm": "C1"}, attributes={"name": "Ann", "vip": True}),
        order("12.50", at=T1, event_id="e-1", phone="+447456767967",
              external_ids={"crm": "C2", "pos": "P9"}, attributes={"tags": ["a", "b"]}),
        order("2.50", "refunded", currency="USD", at=T1, event_id="e-0"),
        complaint("K-1", "open", T1, event_id="e-3"),
        complaint("K-2", "open", T2, event_id="e-4"),
        complaint("K-1", "resolved", T3, event_id="e-5", email="ann.smith@example.com"),
    ])


def test_profile_round_trips_through_its_state() -> None:
    p = rich_profile()
    assert round_trip(p) == p


def test_empty_profile_round_trips() -> None:
    assert round_trip(empty(ANN)) == empty(ANN)


def test_amounts_stay_exact() -> None:
    p = fold([order("0.10", event_id="a"), order("0.20", event_id="b")])
    assert round_trip(p).spend == {"EUR": Decimal("0.30")}


@settings(max_examples=150)
@given(histories())
def test_any_history_round_trips(events) -> None:
    p = fold(events) if events else empty(ANN)
    assert round_trip(p) == p
