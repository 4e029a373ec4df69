"""Faults on real servers and real processes: what is acknowledged is projected exactly once.

Each test breaks one thing while events flow: the database is stopped or crashed and started
again, the broker is paused, one of two workers is killed or frozen inside a batch, poison is
slipped past the doors, the server ends a session mid-batch. It then waits until both stages
have committed up to the ends of their topics and counts what was sent, what was acknowledged,
what the read models hold and what went to the dead-letter queue. A test that must stop or
pause a server starts a private one, so that the other tests never see the fault.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import orjson
import psutil
import pytest
from aiokafka.structs import ConsumerRecord

from events import parse_touchpoint
from services.infra.broker import EmbeddedBroker
from services.infra.database import EmbeddedDatabase
from services.kafka import producer, send_grouped
from services.processors.dlq import parse_headers
from services.processors.projector import ProjectionStage
from services.processors.runtime import BatchProcessor
from services.wire import raw_record
from tests.conftest import eventually, make_settings
from tests.integration.faults import (
    PacedPublisher,
    check_alive,
    dlq_positions,
    dlq_records,
    drained,
    freeze_mid_batch,
    held_partitions,
    resolved,
    sample,
    spawn_worker,
    stop_worker,
    tally,
    wait_assigned,
)
from tests.integration.pipeline import api_client, count, rows, running_stages, touchpoint

pytestmark = pytest.mark.integration


async def _contacts_at_least(settings, n: int, workers=()) -> bool:
    check_alive(workers)
    return await count(settings, "SELECT count(*) AS n FROM contacts") >= n


def _customer_id(event: dict) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, orjson.dumps(event["customer"],
                                                           option=orjson.OPT_SORT_KEYS).decode()))


# -- 1. PostgreSQL restarted while both stages run -------------------------------------------------

def _crash(database: EmbeddedDatabase) -> None:
    """Stop PostgreSQL as a crash does (SIGQUIT: `pg_ctl stop -m immediate`): the server and its
    backends exit at once, without a shutdown checkpoint; the next start replays the WAL."""
    assert database.pid is not None
    server = psutil.Process(database.pid)
    server.send_signal(signal.SIGQUIT)
    server.wait(10)
    database.stop()  # forget the server that is gone


@pytest.mark.parametrize("how", ["stopped", "crashed"])
async def test_database_restarted_mid_stream_loses_and_doubles_nothing(servers, tmp_path, how):
    """Stopped: PostgreSQL's fast shutdown (sessions terminated, transactions in flight rolled
    back). Crashed: an immediate shutdown. The embedded server listens on a Unix socket in its
    data directory, so a restart on the same directory keeps the URL the workers know."""
    events, outage_s = sample(10_000, customers=1_500, seed=11), 5.0
    database = EmbeddedDatabase(tmp_path).start()
    worker = None
    try:
        settings = make_settings({"kafka": servers["kafka"], "database": database.url}, tmp_path)
        worker = spawn_worker(settings, tmp_path / "worker")
        await wait_assigned(settings, [worker])
        publisher = PacedPublisher(settings, events, per_s=1_000).start()
        await eventually(lambda: _contacts_at_least(settings, 1_500, [worker]), timeout_s=90)

        url = database.url
        if how == "stopped":
            database.stop()
        else:
            _crash(database)
        sent_at_stop = publisher.sent
        await asyncio.sleep(outage_s)  # the stream goes on into the broker meanwhile
        assert worker.poll() is None, "the worker exited while the database was down"
        database.start()
        assert database.url == url

        await publisher.join()
        assert sent_at_stop < len(events) <= publisher.sent, "the database stopped after the stream"
        await drained(settings, [worker])
        found = await tally(settings)
    finally:
        if worker is not None:
            stop_worker(worker)
        database.stop()
    print(f"database {how}:", found.report(sent=len(events), acknowledged=len(publisher.acked),
                                            sent_before_stop=sent_at_stop))
    assert publisher.acked == {e["event_id"] for e in events}
    assert found.assert_exactly_once(publisher.acked) == set()
    assert found.dead_letters == [], "an outage is not a poison record"


# -- 2. The broker paused while events are POSTed and consumed -------------------------------------

@dataclass
class Answer:
    event_id: str
    status: int
    started: float  # time.monotonic()
    seconds: float
    accepted: list[str]
    retry_after: str | None


async def _post_all(client: httpx.AsyncClient, events: list[dict], answers: list[Answer],
                    concurrency: int) -> None:
    pending = iter(events)

    async def poster() -> None:
        for event in pending:
            started = time.monotonic()
            r = await client.post("/v1/touchpoints", json=event)
            body = r.json()
            answers.append(Answer(event["event_id"], r.status_code, started,
                                  time.monotonic() - started,
                                  body.get("accepted") or body.get("accepted_event_ids") or [],
                                  r.headers.get("retry-after")))
    await asyncio.gather(*(poster() for _ in range(concurrency)))


async def test_broker_paused_posts_get_503_then_202_and_acknowledged_events_land_once(servers,
                                                                                     tmp_path):
    events, pause_s, timeout_s = sample(3_000, customers=500, seed=12), 10.0, 3.0
    broker = EmbeddedBroker(tmp_path).start()
    worker = None
    resumed = True
    try:
        settings = make_settings({"kafka": broker.bootstrap_servers,
                                  "database": servers["database"]}, tmp_path)
        settings = settings.model_copy(update={"produce_timeout_s": timeout_s})
        worker = spawn_worker(settings, tmp_path / "worker")
        await wait_assigned(settings, [worker])
        answers: list[Answer] = []
        async with api_client(settings) as client:
            posting = asyncio.ensure_future(_post_all(client, events, answers, concurrency=16))
            await eventually(lambda: sum(a.status == 202 for a in answers) >= 1_000 or posting.done(),
                             timeout_s=90)
            assert not posting.done(), "every event was posted before the broker was paused"
            assert broker.pid is not None
            os.kill(broker.pid, signal.SIGSTOP)
            resumed, paused_at = False, time.monotonic()
            await asyncio.sleep(pause_s)  # the posters go on
            os.kill(broker.pid, signal.SIGCONT)
            resumed, resumed_at = True, time.monotonic()
            await asyncio.wait_for(posting, 120)

            refused = [a for a in answers if a.status != 202]
            await drained(settings, [worker])
            first = await tally(settings)

            # The client's side of the contract: a 503 is retried with the same event id.
            again: list[Answer] = []
            retried = {a.event_id for a in refused}
            await _post_all(client, [e for e in events if e["event_id"] in retried], again, 8)
        await drained(settings, [worker])
        final = await tally(settings)
    finally:
        if not resumed and broker.pid is not None:
            os.kill(broker.pid, signal.SIGCONT)
        if worker is not None:
            stop_worker(worker)
        broker.stop()

    acked = {i for a in answers for i in a.accepted}
    during = [a for a in answers if paused_at <= a.started <= resumed_at - timeout_s - 0.5]
    landed_unacked = first.assert_exactly_once(acked)
    print("broker pause:", first.report(
        sent=len(events), acknowledged=len(acked), answered_503=len(refused),
        answered_503_and_projected=len(landed_unacked), posted_during_pause=len(during)))
    assert {a.status for a in answers} <= {202, 503}
    assert len(answers) == len(events)
    assert len(during) >= 16 and all(a.status == 503 for a in during)
    assert all(a.retry_after for a in refused)
    assert max(a.seconds for a in refused) <= timeout_s + 2.0, "a 503 took longer than the timeout"
    assert all(a.status == 202 for a in answers[-500:]), "POSTs after the pause still refused"
    assert landed_unacked <= {a.event_id for a in refused}
    assert first.dead_letters == []
    # After the retries every event is acknowledged, and still each is projected once.
    assert all(a.status == 202 for a in again)
    assert final.assert_exactly_once({e["event_id"] for e in events}) == set()
    assert final.dead_letters == []


# -- 3. One of two workers killed (or frozen) mid-batch -----------------------------------------

@pytest.mark.parametrize("fault", [
    "killed", "frozen"])
async def test_worker_lost_mid_batch_its_partner_takes_over(settings, tmp_path, fault):
    """Killed: SIGKILL while it is inside a batch's transaction. Frozen: SIGSTOP there (a stalled
    VM, a process paused for long) and left frozen: its partner must carry the stream alone, and
    when the frozen worker wakes with its batch in hand for partitions no longer its own, nothing
    is doubled. Both workers run every stage, the archive too: it must hold each event once."""
    events, stages = sample(10_000, customers=1_500, seed=13), ("identity", "projections", "archive")
    workers = [spawn_worker(settings, tmp_path / f"worker-{i}", stages=",".join(stages),
                            batch_max_records=500) for i in range(2)]
    victim, survivor = workers
    try:
        await wait_assigned(settings, workers, stages=stages)
        publisher = PacedPublisher(settings, events, per_s=1_200).start()
        await eventually(lambda: _contacts_at_least(settings, 2_000, workers), timeout_s=90,
                         interval_s=0.02)
        held = await held_partitions(settings)
        await freeze_mid_batch(settings, victim)
        if fault == "killed":
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
        at_fault = await count(settings, "SELECT count(*) AS n FROM contacts")
        assert at_fault < len(events), "the stream was done before the fault"
        assert held.get((victim.pid, "projections")) and held.get((victim.pid, "identity"))

        # The survivor takes every partition once the group drops the silent member, and
        # projects the whole stream on its own.
        async def survivor_holds_all() -> bool:
            now = await held_partitions(settings)
            return all(now.get((survivor.pid, stage)) == set(range(settings.partitions))
                       for stage in stages)
        await eventually(survivor_holds_all, timeout_s=60, interval_s=0.2)
        await publisher.join()
        # alone, on a loaded machine (value adds work)
        await drained(settings, [survivor], timeout_s=150, stages=stages)
        if fault == "frozen":
            victim.send_signal(signal.SIGCONT)
            await drained(settings, workers, stages=stages)
        found = await tally(settings)
    finally:
        for w in workers:
            stop_worker(w)
    print(f"worker {fault}:", found.report(sent=len(events), acknowledged=len(publisher.acked),
                                           in_contacts_at_fault=at_fault))
    assert publisher.acked == {e["event_id"] for e in events}
    assert found.assert_exactly_once(publisher.acked) == set()
    assert found.dead_letters == []
    assert set(found.archived) == publisher.acked, "the archive lost or invented events"
    assert max(found.archived.values()) == 1, "an event archived twice"


# -- 4. Poison among 10,000 good events ----------------------------------------------------------

def _spoilt(base: dict, **changes) -> bytes:
    return orjson.dumps({**base, **changes})


def _invalid_raw_records(email: str) -> list[tuple[str, bytes, str, str]]:
    """(what, value, the field the reason names, part of the reason): records that bypass the
    doors, produced to touchpoints.raw without a seal."""
    call = touchpoint("call", email=email)
    good_bytes = orjson.dumps(call)
    return [
        ("unit separator in an external id",
         _spoilt(call, customer={"email": email, "external_ids": {"crm": "A\x1fB"}}),
         "customer.external_ids.crm", "control characters (found U+001F)"),
        ("NUL in source", _spoilt(call, source="sh\x00op"), "source", "(found U+0000)"),
        ("invalid UTF-8", good_bytes.replace(b'"test"', b'"te\xffst"'), None, "not valid JSON"),
        ("not JSON", b"{not json", None, "not valid JSON"),
        ("wrong type", _spoilt(call, payload={**call["payload"], "duration_s": "long"}),
         "payload.duration_s", "valid number"),
    ]


def _poison_log_records(events: list[dict]) -> list[tuple[str, bytes, bytes, str]]:
    """(what, key, value, part of the reason): resolved events on the log of record that decode
    but fail the projection stage's write path."""
    a, b, c = (resolved(e, _customer_id(e)) for e in events)
    return [
        ("NUL in source (COPY refuses 0x00)", a["customer"]["customer_id"].encode(),
         orjson.dumps({**a, "source": "sh\x00op"}), 'invalid byte sequence for encoding "UTF8": 0x00'),
        ("customer_id not a UUID", b"C-42",
         orjson.dumps({**b, "customer": {**b["customer"], "customer_id": "C-42"}}),
         'invalid input syntax for type uuid: "C-42"'),
        ("event_id not a UUID", c["customer"]["customer_id"].encode(),
         orjson.dumps({**c, "event_id": "E-42"}), 'invalid input syntax for type uuid: "E-42"'),
    ]


async def test_poison_among_good_events_is_dead_lettered_and_the_rest_lands_once(settings):
    good, spare = sample(10_000, customers=1_500, seed=14), sample(6, customers=6, seed=15)
    invalid = _invalid_raw_records(f"poison.{uuid.uuid4().hex[:6]}@example.com")
    poison = _poison_log_records(spare[:3]) + _poison_log_records(spare[3:])
    now = datetime.now(UTC)
    chunks = [good[i::len(invalid) + 1] for i in range(len(invalid) + 1)]
    expected: dict[tuple[str, int, int], tuple[str, str, str, str | None, str, bytes]] = {}
    prod = producer(settings, "fault-test")
    await prod.start()
    try:
        # Good events (validated, unsealed: as the SDK publishes them) with the invalid ones
        # between them, and half the poison on the log of record before the stages start.
        for chunk, bad in zip(chunks, [*invalid, None], strict=True):
            errors = await send_grouped(prod, settings.raw_topic, [
                raw_record(parse_touchpoint(e, recorded_at=now)) for e in chunk])
            assert errors == [None] * len(chunk)
            if bad is not None:
                what, value, fld, reason = bad
                md = await (await prod.send(settings.raw_topic, key=what.encode(), value=value))
                expected[(settings.raw_topic, md.partition, md.offset)] = (
                    what, "identity", "invalid", fld, reason, value)

        async def poison_log(batch) -> None:
            for what, key, value, reason in batch:
                md = await (await prod.send(settings.log_topic, key=key, value=value))
                expected[(settings.log_topic, md.partition, md.offset)] = (
                    what, "projections", "poison", None, reason, value)

        await poison_log(poison[:3])
        async with running_stages(settings):
            await eventually(lambda: _contacts_at_least(settings, 4_000), timeout_s=90)
            await poison_log(poison[3:])  # and half while the stages run
            await drained(settings)
    finally:
        await prod.stop()
    found = await tally(settings)
    letters = await dlq_records(settings)
    print("poison:", found.report(sent=len(good) + len(invalid) + len(poison),
                                  good=len(good), invalid=len(invalid), poison=len(poison)))

    assert found.assert_exactly_once({e["event_id"] for e in good}) == set()
    by_position = {(d["source_topic"], d["source_partition"], d["source_offset"]): d
                   for d in found.dead_letters}
    assert set(by_position) == set(expected)
    for position, (what, stage, kind, fld, reason, value) in expected.items():
        d = by_position[position]
        assert (d["stage"], d["kind"], bytes(d["original"])) == (stage, kind, value), what
        assert reason in d["error"], (what, d["error"])
        if fld is not None:
            assert any(e["field"] == fld for e in d["errors"]), (what, d["errors"])
            assert d["error"].startswith(f"{fld}: "), (what, d["error"])
    assert dlq_positions(letters) == {p: 1 for p in expected}
    for r in letters:
        h = parse_headers(r.headers)
        position = (h["source_topic"], h["source_partition"], h["source_offset"])
        assert r.value == expected[position][5]
        assert h["kind"] == expected[position][2] and h["error"] == by_position[position]["error"]


# -- 5. One poison record in a batch of 5,000 ----------------------------------------------------

async def test_one_poison_record_in_a_batch_of_5000_is_isolated_and_the_rest_commits(settings):
    events = [resolved(e, _customer_id(e)) for e in sample(5_000, customers=800, seed=16)]
    poison_at = 2_500
    events[poison_at] = {**events[poison_at], "source": "sh\x00op"}
    records = [ConsumerRecord(topic=settings.log_topic, partition=0, offset=i, timestamp=0,
                              timestamp_type=0, key=e["customer"]["customer_id"].encode(),
                              value=orjson.dumps(e), checksum=None, serialized_key_size=36,
                              serialized_value_size=0, headers=())
               for i, e in enumerate(events)]
    worker = BatchProcessor(settings, ProjectionStage(settings))
    await worker.start_handler()
    try:
        await worker.apply(list(zip(records, worker.handler.prepare(records), strict=True)))
    finally:
        await worker.stop_handler()

    found = await tally(settings)
    good = {e["event_id"] for i, e in enumerate(events) if i != poison_at}
    assert found.assert_exactly_once(good) == set()
    assert found.contacts == 4_999
    [letter] = found.dead_letters
    assert (letter["stage"], letter["kind"], letter["source_partition"],
            letter["source_offset"]) == ("projections", "poison", 0, poison_at)
    assert "0x00" in letter["error"] and bytes(letter["original"]) == records[poison_at].value
    tracked = await rows(settings, 'SELECT "offset" FROM ts_tracking WHERE processor = %s '
                                   "AND partition = 0", "projections")
    assert tracked == [{"offset": 4_999}]
    assert dlq_positions(await dlq_records(settings)) == {(settings.log_topic, 0, poison_at): 1}


# -- 6. A session PostgreSQL ends is an outage, not a poison record -------------------------------

class StallsOnce:
    """A stage that stalls once inside its batch's transaction, as a worker does in a long pause
    (a frozen VM, a broker slow to acknowledge what the identity stage publishes in it), then
    behaves as ``stage``."""

    def __init__(self, stage, seconds: float):
        self.stage, self.seconds = stage, seconds

    def __getattr__(self, name: str):
        return getattr(self.stage, name)

    async def handle(self, conn, items):
        if self.seconds:
            await asyncio.sleep(self.seconds)
            self.seconds = 0
        return await self.stage.handle(conn, items)


async def test_a_session_ended_by_the_server_mid_batch_is_retried_not_quarantined(settings,
                                                                                  servers):
    """PostgreSQL ends a session idle in a transaction longer than allowed (the runtime's own
    idle_in_transaction_s, or what a managed server sets); the batch must be retried."""
    settings = settings.model_copy(update={"idle_in_transaction_s": 0.3})
    [event] = sample(1, customers=1, seed=17)
    doc = resolved(event, _customer_id(event))
    record = ConsumerRecord(topic=settings.log_topic, partition=0, offset=0, timestamp=0,
                            timestamp_type=0, key=doc["customer"]["customer_id"].encode(),
                            value=orjson.dumps(doc), checksum=None, serialized_key_size=36,
                            serialized_value_size=0, headers=())
    worker = BatchProcessor(settings, StallsOnce(ProjectionStage(settings), seconds=1.0))
    await worker.start_handler()
    try:
        await worker.apply(list(zip([record], worker.handler.prepare([record]), strict=True)))
    finally:
        await worker.stop_handler()
    found = await tally(settings)
    assert [d["error"] for d in found.dead_letters] == []
    assert found.assert_exactly_once({doc["event_id"]}) == set()
