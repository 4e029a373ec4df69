"""Dead letters: the original bytes of a record a stage could not process, with the reason.

A dead letter goes to two places in the transaction that moves the stage past the record: the
``touchpoints.dlq`` topic (value: the original bytes, untouched, so that it can be repaired and
re-published; the reason and the source position in headers, as Kafka Connect does) and the
``dead_letters`` table, one row per stage and source position. The topic is written and
acknowledged before the transaction commits, so a crash in between can only repeat a DLQ
record (readers de-duplicate by the source position); the table row is written exactly once.

An operator repairs a dead letter from the table (``touchstream dlq``, services/dlq_cli.py): each
row has a short ``id``, a ``status`` and, in ``dead_letter_history``, what was done with it, by
whom and when.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from events.strings import printable

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
    kind             text   NOT NULL DEFAULT 'invalid'  -- invalid: refused by validation;
                                                        -- poison: failed the stage's write path
);
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'invalid';
DO $$ BEGIN  -- rows were keyed by their DLQ position: one source record could appear twice
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'dead_letters_pkey'
               AND conrelid = 'dead_letters'::regclass
               AND pg_get_constraintdef(oid) LIKE '%dlq_partition%') THEN
        ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_pkey;
        DELETE FROM dead_letters a USING dead_letters b
        WHERE (a.stage, a.source_topic, a.source_partition, a.source_offset)
            = (b.stage, b.source_topic, b.source_partition, b.source_offset) AND a.ctid > b.ctid;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'dead_letters_pkey'
                   AND conrelid = 'dead_letters'::regclass) THEN
        ALTER TABLE dead_letters
            ADD PRIMARY KEY (stage, source_topic, source_partition, source_offset);
    END IF;
END $$;
-- Repair (touchstream dlq): a short id to type, and where a replay of the record stands.
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS id bigint GENERATED ALWAYS AS IDENTITY;
CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_id ON dead_letters (id);
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'open';
    -- open | replaying: its event is kept and being published | replayed: the broker has it
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS replay_event bytea;
    -- the event a replay publishes, kept before it is sent: an interrupted replay sends it again
CREATE TABLE IF NOT EXISTS dead_letter_history (
    dead_letter_id bigint      NOT NULL,   -- dead_letters.id
    done_at        timestamptz NOT NULL DEFAULT now(),
    action         text        NOT NULL,   -- replaying | replayed
    done_by        text        NOT NULL,
    detail         jsonb       NOT NULL    -- event id, where it came from, where it was published
);
CREATE INDEX IF NOT EXISTS dead_letter_history_letter ON dead_letter_history (dead_letter_id, done_at);
"""

@dataclass(frozen=True)
class Refused:
    """A stage's verdict on one record it will not apply: why, field by field. ``kind`` is
    ``invalid`` (validation refused it) or ``poison`` (the write path failed on it alone)."""

    errors: list[dict[str, Any]]
    kind: str = "invalid"

    @classmethod
    def because(cls, reason: str, kind: str = "invalid") -> Refused:
        return cls([{"field": None, "reason": reason}], kind)

    def cleaned(self) -> list[dict[str, Any]]:
        return [{"field": printable(str(e["field"])) if e.get("field") else None,
                 "reason": printable(str(e["reason"]))} for e in self.errors]

    def summary(self) -> str:
        return "; ".join(f"{e['field']}: {e['reason']}" if e["field"] else e["reason"]
                         for e in self.cleaned())[:2000]


def headers(stage: str, topic: str, partition: int, offset: int, refused: Refused,
            failed_at: datetime) -> list[tuple[str, bytes]]:
    return [
        ("ts-stage", stage.encode()),
        ("ts-error", refused.summary().encode()),
        ("ts-errors", orjson.dumps(refused.cleaned())),
        ("ts-kind", refused.kind.encode()),
        ("ts-source-topic", topic.encode()),
        ("ts-source-partition", str(partition).encode()),
        ("ts-source-offset", str(offset).encode()),
        ("ts-failed-at", failed_at.isoformat().encode()),
    ]


def parse_headers(raw: list[tuple[str, bytes]] | dict[str, bytes]) -> dict[str, Any]:
    h = dict(raw)
    return {
        "stage": h.get("ts-stage", b"").decode(),
        "error": h.get("ts-error", b"").decode(),
        "errors": orjson.loads(h.get("ts-errors", b"[]")),
        "kind": h.get("ts-kind", b"invalid").decode(),
        "source_topic": h.get("ts-source-topic", b"").decode(),
        "source_partition": int(h.get("ts-source-partition", b"-1")),
        "source_offset": int(h.get("ts-source-offset", b"-1")),
        "failed_at": h.get("ts-failed-at", b"").decode() or datetime.now(UTC).isoformat(),
    }


async def record(conn: psycopg.AsyncConnection, stage: str, letters: list[tuple[Any, Refused, Any]],
                 failed_at: datetime) -> None:
    """Keep dead letters in the table, in the caller's transaction: (source record, verdict,
    the DLQ topic's acknowledgement of it)."""
    if not letters:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO dead_letters (source_topic, source_partition, source_offset, stage, error, "
            "errors, original, failed_at, dlq_partition, dlq_offset, kind) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [(r.topic, r.partition, r.offset, stage, refused.summary(), Jsonb(refused.cleaned()),
              r.value if r.value is not None else b"", failed_at, ack.partition, ack.offset,
              refused.kind)
             for r, refused, ack in letters])
