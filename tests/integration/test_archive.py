"""The archive stage on the real broker and PostgreSQL: every record of touchpoints in its
customer's stream, once, in log order, readable through the eventsourcing library."""

from __future__ import annotations

import uuid
from collections import defaultdict

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from events.archive import CustomersLinkedRecorded, TouchpointRecorded, from_stored
from services import archive
from services.processors.archive import ArchiveStage
from services.processors.identity import IdentityStage
from services.processors.projector import ProjectionStage
from tests.conftest import eventually
from tests.integration.faults import drained
from tests.integration.pipeline import api_client, count, rows, running_stages, touchpoint

pytestmark = pytest.mark.integration

ALL = (IdentityStage, ProjectionStage, ArchiveStage)
STAGES = ("identity", "projections", "archive")


async def _archived(settings) -> int:
    return await count(settings, "SELECT count(*) AS n FROM archive_events")


async def test_each_record_lands_once_in_its_customers_stream_in_log_order(settings):
    a, b = f"ann.{uuid.uuid4().hex[:6]}@example.com", f"bo.{uuid.uuid4().hex[:6]}@example.com"
    first = [touchpoint(k, email=a) for k in ("call", "email", "order", "feedback")]
    again = dict(first[1])  # the same event sent twice: archived once
    second = [touchpoint("web_visit", email=b), touchpoint("complaint", email=b)]
    async with running_stages(settings, ALL), api_client(settings) as client:
        r = await client.post("/v1/touchpoints/batch", json={"events": first + second + [again]})
        assert r.status_code == 202, r.text
        await drained(settings, stages=STAGES)
        # the two customers become one: the link is archived in the survivor's stream
        link = touchpoint("call", email=a, phone="+442079460958")
        both = touchpoint("call", email=b, phone="+442079460958")
        r = await client.post("/v1/touchpoints/batch", json={"events": [link, both]})
        assert r.status_code == 202, r.text
        await drained(settings, stages=STAGES)

    found = await rows(settings, "SELECT originator_id::text AS c, originator_version AS v, topic, "
                                 "state, notification_id AS n FROM archive_events ORDER BY n")
    events = [from_stored(_stored(r)) for r in found]
    ids = [e.event["event_id"] for e in events if isinstance(e, TouchpointRecorded)]
    sent = [e["event_id"] for e in first + second] + [link["event_id"], both["event_id"]]
    assert sorted(ids) == sorted(sent), "each event once"
    assert sum(isinstance(e, CustomersLinkedRecorded) for e in events) == 1
    streams: dict[str, list] = defaultdict(list)
    for r, e in zip(found, events, strict=True):
        assert e.event["customer"]["customer_id"] == r["c"]
        streams[r["c"]].append(e)
    for events_of in streams.values():
        assert [e.originator_version for e in events_of] == list(range(1, len(events_of) + 1))
        by_partition = defaultdict(list)
        for e in events_of:
            by_partition[e.partition].append(e.offset)
        assert all(o == sorted(o) for o in by_partition.values()), "a stream keeps log order"
    assert {e.topic for e in events} == {settings.log_topic}
    # the library reads a customer's stream
    customer = found[0]["c"]
    assert [e.event["event_id"] for e in archive.stream(settings.database_url, customer)] == \
        [e.event["event_id"] for e in streams[customer]]
    assert len(archive.notifications(settings.database_url, 1, 100)) == len(found)


async def test_a_record_it_cannot_read_is_a_dead_letter_and_the_next_is_archived(settings):
    """Records written to touchpoints by something other than the identity stage: the archive
    refuses what it cannot read (no customer id, a customer id that is no UUID, not JSON, an
    unknown type) and goes on."""
    cid = str(uuid.uuid4())
    good = touchpoint("call", email="x@example.com") | {"customer": {"customer_id": cid}}
    hostile = [b"\x00{not json", orjson.dumps(good | {"customer": {}}),
               orjson.dumps(good | {"customer": {"customer_id": "A\x1fB"}}),
               orjson.dumps(good | {"type": "fax"}), orjson.dumps(good | {"event_id": None})]
    after = touchpoint("order", email="x@example.com") | {"customer": {"customer_id": cid}}
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for value in [*hostile, orjson.dumps(after)]:
            await producer.send_and_wait(settings.log_topic, value, key=cid.encode())
    finally:
        await producer.stop()
    async with running_stages(settings, (ArchiveStage,)):
        await eventually(lambda: _archived(settings))
    letters = await rows(settings, "SELECT error, source_offset FROM dead_letters "
                                   "WHERE stage = 'archive' ORDER BY source_offset")
    assert len(letters) == len(hostile)
    assert all("cannot be archived" in r["error"] for r in letters)
    [(kept,)] = [(from_stored(_stored(r)),) for r in await rows(
        settings, "SELECT originator_id::text AS c, originator_version AS v, topic, state "
                  "FROM archive_events")]
    assert kept.event["event_id"] == after["event_id"] and kept.originator_version == 1


def _stored(r: dict):
    from eventsourcing.persistence import StoredEvent

    return StoredEvent(originator_id=uuid.UUID(r["c"]), originator_version=r["v"],
                       topic=r["topic"], state=bytes(r["state"]))
