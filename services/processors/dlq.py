"""Dead letters: the original bytes of a record that could not be processed, with the reason.

The record value is the original bytes, untouched (so it can be repaired and re-published);
the reason and the source position travel in headers, as Kafka Connect does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

DDL = """
CREATE TABLE IF NOT EXISTS dead_letters (
    source_topic     text   NOT NULL,
    source_partition int    NOT NULL,
    source_offset    bigint NOT NULL,
    stage            text   NOT NULL,      -- which processor refused it
    error            text   NOT NULL,      -- one line
    errors           jsonb  NOT NULL,      -- [{"field": ..., "reason": ...}]
    original         bytea  NOT NULL,
    failed_at        timestamptz NOT NULL,
    dlq_partition    int    NOT NULL,
    dlq_offset       bigint NOT NULL,
    PRIMARY KEY (dlq_partition, dlq_offset)
);
"""


def headers(stage: str, topic: str, partition: int, offset: int,
            errors: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    summary = "; ".join(f"{e['field']}: {e['reason']}" if e.get("field") else e["reason"]
                        for e in errors)
    return [
        ("ts-stage", stage.encode()),
        ("ts-error", summary[:2000].encode()),
        ("ts-errors", orjson.dumps(errors)),
        ("ts-source-topic", topic.encode()),
        ("ts-source-partition", str(partition).encode()),
        ("ts-source-offset", str(offset).encode()),
        ("ts-failed-at", datetime.now(UTC).isoformat().encode()),
    ]


def parse_headers(raw: list[tuple[str, bytes]] | dict[str, bytes]) -> dict[str, Any]:
    h = dict(raw)
    return {
        "stage": h.get("ts-stage", b"").decode(),
        "error": h.get("ts-error", b"").decode(),
        "errors": orjson.loads(h.get("ts-errors", b"[]")),
        "source_topic": h.get("ts-source-topic", b"").decode(),
        "source_partition": int(h.get("ts-source-partition", b"-1")),
        "source_offset": int(h.get("ts-source-offset", b"-1")),
        "failed_at": h.get("ts-failed-at", b"").decode() or datetime.now(UTC).isoformat(),
    }
