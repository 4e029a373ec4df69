"""The processor runtime shared by all stages: batches in, one PostgreSQL transaction out.

What it guarantees for every stage, present and future:

- **Exactly-once effects.** For each batch one transaction locks the tracking rows of its
  partitions, drops records at or below the committed offsets, lets the stage write its effects,
  keeps the records the stage refused as dead letters, and moves the positions forward. On
  assignment a consumer seeks to the tracked offset + 1 (Kafka's committed offsets are a hint).
- **Positions move forward, with no gaps.** A batch applies only if, per partition, its first new
  record is right after the committed offset; otherwise it is dropped and the consumer re-seeks
  (a worker that lost its partitions, records taken before a seek, a fetch that skipped). A
  position that would not move forward fails the commit. The one gap accepted is the one the
  broker shows right after a re-seek to the committed offset + 1: the log itself has no records
  there (retention, or a log that is not contiguous).
- **Outages stall, never skip.** An error that says a server is unreachable or overloaded is
  retried with backoff until the batch commits or its partitions move to another worker.
- **A poison record is isolated.** Any other error is one that retrying cannot fix: the batch is
  split in halves, each applied on its own, until the records that fail are alone; each goes to
  the dead-letter queue with the stage, the exception and its source position, everything else
  commits, and the partition moves on.

While a batch commits (the process waits for PostgreSQL and the broker), the next one is fetched
and prepared (decoded, validated: pure work), so the CPU and the servers work at the same time;
batches still commit one after the other, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    ConsumerStoppedError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
)
from aiokafka.structs import ConsumerRecord
from mode import Service

from services import store
from services.config import Settings
from services.kafka import producer as new_producer
from services.kafka import send_dead_letters
from services.metrics import BATCH_SECONDS, DEAD_LETTERED, LAG, PROCESSED, QUARANTINED, RESEEKS
from services.processors import dlq
from services.processors.dlq import Refused

log = logging.getLogger(__name__)
# A broker may hold a fetch this long when no data is waiting: a short wait keeps a single
# event's way through the stages short (BENCHMARKS.md, freshness); a backlog is fetched without
# waiting either way.
FETCH_MAX_WAIT_MS = 20
# SQLSTATE classes that describe the server, not the data: connection, transaction rollback
# (serialization, deadlock), insufficient resources, object in use / lock not available,
# operator intervention (shutdown, cancel), system error.
OUTAGE_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "55", "57", "58"})
# The server ended the session's transaction for taking too long: a stall, not the data.
OUTAGE_SQLSTATES = frozenset({"25P03", "25P04"})  # idle in transaction / transaction timeout
LOCK_NOT_AVAILABLE = "55P03"
RECORD_KAFKA_ERRORS = (MessageSizeTooLargeError, RecordTooLargeError)

Item = tuple[ConsumerRecord, Any]


class Conflict(RuntimeError):
    """A stage met another writer's effects where it expected its own (e.g. a version taken):
    applying the batch again, from what the database holds, succeeds."""


def is_outage(exc: BaseException) -> bool:
    """Whether retrying may fix ``exc``: a server down, unreachable or overloaded, or a
    ``Conflict``."""
    if isinstance(exc, Conflict):
        return True
    if isinstance(exc, psycopg.Error):
        if exc.sqlstate is None:  # raised by the client: a lost connection, or data it refused
            return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
        return exc.sqlstate[:2] in OUTAGE_SQLSTATE_CLASSES or exc.sqlstate in OUTAGE_SQLSTATES
    if isinstance(exc, KafkaError):
        return not isinstance(exc, RECORD_KAFKA_ERRORS)
    return isinstance(exc, TimeoutError | OSError)


class Handler(Protocol):
    name: str
    topic: str

    async def start(self, producer: AIOKafkaProducer) -> None: ...

    async def stop(self) -> None: ...

    def prepare(self, records: list[ConsumerRecord]) -> list[Any]:
        """Pure work on a batch (decode, validate), one item per record, before its transaction;
        a ``Refused`` item is a record the stage will not apply (it becomes a dead letter)."""

    async def handle(self, conn: psycopg.AsyncConnection,
                     items: list[Item]) -> Callable[[], None] | None:
        """Write the effects of the (record, prepared item) pairs inside the caller's transaction;
        may return a callback to run once that transaction has committed. Raises for a batch it
        cannot apply: the runtime retries outages and isolates any other failure."""

    def forget(self) -> None:
        """Another worker wrote this stage's effects since our last commit (a rebalance, or a
        commit whose outcome we did not see): drop any state cached from earlier batches."""

    async def before_commit(self, conn: psycopg.AsyncConnection) -> None:
        """The batch's last statements, right before it commits (after the dead letters and the
        positions), in every transaction where ``handle`` ran: where a stage takes a lock it
        must hold only briefly."""


class Gap(RuntimeError):
    """A batch does not start right after the committed offset of one of its partitions."""


class Dropped(Exception):
    """The batch was not applied and must not be: the consumer re-seeks to the tracked positions."""


class _SeekToTracked(ConsumerRebalanceListener):
    def __init__(self, processor: BatchProcessor):
        self.processor = processor

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.processor.assigned = set()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.processor.assigned = set(assigned)
        try:
            await self.processor.seek_to_tracked()
        except Exception as exc:  # noqa: BLE001 - the batch loop re-seeks before its next batch
            log.warning("%s: cannot read tracked positions yet (%r)", self.processor.label, exc)
            self.processor.need_seek = True


class BatchProcessor(Service):
    """Consumes one topic in a consumer group and hands whole batches to a handler."""

    def __init__(self, settings: Settings, handler: Handler, **kwargs):
        self.settings = settings
        self.handler = handler
        self.assigned: set[TopicPartition] = set()
        self.processed = 0
        self.need_seek = False
        self.producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._conn: psycopg.AsyncConnection | None = None
        self._worker_id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._next: dict[int, int] = {}
        self._written: dict[int, int] = {}  # per partition, the offset this worker last committed
        self._epoch = 0  # of the tracked positions, as this worker last saw them
        # Per partition: the offset of a seek whose first record has not been taken yet, and
        # (offset sought, first offset taken after it): what the log holds at that offset.
        self._sought: dict[int, int] = {}
        self._landed: dict[int, tuple[int, int]] = {}
        self._db = asyncio.Lock()  # one connection, used by the batch loop and the rebalance listener
        self._beat = 0.0
        self._loop_task: asyncio.Future | None = None
        super().__init__(**kwargs)

    @property
    def label(self) -> str:
        return f"processor:{self.handler.name}"

    async def connection(self) -> psycopg.AsyncConnection:
        """The worker's connection. A worker that stops inside a transaction (a frozen process or
        VM, a cut network) must not hold its locks for ever, nor may one wait for ever on them:
        the server ends such a transaction after ``idle_in_transaction_s`` idle (longer than any
        wait for the broker inside one) or, from PostgreSQL 17, ``transaction_timeout_s`` in all
        (a worker frozen in the middle of a COPY is not idle), and a lock wait ends after
        ``lock_timeout_s``; all are retried as outages."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            s = self.settings
            conn = await psycopg.AsyncConnection.connect(
                s.database_url, options=f"-c idle_in_transaction_session_timeout="
                f"{int(s.idle_in_transaction_s * 1000)} -c lock_timeout={int(s.lock_timeout_s * 1000)}")
            if conn.info.server_version >= 170000:
                await conn.execute("SELECT set_config('transaction_timeout', %s, false)",
                                   (str(int(s.transaction_timeout_s * 1000)),))
                await conn.commit()
            self._conn = conn
        return self._conn

    async def _end_stuck_sessions(self) -> None:
        """A session whose client stopped reading in the middle of a result (a worker frozen
        there) waits in its write and ignores the transaction timeout: PostgreSQL acts on a
        cancel only between messages. So does one whose client stopped in the middle of sending
        a statement's data (a worker frozen inside a COPY: the session is active, reading).
        Past that timeout such a transaction can only be a lost worker's: end the session (a
        terminate is acted on in the wait), so that its locks go."""
        try:
            conn = await self.connection()
            # first the sessions, then the terminations: in one WHERE, PostgreSQL may call
            # pg_terminate_backend before the other conditions have ruled a session out
            cur = await conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND (wait_event = 'ClientWrite' OR "
                "(wait_event = 'ClientRead' AND state <> 'idle')) "
                "AND xact_start < now() - make_interval(secs => %s)",
                (self.settings.transaction_timeout_s,))
            stuck = [pid for (pid,) in await cur.fetchall()]
            ended = []
            if stuck:
                cur = await conn.execute("SELECT pid FROM unnest(%s::int[]) AS pid "
                                         "WHERE pg_terminate_backend(pid)", (stuck,))
                ended = [pid for (pid,) in await cur.fetchall()]
            await conn.commit()
        except Exception as exc:  # noqa: BLE001 - the retry goes on whatever happens here
            log.warning("%s: could not look for stuck sessions (%r)", self.handler.name, exc)
            return
        if ended:
            log.warning("%s: ended sessions stuck writing to a client for longer than the "
                        "transaction timeout, holding locks: %s", self.handler.name, ended)

    async def start_handler(self) -> None:
        """The handler and the producer it shares with the dead-letter queue (also for tests that
        drive ``process`` without a consumer)."""
        self.producer = new_producer(self.settings, f"touchstream-{self.handler.name}")
        await self.producer.start()
        await self.handler.start(self.producer)

    async def stop_handler(self) -> None:
        await self.handler.stop()
        if self.producer is not None:
            await self.producer.stop()
        if self._conn is not None:
            await self._conn.close()

    async def on_start(self) -> None:
        s = self.settings
        await self.start_handler()
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
        self._loop_task = asyncio.ensure_future(self._run())

    async def on_stop(self) -> None:
        # The batch loop first (a commit in flight rolls back): the connection is used below.
        await _cancelled(self._loop_task)
        if self._consumer is not None:
            await self._consumer.stop()
        if self._conn is not None and not self._conn.closed:
            with contextlib.suppress(psycopg.Error):  # a stale heartbeat expires by itself
                async with self._conn.transaction():
                    await store.heartbeat(self._conn, self.handler.name, self._worker_id, None)
        await self.stop_handler()

    # -- positions ------------------------------------------------------------------------------

    async def seek_to_tracked(self) -> None:
        """Seek every assigned partition to its tracked offset + 1 (raises if the database does
        not answer: the caller retries)."""
        assert self._consumer is not None
        async with self._db:
            conn = await self.connection()
            async with conn.transaction():
                tracked = await store.read_positions(conn, self.handler.name, self.handler.topic)
        for tp in set(self.assigned):
            # seek(), not seek_to_beginning(): the latter resets the position when the broker
            # answers, possibly after records from the old position were handed out. Before the
            # log's start, the consumer's auto_offset_reset (earliest) takes over.
            offset = tracked.get(tp.partition, -1) + 1
            self._consumer.seek(tp, offset)
            self._sought[tp.partition] = offset
            self._landed.pop(tp.partition, None)
        self.need_seek = False
        self._beat = 0.0
        log.info("%s at tracked positions of %s", self.handler.name,
                 sorted(tp.partition for tp in self.assigned))

    async def _reseek(self) -> None:
        """``seek_to_tracked``, retried until the database answers: skipping ahead is not an option."""
        delay = 0.1
        RESEEKS.labels(self.handler.name).inc()
        while not self.should_stop:
            try:
                return await self.seek_to_tracked()
            except Exception as exc:  # noqa: BLE001 - whatever it is, positions must be re-read
                self._drop_broken_connection()
                log.warning("%s: cannot re-seek (%r), retrying in %.1fs", self.handler.name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _check_contiguous(self, fresh: list[Item], committed: dict[int, int]) -> None:
        """Raise ``Gap`` unless, per partition, the first new record is right after the committed
        offset and the others follow it. The first record taken after a seek to exactly that
        offset shows what the log holds there, so a gap it starts with is the log's own."""
        seen: dict[int, int] = {}
        for r, _ in fresh:
            p = r.partition
            if p in seen:
                if r.offset <= seen[p]:
                    raise Gap(f"partition {p}: offset {r.offset} after {seen[p]} in one batch")
            else:
                due = committed.get(p, -1) + 1
                if r.offset != due:
                    if self._landed.get(p) != (due, r.offset):
                        raise Gap(f"partition {p}: offset {r.offset} where {due} was due")
                    log.warning("%s: partition %d has no records %d..%d (the log skips them)",
                                self.handler.name, p, due, r.offset - 1)
            seen[p] = r.offset

    # -- the batch loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        committing: asyncio.Future | None = None
        try:
            while not self.should_stop:
                try:
                    if self.need_seek:
                        await _cancelled(committing)
                        committing = None
                        await self._reseek()
                    records = await self._take_batch(committing)
                    prepared = self._prepare(records) if records else []
                    last = await committing if committing else {}
                    committing = None
                    self._report_lag(last)
                    await self._heartbeat()
                    if records:
                        batch = list(zip(records, prepared, strict=True))
                        committing = asyncio.ensure_future(self._commit(batch))
                except (asyncio.CancelledError, ConsumerStoppedError):
                    break  # stopping
                except Exception:
                    # Not expected (batches handle their own failures): log, back off, re-seek.
                    log.exception("%s: unexpected failure; resuming from tracked offsets",
                                  self.handler.name)
                    await _cancelled(committing)
                    committing = None
                    self.need_seek = True
                    await asyncio.sleep(1.0)
        finally:
            await _cancelled(committing)

    def _prepare(self, records: list[ConsumerRecord]) -> list[Any]:
        """The handler's ``prepare``; if it fails on the batch, record by record, so that one
        record it cannot even read is refused alone."""
        try:
            return self.handler.prepare(records)
        except Exception:  # noqa: BLE001 - narrowed down below
            out: list[Any] = []
            for r in records:
                try:
                    out += self.handler.prepare([r])
                except Exception as exc:  # noqa: BLE001 - any failure here is this record's
                    out.append(Refused.because(f"{self.handler.name} cannot read it: "
                                               f"{exc!r}", "poison"))
            return out

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
            for tp, rs in got.items():
                if tp.partition in self._sought and rs:
                    self._landed[tp.partition] = (self._sought.pop(tp.partition), rs[0].offset)
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

    async def _commit(self, batch: list[Item]) -> dict[int, int]:
        """Apply a batch; its last offset per partition, or nothing if it was dropped."""
        try:
            await self.apply(batch)
        except Dropped:
            return {}
        last: dict[int, int] = {}
        for r, _ in batch:
            last[r.partition] = r.offset
        return last

    async def apply(self, items: list[Item]) -> None:
        """Commit ``items`` (a run of a batch, in order): outages are retried until they pass,
        a batch found out of place is dropped (``Dropped``, after a re-seek), and a failure that
        retrying cannot fix is narrowed down to the records that cause it, which are refused."""
        delay = 0.1
        while True:
            if self._consumer is not None and not self._holds(items):
                raise Dropped("its partitions moved to another worker")
            try:
                await self.process(items)
                return
            except (Gap, store.PositionConflict) as exc:
                log.warning("%s: batch dropped: %s; re-seeking", self.handler.name, exc)
                if self._consumer is not None:
                    await self._reseek()
                raise Dropped(str(exc)) from exc
            except Exception as exc:  # noqa: BLE001 - sorted into outages and poison below
                outage = is_outage(exc) or self._drop_broken_connection()
                quarantining = len(items) == 1 and isinstance(items[0][1], Refused)
                if outage or quarantining:
                    log.log(logging.ERROR if quarantining and not outage else logging.WARNING,
                            "%s: batch failed (%r), retrying in %.1fs", self.handler.name, exc, delay)
                    if getattr(exc, "sqlstate", None) == LOCK_NOT_AVAILABLE:
                        await self._end_stuck_sessions()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                if len(items) > 1:
                    half = len(items) // 2
                    await self.apply(items[:half])
                    await self.apply(items[half:])
                    return
                if not await self._database_answers():
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                r = items[0][0]
                log.error("%s: %s:%d:%d cannot be applied (%r): quarantined",
                          self.handler.name, r.topic, r.partition, r.offset, exc)
                items = [(r, Refused.because(f"{self.handler.name} cannot apply it: {exc!r}",
                                             "poison"))]

    async def process(self, items: list[Item]) -> dict[int, int]:
        """One transaction: the effects of the new records among ``items``, their dead letters and
        the positions. Raises ``Gap`` for a batch that does not follow the tracked positions."""
        name, topic = self.handler.name, self.handler.topic
        started = time.perf_counter()
        last: dict[int, int] = {}
        for r, _ in items:
            last[r.partition] = r.offset
        refused: list[tuple[ConsumerRecord, Refused]] = []
        fresh: list[Item] = []
        async with self._db:
            conn = await self.connection()
            async with conn.transaction():
                committed, epoch = await store.lock_positions(conn, name, topic, sorted(last))
                if epoch != self._epoch or any(committed.get(p, -1) != self._written.get(p)
                                               for p in last):
                    self._epoch = epoch
                    self.handler.forget()
                    self._written.clear()
                fresh = [(r, item) for r, item in items if r.offset > committed.get(r.partition, -1)]
                self._check_contiguous(fresh, committed)
                moved = {p: o for p, o in last.items() if o > committed.get(p, -1)}
                good = [(r, item) for r, item in fresh if not isinstance(item, Refused)]
                refused = [(r, item) for r, item in fresh if isinstance(item, Refused)]
                on_commit = await self.handler.handle(conn, good) if good else None
                if refused:
                    assert self.producer is not None
                    failed_at = datetime.now(UTC)
                    acks = await send_dead_letters(self.producer, self.settings.dlq_topic, name,
                                                   refused, failed_at)
                    await dlq.record(conn, name, [(r, v, a) for (r, v), a in zip(refused, acks,
                                                                                strict=True)],
                                     failed_at)
                if moved:
                    await store.save_positions(conn, name, topic, moved)
                if good:  # the handler's state is this transaction's only if handle ran in it
                    await self.handler.before_commit(conn)
            self._written.update(moved)
            if on_commit is not None:
                on_commit()
        self.processed += len(fresh)
        PROCESSED.labels(name).inc(len(good))
        for _, verdict in refused:
            DEAD_LETTERED.labels(name).inc()
            if verdict.kind == "poison":
                QUARANTINED.labels(name).inc()
        BATCH_SECONDS.labels(name).observe(time.perf_counter() - started)
        return last

    def _holds(self, items: list[Item]) -> bool:
        held = {tp.partition for tp in self.assigned}
        return all(r.partition in held for r, _ in items)

    def _drop_broken_connection(self) -> bool:
        """Forget a connection that a failure left broken; whether it did (then the failure was
        the connection's, not a record's)."""
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self._conn = None
            return True
        return False

    async def _database_answers(self) -> bool:
        """Before a record is refused as poison: is the database up? (An outage is retried.)"""
        try:
            async with self._db:
                conn = await self.connection()
                await conn.execute("SELECT 1")
                await conn.rollback()
            return True
        except Exception as exc:  # noqa: BLE001 - any failure: not a record's fault
            self._drop_broken_connection()
            log.warning("%s: database not answering (%r)", self.handler.name, exc)
            return False

    def _report_lag(self, last: dict[int, int]) -> None:
        """Lag from the high watermark of fetch responses (never from ListOffsets)."""
        assert self._consumer is not None
        self._next.update({p: o + 1 for p, o in last.items()})
        for tp in self.assigned:
            high = self._consumer.highwater(tp)
            if high is not None and tp.partition in self._next:
                LAG.labels(self.handler.name, str(tp.partition)).set(max(high - self._next[tp.partition], 0))

    async def _heartbeat(self) -> None:
        """Tell readers (``/readyz``) which partitions this worker holds. A failure only delays
        the next heartbeat: it never costs the batch in hand."""
        if time.monotonic() - self._beat < 2.0:
            return
        self._beat = time.monotonic()
        try:
            async with self._db:
                conn = await self.connection()
                async with conn.transaction():
                    await store.heartbeat(conn, self.handler.name, self._worker_id,
                                          sorted(tp.partition for tp in self.assigned))
        except Exception as exc:  # noqa: BLE001
            self._drop_broken_connection()
            log.warning("%s: heartbeat failed (%r)", self.handler.name, exc)


async def _cancelled(task: asyncio.Future | None) -> None:
    """Cancel a commit in flight (its transaction rolls back; the tracked offsets say where to resume)."""
    if task is not None and not task.done():
        task.cancel()
    if task is not None:
        with contextlib.suppress(BaseException):
            await task
