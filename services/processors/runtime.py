"""The processor runtime shared by all stages: batches in, one PostgreSQL transaction out.

For each batch: lock the tracking rows of its partitions, drop records at or below the committed
offsets, let the handler write its effects, save the new offsets, commit. While a batch commits
(the process waits for PostgreSQL and the broker), the next one is fetched and prepared (decoded,
validated: pure work), so the CPU and the servers work at the same time; batches still commit
one after the other, in order. On assignment a
consumer seeks to the tracked offset + 1 (Kafka's committed offsets are only a hint), so
redelivery after a crash or a rebalance never applies an effect twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol

import psycopg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import ConsumerStoppedError
from aiokafka.structs import ConsumerRecord
from mode import Service

from services import store
from services.config import Settings
from services.metrics import BATCH_SECONDS, LAG, PROCESSED

log = logging.getLogger(__name__)
# A broker may hold a fetch for this long when no data is waiting. The client's 500 ms default
# put 300 ms (p50) between an accepted POST and its profile on the embedded broker; 20 ms: 73 ms.
# A backlog is fetched without waiting either way.
FETCH_MAX_WAIT_MS = 20
RETRYABLE = (TimeoutError, OSError, psycopg.OperationalError, psycopg.errors.SerializationFailure,
             psycopg.errors.DeadlockDetected)


class Handler(Protocol):
    name: str
    topic: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def prepare(self, records: list[ConsumerRecord]) -> list[Any]:
        """Pure work on a batch (decode, validate), one item per record, before its transaction."""

    async def handle(self, conn: psycopg.AsyncConnection,
                     items: list[tuple[ConsumerRecord, Any]]) -> Callable[[], None] | None:
        """Write the effects of the (record, prepared item) pairs inside the caller's transaction;
        may return a callback to run once that transaction has committed."""

    def forget(self) -> None:
        """Another worker wrote this stage's effects since our last commit (a rebalance, or a
        commit whose outcome we did not see): drop any state cached from earlier batches."""


class _SeekToTracked(ConsumerRebalanceListener):
    def __init__(self, processor: BatchProcessor):
        self.processor = processor

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.processor.assigned = set()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.processor.seek_to_tracked(assigned)


class BatchProcessor(Service):
    """Consumes one topic in a consumer group and hands whole batches to a handler."""

    def __init__(self, settings: Settings, handler: Handler, **kwargs):
        self.settings = settings
        self.handler = handler
        self.assigned: set[TopicPartition] = set()
        self.processed = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._conn: psycopg.AsyncConnection | None = None
        self._worker_id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._next: dict[int, int] = {}
        self._written: dict[int, int] = {}  # per partition, the offset this worker last committed
        self._db = asyncio.Lock()  # one connection, used by the batch loop and the rebalance listener
        self._beat = 0.0
        super().__init__(**kwargs)

    @property
    def label(self) -> str:
        return f"processor:{self.handler.name}"

    async def connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self.settings.database_url)
        return self._conn

    async def on_start(self) -> None:
        s = self.settings
        await self.handler.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=s.group(self.handler.name),
            client_id=f"touchstream-{self.handler.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        await self._consumer.start()
        self._consumer.subscribe([self.handler.topic], listener=_SeekToTracked(self))
        self.add_future(self._run())

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._conn is not None and not self._conn.closed:
            async with self._conn.transaction():
                await store.heartbeat(self._conn, self.handler.name, self._worker_id, None)
        await self.handler.stop()
        if self._conn is not None:
            await self._conn.close()

    async def seek_to_tracked(self, assigned: set[TopicPartition]) -> None:
        assert self._consumer is not None
        async with self._db:
            conn = await self.connection()
            async with conn.transaction():
                tracked = await store.read_positions(conn, self.handler.name, self.handler.topic)
        for tp in assigned:
            offset = tracked.get(tp.partition, -1)
            if offset >= 0:
                self._consumer.seek(tp, offset + 1)
            else:
                await self._consumer.seek_to_beginning(tp)
        self.assigned = set(assigned)
        self._beat = 0.0
        log.info("%s assigned %s", self.handler.name, sorted(tp.partition for tp in assigned))

    async def _run(self) -> None:
        committing: asyncio.Future | None = None
        try:
            while not self.should_stop:
                try:
                    records = await self._take_batch(committing)
                    prepared = self.handler.prepare(records) if records else []
                    last = await committing if committing else {}
                    committing = None
                    self._report_lag(last)
                    await self._heartbeat()
                    if records:
                        committing = asyncio.ensure_future(self._process_until_done(records, prepared))
                except (asyncio.CancelledError, ConsumerStoppedError):
                    break  # stopping
                except Exception:
                    # Never die on a partition: log, back off, resume from the tracked positions.
                    log.exception("%s: unexpected failure; resuming from tracked offsets",
                                  self.handler.name)
                    committing = await _cancelled(committing)
                    await asyncio.sleep(1.0)
                    with contextlib.suppress(Exception):
                        await self.seek_to_tracked(set(self.assigned))
        finally:
            await _cancelled(committing)

    async def _take_batch(self, committing: asyncio.Future | None = None) -> list[ConsumerRecord]:
        """Up to batch_max_records: wait up to batch_timeout_ms for the first records, then keep
        taking while the previous batch is still committing (nothing could be written sooner),
        and after that while more arrive at once, for at most batch_timeout_ms from the first
        record. A backlog gives full batches; live traffic small ones, without delay.
        (Brokers may answer a fetch with a single record batch, so one getmany can be small.)"""
        assert self._consumer is not None
        s = self.settings
        records: list[ConsumerRecord] = []
        timeout = s.batch_timeout_ms
        deadline = time.monotonic() + s.batch_timeout_ms / 1000
        while len(records) < s.batch_max_records:
            got = await self._consumer.getmany(timeout_ms=timeout,
                                               max_records=s.batch_max_records - len(records))
            more = [r for rs in got.values() for r in rs]
            if not records:
                if not more and time.monotonic() >= deadline:
                    break
                deadline = time.monotonic() + s.batch_timeout_ms / 1000  # from the first record
            records += more
            if records and (committing is None or committing.done()) and (
                    not more or time.monotonic() >= deadline):
                break
            timeout = 5
        return records

    async def _process_until_done(self, records: list[ConsumerRecord],
                                  prepared: list[Any]) -> dict[int, int]:
        """Retry a batch until it commits: an outage stalls the partition, it never skips it."""
        delay = 0.1
        while True:
            try:
                return await self.process(records, prepared)
            except RETRYABLE as exc:
                log.warning("%s: batch failed (%s), retrying in %.1fs", self.handler.name, exc, delay)
                if self._conn is not None and self._conn.closed:
                    self._conn = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def process(self, records: list[ConsumerRecord], prepared: list[Any]) -> dict[int, int]:
        name, topic = self.handler.name, self.handler.topic
        started = time.perf_counter()
        last: dict[int, int] = {}
        for r in records:
            last[r.partition] = max(r.offset, last.get(r.partition, -1))
        async with self._db:
            conn = await self.connection()
            async with conn.transaction():
                committed = await store.lock_positions(conn, name, topic, sorted(last))
                if any(committed.get(p, -1) != self._written.get(p) for p in last):
                    self.handler.forget()
                    self._written.clear()
                fresh = [(r, item) for r, item in zip(records, prepared, strict=True)
                         if r.offset > committed.get(r.partition, -1)]
                on_commit = await self.handler.handle(conn, fresh) if fresh else None
                await store.save_positions(conn, name, topic, last)
            self._written.update(last)
            if on_commit is not None:
                on_commit()
        self.processed += len(fresh)
        PROCESSED.labels(name).inc(len(fresh))
        BATCH_SECONDS.labels(name).observe(time.perf_counter() - started)
        return last

    def _report_lag(self, last: dict[int, int]) -> None:
        """Lag from the high watermark of fetch responses (never from ListOffsets)."""
        assert self._consumer is not None
        self._next.update({p: o + 1 for p, o in last.items()})
        for tp in self.assigned:
            high = self._consumer.highwater(tp)
            if high is not None and tp.partition in self._next:
                LAG.labels(self.handler.name, str(tp.partition)).set(max(high - self._next[tp.partition], 0))

    async def _heartbeat(self) -> None:
        """Tell readers (``/readyz``) which partitions this worker holds."""
        if time.monotonic() - self._beat < 2.0:
            return
        self._beat = time.monotonic()
        async with self._db:
            conn = await self.connection()
            async with conn.transaction():
                await store.heartbeat(conn, self.handler.name, self._worker_id,
                                      sorted(tp.partition for tp in self.assigned))


async def _cancelled(task: asyncio.Future | None) -> None:
    """Cancel a commit in flight (its transaction rolls back; the tracked offsets say where to resume)."""
    if task is not None and not task.done():
        task.cancel()
    if task is not None:
        with contextlib.suppress(BaseException):
            await task
    return None
