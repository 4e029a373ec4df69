"""What the alerts projection runs beside its batches, in a process beside each projection worker
(``projections.jobs``); a PostgreSQL advisory lock makes one worker at a time
do each job.

- **timer** (every ``alert_timer_every_s``): customers whose ``due_at`` has come (an inbound
  contact reaching its service level, a complaint open too long, a silence, a week's end for
  engagement, value re-deciding P(alive)) are weighed again at "now" with no new event; rows a
  batch holds or changed meanwhile are left to the batch. Snoozed alerts whose time has come
  become active again. The log is pruned after ``alert_log_retention_h``.
- **relay**: the alert log is published on topic ``alerts``, keyed by customer, each entry once:
  a relay taking over first reads the topic's tail and marks what it finds there as published.

"Now" is the clock the worker shares (``projections.clock.Clock``): event time while a
backlog is worked off, the wall clock once caught up. A replay runs ``tick`` by event time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime
from typing import Any

import psycopg

from projections.alerts import rules, save, step, store
from projections.clock import Clock
from projections.jobs import Background
from services.kafka import send_keyed, tail_ids
from services.metrics import ALERTS_PUBLISHED

LOCK_TIMER, LOCK_RELAY = 7_501_001, 7_501_002
CHUNK = 500
RELAY_CHUNK = 500
TAIL = 2 * RELAY_CHUNK
PRUNE_EVERY_S = 600.0
HEADER = "ts-alert-seq"


async def tick(conn: psycopg.AsyncConnection, r: rules.Rules, now: datetime,
               notify: bool = True) -> tuple[int, int]:
    """Weigh up to CHUNK customers whose timer is due at ``now``; (customers looked at, log
    entries made). The rows are read without locks and written, in a short transaction, only
    where still as read."""
    held = await store.due(conn, now, CHUNK)
    if not held:
        return 0, 0
    steps = dict(step(h, [], r, now.timestamp()) for h in held)
    async with conn.transaction():
        free = await store.claim(conn, {h.customer_id: h.updated_at for h in held})
        logged = await save(conn, [(c, s) for c, s in steps.items() if c in free])
        if logged and notify:
            await store.notify(conn)
    return len(held), logged


class AlertJobs(Background):
    name = "alerts"

    def __init__(self, settings: Any, producer: Any, clock: Clock | None = None):
        super().__init__(settings, producer, clock)
        self.rules = rules.Rules.from_settings(settings)
        self._pruned = 0.0

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop("timer", self._timer,
                                                      self.settings.alert_timer_every_s)),
                       asyncio.create_task(self._loop("relay", self._relay, 1.0))]

    # --- timer ---------------------------------------------------------------------------------

    async def _timer(self, conn: psycopg.AsyncConnection) -> None:
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_TIMER,))
        if not (await cur.fetchone())[0]:
            return
        try:
            while (await tick(conn, self.rules, self.clock.now()))[0] == CHUNK:
                pass
            async with conn.transaction():
                await store.lock_log(conn)
                if await store.wake(conn):
                    await store.notify(conn)
            if time.monotonic() - self._pruned > PRUNE_EVERY_S:
                self._pruned = time.monotonic()
                await store.prune_log(conn, self.settings.alert_log_retention_h)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_TIMER,))
        self._wake.set()

    # --- relay: alert_log -> topic alerts, once each --------------------------------------------

    async def _relay(self, conn: psycopg.AsyncConnection) -> None:
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_RELAY,))
        if not (await cur.fetchone())[0]:
            return  # another worker relays; this one stands by
        try:
            await self.recover(conn)
            while True:  # hold the lock: publish whenever woken, and every second
                while await self.publish(conn) == RELAY_CHUNK:
                    pass
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._wake.wait()
                self._wake.clear()
        finally:
            if not conn.closed and not conn.broken:
                with contextlib.suppress(Exception):
                    await conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_RELAY,))

    async def recover(self, conn: psycopg.AsyncConnection) -> int:
        """Mark as published what the topic's tail already holds; how many were unmarked."""
        seqs = await tail_ids(self.settings, self.settings.alerts_topic, TAIL, HEADER)
        if not seqs:
            return 0
        cur = await conn.execute("UPDATE alert_log SET published_at = now() "
                                 "WHERE seq = ANY(%s::bigint[]) AND published_at IS NULL",
                                 ([int(s) for s in seqs],))
        return cur.rowcount

    async def publish(self, conn: psycopg.AsyncConnection) -> int:
        """Publish the oldest unpublished log entries (keyed by customer, so that an alert's
        events stay in order on one partition), then mark them; how many."""
        cur = await conn.execute(
            f"SELECT seq, customer_id::text, {ENTRY}::text FROM alert_log "
            "WHERE published_at IS NULL ORDER BY seq LIMIT %s", (RELAY_CHUNK,))
        found = await cur.fetchall()
        if not found:
            return 0
        records = [((cid or "").encode(), doc.encode(), [(HEADER, str(seq).encode())])
                   for seq, cid, doc in found]
        await send_keyed(self.producer, self.settings.alerts_topic, records)
        await conn.execute("UPDATE alert_log SET published_at = now() WHERE seq = ANY(%s::bigint[])",
                           ([r[0] for r in found],))
        ALERTS_PUBLISHED.inc(len(found))
        return len(found)


# A log entry as published on ``alerts`` and sent on the live stream.
ENTRY = ("json_build_object('seq', seq, 'kind', kind, 'recorded_at', to_char(recorded_at AT TIME "
         "ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), 'alert', alert)")
