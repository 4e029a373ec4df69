"""The archive's events through the eventsourcing library's mapper: what is stored is what comes
back, for every record type the log carries, and nothing else is archived."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest
from eventsourcing.persistence import StoredEvent

from events.archive import (
    CLASSES,
    TOPICS,
    CustomersLinkedRecorded,
    TouchpointRecorded,
    from_stored,
    recorded,
    state,
    to_stored,
    uuid_text,
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


@pytest.mark.parametrize("kind", [*TOUCHPOINT_TYPES, "customers_linked"])
def test_the_stage_stores_what_the_mapper_would(kind):
    """The archive stage writes the state without building events: the library reads it as the
    event the mapper would have stored (the document embedded as the log had it)."""
    doc = _doc(kind)
    raw = orjson.dumps(doc, option=orjson.OPT_INDENT_2)  # any JSON the log may hold
    customer = uuid.UUID(doc["customer"]["customer_id"])
    written = state(raw, orjson.dumps(AT), "t.touchpoints", 5, 99)
    mapped = to_stored(recorded(doc, customer, 3, AT, "t.touchpoints", 5, 99))
    assert orjson.loads(written) == orjson.loads(mapped.state)
    back = from_stored(StoredEvent(customer, 3, TOPICS[kind], written))
    assert vars(back) == vars(from_stored(mapped))


def test_uuid_text_is_canonical_or_refused():
    u = uuid.uuid4()
    assert uuid_text(str(u)) == str(u)
    assert uuid_text(str(u).upper()) == str(u)
    for bad in (None, 5, "A\x1fB", "", str(u) + "\n"):
        with pytest.raises((TypeError, ValueError, AttributeError)):
            uuid_text(bad)
