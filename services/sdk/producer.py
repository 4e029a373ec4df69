"""A small producer for channels that talk Kafka: validate locally, publish to touchpoints.raw.

    from services.sdk import TouchstreamProducer

    with TouchstreamProducer("broker:9092") as producer:
        event_id = producer.publish({"type": "call", "customer": {"phone": "+442079460958"}, ...})
        producer.flush()          # waits for acks=all; raises PublishError naming failed ids

Invalid events raise ``events.InvalidEvent`` (with field and reason) before anything is sent.
Give each event an ``event_id`` of your own when you may send it again: Touchstream counts an
event id once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kafka import KafkaProducer
from kafka.partitioner import Partitioner

from events import TouchpointEvent, parse_touchpoint, with_recorded_at
from services.kafka import by_crc32c
from services.wire import raw_record


class PublishError(RuntimeError):
    def __init__(self, failed: dict[str, BaseException]):
        self.failed = failed
        super().__init__(f"{len(failed)} event(s) not acknowledged by the broker: "
                         + ", ".join(f"{i} ({e!r})" for i, e in list(failed.items())[:5]))


class _Crc32c(Partitioner):
    """The partitioner of every Touchstream producer (``services.kafka.by_crc32c``)."""

    def partition(self, topic, key, serialized_key, value, serialized_value, cluster) -> int:
        partitions = sorted(cluster.partitions_for_topic(topic))
        return by_crc32c(serialized_key, partitions, partitions)


class TouchstreamProducer:
    def __init__(self, bootstrap_servers: str, topic: str = "touchpoints.raw", **kafka_config: Any):
        config = {"acks": "all", "linger_ms": 5, "batch_size": 256 * 1024,
                  "client_id": "touchstream-sdk", "partitioner": _Crc32c(), **kafka_config}
        self.topic = topic
        self._producer = KafkaProducer(bootstrap_servers=bootstrap_servers, **config)
        self._pending: list[tuple[str, Any]] = []
        self._failed: dict[str, BaseException] = {}
        self._settle_at = 50_000

    def publish(self, event: dict[str, Any] | TouchpointEvent) -> str:
        """Validate and enqueue one event; returns its event id. Raises InvalidEvent."""
        if not isinstance(event, TouchpointEvent):
            stamp = None if isinstance(event, dict) and event.get("recorded_at") else datetime.now(UTC)
            event = parse_touchpoint(event, recorded_at=stamp)
        elif event.recorded_at is None:
            event = with_recorded_at(event, datetime.now(UTC))
        key, value, headers = raw_record(event)
        future = self._producer.send(self.topic, key=key, value=value, headers=headers)
        self._pending.append((event.event_id, future))
        if len(self._pending) >= self._settle_at:
            self._settle()
        return event.event_id

    def _settle(self) -> None:
        """Forget acknowledged sends, keep failures for flush() (bounded memory between flushes)."""
        still = []
        for event_id, future in self._pending:
            if not future.is_done:
                still.append((event_id, future))
            elif future.exception is not None:
                self._failed[event_id] = future.exception
        self._pending = still
        self._settle_at = len(still) + 50_000

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every enqueued event is acknowledged (acks=all)."""
        self._producer.flush(timeout)
        self._settle()
        failed = {**self._failed,
                  **{i: TimeoutError("no acknowledgement in time") for i, _ in self._pending}}
        self._pending, self._failed = [], {}
        if failed:
            raise PublishError(failed)

    def close(self, timeout: float | None = None) -> None:
        try:
            self.flush(timeout)
        finally:
            self._producer.close(timeout)

    def __enter__(self) -> TouchstreamProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
