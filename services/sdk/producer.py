"""A small producer for channels that talk Kafka: validate locally, publish to touchpoints.raw.

    from services.sdk import TouchstreamProducer

    with TouchstreamProducer("broker:9092") as producer:
        event_id = producer.publish({"type": "call", "customer": {"phone": "+442079460958"}, ...})
        producer.flush()          # waits for acks=all; raises PublishError naming failed ids

Invalid events raise ``events.InvalidEvent`` (with field and reason) before anything is sent.
Give each event an ``event_id`` of your own when you may send it again: Touchstream counts an
event id once.

``publish`` validates and queues; a background thread sends the queue every ``linger_ms`` (or
as soon as ``batch_events`` are waiting) as one record batch per partition, with acks=all, the
way the gateway sends a batch. At most ``max_pending`` events wait for their acknowledgement:
``publish`` blocks beyond that, so a publisher faster than the broker does not run out of memory.
(aiokafka builds record batches in C; kafka-python's per-record send encodes each record in
Python, which cost more than validating it: BENCHMARKS.md.)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from events import TouchpointEvent, parse_touchpoint, with_recorded_at
from services import wire
from services.kafka import by_crc32c, send_grouped


class PublishError(RuntimeError):
    def __init__(self, failed: dict[str, BaseException]):
        self.failed = failed
        super().__init__(f"{len(failed)} event(s) not acknowledged by the broker: "
                         + ", ".join(f"{i} ({e!r})" for i, e in list(failed.items())[:5]))


class TouchstreamProducer:
    def __init__(self, bootstrap_servers: str, topic: str = "touchpoints.raw", *, linger_ms: int = 5,
                 batch_events: int = 5000, max_pending: int = 100_000, timeout_s: float = 30.0,
                 signing_key: str = "", **kafka_config: Any):
        """``signing_key``: the platform's ``SIGNING_KEY``, if this channel is trusted with it; its
        records are then sealed and the identity stage reads them without validating them again
        (without it they are validated there in full, which is correct, only slower).
        ``kafka_config`` goes to aiokafka's producer (security settings, client_id, ...)."""
        self.topic = topic
        self._key = wire.signing_key(signing_key)
        self.linger_s, self.batch_events, self.max_pending = linger_ms / 1000, batch_events, max_pending
        self.timeout_s = timeout_s
        self._lock = threading.Condition()
        self._queued: list[tuple[str, tuple[bytes, bytes, list]]] = []
        self._pending = 0  # queued or in flight
        self._in_flight: dict[int, list[tuple[str, tuple[bytes, bytes, list]]]] = {}
        self._failed: dict[str, BaseException] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="touchstream-sdk",
                                        daemon=True)
        self._thread.start()
        config = {"acks": "all", "client_id": "touchstream-sdk", "max_batch_size": 1024 * 1024,
                  "request_timeout_ms": int(timeout_s * 1000),
                  "max_request_size": 8 * 1024 * 1024, "partitioner": by_crc32c, **kafka_config}
        self._wake = asyncio.Event()
        self._pump_task: asyncio.Task | None = None
        try:
            self._producer = self._call(self._start(bootstrap_servers, config))
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            raise
        self._pump = asyncio.run_coroutine_threadsafe(self._send_forever(), self._loop)

    def publish(self, event: dict[str, Any] | TouchpointEvent) -> str:
        """Validate and queue one event; returns its event id. Raises InvalidEvent."""
        if not isinstance(event, TouchpointEvent):
            stamp = None if isinstance(event, dict) and event.get("recorded_at") else datetime.now(UTC)
            event = parse_touchpoint(event, recorded_at=stamp)
        elif event.recorded_at is None:
            event = with_recorded_at(event, datetime.now(UTC))
        record = wire.raw_record(event, self._key)
        with self._lock:
            while self._pending >= self.max_pending:
                if self._pump.done():
                    self._pump.result()  # the sender died: say why
                self._lock.wait(1.0)
            self._queued.append((event.event_id, record))
            self._pending += 1
            full = len(self._queued) == self.batch_events
        if full:
            self._loop.call_soon_threadsafe(self._wake.set)
        return event.event_id

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued event is acknowledged (acks=all); raise PublishError naming the
        events that were not, and forget them."""
        self._loop.call_soon_threadsafe(self._wake.set)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._pending and not self._pump.done():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._lock.wait(min(left, 1.0) if left is not None else 1.0)
            failed, self._failed = self._failed, {}
            if self._pending:  # not acknowledged in time (or the sender stopped)
                late = [*self._queued, *(item for sent in self._in_flight.values() for item in sent)]
                failed.update({i: TimeoutError("no acknowledgement in time") for i, _ in late})
        if self._pump.done() and not self._pump.cancelled():
            self._pump.result()  # the sender died: say why
        if failed:
            raise PublishError(failed)

    def close(self, timeout: float | None = None) -> None:
        try:
            self.flush(timeout)
        finally:
            self._call(self._shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()

    def __enter__(self) -> TouchstreamProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # The sender thread.

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _start(self, bootstrap_servers: str, config: dict[str, Any]) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, **config)
        await producer.start()
        return producer

    async def _shutdown(self) -> None:
        pump = self._pump_task
        assert pump is not None
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        await self._producer.stop()

    async def _send_forever(self) -> None:
        """Every linger (or when a batch is full, or on flush): send what is queued. Up to four
        sends are in flight; the client keeps one batch per partition in flight, so records of a
        partition stay in the order they were published."""
        self._pump_task = asyncio.current_task()
        sending: set[asyncio.Task] = set()
        room = asyncio.Semaphore(4)
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.linger_s):  # wait_for could swallow a cancel
                        await self._wake.wait()
                self._wake.clear()
                with self._lock:
                    taken, self._queued = self._queued, []
                    if taken:
                        self._in_flight[id(taken)] = taken
                if taken:
                    await room.acquire()
                    task = asyncio.ensure_future(self._send(taken))
                    sending.add(task)
                    task.add_done_callback(sending.discard)
                    task.add_done_callback(lambda _: room.release())
        finally:  # closing: what is still in flight was reported by flush()
            for task in sending:
                task.cancel()
            await asyncio.gather(*sending, return_exceptions=True)

    async def _send(self, taken: list[tuple[str, tuple[bytes, bytes, list]]]) -> None:
        try:
            errors = await send_grouped(self._producer, self.topic, [r for _, r in taken], self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - every event of the send failed; flush() says so
            errors = [exc] * len(taken)
        with self._lock:
            self._failed.update({event_id: e for (event_id, _), e in zip(taken, errors, strict=True)
                                 if e is not None})
            self._pending -= len(taken)
            self._in_flight.pop(id(taken), None)
            self._lock.notify_all()
