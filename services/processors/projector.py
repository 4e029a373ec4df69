"""Projection stage: touchpoints -> profile and contact history, in one transaction per batch.

A worker is the only writer of the profiles of the partitions it holds (touchpoints are keyed
by customer id), so it keeps the profiles it last committed in a bounded cache and reads back
only those it does not hold. The cache holds the state documents as written (JSON text, about
600 bytes each): strings are not scanned by the garbage collector, profile objects were
(and took four times the memory). The runtime tells the stage to ``forget`` the cache whenever the
tracked offsets show that another worker committed since (a rebalance), and the cache takes
new profiles only after their transaction commits.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from decimal import InvalidOperation
from typing import Any, NamedTuple

import orjson
import psycopg
from aiokafka.structs import ConsumerRecord

from projections.contacts import fold as contacts
from projections.contacts import store as contacts_store
from projections.profile import fold as profile
from projections.profile import store as profile_store
from services import store
from services.config import Settings
from services.metrics import DUPLICATES
from services.processors.dlq import Refused

NOT_TOUCHPOINTS = {"customers_linked"}  # identity events: read models follow the graph instead
FOLD_ERRORS = (KeyError, TypeError, ValueError, InvalidOperation, AttributeError)


class ProjectionStage:
    name = "projections"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.topic = settings.log_topic
        self._profiles = ProfileCache(settings.profile_cache_size)

    def forget(self) -> None:
        self._profiles.clear()

    async def start(self, producer) -> None:
        """Nothing to start: dead letters are the runtime's."""

    async def stop(self) -> None:
        """Nothing to stop."""

    def prepare(self, records: list[ConsumerRecord]) -> list[Any]:
        """Per record (while the previous batch commits): its ``Prepared`` form, None for an
        identity event, or why it cannot be projected (``Refused``)."""
        out: list[Any] = []
        for r in records:
            try:
                event = orjson.loads(r.value)
                if event["type"] in NOT_TOUCHPOINTS:
                    out.append(None)
                    continue
                item = prepared(event, r.partition, r.offset)
                out.append(Refused.because(f"cannot fold: {item.touch!r}", "poison")
                           if isinstance(item.touch, Exception) else item)
            except (orjson.JSONDecodeError, *FOLD_ERRORS) as exc:
                out.append(Refused.because(f"unreadable record: {exc!r}", "poison"))
        return out

    async def handle(self, conn: psycopg.AsyncConnection,
                     items: list[tuple[ConsumerRecord, Any]]) -> Callable[[], None]:
        events: dict[str, Prepared] = {}
        for _, item in items:
            if item is not None and item.event["event_id"] not in events:
                events[item.event["event_id"]] = item
        saved = await project(conn, self.name, events, self._profiles)
        return lambda: self._profiles.put(saved)


class Prepared(NamedTuple):
    """What the write path needs of one touchpoint, worked out before its transaction."""

    event: dict[str, Any]
    touch: profile.Touch | Exception  # the fold's reading of it, or why the fold cannot read it
    contact: str  # its contact-history row as a COPY line


def prepared(event: dict[str, Any], partition: int, offset: int) -> Prepared:
    """Raises for an event without a contact row (the record is unreadable)."""
    contact = contacts_store.copy_line(contacts.row(event, partition, offset))
    try:
        touch: profile.Touch | Exception = profile.read_touch(event)
    except FOLD_ERRORS as exc:
        touch = exc
    return Prepared(event, touch, contact)


class ProfileCache:
    """The state documents of the most recently written profiles, at most ``size`` of them
    (least recently written go first)."""

    def __init__(self, size: int):
        self.size = size
        self._held: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def clear(self) -> None:
        self._held.clear()

    def take(self, customer_ids: list[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """The state documents held among ``customer_ids`` (parsed), and the ids not held."""
        held, missing = {}, []
        for cid in customer_ids:
            doc = self._held.get(cid)
            if doc is None:
                missing.append(cid)
            else:
                held[cid] = orjson.loads(doc)
        return held, missing

    def put(self, documents: dict[str, str]) -> None:
        for cid, doc in documents.items():
            self._held[cid] = doc
            self._held.move_to_end(cid)
        while len(self._held) > self.size:
            self._held.popitem(last=False)


async def project(conn: psycopg.AsyncConnection, processor: str, events: dict[str, Prepared],
                  cache: ProfileCache | None = None) -> dict[str, str]:
    """Write a batch of prepared touchpoints (by event id) to the profile and the contact history,
    skipping event ids already processed, in the caller's transaction. Returns the profiles'
    state documents as written.

    An event the fold cannot read raises (its reading is the error). Profiles held in ``cache``
    are not read back from the database."""
    new = await store.first_seen(conn, processor, list(events)) if events else set()
    DUPLICATES.labels(processor).inc(len(events) - len(new))
    fresh: list[Prepared] = []
    for event_id in events:
        if event_id in new:
            item = events[event_id]
            if isinstance(item.touch, Exception):
                raise item.touch
            fresh.append(item)
    await contacts_store.write_lines(conn, [item.contact for item in fresh])
    touches = [item.touch for item in fresh]
    customers = list(dict.fromkeys(t[0] for t in touches))
    states, missing = cache.take(customers) if cache is not None else ({}, customers)
    states.update(await profile_store.load_states(conn, missing))
    for t in touches:
        state = states.get(t[0])
        if state is None:
            state = states[t[0]] = profile.new_state()
        profile.add_touch(state, t)
    return await profile_store.save_states(conn, states)
