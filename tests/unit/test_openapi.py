"""/openapi.json is a valid OpenAPI document whose every $ref resolves, and its request bodies
are the published event contract."""

from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from events import VERSIONED
from services.api.app import create_app
from services.config import Settings

EVENT = {
    "type": "call",
    "customer": {"email": "ann@example.com"},
    "occurred_at": "2026-05-04T09:30:00+02:00",
    "channel": "phone",
    "source": "crm",
    "payload": {"direction": "inbound", "duration_s": 240, "outcome": "resolved"},
}
EVENT_V2 = {**EVENT, "schema_version": 2, "payload": {**EVENT["payload"], "wait_s": 12}}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app(Settings()).openapi()


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [r for k, v in node.items() for r in ([v] if k == "$ref" else _refs(v))]
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)


def test_every_ref_resolves_and_nothing_is_left_in_defs(document: dict[str, Any]) -> None:
    refs = _refs(document)
    assert {f"#/components/schemas/{name}" for name in (
        "Customer", "CallLogged", "CallLoggedV2", "ComplaintFiled")} <= set(refs)
    for ref in refs:
        assert isinstance(_resolve(document, ref), dict), ref
    assert "$defs" not in str(document)


def _body(document: dict[str, Any], path: str) -> dict[str, Any]:
    schema = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return {**schema, "components": document["components"]}  # refs resolve from this root


def test_request_bodies_are_the_event_contract(document: dict[str, Any]) -> None:
    one = Draft202012Validator(_body(document, "/v1/touchpoints"))
    many = Draft202012Validator(_body(document, "/v1/touchpoints/batch"))
    assert {ref.rsplit("/", 1)[1] for ref in _refs(one.schema["oneOf"])} == {
        model.__name__ for model in VERSIONED.values()}
    hostile = {**EVENT, "source": "cr\u0000m"}
    assert one.is_valid(EVENT) and not one.is_valid(hostile)
    assert many.is_valid({"events": [EVENT]}) and not many.is_valid({"events": [EVENT, hostile]})
    no_wait = {**EVENT_V2, "payload": EVENT["payload"]}
    for bad in (no_wait, {**EVENT_V2, "schema_version": 3}, {**EVENT, "payload": EVENT_V2["payload"]}):
        assert not one.is_valid(bad), bad
    assert one.is_valid(EVENT_V2) and many.is_valid({"events": [EVENT, EVENT_V2]})
    assert not many.is_valid({"events": [EVENT_V2, no_wait]})
