"""Alert read models: ``alert_state`` (per customer, what the rules keep of the touchpoints, what
has fired, when the timer next looks), ``alerts`` (every alert as it now stands) and ``alert_log``
(every lifecycle event of every alert, in commit order: the positions of the live stream and the
outbox of topic ``alerts``).

Every change of an alert and its log entry are one statement, in the writer's transaction: an
alert is opened once (``ON CONFLICT DO NOTHING`` on its deterministic id) and a change applies
only to an alert in the state it expects, so a batch retried after a crash, the timer and a person
acting at the same moment never log one event twice. A writer takes the log's table lock just
before it commits (``lock_log``), so that ``seq`` follows commit order: a reader that has seen a
position has seen everything before it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from projections.alerts.rules import Standing
from projections.sql import UNPACK, pack

CHANNEL = "ts_alerts"
DDL = """
CREATE TABLE IF NOT EXISTS alert_state (
    customer_id uuid PRIMARY KEY,
    facts       jsonb NOT NULL,                 -- what the rules keep of the touchpoints
    fired       jsonb NOT NULL DEFAULT '{}',    -- alert id, rule:NAME -> when it opened (epoch s)
    due_at      timestamptz,                    -- a condition starts to hold then, if nothing happens
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS alert_state_due ON alert_state (due_at) WHERE due_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS alerts (
    alert_id          uuid PRIMARY KEY,         -- from (customer_id, rule, dedup_key)
    customer_id       uuid        NOT NULL,
    rule              text        NOT NULL,
    dedup_key         text        NOT NULL,     -- which instance of the condition
    severity          text        NOT NULL,
    tier              text        NOT NULL,     -- the customer's, when it opened
    status            text        NOT NULL,     -- open | acknowledged | snoozed | resolved
    reason            text        NOT NULL,
    evidence          jsonb       NOT NULL,     -- the event ids behind it
    since             timestamptz NOT NULL,     -- when the condition began to hold
    opened_at         timestamptz NOT NULL,     -- when it was found (event time in a replay)
    suppress_until    timestamptz NOT NULL,
    acknowledged_by   text,
    acknowledged_at   timestamptz,
    snoozed_until     timestamptz,
    resolved_by       text,                     -- a person, or touchstream (the condition ended)
    resolved_at       timestamptz,
    resolution        text,
    resolved_event_id uuid,                     -- the event that removed the condition
    note              text,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS alerts_active ON alerts (customer_id) WHERE status <> 'resolved';
CREATE INDEX IF NOT EXISTS alerts_listing ON alerts (opened_at DESC, alert_id DESC);
CREATE INDEX IF NOT EXISTS alerts_snoozed ON alerts (snoozed_until) WHERE status = 'snoozed';
CREATE TABLE IF NOT EXISTS alert_log (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- commit order
    alert_id     uuid,
    customer_id  uuid,
    kind         text        NOT NULL,  -- opened | acknowledged | snoozed | woke | resolved | reload
    alert        json,                  -- the alert as it stood after the event (fields in order)
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz            -- on topic alerts since (reload: never published)
);
CREATE INDEX IF NOT EXISTS alert_log_unpublished ON alert_log (seq) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS alert_log_recorded ON alert_log (recorded_at);
"""

AUTO = "touchstream"  # who resolves an alert whose condition ended


def _ts(column: str) -> str:
    return (f"CASE WHEN {column} IS NULL THEN NULL ELSE "
            f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') END")


# An alert as the API, the stream and topic ``alerts`` show it (row alias ``a``).
DOCUMENT = (
    "json_build_object('alert_id', a.alert_id, 'customer_id', a.customer_id, 'rule', a.rule, "
    "'dedup_key', a.dedup_key, 'severity', a.severity, 'tier', a.tier, 'status', a.status, "
    "'reason', a.reason, 'evidence', a.evidence, "
    f"'since', {_ts('a.since')}, 'opened_at', {_ts('a.opened_at')}, "
    f"'suppress_until', {_ts('a.suppress_until')}, 'acknowledged_by', a.acknowledged_by, "
    f"'acknowledged_at', {_ts('a.acknowledged_at')}, 'snoozed_until', {_ts('a.snoozed_until')}, "
    f"'resolved_by', a.resolved_by, 'resolved_at', {_ts('a.resolved_at')}, "
    "'resolution', a.resolution, 'resolved_event_id', a.resolved_event_id, 'note', a.note, "
    f"'updated_at', {_ts('a.updated_at')})")


class Held(NamedTuple):
    """A customer as the rules need them: facts, what fired, the open alerts, the standing."""

    customer_id: str
    facts: dict[str, Any] | None
    fired: dict[str, float]
    open: dict[str, tuple[str, float]]  # alert id -> (rule, since)
    standing: Standing
    review_at: float | None  # when value re-decides the customer without events
    updated_at: datetime | None  # the state row's version (the timer's claim)


_SELECT = """
SELECT c.id::text, s.facts, s.fired, s.updated_at, v.tier, v.p_alive, v.frequency,
       extract(epoch FROM v.first_purchase::timestamp AT TIME ZONE 'UTC'),
       extract(epoch FROM v.last_purchase::timestamp AT TIME ZONE 'UTC'),
       extract(epoch FROM v.review_at),
       (SELECT jsonb_object_agg(a.alert_id, jsonb_build_array(a.rule, extract(epoch FROM a.since)))
          FROM alerts a WHERE a.customer_id = c.id AND a.status <> 'resolved')
FROM {source}
LEFT JOIN alert_state s ON s.customer_id = c.id
LEFT JOIN customer_value v ON v.customer_id = c.id
"""


def _held(row: tuple) -> Held:
    cid, facts, fired, updated, tier, p_alive, frequency, first, last, review, open_ = row
    standing = Standing(tier or "prospect", p_alive, frequency or 0,
                        float(first) if first is not None else None,
                        float(last) if last is not None else None)
    return Held(cid, facts, fired or {},
                {k: (v[0], float(v[1])) for k, v in (open_ or {}).items()}, standing,
                float(review) if review is not None else None, updated)


async def load(conn: psycopg.AsyncConnection, customer_ids: list[str]) -> list[Held]:
    cur = await conn.execute(
        _SELECT.format(source=f"(SELECT DISTINCT x::uuid AS id FROM {UNPACK} AS x) c"),
        (pack(customer_ids),))
    return [_held(r) for r in await cur.fetchall()]


async def due(conn: psycopg.AsyncConnection, now: datetime, limit: int) -> list[Held]:
    """Customers whose timer is due at ``now``, oldest first (read without locks)."""
    cur = await conn.execute(
        _SELECT.format(source="(SELECT customer_id AS id FROM alert_state WHERE due_at <= %s "
                              "ORDER BY due_at LIMIT %s) c"), (now, limit))
    return [_held(r) for r in await cur.fetchall()]


async def claim(conn: psycopg.AsyncConnection, seen: dict[str, datetime | None]) -> set[str]:
    """In the caller's transaction: lock the state rows still at the version read (a batch that
    changed or holds one decides it anew)."""
    ids = [c for c, v in seen.items() if v is not None]
    if not ids:
        return set()
    cur = await conn.execute(
        "SELECT s.customer_id::text FROM alert_state s "
        "JOIN unnest(%s::uuid[], %s::timestamptz[]) AS v(id, at) ON s.customer_id = v.id "
        "AND s.updated_at = v.at FOR UPDATE OF s SKIP LOCKED", (ids, [seen[c] for c in ids]))
    return {r[0] for r in await cur.fetchall()}


async def lock_log(conn: psycopg.AsyncConnection) -> None:
    """Until the commit: log positions follow the order of the commits."""
    await conn.execute("LOCK TABLE alert_log IN EXCLUSIVE MODE")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


async def save_states(conn: psycopg.AsyncConnection,
                      states: list[tuple[str, dict, dict, float | None]]) -> None:
    """(customer id, facts, fired, due) per customer; what fired is merged with what the row
    holds (a timer's firing is never lost)."""
    if not states:
        return
    await conn.execute(
        "INSERT INTO alert_state (customer_id, facts, fired, due_at, updated_at) "
        "SELECT r.customer_id, r.facts, r.fired, r.due_at, clock_timestamp() "
        "FROM jsonb_to_recordset(%s) AS r(customer_id uuid, facts jsonb, fired jsonb, due_at timestamptz) "
        "ON CONFLICT (customer_id) DO UPDATE SET facts = excluded.facts, "
        "fired = alert_state.fired || excluded.fired, due_at = excluded.due_at, "
        "updated_at = excluded.updated_at",
        (Jsonb([{"customer_id": c, "facts": f, "fired": fired,
                 "due_at": _iso(d) if d is not None else None} for c, f, fired, d in states]),))


async def open_alerts(conn: psycopg.AsyncConnection, rows: list[dict[str, Any]]) -> int:
    """Open these alerts (each once ever: an id already there is left as it is) and log them;
    how many were new. Rows: alert_id, customer_id, rule, dedup_key, severity, tier, reason,
    evidence, since, opened_at, suppress_until (times in epoch seconds)."""
    if not rows:
        return 0
    doc = [{**r, "since": _iso(r["since"]), "opened_at": _iso(r["opened_at"]),
            "suppress_until": _iso(r["suppress_until"])} for r in rows]
    cur = await conn.execute(
        "WITH new AS (INSERT INTO alerts (alert_id, customer_id, rule, dedup_key, severity, tier, "
        "status, reason, evidence, since, opened_at, suppress_until) "
        "SELECT alert_id, customer_id, rule, dedup_key, severity, tier, 'open', reason, evidence, "
        "since, opened_at, suppress_until FROM jsonb_to_recordset(%s) AS r(alert_id uuid, "
        "customer_id uuid, rule text, dedup_key text, severity text, tier text, reason text, "
        "evidence jsonb, since timestamptz, opened_at timestamptz, suppress_until timestamptz) "
        "ON CONFLICT (alert_id) DO NOTHING RETURNING *) "
        f"INSERT INTO alert_log (alert_id, customer_id, kind, alert) "
        f"SELECT a.alert_id, a.customer_id, 'opened', {DOCUMENT} FROM new a "
        "ORDER BY a.opened_at, a.alert_id", (Jsonb(doc),))
    return cur.rowcount


async def resolve_alerts(conn: psycopg.AsyncConnection, rows: list[dict[str, Any]]) -> int:
    """Resolve these alerts, the condition having ended (those still unresolved), and log it.
    Rows: alert_id, at (epoch seconds), reason, event_id (or None)."""
    if not rows:
        return 0
    cur = await conn.execute(
        "WITH done AS (UPDATE alerts a SET status = 'resolved', resolved_by = %s, "
        "resolved_at = r.at, resolution = r.reason, resolved_event_id = r.event_id, "
        "snoozed_until = NULL, updated_at = now() FROM jsonb_to_recordset(%s) AS r(alert_id uuid, "
        "at timestamptz, reason text, event_id uuid) "
        "WHERE a.alert_id = r.alert_id AND a.status <> 'resolved' RETURNING a.*) "
        f"INSERT INTO alert_log (alert_id, customer_id, kind, alert) "
        f"SELECT a.alert_id, a.customer_id, 'resolved', {DOCUMENT} FROM done a "
        "ORDER BY a.resolved_at, a.alert_id",
        (AUTO, Jsonb([{**r, "at": _iso(r["at"])} for r in rows])))
    return cur.rowcount


ACTIONS = {  # what a person's action sets, from (by, note, until)
    "acknowledged": "status = CASE WHEN a.status = 'snoozed' THEN a.status ELSE 'acknowledged' END, "
                    "acknowledged_by = %(by)s, acknowledged_at = now()",
    "snoozed": "status = 'snoozed', snoozed_until = %(until)s",
    "resolved": "status = 'resolved', resolved_by = %(by)s, resolved_at = now(), "
                "resolution = coalesce(%(note)s, 'resolved by ' || %(by)s), "
                "snoozed_until = NULL",
}


async def act(conn: psycopg.AsyncConnection, alert_id: str, kind: str, by: str,
              note: str | None, until: datetime | None = None) -> dict[str, Any] | None:
    """A person's action on an unresolved alert, logged, in the caller's transaction; the alert
    as it now stands, or None if it is unknown or already resolved."""
    await lock_log(conn)
    cur = await conn.execute(
        f"WITH done AS (UPDATE alerts a SET {ACTIONS[kind]}, "
        "note = coalesce(%(note)s, a.note), updated_at = now() "
        "WHERE a.alert_id = %(id)s AND a.status <> 'resolved' RETURNING a.*) "
        f"INSERT INTO alert_log (alert_id, customer_id, kind, alert) "
        f"SELECT a.alert_id, a.customer_id, %(kind)s, {DOCUMENT} FROM done a RETURNING alert",
        {"by": by, "note": note, "until": until, "id": alert_id, "kind": kind})
    found = await cur.fetchone()
    if found is not None:
        await notify(conn)
    return found[0] if found else None


async def wake(conn: psycopg.AsyncConnection) -> int:
    """Snoozed alerts whose time has come are active again, and logged; how many."""
    cur = await conn.execute(
        "WITH done AS (UPDATE alerts a SET status = CASE WHEN a.acknowledged_at IS NULL THEN 'open' "
        "ELSE 'acknowledged' END, snoozed_until = NULL, updated_at = now() "
        "WHERE a.status = 'snoozed' AND a.snoozed_until <= now() RETURNING a.*) "
        f"INSERT INTO alert_log (alert_id, customer_id, kind, alert) "
        f"SELECT a.alert_id, a.customer_id, 'woke', {DOCUMENT} FROM done a")
    return cur.rowcount


async def notify(conn: psycopg.AsyncConnection) -> None:
    await conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))


async def get(conn: psycopg.AsyncConnection, alert_id: str) -> dict[str, Any] | None:
    cur = await conn.execute(f"SELECT {DOCUMENT} FROM alerts a WHERE a.alert_id = %s", (alert_id,))
    found = await cur.fetchone()
    return found[0] if found else None


class Entry(NamedTuple):
    seq: int
    kind: str
    alert: dict[str, Any] | None
    recorded_at: datetime


async def log_after(conn: psycopg.AsyncConnection, after: int, limit: int = 500) -> list[Entry]:
    cur = await conn.execute("SELECT seq, kind, alert, recorded_at FROM alert_log WHERE seq > %s "
                             "ORDER BY seq LIMIT %s", (after, limit))
    return [Entry(*r) for r in await cur.fetchall()]


async def log_bounds(conn: psycopg.AsyncConnection) -> tuple[int, int]:
    """The first and last positions the log holds ((0, 0) when empty: the next is 1 or later)."""
    cur = await conn.execute("SELECT coalesce(min(seq), 0), coalesce(max(seq), 0) FROM alert_log")
    return tuple(await cur.fetchone())  # type: ignore[return-value]


async def prune_log(conn: psycopg.AsyncConnection, retention_hours: float) -> int:
    """Published entries older than the retention (the newest entry is always kept: it marks
    the position)."""
    cur = await conn.execute(
        "DELETE FROM alert_log WHERE recorded_at < now() - make_interval(secs => %s) "
        "AND published_at IS NOT NULL AND seq < (SELECT max(seq) FROM alert_log)",
        (retention_hours * 3600,))
    return cur.rowcount


# -- a replay ------------------------------------------------------------------------------------

async def unseen(conn: psycopg.AsyncConnection, shadow: str) -> list[str]:
    """The alerts a rebuild in schema ``shadow`` found that the live tables do not hold."""
    cur = await conn.execute(sql.SQL(
        "SELECT s.alert_id::text FROM {}.alerts s WHERE NOT EXISTS (SELECT FROM public.alerts l "
        "WHERE l.alert_id = s.alert_id) ORDER BY s.opened_at, s.alert_id").format(
            sql.Identifier(shadow)))
    return [r[0] for r in await cur.fetchall()]


async def carry_over(conn: psycopg.AsyncConnection, shadow: str) -> None:
    """What people did to the live alerts (not in the log) onto the rebuilt ones in ``shadow``:
    acknowledgements, notes, snoozes of alerts still open, and resolutions by a person of alerts
    the rebuild has open."""
    await conn.execute(sql.SQL(
        "UPDATE {}.alerts s SET acknowledged_by = l.acknowledged_by, "
        "acknowledged_at = l.acknowledged_at, note = coalesce(l.note, s.note), "
        "snoozed_until = CASE WHEN s.status <> 'resolved' THEN l.snoozed_until END, "
        "status = CASE WHEN s.status = 'resolved' THEN s.status "
        "  WHEN l.status = 'resolved' AND l.resolved_by <> %(auto)s THEN 'resolved' "
        "  WHEN l.status IN ('acknowledged', 'snoozed') THEN l.status ELSE s.status END, "
        "resolved_by = CASE WHEN s.status <> 'resolved' AND l.resolved_by <> %(auto)s "
        "  THEN l.resolved_by ELSE s.resolved_by END, "
        "resolved_at = CASE WHEN s.status <> 'resolved' AND l.resolved_by <> %(auto)s "
        "  THEN l.resolved_at ELSE s.resolved_at END, "
        "resolution = CASE WHEN s.status <> 'resolved' AND l.resolved_by <> %(auto)s "
        "  THEN l.resolution ELSE s.resolution END "
        "FROM public.alerts l WHERE l.alert_id = s.alert_id AND (l.acknowledged_by IS NOT NULL "
        "OR l.snoozed_until IS NOT NULL OR l.note IS NOT NULL OR l.resolved_by <> %(auto)s)"
    ).format(sql.Identifier(shadow)), {"auto": AUTO})


async def reload_streams(conn: psycopg.AsyncConnection) -> None:
    """The live alert streams start again from the alerts now in place (after a replay's swap)."""
    await conn.execute("INSERT INTO public.alert_log (kind, alert, published_at) "
                       "VALUES ('reload', NULL, now())")
    await conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
