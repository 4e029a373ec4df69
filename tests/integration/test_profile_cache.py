"""A projection worker's profile cache never hides another worker's writes.

Two workers take turns on one partition, as they do around a rebalance: each commits batches
through the real runtime and PostgreSQL. Whoever writes last must build on the other's rows.
"""

from __future__ import annotations

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from services.processors.projector import ProjectionStage
from services.processors.runtime import BatchProcessor
from tests.integration.pipeline import rows
from tests.unit.test_profile_fold import ANN, touch

pytestmark = pytest.mark.integration


def _records(settings, first_offset: int, n: int) -> list[ConsumerRecord]:
    """Touchpoints of one customer at offsets ``first_offset``.., event ids following the offset."""
    return [ConsumerRecord(topic=settings.log_topic, partition=0, offset=first_offset + i,
                           timestamp=0, timestamp_type=0, key=ANN.encode(),
                           value=orjson.dumps(touch(event_id=_event_id(first_offset + i))),
                           checksum=None, serialized_key_size=36, serialized_value_size=0,
                           headers=())
            for i in range(n)]


def _event_id(offset: int) -> str:
    return f"00000000-0000-4000-8000-{offset:012d}"


async def _batch(worker: BatchProcessor, records: list[ConsumerRecord]) -> None:
    await worker.process(list(zip(records, worker.handler.prepare(records), strict=True)))


async def test_workers_taking_turns_on_a_partition_build_on_each_other(settings) -> None:
    a = BatchProcessor(settings, ProjectionStage(settings))
    b = BatchProcessor(settings, ProjectionStage(settings))
    await a.start_handler()
    await b.start_handler()
    try:
        await _batch(a, _records(settings, 0, 3))   # a holds the partition, caches ANN at 3
        await _batch(b, _records(settings, 3, 4))   # a rebalance: b reads ANN back, writes 7
        await _batch(a, _records(settings, 7, 5))   # back to a: its cached 3 is stale
        await _batch(a, _records(settings, 5, 9))   # a redelivery overlapping both: 12..13 are new
    finally:
        for w in (a, b):
            await w.stop_handler()
    profile = (await rows(settings, "SELECT events_count AS n FROM profiles"))[0]
    assert profile["n"] == 14
    (profiles,) = [p for p in a.handler.projections if p.name == "profile"]
    assert len(profiles.cache) == 1
