"""Identity stage: touchpoints.raw -> validate -> resolve customer -> touchpoints (keyed by customer).

Records sealed by our own doors (already validated, see services/wire.py) are read as the
normalised JSON they are; every other record is validated in full. Bad records are refused: the
runtime keeps them as dead letters with the reason. Resolved events are acknowledged by the broker before
the batch's tracking commits, so a crash can only re-publish (projections de-duplicate by
event_id), never lose. New customer ids are derived from identifiers, so a replay of the raw log
gives the same ids.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from aiokafka.structs import ConsumerRecord

from events import TOUCHPOINT_TYPES, InvalidEvent, identity_keys, parse_touchpoint
from projections.identity import store
from projections.identity.resolve import NAMESPACE, Link, resolve
from services.config import Settings
from services.kafka import send_keyed
from services.processors.dlq import Refused
from services.wire import is_sealed, signing_key


def utc_text(when: datetime) -> str:
    """The log's one time format: UTC, microseconds, 'Z' (sorts as text in time order)."""
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def read(record: ConsumerRecord, now: str, key: bytes | None = None) -> dict[str, Any]:
    """The normalised JSON form of a raw touchpoint, times in the log's format. A record sealed
    with ``key`` is what our doors wrote after validating it; any other is validated here.

    Raises InvalidEvent for a bad record."""
    if is_sealed(record.headers, record.value, key):
        try:
            return _with_log_times(orjson.loads(record.value), now)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            pass  # not what our doors write: validate it like any other record
    return _with_log_times(parse_touchpoint(record.value).model_dump(mode="json"), now)


def _with_log_times(doc: dict[str, Any], now: str) -> dict[str, Any]:
    if doc["type"] not in TOUCHPOINT_TYPES or not doc["customer"]:
        raise ValueError("not a touchpoint")
    doc["occurred_at"] = _log_time(doc["occurred_at"])
    doc["recorded_at"] = _log_time(doc["recorded_at"]) if doc.get("recorded_at") else now
    return doc


def _log_time(text: str) -> str:
    """``text`` (ISO 8601 with an offset) in the log's format. Our doors already write UTC with
    'Z'; only the microseconds may be missing, so the common shapes skip the conversion, which
    costs more than the rest of this function (BENCHMARKS.md)."""
    when = datetime.fromisoformat(text)  # whatever the shape, it must be a real time
    if when.utcoffset() is None:
        raise ValueError("times must include a timezone offset")
    if text[-1] == "Z" and len(text) == 27 and text[19] == ".":
        return text
    if text[-1] == "Z" and len(text) == 20:
        return text[:19] + ".000000Z"
    return utc_text(when)


def resolved_record(doc: dict[str, Any], customer_id: str) -> bytes:
    doc["customer"]["customer_id"] = customer_id
    return orjson.dumps(doc)


def link_record(link: Link, occurred_at: str, now: str) -> tuple[str, bytes]:
    event_id = str(uuid.uuid5(NAMESPACE, f"link:{link.survivor}:{link.merged}:{link.event_id}"))
    return event_id, orjson.dumps({
        "event_id": event_id, "type": "customers_linked", "schema_version": 1,
        "customer": {"customer_id": link.survivor},
        "occurred_at": occurred_at, "recorded_at": now,
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
        self._key = signing_key(settings.signing_key)

    async def start(self, producer) -> None:
        self._producer = producer

    async def stop(self) -> None:
        """The producer belongs to the runtime."""

    def forget(self) -> None:
        """Nothing is cached between batches: the graph is shared by every identity worker."""

    async def before_commit(self, conn: psycopg.AsyncConnection) -> None:
        """Nothing to add."""

    def prepare(self, records: list[ConsumerRecord]) -> list[dict[str, Any] | Refused]:
        now = utc_text(datetime.now(UTC))
        out: list[dict[str, Any] | Refused] = []
        for r in records:
            try:
                out.append(read(r, now, self._key))
            except InvalidEvent as exc:
                out.append(Refused(exc.errors))
        return out

    async def handle(self, conn: psycopg.AsyncConnection,
                     items: list[tuple[ConsumerRecord, dict[str, Any]]]) -> None:
        good = [doc for _, doc in items]
        batch = [(doc["event_id"], identity_keys(doc["customer"])) for doc in good]
        await store.lock_graph(conn)
        known = await store.known(conn, sorted({k for _, keys in batch for k in keys}))
        res = resolve(batch, known)
        await store.save(conn, res)
        now = utc_text(datetime.now(UTC))
        out = [(cid.encode(), resolved_record(doc, cid))
               for doc, cid in zip(good, res.assigned, strict=True)]
        when = {doc["event_id"]: doc["occurred_at"] for doc in good}
        out += [(link.survivor.encode(), link_record(link, when[link.event_id], now)[1])
                for link in res.links]
        await send_keyed(self._producer, self.settings.log_topic, out)
