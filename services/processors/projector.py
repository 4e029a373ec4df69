"""Projection stage: touchpoints -> profile and contact history, in one transaction per batch."""

from __future__ import annotations

from decimal import InvalidOperation

import orjson
import psycopg
from aiokafka.structs import ConsumerRecord

from projections.contacts import fold as contacts
from projections.contacts import store as contacts_store
from projections.profile import fold as profile
from projections.profile import store as profile_store
from services import store
from services.config import Settings
from services.kafka import dead_letter, producer, send_all
from services.metrics import DUPLICATES

NOT_TOUCHPOINTS = {"customers_linked"}  # identity events: read models follow the graph instead


class ProjectionStage:
    name = "projections"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.topic = settings.log_topic
        self._producer = None

    async def start(self) -> None:
        self._producer = producer(self.settings, "touchstream-projections")
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def handle(self, conn: psycopg.AsyncConnection, records: list[ConsumerRecord]) -> None:
        folded, dead = {}, []
        for r in records:
            try:
                event = orjson.loads(r.value)
                if event["type"] in NOT_TOUCHPOINTS:
                    continue
                folded.setdefault(event["event_id"], (contacts.row(event, r.partition, r.offset),
                                                      profile.of_event(event)))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, InvalidOperation,
                    AttributeError) as exc:
                dead.append((r, [{"field": None, "reason": f"unreadable record: {exc!r}"}]))
        new = await store.first_seen(conn, self.name, list(folded)) if folded else set()
        DUPLICATES.labels(self.name).inc(len(records) - len(dead) - len(new))
        rows, deltas = [], {}
        for event_id, (row, delta) in folded.items():
            if event_id in new:
                rows.append(row)
                cid = row.customer_id
                deltas[cid] = profile.merge(deltas[cid], delta) if cid in deltas else delta
        await contacts_store.write(conn, rows)
        stored = await profile_store.load(conn, list(deltas))
        await profile_store.save(conn, [profile.merge(stored[c], d) if c in stored else d
                                        for c, d in deltas.items()])
        await send_all(self._producer, [dead_letter(self._producer, self.settings, self.name, r, e)
                                        for r, e in dead])
