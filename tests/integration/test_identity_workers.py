"""Two identity workers share the graph: a link made by one holds for the next batch of the other."""

from __future__ import annotations

import uuid

import orjson
import psycopg
import pytest
from aiokafka.structs import ConsumerRecord

from services.kafka import producer as kafka_producer
from services.processors.identity import IdentityStage
from tests.integration.pipeline import read_topic, touchpoint

pytestmark = pytest.mark.integration


async def test_a_link_by_one_worker_holds_for_another(settings):
    email, phone = f"c.{uuid.uuid4().hex[:6]}@example.com", "+442079460777"
    first, second = IdentityStage(settings), IdentityStage(settings)
    producer = kafka_producer(settings, "test")
    await producer.start()
    await first.start(producer)
    await second.start(producer)
    try:
        before = [touchpoint("call", email=email), touchpoint("call", phone=phone)]
        await _batch(settings, first, before)
        await _batch(settings, second, [touchpoint("order", email=email, phone=phone, amount="1.00")])
        late = [touchpoint("email", email=email), touchpoint("email", phone=phone)]
        await _batch(settings, first, late)
    finally:
        await producer.stop()
    log = {e["event_id"]: e for e in await _log(settings, 6)}  # 5 touchpoints and the link
    link = next(e["payload"] for e in log.values() if e["type"] == "customers_linked")
    survivor, merged = link["customer_id"], link["merged_ids"][0]
    assert {log[e["event_id"]]["customer"]["customer_id"] for e in before} == {survivor, merged}
    assert [log[e["event_id"]]["customer"]["customer_id"] for e in late] == [survivor, survivor]


async def _batch(settings, stage: IdentityStage, events: list[dict]) -> None:
    records = [ConsumerRecord(settings.raw_topic, 0, i, 0, 0, None, orjson.dumps(e), None, 0, 0, [])
               for i, e in enumerate(events)]
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn, conn.transaction():
        await stage.handle(conn, list(zip(records, stage.prepare(records), strict=True)))


async def _log(settings, n: int) -> list[dict]:
    return [orjson.loads(r.value) for r in await read_topic(settings, settings.log_topic, n)]
