"""Projection stage: touchpoints -> every registered projection, in one transaction per batch.

Each record is read by every projection before its transaction (pure work, while the previous
batch commits); a record that any projection cannot read is refused and becomes a dead letter.
Event ids are de-duplicated once for the stage, so an event sent twice is projected once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import orjson
import psycopg
from aiokafka.structs import ConsumerRecord

from projections import REGISTRY, Projection
from services import changes, store
from services.config import Settings
from services.metrics import DUPLICATES
from services.processors.dlq import Refused

PRUNE_EVERY_S = 600
LINKS = "customers_linked"  # identity events: most read models follow the graph instead
NOT_TOUCHPOINTS = {LINKS}  # (a replay reads the graph as it ends: it needs no links)


class Reading(NamedTuple):
    """One touchpoint as every projection reads it (``None``: nothing for that projection)."""

    event_id: str
    customer_id: str
    readings: tuple[Any, ...]


def read(projections: Sequence[Projection], event: dict[str, Any], partition: int,
         offset: int) -> Reading:
    """Raises for an event some projection cannot read."""
    event_id, customer_id = event["event_id"], event["customer"]["customer_id"]
    if type(event_id) is not str or type(customer_id) is not str:
        raise TypeError("event_id and customer_id must be strings")
    if event["type"] == LINKS:
        return Reading(event_id, customer_id, tuple(p.read_link(event) for p in projections))
    return Reading(event_id, customer_id,
                   tuple(p.read(event, partition, offset) for p in projections))


class Applied(NamedTuple):
    """What a batch changed (for the change feed), and what to do once it has committed."""

    events: dict[str, int]  # per projection, new events applied
    customer_ids: list[str]
    committed: Callable[[], None]


async def project(conn: psycopg.AsyncConnection, processor: str,
                  projections: Sequence[Projection], batch: list[Reading]) -> Applied:
    """Write a batch of readings to every projection in the caller's transaction, skipping event
    ids already processed."""
    unique: dict[str, Reading] = {}
    for r in batch:
        unique.setdefault(r.event_id, r)  # the first of an id wins, as across batches
    new = await store.first_seen(conn, processor, list(unique)) if unique else set()
    DUPLICATES.labels(processor).inc(len(batch) - len(new))
    fresh = [r for event_id, r in unique.items() if event_id in new]
    callbacks: list[Callable[[], None]] = []
    applied: dict[str, int] = {}
    for i, projection in enumerate(projections):
        readings = [r.readings[i] for r in fresh if r.readings[i] is not None]
        if not readings:
            continue
        callback = await projection.write(conn, readings)
        if callback is not None:
            callbacks.append(callback)
        applied[projection.name] = len(readings)

    def committed() -> None:
        for callback in callbacks:
            callback()
    return Applied(applied, list(dict.fromkeys(r.customer_id for r in fresh)), committed)


class ProjectionStage:
    name = "projections"

    def __init__(self, settings: Settings, registry: Sequence[type[Projection]] = REGISTRY):
        self.settings = settings
        self.topic = settings.log_topic
        self.projections = [cls.build(settings) for cls in registry]
        self._pruned = time.monotonic()
        self._applied: Applied | None = None

    async def start(self, producer) -> None:
        """What the projections run beside their batches (dead letters are the runtime's)."""
        for p in self.projections:
            await p.start(producer)

    async def stop(self) -> None:
        for p in self.projections:
            await p.stop()

    def forget(self) -> None:
        for p in self.projections:
            p.forget()

    def prepare(self, records: list[ConsumerRecord]) -> list[Reading | Refused | None]:
        """Per record: its ``Reading``, None for an identity event no projection reads, or why it
        cannot be projected."""
        out: list[Reading | Refused | None] = []
        for r in records:
            try:
                event = orjson.loads(r.value)
                reading = read(self.projections, event, r.partition, r.offset)
                out.append(None if event["type"] == LINKS and reading.readings.count(None)
                           == len(reading.readings) else reading)
            except Exception as exc:  # noqa: BLE001 - whatever a reading raises refuses the record
                out.append(Refused.because(f"cannot be projected: {exc!r}", "poison"))
        return out

    async def handle(self, conn: psycopg.AsyncConnection,
                     items: list[tuple[ConsumerRecord, Reading | None]]) -> Callable[[], None]:
        if self.settings.projection_schema != "public":
            await conn.execute("SELECT set_config('search_path', %s, true)",
                               (f'"{self.settings.projection_schema}", public',))
        if time.monotonic() - self._pruned > PRUNE_EVERY_S:
            self._pruned = time.monotonic()
            await changes.prune(conn, self.settings.changes_retention_hours)
        self._applied = await project(conn, self.name, self.projections,
                                      [item for _, item in items if item is not None])
        return self._applied.committed

    async def before_commit(self, conn: psycopg.AsyncConnection) -> None:
        """The change feed's row, last: its table lock is held only until the commit."""
        applied, self._applied = self._applied, None
        if applied is not None:
            await changes.record(conn, applied.events, applied.customer_ids)
