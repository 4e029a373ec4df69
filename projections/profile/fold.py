"""Unified customer profile: a pure fold of touchpoints.

A profile is a commutative monoid: ``merge(a, b) == merge(b, a)`` and folding events in any order
gives the same profile. That is what makes out-of-order delivery harmless, lets a batch be folded
into a delta and merged into the stored row, and lets the API merge the profiles of customers
that the identity graph linked (no rewrite of history when identities merge).
"""

from __future__ import annotations

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


def fold_batch(events: list[dict[str, Any]]) -> dict[str, Profile]:
    """Per-customer deltas of a batch, to be merged into the stored profiles.

    Equal to folding each customer's events with ``apply`` (a property test pins this), but
    accumulated in place: building a Profile per event costs more than the rest of the stage.
    """
    accs: dict[str, _Acc] = {}
    for event in events:
        cid = event["customer"]["customer_id"]
        acc = accs.get(cid)
        if acc is None:
            acc = accs[cid] = _Acc()
        acc.add(event)
    return {cid: acc.freeze(cid) for cid, acc in accs.items()}


class _Acc:
    __slots__ = ("emails", "phones", "ext", "attributes", "first", "last", "count", "by_channel",
                 "by_type", "orders", "spend", "complaints", "last_contact")

    def __init__(self) -> None:
        self.emails: set[str] = set()
        self.phones: set[str] = set()
        self.ext: set[tuple[str, str]] = set()
        self.attributes: dict[str, tuple[Stamp, Any]] = {}
        self.first = self.last = ""
        self.count = self.orders = 0
        self.by_channel: dict[str, int] = {}
        self.by_type: dict[str, int] = {}
        self.spend: dict[str, Decimal] = {}
        self.complaints: dict[str, tuple[Stamp, str]] = {}
        self.last_contact: tuple[Stamp, dict[str, Any]] | None = None

    def add(self, event: dict[str, Any]) -> None:
        customer, at, kind, channel = (event["customer"], event["occurred_at"], event["type"],
                                       event["channel"])
        stamp: Stamp = (at, event["event_id"])
        if customer.get("email"):
            self.emails.add(customer["email"])
        if customer.get("phone"):
            self.phones.add(customer["phone"])
        if customer.get("external_ids"):
            self.ext.update(customer["external_ids"].items())
        for name, value in (customer.get("attributes") or {}).items():
            held = self.attributes.get(name)
            if held is None or stamp > held[0]:
                self.attributes[name] = (stamp, value)
        self.first = at if not self.first or at < self.first else self.first
        self.last = at if at > self.last else self.last
        self.count += 1
        self.by_channel[channel] = self.by_channel.get(channel, 0) + 1
        self.by_type[kind] = self.by_type.get(kind, 0) + 1
        payload = event.get("payload") or {}
        if kind == "order":
            count_sign, amount_sign = _ORDER_SIGN[payload.get("status", "placed")]
            self.orders += count_sign
            currency = payload["currency"]
            self.spend[currency] = self.spend.get(currency, 0) + amount_sign * Decimal(payload["amount"])
        elif kind == "complaint":
            held = self.complaints.get(payload["complaint_id"])
            if held is None or stamp > held[0]:
                self.complaints[payload["complaint_id"]] = (stamp, payload.get("status", "open"))
        if self.last_contact is None or stamp > self.last_contact[0]:
            self.last_contact = (stamp, {"event_id": event["event_id"], "type": kind,
                                         "channel": channel, "occurred_at": at})

    def freeze(self, customer_id: str) -> Profile:
        return _profile(customer_id=customer_id, emails=frozenset(self.emails),
                       phones=frozenset(self.phones), external_ids=frozenset(self.ext),
                       attributes=self.attributes, first_seen=self.first or None,
                       last_seen=self.last or None, events_count=self.count,
                       by_channel=self.by_channel, by_type=self.by_type, orders_count=self.orders,
                       spend=self.spend, complaints=self.complaints, last_contact=self.last_contact)


def empty(customer_id: str) -> Profile:
    return Profile(customer_id=customer_id)
