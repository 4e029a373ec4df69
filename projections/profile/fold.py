"""Unified customer profile: a pure fold of touchpoints into the profile's state document.

The state document is what the ``profiles`` table stores (JSON types only: sorted identifier
lists, ``[occurred_at, event_id, value]`` stamps), so a batch folds straight into the stored
form. The fold is a commutative monoid: folding events in any order, or merging the states of
parts of a history (``merge``), gives the same state. That makes out-of-order delivery harmless
and lets reads merge the profiles of customers that the identity graph linked, without
rewriting history. Orders are not folded here: their counts and spend come from the order
ledger (``projections.orders``), where a re-sent order counts once. Documents stored before a
field existed lack its key; the fold reads a missing ``satisfaction`` as empty.
"""

from __future__ import annotations

from bisect import insort
from typing import Any, NamedTuple

from events.touchpoints import SCORES


class Touch(NamedTuple):
    """What the profile needs of one touchpoint."""

    customer_id: str
    occurred_at: str
    event_id: str
    type: str
    channel: str
    email: str | None
    phone: str | None
    external_ids: list[tuple[str, str]]
    attributes: list[tuple[str, Any]]
    complaint: tuple[str, str] | None  # (complaint id, status)
    feedback: tuple[str, int] | None  # (scale, score)


def read_touch(event: dict[str, Any]) -> Touch:
    """Raises (KeyError, TypeError, ValueError, ...) for an event the fold cannot read, so that
    ``add_touch`` never fails halfway through a state."""
    customer, kind, channel = event["customer"], event["type"], event["channel"]
    at, event_id, cid = event["occurred_at"], event["event_id"], customer["customer_id"]
    email, phone = customer.get("email") or None, customer.get("phone") or None
    str_ = str
    if (type(at) is not str_ or type(event_id) is not str_ or type(kind) is not str_
            or type(channel) is not str_ or type(cid) is not str_
            or (email is not None and type(email) is not str_)
            or (phone is not None and type(phone) is not str_)):
        raise TypeError("identifiers, times, type and channel must be strings")
    ext: list[tuple[str, str]] = []
    if customer.get("external_ids"):
        ext = list(customer["external_ids"].items())
        if any(type(s) is not str_ or type(v) is not str_ for s, v in ext):
            raise TypeError("external ids must be strings")
    attributes = list(customer["attributes"].items()) if customer.get("attributes") else []
    complaint: tuple[str, str] | None = None
    feedback: tuple[str, int] | None = None
    if kind == "complaint":
        payload = event["payload"]
        complaint = (str(payload["complaint_id"]), str(payload.get("status", "open")))
    elif kind == "feedback":
        scale, score = event["payload"]["scale"], event["payload"]["score"]
        if type(scale) is not str_ or type(score) is not int or score not in SCORES[scale]:
            raise ValueError("feedback needs a known scale and a score on it")
        feedback = (scale, score)
    return Touch(cid, at, event_id, kind, channel, email, phone, ext, attributes, complaint,
                 feedback)


def new_state() -> dict[str, Any]:
    """The state document of a profile with no events."""
    return {"emails": [], "phones": [], "external_ids": {}, "attributes": {}, "first_seen": None,
            "last_seen": None, "events_count": 0, "by_channel": {}, "by_type": {},
            "complaints": {}, "last_contact": None, "satisfaction": {}}


def _later(held: list | None, at: str, event_id: str) -> bool:
    return held is None or (at, event_id) > (held[0], held[1])


def add_touch(state: dict[str, Any], t: Touch) -> None:
    """Fold one touchpoint into a state document, in place."""
    at, event_id = t.occurred_at, t.event_id
    if t.email and t.email not in state["emails"]:
        insort(state["emails"], t.email)
    if t.phone and t.phone not in state["phones"]:
        insort(state["phones"], t.phone)
    for system, value in t.external_ids:
        values = state["external_ids"].setdefault(system, [])
        if value not in values:
            insort(values, value)
    for name, value in t.attributes:
        if _later(state["attributes"].get(name), at, event_id):
            state["attributes"][name] = [at, event_id, value]
    if state["first_seen"] is None or at < state["first_seen"]:
        state["first_seen"] = at
    if state["last_seen"] is None or at > state["last_seen"]:
        state["last_seen"] = at
    state["events_count"] += 1
    by_channel, by_type = state["by_channel"], state["by_type"]
    by_channel[t.channel] = by_channel.get(t.channel, 0) + 1
    by_type[t.type] = by_type.get(t.type, 0) + 1
    if t.complaint is not None:
        complaint_id, status = t.complaint
        if _later(state["complaints"].get(complaint_id), at, event_id):
            state["complaints"][complaint_id] = [at, event_id, status]
    lc = state["last_contact"]
    if lc is None or (at, event_id) > (lc["occurred_at"], lc["event_id"]):
        state["last_contact"] = {"event_id": event_id, "type": t.type, "channel": t.channel,
                                 "occurred_at": at}
    if t.feedback is not None:
        _add_feedback(state.setdefault("satisfaction", {}), at, event_id, *t.feedback)


def _add_feedback(satisfaction: dict[str, Any], at: str, event_id: str, scale: str,
                  score: int) -> None:
    """Per scale: the latest score (by event time, then event id, as attributes) and how many
    times each score was given (JSON keys are strings), from which the average and the NPS
    groups follow."""
    held = satisfaction.get(scale)
    if held is None:
        held = satisfaction[scale] = {"latest": None, "counts": {}}
    if _later(held["latest"], at, event_id):
        held["latest"] = [at, event_id, score]
    counts, key = held["counts"], str(score)
    counts[key] = counts.get(key, 0) + 1


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The state of two histories together (commutative and associative; ``new_state()`` is
    its identity): how reads combine the profiles of linked customers."""
    out = new_state()
    out["emails"] = sorted(set(a["emails"]) | set(b["emails"]))
    out["phones"] = sorted(set(a["phones"]) | set(b["phones"]))
    for system in sorted(a["external_ids"].keys() | b["external_ids"].keys()):
        out["external_ids"][system] = sorted(set(a["external_ids"].get(system, []))
                                             | set(b["external_ids"].get(system, [])))
    for key in ("attributes", "complaints"):
        held = dict(a[key])
        for name, stamped in b[key].items():
            if _later(held.get(name), stamped[0], stamped[1]):
                held[name] = stamped
        out[key] = held
    seen = [s for s in (a["first_seen"], b["first_seen"]) if s is not None]
    out["first_seen"] = min(seen) if seen else None
    seen = [s for s in (a["last_seen"], b["last_seen"]) if s is not None]
    out["last_seen"] = max(seen) if seen else None
    out["events_count"] = a["events_count"] + b["events_count"]
    for key in ("by_channel", "by_type"):
        counts = dict(a[key])
        for name, n in b[key].items():
            counts[name] = counts.get(name, 0) + n
        out[key] = counts
    contacts = [c for c in (a["last_contact"], b["last_contact"]) if c is not None]
    out["last_contact"] = max(contacts, key=lambda c: (c["occurred_at"], c["event_id"]),
                              default=None)
    out["satisfaction"] = _merge_satisfaction(a.get("satisfaction", {}), b.get("satisfaction", {}))
    return out


def _merge_satisfaction(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for scale in sorted(a.keys() | b.keys()):
        both = [held for held in (a.get(scale), b.get(scale)) if held is not None]
        counts: dict[str, int] = {}
        for held in both:
            for score, n in held["counts"].items():
                counts[score] = counts.get(score, 0) + n
        out[scale] = {"latest": max((held["latest"] for held in both), key=lambda s: (s[0], s[1])),
                      "counts": counts}
    return out


def open_complaints(state: dict[str, Any]) -> list[str]:
    """Ids of the complaints whose latest status is open, sorted."""
    return sorted(cid for cid, c in state["complaints"].items() if c[2] == "open")
