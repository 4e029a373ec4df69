"""A worker killed mid-stream and restarted ends with exactly the expected rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from services.sample import SampleSpec, generate
from services.sdk import TouchstreamProducer
from tests.conftest import eventually
from tests.integration.faults import log_links
from tests.integration.pipeline import count, read_topic, rows

pytestmark = pytest.mark.integration
EVENTS = 20_000


def _worker(settings, log_path) -> subprocess.Popen:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
           "DATABASE_URL": settings.database_url, "TOPIC_PREFIX": settings.topic_prefix,
           "CONSUMER_GROUP_PREFIX": settings.consumer_group_prefix,
           "BATCH_MAX_RECORDS": "1000", "STATE_DIR": str(settings.state_dir)}
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "services.cli", "worker",
                                 "--loglevel", "warning"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)


async def test_killed_worker_restarts_without_loss_or_duplicates(settings, tmp_path):
    spec = SampleSpec(customers=2000, events=EVENTS, seed=5, end=datetime(2026, 10, 1, tzinfo=UTC))
    with TouchstreamProducer(settings.kafka_bootstrap_servers, settings.raw_topic) as sdk:
        for event in generate(spec):
            sdk.publish(event)

    worker = _worker(settings, tmp_path / "worker.log")
    try:
        # Kill it hard while both stages are part-way through the stream.
        await eventually(lambda: _contacts_at_least(settings, 2_000), timeout_s=120)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        done_before = await count(settings, "SELECT count(*) AS n FROM contacts")
        assert done_before < EVENTS, "the worker finished before it could be killed"
        worker = _worker(settings, tmp_path / "worker.log")
        await eventually(lambda: _contacts_at_least(settings, EVENTS), timeout_s=180)
        await eventually(lambda: _alerts_published(settings), timeout_s=60)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()

    assert await count(settings, "SELECT count(*) AS n FROM contacts") == EVENTS
    assert await count(settings, "SELECT count(DISTINCT event_id) AS n FROM contacts") == EVENTS
    totals = (await rows(settings, "SELECT sum(events_count)::int AS n FROM profiles"))[0]
    assert totals["n"] == EVENTS
    orders = {e["payload"]["order_id"]: e["payload"]["status"] for e in generate(spec)
              if e["type"] == "order"}  # every sample order has an id of its own
    ledger = await rows(settings, "SELECT status, count(*)::int AS n FROM orders GROUP BY status")
    assert {r["status"]: r["n"] for r in ledger} == {
        s: sum(1 for v in orders.values() if v == s) for s in set(orders.values())}
    assert await count(settings, "SELECT count(*) AS n FROM ts_processed_events "
                                 "WHERE processor = 'projections'") == EVENTS + len(await log_links(settings))


    # no alert event was logged or published twice, and the topic holds every one published
    logged = await rows(settings, "SELECT seq, alert_id::text, kind, published_at IS NOT NULL AS "
                                  "published FROM alert_log WHERE kind <> 'reload'")
    assert logged, "the sample opened no alert"
    assert len({(r["alert_id"], r["kind"]) for r in logged if r["kind"] == "opened"}) == \
        sum(r["kind"] == "opened" for r in logged)
    assert await count(settings, "SELECT count(*) AS n FROM alerts") == \
        sum(r["kind"] == "opened" for r in logged)
    on_topic = [int(dict(r.headers)["ts-alert-seq"]) for r in await _everything(
        settings, settings.alerts_topic)]
    assert len(on_topic) == len(set(on_topic)), "an alert event was published twice"
    assert set(on_topic) == {r["seq"] for r in logged if r["published"]}


async def _alerts_published(settings) -> bool:
    return await count(settings, "SELECT count(*) AS n FROM alert_log "
                                 "WHERE published_at IS NULL") == 0 and \
        await count(settings, "SELECT count(*) AS n FROM alert_log") > 0


async def _everything(settings, topic: str) -> list:
    from services.kafka import topic_ends

    ends = await topic_ends(settings, topic)
    n = sum(e + 1 for e in ends.values() if e >= 0)
    return await read_topic(settings, topic, n) if n else []


async def _contacts_at_least(settings, n: int) -> bool:
    return await count(settings, "SELECT count(*) AS n FROM contacts") >= n


