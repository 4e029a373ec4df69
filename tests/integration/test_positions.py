"""Tracked positions only move forward, with no gaps: what a worker applies follows the commit."""

from __future__ import annotations

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from services import store
from services.processors.projector import ProjectionStage
from services.processors.runtime import BatchProcessor, Gap
from tests.integration.pipeline import rows
from tests.unit.test_profile_fold import ANN, touch

pytestmark = pytest.mark.integration


def _records(settings, first: int, n: int, partition: int = 0) -> list[ConsumerRecord]:
    return [ConsumerRecord(topic=settings.log_topic, partition=partition, offset=first + i,
                           timestamp=0, timestamp_type=0, key=ANN.encode(),
                           value=orjson.dumps(touch(event_id=f"00000000-0000-4000-8000-{partition}"
                                                             f"{first + i:011d}")),
                           checksum=None, serialized_key_size=36, serialized_value_size=0,
                           headers=())
            for i in range(n)]


async def _apply(worker: BatchProcessor, records: list[ConsumerRecord]) -> None:
    await worker.process(list(zip(records, worker.handler.prepare(records), strict=True)))


async def _tracked(settings) -> dict[int, int]:
    found = await rows(settings, 'SELECT partition, "offset" FROM ts_tracking WHERE processor = %s',
                       "projections")
    return {r["partition"]: r["offset"] for r in found}


@pytest.fixture
async def workers(settings):
    a, b = (BatchProcessor(settings, ProjectionStage(settings)) for _ in range(2))
    await a.start_handler()
    await b.start_handler()
    yield a, b
    for w in (a, b):
        await w.stop_handler()


async def test_a_stale_batch_of_a_worker_that_lost_its_partition_does_not_rewind(settings, workers):
    a, b = workers
    await _apply(a, _records(settings, 0, 5))        # a holds partition 0: 0..4
    await _apply(b, _records(settings, 5, 10))       # a rebalance: b applies 5..14
    await _apply(a, _records(settings, 5, 3))        # a retries its stale batch 5..7
    assert await _tracked(settings) == {0: 14}
    assert (await rows(settings, "SELECT events_count AS n FROM profiles"))[0]["n"] == 15


async def test_a_batch_that_does_not_start_after_the_committed_offset_is_not_applied(settings, workers):
    a, _ = workers
    await _apply(a, _records(settings, 0, 5))
    with pytest.raises(Gap):
        await _apply(a, _records(settings, 7, 3))    # 5 and 6 were never applied
    with pytest.raises(Gap):                          # out of order inside one batch
        await _apply(a, [*_records(settings, 5, 2), *_records(settings, 5, 1)])
    assert await _tracked(settings) == {0: 4}
    await _apply(a, _records(settings, 5, 5))        # the re-fetch from 5 applies
    assert await _tracked(settings) == {0: 9}
    assert (await rows(settings, "SELECT count(*)::int AS n FROM contacts"))[0]["n"] == 10


async def test_a_position_never_moves_backwards_in_the_store(settings) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        async with conn.transaction():
            await store.lock_positions(conn, "p", "t", [0])
            await store.save_positions(conn, "p", "t", {0: 10})
        for offset in (10, 3):
            with pytest.raises(store.PositionConflict):
                async with conn.transaction():
                    await store.save_positions(conn, "p", "t", {0: offset})
        cur = await conn.execute("SELECT \"offset\" FROM ts_tracking WHERE processor = 'p'")
        assert (await cur.fetchone())[0] == 10
