"""Identity resolution: identifiers of a touchpoint -> canonical customer id. Pure.

Keys are ``id:<uuid>``, ``email:<normalised>``, ``phone:<E.164>``, ``ext:<system>:<id>``.
A key, once assigned to a customer, stays with it; linking two customers only moves the
*canonical* pointer of the merged one, so the rows written under its old id stay valid.
New ids are derived from the identifiers (uuid5), so replaying the raw log gives the same ids.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

NAMESPACE = uuid.UUID("6f1d3c3e-2f7b-4c59-9a51-0b8f0a4d7e21")


def new_customer_id(keys: list[str]) -> str:
    for key in keys:
        if key.startswith("id:"):
            return key[3:]
    return str(uuid.uuid5(NAMESPACE, keys[0]))


@dataclass(frozen=True)
class Link:
    survivor: str
    merged: str
    event_id: str
    keys: tuple[str, ...]


@dataclass
class Resolution:
    """What a batch changes in the graph, and each event's canonical customer id."""

    assigned: list[str] = field(default_factory=list)
    new_customers: list[str] = field(default_factory=list)
    new_keys: dict[str, str] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)


def resolve(batch: list[tuple[str, list[str]]], known: dict[str, tuple[str, str]]) -> Resolution:
    """Resolve ``(event_id, keys)`` pairs in order, given ``known[key] = (customer, canonical)``."""
    owner = {k: c for k, (c, _) in known.items()}
    canon = {c: cc for c, cc in known.values()}
    out = Resolution()

    def root(customer: str) -> str:
        while canon.get(customer, customer) != customer:
            customer = canon[customer]
        return customer

    for event_id, keys in batch:
        roots = sorted({root(owner[k]) for k in keys if k in owner})
        if not roots:
            cid = new_customer_id(keys)
            if cid not in canon:  # an ``id:`` key may name a customer already in the graph
                canon[cid] = cid
                out.new_customers.append(cid)
        else:
            cid = roots[0]
            for other in roots[1:]:
                canon[other] = cid
                out.links.append(Link(cid, other, event_id, tuple(keys)))
        for k in keys:
            if k not in owner:
                owner[k] = cid
                out.new_keys[k] = cid
        out.assigned.append(cid)
    # Ids assigned before a later link in the same batch now point at the survivor.
    out.assigned = [root(c) for c in out.assigned]
    return out
