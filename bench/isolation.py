"""Isolation: what one poison record costs a batch of 5,000 in our projection stage.

A batch of resolved touchpoints (as the identity stage writes them to the log of record, spread
over the partitions by key and ordered as the consumer hands them out) is committed by the
runtime's ``apply``: one transaction with the rows, the dead letters and the tracking positions.
The poisoned batch has one record in the middle that PostgreSQL refuses (a NUL in ``source``:
text cannot hold it), so the batch is split in halves until that record is alone (about
log2(5,000) = 13 rolled-back transactions), the record goes to the DLQ topic and table, and the
other 4,999 commit. Clean and poisoned batches alternate, with fresh events at the next offsets,
after one clean batch to warm up; the medians are reported:
``us_per_record`` = (poisoned - clean) / batch size, and ``ratio`` = poisoned / clean.

Run it alone: ``python -m bench.isolation`` (an embedded broker and PostgreSQL of its own, under
``STATE_DIR/bench-isolation``, started as ``python -m bench`` starts them).
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import time
import uuid
from pathlib import Path

import orjson
from aiokafka.structs import ConsumerRecord

from bench.env import END, BenchEnv
from services.config import Settings
from services.kafka import partition_for
from services.processors.identity import read, resolved_record, utc_text
from services.processors.projector import ProjectionStage
from services.processors.runtime import BatchProcessor
from services.sample import SampleSpec, generate

BATCH = 5_000
ROUNDS = 9
POISON = {"source": "sh\x00op"}  # PostgreSQL text cannot hold NUL: COPY refuses the row


def resolved_values(n: int, customers: int, seed: int = 31) -> list[tuple[bytes, bytes]]:
    """(key, value) of ``n`` sample touchpoints as the identity stage publishes them; a customer
    id is derived from the identifiers an event carries."""
    now = utc_text(END)
    out = []
    for e in generate(SampleSpec(customers=customers, events=n, seed=seed, end=END)):
        doc = read(_record(0, 0, b"", orjson.dumps(e)), now)
        ids = orjson.dumps(e["customer"], option=orjson.OPT_SORT_KEYS).decode()
        cid = str(uuid.uuid5(uuid.NAMESPACE_OID, ids))
        out.append((cid.encode(), resolved_record(doc, cid)))
    return out


def _record(partition: int, offset: int, key: bytes, value: bytes, topic: str = "") -> ConsumerRecord:
    return ConsumerRecord(topic=topic, partition=partition, offset=offset, timestamp=0,
                          timestamp_type=0, key=key, value=value, checksum=None,
                          serialized_key_size=len(key), serialized_value_size=len(value),
                          headers=())


class Log:
    """Hands out batches as the consumer would: each record at the next offset of its key's
    partition, a batch grouped by partition."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.next: dict[int, int] = {}

    def batch(self, values: list[tuple[bytes, bytes]], poison_at: int | None = None) -> list[ConsumerRecord]:
        by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
        for key, value in values:
            by_partition.setdefault(partition_for(key, self.settings.partitions), []).append((key, value))
        records = []
        for p in sorted(by_partition):
            for key, value in by_partition[p]:
                offset = self.next.get(p, 0)
                self.next[p] = offset + 1
                records.append(_record(p, offset, key, value, self.settings.log_topic))
        if poison_at is not None:
            r = records[poison_at]
            value = orjson.dumps({**orjson.loads(r.value), **POISON})
            records[poison_at] = _record(r.partition, r.offset, r.key, value, r.topic)
        return records


async def measure(settings: Settings, batch: int = BATCH, rounds: int = ROUNDS) -> dict:
    values = resolved_values(batch * (2 * rounds + 1), customers=max(batch // 5, 100))
    chunks = [values[i:i + batch] for i in range(0, len(values), batch)]
    log = Log(settings)
    worker = BatchProcessor(settings, ProjectionStage(settings))
    await worker.start_handler()
    times: dict[str, list[float]] = {"clean": [], "poisoned": []}
    try:
        async def apply(records: list[ConsumerRecord]) -> float:
            items = list(zip(records, worker.handler.prepare(records), strict=True))
            started = time.perf_counter()
            await worker.apply(items)
            return time.perf_counter() - started

        await apply(log.batch(chunks[0]))  # warm-up: connections, caches, the first profiles
        for i in range(rounds):
            times["clean"].append(await apply(log.batch(chunks[1 + 2 * i])))
            times["poisoned"].append(await apply(log.batch(chunks[2 + 2 * i], poison_at=batch // 2)))
    finally:
        await worker.stop_handler()
    clean, poisoned = statistics.median(times["clean"]), statistics.median(times["poisoned"])
    return {"batch": batch, "rounds": rounds,
            "clean_ms": clean * 1e3, "poisoned_ms": poisoned * 1e3,
            "us_per_record": (poisoned - clean) / batch * 1e6, "ratio": poisoned / clean,
            "clean_ms_all": [round(t * 1e3, 1) for t in times["clean"]],
            "poisoned_ms_all": [round(t * 1e3, 1) for t in times["poisoned"]]}


def run(env: BenchEnv, batch: int = BATCH, rounds: int = ROUNDS) -> dict:
    return asyncio.run(measure(env.isolated(), batch, rounds))


def main() -> None:
    from bench.run import log
    from services.config import get_settings

    # a state directory of its own: a full run may be using the bench's at the same time
    state_dir = Path(get_settings().state_dir) / "bench-isolation"
    shutil.rmtree(state_dir, ignore_errors=True)
    env = BenchEnv.start(Settings(state_dir=state_dir))
    try:
        log(f"isolation: one poison record in a batch of {BATCH:,}, {ROUNDS} rounds")
        out = run(env)
    finally:
        env.stop()
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    print(f"isolating one poison record in a batch of {out['batch']:,}: "
          f"{out['us_per_record']:.1f} us per record ({out['clean_ms']:.0f} ms clean, "
          f"{out['poisoned_ms']:.0f} ms with the poison record, ratio {out['ratio']:.2f})")


if __name__ == "__main__":
    main()
