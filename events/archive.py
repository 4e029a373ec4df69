"""The archive's events: each record of topic ``touchpoints``, as a domain event of the
``eventsourcing`` library in its customer's stream.

A stream is a customer's (``originator_id``: the customer id the record was keyed by, versions
1, 2, ... in log order). The state keeps the document as it was on the log with its position
(topic, partition, offset), so that the log can be written again from the archive in its
original order. There is one event class per record type; a type whose document changes gets a
new ``class_version`` and an ``upcast_vN_vN+1`` method, which the library applies when it reads
an event stored before the change.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import Mapper, StoredEvent, Transcoder
from eventsourcing.utils import get_topic

from events.touchpoints import TOUCHPOINT_TYPES


class Recorded(DomainEvent):
    """A record of the log, archived. ``timestamp``: when it was archived."""

    event: dict[str, Any]  # the document, as on the log (upcast to this class's version)
    topic: str
    partition: int
    offset: int

    @property
    def event_type(self) -> str:
        return self.event["type"]


class TouchpointRecorded(Recorded):
    """A touchpoint (any type without a class of its own)."""


class CustomersLinkedRecorded(Recorded):
    """Identity resolution merged customers (in the survivor's stream)."""


CLASSES: dict[str, type[Recorded]] = {t: TouchpointRecorded for t in TOUCHPOINT_TYPES}
CLASSES["customers_linked"] = CustomersLinkedRecorded


class OrjsonTranscoder(Transcoder):
    """JSON by orjson: an event's document is nested dicts, lists, strings and numbers, and the
    library's stdlib transcoder costs several times more per event. ``timestamp`` (the one
    non-JSON value) is written in ISO form and read back as a ``datetime``."""

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj)

    def decode(self, data: bytes) -> Any:
        state = orjson.loads(data)
        if isinstance(state, dict) and isinstance(state.get("timestamp"), str):
            state["timestamp"] = datetime.fromisoformat(state["timestamp"])
        return state


MAPPER: Mapper[UUID] = Mapper(OrjsonTranscoder())
TOPICS: dict[str, str] = {t: get_topic(cls) for t, cls in CLASSES.items()}  # as the library names them
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def uuid_text(value: object) -> str:
    """A UUID in its canonical text form; raises (TypeError, ValueError) for anything else."""
    if type(value) is str and _UUID.match(value):
        return value
    return str(UUID(value))  # type: ignore[arg-type]


def state(document: bytes, archived_at: bytes, topic: str, partition: int, offset: int) -> bytes:
    """What the library's mapper stores for ``recorded(...)`` of this record, written without
    building the event: the record's own JSON document is embedded as it is (``archived_at``: the
    JSON of a ``datetime``, as orjson writes it). A test checks it against the mapper."""
    return b"".join((b'{"timestamp":', archived_at, b',"event":', document, b',"topic":',
                     orjson.dumps(topic), b',"partition":%d,"offset":%d}' % (partition, offset)))


def recorded(doc: dict[str, Any], customer_id: UUID, version: int, archived_at: datetime,
             topic: str, partition: int, offset: int) -> Recorded:
    """The archive's event for one record of the log (its document ``doc``). Raises KeyError
    for a document whose type the archive does not know."""
    return CLASSES[doc["type"]](originator_id=customer_id, originator_version=version,
                                timestamp=archived_at, event=doc, topic=topic,
                                partition=partition, offset=offset)


def to_stored(event: Recorded) -> StoredEvent:
    return MAPPER.to_stored_event(event)


def from_stored(stored: StoredEvent) -> Recorded:
    """The archived event, upcast to the current version of its class."""
    event = MAPPER.to_domain_event(stored)
    assert isinstance(event, Recorded)
    return event
