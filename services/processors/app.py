"""The worker: a faust-streaming application hosting Touchstream's processors.

The high-volume stages (identity, projections) are batch processors (``mode`` services that own
an aiokafka consumer and hand whole batches to the folds); faust's per-event stream path would cap
them near 16k events/s. Low-volume streams use faust agents: the dead-letter agent below keeps
the ``dead_letters`` read model that ops query.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import faust
import psycopg
from psycopg.types.json import Jsonb

from services.config import Settings
from services.processors import dlq
from services.processors.identity import IdentityStage
from services.processors.projector import ProjectionStage
from services.processors.runtime import BatchProcessor

STAGES = {"identity": IdentityStage, "projections": ProjectionStage}
log = logging.getLogger(__name__)


def build_app(settings: Settings, stages: list[str] | None = None) -> faust.App:
    datadir = Path(settings.state_dir, "faust").resolve()
    datadir.parent.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    app = faust.App(
        settings.group("workers"),
        broker=[f"kafka://{h}" for h in settings.kafka_bootstrap_servers.split(",")],
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=False,
        topic_partitions=settings.partitions,
        broker_session_timeout=settings.session_timeout_ms / 1000,
        broker_heartbeat_interval=settings.heartbeat_interval_ms / 1000,
        consumer_auto_offset_reset="earliest",
    )
    for name in stages or list(STAGES):
        app.service(BatchProcessor(settings, STAGES[name](settings)))
    dead_letters = app.topic(settings.dlq_topic, key_type=bytes, value_type=bytes,
                             key_serializer="raw", value_serializer="raw")

    @app.agent(dead_letters, name="dead-letters")
    async def keep_dead_letters(stream):  # pragma: no cover - exercised through the worker
        async with await psycopg.AsyncConnection.connect(settings.database_url,
                                                         autocommit=True) as conn:
            async for event in stream.events():
                msg = event.message
                meta = dlq.parse_headers(msg.headers or [])
                await conn.execute(
                    "INSERT INTO dead_letters VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT DO NOTHING",
                    (meta["source_topic"], meta["source_partition"], meta["source_offset"],
                     meta["stage"], meta["error"], Jsonb(meta["errors"]),
                     event.value or b"", meta["failed_at"], msg.partition, msg.offset))

    return app


def run_worker(settings: Settings, stages: list[str] | None = None, loglevel: str = "info") -> None:
    app = build_app(settings, stages)
    # A batch allocates tens of thousands of short-lived dicts: at the default thresholds the
    # collector ran every few hundred allocations and rescanned everything start-up had loaded.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
