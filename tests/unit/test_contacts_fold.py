"""Contact history: one row per touchpoint, with a one-line summary."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.contacts.fold import SUMMARIES, ContactRow, row, summary

CUSTOMER = "6b1f0c1e-7f7a-4d6b-9a51-2c3d4e5f6a01"
EVENT_ID = "0b6f1e6e-3c1a-4b8e-9a39-5b7f6f0f2a11"
AT = "2026-03-01T10:00:00.000000Z"

PAYLOADS: dict[str, dict[str, Any]] = {
    "call": {"direction": "inbound", "duration_s": 125.5, "outcome": "callback_requested",
             "agent": "kim", "topic": "billing"},
    "email": {"direction": "outbound", "action": "opened", "subject": "Your order",
              "campaign": "spring"},
    "web_visit": {"url": "https://shop.example.com/p/1", "page_views": 3, "duration_s": 42.0,
                  "referrer": None, "session_id": "s-1"},
    "order": {"order_id": "o-1", "amount": "59.90", "currency": "EUR",
              "items": [{"sku": "sku-1", "quantity": 2, "unit_price": "29.95"},
                        {"sku": "sku-2", "quantity": 1, "unit_price": "0.00"}],
              "status": "placed"},
    "complaint": {"complaint_id": "K-1", "category": "delivery", "severity": "high",
                  "text": "Parcel arrived damaged", "status": "open"},
    "feedback": {"scale": "csat", "score": 2, "text": "Late again.\r\n\tAnd the box was torn.",
                 "order_id": "O-1", "complaint_id": None, "call_event_id": None},
}


def touch(type_: str, channel: str = "web", **payload: Any) -> dict[str, Any]:
    """A touchpoint as the projections read it from the log of record."""
    return {
        "event_id": EVENT_ID, "type": type_, "schema_version": 1,
        "customer": {"customer_id": CUSTOMER, "email": "ann@example.com", "phone": None,
                     "external_ids": {}, "attributes": {}},
        "occurred_at": AT, "recorded_at": "2026-03-01T10:00:01.000000Z",
        "channel": channel, "source": "shop", "payload": PAYLOADS[type_] | payload,
    }


def test_row_carries_the_event_and_its_log_position() -> None:
    assert row(touch("order", channel="store"), partition=3, offset=1234) == ContactRow(
        customer_id=CUSTOMER, occurred_at=AT, event_id=EVENT_ID, type="order", channel="store",
        source="shop", summary="Order o-1 placed: 59.90 EUR, 2 items", source_partition=3,
        source_offset=1234)


@pytest.mark.parametrize("type_", sorted(PAYLOADS))
def test_row_summary_is_the_summary_of_its_event(type_: str) -> None:
    event = touch(type_)
    assert row(event, 0, 0).summary == summary(event)
    assert set(SUMMARIES) == set(PAYLOADS)


@pytest.mark.parametrize(("type_", "payload", "expected"), [
    ("call", {}, "Inbound call about billing, 2.1 min, callback requested"),
    ("call", {"direction": "outbound", "duration_s": 30, "outcome": "missed", "topic": None},
     "Outbound call, 0.5 min, missed"),
    ("call", {"wait_s": 44.6}, "Inbound call about billing, 2.1 min, callback requested, waited 45 s"),
    ("call", {"wait_s": 0}, "Inbound call about billing, 2.1 min, callback requested, waited 0 s"),
    ("call", {"wait_s": 150}, "Inbound call about billing, 2.1 min, callback requested, waited 2.5 min"),
    ("email", {}, "Outbound email opened: Your order"),
    ("email", {"direction": "inbound", "action": "replied", "subject": None},
     "Inbound email replied"),
    ("web_visit", {}, "Visited https://shop.example.com/p/1 (3 pages)"),
    ("web_visit", {"page_views": 1}, "Visited https://shop.example.com/p/1 (1 page)"),
    ("order", {}, "Order o-1 placed: 59.90 EUR, 2 items"),
    ("order", {"status": "cancelled", "items": [{"sku": "s", "quantity": 1,
                                                 "unit_price": "59.90"}]},
     "Order o-1 cancelled: 59.90 EUR, 1 item"),
    ("order", {"status": "refunded", "items": []}, "Order o-1 refunded: 59.90 EUR, 0 items"),
    ("complaint", {}, "Complaint K-1 filed (high, delivery)"),
    ("complaint", {"status": "resolved", "severity": "low"},
     "Complaint K-1 resolved (low, delivery)"),
    ("feedback", {}, "CSAT 2/5 about order O-1: Late again. And the box was torn."),
    ("feedback", {"scale": "nps", "score": 9, "text": None, "order_id": None},
     "NPS 9/10"),
    ("feedback", {"scale": "nps", "score": 0, "text": "  ", "order_id": None,
                  "call_event_id": EVENT_ID}, f"NPS 0/10 about call {EVENT_ID}"),
    ("feedback", {"score": 5, "text": "Thanks", "complaint_id": "K-1"},
     "CSAT 5/5 about order O-1, complaint K-1: Thanks"),
])
def test_summary_is_one_line_per_type(type_: str, payload: dict, expected: str) -> None:
    assert summary(touch(type_, **payload)) == expected


def test_a_call_of_version_1_and_the_same_call_read_at_version_2_give_the_same_row() -> None:
    """The archive reads a call stored at version 1 as version 2 with no wait measured: a replay
    from it must write the rows the live stage wrote from the version 1 record."""
    v1 = touch("call")
    v2 = v1 | {"schema_version": 2, "payload": v1["payload"] | {"wait_s": None}}
    assert row(v2, 1, 7) == row(v1, 1, 7)


def test_summary_of_200_chars_is_kept_whole() -> None:
    prefix = "Outbound email opened: "
    event = touch("email", subject="x" * (200 - len(prefix)))
    assert summary(event) == prefix + "x" * (200 - len(prefix))


def test_long_summary_is_truncated_to_200_chars_with_an_ellipsis() -> None:
    prefix = "Outbound email opened: "
    text = summary(touch("email", subject="x" * 300))
    assert len(text) == 200
    assert text == prefix + "x" * (199 - len(prefix)) + "…"


def test_long_url_is_truncated() -> None:
    url = "https://shop.example.com/" + "p/" * 1000
    text = summary(touch("web_visit", url=url))
    assert (len(text), text[:20], text[-1]) == (200, f"Visited {url}"[:20], "…")


LONG = st.text(st.characters(codec="utf-8"), min_size=1, max_size=400)
LONG_PAYLOADS = {
    "call": st.fixed_dictionaries({"topic": LONG, "duration_s": st.floats(0, 86400),
                                   "wait_s": st.none() | st.floats(0, 86400)}),
    "email": st.fixed_dictionaries({"subject": LONG}),
    "web_visit": st.fixed_dictionaries({"url": LONG.map(lambda s: "https://" + s),
                                        "page_views": st.integers(1, 2**62)}),
    "order": st.fixed_dictionaries({"order_id": LONG, "amount": st.just("9999999999.9999")}),
    "complaint": st.fixed_dictionaries({"complaint_id": LONG, "category": LONG}),
    "feedback": st.fixed_dictionaries({"text": LONG, "order_id": LONG, "complaint_id": LONG}),
}


@settings(max_examples=100)
@given(st.one_of([st.tuples(st.just(t), s) for t, s in sorted(LONG_PAYLOADS.items())]))
def test_every_summary_fits_in_200_chars(typed: tuple[str, dict]) -> None:
    type_, payload = typed
    text = summary(touch(type_, **payload))
    assert 0 < len(text) <= 200
    untruncated = SUMMARIES[type_](PAYLOADS[type_] | payload)
    assert text == (untruncated if len(untruncated) <= 200 else untruncated[:199] + "…")
