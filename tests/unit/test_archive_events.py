"""The archive's events through the eventsourcing library's mapper: what is stored is what comes
back, for every record type the log carries, and nothing else is archived. A call is stored at
its own version and read at the latest: a call of version 1 comes back at version 2."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest
from eventsourcing.persistence import StoredEvent

from events import parse_touchpoint
from events.archive import (
    CLASSES,
    TOPICS,
    CallRecorded,
    CustomersLinkedRecorded,
    TouchpointRecorded,
    from_stored,
    recorded,
    state,
    stored_version,
    to_stored,
    uuid_text,
)
from events.touchpoints import TOUCHPOINT_TYPES

AT = datetime(2026, 12, 3, 10, 0, 0, 123456, tzinfo=UTC)
SHAPES = [(kind, 1) for kind in (*TOUCHPOINT_TYPES, "customers_linked")] + [("call", 2)]


def _doc(kind: str, version: int = 1) -> dict:
    payload = {"text": "naïve \u2028 ünïcode", "amount": "10.50", "n": 3, "x": 0.1}
    return {"event_id": str(uuid.uuid4()), "type": kind, "schema_version": version,
            "customer": {"customer_id": str(uuid.uuid4()), "email": "ann@example.com"},
            "occurred_at": "2026-03-01T10:00:00.000000Z", "channel": "web", "source": "test",
            "payload": payload | ({"wait_s": 12.5} if version == 2 else {})}


def _at_v2(call: dict) -> dict:
    """A call of version 1 as the archive gives it back: at version 2, no wait measured."""
    return call | {"schema_version": 2, "payload": call["payload"] | {"wait_s": None}}


class CallRecordedV1(TouchpointRecorded):
    """The archive's class of calls as it was at version 1 (no ``class_version``): what the
    mapper stores for it is what the archive held for every call before version 2."""


def _mapped_at_its_own_version(doc: dict, customer: uuid.UUID, version: int, topic: str,
                               partition: int, offset: int) -> StoredEvent:
    """What the library's mapper stores for ``doc`` by its class as it was at the document's
    version, under the class's topic of today."""
    if doc["type"] == "call" and doc["schema_version"] == 1:
        event = CallRecordedV1(originator_id=customer, originator_version=version, timestamp=AT,
                               event=doc, topic=topic, partition=partition, offset=offset)
        stored = to_stored(event)
        return StoredEvent(customer, version, TOPICS["call"], stored.state)
    return to_stored(recorded(doc, customer, version, AT, topic, partition, offset))


@pytest.mark.parametrize(("kind", "version"), SHAPES)
def test_round_trip_keeps_the_document_and_its_position(kind, version):
    doc = _doc(kind, version)
    customer = uuid.UUID(doc["customer"]["customer_id"])
    event = recorded(doc, customer, 7, AT, "touchpoints", 3, 1234)
    stored = to_stored(event)
    assert stored.originator_id == customer and stored.originator_version == 7
    back = from_stored(stored)
    assert type(back) is CLASSES[kind]
    assert back.event == (_at_v2(doc) if (kind, version) == ("call", 1) else doc)
    assert back.event_type == kind
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
    stored = to_stored(recorded(_doc("email"), uuid.uuid4(), 1, AT, "touchpoints", 0, 0))
    assert stored.topic == "events.archive:TouchpointRecorded"
    stored = to_stored(recorded(_doc("call", 2), uuid.uuid4(), 1, AT, "touchpoints", 0, 0))
    assert stored.topic == "events.archive:CallRecorded"


@pytest.mark.parametrize(("kind", "version"), SHAPES)
def test_the_stage_stores_what_the_mapper_would(kind, version):
    """The archive stage writes the state without building events: it is what the library's
    mapper stores for the document by its class at the document's own version (the document
    embedded as the log had it), and the library reads it as it reads the mapper's."""
    doc = _doc(kind, version)
    raw = orjson.dumps(doc, option=orjson.OPT_INDENT_2)  # any JSON the log may hold
    customer = uuid.UUID(doc["customer"]["customer_id"])
    written = state(raw, orjson.dumps(AT), "t.touchpoints", 5, 99, stored_version(doc))
    mapped = _mapped_at_its_own_version(doc, customer, 3, "t.touchpoints", 5, 99)
    assert orjson.loads(written) == orjson.loads(mapped.state)
    assert orjson.loads(written).get("class_version", 1) == version
    back = from_stored(StoredEvent(customer, 3, TOPICS[kind], written))
    assert vars(back) == vars(from_stored(mapped))
    assert back.event["schema_version"] == (2 if kind == "call" else 1)


def test_a_call_stored_at_version_1_is_read_at_version_2_however_it_was_stored():
    """A call of version 1 as the stage stores it today, as the mapper stores it by the class at
    version 1, and as the archive stored every call before version 2 (a TouchpointRecorded)."""
    call = parse_touchpoint({"event_id": str(uuid.uuid4()), "type": "call",
                             "customer": {"customer_id": str(uuid.uuid4())},
                             "occurred_at": "2026-03-01T10:00:00Z", "channel": "phone",
                             "source": "pbx", "payload": {"direction": "inbound",
                                                          "duration_s": 90, "outcome": "resolved"}})
    doc = call.model_dump(mode="json")
    customer = uuid.UUID(doc["customer"]["customer_id"])
    before = to_stored(TouchpointRecorded(originator_id=customer, originator_version=1,
                                          timestamp=AT, event=doc, topic="touchpoints",
                                          partition=0, offset=4))
    assert before.topic == "events.archive:TouchpointRecorded"
    stored = [StoredEvent(customer, 1, TOPICS["call"],
                          state(orjson.dumps(doc), orjson.dumps(AT), "touchpoints", 0, 4, 1)),
              _mapped_at_its_own_version(doc, customer, 1, "touchpoints", 0, 4), before]
    for s in stored:
        assert b"class_version" not in s.state
        back = from_stored(s)
        assert type(back) is CallRecorded
        assert back.event == _at_v2(doc)
        assert (back.topic, back.partition, back.offset, back.timestamp) == ("touchpoints", 0, 4, AT)
    # the latest shape is a call of version 2 the models accept, with its wait not measured
    again = parse_touchpoint(orjson.dumps(back.event))
    assert (again.schema_version, again.payload.wait_s) == (2, None)  # type: ignore[attr-defined]
    assert again.model_dump(mode="json") == back.event


def test_a_call_of_version_2_is_stored_at_version_2_and_read_as_it_was():
    doc = _doc("call", 2)
    customer = uuid.UUID(doc["customer"]["customer_id"])
    written = state(orjson.dumps(doc), orjson.dumps(AT), "touchpoints", 1, 2, stored_version(doc))
    assert orjson.loads(written)["class_version"] == 2
    assert from_stored(StoredEvent(customer, 1, TOPICS["call"], written)).event == doc


@pytest.mark.parametrize(("kind", "version"), [
    ("call", 3), ("email", 2), ("customers_linked", 2), ("call", 0), ("call", "2"), ("call", 2.0),
    ("call", True), ("call", None)])
def test_a_version_the_archive_does_not_know_is_refused(kind, version):
    with pytest.raises(ValueError, match="schema_version"):
        stored_version(_doc(kind) | {"schema_version": version})


def test_a_document_without_a_version_is_at_version_1():
    doc = _doc("call")
    del doc["schema_version"]
    assert stored_version(doc) == 1


def test_uuid_text_is_canonical_or_refused():
    u = uuid.uuid4()
    assert uuid_text(str(u)) == str(u)
    assert uuid_text(str(u).upper()) == str(u)
    for bad in (None, 5, "A\x1fB", "", str(u) + "\n"):
        with pytest.raises((TypeError, ValueError, AttributeError)):
            uuid_text(bad)
