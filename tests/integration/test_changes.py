"""The change feed: committed batches reach a live reader, in commit order, without polling."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import orjson
import psycopg
import pytest
from kafka import KafkaProducer

from projections import REGISTRY
from services import changes
from services.processors.projector import ProjectionStage
from tests.conftest import eventually
from tests.integration.pipeline import api_client, count, rows, running_stages, series, touchpoint

pytestmark = pytest.mark.integration


async def test_a_reader_sees_each_committed_change_once_in_order_and_resumes(settings):
    seen: list[changes.Change] = []

    async def read(after: int) -> None:
        async for change in changes.follow(settings.database_url, after):
            seen.append(change)

    reader = asyncio.ensure_future(read(0))
    email = f"feed.{uuid.uuid4().hex[:6]}@example.com"
    try:
        async with running_stages(settings), api_client(settings) as client:
            events = series(email, 40)
            for i in range(0, 40, 10):
                response = await client.post("/v1/touchpoints/batch", json={"events": events[i:i + 10]})
                assert response.status_code == 202
            await eventually(lambda: sum(c.events.get("contacts", 0) for c in seen) == 40)
            # a change is visible no sooner than the rows it announces
            profile = (await client.get("/v1/customers", params={"email": email})).json()["items"][0]
            assert profile["events_count"] == 40
            assert {cid for c in seen for cid in c.customer_ids} == {profile["customer_id"]}
            seqs = [c.seq for c in seen]
            assert seqs == sorted(set(seqs))
            assert {p for c in seen for p in c.events} == {p.name for p in REGISTRY}
            assert sum(c.events.get("orders", 0) for c in seen) == 8

            # a reader resuming after the last change it saw gets only what came after
            last = seqs[-1]
            reader.cancel()
            seen.clear()
            reader = asyncio.ensure_future(read(last))
            assert (await client.post("/v1/touchpoints", json=touchpoint("call", email=email))
                    ).status_code == 202
            await eventually(lambda: any("contacts" in c.events for c in seen))
            assert all(c.seq > last for c in seen)
            assert sum(c.events.get("contacts", 0) for c in seen) == 1
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    assert await count(settings, "SELECT count(*) AS n FROM contacts") == 41


async def test_the_feed_counts_what_committed_and_nothing_that_rolled_back(settings):
    """A poison record in the log splits its batch: only the committed parts are announced."""
    customer = str(uuid.uuid4())
    good = [_resolved(e, customer) for e in series(f"p.{customer[:6]}@example.com", 30)]
    poison = _resolved(touchpoint("call", email="x@example.com"), customer) | {"source": "a\x00b"}
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    for event in [*good[:15], poison, *good[15:]]:  # one partition, one batch
        producer.send(settings.log_topic, key=customer.encode(), value=orjson.dumps(event))
    producer.flush()
    producer.close()
    async with running_stages(settings, stages=(ProjectionStage,)):
        await eventually(lambda: _contacts(settings, 30))
        await eventually(lambda: count(settings, "SELECT count(*) AS n FROM dead_letters"))
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        feed = await changes.read_after(conn, 0, limit=10_000)
    assert sum(c.events.get("contacts", 0) for c in feed) == 30
    assert sum(c.events.get("profile", 0) for c in feed) == 30
    assert {cid for c in feed for cid in c.customer_ids} == {customer}
    letters = await rows(settings, "SELECT kind, source_offset, error FROM dead_letters")
    assert [(r["kind"], r["source_offset"]) for r in letters] == [("poison", 15)]
    assert "NUL" in letters[0]["error"] or "0x00" in letters[0]["error"]


def _resolved(event: dict, customer_id: str) -> dict:
    """A touchpoint as the identity stage writes it to the log of record."""
    return event | {"customer": {**event["customer"], "customer_id": customer_id},
                    "occurred_at": event["occurred_at"].replace("+00:00", ".000000Z"),
                    "recorded_at": "2026-03-04T00:00:00.000000Z", "schema_version": 1}


async def _contacts(settings, n: int) -> bool:
    return await count(settings, "SELECT count(*) AS n FROM contacts") == n
