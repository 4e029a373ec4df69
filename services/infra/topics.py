"""Topics are created explicitly, with the partition count their consumers expect."""

from __future__ import annotations

import contextlib
import time

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from services.config import Settings


def ensure_topics(settings: Settings, names: list[str] | None = None, timeout_s: float = 30) -> None:
    names = names or [settings.raw_topic, settings.log_topic, settings.dlq_topic]
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers,
                                     client_id="touchstream-admin")
            break
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        existing = set(admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            new = [NewTopic(n, settings.partitions, settings.replication_factor) for n in missing]
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
    finally:
        admin.close()
