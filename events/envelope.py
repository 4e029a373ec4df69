"""The envelope every touchpoint travels in: who (Customer), when, where from, what (payload)."""

import math
import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any, Final, Literal
from uuid import UUID, uuid4

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

SCHEMA_VERSION: Final = 1
MAX_FUTURE = timedelta(days=1)
SYSTEM, ATTRIBUTE = r"^[a-z][a-z0-9_.-]{0,31}$", r"^[a-z][a-z0-9_]{0,63}$"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


_CANONICAL_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def normalise_uuid(value: str) -> str:
    if _CANONICAL_UUID.match(value):  # the common case, without building a UUID object
        return value
    try:
        return str(UUID(value))
    except ValueError:
        raise ValueError("must be a UUID") from None


def normalise_email(value: str) -> str:
    email = value.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise ValueError("email must look like name@domain.tld")
    return email


@lru_cache(maxsize=2**16)  # parsing dominates validation cost; customers recur
def normalise_phone(value: str) -> str:
    raw = value.strip()
    raw = "+" + raw[2:] if raw.startswith("00") else raw
    if not raw.startswith("+"):
        raise ValueError("phone must be in international format (+<country code>...)")
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        raise ValueError("phone is not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("phone is not a valid number for its country code")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _attribute(value: Any) -> Any:
    if value is not None and not isinstance(value, str | int | float):  # bool is an int
        raise ValueError("attribute values must be a string, number, boolean or null")
    if isinstance(value, str) and len(value) > 1000:
        raise ValueError("attribute strings must be at most 1000 characters")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("attribute numbers must be finite")
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        raise ValueError("attribute integers must fit in 64 bits")
    return value


def _mapping(keys: str, values: dict[str, Any], **extra: Any) -> WithJsonSchema:
    schema = {"type": "object", "propertyNames": {"pattern": keys}, "additionalProperties": values}
    return WithJsonSchema(schema | extra)


UuidStr = Annotated[
    str, AfterValidator(normalise_uuid), WithJsonSchema({"type": "string", "format": "uuid"})
]
Email = Annotated[
    str, AfterValidator(normalise_email), WithJsonSchema({"type": "string", "format": "email"})
]
Phone = Annotated[
    str,
    AfterValidator(normalise_phone),
    WithJsonSchema({"type": "string", "pattern": r"^(\+|00)", "description": "Kept as E.164."}),
]
ExternalIds = Annotated[
    dict[
        Annotated[str, Field(pattern=SYSTEM)], Annotated[str, Field(min_length=1, max_length=128)]
    ],
    _mapping(SYSTEM, {"type": "string", "minLength": 1, "maxLength": 128}),
]
Attributes = Annotated[
    dict[Annotated[str, Field(pattern=ATTRIBUTE)], Annotated[Any, PlainValidator(_attribute)]],
    Field(max_length=50),
    _mapping(
        ATTRIBUTE,
        {"type": ["string", "number", "boolean", "null"], "maxLength": 1000},
        maxProperties=50,
    ),
]


class Customer(BaseModel):
    """Who the touchpoint is about: any identifiers the channel knows, plus profile traits."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

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


def _type_required(schema: dict[str, Any]) -> None:
    """`type` has a Python default in each subclass, but on the wire it is required."""
    if "type" in schema.get("properties", {}) and "type" not in schema["required"]:
        schema["required"].insert(0, "type")


class TouchpointEvent(BaseModel):
    """A touchpoint; one subclass per `type` fixes the payload model (events.touchpoints)."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", str_strip_whitespace=True, json_schema_extra=_type_required
    )

    event_id: UuidStr = Field(default_factory=lambda: str(uuid4()))
    type: str
    schema_version: Literal[1] = SCHEMA_VERSION
    customer: Customer
    occurred_at: datetime
    recorded_at: datetime | None = None
    channel: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    source: str = Field(min_length=1, max_length=64)
    payload: Payload

    @field_validator("occurred_at", "recorded_at")
    @classmethod
    def _to_utc(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError(f"{info.field_name} must include a timezone offset")
        return value.astimezone(UTC)

    @field_validator("occurred_at")
    @classmethod
    def _not_in_future(cls, value: datetime) -> datetime:
        if value > datetime.now(UTC) + MAX_FUTURE:
            raise ValueError("occurred_at must not be more than 1 day in the future")
        return value
