"""The benchmark's peers write exactly what our projection stage writes, on the same log."""

from __future__ import annotations

import asyncio
from importlib.util import find_spec

import orjson
import psycopg
import pytest
from psycopg.rows import dict_row

from bench.env import BenchEnv, raw_records
from bench.limits import produce
from bench.peers import run_peer
from projections.profile import store as profile_store
from services.infra import Infra
from tests.conftest import eventually, make_settings
from tests.integration.pipeline import count, running_stages

pytestmark = pytest.mark.integration


async def _written(database_url: str) -> dict[str, list]:
    """Contact rows as stored, the profiles as our store reads them back, and the order ledger."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute("SELECT * FROM contacts ORDER BY event_id")
            contacts = await cur.fetchall()
        ids = [r[0] for r in await (await conn.execute(
            "SELECT customer_id::text FROM profiles ORDER BY customer_id")).fetchall()]
        profiles = await profile_store.load_states(conn, ids)
        async with conn.cursor() as cur:
            await cur.execute("SELECT customer_id, order_id, status, amount, currency, occurred_at, "
                              "event_id, placed_at FROM orders ORDER BY customer_id, order_id")
            orders = await cur.fetchall()
    return {"contacts": contacts, "profiles": [profiles[c] for c in ids], "orders": orders}


@pytest.fixture(scope="module")
async def resolved_log(servers, tmp_path_factory):
    """~2,000 resolved events in a log topic, and what our projection stage wrote from them."""
    settings = make_settings(servers, tmp_path_factory.mktemp("peers"))
    records = raw_records(2000, 200)
    expected = len({orjson.loads(value)["event_id"] for _, value in records})
    await produce(settings, settings.raw_topic, records)
    async with running_stages(settings):  # identity fills the log, our projection stage reads it
        await eventually(lambda: _contacts(settings, expected), timeout_s=30)
    ours = await _written(settings.database_url)
    assert len(ours["contacts"]) == expected and ours["profiles"]
    return settings, expected, ours


@pytest.mark.parametrize("kind", ["faust", pytest.param("quixstreams", marks=pytest.mark.skipif(
    find_spec("quixstreams") is None, reason="quixstreams is in the bench extra"))])
async def test_peer_writes_the_same_contacts_and_profiles_as_our_stage(resolved_log, kind):
    settings, expected, ours = resolved_log
    env = BenchEnv(settings, Infra(settings))
    try:
        result = await asyncio.to_thread(run_peer, env, kind, settings, expected)
    finally:
        for child in list(env.children):
            env.stop_child(child)
    theirs = await _written(result["database"])
    assert len(theirs["contacts"]) == expected
    assert theirs["contacts"] == ours["contacts"]
    assert theirs["profiles"] == ours["profiles"]


async def _contacts(settings, expected: int) -> bool:
    return await count(settings, "SELECT count(*) AS n FROM contacts") >= expected
