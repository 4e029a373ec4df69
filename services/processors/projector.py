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
FOLD_ERRORS = (KeyError, TypeError, ValueError, InvalidOperation, AttributeError)


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
        events, dead = {}, []
        for r in records:
            try:
                event = orjson.loads(r.value)
                if event["type"] in NOT_TOUCHPOINTS:
                    continue
                events.setdefault(event["event_id"], (event, contacts.row(event, r.partition, r.offset)))
            except (orjson.JSONDecodeError, *FOLD_ERRORS) as exc:
                dead.append((r, [{"field": None, "reason": f"unreadable record: {exc!r}"}]))
        new = await store.first_seen(conn, self.name, list(events)) if events else set()
        DUPLICATES.labels(self.name).inc(len(events) - len(new))
        fresh = [events[event_id] for event_id in events if event_id in new]
        try:
            deltas = profile.fold_batch([event for event, _ in fresh])
        except FOLD_ERRORS:  # find the culprits one by one; the rest of the batch goes on
            fresh = [(e, row) for e, row in fresh if self._foldable(e, row, records, dead)]
            deltas = profile.fold_batch([event for event, _ in fresh])
        await contacts_store.write(conn, [row for _, row in fresh])
        stored = await profile_store.load(conn, list(deltas))
        await profile_store.save(conn, [profile.merge(stored[c], d) if c in stored else d
                                        for c, d in deltas.items()])
        await send_all(self._producer, [dead_letter(self._producer, self.settings, self.name, r, e)
                                        for r, e in dead])


    @staticmethod
    def _foldable(event: dict, row: contacts.ContactRow, records: list[ConsumerRecord],
                  dead: list) -> bool:
        try:
            profile.of_event(event)
            return True
        except FOLD_ERRORS as exc:
            record = next(r for r in records
                          if r.partition == row.source_partition and r.offset == row.source_offset)
            dead.append((record, [{"field": None, "reason": f"cannot fold: {exc!r}"}]))
            return False
