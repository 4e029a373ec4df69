"""The facts of Touchstream: touchpoint events, identity links, and their codec."""

from events.codec import (
    InvalidEvent,
    dump_touchpoint,
    error_details,
    parse_touchpoint,
    routing_key,
    with_customer_id,
    with_recorded_at,
)
from events.envelope import SCHEMA_VERSION, Customer, Payload, TouchpointEvent
from events.identity import CustomersLinked, identity_keys
from events.touchpoints import (
    ENVELOPES,
    TOUCHPOINT_TYPES,
    CallLogged,
    CallTouchpoint,
    ComplaintFiled,
    ComplaintTouchpoint,
    EmailExchanged,
    EmailTouchpoint,
    OrderItem,
    OrderPlaced,
    OrderTouchpoint,
    Touchpoint,
    WebVisited,
    WebVisitTouchpoint,
)

__all__ = [
    "ENVELOPES",
    "SCHEMA_VERSION",
    "TOUCHPOINT_TYPES",
    "CallLogged",
    "CallTouchpoint",
    "ComplaintFiled",
    "ComplaintTouchpoint",
    "Customer",
    "CustomersLinked",
    "EmailExchanged",
    "EmailTouchpoint",
    "InvalidEvent",
    "OrderItem",
    "OrderPlaced",
    "OrderTouchpoint",
    "Payload",
    "Touchpoint",
    "TouchpointEvent",
    "WebVisitTouchpoint",
    "WebVisited",
    "dump_touchpoint",
    "error_details",
    "identity_keys",
    "parse_touchpoint",
    "routing_key",
    "with_customer_id",
    "with_recorded_at",
]
