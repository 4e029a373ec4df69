"""The archive's events: each record of topic ``touchpoints``, as a domain event of the
``eventsourcing`` library in its customer's stream.

A stream is a customer's (``originator_id``: the customer id the record was keyed by, versions
1, 2, ... in log order). The state keeps the document as it was on the log with its position
(topic, partition, offset), so that the log can be written again from the archive in its
original order. Record types share a class until their document changes: then the type gets a
class of its own, whose ``class_version`` is the type's latest ``schema_version``, with an
``upcast_vN_vN+1`` method per earlier version. A document is stored at its own version (a
producer may send an earlier one long after the change), and the library upcasts it when it
reads it: readers always get the latest shape.
"""

from __future__ import annotations

import copy
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


class CallRecorded(TouchpointRecorded):
    """A call. Version 2 is call version 2, which added ``payload.wait_s``."""

    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A call of version 1 as version 2: the customer's wait was not measured then."""
        event = state["event"]
        event["schema_version"] = 2
        event["payload"]["wait_s"] = None


class CustomersLinkedRecorded(Recorded):
    """Identity resolution merged customers (in the survivor's stream)."""


CLASSES: dict[str, type[Recorded]] = {t: TouchpointRecorded for t in TOUCHPOINT_TYPES}
CLASSES["call"] = CallRecorded
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
LATEST: dict[str, int] = {t: getattr(cls, "class_version", 1) for t, cls in CLASSES.items()}
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def uuid_text(value: object) -> str:
    """A UUID in its canonical text form; raises (TypeError, ValueError) for anything else."""
    if type(value) is str and _UUID.match(value):
        return value
    return str(UUID(value))  # type: ignore[arg-type]


def stored_version(doc: dict[str, Any]) -> int:
    """The class version a document is stored at: its own ``schema_version``. Raises KeyError
    for a type the archive does not know, ValueError for a version its class does not (a later
    one, or no version number)."""
    version = doc.get("schema_version", 1)
    if type(version) is not int or not 1 <= version <= LATEST[doc["type"]]:
        raise ValueError(f"the archive knows no schema_version {version!r} of {doc['type']!r}")
    return version


def state(document: bytes, archived_at: bytes, topic: str, partition: int, offset: int,
          version: int) -> bytes:
    """What the library's mapper stores for this record, written without building the event:
    the record's own JSON document is embedded as it is (``archived_at``: the JSON of a
    ``datetime``, as orjson writes it), and its ``stored_version`` where the mapper writes its
    class's version (only above 1), so that the library upcasts it on reading. A test checks it
    against the mapper."""
    end = b"}" if version == 1 else b',"class_version":%d}' % version
    return b"".join((b'{"timestamp":', archived_at, b',"event":', document, b',"topic":',
                     orjson.dumps(topic), b',"partition":%d,"offset":%d' % (partition, offset), end))


def recorded(doc: dict[str, Any], customer_id: UUID, version: int, archived_at: datetime,
             topic: str, partition: int, offset: int) -> Recorded:
    """The archive's event for one record of the log (its document ``doc``), as the library
    holds it: at its class's latest version, a document of an earlier one upcast (a copy).
    Raises KeyError for a document whose type the archive does not know."""
    cls, latest = CLASSES[doc["type"]], LATEST[doc["type"]]
    fields: dict[str, Any] = {"originator_id": customer_id, "originator_version": version,
                              "timestamp": archived_at, "event": doc, "topic": topic,
                              "partition": partition, "offset": offset}
    at = stored_version(doc)
    if at < latest:
        fields["event"] = copy.deepcopy(doc)
        for v in range(at, latest):
            getattr(cls, f"upcast_v{v}_v{v + 1}")(fields)
    return cls(**fields)


def to_stored(event: Recorded) -> StoredEvent:
    return MAPPER.to_stored_event(event)


def from_stored(stored: StoredEvent) -> Recorded:
    """The archived event, upcast to the latest version of its class. An event stored before
    its type had a class of its own (a call before version 2 was a ``TouchpointRecorded``) is
    read as that class, from version 1, which its state says by carrying no class version."""
    event = MAPPER.to_domain_event(stored)
    assert isinstance(event, Recorded)
    kind = event.event_type
    if type(event) is not CLASSES.get(kind, type(event)):
        event = MAPPER.to_domain_event(StoredEvent(
            stored.originator_id, stored.originator_version, TOPICS[kind], stored.state))
        assert isinstance(event, Recorded)
    return event
