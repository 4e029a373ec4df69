"""Projection stage: touchpoints -> profile and contact history, in one transaction per batch."""

from __future__ import annotations

from decimal import InvalidOperation
from typing import Any

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

    def prepare(self, records: list[ConsumerRecord]) -> list[Any]:
        """Per record: (event, contact row), None for an identity event, or the decode error."""
        out: list[Any] = []
        for r in records:
            try:
                event = orjson.loads(r.value)
                out.append(None if event["type"] in NOT_TOUCHPOINTS
                           else (event, contacts.row(event, r.partition, r.offset)))
            except (orjson.JSONDecodeError, *FOLD_ERRORS) as exc:
                out.append(exc)
        return out

    async def handle(self, conn: psycopg.AsyncConnection, items: list[tuple[ConsumerRecord, Any]]) -> None:
        events: dict[str, tuple[dict, contacts.ContactRow, ConsumerRecord]] = {}
        dead = []
        for r, item in items:
            if isinstance(item, BaseException):
                dead.append((r, [{"field": None, "reason": f"unreadable record: {item!r}"}]))
            elif item is not None:
                events.setdefault(item[0]["event_id"], (*item, r))
        new = await store.first_seen(conn, self.name, list(events)) if events else set()
        DUPLICATES.labels(self.name).inc(len(events) - len(new))
        fresh = [events[event_id] for event_id in events if event_id in new]
        try:
            deltas = profile.fold_batch([event for event, _, _ in fresh])
        except FOLD_ERRORS:  # find the culprits one by one; the rest of the batch goes on
            fresh = [(e, row, r) for e, row, r in fresh if _foldable(e, r, dead)]
            deltas = profile.fold_batch([event for event, _, _ in fresh])
        await contacts_store.write(conn, [row for _, row, _ in fresh])
        stored = await profile_store.load(conn, list(deltas))
        await profile_store.save(conn, [profile.merge(stored[c], d) if c in stored else d
                                        for c, d in deltas.items()])
        await send_all(self._producer, [dead_letter(self._producer, self.settings, self.name, r, e)
                                        for r, e in dead])


def _foldable(event: dict, record: ConsumerRecord, dead: list) -> bool:
    try:
        profile.of_event(event)
        return True
    except FOLD_ERRORS as exc:
        dead.append((record, [{"field": None, "reason": f"cannot fold: {exc!r}"}]))
        return False
