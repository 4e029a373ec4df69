"""The Python SDK: validation before sending, acknowledgements on flush, failures named."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from events import InvalidEvent
from services.infra.broker import EmbeddedBroker
from services.infra.topics import ensure_topics
from services.sdk import PublishError, TouchstreamProducer
from tests.integration.pipeline import touchpoint

pytestmark = pytest.mark.integration


def test_flush_names_the_events_the_broker_did_not_acknowledge(settings, tmp_path):
    broker = EmbeddedBroker(tmp_path).start()
    s = settings.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap_servers})
    ensure_topics(s)
    sdk = TouchstreamProducer(s.kafka_bootstrap_servers, s.raw_topic, timeout_s=2.0)
    try:
        sdk.publish(touchpoint("call", email="first@example.com"))
        sdk.flush()
        with pytest.raises(InvalidEvent) as invalid:
            sdk.publish(touchpoint("order", email="x@example.com", amount="-1"))
        assert invalid.value.errors[0]["field"] == "payload.amount"
        broker.stop()
        ids = {sdk.publish(touchpoint("call", email=f"lost{i}@example.com")) for i in range(10)}
        with pytest.raises(PublishError) as failed:
            sdk.flush(timeout=20)
        assert set(failed.value.failed) == ids
        sdk.flush()  # failures are reported once
    finally:
        sdk.close(timeout=5)


def test_many_events_are_all_acknowledged_in_order_per_key(settings):
    """More events than one send holds, and more than may wait at once: publish blocks, nothing is
    dropped, and each key's events keep their order on its partition."""
    events = [touchpoint("web_visit", email=f"c{i % 7}@example.com") for i in range(3000)]
    with TouchstreamProducer(settings.kafka_bootstrap_servers, settings.raw_topic,
                             batch_events=200, max_pending=500) as sdk:
        for e in events:
            sdk.publish(e)
        sdk.flush()

    records = sorted(asyncio.run(_read_all(settings, len(events))), key=lambda r: (r.partition, r.offset))
    for key in {r.key for r in records}:
        sent = [e["event_id"] for e in events if e["customer"]["email"].encode() == key]
        assert [orjson.loads(r.value)["event_id"] for r in records if r.key == key] == sent


def test_records_are_sealed_only_with_the_signing_key(settings):
    """A channel trusted with the key seals its records; any other is validated in full."""
    from services.wire import is_sealed, signing_key

    key = signing_key(settings.signing_key)
    for secret in (settings.signing_key, "", "another key"):
        with TouchstreamProducer(settings.kafka_bootstrap_servers, settings.raw_topic,
                                 signing_key=secret) as sdk:
            sdk.publish(touchpoint("call", email=f"seal.{secret[:4] or 'none'}@example.com"))
            sdk.flush()
    records = asyncio.run(_read_all(settings, 3))
    by_email = {orjson.loads(r.value)["customer"]["email"]: is_sealed(r.headers, r.value, key)
                for r in records}
    assert by_email == {f"seal.{settings.signing_key[:4]}@example.com": True,
                        "seal.none@example.com": False, "seal.anot@example.com": False}


async def _read_all(settings, n: int) -> list:
    consumer = AIOKafkaConsumer(settings.raw_topic, bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    got: list = []
    try:
        while len(got) < n:
            batch = await consumer.getmany(timeout_ms=1000)
            assert batch, f"only {len(got)} of {n} records arrived"
            got += [r for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()
    return got
