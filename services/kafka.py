"""Kafka clients with the settings every part of Touchstream uses."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from crc32c import crc32c

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
        partitioner=by_crc32c,
    )


def by_crc32c(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """The partitioner of every Touchstream producer (aiokafka and kafka-python call it alike):
    a key lands on the same partition whichever door sent it, and crc32c is native code where
    the clients' default murmur2 is pure Python (a few µs a record)."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[partition_for(key, len(all_partitions))]


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


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of a key on the log of record: crc32c, stable across workers and languages."""
    return crc32c(key) % partitions


async def send_keyed(prod: AIOKafkaProducer, topic: str, records: Iterable[tuple[bytes, bytes]]) -> None:
    """Publish many (key, value) records as a few record batches per partition; await every ack.

    One future per batch instead of one per record: the per-record path of the client (futures,
    its pure-Python murmur2 partitioner) costs more than the rest of the identity stage.
    """
    partitions = len(await prod.partitions_for(topic))
    by_partition: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
    for key, value in records:
        by_partition[partition_for(key, partitions)].append((key, value))
    acks = []
    for partition, items in by_partition.items():
        batch = prod.create_batch()
        for key, value in items:
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: ship it
                acks.append(await prod.send_batch(batch, topic, partition=partition))
                batch = prod.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        acks.append(await prod.send_batch(batch, topic, partition=partition))
    if acks:
        await asyncio.gather(*acks)
