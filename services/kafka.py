"""Kafka clients with the settings every part of Touchstream uses."""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from crc32c import crc32c

from services.config import Settings
from services.processors import dlq

# (key, value) or (key, value, headers)
Record = tuple[bytes, bytes] | tuple[bytes, bytes, list[tuple[str, bytes]]]


def producer(settings: Settings, client_id: str, linger_ms: int = 5) -> AIOKafkaProducer:
    """acks=all: a send completes only when the broker has the record durably."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=client_id,
        acks="all",
        linger_ms=linger_ms,
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


async def send_dead_letters(prod: AIOKafkaProducer, topic: str, stage: str, letters: Sequence,
                            failed_at: datetime) -> list:
    """Publish (record, ``dlq.Refused``) pairs to the DLQ topic; their acknowledgements, in order."""
    futures = [await prod.send(topic, key=r.key,
                               value=r.value if r.value is not None else b"",
                               headers=dlq.headers(stage, r.topic, r.partition, r.offset, refused,
                                                   failed_at))
               for r, refused in letters]
    return list(await asyncio.gather(*futures))


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of a key on the log of record: crc32c, stable across workers and languages."""
    return crc32c(key) % partitions


async def send_grouped(prod: AIOKafkaProducer, topic: str, records: Sequence[Record],
                       timeout_s: float | None = None) -> list[BaseException | None]:
    """Publish many records as a few record batches per partition (by ``partition_for`` of the
    key); per record, ``None`` once the broker acknowledged it, else the error of its batch
    (``TimeoutError`` when no answer came within ``timeout_s``).

    One future per batch instead of one per record: the client's per-record path (a future, a
    partitioner call, an accumulator lookup) costs more than validating the event."""
    partitions = len(await prod.partitions_for(topic))
    by_partition: dict[int, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        by_partition[partition_for(record[0], partitions)].append(i)
    sends: list[tuple[list[int], asyncio.Future]] = []
    for partition, indices in by_partition.items():
        batch, held = prod.create_batch(), list[int]()
        for i in indices:
            key, value, *headers = records[i]
            if batch.append(key=key, value=value, timestamp=None,
                            headers=headers[0] if headers else []) is None:  # full: ship it
                sends.append((held, await prod.send_batch(batch, topic, partition=partition)))
                batch, held = prod.create_batch(), []
                batch.append(key=key, value=value, timestamp=None, headers=headers[0] if headers else [])
            held.append(i)
        sends.append((held, await prod.send_batch(batch, topic, partition=partition)))
    outcome: list[BaseException | None] = [None] * len(records)
    if not sends:
        return outcome
    await asyncio.wait([f for _, f in sends], timeout=timeout_s)
    for held, future in sends:
        error = (TimeoutError("no acknowledgement in time") if not future.done()
                 else future.exception())
        for i in held:
            outcome[i] = error
    return outcome


async def send_keyed(prod: AIOKafkaProducer, topic: str, records: Sequence[Record]) -> None:
    """``send_grouped``, raising the first error."""
    for error in await send_grouped(prod, topic, records):
        if error is not None:
            raise error


async def topic_ends(settings: Settings, topic: str, timeout_s: float = 30) -> dict[int, int]:
    """Last offset per partition of ``topic`` (-1: empty), from the high watermarks of fetch
    responses: the embedded broker's ListOffsets answers wrong ends (DESIGN.md)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout_s
        while any(consumer.highwater(tp) is None for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no high watermark for {topic} in {timeout_s}s")
            await consumer.getmany(timeout_ms=200, max_records=1)
        return {tp.partition: consumer.highwater(tp) - 1 for tp in tps}
    finally:
        await consumer.stop()


async def tail_ids(settings: Settings, topic: str, per_partition: int,
                   header: str = "ts-change-id") -> list[str]:
    """The ids (in ``header``) of the last ``per_partition`` records of each partition of
    ``topic``."""
    ends = await topic_ends(settings, topic)
    wanted = {p: end for p, end in ends.items() if end >= 0}
    if not wanted:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                enable_auto_commit=False)
    await consumer.start()
    ids: list[str] = []
    try:
        tps = {p: TopicPartition(topic, p) for p in wanted}
        consumer.assign(list(tps.values()))
        for p, tp in tps.items():
            consumer.seek(tp, max(0, wanted[p] - per_partition + 1))
        deadline = time.monotonic() + 30
        while wanted:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read the tail of {topic}")
            got = await consumer.getmany(timeout_ms=500)
            for tp, records in got.items():
                for r in records:
                    ids += [v.decode() for k, v in r.headers if k == header]
                    if r.offset >= wanted.get(tp.partition, -1):
                        wanted.pop(tp.partition, None)
    finally:
        await consumer.stop()
    return ids
