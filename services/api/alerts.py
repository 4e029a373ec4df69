"""HTTP doors for ops: churn alerts listed, acted on, and followed live.

The live stream is the alert log (``projections.alerts.store``): each event's SSE id is its
position in the log, which every API process shares, so a client reconnecting with
``Last-Event-ID`` (or ``?after=``) to any process gets exactly what followed. Each API process
follows the log once (``Hub``: LISTEN, then read after the last position) and hands each stream
the events its filters take, through a bounded queue; a stream whose client reads too slowly to
keep up is told so (``event: overflow``, with the position to resume from) and closed, never
thinned silently. A position older than the log keeps, or ahead of it, gets ``event: reload``:
the client reloads the list and follows from the position given.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import psycopg
from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, ConfigDict, field_validator

from events.envelope import normalise_uuid
from events.strings import text_field
from projections.alerts import store
from projections.alerts.rules import BASE, SEVERITIES
from projections.identity import store as identity
from services.api.customers import Conn

log = logging.getLogger("touchstream.api.alerts")
router = APIRouter(prefix="/v1/alerts", tags=["alerts"])

STATUSES = ("open", "acknowledged", "snoozed", "resolved")
RULES = tuple(BASE)


# --- filters --------------------------------------------------------------------------------

def _choices(name: str, value: str | None, allowed: tuple[str, ...]) -> list[str] | None:
    if value is None or value == "":
        return None
    picked = [v.strip() for v in value.split(",") if v.strip()]
    wrong = [v for v in picked if v not in allowed]
    if wrong or not picked:
        raise HTTPException(422, {"error": "invalid request", "errors": [
            {"field": name, "reason": f"{', '.join(wrong) or 'nothing'}: not among "
                                      f"{', '.join(allowed)} (comma-separated)"}]})
    return picked


class Filters:
    def __init__(self, severity: str | None, tier: str | None, rule: str | None,
                 customers: list[str] | None):
        self.severity = _choices("severity", severity, SEVERITIES)
        self.tier = _choices("tier", tier, TIERS) if tier else None
        self.rule = _choices("rule", rule, RULES)
        self.customers = customers

    def take(self, alert: dict[str, Any] | None) -> bool:
        if alert is None:
            return True
        return ((self.severity is None or alert["severity"] in self.severity)
                and (self.tier is None or alert["tier"] in self.tier)
                and (self.rule is None or alert["rule"] in self.rule)
                and (self.customers is None or alert["customer_id"] in self.customers))


TIERS: tuple[str, ...] = ()  # set from the settings when the app starts (``setup``)


async def _members(conn: psycopg.AsyncConnection, customer_id: str | None) -> list[str] | None:
    """A customer and those linked to them (their alerts may be filed under any of them)."""
    if customer_id is None or customer_id == "":
        return None
    try:
        customer_id = normalise_uuid(customer_id)
    except ValueError:
        raise HTTPException(422, {"error": "invalid request", "errors": [
            {"field": "customer_id", "reason": "not a UUID"}]}) from None
    found = await identity.cluster(conn, customer_id)
    return found[1] if found else [customer_id]


Severity = Annotated[str | None, Query(description="Comma-separated: low, medium, high, critical.")]
Tier = Annotated[str | None, Query(description="Comma-separated value tiers (platinum, ..., prospect).")]
Rule = Annotated[str | None, Query(description="Comma-separated rules: " + ", ".join(RULES) + ".")]
CustomerId = Annotated[str | None, Query(description="A customer (and those linked to them).")]


# --- list, one, summary ---------------------------------------------------------------------

def _cursor(opened_at: str, alert_id: str) -> str:
    return base64.urlsafe_b64encode(f"{opened_at}|{alert_id}".encode()).decode()


def _uncursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, alert_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(at.replace("Z", "+00:00")), normalise_uuid(alert_id)
    except Exception:  # noqa: BLE001 - anything wrong with it: the same answer
        raise HTTPException(422, {"error": "invalid request", "errors": [
            {"field": "cursor", "reason": "not a cursor this API gave"}]}) from None


@router.get("")
async def list_alerts(conn: Conn, status: Annotated[str | None, Query(
        description="Comma-separated: open, acknowledged, snoozed, resolved; or active (all but "
                    "resolved, the default).")] = "active",
        severity: Severity = None, tier: Tier = None, rule: Rule = None,
        customer_id: CustomerId = None, cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
    """Alerts, the most recently opened first, a page at a time (`next_cursor`). `position` is
    the alert log's position when the page was read: follow `/v1/alerts/stream?after=position`
    to miss nothing that happened since."""
    statuses = ["open", "acknowledged", "snoozed"] if status in (None, "", "active") \
        else _choices("status", status, STATUSES)
    f = Filters(severity, tier, rule, await _members(conn, customer_id))
    after = _uncursor(cursor) if cursor else None
    _, position = await store.log_bounds(conn)
    cur = await conn.execute(
        f"SELECT {store.DOCUMENT} FROM alerts a WHERE a.status = ANY(%(status)s) "
        "AND (%(severity)s::text[] IS NULL OR a.severity = ANY(%(severity)s)) "
        "AND (%(tier)s::text[] IS NULL OR a.tier = ANY(%(tier)s)) "
        "AND (%(rule)s::text[] IS NULL OR a.rule = ANY(%(rule)s)) "
        "AND (%(customers)s::uuid[] IS NULL OR a.customer_id = ANY(%(customers)s)) "
        "AND (%(at)s::timestamptz IS NULL OR (a.opened_at, a.alert_id) < (%(at)s, %(id)s::uuid)) "
        "ORDER BY a.opened_at DESC, a.alert_id DESC LIMIT %(limit)s",
        {"status": statuses, "severity": f.severity, "tier": f.tier, "rule": f.rule,
         "customers": f.customers, "at": after[0] if after else None,
         "id": after[1] if after else None, "limit": limit + 1})
    items = [r[0] for r in await cur.fetchall()]
    more = len(items) > limit
    items = items[:limit]
    return {"items": items, "position": position,
            "next_cursor": _cursor(items[-1]["opened_at"], items[-1]["alert_id"]) if more else None}


@router.get("/summary")
async def summary(conn: Conn) -> dict[str, Any]:
    """Active alerts (all but resolved) counted by severity, tier, rule and status; `position`
    as in the list."""
    _, position = await store.log_bounds(conn)
    out: dict[str, Any] = {"position": position}
    cur = await conn.execute(
        "SELECT count(*), "
        "coalesce((SELECT jsonb_object_agg(k, n) FROM (SELECT severity k, count(*) n FROM alerts "
        "WHERE status <> 'resolved' GROUP BY 1) s), '{}'), "
        "coalesce((SELECT jsonb_object_agg(k, n) FROM (SELECT tier k, count(*) n FROM alerts "
        "WHERE status <> 'resolved' GROUP BY 1) s), '{}'), "
        "coalesce((SELECT jsonb_object_agg(k, n) FROM (SELECT rule k, count(*) n FROM alerts "
        "WHERE status <> 'resolved' GROUP BY 1) s), '{}'), "
        "coalesce((SELECT jsonb_object_agg(k, n) FROM (SELECT status k, count(*) n FROM alerts "
        "WHERE status <> 'resolved' GROUP BY 1) s), '{}') "
        "FROM alerts WHERE status <> 'resolved'")
    active, by_severity, by_tier, by_rule, by_status = await cur.fetchone()
    out |= {"active": active,
            "by_severity": {s: by_severity.get(s, 0) for s in reversed(SEVERITIES)},
            "by_tier": {t: by_tier[t] for t in (*TIERS, *sorted(set(by_tier) - set(TIERS)))
                        if t in by_tier},
            "by_rule": dict(sorted(by_rule.items())), "by_status": dict(sorted(by_status.items()))}
    return out


def _alert_id(alert_id: str) -> str:
    try:
        return normalise_uuid(alert_id)
    except ValueError:
        raise HTTPException(404, {"error": "no such alert", "alert_id": alert_id}) from None


async def stream_args(request: Request, severity: Severity = None, tier: Tier = None,
                      rule: Rule = None, customer_id: CustomerId = None,
                      after: Annotated[int | None, Query(ge=0, description=(
                          "Resume after this log position (as Last-Event-ID does; the header "
                          "wins)."))] = None,
                      last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None
                      ) -> tuple[Filters, int | None]:
    """The stream's filters and position, checked before the stream starts (a 422 names what is
    wrong)."""
    async with request.app.state.pool.connection() as conn:
        f = Filters(severity, tier, rule, await _members(conn, customer_id))
    start: int | None = after
    if last_event_id is not None and last_event_id.strip():
        try:
            start = int(last_event_id)
            if start < 0:
                raise ValueError
        except ValueError:
            raise HTTPException(422, {"error": "invalid request", "errors": [
                {"field": "Last-Event-ID", "reason": "not a position this stream gave"}]}) from None
    await request.app.state.alert_hub.ensure()
    return f, start


@router.get("/stream", response_class=EventSourceResponse)
async def stream(request: Request, args: Annotated[tuple[Filters, int | None], Depends(stream_args)]
                 ) -> AsyncIterator[ServerSentEvent]:
    """Alert events as they are committed, as server-sent events: `opened`, `acknowledged`,
    `snoozed`, `woke` (a snooze ended), `resolved`, each with the alert as it then stood; `id` is
    the event's position in the alert log. Without a position the stream starts at the present
    (`ready` gives it). `reload`: the position asked for is no longer (or not yet) in the log;
    reload the list and go on from the position given. `overflow`: this client fell too far
    behind; reconnect with the last id it received. Idle streams carry heartbeat comments."""
    async for event in _events(request, request.app.state.alert_hub, *args):
        yield event


async def _events(request: Request, hub: Hub, f: Filters, start: int | None
                  ) -> AsyncIterator[ServerSentEvent]:
    settings = request.app.state.settings
    sub = hub.subscribe(f, settings.alert_stream_queue)
    try:
        async with request.app.state.pool.connection() as conn:
            first, last = await store.log_bounds(conn)
            if start is None:
                start = last
                yield ServerSentEvent(event="ready", id=str(start), data={"position": start})
            elif start > last or (first > 0 and start < first - 1):
                yield ServerSentEvent(event="reload", id=str(last), data={
                    "position": last, "reason": f"position {start} is not in the alert log "
                    f"(it holds {first} to {last}): reload, then follow from {last}"})
                start = last
            while True:  # what the log holds after the position, before the live events
                entries = await store.log_after(conn, start, 500)
                for e in entries:
                    start = e.seq
                    if f.take(e.alert) or e.kind == "reload":
                        yield _event(e)
                if len(entries) < 500:
                    break
        sent = start
        while True:
            if sub.overflowed:
                yield ServerSentEvent(event="overflow", data={
                    "position": sent, "reason": "this client fell more than "
                    f"{settings.alert_stream_queue} events behind: reconnect with "
                    f"Last-Event-ID {sent}"})
                return
            try:
                async with asyncio.timeout(settings.alert_heartbeat_s):
                    e = await sub.queue.get()
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield ServerSentEvent(comment=f"heartbeat {datetime.now(UTC).isoformat()}")
                continue
            if e.seq <= sent:
                continue
            sent = e.seq
            yield _event(e)
    finally:
        hub.unsubscribe(sub)


def _event(e: store.Entry) -> ServerSentEvent:
    return ServerSentEvent(event=e.kind, id=str(e.seq), raw_data=orjson.dumps(
        {"seq": e.seq, "kind": e.kind, "recorded_at": e.recorded_at.astimezone(UTC).isoformat(),
         "alert": e.alert}).decode())


@router.get("/{alert_id}")
async def read_alert(alert_id: str, conn: Conn) -> dict[str, Any]:
    """One alert as it now stands, with its history (each lifecycle event, oldest first)."""
    alert_id = _alert_id(alert_id)
    found = await store.get(conn, alert_id)
    if found is None:
        raise HTTPException(404, {"error": "no such alert", "alert_id": alert_id})
    cur = await conn.execute(
        "SELECT seq, kind, alert->>'updated_at', alert->>'acknowledged_by', alert->>'resolved_by', "
        "alert->>'note' FROM alert_log WHERE alert_id = %s ORDER BY seq", (alert_id,))
    found["history"] = [{"seq": s, "kind": k, "at": at, "by": ack if k == "acknowledged" else
                         res if k == "resolved" else None, "note": note}
                        for s, k, at, ack, res, note in await cur.fetchall()]
    return found


# --- acting on an alert ---------------------------------------------------------------------

class Action(BaseModel):
    """Who acts, and why."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    by: str = text_field(200, min_length=1)
    note: str | None = text_field(2000, prose=True, default=None)


class Snooze(Action):
    until: datetime

    @field_validator("until")
    @classmethod
    def _future(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("needs a time zone (for example 2026-12-03T18:00:00Z)")
        if v <= datetime.now(UTC):
            raise ValueError("must be in the future")
        return v


async def _act(request: Request, alert_id: str, kind: str, action: Action,
               until: datetime | None = None) -> dict[str, Any]:
    alert_id = _alert_id(alert_id)
    async with request.app.state.pool.connection() as conn, conn.transaction():
        done = await store.act(conn, alert_id, kind, action.by, action.note, until)
        if done is None:
            found = await store.get(conn, alert_id)
            if found is None:
                raise HTTPException(404, {"error": "no such alert", "alert_id": alert_id})
            raise HTTPException(409, {"error": "the alert is resolved", "alert_id": alert_id,
                                      "alert": found})
    return done


@router.post("/{alert_id}/ack")
async def acknowledge(alert_id: str, request: Request, action: Annotated[Action, Body()]) -> dict[str, Any]:
    """Acknowledge an alert (someone is on it); the alert as it now stands. 409 if resolved."""
    return await _act(request, alert_id, "acknowledged", action)


@router.post("/{alert_id}/snooze")
async def snooze(alert_id: str, request: Request, action: Annotated[Snooze, Body()]) -> dict[str, Any]:
    """Snooze an alert until a time (it is active again then: `woke`); 409 if resolved."""
    return await _act(request, alert_id, "snoozed", action, action.until)


@router.post("/{alert_id}/resolve")
async def resolve(alert_id: str, request: Request, action: Annotated[Action, Body()]) -> dict[str, Any]:
    """Resolve an alert by hand (the same condition does not fire again); 409 if resolved."""
    return await _act(request, alert_id, "resolved", action)


# --- one follower of the log per process ----------------------------------------------------

class Subscriber:
    def __init__(self, filters: Filters, size: int):
        self.filters = filters
        self.queue: asyncio.Queue[store.Entry] = asyncio.Queue(size)
        self.overflowed = False


class Hub:
    """Follows the alert log for every stream of this process (one connection: LISTEN, then read
    after the last position on each notification and every second)."""

    def __init__(self, settings: Any):
        self.settings = settings
        self.subscribers: set[Subscriber] = set()
        self.task: asyncio.Task | None = None
        self.position = 0
        self._starting = asyncio.Lock()

    async def ensure(self) -> None:
        """Start following, once: streams that connect together wait for one start."""
        async with self._starting:
            if self.task is None or self.task.done():
                async with await psycopg.AsyncConnection.connect(self.settings.database_url,
                                                                 autocommit=True) as conn:
                    self.position = (await store.log_bounds(conn))[1]
                self.task = asyncio.create_task(self._follow())

    def subscribe(self, filters: Filters, size: int) -> Subscriber:
        sub = Subscriber(filters, size)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

    async def _follow(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        self.settings.database_url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {store.CHANNEL}")
                    while True:
                        entries = await store.log_after(conn, self.position, 500)
                        for e in entries:
                            self.position = e.seq
                            self._dispatch(e)
                        if len(entries) == 500:
                            continue
                        async for _ in conn.notifies(timeout=1.0, stop_after=1):
                            pass
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the database went away: follow again
                log.exception("following the alert log failed; retrying")
                await asyncio.sleep(1.0)

    def _dispatch(self, e: store.Entry) -> None:
        for sub in list(self.subscribers):
            if sub.overflowed or not (e.kind == "reload" or sub.filters.take(e.alert)):
                continue
            try:
                sub.queue.put_nowait(e)
            except asyncio.QueueFull:
                sub.overflowed = True


def setup(app: Any, settings: Any) -> None:
    """The tiers the filters accept, and this process's follower of the log."""
    global TIERS
    TIERS = (*settings.value_tiers, "unranked", "prospect")
    app.state.alert_hub = Hub(settings)

