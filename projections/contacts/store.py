"""Contact history read model: table ``contacts``, newest first, cursor pagination."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from projections.contacts.fold import ContactRow
from projections.sql import copy_field as _text

DDL = """
CREATE TABLE IF NOT EXISTS contacts (
    customer_id      uuid        NOT NULL,
    occurred_at      timestamptz NOT NULL,
    event_id         uuid        NOT NULL,
    type             text        NOT NULL,
    channel          text        NOT NULL,
    source           text        NOT NULL,
    summary          text        NOT NULL,
    source_partition int         NOT NULL,   -- position in the topic `touchpoints`
    source_offset    bigint      NOT NULL,
    PRIMARY KEY (customer_id, occurred_at, event_id)
);
"""

_COLUMNS = ", ".join(ContactRow._fields)


def copy_line(r: ContactRow) -> str:
    """A row in COPY's text format (psycopg's per-value adaptation cost more than the rest of it)."""
    return (f"{_text(r.customer_id)}\t{_text(r.occurred_at)}\t{_text(r.event_id)}\t{_text(r.type)}\t"
            f"{_text(r.channel)}\t{_text(r.source)}\t{_text(r.summary)}\t{r.source_partition:d}\t"
            f"{r.source_offset:d}\n")


def copy_text(rows: list[ContactRow]) -> str:
    return "".join(copy_line(r) for r in rows)


async def write_lines(conn: psycopg.AsyncConnection, lines: list[str]) -> None:
    """Rows already in COPY's text format (``copy_line``)."""
    if not lines:
        return
    async with conn.cursor() as cur, cur.copy(f"COPY contacts ({_COLUMNS}) FROM STDIN") as copy:
        await copy.write("".join(lines))


def encode_cursor(occurred_at: datetime, event_id: Any) -> str:
    return base64.urlsafe_b64encode(f"{occurred_at.isoformat()}|{event_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ValueError for a cursor we did not issue."""
    try:
        at, event_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(at), event_id
    except Exception as exc:  # noqa: BLE001 - any malformed cursor is the client's error
        raise ValueError("cursor is not one this API issued") from exc


async def timeline(conn: psycopg.AsyncConnection, customer_ids: list[str], *, limit: int,
                   cursor: str | None = None, types: list[str] | None = None,
                   channels: list[str] | None = None, since: datetime | None = None,
                   until: datetime | None = None) -> tuple[list[dict], str | None]:
    where, args = ["customer_id = ANY(%s)"], [customer_ids]
    if cursor:
        at, event_id = decode_cursor(cursor)
        where.append("(occurred_at, event_id) < (%s, %s::uuid)")
        args += [at, event_id]
    for column, values in (("type", types), ("channel", channels)):
        if values:
            where.append(f"{column} = ANY(%s)")
            args.append(values)
    if since:
        where.append("occurred_at >= %s")
        args.append(since)
    if until:
        where.append("occurred_at < %s")
        args.append(until)
    sql = (f"SELECT {_COLUMNS} FROM contacts WHERE {' AND '.join(where)} "
           "ORDER BY occurred_at DESC, event_id DESC LIMIT %s")
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, [*args, limit + 1])
        rows = await cur.fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]["occurred_at"], rows[-1]["event_id"]) if more else None
    return rows, next_cursor
