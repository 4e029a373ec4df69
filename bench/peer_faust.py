"""The benchmark's faust peer: an idiomatic faust-streaming agent running our two projections.

``stream.take_events(1000, within=0.1)`` (``take`` with the events, for their partition and
offset), one PostgreSQL transaction per batch, faust committing the offsets. Run:
``KAFKA_BOOTSTRAP_SERVERS=.. DATABASE_URL=.. LOG_TOPIC=.. PEER_GROUP=.. python -m bench.peer_faust``
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import faust
import orjson
import psycopg

from bench.peers import project

PROCESSOR = "peer-faust"


def build_app(env: dict[str, str]) -> faust.App:
    app = faust.App(
        env["PEER_GROUP"],
        broker=[f"kafka://{h}" for h in env["KAFKA_BOOTSTRAP_SERVERS"].split(",")],
        store="memory://",
        datadir=Path(env.get("PEER_STATE_DIR", "."), "faust-data"),
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=False,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        consumer_auto_offset_reset="earliest",
    )
    log = app.topic(env["LOG_TOPIC"], key_type=bytes, value_type=bytes, key_serializer="raw",
                    value_serializer="raw")
    database_url = env["DATABASE_URL"]

    @app.agent(log, name="projections")
    async def projections(stream):
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            async for batch in stream.take_events(1000, within=0.1):
                async with conn.transaction():
                    await project(conn, PROCESSOR, [
                        (orjson.loads(e.value), e.message.partition, e.message.offset) for e in batch])

    return app


def main() -> None:
    sys.argv = [sys.argv[0], "worker"]
    faust.Worker(build_app(dict(os.environ)), loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
