"""The unified profile fold: feed touchpoints, assert the profile; a commutative monoid.

Examples state the rules on the reference fold (``profile_oracle``); properties pin the
production fold (state documents, ``projections.profile.fold``) to it."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.profile import fold as production
from projections.profile.fold import add_touch, new_state, read_touch
from services.api.customers import satisfaction
from tests.unit.profile_oracle import Profile, apply, empty, from_state, merge, of_event, to_state

ANN = "6b1f0c1e-7f7a-4d6b-9a51-2c3d4e5f6a01"
BOB = "6b1f0c1e-7f7a-4d6b-9a51-2c3d4e5f6a02"
T1, T2, T3 = ("2026-03-01T10:00:00.000000Z", "2026-03-02T09:30:00.250000Z",
              "2026-03-03T18:45:10.000001Z")

PAYLOADS: dict[str, dict[str, Any]] = {
    "call": {"direction": "inbound", "duration_s": 90.0, "outcome": "answered", "agent": "kim",
             "topic": "billing"},
    "email": {"direction": "outbound", "action": "opened", "subject": "Your order",
              "campaign": None},
    "web_visit": {"url": "https://shop.example.com/", "page_views": 2, "duration_s": 30.0,
                  "referrer": None, "session_id": "s-1"},
    "order": {"order_id": "o-1", "amount": "12.50", "currency": "EUR",
              "items": [{"sku": "sku-1", "quantity": 1, "unit_price": "12.50"}],
              "status": "placed"},
    "complaint": {"complaint_id": "K-1", "category": "delivery", "severity": "high",
                  "text": "Parcel arrived damaged", "status": "open"},
    "feedback": {"scale": "csat", "score": 4, "text": "Quick delivery", "order_id": "o-1",
                 "complaint_id": None, "call_event_id": None},
}


def touch(type_: str = "web_visit", *, at: str = T1, event_id: str | None = None,
          channel: str = "web", customer_id: str = ANN, email: str | None = None,
          phone: str | None = None, external_ids: dict[str, str] | None = None,
          attributes: dict[str, Any] | None = None, **payload: Any) -> dict[str, Any]:
    """A touchpoint as the projections read it from the log of record."""
    return {
        "event_id": event_id or str(uuid.uuid4()), "type": type_, "schema_version": 1,
        "customer": {"customer_id": customer_id, "email": email, "phone": phone,
                     "external_ids": external_ids or {}, "attributes": attributes or {}},
        "occurred_at": at, "recorded_at": "2026-03-04T00:00:00.000000Z",
        "channel": channel, "source": "test", "payload": PAYLOADS[type_] | payload,
    }


def fold(events: list[dict[str, Any]]) -> Profile:
    state = None
    for event in events:
        state = apply(state, event)
    assert state is not None
    return state


def order(amount: str, status: str = "placed", currency: str = "EUR", **kw: Any) -> dict:
    return touch("order", amount=amount, currency=currency, status=status, **kw)


def complaint(complaint_id: str, status: str, at: str, **kw: Any) -> dict:
    return touch("complaint", complaint_id=complaint_id, status=status, at=at, **kw)


def feedback(scale: str, score: Any, at: str, **kw: Any) -> dict:
    return touch("feedback", scale=scale, score=score, at=at, channel="email", **kw)


# -- examples ----------------------------------------------------------------------------------


def test_one_event_is_a_profile_of_one_touchpoint() -> None:
    event = touch("call", channel="phone", email="ann@example.com")
    p = of_event(event)
    assert p.customer_id == ANN
    assert (p.events_count, p.by_channel, p.by_type) == (1, {"phone": 1}, {"call": 1})
    assert p.first_seen == p.last_seen == T1
    assert p == apply(None, event) == merge(empty(ANN), p)


def test_counts_per_channel_and_type() -> None:
    p = fold([touch("web_visit"), touch("call", channel="phone"), touch("order"),
              touch("email", channel="email"), touch("web_visit")])
    assert p.events_count == 5
    assert p.by_channel == {"web": 3, "phone": 1, "email": 1}
    assert p.by_type == {"web_visit": 2, "call": 1, "order": 1, "email": 1}


def test_first_and_last_seen_follow_occurred_at_not_arrival() -> None:
    p = fold([touch(at=T2), touch(at=T3), touch(at=T1)])
    assert (p.first_seen, p.last_seen) == (T1, T3)


def test_latest_attribute_wins_by_occurred_at() -> None:
    newer = touch(at=T2, event_id="e-2", attributes={"name": "Ann Smith", "tier": "gold"})
    older = touch(at=T1, event_id="e-1", attributes={"name": "Ann", "city": "Leeds"})
    p = fold([older, newer])
    assert {k: v for k, (_, v) in p.attributes.items()} == {
        "name": "Ann Smith", "tier": "gold", "city": "Leeds"}
    assert p.attributes["name"] == ((T2, "e-2"), "Ann Smith")


def test_late_event_does_not_overwrite_a_newer_attribute() -> None:
    newer = touch(at=T2, event_id="e-2", attributes={"name": "Ann Smith"})
    late = touch(at=T1, event_id="e-1", attributes={"name": "Ann"})
    assert fold([newer, late]).attributes["name"] == ((T2, "e-2"), "Ann Smith")


def test_attribute_tie_on_occurred_at_is_broken_by_event_id() -> None:
    a = touch(at=T1, event_id="aaaa", attributes={"name": "from a"})
    b = touch(at=T1, event_id="bbbb", attributes={"name": "from b"})
    assert fold([a, b]).attributes["name"] == ((T1, "bbbb"), "from b")
    assert fold([b, a]).attributes["name"] == ((T1, "bbbb"), "from b")


def test_orders_count_as_touchpoints_only_their_ledger_is_elsewhere() -> None:
    p = fold([order("12.50"), order("30.00", "cancelled")])
    assert p.by_type == {"order": 2} and p.events_count == 2


def test_complaint_opened_then_resolved_ends_resolved_in_either_arrival_order() -> None:
    opened = complaint("K-1", "open", T1, event_id="e-1")
    resolved = complaint("K-1", "resolved", T2, event_id="e-2")
    other = complaint("K-2", "open", T3, event_id="e-3")
    for arrival in itertools.permutations([opened, resolved, other]):
        p = fold(list(arrival))
        assert p.complaints["K-1"] == ((T2, "e-2"), "resolved")
        assert p.open_complaints == ["K-2"]


def test_open_complaints_are_sorted_ids_of_open_complaints_only() -> None:
    p = fold([complaint("K-9", "open", T1), complaint("K-3", "open", T2),
              complaint("K-5", "resolved", T3)])
    assert p.open_complaints == ["K-3", "K-9"]
    assert empty(ANN).open_complaints == []


def test_satisfaction_keeps_the_latest_score_and_the_count_of_each_score_per_scale() -> None:
    answers = [feedback("csat", 2, T2, event_id="e-2"), feedback("csat", 5, T1, event_id="e-1"),
               feedback("nps", 9, T3, event_id="e-3"), feedback("csat", 2, T1, event_id="e-0")]
    for arrival in itertools.permutations(answers):
        p = fold(list(arrival))
        assert p.satisfaction == {"csat": (((T2, "e-2"), 2), {2: 2, 5: 1}),
                                  "nps": (((T3, "e-3"), 9), {9: 1})}
    assert p.by_type == {"feedback": 4} and empty(ANN).satisfaction == {}


def test_satisfaction_tie_on_occurred_at_is_broken_by_event_id() -> None:
    a, b = feedback("nps", 3, T1, event_id="aaaa"), feedback("nps", 10, T1, event_id="bbbb")
    assert fold([b, a]).satisfaction["nps"][0] == ((T1, "bbbb"), 10)


def test_last_contact_is_the_latest_by_occurred_at() -> None:
    latest = touch("call", at=T3, event_id="e-3", channel="phone")
    p = fold([latest, touch("email", at=T1, channel="email"), touch(at=T2)])
    assert p.last_contact == ((T3, "e-3"), {"event_id": "e-3", "type": "call",
                                            "channel": "phone", "occurred_at": T3})


def test_identifiers_accumulate() -> None:
    p = fold([
        touch(email="ann@example.com", external_ids={"crm": "C1"}),
        touch(phone="+447456767967", external_ids={"crm": "C1", "pos": "P9"}),
        touch(email="ann.smith@example.com"),
        touch(),  # no identifiers beyond the customer id
    ])
    assert p.emails == {"ann@example.com", "ann.smith@example.com"}
    assert p.phones == {"+447456767967"}
    assert p.external_ids == {("crm", "C1"), ("pos", "P9")}


def test_merge_keeps_the_given_customer_id() -> None:
    a, b = of_event(touch(customer_id=ANN)), of_event(touch(customer_id=BOB))
    assert merge(a, b).customer_id == ANN
    assert merge(b, a, ANN) == merge(a, b, ANN)


# -- properties ---------------------------------------------------------------------------------

_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
# A few shared instants make ties on occurred_at (broken by event_id) common.
OCCURRED_AT = st.one_of(
    st.sampled_from([T1, T2, T3]),
    st.integers(0, 10 * 365 * 86400 * 10**6).map(
        lambda us: (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")))
JSON_VALUE = st.sampled_from([None, True, 0, 7, "Ann", "", ["a", 1], {"k": "v"}])
AMOUNT = st.integers(0, 10**14 - 1).map(lambda n: str(Decimal(n).scaleb(-4)))  # 10.4 digits

PAYLOAD = {
    "call": st.fixed_dictionaries({"outcome": st.sampled_from(["answered", "missed"])}),
    "email": st.fixed_dictionaries({"action": st.sampled_from(["sent", "opened"])}),
    "web_visit": st.fixed_dictionaries({"page_views": st.integers(1, 50)}),
    "order": st.fixed_dictionaries({
        "order_id": st.sampled_from(["o-1", "o-2"]), "amount": AMOUNT,
        "currency": st.sampled_from(["EUR", "USD", "GBP"]),
        "status": st.sampled_from(["placed", "cancelled", "refunded"])}),
    "complaint": st.fixed_dictionaries({"complaint_id": st.sampled_from(["K-1", "K-2", "K-3"]),
                                        "status": st.sampled_from(["open", "resolved"])}),
    "feedback": st.one_of(  # few scores, so that equal scores and ties on the latest are common
        st.fixed_dictionaries({"scale": st.just("csat"), "score": st.integers(1, 5)}),
        st.fixed_dictionaries({"scale": st.just("nps"), "score": st.sampled_from([0, 6, 7, 9, 10])})),
}
CHANNEL = st.sampled_from(["web", "phone", "email", "store"])
EMAIL = st.sampled_from([None, "ann@example.com", "a.s@example.com"])
PHONE = st.sampled_from([None, "+447456767967"])
EXTERNAL_IDS = st.dictionaries(st.sampled_from(["crm", "pos"]), st.sampled_from(["1", "2"]),
                               max_size=2)
ATTRIBUTES = st.dictionaries(st.sampled_from(["name", "tier", "city"]), JSON_VALUE, max_size=3)
TYPED_PAYLOAD = st.one_of([st.tuples(st.just(t), s) for t, s in sorted(PAYLOAD.items())])


def _touch(typed: tuple[str, dict], **kw: Any) -> dict[str, Any]:
    type_, payload = typed
    return touch(type_, **kw, **payload)


def touchpoints(customers: tuple[str, ...] = (ANN,)) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(_touch, TYPED_PAYLOAD, at=OCCURRED_AT, event_id=st.uuids().map(str),
                     channel=CHANNEL, customer_id=st.sampled_from(customers), email=EMAIL,
                     phone=PHONE, external_ids=EXTERNAL_IDS, attributes=ATTRIBUTES)


def histories(customers: tuple[str, ...] = (ANN,), max_size: int = 12) -> st.SearchStrategy:
    """Lists of distinct touchpoints (event ids are unique on the log)."""
    return st.lists(touchpoints(customers), max_size=max_size,
                    unique_by=lambda e: e["event_id"])


ONE_CUSTOMER = histories()


@st.composite
def split(draw: st.DrawFn, parts: int) -> list[Profile]:
    """One history of distinct events cut into `parts` profiles of the same customer."""
    events = draw(ONE_CUSTOMER)
    cuts = sorted(draw(st.lists(st.integers(0, len(events)), min_size=parts - 1,
                                max_size=parts - 1)))
    bounds = [0, *cuts, len(events)]
    return [fold(events[lo:hi]) if hi > lo else empty(ANN) for lo, hi in itertools.pairwise(bounds)]


@settings(max_examples=200)
@given(st.data())
def test_any_arrival_order_folds_to_the_same_profile(data: st.DataObject) -> None:
    events = data.draw(ONE_CUSTOMER.filter(bool))
    arrival = data.draw(st.permutations(events))
    assert fold(arrival) == fold(events)


@settings(max_examples=200)
@given(split(2))
def test_merge_is_commutative(profiles: list[Profile]) -> None:
    a, b = profiles
    assert merge(a, b) == merge(b, a)


@settings(max_examples=200)
@given(split(3))
def test_merge_is_associative(profiles: list[Profile]) -> None:
    a, b, c = profiles
    assert merge(merge(a, b), c) == merge(a, merge(b, c))


@settings(max_examples=200)
@given(ONE_CUSTOMER.filter(bool))
def test_empty_profile_is_the_identity_of_merge(events: list[dict[str, Any]]) -> None:
    p = fold(events)
    assert merge(p, empty(ANN)) == p
    assert merge(empty(ANN), p) == p


# -- the fold on the stored form (what the projection runs) --------------------------------------

def test_a_new_state_is_the_empty_profile() -> None:
    assert new_state() == to_state(empty(ANN))


def stored_before_feedback(state: dict[str, Any], old: bool) -> dict[str, Any]:
    """``state`` as a document written before the profile had satisfaction, when ``old`` and it
    has none (such documents lack the key)."""
    if old and state.get("satisfaction") == {}:
        del state["satisfaction"]
    return state


@settings(max_examples=300)
@given(histories(max_size=16), st.data())
def test_folding_into_the_stored_state_equals_the_reference_fold(
        events: list[dict[str, Any]], data: st.DataObject) -> None:
    """Stored profile (events before the cut, as its JSON document) + the batch after the cut,
    folded in place, is the profile of all the events."""
    at = data.draw(st.integers(0, len(events)))
    state = orjson.loads(orjson.dumps(to_state(fold(events[:at])))) if at else new_state()
    state = stored_before_feedback(state, data.draw(st.booleans()))
    for e in events[at:]:
        add_touch(state, read_touch(e))
    expected = fold(events) if events else empty(ANN)
    assert from_state(ANN, orjson.loads(orjson.dumps(state))) == expected


def test_an_unfoldable_event_is_refused_before_the_state_changes() -> None:
    bad = [touch(attributes=["not", "a", "map"]), {**touch(), "channel": 7},
           touch(external_ids={"crm": 7}),
           touch(email=None) | {"customer": {"customer_id": ANN, "email": 3}},
           feedback("csat", 6, T1), feedback("ces", 3, T1), feedback("nps", "9", T1),
           feedback("nps", True, T1), touch("feedback") | {"payload": {"scale": "csat"}}]
    for event in bad:
        with pytest.raises((KeyError, TypeError, ValueError, ArithmeticError, AttributeError)):
            read_touch(event)


def _state(events: list[dict[str, Any]]) -> dict[str, Any]:
    state = new_state()
    for e in events:
        add_touch(state, read_touch(e))
    return orjson.loads(orjson.dumps(state))


@settings(max_examples=200)
@given(st.data())
def test_merging_states_equals_the_reference_merge(data: st.DataObject) -> None:
    """How reads combine linked customers: any cut of a history, merged, is the whole."""
    events = data.draw(ONE_CUSTOMER)
    at = data.draw(st.integers(0, len(events)))
    a = stored_before_feedback(_state(events[:at]), data.draw(st.booleans()))
    b = stored_before_feedback(_state(events[at:]), data.draw(st.booleans()))
    assert production.merge(a, b) == production.merge(b, a)
    assert from_state(ANN, production.merge(a, b)) == (fold(events) if events else empty(ANN))
    assert production.merge(a, new_state()) == production.merge(new_state(), a)


@settings(max_examples=200)
@given(st.data())
def test_merging_states_is_associative(data: st.DataObject) -> None:
    events = data.draw(ONE_CUSTOMER)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(events)), min_size=2, max_size=2)))
    a, b, c = (stored_before_feedback(_state(events[lo:hi]), data.draw(st.booleans()))
               for lo, hi in itertools.pairwise([0, *cuts, len(events)]))
    merge_ = production.merge
    assert merge_(merge_(a, b), c) == merge_(a, merge_(b, c))


def test_open_complaints_of_a_state_are_sorted_ids() -> None:
    state = _state([complaint("K-9", "open", T1), complaint("K-3", "open", T2),
                    complaint("K-5", "resolved", T3)])
    assert production.open_complaints(state) == ["K-3", "K-9"]


def test_the_api_shows_latest_average_and_count_per_scale_and_the_nps_groups() -> None:
    state = _state([feedback("csat", 2, T2, event_id="e-2"), feedback("csat", 5, T1),
                    feedback("csat", 4, T1), *(feedback("nps", score, T3, event_id=f"n-{score:02d}")
                                               for score in (3, 8, 9, 10))])
    assert satisfaction(state["satisfaction"]) == {
        "csat": {"latest": {"score": 2, "occurred_at": T2}, "average": 3.67, "count": 3},
        "nps": {"latest": {"score": 10, "occurred_at": T3}, "average": 7.5, "count": 4,
                "promoters": 2, "passives": 1, "detractors": 1}}
    assert satisfaction({}) == {"csat": None, "nps": None}
