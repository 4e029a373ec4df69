"""Topics are created explicitly, with the partition count their consumers expect."""

from __future__ import annotations

import contextlib
import time

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError, UnknownTopicOrPartitionError

from services.config import Settings


def _admin(settings: Settings, timeout_s: float) -> KafkaAdminClient:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers,
                                    client_id="touchstream-admin")
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def delete_topics(settings: Settings, names: list[str], timeout_s: float = 30) -> None:
    admin = _admin(settings, timeout_s)
    try:
        with contextlib.suppress(UnknownTopicOrPartitionError):
            admin.delete_topics(names)
    finally:
        admin.close()


def ensure_topics(settings: Settings, names: list[str] | None = None, timeout_s: float = 30) -> None:
    names = names or [settings.raw_topic, settings.log_topic, settings.dlq_topic,
                      settings.customer_changes_topic, settings.alerts_topic]
    admin = _admin(settings, timeout_s)
    try:
        existing = set(admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            new = [NewTopic(n, settings.partitions, settings.replication_factor) for n in missing]
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
    finally:
        admin.close()
