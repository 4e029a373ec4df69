"""`touchstream dlq`: a dead letter is found, read, refused while its fix is still invalid, replayed
once (also when two replays race), and reaches the read models once; the door stays open."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import orjson
import psycopg
import pytest
from aiokafka import AIOKafkaProducer
from psycopg.rows import dict_row

from events import parse_touchpoint, routing_key
from services import cli
from services.config import get_settings
from services.dlq_cli import Publisher, replay_one
from services.kafka import topic_ends
from services.wire import MARK
from tests.conftest import eventually
from tests.integration.faults import drained
from tests.integration.pipeline import api_client, count, read_topic, rows, running_stages, touchpoint

pytestmark = pytest.mark.integration


@pytest.fixture
def cli_settings(settings, monkeypatch):
    """The command reads its settings from the environment, as an operator's shell gives them."""
    for name, value in (("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers),
                        ("DATABASE_URL", settings.database_url), ("TOPIC_PREFIX", settings.topic_prefix),
                        ("SIGNING_KEY", settings.signing_key)):
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


async def dlq(capsys, *argv: str) -> tuple[int, str, str]:
    """`touchstream dlq ...`: exit status, stdout, stderr."""
    def call() -> int:
        try:
            cli.main(["dlq", *argv])
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 1
        return 0
    capsys.readouterr()
    status = await asyncio.to_thread(call)
    out, err = capsys.readouterr()
    return status, out, err


async def race(settings, letter_id: int, repaired: bytes) -> str:
    """One of two replays of the same dead letter at the same time, each on a session of its own."""
    publisher = Publisher(settings)
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True,
                                                     row_factory=dict_row) as conn:
        try:
            return await replay_one(conn, publisher, letter_id, ("racer.json", repaired), "ops-rex")
        finally:
            await publisher.close()


def order(email: str, amount: str) -> dict:
    return touchpoint("order", email=email, amount=amount)


async def contacts_of(settings, event_id: str) -> int:
    return await count(settings, "SELECT count(*)::int AS n FROM contacts WHERE event_id = %s", event_id)


async def dead_letters(settings, n: int) -> bool:
    return await count(settings, "SELECT count(*)::int AS n FROM dead_letters") == n


async def test_a_dead_letter_is_repaired_and_replayed_once(cli_settings, capsys, tmp_path: Path):
    settings = cli_settings
    email, racer = (f"{name}.{uuid.uuid4().hex[:6]}@example.com" for name in ("dora", "rex"))
    bad, raced = order(email, "-5"), order(racer, "-7")
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    for event in (bad, raced):
        await producer.send_and_wait(settings.raw_topic, orjson.dumps(event), key=email.encode())
    await producer.stop()

    async with running_stages(settings):
        await eventually(lambda: dead_letters(settings, 2))
        ids = {r["email"]: r["id"] for r in await rows(
            settings, "SELECT id, convert_from(original, 'UTF8')::jsonb -> 'customer' ->> 'email' AS email "
                      "FROM dead_letters")}
        letter = str(ids[email])

        status, out, _ = await dlq(capsys, "list", "--reason", "PAYLOAD.AMOUNT", "--stage", "identity")
        assert status == 0
        line = next(x for x in out.splitlines() if x.split()[0] == letter)
        assert all(word in line for word in ("identity", "invalid", settings.raw_topic, "payload.amount",
                                             "open"))
        assert (await dlq(capsys, "list", "--stage", "projections"))[1] == ""
        assert (await dlq(capsys, "list", "--reason", "no such reason"))[1] == ""

        status, out, _ = await dlq(capsys, "show", letter)
        assert status == 0 and "payload.amount" in out and f'"event_id": "{bad["event_id"]}"' in out
        assert "nothing done yet" in out

        ends = await topic_ends(settings, settings.raw_topic)
        still_bad = tmp_path / "still_bad.json"
        still_bad.write_bytes(orjson.dumps({**bad, "payload": {**bad["payload"], "currency": "euro"}}))
        status, _, err = await dlq(capsys, "replay", letter, "--fix", str(still_bad), "--by", "ops-dora")
        assert status == 2 and "payload.currency" in err and "nothing published" in err
        assert await topic_ends(settings, settings.raw_topic) == ends

        fixed = tmp_path / "fixed.json"
        fixed.write_bytes(orjson.dumps(order(email, "12.50") | {"event_id": bad["event_id"]}))
        status, out, _ = await dlq(capsys, "replay", letter, "--fix", str(fixed), "--by", "ops-dora")
        assert status == 0 and f"replayed as event {bad['event_id']}" in out
        await eventually(lambda: contacts_of(settings, bad["event_id"]))
        moved = await topic_ends(settings, settings.raw_topic)
        assert sum(moved.values()) == sum(ends.values()) + 1

        status, _, err = await dlq(capsys, "replay", letter)
        assert status == 1 and "already replayed" in err and "by ops-dora" in err
        assert await topic_ends(settings, settings.raw_topic) == moved

        repaired = orjson.dumps({**raced, "payload": order(racer, "7.00")["payload"]})
        both = await asyncio.gather(*(race(settings, ids[racer], repaired) for _ in range(2)),
                                    return_exceptions=True)
        assert sorted(type(r).__name__ for r in both) == ["Refusal", "str"], both
        assert sum((await topic_ends(settings, settings.raw_topic)).values()) == sum(moved.values()) + 1
        await eventually(lambda: contacts_of(settings, raced["event_id"]))

        # As a crash after the publish leaves it: replaying, its event on the topic already.
        await rows(settings, "UPDATE dead_letters SET status = 'replaying' WHERE id = %s RETURNING id",
                   ids[racer])
        status, out, _ = await dlq(capsys, "replay", str(ids[racer]))
        assert status == 0 and f"replayed as event {raced['event_id']}" in out
        await drained(settings)
        assert await contacts_of(settings, raced["event_id"]) == 1

        status, out, _ = await dlq(capsys, "show", letter)
        assert status == 0 and out.startswith(f"dead letter {letter}: replayed")
        history = out.split("history:")[1]
        assert "replaying  by ops-dora" in history and "replayed   by ops-dora" in history

        # The next good request still flows end to end.
        good = touchpoint("call", email=email)
        async with api_client(settings) as client:
            assert (await client.post("/v1/touchpoints", json=good)).status_code == 202
        await eventually(lambda: contacts_of(settings, good["event_id"]))

    assert await contacts_of(settings, bad["event_id"]) == 1
    assert await contacts_of(settings, raced["event_id"]) == 1
    profile = await rows(settings, "SELECT events_count FROM profiles WHERE %s = ANY(emails)", email)
    assert profile == [{"events_count": 2}]  # the replayed order and the call, each once
    raw = await read_topic(settings, settings.raw_topic, 6)  # 2 dead letters, 3 replays, the call
    replays = [r for r in raw if dict(r.headers).get(MARK)]  # sealed and keyed as the gateway does
    by_event = {e: [r for r in replays if orjson.loads(r.value)["event_id"] == e]
                for e in (bad["event_id"], raced["event_id"])}
    assert [r.key for r in by_event[bad["event_id"]]] == [routing_key(parse_touchpoint(fixed.read_bytes()))]
    assert len(by_event[raced["event_id"]]) == 2 and len({r.value for r in by_event[raced["event_id"]]}) == 1
