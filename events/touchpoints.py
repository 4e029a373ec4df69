"""The touchpoint types: one past-tense payload each, and the envelope that carries it.

A type's payload changes by a new version, never by editing a released one: ``call`` has
versions 1 and 2 (2 added ``wait_s``); every other type has version 1. An event says its version
in ``schema_version`` (none: version 1), and the union ``Touchpoint`` picks the envelope by type
and version.
"""

from decimal import Decimal
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic.json_schema import JsonDict

from events.envelope import SCHEMA_VERSION, Payload, TouchpointEvent
from events.identifiers import UuidStr
from events.strings import LINE, text_field

Direction = Literal["inbound", "outbound"]
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=14, decimal_places=4),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^[0-9]{1,10}(\.[0-9]{1,4})?$"},
                {"type": "integer", "minimum": 0, "maximum": 9_999_999_999},
            ],
            "description": "Up to 10 digits before and 4 after the point, as a string; serialised "
            "as a string. A JSON number with a fraction is accepted too, but JSON parsers may "
            "change its digits.",
        }
    ),
]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1, lt=2**63)]  # bounded so that any event can be dumped


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) and value.isascii() else value  # "ß" -> "SS"


class CallLogged(Payload):
    """A phone call with the customer took place."""

    direction: Direction
    duration_s: Seconds = Field(le=86400)
    outcome: Literal[
        "answered", "missed", "voicemail", "resolved", "escalated", "callback_requested"
    ]
    agent: str | None = text_field(64, default=None)
    topic: str | None = text_field(200, prose=True, default=None)


class CallLoggedV2(CallLogged):
    """A phone call with the customer took place (version 2: how long the customer waited)."""

    wait_s: Annotated[Seconds, Field(le=86400)] | None = Field(
        description="Seconds the customer waited, in a queue or while it rang, before the call was "
        "answered or given up; null: not measured (calls logged at version 1 read as null)."
    )


class EmailExchanged(Payload):
    """An email was sent to or received from the customer, or acted upon."""

    direction: Direction
    action: Literal["sent", "delivered", "opened", "clicked", "replied", "bounced", "unsubscribed"]
    subject: str | None = text_field(300, prose=True, default=None)
    campaign: str | None = text_field(64, default=None)


class WebVisited(Payload):
    """The customer visited the website."""

    url: str = Field(max_length=2048, pattern=rf"^https?://{LINE.removeprefix('^')}")
    page_views: Count = 1
    duration_s: Seconds
    referrer: str | None = text_field(2048, default=None)
    session_id: str | None = text_field(128, default=None)


class OrderItem(Payload):
    """One line of an order."""

    sku: str = text_field(64, min_length=1)
    quantity: Count
    unit_price: Money


class OrderPlaced(Payload):
    """The customer placed an order (status tells if it was later cancelled or refunded)."""

    order_id: str = text_field(64, min_length=1)
    amount: Money
    currency: Annotated[
        str,
        Field(pattern=r"^[A-Z]{3}$"),
        BeforeValidator(_upper),
        WithJsonSchema({"type": "string", "pattern": r"^[A-Za-z]{3}$", "description": "Kept upper-cased."}),
    ]
    items: tuple[OrderItem, ...] = ()
    status: Literal["placed", "cancelled", "refunded"] = "placed"


class ComplaintFiled(Payload):
    """The customer filed a complaint."""

    complaint_id: str = text_field(64, min_length=1)
    category: str = text_field(64, min_length=1)
    severity: Literal["low", "medium", "high", "critical"]
    text: str = text_field(5000, min_length=1, prose=True)
    status: Literal["open", "resolved"] = "open"


# The scores of each satisfaction scale: CSAT (customer satisfaction, 1 to 5) and NPS (net
# promoter score: how likely to recommend us, 0 to 10).
SCORES: Final = {"csat": range(1, 6), "nps": range(0, 11)}
_ANY_SCORE = range(0, 11)
_SCORE_PER_SCALE: JsonDict = {
    "allOf": [
        {
            "if": {"properties": {"scale": {"const": scale}}, "required": ["scale"]},
            "then": {"properties": {"score": {"minimum": scores[0], "maximum": scores[-1]}}},
        }
        for scale, scores in SCORES.items()
    ]
}


class FeedbackGiven(Payload):
    """The customer rated their satisfaction, on a CSAT or an NPS scale, perhaps about an order,
    a complaint or a call. A signal of how they feel, never proof that they will stay."""

    model_config = ConfigDict(json_schema_extra=_SCORE_PER_SCALE)

    scale: Literal["csat", "nps"]
    score: int = Field(  # bounds checked below, so that a refusal names the scale
        description="CSAT: 1 (very dissatisfied) to 5 (very satisfied); NPS: 0 to 10 (9 and 10 "
        "are promoters, 7 and 8 passives, 0 to 6 detractors).",
        json_schema_extra={"minimum": _ANY_SCORE[0], "maximum": _ANY_SCORE[-1]},
    )
    text: str | None = text_field(5000, prose=True, default=None)
    order_id: str | None = text_field(64, min_length=1, default=None)
    complaint_id: str | None = text_field(64, min_length=1, default=None)
    call_event_id: UuidStr | None = Field(None, description="The event_id of the call touchpoint.")

    @field_validator("score")
    @classmethod
    def _on_its_scale(cls, score: int, info: ValidationInfo) -> int:
        scale: str = info.data.get("scale", "")  # absent when the scale itself was refused
        scores = SCORES.get(scale, _ANY_SCORE)
        if score not in scores:
            what = {"csat": "a csat score", "nps": "an nps score"}.get(scale, "a score")
            raise ValueError(f"{what} is {scores[0]} to {scores[-1]}")
        return score


class CallTouchpoint(TouchpointEvent):
    """The envelope of a call touchpoint: payload is CallLogged."""

    type: Literal["call"] = "call"
    payload: CallLogged


class EmailTouchpoint(TouchpointEvent):
    """The envelope of an email touchpoint: payload is EmailExchanged."""

    type: Literal["email"] = "email"
    payload: EmailExchanged


class WebVisitTouchpoint(TouchpointEvent):
    """The envelope of a web visit touchpoint: payload is WebVisited."""

    type: Literal["web_visit"] = "web_visit"
    payload: WebVisited


class OrderTouchpoint(TouchpointEvent):
    """The envelope of an order touchpoint: payload is OrderPlaced."""

    type: Literal["order"] = "order"
    payload: OrderPlaced


class ComplaintTouchpoint(TouchpointEvent):
    """The envelope of a complaint touchpoint: payload is ComplaintFiled."""

    type: Literal["complaint"] = "complaint"
    payload: ComplaintFiled


class FeedbackTouchpoint(TouchpointEvent):
    """The envelope of a feedback touchpoint: payload is FeedbackGiven."""

    type: Literal["feedback"] = "feedback"
    payload: FeedbackGiven


class CallTouchpointV2(CallTouchpoint):
    """The envelope of a call touchpoint at version 2: payload is CallLoggedV2."""

    schema_version: Literal[2]  # type: ignore[assignment]  # required: no default
    payload: CallLoggedV2


def _call_version(value: Any) -> str:
    """The tag of a call's envelope: ``call.v2`` for schema_version 2, else ``call`` (version 1,
    whose model refuses any other version). It runs for every call, so it only looks."""
    if isinstance(value, dict):
        return "call.v2" if value.get("schema_version") == 2 else "call"
    return "call.v2" if getattr(value, "schema_version", None) == 2 else "call"


def _one_branch_per_version(schema: dict[str, Any]) -> None:
    """The JSON Schema of the union: one branch per type and version, each exclusive of the
    others (its ``type`` const, and for a type of several versions its ``schema_version``), so
    that a JSON Schema validator decides as the models do. No OpenAPI discriminator: it maps a
    ``type`` to one schema, and a call has two."""
    schema.pop("discriminator")
    schema["oneOf"] = [one for branch in schema["oneOf"] for one in branch.get("oneOf", [branch])]
    schema["description"] = (
        "A touchpoint of any type and version Touchstream accepts: call at schema_version 1 or "
        "2, every other type at 1. An event without schema_version is at version 1."
    )


# By type first, then, for a type of several versions, by version. The type is a field, which
# pydantic-core reads from JSON as it is; the version needs a function, and to call it the event
# is built as Python objects first, which costs much of a validation (BENCHMARKS.md): one
# function for every type would make every event pay, so only calls do.
VERSION_TAGS = ("call", "call.v2")  # the tags of the union of a type's versions
Call = Annotated[
    Annotated[CallTouchpoint, Tag(VERSION_TAGS[0])] | Annotated[CallTouchpointV2, Tag(VERSION_TAGS[1])],
    Discriminator(_call_version),
]
Touchpoint = Annotated[
    Call
    | EmailTouchpoint
    | WebVisitTouchpoint
    | OrderTouchpoint
    | ComplaintTouchpoint
    | FeedbackTouchpoint,
    Field(discriminator="type", json_schema_extra=_one_branch_per_version),
]
# each type's envelope at its first version (what an event without schema_version is)
ENVELOPES: dict[str, type[TouchpointEvent]] = {
    "call": CallTouchpoint,
    "email": EmailTouchpoint,
    "web_visit": WebVisitTouchpoint,
    "order": OrderTouchpoint,
    "complaint": ComplaintTouchpoint,
    "feedback": FeedbackTouchpoint,
}
TOUCHPOINT_TYPES = tuple(ENVELOPES)
VERSIONED: dict[tuple[str, int], type[TouchpointEvent]] = {  # (type, schema_version) -> envelope
    ("call", SCHEMA_VERSION): CallTouchpoint,
    ("call", 2): CallTouchpointV2,
    **{(kind, SCHEMA_VERSION): envelope for kind, envelope in ENVELOPES.items()},
}
VERSIONS: dict[str, tuple[int, ...]] = {  # the versions each type accepts
    kind: tuple(v for k, v in VERSIONED if k == kind) for kind in TOUCHPOINT_TYPES
}
