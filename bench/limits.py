"""The limits of the parts: our producer (acks=all), our consumer doing nothing, PostgreSQL COPY."""

from __future__ import annotations

import asyncio
import time

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition

from projections.contacts import fold as contacts
from projections.contacts.store import DDL as CONTACTS_DDL
from services.config import Settings
from services.kafka import producer
from services.wire import MARK, seal, signing_key


async def produce(settings: Settings, topic: str, records: list[tuple[bytes, bytes]],
                  sealed: bool = True, headers: list[tuple[str, bytes]] | None = None) -> dict:
    """Publish everything with the runtime's producer settings, sealed as our doors seal records
    (when ``sealed`` and the settings have a signing key; else with ``headers``); returns rate
    and end offsets."""
    mac = signing_key(settings.signing_key) if sealed else None
    prod = producer(settings, "touchstream-bench")
    await prod.start()
    ends: dict[int, int] = {}
    try:
        started = time.perf_counter()
        window = []
        for key, value in records:
            window.append(await prod.send(topic, key=key, value=value,
                                          headers=[(MARK, seal(value, mac))] if mac else headers or []))
            if len(window) >= 20_000:
                for meta in await asyncio.gather(*window):
                    ends[meta.partition] = max(ends.get(meta.partition, -1), meta.offset)
                window = []
        for meta in await asyncio.gather(*window):
            ends[meta.partition] = max(ends.get(meta.partition, -1), meta.offset)
        elapsed = time.perf_counter() - started
    finally:
        await prod.stop()
    return {"events": len(records), "seconds": elapsed, "events_per_s": len(records) / elapsed,
            "end_offsets": ends}


async def consume(settings: Settings, topic: str, expected: int, max_records: int = 5000) -> dict:
    """Read ``expected`` records with the runtime's client and batch size, doing nothing else."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024,
                                fetch_max_bytes=32 * 1024 * 1024)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(settings.partitions)])
        await consumer.seek_to_beginning()
        seen, started = 0, time.perf_counter()
        while seen < expected:
            batch = await consumer.getmany(timeout_ms=200, max_records=max_records)
            seen += sum(len(rs) for rs in batch.values())
            if time.perf_counter() - started > 600:
                raise TimeoutError(f"consumed only {seen} of {expected}")
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
    return {"events": seen, "seconds": elapsed, "events_per_s": seen / elapsed}


def copy_rows(settings: Settings, records: list[tuple[bytes, bytes]], rows: int = 200_000,
              per_transaction: int = 5000) -> dict:
    """COPY contact-history rows (the runtime's batch size per transaction) into a fresh table."""
    sample = []
    for i, (_, value) in enumerate(records[:rows]):
        event = orjson.loads(value)
        event["customer"]["customer_id"] = f"00000000-0000-4000-8000-{i % 50_000:012d}"
        event["occurred_at"] = event["occurred_at"].replace("+00:00", "Z")
        sample.append(contacts.row(event, 0, i))
    ddl = CONTACTS_DDL.replace("contacts", "bench_copy_limit")
    with psycopg.connect(settings.database_url) as conn:
        conn.execute(ddl)
        conn.commit()
        columns = ", ".join(contacts.ContactRow._fields)
        started = time.perf_counter()
        for at in range(0, len(sample), per_transaction):
            with conn.cursor() as cur, cur.copy(f"COPY bench_copy_limit ({columns}) FROM STDIN") as cp:
                for row in sample[at:at + per_transaction]:
                    cp.write_row(row)
            conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE bench_copy_limit")
        conn.commit()
    return {"rows": len(sample), "seconds": elapsed, "rows_per_s": len(sample) / elapsed,
            "rows_per_transaction": per_transaction}
