"""Malformed records go to the DLQ with the reason; the good records around them go on."""

from __future__ import annotations

import uuid

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from services.processors.dlq import parse_headers
from services.wire import MARK
from tests.conftest import eventually
from tests.integration.pipeline import count, running_stages, touchpoint

pytestmark = pytest.mark.integration


def _dead_letters(settings, n: int, timeout_s: float = 20) -> list:
    """Every DLQ record, read without a consumer group, in (partition, offset) order."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers,
                             consumer_timeout_ms=int(timeout_s * 1000))
    consumer.assign([TopicPartition(settings.dlq_topic, p) for p in range(settings.partitions)])
    consumer.seek_to_beginning()
    records = []
    for record in consumer:
        records.append(record)
        if len(records) == n:
            break
    consumer.close()
    return sorted(records, key=lambda r: (r.partition, r.offset))


async def test_malformed_records_are_dead_lettered_and_good_ones_processed(settings):
    email = f"cleo.{uuid.uuid4().hex[:6]}@example.com"
    good = [touchpoint("call", email=email), touchpoint("email", email=email),
            touchpoint("web_visit", email=email)]
    bad = [
        b"{not json",
        orjson.dumps({**touchpoint("call", email=email), "type": "fax"}),
        orjson.dumps({**touchpoint("order", email=email), "payload": {"order_id": "O-1",
                      "amount": "-5", "currency": "EUR"}}),
        orjson.dumps({**touchpoint("call"), "customer": {}}),
    ]
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    key = email.encode()  # one partition: the bad records sit between the good ones
    for value in (orjson.dumps(good[0]), bad[0], bad[1], orjson.dumps(good[1]), bad[2], bad[3],
                  orjson.dumps(good[2])):
        producer.send(settings.raw_topic, key=key, value=value)
    # A seal that does not verify does not let a bad record through: it is validated in full.
    producer.send(settings.raw_topic, key=key, value=bad[1], headers=[(MARK, b"touchpoint/1;00")])
    bad.append(bad[1])
    producer.flush()
    producer.close()

    async with running_stages(settings):
        await eventually(lambda: _contacts(settings, email, 3))
    letters = _dead_letters(settings, 5)
    assert [r.value for r in letters] == bad  # original bytes, in order
    meta = [parse_headers(r.headers) for r in letters]
    assert {m["stage"] for m in meta} == {"identity"}
    assert "not valid JSON" in meta[0]["error"]
    assert "unknown type 'fax'" in meta[1]["error"]
    assert "payload.amount" in meta[2]["error"]
    assert "at least one identifier" in meta[3]["error"]
    offsets = [m["source_offset"] for m in meta]
    assert offsets == sorted(offsets) and len(set(offsets)) == 5
    assert "unknown type 'fax'" in meta[4]["error"]
    assert all(m["source_topic"] == settings.raw_topic for m in meta)


async def _contacts(settings, email: str, n: int) -> bool:
    return await count(settings, "SELECT count(*) AS n FROM contacts c JOIN identity_keys k "
                                 "ON k.customer_id = c.customer_id WHERE k.key = %s",
                       f"email:{email}") == n
