"""Reads as of a time: a customer's profile and contact history as they were at ``as_of``, folded
from the archive (``services.archive``) with the projections' own pure folds.

Which events count as known at ``as_of`` (parameter ``known``):

- ``event_time`` (the default): those that occurred at or before it, whenever they arrived. A late
  event fills in the past it belongs to, as it does in the live profile, whose fold does not
  depend on arrival order, and time means what the timeline's ``since``/``until`` and
  ``touchstream replay --until`` mean by it. The answer is the customer's history up to then, as
  far as it is known now: asked again later, it may hold events that had not arrived yet.
- ``archived``: those the archive held at ``as_of`` (archived at or before it): what the platform
  knew then, to audit what it showed or decided at that time. The archive stage runs beside the
  projection stage, so it may have taken an event a batch after the live reads showed it.

Either way the cluster is the one the identity graph names now (the live reads' lookup), and its
members' folds are merged as the live read merges their rows: a link made after ``as_of`` joins
events from before it. Identity events (``customers_linked``) are folded by no projection, and an
event the projection stage refuses (a fold cannot read it) is left out, as that stage leaves it out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, NamedTuple
from uuid import UUID

from eventsourcing.postgres import PostgresApplicationRecorder
from fastapi import Depends, Query, Request
from pydantic import BeforeValidator

from events.archive import from_stored
from projections.contacts import fold as contacts
from projections.contacts.store import decode_cursor, encode_cursor
from projections.orders import fold as ledger
from projections.profile import fold
from services.processors.projector import NOT_TOUCHPOINTS

Known = Literal["event_time", "archived"]


def _aware(value: str) -> datetime:
    """An ISO 8601 time with its UTC offset. Pydantic alone would also take a number of seconds
    and quote the input back in its message; ``fromisoformat`` alone ignores a NUL at the end."""
    try:
        if not (value.isascii() and value.isprintable()):
            raise ValueError
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("not an ISO 8601 time, for example 2026-03-01T10:00:00Z") from None
    if at.utcoffset() is None:
        raise ValueError("must include a timezone offset, for example 2026-03-01T10:00:00Z")
    return at


AsOf = Annotated[datetime | None, BeforeValidator(_aware), Query(
    description="Answer as of this time (ISO 8601 with a UTC offset), folded from the customer's "
                "archived events; see `known`.")]
KnownAt = Annotated[Known, Query(
    description="With `as_of`, which events count: `event_time` (default), those that occurred by "
                "then, late arrivals included; `archived`, those the archive held then (what the "
                "platform knew at that time).")]


def _recorder(request: Request) -> PostgresApplicationRecorder:
    return request.app.state.archive


Archive = Annotated[PostgresApplicationRecorder, Depends(_recorder)]


class Reading(NamedTuple):
    """One archived touchpoint, as the profile, the order ledger and the contact history read it."""

    occurred_at: datetime
    event_id: UUID
    touch: fold.Touch
    order: ledger.OrderState | None
    contact: contacts.ContactRow


def known_at(recorder: PostgresApplicationRecorder, members: list[str], at: datetime,
             known: Known) -> dict[str, list[Reading]]:
    """Per member of a cluster (those with any), its archived touchpoints known at ``at``, in the
    order of its stream. Blocks on the library's recorder: run it in a thread."""
    found: dict[str, list[Reading]] = {}
    for member in members:
        for stored in recorder.select_events(UUID(member)):
            e = from_stored(stored)
            if e.event_type in NOT_TOUCHPOINTS:
                continue
            try:
                occurred = datetime.fromisoformat(e.event["occurred_at"])
                if (occurred if known == "event_time" else e.timestamp) > at:
                    continue
                reading = Reading(occurred, UUID(e.event["event_id"]), fold.read_touch(e.event),
                                  ledger.read(e.event), contacts.row(e.event, e.partition, e.offset))
            except Exception:  # noqa: BLE001 - the projection stage refuses what a fold cannot read
                continue
            found.setdefault(member, []).append(reading)
    return found


def profile_state(found: dict[str, list[Reading]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The profile state document and the order ledger's summary: each member's touchpoints
    folded into a state of its own, the states merged as the live read merges stored rows."""
    merged = fold.new_state()
    for readings in found.values():
        state = fold.new_state()
        for r in readings:
            fold.add_touch(state, r.touch)
        merged = fold.merge(merged, state)
    orders = [r.order for readings in found.values() for r in readings if r.order is not None]
    return merged, ledger.summary(orders)


def timeline(found: dict[str, list[Reading]], *, limit: int, cursor: str | None,
             types: list[str] | None, channels: list[str] | None, since: datetime | None,
             until: datetime | None) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the contact history, as ``contacts.store.timeline`` reads it from its table:
    newest first (event time, then event id), the same filters, the same cursors. Raises
    ValueError for a cursor this API did not issue."""
    after = None
    if cursor:
        at, event_id = decode_cursor(cursor)
        if at.utcoffset() is None:
            raise ValueError("cursor is not one this API issued")
        after = (at, UUID(event_id))
    rows = sorted(
        (r for readings in found.values() for r in readings
         if (after is None or (r.occurred_at, r.event_id) < after)
         and (not types or r.contact.type in types) and (not channels or r.contact.channel in channels)
         and (since is None or r.occurred_at >= since) and (until is None or r.occurred_at < until)),
        key=lambda r: (r.occurred_at, r.event_id), reverse=True)
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].occurred_at, page[-1].event_id) if len(rows) > limit else None
    return [{**r.contact._asdict(), "occurred_at": r.occurred_at} for r in page], next_cursor
