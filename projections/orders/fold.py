"""The order ledger: one current state per order, from every event that mentions it. Pure.

An order's state in force is the one of the event that ranks highest: a cancellation or a refund
outranks a placement whatever their times (an order placed again after it was cancelled stays
cancelled: the placement is a re-send), and among events of one rank the latest by event time
wins (then by event id, so the choice is total). The state in force is therefore a maximum:
the same whatever order the events arrive in, and a re-sent event changes nothing.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, NamedTuple

RANK = {"placed": 0, "cancelled": 1, "refunded": 1}


class OrderState(NamedTuple):
    customer_id: str
    order_id: str
    status: str  # placed | cancelled | refunded
    amount: str  # decimal text, as on the wire
    currency: str
    occurred_at: str  # event time of the state in force
    event_id: str  # the event of the state in force
    placed_at: str | None  # event time of the earliest placement seen (None: none seen)


def read(event: dict[str, Any]) -> OrderState | None:
    """The state an order event describes (``None`` for other touchpoints)."""
    if event["type"] != "order":
        return None
    p, at = event["payload"], event["occurred_at"]
    status = p.get("status", "placed")
    if status not in RANK or type(at) is not str or type(p["order_id"]) is not str:
        raise ValueError(f"not an order state: status {status!r}")
    Decimal(p["amount"])  # must be a number
    return OrderState(event["customer"]["customer_id"], p["order_id"], status, str(p["amount"]),
                      str(p["currency"]), at, event["event_id"],
                      at if status == "placed" else None)


def _key(s: OrderState) -> tuple[int, str, str]:
    return RANK[s.status], s.occurred_at, s.event_id


def merge(a: OrderState | None, b: OrderState) -> OrderState:
    """The state in force of an order given two of its states (``a`` may be none yet)."""
    if a is None:
        return b
    won = b if _key(b) > _key(a) else a
    placed = [t for t in (a.placed_at, b.placed_at) if t is not None]
    return won._replace(placed_at=min(placed) if placed else None)


def summary(states: list[OrderState]) -> dict[str, Any]:
    """Counts and spend of a customer's orders (states in force, one per order id): an order
    counts while it is placed; a cancelled or refunded one is counted apart and spends nothing."""
    ledger: dict[str, OrderState] = {}
    for s in states:  # the rows of a linked cluster may hold one order under two customer ids
        ledger[s.order_id] = merge(ledger.get(s.order_id), s)
    by_status = {status: 0 for status in RANK}
    spend: dict[str, Decimal] = {}
    for s in ledger.values():
        by_status[s.status] += 1
        if s.status == "placed":
            spend[s.currency] = spend.get(s.currency, Decimal(0)) + Decimal(s.amount)
    return {"count": by_status["placed"], "cancelled": by_status["cancelled"],
            "refunded": by_status["refunded"],
            "spend": {c: str(a) for c, a in sorted(spend.items())}}
