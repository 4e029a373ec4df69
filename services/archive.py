"""The archive: every record of topic ``touchpoints`` in its customer's stream, in the
``eventsourcing`` library's PostgreSQL event store (table ``archive_events``).

The library makes the table (``setup``, once, from the schema migration) and reads it: a
customer's stream (``stream``) and the whole archive in the order it was written
(``notifications``: the library's notification log). The archive stage writes through the
runtime's own transaction, so that an event and the stage's tracked position commit together:
it takes the library's table lock, as the library's own writer does, so that notification ids
are visible in order and a reader of the notification log never skips one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence
from uuid import UUID

import orjson
import psycopg
from eventsourcing.persistence import Notification
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg.conninfo import conninfo_to_dict

from events.archive import Recorded, from_stored
from projections.sql import UNPACK, pack
from services.config import Settings
from services.kafka import producer as new_producer
from services.kafka import send_keyed, topic_ends

TABLE = "archive_events"
STAGE = "archive"  # the archive stage's name, as it tracks its positions


@contextlib.contextmanager
def recorder(url: str) -> Iterator[PostgresApplicationRecorder]:
    """The library's recorder of the archive (its own connection pool, closed on exit)."""
    c = conninfo_to_dict(url)
    datastore = PostgresDatastore(
        dbname=str(c.get("dbname", "postgres")), host=str(c.get("host", "127.0.0.1")),
        port=str(c.get("port", 5432)), user=str(c.get("user", "postgres")),
        password=str(c.get("password", "")), schema="public",
        enable_db_functions=False)  # a tailing reader skipped events with them on (DESIGN.md)
    try:
        yield PostgresApplicationRecorder(datastore, events_table_name=TABLE)
    finally:
        datastore.close()


def setup(url: str) -> None:
    """Create the archive's table and indexes (the schema migration calls this, once)."""
    with recorder(url) as r:
        r.create_table()


async def append(conn: psycopg.AsyncConnection, stored: Sequence[tuple[str, str, bytes]],
                 last: dict[str, int]) -> dict[str, int]:
    """Append (customer, class topic, state) events to their streams, in order, inside the
    caller's transaction. ``last``: the streams' last versions known to the caller (others are
    read). Returns the streams' new last versions."""
    await conn.execute(f"LOCK TABLE {TABLE} IN EXCLUSIVE MODE")
    unknown = list({c for c, _, _ in stored if c not in last})
    versions = last
    if unknown:
        cur = await conn.execute(  # one index entry per stream: its last, not all its versions
            f"SELECT s.c::text, e.v FROM (SELECT DISTINCT c::uuid AS c FROM {UNPACK} AS c) s "
            f"CROSS JOIN LATERAL (SELECT originator_version AS v FROM {TABLE} "
            f"WHERE originator_id = s.c ORDER BY originator_version DESC LIMIT 1) e",
            (pack(unknown),))
        versions.update({c: 0 for c in unknown})
        versions.update(dict(await cur.fetchall()))
    after: dict[str, int] = {}
    lines = []
    for customer, topic, state in stored:  # COPY text: bytea as \\x and hex
        v = after.get(customer, versions[customer]) + 1
        after[customer] = v
        lines.append(f"{customer}\t{v}\t{topic}\t\\\\x{state.hex()}\n")
    async with conn.cursor().copy(
            f"COPY {TABLE} (originator_id, originator_version, topic, state) FROM STDIN") as copy:
        await copy.write("".join(lines).encode())
    return after


def stream(url: str, customer_id: UUID | str) -> list[Recorded]:
    """A customer's archived events, in order (upcast to the current classes)."""
    with recorder(url) as r:
        return [from_stored(e) for e in r.select_events(UUID(str(customer_id)))]


def notifications(url: str, start: int = 1, limit: int = 10_000) -> Sequence[Notification]:
    """Archived events in the order they were written, from notification id ``start``."""
    with recorder(url) as r:
        return r.select_notifications(start, limit)


def behind(settings: Settings) -> bool:
    """Whether the log of record lacks what the archive holds: the archive stage's tracked
    positions lie beyond the ends of topic ``touchpoints`` (the broker lost records), or the
    topic is empty while the archive is not (a new, empty broker)."""
    ends = asyncio.run(topic_ends(settings, settings.log_topic))
    with psycopg.connect(settings.database_url) as conn:
        tracked: dict[int, int] = dict(conn.execute(
            'SELECT partition, "offset" FROM ts_tracking WHERE processor = %s AND topic = %s',
            (STAGE, settings.log_topic)).fetchall())
        archived = conn.execute(f"SELECT EXISTS (SELECT FROM {TABLE})").fetchone()
    if any(o > ends.get(p, -1) for p, o in tracked.items()):
        return True
    return bool(archived and archived[0]) and all(e < 0 for e in ends.values())


def drain(settings: Settings, timeout_s: float) -> bool:
    """Wait until the archive holds every record the broker has: the identity stage has
    committed the ends of ``touchpoints.raw`` and the archive stage the ends of ``touchpoints``
    (read after the former). Whether it did within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for stage, topic in (("identity", settings.raw_topic), (STAGE, settings.log_topic)):
            ends = asyncio.run(topic_ends(settings, topic))
            while True:
                done = dict(conn.execute(
                    'SELECT partition, "offset" FROM ts_tracking WHERE processor = %s '
                    "AND topic = %s", (stage, topic)).fetchall())
                if all(done.get(p, -1) >= e for p, e in ends.items()):
                    break
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.1)
    return True


def refill(settings: Settings, chunk: int = 10_000) -> int:
    """Write every archived record to topic ``touchpoints`` again, in the order it was archived
    (per partition, the log's original order: a customer's records keep their key, so their
    partition), upcast to the current event versions; the number written."""
    return asyncio.run(_refill(settings, chunk))


async def _refill(settings: Settings, chunk: int) -> int:
    producer = new_producer(settings, "touchstream-refill", linger_ms=20)
    await producer.start()
    written, start = 0, 1
    try:
        with recorder(settings.database_url) as r:
            while True:
                found = await asyncio.to_thread(r.select_notifications, start, chunk)
                if not found:
                    return written
                records = []
                for n in found:
                    event = from_stored(n)
                    records.append((str(n.originator_id).encode(), orjson.dumps(event.event)))
                await send_keyed(producer, settings.log_topic, records)
                written += len(records)
                start = found[-1].id + 1
    finally:
        await producer.stop()
