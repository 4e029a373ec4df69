"""Identity stage: touchpoints.raw -> validate -> resolve customer -> touchpoints (keyed by customer).

Bad records go to the DLQ with the reason. Resolved events are acknowledged by the broker before
the batch's tracking commits, so a crash can only re-publish (projections de-duplicate by
event_id), never lose. New customer ids are derived from identifiers, so a replay of the raw log
gives the same ids.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import psycopg
from aiokafka.structs import ConsumerRecord

from events import InvalidEvent, identity_keys, parse_touchpoint
from projections.identity import store
from projections.identity.resolve import NAMESPACE, Link, resolve
from services.config import Settings
from services.kafka import dead_letter, producer, send_all, send_keyed


def utc_text(when: datetime) -> str:
    """The log's one time format: UTC, microseconds, 'Z' (sorts as text in time order)."""
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def resolved_record(event, customer_id: str, now: datetime) -> bytes:
    doc = event.model_dump(mode="json")
    doc["customer"]["customer_id"] = customer_id
    doc["occurred_at"] = utc_text(event.occurred_at)
    doc["recorded_at"] = utc_text(event.recorded_at or now)
    return orjson.dumps(doc)


def link_record(link: Link, occurred_at: datetime, now: datetime) -> tuple[str, bytes]:
    event_id = str(uuid.uuid5(NAMESPACE, f"link:{link.survivor}:{link.merged}:{link.event_id}"))
    return event_id, orjson.dumps({
        "event_id": event_id, "type": "customers_linked", "schema_version": 1,
        "customer": {"customer_id": link.survivor},
        "occurred_at": utc_text(occurred_at), "recorded_at": utc_text(now),
        "channel": "identity", "source": "touchstream.identity",
        "payload": {"customer_id": link.survivor, "merged_ids": [link.merged],
                    "reason": "one touchpoint carried identifiers of both customers",
                    "keys": list(link.keys)},
    })


class IdentityStage:
    name = "identity"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.topic = settings.raw_topic
        self._producer = None

    async def start(self) -> None:
        self._producer = producer(self.settings, "touchstream-identity")
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def handle(self, conn: psycopg.AsyncConnection, records: list[ConsumerRecord]) -> None:
        good, sends = [], []
        for r in records:
            try:
                good.append((r, parse_touchpoint(r.value)))
            except InvalidEvent as exc:
                sends.append(dead_letter(self._producer, self.settings, self.name, r, exc.errors))
        batch = [(e.event_id, identity_keys(e.customer)) for _, e in good]
        await store.lock_graph(conn)
        known = await store.known(conn, sorted({k for _, keys in batch for k in keys}))
        res = resolve(batch, known)
        await store.save(conn, res)
        now = datetime.now(UTC)
        out = [(cid.encode(), resolved_record(event, cid, now))
               for (_, event), cid in zip(good, res.assigned, strict=True)]
        when = {e.event_id: e.occurred_at for _, e in good}
        out += [(link.survivor.encode(), link_record(link, when[link.event_id], now)[1])
                for link in res.links]
        await send_keyed(self._producer, self.settings.log_topic, out)
        await send_all(self._producer, sends)
