"""Replays on the real broker and PostgreSQL: a rebuild from the archive and one from the log
equal live processing (late and out-of-order events, duplicates, poison records among them); a
swap keeps the API answering and the live stage going; an interrupted replay resumes; a
rollback puts the previous tables back, caught up."""

from __future__ import annotations

import asyncio
import random
import uuid

import orjson
import psycopg
import pytest
from aiokafka import AIOKafkaProducer

from services import replay
from services.processors.archive import ArchiveStage
from services.processors.identity import IdentityStage
from services.processors.projector import ProjectionStage
from tests.conftest import eventually
from tests.integration.faults import drained, sample
from tests.integration.pipeline import api_client, count, rows, running_stages, touchpoint

pytestmark = pytest.mark.integration

ALL = (IdentityStage, ProjectionStage, ArchiveStage)
STAGES = ("identity", "projections", "archive")
TABLES = ("contacts", "orders", "profiles", "customer_value")


async def _publish_history(settings, client) -> list[dict]:
    """A sample history sent shuffled (events arrive late and out of order), some events twice,
    and records on the log that no projection can read."""
    events = sample(400, 40, seed=11)
    random.Random(3).shuffle(events)
    for i in range(0, len(events), 100):
        r = await client.post("/v1/touchpoints/batch", json={"events": events[i:i + 100]})
        assert r.status_code == 202, r.text
    r = await client.post("/v1/touchpoints/batch", json={"events": events[:15]})  # again
    assert r.status_code == 202, r.text
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        cid = str(uuid.uuid4())
        for value in (b"\x00not json", orjson.dumps({"type": "call", "customer": {"customer_id": cid}})):
            await producer.send_and_wait(settings.log_topic, value, key=cid.encode())
    finally:
        await producer.stop()
    await drained(settings, stages=STAGES)
    return events


def _equal(outcome: replay.Outcome) -> None:
    for table in TABLES:
        t = outcome.tables[table]
        assert t["equal"], f"{table}: {t}"
        assert t["live"]["rows"] > 0


async def test_rebuilds_from_the_archive_and_from_the_log_equal_live_and_swap_while_serving(settings):
    async with running_stages(settings, ALL), api_client(settings) as client:
        await _publish_history(settings, client)
        for source in ("archive", "kafka"):
            outcome = await replay.Replay(settings, replay.closure(["all"]), "verify", source).run()
            assert outcome.status == "equal", replay.describe(outcome)
            _equal(outcome)
            # the poison records: refused by the archive stage, refused by the replay of the log
            assert outcome.refused == (0 if source == "archive" else 2)

        # a swap while the API is read: every answer is whole
        customers = [r["customer_id"] for r in await rows(
            settings, "SELECT customer_id::text FROM profiles ORDER BY events_count DESC LIMIT 5")]
        answers: list[tuple[int, int]] = []
        stop = asyncio.Event()

        async def read_all_along() -> None:
            while not stop.is_set():
                for cid in customers:
                    p = await client.get(f"/v1/customers/{cid}")
                    t = await client.get(f"/v1/customers/{cid}/timeline")
                    answers.append((p.status_code, len(t.json().get("items", [])) if t.is_success else 0))
        reader = asyncio.create_task(read_all_along())
        try:
            outcome = await replay.Replay(settings, replay.closure(["all"]), "replay", "archive").run()
        finally:
            stop.set()
            await reader
        assert outcome.status == "swapped", replay.describe(outcome)
        _equal(outcome)
        assert answers and all(code == 200 and n > 0 for code, n in answers), answers[:5]
        assert await count(settings, "SELECT count(*) AS n FROM ts_previous.contacts") > 0

        # the live stage goes on with the swapped tables (its cache dropped)
        target = customers[0]
        before = await count(settings, "SELECT events_count AS n FROM profiles WHERE customer_id = %s",
                             target)
        email = (await rows(settings, "SELECT emails[1] AS e FROM profiles WHERE customer_id = %s",
                            target))[0]["e"]
        r = await client.post("/v1/touchpoints", json=touchpoint("call", email=email))
        assert r.status_code == 202, r.text

        async def counted() -> bool:
            return await count(settings, "SELECT events_count AS n FROM profiles WHERE "
                                         "customer_id = %s", target) == before + 1
        await eventually(counted)
        await drained(settings, stages=STAGES)

        # the previous tables come back, caught up with what the live stage did since
        back = await replay.rollback(settings, "all")
        assert back.status == "swapped" and back.mode == "rollback", replay.describe(back)
        _equal(back)
        assert await count(settings, "SELECT events_count AS n FROM profiles WHERE customer_id = %s",
                           target) == before + 1


async def test_an_interrupted_replay_resumes_and_a_verification_names_drift(settings, monkeypatch,
                                                                        capsys):
    async with running_stages(settings, ALL), api_client(settings) as client:
        await _publish_history(settings, client)
        monkeypatch.setattr(replay, "CHUNK", 40)
        real = replay.Replay._chunk
        calls = 0

        async def interrupted(self, *args, **kwargs):
            nonlocal calls
            calls += 1
            if calls == 4:
                raise KeyboardInterrupt
            return await real(self, *args, **kwargs)
        monkeypatch.setattr(replay.Replay, "_chunk", interrupted)
        with pytest.raises(KeyboardInterrupt):
            await replay.Replay(settings, replay.closure(["profile"]), "verify", "archive").run()
        first = (await rows(settings, "SELECT id, events, status FROM ts_replays"))[-1]
        assert first["status"] == "building" and first["events"] == 120

        outcome = await replay.Replay(settings, replay.closure(["profile"]), "verify", "archive").run()
        assert outcome.id == first["id"], "the same replay, resumed"
        assert outcome.status == "equal", replay.describe(outcome)
        assert set(outcome.tables) == {"orders", "profiles"}  # the profile reads the ledger
        archived = await count(settings, "SELECT count(*) AS n FROM archive_events")
        assert outcome.events == archived, "each archived event read once over both runs"

        # drift is found and named: a live row changed behind the projection's back
        cid = (await rows(settings, "SELECT customer_id::text AS c FROM profiles LIMIT 1"))[0]["c"]
        async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as c:
            await c.execute("UPDATE profiles SET open_complaints = open_complaints + 7 "
                            "WHERE customer_id = %s", (cid,))
        code = await asyncio.to_thread(replay.main, settings, "profile", "kafka", None, True, False, True)
        assert code == 1
        out = capsys.readouterr().out
        assert "profiles: live" in out and "DIFFERENT" in out and cid in out, out
        assert "orders: live" in out and "equal" in out

        # a picture of the past: only what occurred up to then, kept in ts_replay, not swapped
        until = (await rows(settings, "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY occurred_at) "
                                      "AS t FROM contacts"))[0]["t"]
        past = await replay.Replay(settings, replay.closure(["contacts"]), "replay", "kafka",
                                   until).run()
        assert past.status == "built", replay.describe(past)
        assert await count(settings, "SELECT count(*) AS n FROM ts_replay.contacts") == await count(
            settings, "SELECT count(*) AS n FROM contacts WHERE occurred_at <= %s", until) > 0

        # one replay at a time: they share the shadow schema
        async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as c:
            await c.execute("SELECT pg_advisory_lock(%s)", (replay.LOCK,))
            with pytest.raises(replay.ReplayError, match="another replay is running"):
                await replay.Replay(settings, replay.closure(["contacts"]), "verify", "kafka").run()
