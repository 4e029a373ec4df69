"""Schema migration and the runtime's own tables: tracking positions and processed event ids."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import set_json_dumps, set_json_loads

from projections import REGISTRY, Projection
from projections.sql import UNPACK, pack

# orjson for every json/jsonb value: the stdlib encoder is several times slower (BENCHMARKS.md).
set_json_dumps(orjson.dumps)
set_json_loads(orjson.loads)

RUNTIME_DDL = """
CREATE TABLE IF NOT EXISTS ts_tracking (
    processor  text    NOT NULL,
    topic      text    NOT NULL,
    partition  int     NOT NULL,
    "offset"   bigint  NOT NULL,           -- last offset whose effects are committed; -1: none
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (processor, topic, partition)
);
-- raised when the processor's tables were replaced (a replay's swap): workers drop their caches
ALTER TABLE ts_tracking ADD COLUMN IF NOT EXISTS epoch int NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS ts_workers (
    processor    text NOT NULL,
    worker_id    text NOT NULL,
    partitions   int[] NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    PRIMARY KEY (processor, worker_id)
);
CREATE TABLE IF NOT EXISTS ts_processed_events (
    processor text NOT NULL,
    event_id  uuid NOT NULL,
    PRIMARY KEY (processor, event_id)
);
"""

_MIGRATION_LOCK = 7_201_501


def create_tables(conn: psycopg.Connection, schema: str = "public",
                  registry: Sequence[type[Projection]] = REGISTRY) -> None:
    """The tables of the registered projections, in ``schema`` (made if missing)."""
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    conn.execute("SELECT set_config('search_path', %s, false)", (f'"{schema}", public',))
    try:
        for projection in registry:
            conn.execute(projection.ddl)
    finally:
        conn.execute("RESET search_path")


def migrate(url: str, schema: str = "public") -> None:
    """Create every table once; safe when several processes start at the same time."""
    from projections.identity.store import DDL as IDENTITY
    from projections.value.store import DDL as VALUE_MODELS
    from services import archive
    from services.changes import DDL as CHANGES
    from services.processors.dlq import DDL as DEAD_LETTERS
    from services.replay import DDL as REPLAYS

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            for ddl in (RUNTIME_DDL, IDENTITY, DEAD_LETTERS, CHANGES, VALUE_MODELS, REPLAYS):
                conn.execute(ddl)
            create_tables(conn, schema)
            archive.setup(url)  # the library's tables, made by the library
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))


def forget_positions(url: str) -> None:
    """Drop every tracked position (the log they referred to is gone)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM ts_tracking")
        conn.execute("DELETE FROM ts_workers")


async def lock_positions(conn: psycopg.AsyncConnection, processor: str, topic: str,
                         partitions: list[int]) -> tuple[dict[int, int], int]:
    """Lock the tracking rows of a batch's partitions; return their committed offsets and their
    epoch (raised when a replay replaced the processor's tables).

    The lock serialises two workers that briefly own the same partition during a rebalance;
    the offsets let the caller skip records whose effects are already committed.
    """
    await conn.execute(
        'INSERT INTO ts_tracking (processor, topic, partition, "offset") '
        "SELECT %s, %s, p, -1 FROM unnest(%s::int[]) AS p ON CONFLICT DO NOTHING",
        (processor, topic, partitions))
    cur = await conn.execute(
        'SELECT partition, "offset", epoch FROM ts_tracking WHERE processor = %s AND topic = %s '
        "AND partition = ANY(%s) ORDER BY partition FOR UPDATE", (processor, topic, partitions))
    found = await cur.fetchall()
    return {p: o for p, o, _ in found}, max((e for _, _, e in found), default=0)


class PositionConflict(RuntimeError):
    """A commit would have moved a tracked position backwards, or not at all."""


async def save_positions(conn: psycopg.AsyncConnection, processor: str, topic: str,
                         offsets: dict[int, int]) -> None:
    """Move the tracked positions of ``offsets``' partitions forward to them; raise
    ``PositionConflict`` (the caller's transaction must roll back) if any would not move forward."""
    cur = await conn.execute(
        'UPDATE ts_tracking t SET "offset" = v.o, updated_at = now() '
        "FROM unnest(%s::int[], %s::bigint[]) AS v(p, o) "
        'WHERE t.processor = %s AND t.topic = %s AND t.partition = v.p AND t."offset" < v.o',
        (list(offsets), list(offsets.values()), processor, topic))
    if cur.rowcount != len(offsets):
        raise PositionConflict(f"{processor}: positions {offsets} of {topic} would not move forward")


async def read_positions(conn: psycopg.AsyncConnection, processor: str, topic: str) -> dict[int, int]:
    cur = await conn.execute(
        'SELECT partition, "offset" FROM ts_tracking WHERE processor = %s AND topic = %s',
        (processor, topic))
    return dict(await cur.fetchall())


async def first_seen(conn: psycopg.AsyncConnection, processor: str, event_ids: list[str]) -> set[str]:
    """Record event ids as processed; return those not processed before (de-duplication)."""
    cur = await conn.execute(
        "INSERT INTO ts_processed_events (processor, event_id) "
        f"SELECT %s, e::uuid FROM {UNPACK} AS e ON CONFLICT DO NOTHING RETURNING event_id::text",
        (processor, pack(event_ids)))
    return {r[0] for r in await cur.fetchall()}


async def heartbeat(conn: psycopg.AsyncConnection, processor: str, worker_id: str,
                    partitions: list[int] | None) -> None:
    """Record which partitions a worker holds; ``None`` removes the worker (clean stop)."""
    if partitions is None:
        await conn.execute("DELETE FROM ts_workers WHERE processor = %s AND worker_id = %s",
                           (processor, worker_id))
        return
    await conn.execute(
        "INSERT INTO ts_workers VALUES (%s, %s, %s, now()) ON CONFLICT (processor, worker_id) "
        "DO UPDATE SET partitions = excluded.partitions, heartbeat_at = now()",
        (processor, worker_id, partitions))


async def assigned_partitions(conn: psycopg.AsyncConnection, stale_s: float = 15.0) -> dict[str, set[int]]:
    """Partitions held per processor by workers that reported recently."""
    cur = await conn.execute(
        "SELECT processor, partitions FROM ts_workers "
        "WHERE heartbeat_at > now() - make_interval(secs => %s)", (stale_s,))
    out: dict[str, set[int]] = {}
    for processor, parts in await cur.fetchall():
        out.setdefault(processor, set()).update(parts)
    return out
