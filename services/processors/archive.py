"""Archive stage: touchpoints -> each record in its customer's stream of the archive, once.

Records are encoded as the library's mapper stores them before the batch's transaction; the transaction
de-duplicates event ids (an event the log carries twice is archived once), then, last, takes
the archive's table lock and appends, so that the lock is held only until the commit. A record
the archive cannot read (not JSON, no event id or customer id, a type or version it does not
know) is refused and becomes a dead letter of stage ``archive``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
import psycopg
from aiokafka.structs import ConsumerRecord

from events.archive import TOPICS, state, stored_version, uuid_text
from services import archive, store
from services.config import Settings
from services.processors.dlq import Refused
from services.processors.runtime import Conflict

CACHE = 200_000  # streams whose last version this worker remembers


class Encoded(NamedTuple):
    event_id: str
    customer_id: str  # canonical UUID text: the stream
    topic: str  # the event's class, as the library names it
    state: bytes  # as the library's mapper would store it


class ArchiveStage:
    name = archive.STAGE

    def __init__(self, settings: Settings):
        self.settings = settings
        self.topic = settings.log_topic
        self._pending: list[Encoded] = []
        self._last: OrderedDict[str, int] = OrderedDict()  # stream -> last version written
        self._written: dict[str, int] = {}

    async def start(self, producer: Any) -> None:
        """Nothing runs beside the batches."""

    async def stop(self) -> None:
        """Nothing to stop."""

    def forget(self) -> None:
        self._last.clear()

    def prepare(self, records: list[ConsumerRecord]) -> list[Encoded | Refused]:
        now = orjson.dumps(datetime.now(UTC))
        out: list[Encoded | Refused] = []
        for r in records:
            try:
                doc = orjson.loads(r.value)
                topic, version = TOPICS[doc["type"]], stored_version(doc)
                event_id = uuid_text(doc["event_id"])
                customer = uuid_text(doc["customer"]["customer_id"])
                out.append(Encoded(event_id, customer, topic,
                                   state(r.value, now, r.topic, r.partition, r.offset, version)))
            except Exception as exc:  # noqa: BLE001 - whatever reading raises refuses the record
                out.append(Refused.because(f"cannot be archived: {exc!r}", "poison"))
        return out

    async def handle(self, conn: psycopg.AsyncConnection,
                     items: list[tuple[ConsumerRecord, Encoded]]) -> Callable[[], None]:
        unique: dict[str, Encoded] = {}
        for _, e in items:
            unique.setdefault(e.event_id, e)
        new = await store.first_seen(conn, self.name, list(unique))
        self._pending = [e for event_id, e in unique.items() if event_id in new]
        self._written = {}
        return self._committed

    async def before_commit(self, conn: psycopg.AsyncConnection) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        known = {e.customer_id: self._last[e.customer_id] for e in pending
                 if e.customer_id in self._last}
        try:
            self._written = await archive.append(
                conn, [(e.customer_id, e.topic, e.state) for e in pending], known)
        except psycopg.errors.UniqueViolation as exc:
            # a version this worker remembered is taken: another writer appended to the stream
            self._last.clear()
            raise Conflict("an archived stream moved under this worker") from exc

    def _committed(self) -> None:
        for customer, version in self._written.items():
            self._last[customer] = version
            self._last.move_to_end(customer)
        while len(self._last) > CACHE:
            self._last.popitem(last=False)
        self._written = {}
