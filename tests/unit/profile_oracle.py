"""The reference profile fold: slow and plain, the oracle the production fold is pinned to.

A profile is a frozen value folded event by event (``apply``) and merged (``merge``); the
production fold (``projections.profile.fold``) works on the stored state document instead.
Property tests assert that both give the same profile for any history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# (occurred_at ISO string in UTC, event_id): a total order on events, so "latest" is deterministic.
Stamp = tuple[str, str]
# per scale: ((stamp, score) of the latest answer, how many times each score was given)
Satisfaction = dict[str, tuple[tuple[Stamp, int], dict[int, int]]]


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
    complaints: dict[str, tuple[Stamp, str]] = field(default_factory=dict)  # id -> (stamp, status)
    last_contact: tuple[Stamp, dict[str, Any]] | None = None
    satisfaction: Satisfaction = field(default_factory=dict)

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


def _satisfaction(a: Satisfaction, b: Satisfaction) -> Satisfaction:
    out = dict(a)
    for scale, (latest, counts) in b.items():
        if scale in out:
            held, held_counts = out[scale]
            out[scale] = (max(held, latest, key=lambda answer: answer[0]), _add(held_counts, counts))
        else:
            out[scale] = (latest, counts)
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
        complaints=_latest(a.complaints, b.complaints),
        last_contact=lc,
        satisfaction=_satisfaction(a.satisfaction, b.satisfaction),
    )


def of_event(event: dict[str, Any]) -> Profile:
    """The profile that one touchpoint alone describes."""
    customer, payload = event["customer"], event.get("payload") or {}
    stamp: Stamp = (event["occurred_at"], event["event_id"])
    kind, channel = event["type"], event["channel"]
    complaints, satisfaction = {}, {}
    if kind == "complaint":
        complaints = {payload["complaint_id"]: (stamp, payload.get("status", "open"))}
    if kind == "feedback":
        score = payload["score"]
        satisfaction = {payload["scale"]: ((stamp, score), {score: 1})}
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
        complaints=complaints,
        last_contact=(stamp, {"event_id": event["event_id"], "type": kind, "channel": channel,
                              "occurred_at": event["occurred_at"]}),
        satisfaction=satisfaction,
    )


def apply(state: Profile | None, event: dict[str, Any]) -> Profile:
    """Fold one touchpoint into a profile (``None`` is the empty profile)."""
    delta = of_event(event)
    return delta if state is None else merge(state, delta)


def empty(customer_id: str) -> Profile:
    return Profile(customer_id=customer_id)


def to_state(p: Profile) -> dict[str, Any]:
    ext: dict[str, list[str]] = {}
    for system, value in sorted(p.external_ids):
        ext.setdefault(system, []).append(value)
    return {
        "emails": sorted(p.emails), "phones": sorted(p.phones), "external_ids": ext,
        "attributes": {k: [s[0], s[1], v] for k, (s, v) in p.attributes.items()},
        "first_seen": p.first_seen, "last_seen": p.last_seen, "events_count": p.events_count,
        "by_channel": p.by_channel, "by_type": p.by_type,
        "complaints": {k: [s[0], s[1], st] for k, (s, st) in p.complaints.items()},
        "last_contact": p.last_contact[1] if p.last_contact else None,
        "satisfaction": {scale: {"latest": [s[0], s[1], score],
                                 "counts": {str(k): n for k, n in counts.items()}}
                         for scale, ((s, score), counts) in p.satisfaction.items()},
    }


def from_state(customer_id: str, d: dict[str, Any]) -> Profile:
    lc = d["last_contact"]
    return Profile(
        customer_id=customer_id,
        emails=frozenset(d["emails"]),
        phones=frozenset(d["phones"]),
        external_ids=frozenset((s, v) for s, vs in d["external_ids"].items() for v in vs),
        attributes={k: ((a[0], a[1]), a[2]) for k, a in d["attributes"].items()},
        first_seen=d["first_seen"],
        last_seen=d["last_seen"],
        events_count=d["events_count"],
        by_channel=d["by_channel"],
        by_type=d["by_type"],
        complaints={k: ((c[0], c[1]), c[2]) for k, c in d["complaints"].items()},
        last_contact=((lc["occurred_at"], lc["event_id"]), lc) if lc else None,
        satisfaction={  # documents stored before feedback existed have no satisfaction
            scale: (((held["latest"][0], held["latest"][1]), held["latest"][2]),
                    {int(k): n for k, n in held["counts"].items()})
            for scale, held in d.get("satisfaction", {}).items()},
    )


