"""HTTP door out: the unified profile and the contact history."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from events.envelope import normalise_email, normalise_phone, normalise_uuid
from events.touchpoints import SCORES
from projections.contacts import store as contacts
from projections.identity import store as identity
from projections.orders import fold as ledger
from projections.profile import fold
from projections.profile import store as profiles
from services.api.as_of import Archive, AsOf, Known, KnownAt, Reading, known_at, profile_state
from services.api.as_of import timeline as timeline_as_of

router = APIRouter(prefix="/v1/customers", tags=["customers"])


async def connection(request: Request):
    pool: AsyncConnectionPool = request.app.state.pool
    async with pool.connection() as conn:
        yield conn


Conn = Annotated[AsyncConnection, Depends(connection)]


def present(state: dict[str, Any], root: str, members: list[str],
            orders: dict[str, Any]) -> dict[str, Any]:
    """A profile state document (``fold.merge`` of the cluster's) and the order ledger's summary,
    as the API shows them."""
    return {
        "customer_id": root,
        "merged_ids": [m for m in members if m != root],
        "identifiers": {"emails": state["emails"], "phones": state["phones"],
                        "external_ids": dict(sorted(state["external_ids"].items()))},
        "attributes": {k: v[2] for k, v in sorted(state["attributes"].items())},
        "first_seen": state["first_seen"],
        "last_seen": state["last_seen"],
        "events_count": state["events_count"],
        "counts": {"by_channel": dict(sorted(state["by_channel"].items())),
                   "by_type": dict(sorted(state["by_type"].items()))},
        "orders": orders,
        "complaints": {"open": fold.open_complaints(state),
                       "all": {k: {"status": c[2], "occurred_at": c[0]}
                               for k, c in sorted(state["complaints"].items())}},
        "last_contact": state["last_contact"],
        "satisfaction": satisfaction(state.get("satisfaction", {})),
    }


NPS_GROUPS = {"promoters": range(9, 11), "passives": range(7, 9), "detractors": range(0, 7)}


def satisfaction(held: dict[str, Any]) -> dict[str, Any]:
    """Per scale (null if never answered): the latest score with its time, the average (2
    decimals) and the number of answers; NPS answers also counted as promoters, passives and
    detractors. A signal of how a customer feels, not of whether they stay."""
    out: dict[str, Any] = {}
    for scale in SCORES:
        if scale not in held:
            out[scale] = None
            continue
        latest, counts = held[scale]["latest"], {int(k): n for k, n in held[scale]["counts"].items()}
        answers = sum(counts.values())
        out[scale] = {"latest": {"score": latest[2], "occurred_at": latest[0]},
                      "average": round(sum(k * n for k, n in counts.items()) / answers, 2),
                      "count": answers}
        if scale == "nps":
            out[scale] |= {group: sum(n for k, n in counts.items() if k in scores)
                           for group, scores in NPS_GROUPS.items()}
    return out


async def _found(conn: AsyncConnection, customer_id: str, lookup: Callable[..., Awaitable[Any]]) -> Any:
    """``lookup(conn, customer_id)``; 404 for an id that is not a UUID or names nobody."""
    try:
        customer_id = normalise_uuid(customer_id)
    except ValueError:
        raise HTTPException(404, {"error": "no such customer", "customer_id": customer_id}) from None
    found = await lookup(conn, customer_id)
    if found is None:
        raise HTTPException(404, {"error": "no such customer", "customer_id": customer_id})
    return found


async def _cluster(conn: AsyncConnection, customer_id: str) -> tuple[str, list[str]]:
    return await _found(conn, customer_id, identity.cluster)


async def profile_of(conn: AsyncConnection, customer_id: str) -> dict[str, Any] | None:
    """The merged profile of a customer's identity cluster; 404 for an unknown customer."""
    found = await _found(conn, customer_id, profiles.load_cluster)
    if not found.states:
        return None
    merged = fold.new_state()
    for state in found.states.values():
        merged = fold.merge(merged, state)
    out = present(merged, found.canonical_id, found.members, ledger.summary(found.orders))
    cur = await conn.execute(
        "SELECT tier, stage FROM customer_value WHERE customer_id = ANY(%s::uuid[]) "
        "ORDER BY customer_id = %s::uuid DESC, as_of DESC LIMIT 1",
        (found.members, found.canonical_id))
    held = await cur.fetchone()
    out["value"] = {"tier": held[0], "stage": held[1]} if held else None
    return out


async def _known(recorder: Archive, customer_id: str, members: list[str], at: datetime,
                 known: Known) -> dict[str, list[Reading]]:
    """The cluster members' archived touchpoints known at ``at``; 404 when there were none."""
    found = await asyncio.to_thread(known_at, recorder, members, at, known)
    if not found:
        raise HTTPException(404, {"error": "no such customer", "customer_id": customer_id,
                                  "as_of": at.isoformat()})
    return found


@router.get("/{customer_id}")
async def read_customer(customer_id: str, conn: Conn, recorder: Archive, as_of: AsOf = None,
                        known: KnownAt = "event_time") -> dict[str, Any]:
    """The unified profile of a customer's identity cluster: the profiles of the linked customers
    merged, with the order ledger's counts and spend.

    With `as_of`: the profile as it was then, folded from the cluster's archived events by the
    profile's and the ledger's own folds; 404 when none was known then. By default
    (`known=event_time`) the events that occurred by then count, late arrivals included: a late
    event belongs to the time it happened, as in the live profile, whose fold does not depend on
    arrival order. `known=archived` counts the events the archive held then instead: what the
    platform knew at that time. `value` is null: the tier and stage are no fold of the customer's
    own events (they depend on thresholds over every customer, the fitted purchase models and the
    passing of time)."""
    if as_of is not None:
        root, members = await _cluster(conn, customer_id)
        found = await _known(recorder, customer_id, members, as_of, known)
        state, orders = profile_state(found)
        return present(state, root, sorted(found), orders) | {"value": None}
    profile = await profile_of(conn, customer_id)
    if profile is None:
        raise HTTPException(404, {"error": "no profile yet for this customer", "customer_id": customer_id})
    return profile


def _key(email: str | None, phone: str | None, external_id: str | None) -> str:
    given = [(n, v) for n, v in (("email", email), ("phone", phone), ("external_id", external_id)) if v]
    if len(given) != 1:
        raise HTTPException(400, {"error": "give exactly one of email, phone or external_id"})
    name, value = given[0]
    try:
        if name == "email":
            return f"email:{normalise_email(value)}"
        if name == "phone":
            return f"phone:{normalise_phone(value)}"
        system, _, ident = value.partition(":")
        if not system or not ident:
            raise ValueError("external_id must look like <system>:<id>")
        return f"ext:{system}:{ident.strip()}"
    except ValueError as exc:
        raise HTTPException(400, {"error": str(exc), "field": name}) from None


@router.get("")
async def find_customers(conn: Conn, email: str | None = None, phone: str | None = None,
                         external_id: str | None = None) -> dict[str, Any]:
    """Look a customer up by an identifier; ``items`` is empty when nobody has it."""
    customer = await identity.find(conn, _key(email, phone, external_id))
    profile = await profile_of(conn, customer) if customer else None
    return {"items": [profile] if profile else []}


@router.get("/{customer_id}/timeline")
async def list_timeline(
    customer_id: str, conn: Conn, recorder: Archive,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
    type: Annotated[list[str] | None, Query()] = None,  # noqa: A002 - the public parameter name
    channel: Annotated[list[str] | None, Query()] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    as_of: AsOf = None,
    known: KnownAt = "event_time",
) -> dict[str, Any]:
    """The contact history of a customer's identity cluster, newest first, a page at a time.

    With `as_of`: the history as it was then, rows made by the contact history's own fold from the
    cluster's archived events, with the same filters and cursors (give the same `as_of` for every
    page); 404 when no event was known then. By default (`known=event_time`) the events that
    occurred by then count, late arrivals included, as `since` and `until` count time;
    `known=archived` counts the events the archive held then: what the platform knew at that time."""
    root, members = await _cluster(conn, customer_id)
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.utcoffset() is None:
            raise HTTPException(400, {"error": f"{name} must include a timezone offset", "field": name})
    split = lambda vs: [v for s in vs for v in s.split(",") if v] if vs else None  # noqa: E731
    types, channels = split(type), split(channel)
    try:
        if as_of is None:
            rows, next_cursor = await contacts.timeline(
                conn, members, limit=limit, cursor=cursor, types=types, channels=channels,
                since=since, until=until)
        else:
            found = await _known(recorder, customer_id, members, as_of, known)
            rows, next_cursor = timeline_as_of(found, limit=limit, cursor=cursor, types=types,
                                               channels=channels, since=since, until=until)
    except ValueError as exc:
        raise HTTPException(400, {"error": str(exc), "field": "cursor"}) from None
    items = [{**r, "event_id": str(r["event_id"]), "customer_id": str(r["customer_id"]),
              "occurred_at": r["occurred_at"].isoformat()} for r in rows]
    return {"customer_id": root, "items": items, "next_cursor": next_cursor}
