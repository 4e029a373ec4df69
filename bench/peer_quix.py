"""The benchmark's quixstreams peer: a StreamingDataFrame whose BatchingSink runs our two projections.

quixstreams flushes its sinks at each checkpoint, one ``write`` per partition's batch; each write
is one PostgreSQL transaction, through the same (async) store functions, on a loop the sink owns.
Run (quixstreams is in the ``bench`` extra):
``KAFKA_BOOTSTRAP_SERVERS=.. DATABASE_URL=.. LOG_TOPIC=.. PEER_GROUP=.. python -m bench.peer_quix``
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import psycopg
from quixstreams import Application
from quixstreams.sinks import BatchingSink, SinkBatch

from bench.peers import project

PROCESSOR = "peer-quix"
# A checkpoint then holds a few thousand events, like our batches (PEER_COMMIT_INTERVAL_S overrides;
# 2 s measured the same, quixstreams' default of 5 s made steps too coarse to time).
COMMIT_INTERVAL_S = 0.5


class ProjectionSink(BatchingSink):
    def __init__(self, database_url: str):
        super().__init__()
        self.database_url = database_url
        self._loop = asyncio.new_event_loop()
        self._conn: psycopg.AsyncConnection | None = None

    def setup(self) -> None:
        self._conn = self._loop.run_until_complete(
            psycopg.AsyncConnection.connect(self.database_url, autocommit=True))

    def write(self, batch: SinkBatch) -> None:
        self._loop.run_until_complete(self._write(batch))

    async def _write(self, batch: SinkBatch) -> None:
        assert self._conn is not None
        async with self._conn.transaction():
            await project(self._conn, PROCESSOR,
                          [(item.value, batch.partition, item.offset) for item in batch])


def build_app(env: dict[str, str]) -> Application:
    app = Application(
        broker_address=env["KAFKA_BOOTSTRAP_SERVERS"],
        consumer_group=env["PEER_GROUP"],
        auto_offset_reset="earliest",
        commit_interval=float(env.get("PEER_COMMIT_INTERVAL_S", COMMIT_INTERVAL_S)),
        consumer_extra_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000},
        state_dir=Path(env.get("PEER_STATE_DIR", "."), "quix-state"),
        auto_create_topics=False,  # the topic exists, with its 6 partitions
        use_changelog_topics=False,  # no state: nothing to recover
        loglevel="WARNING",
    )
    topic = app.topic(env["LOG_TOPIC"], value_deserializer="json", key_deserializer="bytes")
    app.dataframe(topic).sink(ProjectionSink(env["DATABASE_URL"]))
    return app


def main() -> None:
    build_app(dict(os.environ)).run()


if __name__ == "__main__":
    main()
