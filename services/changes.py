"""The change feed: what each committed batch changed, for live readers, without polling.

The projection stage adds one row per committed batch to ``ts_changes`` inside the batch's own
transaction (an outbox), so a change is visible exactly when the projection's rows are, and
never for a batch that rolled back. It takes the table's lock just before it commits, so the
sequence numbers of the rows follow the order of the commits (a reader that has seen ``seq`` has
seen everything before it), and notifies channel ``ts_changes``. A reader LISTENs first, then
reads the rows after the last sequence number it saw, and again on each notification: nothing
committed is missed, and a reader that reconnects resumes from its sequence number. Rows are
kept for ``CHANGES_RETENTION_HOURS``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import NamedTuple

import psycopg
from psycopg.types.json import Jsonb

from projections.sql import pack

CHANNEL = "ts_changes"
DDL = """
CREATE TABLE IF NOT EXISTS ts_changes (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- in commit order
    committed_at timestamptz NOT NULL DEFAULT now(),
    events       jsonb  NOT NULL,   -- per projection, how many new events the batch applied
    customer_ids uuid[] NOT NULL    -- whose rows the batch changed
);
CREATE INDEX IF NOT EXISTS ts_changes_committed_at ON ts_changes (committed_at);
"""


class Change(NamedTuple):
    seq: int
    committed_at: datetime
    events: dict[str, int]
    customer_ids: list[str]


async def record(conn: psycopg.AsyncConnection, events: dict[str, int],
                 customer_ids: list[str]) -> None:
    """In the caller's transaction, as its last write: what one batch changed. (One row per
    batch: a row per projection cost twice as much for the same news, BENCHMARKS.md.)"""
    if not events:
        return
    await conn.execute("LOCK TABLE ts_changes IN EXCLUSIVE MODE")  # until commit: seq = commit order
    await conn.execute(
        "INSERT INTO ts_changes (events, customer_ids) "
        "SELECT %s, string_to_array(%s, chr(31))::uuid[]", (Jsonb(events), pack(customer_ids)))
    await conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))


async def prune(conn: psycopg.AsyncConnection, retention_hours: float) -> None:
    await conn.execute("DELETE FROM ts_changes WHERE committed_at < now() - make_interval(secs => %s)",
                       (retention_hours * 3600,))


async def read_after(conn: psycopg.AsyncConnection, after: int, limit: int = 500,
                     projection: str | None = None) -> list[Change]:
    """Changes after ``after`` in order (of ``projection`` only, if given)."""
    cur = await conn.execute(
        "SELECT seq, committed_at, events, customer_ids::text[] FROM ts_changes "
        "WHERE seq > %s AND (%s::text IS NULL OR events ? %s) ORDER BY seq LIMIT %s",
        (after, projection, projection, limit))
    return [Change(*row) for row in await cur.fetchall()]


async def last_seq(conn: psycopg.AsyncConnection) -> int:
    cur = await conn.execute("SELECT coalesce(max(seq), 0) FROM ts_changes")
    return (await cur.fetchone())[0]


async def follow(url: str, after: int = 0, projection: str | None = None,
                 limit: int = 500) -> AsyncIterator[Change]:
    """Every change after sequence number ``after``, in order, then each new one as it commits.
    (On a lost connection it raises: call again with the last ``seq`` seen.)"""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(f"LISTEN {CHANNEL}")
        while True:
            batch = await read_after(conn, after, limit, projection)
            for change in batch:
                after = change.seq
                yield change
            if len(batch) < limit:
                async for _ in conn.notifies(stop_after=1):
                    pass
