"""The HTTP contract: clear 4xx errors, all-or-nothing batches, 503 instead of a silent accept."""

from __future__ import annotations

import uuid

import orjson
import pytest

from services.infra.broker import EmbeddedBroker
from services.infra.topics import ensure_topics
from services.kafka import partition_for
from services.wire import is_sealed, signing_key
from tests.conftest import eventually
from tests.integration.pipeline import api_client, count, read_topic, running_stages, touchpoint

pytestmark = pytest.mark.integration


async def test_invalid_event_names_field_and_index(settings):
    bad = touchpoint("order", email="x@example.com", amount="-1")
    async with api_client(settings) as client:
        one = await client.post("/v1/touchpoints", json=bad)
        naive = await client.post("/v1/touchpoints", json={
            **touchpoint("call", email="x@example.com"), "occurred_at": "2026-01-01T10:00:00"})
        batch = await client.post("/v1/touchpoints/batch", json={"events": [
            touchpoint("call", email="y@example.com"), bad, {"type": "fax"}]})
        not_json = await client.post("/v1/touchpoints", content=b"{oops",
                                     headers={"content-type": "application/json"})
    assert one.status_code == 422
    assert {"index": 0, "field": "payload.amount"}.items() <= one.json()["errors"][0].items()
    assert naive.status_code == 422 and "timezone" in naive.json()["errors"][0]["reason"]
    assert batch.status_code == 422
    assert {(e["index"], e["field"]) for e in batch.json()["errors"]} >= {(1, "payload.amount"), (2, "type")}
    assert not_json.status_code == 422 and "not valid JSON" in not_json.json()["errors"][0]["reason"]


async def test_batch_is_all_or_nothing_and_bounded(settings):
    email = f"dora.{uuid.uuid4().hex[:6]}@example.com"
    good = touchpoint("call", email=email)
    async with running_stages(settings), api_client(settings) as client:
        refused = await client.post("/v1/touchpoints/batch", json={"events": [
            good, touchpoint("call", email=email, duration_s=-3)]})
        too_many = await client.post("/v1/touchpoints/batch", json={
            "events": [touchpoint("call", email=email)] * (settings.batch_max_events + 1)})
        ok = await client.post("/v1/touchpoints/batch", json={
            "events": [touchpoint("email", email=email)]})
        assert refused.status_code == 422 and too_many.status_code == 422
        assert ok.status_code == 202 and len(ok.json()["accepted"]) == 1
        await eventually(lambda: _contacts(settings, email, 1))
        # The valid half of the refused batch was never published.
        assert await count(settings, "SELECT count(*) AS n FROM contacts WHERE event_id = %s",
                           good["event_id"]) == 0


async def _contacts(settings, email: str, n: int) -> bool:
    return await count(settings, "SELECT count(*) AS n FROM contacts c JOIN identity_keys k "
                                 "ON k.customer_id = c.customer_id WHERE k.key = %s",
                       f"email:{email}") == n


async def test_oversized_body_is_413(settings):
    settings = settings.model_copy(update={"max_body_bytes": 2048})
    async with api_client(settings) as client:
        response = await client.post("/v1/touchpoints/batch",
                                     json={"events": [touchpoint("call", email="z@example.com")] * 50})
    assert response.status_code == 413 and "larger than 2048" in response.json()["error"]


async def test_unreachable_broker_gives_503_with_retry_after(settings, tmp_path):
    broker = EmbeddedBroker(tmp_path).start()
    s = settings.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap_servers,
                                    "produce_timeout_s": 2.0})
    ensure_topics(s)
    async with api_client(s) as client:
        assert (await client.post("/v1/touchpoints", json=touchpoint("call", email="a@example.com"))
                ).status_code == 202
        broker.stop()
        response = await client.post("/v1/touchpoints", json=touchpoint("call", email="a@example.com"))
        batch = await client.post("/v1/touchpoints/batch", json={"events": [
            touchpoint("call", email=f"b{i}@example.com") for i in range(20)]})
        ready = await client.get("/readyz")
    assert response.status_code == 503
    assert batch.status_code == 503 and batch.json()["accepted_event_ids"] == []
    assert response.headers["retry-after"] == "5"
    assert response.json()["accepted_event_ids"] == []
    assert ready.status_code == 503 and ready.json()["checks"]["broker"] != "ok"


async def test_unknown_customer_is_404_and_lookups_validate(settings):
    async with api_client(settings) as client:
        missing = await client.get(f"/v1/customers/{uuid.uuid4()}")
        garbage = await client.get("/v1/customers/not-a-uuid/timeline")
        bad_email = await client.get("/v1/customers", params={"email": "nope"})
        nobody = await client.get("/v1/customers", params={"email": "nobody@example.com"})
        openapi = await client.get("/openapi.json")
    assert missing.status_code == 404 and missing.json()["error"] == "no such customer"
    assert garbage.status_code == 404
    assert bad_email.status_code == 400 and bad_email.json()["field"] == "email"
    assert nobody.status_code == 200 and nobody.json() == {"items": []}
    paths = openapi.json()["paths"]
    assert {"/v1/touchpoints", "/v1/touchpoints/batch", "/v1/customers/{customer_id}",
            "/v1/customers/{customer_id}/timeline"} <= set(paths)


async def test_timeline_pages_and_filters(settings):
    from datetime import UTC, datetime, timedelta

    email = f"eve.{uuid.uuid4().hex[:6]}@example.com"
    start = datetime(2026, 2, 1, tzinfo=UTC)
    kinds = ["call", "email", "web_visit", "order", "complaint"] * 3
    events = [touchpoint(k, email=email, at=start + timedelta(days=i)) for i, k in enumerate(kinds)]
    async with running_stages(settings), api_client(settings) as client:
        assert (await client.post("/v1/touchpoints/batch", json={"events": events})).status_code == 202
        await eventually(lambda: _contacts(settings, email, len(events)))
        cid = (await client.get("/v1/customers", params={"email": email})).json()["items"][0]["customer_id"]
        seen, cursor = [], None
        while True:
            page = (await client.get(f"/v1/customers/{cid}/timeline",
                                     params={"limit": 4, **({"cursor": cursor} if cursor else {})})).json()
            seen += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert [i["event_id"] for i in seen] == [e["event_id"] for e in reversed(events)]
        calls = (await client.get(f"/v1/customers/{cid}/timeline", params={"type": "call"})).json()
        assert [i["type"] for i in calls["items"]] == ["call"] * 3
        window = (await client.get(f"/v1/customers/{cid}/timeline", params={
            "since": (start + timedelta(days=2)).isoformat(),
            "until": (start + timedelta(days=5)).isoformat(), "channel": "web"})).json()
        assert [i["type"] for i in window["items"]] == ["order", "web_visit"]
        bad = await client.get(f"/v1/customers/{cid}/timeline", params={"cursor": "zzz"})
        assert bad.status_code == 400 and bad.json()["field"] == "cursor"


async def test_batch_records_land_where_single_records_do(settings):
    """A batch goes out as record batches per partition: every record keeps its key, the mark of
    our doors, and the partition that the same key gets through the single-event door."""
    emails = [f"p{i}.{uuid.uuid4().hex[:6]}@example.com" for i in range(30)]
    async with api_client(settings) as client:
        single = await client.post("/v1/touchpoints", json=touchpoint("call", email=emails[0]))
        batch = await client.post("/v1/touchpoints/batch", json={"events": [
            touchpoint("email", email=e) for e in emails]})
    assert single.status_code == 202 and batch.status_code == 202
    records = await read_topic(settings, settings.raw_topic, 31)
    assert {r.key for r in records} == {e.encode() for e in emails}  # keyed by the identifier
    for r in records:
        assert r.partition == partition_for(r.key, settings.partitions)
        assert is_sealed(r.headers, r.value, signing_key(settings.signing_key))
    assert {orjson.loads(r.value)["event_id"] for r in records} == {
        single.json()["accepted"][0], *batch.json()["accepted"]}
    by_key = {}
    for r in records:
        by_key.setdefault(r.key, set()).add(r.partition)
    assert len(by_key[emails[0].encode()]) == 1  # the single and the batch record of one key
