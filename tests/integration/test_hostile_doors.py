"""Hostile input at every door: each request is refused with a reason that names the field, and
the next good event still flows to the read models.

Two requests once answered 202 stopped a stage for good (a unit separator in an external id, a
NUL in a text field); whatever the doors accept, the stores must be able to hold.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from events import InvalidEvent
from services.sdk import TouchstreamProducer
from tests.conftest import eventually
from tests.integration.pipeline import api_client, count, read_topic, running_stages, touchpoint

pytestmark = pytest.mark.integration

Case = tuple[str, Callable[[dict[str, Any]], dict[str, Any]], str, str]


def _customer(**extra: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda e: {**e, "customer": {**e["customer"], **extra}}


def _payload(**extra: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda e: {**e, "payload": {**e["payload"], **extra}}


def _envelope(**extra: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda e: {**e, **extra}


# (what, how a good complaint, order or feedback event is spoilt, the field named, part of the reason)
COMPLAINTS: list[Case] = [
    ("NUL in source", _envelope(source="cr\x00m"), "source", "(found U+0000)"),
    ("unit separator in source", _envelope(source="cr\x1fm"), "source", "(found U+001F)"),
    ("unit separator in an external id", _customer(external_ids={"crm": "x\x1fy"}),
     "customer.external_ids.crm", "must not contain control characters (found U+001F)"),
    ("NUL in an external id", _customer(external_ids={"crm": "x\x00y"}),
     "customer.external_ids.crm", "(found U+0000)"),
    ("unit separator in an external id's system", _customer(external_ids={"c\x1frm": "1"}),
     "customer.external_ids.c\\u001frm", "invalid key"),
    ("NUL in an attribute value", _customer(attributes={"name": "Ann\x00"}),
     "customer.attributes.name", "(found U+0000)"),
    ("NUL in an attribute name", _customer(attributes={"na\x00me": "Ann"}),
     "customer.attributes.na\\u0000me", "invalid key"),
    ("NUL in complaint text", _payload(text="Late.\x00"), "payload.text", "(found U+0000)"),
    ("unit separator in complaint text", _payload(text="Late.\x1f"), "payload.text",
     "other than tab, line feed and carriage return (found U+001F)"),
    ("huge source", _envelope(source="x" * 1_000_000), "source", "at most 64 characters"),
    ("huge complaint text", _payload(text="x" * 200_000), "payload.text", "at most 5000"),
    ("source of the wrong type", _envelope(source=42), "source", "valid string"),
    ("customer of the wrong type", _envelope(customer=["ann@example.com"]), "customer", ""),
    ("payload of the wrong type", _envelope(payload="late"), "payload", ""),
    ("nested attribute", _customer(attributes={"a": [[[[[[1]]]]]]}), "customer.attributes.a",
     "attribute values must be a string, number, boolean or null"),
]
ORDERS: list[Case] = [
    ("NUL in an order id", _payload(order_id="O-\x001"), "payload.order_id", "(found U+0000)"),
    ("unit separator in an order id", _payload(order_id="O-\x1f1"), "payload.order_id",
     "(found U+001F)"),
    ("amount of the wrong type", _payload(amount=[10]), "payload.amount", ""),
]
FEEDBACK: list[Case] = [
    ("a CSAT score beyond its scale", _payload(score=7), "payload.score", "a csat score is 1 to 5"),
    ("an NPS score beyond its scale", _payload(scale="nps", score=11), "payload.score",
     "an nps score is 0 to 10"),
    ("a huge score", _payload(score=10**18), "payload.score", "a csat score is 1 to 5"),
    ("a score of the wrong type", _payload(score="4 stars"), "payload.score", "valid integer"),
    ("NUL in feedback text", _payload(text="Fine.\x00"), "payload.text", "(found U+0000)"),
    ("a call that is not an event id", _payload(call_event_id="call-7"), "payload.call_event_id",
     "must be a UUID"),
]
# Bodies that are not JSON a door can read: (what, bytes in place of the good event's source)
NOT_JSON = [
    ("invalid UTF-8", b'"sh\xffop"'),
    ("a lone surrogate escape", b'"\\ud800"'),
    ("an encoded surrogate", b'"\xed\xa0\x80"'),
    ("deeply nested JSON", b"[" * 100_000 + b"]" * 100_000),
]


def _cases(email: str) -> list[tuple[str, dict[str, Any], str, str]]:
    good = {"complaint": touchpoint("complaint", email=email), "order": touchpoint("order", email=email),
            "feedback": touchpoint("feedback", email=email)}
    return [(what, spoil(good[kind]), field, reason)
            for kind, cases in (("complaint", COMPLAINTS), ("order", ORDERS), ("feedback", FEEDBACK))
            for what, spoil, field, reason in cases]


def _raw(email: str, source: bytes) -> bytes:
    good = orjson.dumps({**touchpoint("call", email=email), "source": "SOURCE"})
    return good.replace(b'"SOURCE"', source)


def _refusal(response: Any, index: int, field: str, reason: str) -> str | None:
    """What is wrong with ``response`` as the refusal of an event at ``index``; None if right."""
    if response.status_code != 422:
        return f"status {response.status_code}: {response.text[:200]}"
    errors = response.json()["errors"]
    if not any(e["index"] == index and e["field"] == field and reason in e["reason"]
               for e in errors):
        return f"errors {errors}"
    return None


async def test_hostile_requests_are_refused_and_good_ones_still_flow(settings):
    email = f"hostile.{uuid.uuid4().hex[:6]}@example.com"
    async with running_stages(settings), api_client(settings) as client:
        wrong: list[str] = []
        good = touchpoint("call", email=email)
        for what, event, field, reason in _cases(email):
            one = await client.post("/v1/touchpoints", content=orjson.dumps(event),
                                    headers={"content-type": "application/json"})
            many = await client.post("/v1/touchpoints/batch",
                                     content=orjson.dumps({"events": [good, event]}),
                                     headers={"content-type": "application/json"})
            wrong += [f"{what} ({door}): {problem}" for door, problem in (
                ("single", _refusal(one, 0, field, reason)),
                ("batch", _refusal(many, 1, field, reason))) if problem]
        for what, source in NOT_JSON:
            body = _raw(email, source)
            one = await client.post("/v1/touchpoints", content=body,
                                    headers={"content-type": "application/json"})
            many = await client.post("/v1/touchpoints/batch", content=b'{"events": [' + body + b"]}",
                                     headers={"content-type": "application/json"})
            wrong += [f"{what} ({door}): {problem}" for door, problem in (
                ("single", _refusal(one, 0, "", "not valid JSON")),
                ("batch", _refusal(many, 0, "", "not valid JSON"))) if problem]
        assert not wrong, "\n".join(wrong)

        accepted = await client.post("/v1/touchpoints", json=good)
        batch = await client.post("/v1/touchpoints/batch",
                                  json={"events": [touchpoint("complaint", email=email)]})
        assert accepted.status_code == 202 and batch.status_code == 202
        await eventually(lambda: _contacts(settings, email, 2))
        assert await count(settings, "SELECT count(*) AS n FROM dead_letters") == 0


async def test_a_body_too_large_is_413_and_the_door_stays_open(settings):
    settings = settings.model_copy(update={"max_body_bytes": 100_000})
    email = f"large.{uuid.uuid4().hex[:6]}@example.com"
    huge = {**touchpoint("complaint", email=email), "source": "x" * 200_000}
    async with api_client(settings) as client:
        for path, body in (("/v1/touchpoints", huge), ("/v1/touchpoints/batch", {"events": [huge]})):
            response = await client.post(path, json=body)
            assert response.status_code == 413, path
            assert "larger than 100000 bytes" in response.json()["error"]
        assert (await client.post("/v1/touchpoints", json=touchpoint("call", email=email))
                ).status_code == 202


def test_the_sdk_refuses_the_same_events_before_sending(settings):
    email = f"sdk.{uuid.uuid4().hex[:6]}@example.com"
    wrong = []
    with TouchstreamProducer(settings.kafka_bootstrap_servers, settings.raw_topic) as sdk:
        cases = [*_cases(email),
                 ("a lone surrogate", {**touchpoint("call", email=email), "source": "a\ud800"},
                  "source", "valid string")]
        for what, event, field, reason in cases:
            try:
                sdk.publish(event)
                wrong.append(f"{what}: accepted")
            except InvalidEvent as exc:
                if not any(e["field"] == field and reason in e["reason"] for e in exc.errors):
                    wrong.append(f"{what}: {exc.errors}")
        assert not wrong, "\n".join(wrong)
        event_id = sdk.publish(touchpoint("call", email=email))
        sdk.flush()
    [record] = asyncio.run(read_topic(settings, settings.raw_topic, 1))
    assert orjson.loads(record.value)["event_id"] == event_id


async def _contacts(settings, email: str, n: int) -> bool:
    return await count(settings, "SELECT count(*) AS n FROM contacts c JOIN identity_keys k "
                                 "ON k.customer_id = c.customer_id WHERE k.key = %s",
                       f"email:{email}") == n


async def test_a_batch_with_fields_beside_events_is_refused_naming_them(settings):
    """The batch body is exactly {"events": [...]} (as its schema says); a key with a NUL is
    named with the NUL escaped, and the next good batch is accepted."""
    good = touchpoint("call", email=f"b.{uuid.uuid4().hex[:6]}@example.com")
    async with api_client(settings) as client:
        bad = await client.post("/v1/touchpoints/batch",
                                json={"events": [good], "priority": "high", "x\u0000y": 1})
        assert bad.status_code == 422
        assert {e["field"] for e in bad.json()["errors"]} == {"priority", "x\\u0000y"}
        assert (await client.post("/v1/touchpoints/batch", json={"events": [good]})).status_code == 202
