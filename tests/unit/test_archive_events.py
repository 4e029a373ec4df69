"""The archive's events through the eventsourcing library's mapper: what is stored is what comes
back, for every record type the log carries, and nothing else is archived."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from events.archive import (
    CLASSES,
    CustomersLinkedRecorded,
    TouchpointRecorded,
    from_stored,
    recorded,
    to_stored,
)
from events.touchpoints import TOUCHPOINT_TYPES

AT = datetime(2026, 12, 3, 10, 0, 0, 123456, tzinfo=UTC)


def _doc(kind: str) -> dict:
    return {"event_id": str(uuid.uuid4()), "type": kind, "schema_version": 1,
            "customer": {"customer_id": str(uuid.uuid4()), "email": "ann@example.com"},
            "occurred_at": "2026-03-01T10:00:00.000000Z", "channel": "web", "source": "test",
            "payload": {"text": "naïve \u2028 ünïcode", "amount": "10.50", "n": 3, "x": 0.1}}


@pytest.mark.parametrize("kind", [*TOUCHPOINT_TYPES, "customers_linked"])
def test_round_trip_keeps_the_document_and_its_position(kind):
    doc = _doc(kind)
    customer = uuid.UUID(doc["customer"]["customer_id"])
    event = recorded(doc, customer, 7, AT, "touchpoints", 3, 1234)
    stored = to_stored(event)
    assert stored.originator_id == customer and stored.originator_version == 7
    back = from_stored(stored)
    assert type(back) is CLASSES[kind]
    assert back.event == doc and back.event_type == kind
    assert (back.topic, back.partition, back.offset) == ("touchpoints", 3, 1234)
    assert back.timestamp == AT and back.originator_id == customer
    assert back.originator_version == 7


def test_links_and_touchpoints_are_distinct_classes():
    assert CLASSES["customers_linked"] is CustomersLinkedRecorded
    assert all(CLASSES[t] is TouchpointRecorded or issubclass(CLASSES[t], TouchpointRecorded)
               for t in TOUCHPOINT_TYPES)


def test_an_unknown_type_is_refused():
    with pytest.raises(KeyError):
        recorded(_doc("fax"), uuid.uuid4(), 1, AT, "touchpoints", 0, 0)


def test_the_stored_topic_names_the_class_for_the_library():
    stored = to_stored(recorded(_doc("call"), uuid.uuid4(), 1, AT, "touchpoints", 0, 0))
    assert stored.topic == "events.archive:TouchpointRecorded"
