"""What the fault tests share: worker processes, a paced publisher, the end of a stream, and the
tally of what the read models hold against what was acknowledged.

A fault test stops, pauses or kills something real (a private PostgreSQL or broker started by the
test, a worker process), then waits until both stages have committed up to the ends of their
topics and counts. The counts are black-box: rows of ``contacts`` per event id,
``profiles.events_count``, ``ts_processed_events`` and ``dead_letters``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from psycopg.conninfo import make_conninfo

from services.config import Settings
from services.kafka import topic_ends
from services.processors.dlq import parse_headers
from services.processors.identity import read, resolved_record
from services.sample import SampleSpec, generate
from services.sdk import PublishError, TouchstreamProducer
from tests.conftest import eventually
from tests.integration.pipeline import read_topic, rows

# stage -> the topic it reads
TOPICS = {"identity": "raw_topic", "projections": "log_topic", "archive": "log_topic"}
STAGES = ("identity", "projections")  # what the fault tests' workers run unless told
END = datetime(2026, 10, 1, tzinfo=UTC)


def sample(n: int, customers: int, seed: int) -> list[dict[str, Any]]:
    """``n`` realistic touchpoints (wire-shaped dicts with event ids), always the same for a seed."""
    return list(generate(SampleSpec(customers=customers, events=n, seed=seed, end=END)))


def resolved(event: dict[str, Any], customer_id: str) -> dict[str, Any]:
    """``event`` as the identity stage writes it to the log of record (normalised, log times,
    resolved to ``customer_id``)."""
    record = ConsumerRecord(topic="", partition=0, offset=0, timestamp=0, timestamp_type=0,
                            key=None, value=orjson.dumps(event), checksum=None,
                            serialized_key_size=0, serialized_value_size=0, headers=())
    doc = read(record, "2026-10-01T00:00:00.000000Z")
    return orjson.loads(resolved_record(doc, customer_id))


# -- worker processes ----------------------------------------------------------------------------

class Worker(subprocess.Popen):
    """A `touchstream worker` process, the file its output goes to, and the application name
    its database sessions carry (so that a test can see them in pg_stat_activity)."""

    def __init__(self, args: list[str], log_path: Path, name: str, **kwargs: Any):
        self.log_path, self.name = log_path, name
        with open(log_path, "ab") as log:
            super().__init__(args, stdout=log, stderr=subprocess.STDOUT, **kwargs)

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def spawn_worker(settings: Settings, state_dir: Path, stages: str = "identity,projections",
                 batch_max_records: int = 1000) -> Worker:
    """`touchstream worker`, as `make run` starts it, with its own state directory and log."""
    state_dir.mkdir(parents=True, exist_ok=True)
    name = f"fault-test-{state_dir.name}-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
           "DATABASE_URL": make_conninfo(settings.database_url, application_name=name),
           "TOPIC_PREFIX": settings.topic_prefix,
           "CONSUMER_GROUP_PREFIX": settings.consumer_group_prefix,
           "SIGNING_KEY": settings.signing_key, "BATCH_MAX_RECORDS": str(batch_max_records),
           "BATCH_TIMEOUT_MS": str(settings.batch_timeout_ms), "STATE_DIR": str(state_dir),
           # a worker frozen in a transaction loses it (and its locks) within seconds, not minutes
           "IDLE_IN_TRANSACTION_S": "5", "TRANSACTION_TIMEOUT_S": "8", "LOCK_TIMEOUT_S": "3"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return Worker([sys.executable, "-m", "services.cli", "worker", "--stages", stages,
                   "--loglevel", "warning"], state_dir / "worker.log", name, env=env)


async def in_batch_transaction(settings: Settings, worker: Worker) -> bool:
    """Whether one of the worker's sessions is inside a batch's transaction: it has the tracking
    rows of the batch's partitions locked (the seek and the heartbeat lock no tracking row)."""
    found = await rows(settings, "SELECT count(*)::int AS n FROM pg_locks l "
                                 "JOIN pg_stat_activity a USING (pid) "
                                 "WHERE a.application_name = %s AND l.granted "
                                 "AND l.relation = 'ts_tracking'::regclass "
                                 "AND l.mode IN ('RowShareLock', 'RowExclusiveLock')", worker.name)
    return found[0]["n"] > 0


async def freeze_mid_batch(settings: Settings, worker: Worker, timeout_s: float = 30) -> None:
    """SIGSTOP the worker at a moment it is inside a batch's transaction (stop, look, and go on
    and try again if it was between batches)."""
    deadline = time.monotonic() + timeout_s
    while True:
        check_alive([worker])
        worker.send_signal(signal.SIGSTOP)
        if await in_batch_transaction(settings, worker):
            return
        worker.send_signal(signal.SIGCONT)
        assert time.monotonic() < deadline, "the worker was never caught inside a batch"
        await asyncio.sleep(0.01)


def stop_worker(worker: Worker) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGCONT)  # a frozen process would not see the SIGTERM
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


async def held_partitions(settings: Settings) -> dict[tuple[int, str], set[int]]:
    """(worker pid, stage) -> the partitions it reported holding within the last 10 s."""
    found = await rows(settings, "SELECT processor, worker_id, partitions FROM ts_workers "
                                 "WHERE heartbeat_at > now() - interval '10 seconds'")
    return {(int(r["worker_id"].split(":")[1]), r["processor"]): set(r["partitions"])
            for r in found}


def check_alive(workers: Sequence[Worker]) -> None:
    """Fail at once, with the end of its log, if a worker process has exited."""
    for w in workers:
        if w.poll() is not None:
            raise AssertionError(f"worker {w.pid} exited with {w.returncode}:\n{w.log_tail()}")


async def wait_assigned(settings: Settings, workers: list[Worker],
                        timeout_s: float = 90, stages: Sequence[str] = STAGES) -> None:
    """Until every partition of the stages is held, and each worker holds some of each."""
    pids = [w.pid for w in workers]

    async def ready() -> bool:
        check_alive(workers)
        held = await held_partitions(settings)
        everything = set(range(settings.partitions))
        return all(set().union(*[p for (_, s), p in held.items() if s == stage]) == everything
                   and all(held.get((pid, stage)) for pid in pids)
                   for stage in stages)
    await eventually(ready, timeout_s=timeout_s, interval_s=0.2)


# -- publishing ----------------------------------------------------------------------------------

@dataclass
class PacedPublisher:
    """Publishes events through the SDK from a thread, ``per_s`` a second, so that a stream is
    still flowing while a test breaks something; ``acked`` holds the acknowledged event ids."""

    settings: Settings
    events: list[dict[str, Any]]
    per_s: float
    sent: int = 0
    acked: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    def start(self) -> PacedPublisher:
        self._thread = threading.Thread(target=self._run, name="paced-publisher", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        chunk, ids = 50, []
        try:
            with TouchstreamProducer(self.settings.kafka_bootstrap_servers,
                                     self.settings.raw_topic) as sdk:
                started = time.monotonic()
                for i in range(0, len(self.events), chunk):
                    ids += [sdk.publish(e) for e in self.events[i:i + chunk]]
                    self.sent = len(ids)
                    time.sleep(max(0.0, started + self.sent / self.per_s - time.monotonic()))
                try:
                    sdk.flush(60)
                except PublishError as exc:
                    self.failed = set(exc.failed)
        except BaseException as exc:  # noqa: BLE001 - re-raised by join()
            self._error = exc
        self.acked = set(ids) - self.failed

    async def join(self, timeout_s: float = 90) -> PacedPublisher:
        assert self._thread is not None
        await asyncio.to_thread(self._thread.join, timeout_s)
        assert not self._thread.is_alive(), "the publisher did not finish"
        if self._error is not None:
            raise self._error
        return self


# -- the end of a stream -------------------------------------------------------------------------

async def drained(settings: Settings, workers: Sequence[Worker] = (),
                  timeout_s: float = 120, stages: Sequence[str] = STAGES) -> None:
    """Wait until the identity stage has committed every record of touchpoints.raw, and then the
    stages that read touchpoints every record of it (whose end is known only after that)."""
    for stage in stages:
        ends = await topic_ends(settings, getattr(settings, TOPICS[stage]))

        async def caught_up(stage: str = stage, ends: dict[int, int] = ends) -> bool:
            check_alive(workers)
            found = await rows(settings, 'SELECT partition, "offset" FROM ts_tracking '
                                         "WHERE processor = %s", stage)
            done = {r["partition"]: r["offset"] for r in found}
            return all(done.get(p, -1) >= end for p, end in ends.items())
        await eventually(caught_up, timeout_s=timeout_s, interval_s=0.2)


async def dlq_records(settings: Settings) -> list:
    """Every record of touchpoints.dlq, read without a consumer group."""
    ends = await topic_ends(settings, settings.dlq_topic)
    want = sum(e + 1 for e in ends.values())
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                enable_auto_commit=False)
    await consumer.start()
    out: list = []
    try:
        consumer.assign([TopicPartition(settings.dlq_topic, p) for p in range(settings.partitions)])
        await consumer.seek_to_beginning()

        async def all_read() -> bool:
            got = await consumer.getmany(timeout_ms=200)
            out.extend(r for rs in got.values() for r in rs)
            return len(out) >= want
        if want:
            await eventually(all_read, timeout_s=30)
    finally:
        await consumer.stop()
    return out


# -- the tally -----------------------------------------------------------------------------------

@dataclass
class Tally:
    """What the read models hold once a stream is drained."""

    rows_per_event: Counter[str]  # contacts rows per event id
    events_count: int  # sum of profiles.events_count
    processed: int  # ts_processed_events rows of the projection stage
    links: int  # identity events on the log: the projection stage reads them too (value does)
    dead_letters: list[dict[str, Any]]
    archived: Counter[str]  # archived events per event id (touchpoints only)

    @property
    def contacts(self) -> int:
        return sum(self.rows_per_event.values())

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.rows_per_event.values() if n > 1)

    def assert_exactly_once(self, acknowledged: set[str]) -> set[str]:
        """Every acknowledged event in ``contacts`` once, no event twice, profiles and the
        de-duplication table agreeing with it. Returns the ids found that were not acknowledged."""
        missing = acknowledged - set(self.rows_per_event)
        assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:3]}"
        assert self.duplicates == 0, f"{self.duplicates} contacts rows doubled"
        assert self.events_count == self.contacts, (self.events_count, self.contacts)
        assert self.processed == self.contacts + self.links, (self.processed, self.contacts,
                                                              self.links)
        return set(self.rows_per_event) - acknowledged

    def report(self, **counts: int) -> str:
        return ", ".join([*(f"{k} {v:,}" for k, v in counts.items()),
                          f"in contacts {self.contacts:,}", f"duplicates {self.duplicates}",
                          f"dead letters {len(self.dead_letters)}"])


async def log_links(settings: Settings) -> set[str]:
    """The ids of the identity events (``customers_linked``) on the log: the projection stage
    reads them too (value takes them), so they have their de-duplication rows."""
    ends = await topic_ends(settings, settings.log_topic)
    log = await read_topic(settings, settings.log_topic, sum(e + 1 for e in ends.values() if e >= 0))
    return {d["event_id"] for d in map(orjson.loads, (r.value for r in log))
            if d.get("type") == "customers_linked"}


async def tally(settings: Settings) -> Tally:
    per_event = await rows(settings, "SELECT event_id::text AS id, count(*)::int AS n "
                                     "FROM contacts GROUP BY event_id")
    total = await rows(settings, "SELECT coalesce(sum(events_count), 0)::int AS n FROM profiles")
    processed = await rows(settings, "SELECT count(*)::int AS n FROM ts_processed_events "
                                     "WHERE processor = 'projections'")
    links = await log_links(settings)
    letters = await rows(settings, "SELECT stage, source_topic, source_partition, source_offset, "
                                   "error, errors, kind, original FROM dead_letters "
                                   "ORDER BY stage, source_topic, source_partition, source_offset")
    archived = await rows(settings, "SELECT e.doc -> 'event' ->> 'event_id' AS id, count(*)::int AS n "
                                    "FROM archive_events, LATERAL (SELECT convert_from(state, 'UTF8')"
                                    "::jsonb AS doc) e WHERE e.doc -> 'event' ->> 'type' "
                                    "<> 'customers_linked' GROUP BY 1")
    return Tally(Counter({r["id"]: r["n"] for r in per_event}), total[0]["n"], processed[0]["n"],
                 len(links), letters, Counter({r["id"]: r["n"] for r in archived}))


def dlq_positions(records: list) -> Counter[tuple[str, int, int]]:
    """(source topic, partition, offset) of each DLQ record, counted."""
    return Counter((h["source_topic"], h["source_partition"], h["source_offset"])
                   for h in (parse_headers(r.headers) for r in records))
