"""The published JSON Schemas and the models agree: what a schema allows, the doors accept.

Events are generated from each file in schemas/ (hypothesis-jsonschema). The only rules they may
break are the ones a schema names in its description because no JSON Schema can express them:
a phone valid for its country code, occurred_at at most 1 day in the future (and, for identity
links, the survivor not among the merged ids). Any other refusal means the schema promises more
than the models keep. The other way round, events the doors refuse are refused by the schemas.
SCHEMA_EXAMPLES (200 by default) sets how many events each file gives.
"""

import calendar
import json
import os
import re
from datetime import UTC, datetime
from typing import Any

import hypothesis_jsonschema._from_schema as jsonschema_strategies
import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis.strategies import SearchStrategy
from hypothesis_jsonschema import from_schema
from jsonschema import Draft202012Validator
from pydantic import TypeAdapter

from events import VERSIONED, CustomersLinked, InvalidEvent, parse_touchpoint
from events.envelope import DATE_TIME, MAX_FUTURE
from events.identifiers import normalise_phone
from events.schemas import SCHEMA_DIR

INSTANT = TypeAdapter(datetime)
UNION = "touchpoint.json"
TOUCHPOINT_FILES = sorted(p.name for p in SCHEMA_DIR.glob("touchpoint*.json"))
GENERATED = settings(
    max_examples=int(os.environ.get("SCHEMA_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _built_once(build: Any) -> Any:
    """hypothesis-jsonschema builds a new strategy for a property's schema at every draw of the
    property; the same few schemas recur, so each is built once (five times faster here)."""
    built: dict[tuple[str, int, int], SearchStrategy[Any]] = {}

    def strategy(schema: Any, **kwargs: Any) -> SearchStrategy[Any]:
        key = (json.dumps(schema, sort_keys=True), id(kwargs["alphabet"]),
               id(kwargs["custom_formats"]))
        if key not in built:
            built[key] = build(schema, **kwargs)
        return built[key]

    return strategy


for _name in ("merged_as_strategies", "__from_schema"):  # if they are gone: correct, only slower
    if hasattr(jsonschema_strategies, _name):
        setattr(jsonschema_strategies, _name, _built_once(getattr(jsonschema_strategies, _name)))


def schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))


def assume_what_no_schema_says(event: dict[str, Any]) -> None:
    phone = event["customer"].get("phone")
    if phone is not None:
        try:
            normalise_phone(phone)
        except ValueError:
            assume(False)
    assume(INSTANT.validate_python(event["occurred_at"]) <= datetime.now(UTC) + MAX_FUTURE)


def test_the_generated_events_cover_every_type_and_version() -> None:
    assert set(TOUCHPOINT_FILES) == {f"touchpoint.{k}.v{v}.json" for k, v in VERSIONED} | {UNION}


@pytest.mark.parametrize("name", TOUCHPOINT_FILES)
def test_every_event_a_schema_allows_is_accepted(name: str) -> None:
    # the union's branches are the per-type schemas, each generated in full on its own: the
    # union's own run checks how they are joined, with a quarter of the examples
    examples = GENERATED.max_examples // 4 if name == UNION else GENERATED.max_examples

    @settings(GENERATED, max_examples=examples)
    @given(from_schema(schema(name)))
    def accepted(event: dict[str, Any]) -> None:
        assume_what_no_schema_says(event)
        parsed = parse_touchpoint(event)  # the gateway's path (a decoded body)
        assert parsed.type == event["type"]
        assert parsed.schema_version == event.get("schema_version", 1)
        recorded = parse_touchpoint(orjson.dumps({**event, "event_id": parsed.event_id}))
        assert recorded == parsed  # a producer's record, as the identity stage reads it

    accepted()


def test_every_identity_link_the_schema_allows_is_accepted() -> None:
    @GENERATED
    @given(from_schema(schema("customers_linked.v1.json")))
    def accepted(link: dict[str, Any]) -> None:
        survivor = link["customer_id"].lower()
        assume(survivor not in {i.lower() for i in link["merged_ids"]})
        CustomersLinked.model_validate(link)

    accepted()


def test_the_time_pattern_allows_exactly_the_real_days() -> None:
    pattern = re.compile(DATE_TIME)
    for year in (2, 1900, 1999, 2000, 2023, 2024, 2100, 2400, 9998):
        for month in range(13):
            for day in range(33):
                text = f"{year:04d}-{month:02d}-{day:02d}T00:00:00Z"
                real = month and day and day <= calendar.monthrange(year, month)[1]
                assert bool(pattern.fullmatch(text)) == bool(real), text
    for text in ("0001-01-01T00:00:00Z", "9999-12-31T00:00:00Z", "2024-05-01T24:00:00Z",
                 "2024-05-01T10:00:60Z", "2024-05-01T10:00:00", "2024-05-01T10:00:00+24:00"):
        assert not pattern.fullmatch(text), text


GOOD = {
    "event_id": "0b6f1e6e-3c1a-4b8e-9a39-5b7f6f0f2a11",
    "type": "complaint",
    "customer": {"email": "ann@example.com"},
    "occurred_at": "2024-05-01T10:00:00+02:00",
    "channel": "chat",
    "source": "crm",
    "payload": {"complaint_id": "K-1", "category": "delivery", "severity": "high",
                "text": "Late.\r\nAgain.\tTwice."},
}


def _with_payload(event: dict[str, Any], **payload: Any) -> dict[str, Any]:
    return {**event, "payload": {**event["payload"], **payload}}


def _drop(event: dict[str, Any], field: str) -> dict[str, Any]:
    return {**event, "payload": {k: v for k, v in event["payload"].items() if k != field}}


def _with(path: str, value: Any) -> dict[str, Any]:
    event = json.loads(json.dumps(GOOD))
    *parents, last = path.split(".")
    target = event
    for part in parents:
        target = target[part]
    target[last] = value
    return event


REFUSED = {
    "no identifier": _with("customer", {"attributes": {"name": "Ann"}}),
    "null identifiers only": _with("customer", {"customer_id": None, "email": None}),
    "empty external ids": _with("customer", {"external_ids": {}}),
    "event id not a UUID": _with("event_id", "not-a-uuid"),
    "event id without hyphens": _with("event_id", "0b6f1e6e3c1a4b8e9a395b7f6f0f2a11"),
    "e-mail without a domain": _with("customer.email", "ann@example"),
    "e-mail with a space": _with("customer.email", "ann lee@example.com"),
    "unit separator in an external id": _with("customer.external_ids", {"crm": "x\u001fy"}),
    "NUL in the source": _with("source", "cr\u0000m"),
    "NUL in complaint text": _with("payload.text", "Late\u0000"),
    "vertical tab in complaint text": _with("payload.text", "Late\u000bagain"),
    "line feed in an attribute": _with("customer.attributes", {"name": "Ann\nLee"}),
    "blank source": _with("source", "   "),
    "blank complaint text": _with("payload.text", "\u3000\u00a0 "),
    "naive time": _with("occurred_at", "2024-05-01T10:00:00"),
    "impossible hour": _with("occurred_at", "2024-05-01T24:00:00Z"),
    "29 February of a common year": _with("occurred_at", "2023-02-29T10:00:00Z"),
    "time out of range in UTC": _with("occurred_at", "0001-01-01T00:00:00+01:00"),
    "unknown severity": _with("payload.severity", "urgent"),
    "unknown field": _with("payload.colour", "red"),
    "unknown type": _with("type", "fax"),
    "wrong type": _with("payload.text", 42),
    "bad channel": _with("channel", "Web Chat"),
    "too many attributes": _with("customer.attributes", {f"a{i}": i for i in range(51)}),
    "attribute integer beyond 64 bits": _with("customer.attributes", {"n": 2**64}),
    "external id system with upper case": _with("customer.external_ids", {"CRM": "1"}),
}
ORDER = {**GOOD, "type": "order", "channel": "web", "payload": {
    "order_id": "O-1", "amount": "10.50", "currency": "EUR",
    "items": [{"sku": "A", "quantity": 1, "unit_price": "10.50"}]}}
REFUSED_ORDERS = {
    "negative amount": {"amount": "-1"},
    "five decimal places": {"amount": "1.00001"},
    "eleven digits": {"amount": "12345678901"},
    "amount as a word": {"amount": "ten"},
    "currency of four letters": {"currency": "EURO"},
    "zero quantity": {"items": [{"sku": "A", "quantity": 0, "unit_price": "1"}]},
    "NUL in the order id": {"order_id": "O-\u00001"},
}
CALL = {**GOOD, "type": "call", "channel": "phone", "payload": {
    "direction": "inbound", "duration_s": 240, "outcome": "resolved"}}
CALL_V2 = {**CALL, "schema_version": 2, "payload": {**CALL["payload"], "wait_s": 35.5}}
REFUSED_CALLS = {  # (the file of the version the event claims, the event)
    "version 2 without its wait": ("touchpoint.call.v2.json", _drop(CALL_V2, "wait_s")),
    "negative wait": ("touchpoint.call.v2.json", _with_payload(CALL_V2, wait_s=-1)),
    "wait beyond a day": ("touchpoint.call.v2.json", _with_payload(CALL_V2, wait_s=86401)),
    "wait as a word": ("touchpoint.call.v2.json", _with_payload(CALL_V2, wait_s="long")),
    "version 1 with a wait": ("touchpoint.call.v1.json", _with_payload(CALL, wait_s=3)),
    "version 3": ("touchpoint.call.v2.json", {**CALL_V2, "schema_version": 3}),
    "version 2 as a string": ("touchpoint.call.v2.json", {**CALL_V2, "schema_version": "2"}),
    "version 1 as a string": ("touchpoint.call.v1.json", {**CALL, "schema_version": "1"}),
    "an email at version 2": ("touchpoint.email.v1.json", {
        **GOOD, "type": "email", "schema_version": 2,
        "payload": {"direction": "outbound", "action": "opened"}}),
}
FEEDBACK = {**GOOD, "type": "feedback", "channel": "email", "payload": {
    "scale": "csat", "score": 2, "text": "Late again.\nTwice.", "order_id": "O-1"}}
REFUSED_FEEDBACK = {  # the scale sets the score's range: the models and the schemas agree
    "CSAT score of 0": {"score": 0},
    "CSAT score of 6": {"score": 6},
    "CSAT score of 10, an NPS score": {"score": 10},
    "NPS score of -1": {"scale": "nps", "score": -1},
    "NPS score of 11": {"scale": "nps", "score": 11},
    "score with a fraction": {"score": 2.5},
    "unknown scale": {"scale": "ces"},
    "no scale": {"scale": None},
    "call that is not an event id": {"call_event_id": "call-7"},
    "blank order id": {"order_id": " "},
    "NUL in feedback text": {"text": "Late\u0000"},
}


def _refused_cases() -> list[Any]:
    cases = [pytest.param("touchpoint.complaint.v1.json", event, id=label)
             for label, event in REFUSED.items()]
    cases += [pytest.param("touchpoint.order.v1.json",
                           {**ORDER, "payload": {**ORDER["payload"], **change}}, id=label)
              for label, change in REFUSED_ORDERS.items()]
    cases += [pytest.param("touchpoint.feedback.v1.json", {**FEEDBACK, "payload": {
        k: v for k, v in {**FEEDBACK["payload"], **change}.items() if v is not None}}, id=label)
              for label, change in REFUSED_FEEDBACK.items()]
    cases += [pytest.param(name, event, id=label) for label, (name, event) in REFUSED_CALLS.items()]
    return cases


@pytest.mark.parametrize(("name", "event"), _refused_cases())
def test_what_the_doors_refuse_the_schemas_refuse(name: str, event: dict[str, Any]) -> None:
    with pytest.raises(InvalidEvent):
        parse_touchpoint(event)
    for file in (name, UNION):
        assert not Draft202012Validator(schema(file)).is_valid(event), file


NPS = {**FEEDBACK, "payload": {"scale": "nps", "score": 0,
                               "call_event_id": "0b6f1e6e-3c1a-4b8e-9a39-5b7f6f0f2a12"}}


GOOD_CASES = {  # (the file of the event's type and version, the event)
    "complaint": ("touchpoint.complaint.v1.json", GOOD),
    "order": ("touchpoint.order.v1.json", ORDER),
    "csat": ("touchpoint.feedback.v1.json", FEEDBACK),
    "nps": ("touchpoint.feedback.v1.json", NPS),
    "call without a version": ("touchpoint.call.v1.json", CALL),
    "call at version 1": ("touchpoint.call.v1.json", {**CALL, "schema_version": 1}),
    "call at version 2": ("touchpoint.call.v2.json", CALL_V2),
    "call at version 2, wait not measured": ("touchpoint.call.v2.json", _with_payload(CALL_V2, wait_s=None)),
}


@pytest.mark.parametrize(("name", "event"), GOOD_CASES.values(), ids=GOOD_CASES)
def test_the_good_cases_pass_both(name: str, event: dict[str, Any]) -> None:
    parsed = parse_touchpoint(event)
    assert parsed.schema_version == event.get("schema_version", 1)
    Draft202012Validator(schema(UNION)).validate(event)
    Draft202012Validator(schema(name)).validate(event)
    others = [f for f in TOUCHPOINT_FILES if f not in (name, UNION)]
    assert not any(Draft202012Validator(schema(f)).is_valid(event) for f in others)
