"""The touchpoint types: one past-tense payload each, and the envelope that carries it."""

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema

from events.envelope import Payload, TouchpointEvent

Direction = Literal["inbound", "outbound"]
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=14, decimal_places=4),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^[0-9]{1,10}(\.[0-9]{1,4})?$"},
            ],
            "description": "Up to 10 digits before and 4 after the point; serialised as a string.",
        }
    ),
]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1, lt=2**63)]  # bounded so that any event can be dumped


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


class CallLogged(Payload):
    """A phone call with the customer took place."""

    direction: Direction
    duration_s: Seconds = Field(le=86400)
    outcome: Literal[
        "answered", "missed", "voicemail", "resolved", "escalated", "callback_requested"
    ]
    agent: str | None = Field(None, max_length=64)
    topic: str | None = Field(None, max_length=200)


class EmailExchanged(Payload):
    """An email was sent to or received from the customer, or acted upon."""

    direction: Direction
    action: Literal["sent", "delivered", "opened", "clicked", "replied", "bounced", "unsubscribed"]
    subject: str | None = Field(None, max_length=300)
    campaign: str | None = Field(None, max_length=64)


class WebVisited(Payload):
    """The customer visited the website."""

    url: str = Field(min_length=1, max_length=2048, pattern=r"^https?://")
    page_views: Count = 1
    duration_s: Seconds
    referrer: str | None = Field(None, max_length=2048)
    session_id: str | None = Field(None, max_length=128)


class OrderItem(Payload):
    """One line of an order."""

    sku: str = Field(min_length=1, max_length=64)
    quantity: Count
    unit_price: Money


class OrderPlaced(Payload):
    """The customer placed an order (status tells if it was later cancelled or refunded)."""

    order_id: str = Field(min_length=1, max_length=64)
    amount: Money
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$"), BeforeValidator(_upper)]
    items: tuple[OrderItem, ...] = ()
    status: Literal["placed", "cancelled", "refunded"] = "placed"


class ComplaintFiled(Payload):
    """The customer filed a complaint."""

    complaint_id: str = Field(min_length=1, max_length=64)
    category: str = Field(min_length=1, max_length=64)
    severity: Literal["low", "medium", "high", "critical"]
    text: str = Field(min_length=1, max_length=5000)
    status: Literal["open", "resolved"] = "open"


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


Touchpoint = Annotated[
    CallTouchpoint | EmailTouchpoint | WebVisitTouchpoint | OrderTouchpoint | ComplaintTouchpoint,
    Field(discriminator="type"),
]
ENVELOPES: dict[str, type[TouchpointEvent]] = {
    "call": CallTouchpoint,
    "email": EmailTouchpoint,
    "web_visit": WebVisitTouchpoint,
    "order": OrderTouchpoint,
    "complaint": ComplaintTouchpoint,
}
TOUCHPOINT_TYPES = tuple(ENVELOPES)
