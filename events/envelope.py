"""The envelope every touchpoint travels in: who (Customer), when, where from, what (payload)."""

import math
import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any, Final, Literal
from uuid import uuid4

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

from events.strings import CONTROLS, LINE, SPACES, WHITESPACE, check_line, non_blank, text_field

SCHEMA_VERSION: Final = 1
MAX_FUTURE = timedelta(days=1)
SYSTEM, ATTRIBUTE = r"^[a-z][a-z0-9_.-]{0,31}$", r"^[a-z][a-z0-9_]{0,63}$"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_ADDRESS = rf"[^@{CONTROLS}{SPACES}]"  # what the original `[^@\s]` meant, spelt out for every dialect
EMAIL_PATTERN = rf"^{_ADDRESS}+@{_ADDRESS}+\.[^@.{CONTROLS}{SPACES}]+$"
PHONE_SHAPE = r"^(\+|00)[0-9][0-9 ()./-]{3,31}$"
# RFC 3339 with its offset; years 0002-9998, so that any offset converts to a UTC instant
DATE_TIME = (
    r"^(000[2-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
    r"-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
ATTRIBUTE_INTEGERS = (-(2**63), 2**64 - 1)
PATTERN_REASONS = {UUID_PATTERN: "must be a UUID", EMAIL_PATTERN: "email must look like name@domain.tld"}
_UUID, _EMAIL = re.compile(UUID_PATTERN), re.compile(EMAIL_PATTERN)


def normalise_uuid(value: str) -> str:
    if not _UUID.fullmatch(value):
        raise ValueError("must be a UUID")
    return value.lower()


def normalise_email(value: str) -> str:
    email = value.strip(WHITESPACE)
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        raise ValueError("email must look like name@domain.tld")
    return email.lower()


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
    if isinstance(value, str) and len(check_line(value)) > 1000:
        raise ValueError("attribute strings must be at most 1000 characters")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("attribute numbers must be finite")
    low, high = ATTRIBUTE_INTEGERS
    if isinstance(value, int) and not low <= value <= high:
        raise ValueError("attribute integers must fit in 64 bits")
    return value


def _mapping(keys: str, values: dict[str, Any], **extra: Any) -> WithJsonSchema:
    schema = {"type": "object", "propertyNames": {"pattern": keys}, "additionalProperties": values}
    return WithJsonSchema(schema | extra)


UuidStr = Annotated[
    str,
    Field(pattern=UUID_PATTERN),
    AfterValidator(str.lower),
    WithJsonSchema({"type": "string", "format": "uuid", "pattern": UUID_PATTERN}),
]
Email = Annotated[
    str,
    Field(max_length=254, pattern=EMAIL_PATTERN),
    AfterValidator(str.lower),
    WithJsonSchema(
        {
            "type": "string",
            "format": "email",
            "maxLength": 254,
            "pattern": EMAIL_PATTERN,
            "description": "Kept lower-cased.",
        }
    ),
]
Phone = Annotated[
    str,
    Field(pattern=LINE),
    AfterValidator(normalise_phone),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": PHONE_SHAPE,
            "description": "International format ('+' or '00', then the country code); must be "
            "a valid number for its country code (libphonenumber decides: no JSON Schema can "
            "say it). Kept in E.164.",
        }
    ),
]
ExternalIds = Annotated[
    dict[Annotated[str, Field(pattern=SYSTEM)], Annotated[str, text_field(128, min_length=1)]],
    _mapping(
        SYSTEM, {"type": "string", "minLength": 1, "maxLength": 128, "pattern": non_blank(LINE)}
    ),
]
Attributes = Annotated[
    dict[Annotated[str, Field(pattern=ATTRIBUTE)], Annotated[Any, PlainValidator(_attribute)]],
    Field(max_length=50),
    _mapping(
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
_IDENTIFIED = {  # at least one identifier; null does not count
    "anyOf": [
        *({"required": [name], "properties": {name: {"type": "string"}}}
          for name in ("customer_id", "email", "phone")),
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
