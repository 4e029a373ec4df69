"""Unified customer profile: a pure fold of touchpoints.

A profile is a commutative monoid: ``merge(a, b) == merge(b, a)`` and folding events in any order
gives the same profile. That is what makes out-of-order delivery harmless, lets a batch be folded
into a delta and merged into the stored row, and lets the API merge the profiles of customers
that the identity graph linked (no rewrite of history when identities merge).
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

# (occurred_at ISO string in UTC, event_id): a total order on events, so "latest" is deterministic.
Stamp = tuple[str, str]


@dataclass(frozen=True)
class Profile:
    customer_id: str
    emails: frozenset[str] = frozenset()
    phones: frozenset[str] = frozenset()
    external_ids: frozenset[tuple[str, str]] = frozenset()
    attributes: dict[str, tuple[Stamp, Any]] = field(default_factory=dict)
    first_seen: str | None = None
    last_seen: str | None = None
    events_count: int = 0
    by_channel: dict[str, int] = field(default_factory=dict)
    by_type: dict[str, int] = field(default_factory=dict)
    orders_count: int = 0
    spend: dict[str, Decimal] = field(default_factory=dict)
    complaints: dict[str, tuple[Stamp, str]] = field(default_factory=dict)  # id -> (stamp, status)
    last_contact: tuple[Stamp, dict[str, Any]] | None = None

    @property
    def open_complaints(self) -> list[str]:
        return sorted(cid for cid, (_, status) in self.complaints.items() if status == "open")


def _profile(**fields: Any) -> Profile:
    """``Profile(**fields)`` (every field given) without the frozen dataclass's field-by-field
    ``object.__setattr__``, which cost as much as the rest of a batch fold."""
    p = object.__new__(Profile)
    p.__dict__.update(fields)
    return p


def _add(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


def _latest(a: dict, b: dict) -> dict:
    """Per key, the value with the greater stamp."""
    out = dict(a)
    for k, v in b.items():
        if k not in out or v[0] > out[k][0]:
            out[k] = v
    return out


def _min(a: str | None, b: str | None) -> str | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: str | None, b: str | None) -> str | None:
    return b if a is None else a if b is None else max(a, b)


def merge(a: Profile, b: Profile, customer_id: str | None = None) -> Profile:
    lc = a.last_contact if b.last_contact is None else b.last_contact if a.last_contact is None \
        else max(a.last_contact, b.last_contact, key=lambda c: c[0])
    return _profile(
        customer_id=customer_id or a.customer_id,
        emails=a.emails | b.emails,
        phones=a.phones | b.phones,
        external_ids=a.external_ids | b.external_ids,
        attributes=_latest(a.attributes, b.attributes),
        first_seen=_min(a.first_seen, b.first_seen),
        last_seen=_max(a.last_seen, b.last_seen),
        events_count=a.events_count + b.events_count,
        by_channel=_add(a.by_channel, b.by_channel),
        by_type=_add(a.by_type, b.by_type),
        orders_count=a.orders_count + b.orders_count,
        spend=_add(a.spend, b.spend),
        complaints=_latest(a.complaints, b.complaints),
        last_contact=lc,
    )


_ORDER_SIGN = {"placed": (1, 1), "cancelled": (-1, -1), "refunded": (0, -1)}


def of_event(event: dict[str, Any]) -> Profile:
    """The profile that one touchpoint alone describes."""
    customer, payload = event["customer"], event.get("payload") or {}
    stamp: Stamp = (event["occurred_at"], event["event_id"])
    kind, channel = event["type"], event["channel"]
    orders, spend = 0, {}
    if kind == "order":
        count_sign, amount_sign = _ORDER_SIGN[payload.get("status", "placed")]
        orders, spend = count_sign, {payload["currency"]: amount_sign * Decimal(payload["amount"])}
    complaints = {}
    if kind == "complaint":
        complaints = {payload["complaint_id"]: (stamp, payload.get("status", "open"))}
    return Profile(
        customer_id=customer["customer_id"],
        emails=frozenset([customer["email"]]) if customer.get("email") else frozenset(),
        phones=frozenset([customer["phone"]]) if customer.get("phone") else frozenset(),
        external_ids=frozenset((customer.get("external_ids") or {}).items()),
        attributes={k: (stamp, v) for k, v in (customer.get("attributes") or {}).items()},
        first_seen=event["occurred_at"],
        last_seen=event["occurred_at"],
        events_count=1,
        by_channel={channel: 1},
        by_type={kind: 1},
        orders_count=orders,
        spend=spend,
        complaints=complaints,
        last_contact=(stamp, {"event_id": event["event_id"], "type": kind, "channel": channel,
                              "occurred_at": event["occurred_at"]}),
    )


def apply(state: Profile | None, event: dict[str, Any]) -> Profile:
    """Fold one touchpoint into a profile (``None`` is the empty profile)."""
    delta = of_event(event)
    return delta if state is None else merge(state, delta)


# -- the same fold on the stored form ---------------------------------------------------------
#
# The projection keeps each profile as its state document (``store.to_state``: JSON types, sorted
# identifier lists, [occurred_at, event_id, value] stamps, amounts as decimal strings) and folds a
# batch straight into it. Equal to ``from_state`` -> ``merge`` with the batch's events ->
# ``to_state`` (a property test pins this), without building a Profile per customer and batch,
# which cost more than the rest of the stage.

# (customer_id, occurred_at, event_id, type, channel, email, phone, external ids, attributes,
#  order (currency, count sign, signed amount), complaint (id, status))
Touch = tuple[str, str, str, str, str, str | None, str | None, list[tuple[str, str]],
              list[tuple[str, Any]], tuple[str, int, Decimal] | None, tuple[str, Any] | None]


def read_touch(event: dict[str, Any]) -> Touch:
    """What the fold needs of one touchpoint. Raises (KeyError, TypeError, ValueError, ...) for an
    event it cannot fold, so that ``add_touch`` never fails halfway through a state."""
    customer, payload, kind, channel = (event["customer"], event.get("payload") or {},
                                        event["type"], event["channel"])
    at, event_id = event["occurred_at"], event["event_id"]
    email, phone = customer.get("email") or None, customer.get("phone") or None
    cid, str_ = customer["customer_id"], str
    if (type(at) is not str_ or type(event_id) is not str_ or type(kind) is not str_
            or type(channel) is not str_ or type(cid) is not str_
            or (email is not None and type(email) is not str_)
            or (phone is not None and type(phone) is not str_)):
        raise TypeError("identifiers, times, type and channel must be strings")
    ext: list[tuple[str, str]] = []
    if customer.get("external_ids"):
        ext = list(customer["external_ids"].items())
        if any(type(v) is not str_ for _, v in ext):
            raise TypeError("external ids must be strings")
    attributes = list(customer["attributes"].items()) if customer.get("attributes") else []
    order = complaint = None
    if kind == "order":
        count_sign, amount_sign = _ORDER_SIGN[payload.get("status", "placed")]
        order = (str(payload["currency"]), count_sign, amount_sign * Decimal(payload["amount"]))
    elif kind == "complaint":
        complaint = (str(payload["complaint_id"]), payload.get("status", "open"))
    return (cid, at, event_id, kind, channel, email, phone, ext, attributes, order, complaint)


def new_state() -> dict[str, Any]:
    """The state document of a profile with no events (``store.to_state(empty(...))``)."""
    return {"emails": [], "phones": [], "external_ids": {}, "attributes": {}, "first_seen": None,
            "last_seen": None, "events_count": 0, "by_channel": {}, "by_type": {}, "orders_count": 0,
            "spend": {}, "complaints": {}, "last_contact": None}


def add_touch(state: dict[str, Any], t: Touch) -> None:
    """Fold one touchpoint into a state document, in place."""
    _, at, event_id, kind, channel, email, phone, ext, attributes, order, complaint = t
    if email and email not in state["emails"]:
        insort(state["emails"], email)
    if phone and phone not in state["phones"]:
        insort(state["phones"], phone)
    for system, value in ext:
        values = state["external_ids"].setdefault(system, [])
        if value not in values:
            insort(values, value)
    for name, value in attributes:
        held = state["attributes"].get(name)
        if held is None or (at, event_id) > (held[0], held[1]):
            state["attributes"][name] = [at, event_id, value]
    if state["first_seen"] is None or at < state["first_seen"]:
        state["first_seen"] = at
    if state["last_seen"] is None or at > state["last_seen"]:
        state["last_seen"] = at
    state["events_count"] += 1
    by_channel, by_type = state["by_channel"], state["by_type"]
    by_channel[channel] = by_channel.get(channel, 0) + 1
    by_type[kind] = by_type.get(kind, 0) + 1
    if order is not None:
        currency, count_sign, amount = order
        state["orders_count"] += count_sign
        spend = state["spend"]
        spend[currency] = str(Decimal(spend[currency]) + amount if currency in spend else 0 + amount)
    if complaint is not None:
        complaint_id, status = complaint
        held = state["complaints"].get(complaint_id)
        if held is None or (at, event_id) > (held[0], held[1]):
            state["complaints"][complaint_id] = [at, event_id, status]
    lc = state["last_contact"]
    if lc is None or (at, event_id) > (lc["occurred_at"], lc["event_id"]):
        state["last_contact"] = {"event_id": event_id, "type": kind, "channel": channel,
                                 "occurred_at": at}


def open_complaints(state: dict[str, Any]) -> int:
    return sum(1 for c in state["complaints"].values() if c[2] == "open")


def empty(customer_id: str) -> Profile:
    return Profile(customer_id=customer_id)
