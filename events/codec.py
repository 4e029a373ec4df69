"""Bytes in, events out (and back): validation with clean, field-named errors."""

from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from events.envelope import TouchpointEvent
from events.identifiers import PATTERN_REASONS, normalise_uuid
from events.identity import identity_keys
from events.strings import control_reason, printable
from events.touchpoints import TOUCHPOINT_TYPES, VERSION_TAGS, VERSIONS, Touchpoint

__all__ = [
    "InvalidEvent",
    "dump_touchpoint",
    "error_details",
    "identity_keys",
    "parse_touchpoint",
    "routing_key",
    "with_customer_id",
    "with_recorded_at",
]

E = TypeVar("E", bound=TouchpointEvent)
_TOUCHPOINT: TypeAdapter[TouchpointEvent] = TypeAdapter(Touchpoint)
_ALLOWED = ", ".join(TOUCHPOINT_TYPES)
_NOT_OBJECT = {"field": "", "reason": "event must be a JSON object"}


class InvalidEvent(ValueError):
    """The input is not a valid touchpoint; `errors` lists {"field", "reason"} dicts."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field'] or '<event>'}: {e['reason']}" for e in errors))


def parse_touchpoint(data: bytes | str | dict[str, Any],
                     recorded_at: datetime | None = None) -> TouchpointEvent:
    """Validate JSON (bytes/str) or a dict into the touchpoint subclass for its `type`.

    ``recorded_at``, when given, replaces whatever the data says: a door stamps the time it
    accepted the event. (Set in the dict before validation, it costs nothing; copying the
    validated model costs a noticeable part of the validation, BENCHMARKS.md.)"""
    if recorded_at is not None and recorded_at.utcoffset() is None:
        raise ValueError("recorded_at must include a timezone offset")
    try:
        if isinstance(data, bytes | bytearray | str):
            event = _TOUCHPOINT.validate_json(data)
            return event if recorded_at is None else with_recorded_at(event, recorded_at)
        if isinstance(data, dict):
            return _TOUCHPOINT.validate_python(
                data if recorded_at is None else {**data, "recorded_at": recorded_at})
    except ValidationError as exc:
        raise InvalidEvent(error_details(exc)) from None
    raise InvalidEvent([_NOT_OBJECT])


def dump_touchpoint(event: TouchpointEvent) -> bytes:
    return event.model_dump_json().encode()


def with_recorded_at(event: E, when: datetime) -> E:
    if when.utcoffset() is None:
        raise ValueError("recorded_at must include a timezone offset")
    return event.model_copy(update={"recorded_at": when.astimezone(UTC)})


def with_customer_id(event: E, customer_id: str) -> E:
    customer = event.customer.model_copy(update={"customer_id": normalise_uuid(customer_id)})
    return event.model_copy(update={"customer": customer})


def error_details(exc: ValidationError) -> list[dict[str, str]]:
    """Pydantic errors as {"field": "payload.amount", "reason": ...}, union tags dropped. A
    refused schema_version is said alone: the rest was checked against a version the event does
    not claim."""
    details = [_detail(error) for error in exc.errors(include_url=False)]
    return [d for d in details if d["field"] == "schema_version"] or details


def _detail(error: Any) -> dict[str, str]:
    kind, loc, ctx = error["type"], list(error["loc"]), error.get("ctx", {})
    event_type = None
    if loc and loc[0] in TOUCHPOINT_TYPES:  # the union's tags (type, then version), not fields
        event_type, loc = loc[0], loc[1:]
        if loc and loc[0] in VERSION_TAGS:
            loc = loc[1:]
    reason = str(ctx["error"]) if kind == "value_error" else error["msg"]
    if kind == "string_pattern_mismatch":
        pattern = ctx["pattern"]
        reason = control_reason(error["input"], pattern) or PATTERN_REASONS.get(pattern, reason)
    if loc and loc[-1] == "[key]":
        loc, reason = loc[:-1], f"invalid key: {reason}"
    if kind == "json_invalid":
        reason = f"not valid JSON: {ctx['error']}"
    elif kind == "union_tag_invalid":
        loc, reason = ["type"], f"unknown type {ctx['tag']!r}; allowed types: {_ALLOWED}"
    elif kind == "union_tag_not_found":
        loc, reason = ["type"], f"type is required; allowed types: {_ALLOWED}"
    elif kind == "literal_error" and loc == ["schema_version"] and event_type:
        given, versions = repr(error["input"]), ", ".join(map(str, VERSIONS[event_type]))
        given = given if len(given) <= 40 else given[:39] + "…"
        reason = f"unknown schema_version {given} for type {event_type!r}; allowed versions: {versions}"
    elif not loc and kind in ("dict_type", "model_type", "model_attributes_type"):
        return dict(_NOT_OBJECT)
    return {"field": ".".join(printable(part) for part in loc), "reason": reason}


def routing_key(event: TouchpointEvent) -> bytes:
    """The key of a raw touchpoint: any identifier (the identity stage re-keys by customer)."""
    c = event.customer
    ext = min(c.external_ids.items(), default=None)
    key = c.customer_id or c.email or c.phone or (f"{ext[0]}:{ext[1]}" if ext else "")
    return key.encode()
