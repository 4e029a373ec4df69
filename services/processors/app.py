"""The worker: a faust-streaming application hosting Touchstream's processors.

The stages (identity, projections) are batch processors (``mode`` services that own an aiokafka
consumer and hand whole batches to the folds): faust's per-event stream path costs more than the
folds themselves (BENCHMARKS.md). Dead letters are written by the runtime, in the transaction
that moves a stage past them. faust hosts the services and runs the worker's lifecycle.
"""

from __future__ import annotations

import logging
from pathlib import Path

import faust
from faust.app.base import BootStrategy

from projections.jobs import quiet_collector
from services.config import Settings
from services.processors.runtime import BatchProcessor
from services.processors.stages import STAGES

log = logging.getLogger(__name__)


class StagesOnly(BootStrategy):
    """Each stage owns its consumer and producer: faust's own Kafka clients stay off (with no
    agent, its consumer would have nothing to subscribe to)."""

    enable_kafka = False


class WorkerApp(faust.App):
    BootStrategy = StagesOnly


def build_app(settings: Settings, stages: list[str] | None = None) -> faust.App:
    datadir = Path(settings.state_dir, "faust").resolve()
    datadir.parent.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    app = WorkerApp(
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
    return app


def run_worker(settings: Settings, stages: list[str] | None = None, loglevel: str = "info") -> None:
    app = build_app(settings, stages)
    quiet_collector()
    faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
