"""Unified profile read model: table ``profiles``, one row per customer id of the identity graph.

The API merges the rows of customers the identity graph linked (``fold.merge``), so a link
never rewrites stored rows and can later be undone.
"""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from projections.profile.fold import Profile

DDL = """
CREATE TABLE IF NOT EXISTS profiles (
    customer_id     uuid PRIMARY KEY,
    emails          text[]  NOT NULL,
    phones          text[]  NOT NULL,
    external_ids    jsonb   NOT NULL,    -- {"crm": ["C1"], ...}
    attributes      jsonb   NOT NULL,    -- {"name": {"value": "Ann", "occurred_at": .., "event_id": ..}}
    first_seen      timestamptz,
    last_seen       timestamptz,
    events_count    bigint  NOT NULL,
    by_channel      jsonb   NOT NULL,    -- {"web": 3, ...}
    by_type         jsonb   NOT NULL,    -- {"order": 2, ...}
    orders_count    bigint  NOT NULL,
    spend           jsonb   NOT NULL,    -- {"EUR": "120.50"}: total per currency, net of refunds
    complaints      jsonb   NOT NULL,    -- {"K-1": {"status": "open", "occurred_at": ..., "event_id": ...}}
    open_complaints int     NOT NULL,
    last_contact    jsonb,               -- {"event_id", "type", "channel", "occurred_at"}
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS profiles_emails ON profiles USING gin (emails);
CREATE INDEX IF NOT EXISTS profiles_phones ON profiles USING gin (phones);
"""

_COLUMNS = ("customer_id, emails, phones, external_ids, attributes, first_seen, last_seen, "
            "events_count, by_channel, by_type, orders_count, spend, complaints, open_complaints, "
            "last_contact")
_UPDATE = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS.split(", ")[1:])


def to_row(p: Profile) -> tuple:
    ext: dict[str, list[str]] = {}
    for system, value in sorted(p.external_ids):
        ext.setdefault(system, []).append(value)
    lc = p.last_contact[1] if p.last_contact else None
    return (
        p.customer_id, sorted(p.emails), sorted(p.phones), Jsonb(ext),
        Jsonb({k: {"value": v, "occurred_at": s[0], "event_id": s[1]}
               for k, (s, v) in sorted(p.attributes.items())}),
        p.first_seen, p.last_seen, p.events_count, Jsonb(p.by_channel), Jsonb(p.by_type),
        p.orders_count, Jsonb({c: str(a) for c, a in sorted(p.spend.items())}),
        Jsonb({k: {"status": st, "occurred_at": s[0], "event_id": s[1]}
               for k, (s, st) in sorted(p.complaints.items())}),
        len(p.open_complaints), Jsonb(lc) if lc else None,
    )


def _iso(value: Any) -> str | None:
    """Timestamps read back in the log's canonical form (UTC, microseconds, 'Z')."""
    if value is None or isinstance(value, str):
        return value
    # psycopg returns timestamptz in the session's TimeZone, which need not be UTC.
    value = value.astimezone(UTC) if value.tzinfo is not None else value
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_row(r: dict[str, Any]) -> Profile:
    lc = r["last_contact"]
    return Profile(
        customer_id=str(r["customer_id"]),
        emails=frozenset(r["emails"]),
        phones=frozenset(r["phones"]),
        external_ids=frozenset((s, v) for s, vs in r["external_ids"].items() for v in vs),
        attributes={k: ((a["occurred_at"], a["event_id"]), a["value"])
                    for k, a in r["attributes"].items()},
        first_seen=_iso(r["first_seen"]),
        last_seen=_iso(r["last_seen"]),
        events_count=r["events_count"],
        by_channel=r["by_channel"],
        by_type=r["by_type"],
        orders_count=r["orders_count"],
        spend={c: Decimal(a) for c, a in r["spend"].items()},
        complaints={k: ((c["occurred_at"], c["event_id"]), c["status"])
                    for k, c in r["complaints"].items()},
        last_contact=((lc["occurred_at"], lc["event_id"]), lc) if lc else None,
    )


async def load(conn: psycopg.AsyncConnection, customer_ids: list[str]) -> dict[str, Profile]:
    from psycopg.rows import dict_row

    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM profiles WHERE customer_id = ANY(%s::uuid[])",
                          (customer_ids,))
        return {str(r["customer_id"]): from_row(r) for r in await cur.fetchall()}


async def save(conn: psycopg.AsyncConnection, profiles: list[Profile]) -> None:
    """Upsert whole rows: COPY into a temporary table, then one set-based INSERT ... ON CONFLICT."""
    if not profiles:
        return
    await conn.execute("CREATE TEMP TABLE IF NOT EXISTS profiles_in "
                       "(LIKE profiles INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
    async with conn.cursor() as cur:
        async with cur.copy(f"COPY profiles_in ({_COLUMNS}) FROM STDIN") as copy:
            for p in profiles:
                await copy.write_row(to_row(p))
        await cur.execute(f"INSERT INTO profiles ({_COLUMNS}) SELECT {_COLUMNS} FROM profiles_in "
                          f"ON CONFLICT (customer_id) DO UPDATE SET {_UPDATE}, updated_at = now()")
