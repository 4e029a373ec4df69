"""How a customer is named: a customer id, an e-mail address, a phone number, external ids in
other systems; the patterns the models check (published in the JSON Schemas) and the normal
forms the identity graph keys on."""

import re
from functools import lru_cache
from typing import Annotated, Any

import phonenumbers
from pydantic import AfterValidator, Field, WithJsonSchema

from events.strings import CONTROLS, LINE, SPACES, WHITESPACE, non_blank, text_field

SYSTEM = r"^[a-z][a-z0-9_.-]{0,31}$"  # the system an external id belongs to
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_ADDRESS = rf"[^@{CONTROLS}{SPACES}]"  # `[^@\s]` spelt out: `\s` differs between dialects
EMAIL_PATTERN = rf"^{_ADDRESS}+@{_ADDRESS}+\.[^@.{CONTROLS}{SPACES}]+$"
PHONE_SHAPE = r"^(\+|00)[0-9][0-9 ()./-]{3,31}$"
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


def mapping_schema(keys: str, values: dict[str, Any], **extra: Any) -> WithJsonSchema:
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
    mapping_schema(
        SYSTEM, {"type": "string", "minLength": 1, "maxLength": 128, "pattern": non_blank(LINE)}
    ),
]
