"""Kafka clients with the settings every part of Touchstream uses."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer

from services.config import Settings
from services.metrics import DEAD_LETTERED
from services.processors import dlq


def producer(settings: Settings, client_id: str) -> AIOKafkaProducer:
    """acks=all: a send completes only when the broker has the record durably."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=client_id,
        acks="all",
        linger_ms=5,
        max_batch_size=1024 * 1024,
        max_request_size=8 * 1024 * 1024,
        request_timeout_ms=int(settings.produce_timeout_s * 1000),
    )


async def send_all(prod: AIOKafkaProducer, sends: Iterable) -> None:
    """Await every acknowledgement; raise if any send failed."""
    futures = [await s for s in sends]
    if futures:
        await asyncio.gather(*futures)


async def dead_letter(prod: AIOKafkaProducer, settings: Settings, stage: str, record,
                      errors: list[dict]) -> asyncio.Future:
    DEAD_LETTERED.labels(stage).inc()
    return await prod.send(
        settings.dlq_topic, value=record.value if record.value is not None else b"", key=record.key,
        headers=dlq.headers(stage, record.topic, record.partition, record.offset, errors))
