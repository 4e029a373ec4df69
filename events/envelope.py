"""The envelope every touchpoint travels in: who (Customer), when, where from, what (payload)."""

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal
from uuid import uuid4

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonDict

from events.identifiers import (
    Email,
    ExternalIds,
    Phone,
    UuidStr,
    mapping_schema,
    normalise_email,
    normalise_phone,
    normalise_uuid,
)
from events.strings import LINE, check_line, text_field

__all__ = [  # the normal forms too: the API normalises its lookups with them
    "ATTRIBUTE",
    "DATE_TIME",
    "MAX_FUTURE",
    "SCHEMA_VERSION",
    "Customer",
    "Payload",
    "TouchpointEvent",
    "normalise_email",
    "normalise_phone",
    "normalise_uuid",
]

SCHEMA_VERSION: Final = 1
MAX_FUTURE = timedelta(days=1)
ATTRIBUTE = r"^[a-z][a-z0-9_]{0,63}$"
ATTRIBUTE_INTEGERS = (-(2**63), 2**64 - 1)
# RFC 3339 with its offset, only real calendar days, no leap second; years 0002-9998, so that
# any offset converts to a UTC instant
_YEAR = r"(000[2-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
_LEAP_YEAR = r"([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)"
_MONTH_DAY = (
    r"((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)"
    r"|02-(0[1-9]|1[0-9]|2[0-8]))"
)
DATE_TIME = (
    rf"^({_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
    r"[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)


def _attribute(value: Any) -> Any:
    if value is not None and not isinstance(value, str | int | float):  # bool is an int
        raise ValueError("attribute values must be a string, number, boolean or null")
    if isinstance(value, str) and len(value) > 1000:
        raise ValueError("attribute strings must be at most 1000 characters")
    if isinstance(value, str):
        check_line(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("attribute numbers must be finite")
    low, high = ATTRIBUTE_INTEGERS
    if isinstance(value, int) and not low <= value <= high:
        raise ValueError("attribute integers must fit in 64 bits")
    return value


Attributes = Annotated[
    dict[Annotated[str, Field(pattern=ATTRIBUTE)], Annotated[Any, PlainValidator(_attribute)]],
    Field(max_length=50),
    mapping_schema(
        ATTRIBUTE,
        {
            "type": ["string", "number", "boolean", "null"],
            "maxLength": 1000,
            "pattern": LINE,
            "minimum": ATTRIBUTE_INTEGERS[0],
            "maximum": ATTRIBUTE_INTEGERS[1],
        },
        maxProperties=50,
    ),
]
Instant = Annotated[
    datetime, WithJsonSchema({"type": "string", "format": "date-time", "pattern": DATE_TIME})
]
_IDENTIFIED: JsonDict = {  # at least one identifier; null does not count
    "anyOf": [
        {"required": ["customer_id"], "properties": {"customer_id": {"type": "string"}}},
        {"required": ["email"], "properties": {"email": {"type": "string"}}},
        {"required": ["phone"], "properties": {"phone": {"type": "string"}}},
        {"required": ["external_ids"], "properties": {"external_ids": {"minProperties": 1}}},
    ]
}


class Customer(BaseModel):
    """Who the touchpoint is about: any identifiers the channel knows, plus profile traits."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", str_strip_whitespace=True, json_schema_extra=_IDENTIFIED
    )

    customer_id: UuidStr | None = None
    email: Email | None = None
    phone: Phone | None = None
    external_ids: ExternalIds = Field(default_factory=dict)  # a factory: no deepcopy per event
    attributes: Attributes = Field(default_factory=dict)

    @model_validator(mode="after")
    def _identified(self) -> "Customer":
        if not (self.customer_id or self.email or self.phone or self.external_ids):
            raise ValueError(
                "customer needs at least one identifier (customer_id, email, phone or external_ids)"
            )
        return self


class Payload(BaseModel):
    """Base of the per-type payloads: immutable, unknown fields rejected, strings trimmed."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


BEYOND_THE_SCHEMA = (
    "Checked beyond this schema (no JSON Schema can say it): a phone must be a valid number for "
    "its country code; occurred_at must be at most 1 day after the event reaches Touchstream. "
    "Normalised on arrival: strings are trimmed of surrounding whitespace (lengths count the "
    "trimmed string), e-mail addresses lower-cased, phones kept in E.164, ids lower-cased, times "
    "converted to UTC."
)


def _wire_rules(schema: dict[str, Any]) -> None:
    """`type` has a Python default in each subclass, but on the wire it is required; the rules
    that the schema cannot express are named in its description."""
    if "type" in schema.get("properties", {}) and "type" not in schema["required"]:
        schema["required"].insert(0, "type")
    schema["description"] = f"{schema.get('description', '')}\n\n{BEYOND_THE_SCHEMA}".strip()


class TouchpointEvent(BaseModel):
    """A touchpoint; one subclass per `type` fixes the payload model (events.touchpoints)."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", str_strip_whitespace=True, json_schema_extra=_wire_rules
    )

    event_id: UuidStr = Field(default_factory=lambda: str(uuid4()))
    type: str
    schema_version: Literal[1] = SCHEMA_VERSION
    customer: Customer
    occurred_at: Instant = Field(
        description="When it happened, with its UTC offset; at most 1 day in the future."
    )
    recorded_at: Instant | None = Field(
        None, description="When Touchstream accepted it: the gateway sets it, whatever is sent."
    )
    channel: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    source: str = text_field(64, min_length=1)
    payload: Payload

    @field_validator("occurred_at", "recorded_at")
    @classmethod
    def _to_utc(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError(f"{info.field_name} must include a timezone offset")
        try:
            return value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00+01:00 is before the first representable instant
            raise ValueError(f"{info.field_name} is out of range once converted to UTC") from None

    @field_validator("occurred_at")
    @classmethod
    def _not_in_future(cls, value: datetime) -> datetime:
        if value > datetime.now(UTC) + MAX_FUTURE:
            raise ValueError("occurred_at must not be more than 1 day in the future")
        return value
