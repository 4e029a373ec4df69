"""Projection stage: touchpoints -> profile and contact history, in one transaction per batch."""

from __future__ import annotations

from collections.abc import Callable
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
        events: dict[str, tuple[dict, contacts.ContactRow]] = {}
        records: dict[str, ConsumerRecord] = {}
        dead = []
        for r, item in items:
            if isinstance(item, BaseException):
                dead.append((r, [{"field": None, "reason": f"unreadable record: {item!r}"}]))
            elif item is not None and item[0]["event_id"] not in events:
                events[item[0]["event_id"]], records[item[0]["event_id"]] = item, r

        def unfoldable(event_id: str, exc: Exception) -> None:
            dead.append((records[event_id], [{"field": None, "reason": f"cannot fold: {exc!r}"}]))

        await project(conn, self.name, events, unfoldable)
        await send_all(self._producer, [dead_letter(self._producer, self.settings, self.name, r, e)
                                        for r, e in dead])


async def project(conn: psycopg.AsyncConnection, processor: str,
                  events: dict[str, tuple[dict, contacts.ContactRow]],
                  unfoldable: Callable[[str, Exception], None] | None = None) -> None:
    """Write a batch of decoded touchpoints (event id -> (event, contact row)) to the profile and
    the contact history, skipping event ids already processed, in the caller's transaction.

    An event the fold cannot read is reported to ``unfoldable`` and left out (without one, the
    error propagates)."""
    new = await store.first_seen(conn, processor, list(events)) if events else set()
    DUPLICATES.labels(processor).inc(len(events) - len(new))
    fresh = {event_id: events[event_id] for event_id in events if event_id in new}
    try:
        deltas = profile.fold_batch([event for event, _ in fresh.values()])
    except FOLD_ERRORS:
        if unfoldable is None:
            raise
        fresh = {i: item for i, item in fresh.items() if _foldable(i, item[0], unfoldable)}
        deltas = profile.fold_batch([event for event, _ in fresh.values()])
    await contacts_store.write(conn, [row for _, row in fresh.values()])
    stored = await profile_store.load(conn, list(deltas))
    await profile_store.save(conn, [profile.merge(stored[c], d) if c in stored else d
                                    for c, d in deltas.items()])


def _foldable(event_id: str, event: dict, unfoldable: Callable[[str, Exception], None]) -> bool:
    try:
        profile.of_event(event)
        return True
    except FOLD_ERRORS as exc:
        unfoldable(event_id, exc)
        return False
