"""Profiles written with ``save`` come back from PostgreSQL whole, and read as documented."""

from __future__ import annotations

import psycopg
import pytest

from projections.profile import store
from projections.profile.fold import empty, merge
from services.store import migrate
from tests.conftest import fresh_database
from tests.unit.test_profile_fold import ANN, BOB, T1, T3, fold, touch
from tests.unit.test_profile_store import rich_profile

NASTY = "tab\there, newline\nthere, back\\slash, \"quoted\", {braces}, NULL, \\N, ünïcødé"


@pytest.fixture
def url(servers) -> str:
    u = fresh_database(servers["database"])
    migrate(u)
    return u


async def test_profiles_round_trip_through_the_table(url: str) -> None:
    odd = fold([touch("call", event_id="e-9", attributes={"note": NASTY, NASTY: [NASTY]},
                      external_ids={"crm": NASTY}, email="\"o\\\\d,d\"@example.com",
                      phone=NASTY, customer_id=BOB)])
    quiet = empty("6b1f0c1e-7f7a-4d6b-9a51-2c3d4e5f6a03")
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await store.save(conn, [rich_profile(), odd, quiet])
        await conn.commit()
        loaded = await store.load(conn, [ANN, BOB, quiet.customer_id])
    assert loaded == {ANN: rich_profile(), BOB: odd, quiet.customer_id: quiet}


async def test_columns_and_view_read_as_documented(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await store.save(conn, [rich_profile()])
        await conn.commit()
        row = await (await conn.execute(
            "SELECT emails, phones, first_seen = %s::timestamptz, last_seen = %s::timestamptz, "
            "events_count, orders_count, open_complaints FROM profiles WHERE customer_id = %s",
            (T1, T3, ANN))).fetchone()
        view = await (await conn.execute(
            "SELECT external_ids, attributes, spend, complaints FROM customer_profiles "
            "WHERE customer_id = %s", (ANN,))).fetchone()
    assert row == (["ann.smith@example.com", "ann@example.com"], ["+447456767967"], True, True,
                   6, 1, 1)
    external_ids, attributes, spend, complaints = view
    assert external_ids == {"crm": ["C1", "C2"], "pos": ["P9"]}
    assert attributes == {"name": "Ann", "vip": True, "tags": ["a", "b"]}
    assert spend == {"EUR": "12.50", "USD": "-2.50"}
    assert complaints["K-1"][2] == "resolved"


async def test_saving_again_replaces_the_row(url: str) -> None:
    first = fold([touch(event_id="a", email="ann@example.com")])
    later = merge(first, fold([touch(event_id="b", at=T3)]))
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await store.save(conn, [first])
        await store.save(conn, [later])
        await conn.commit()
        assert await store.load(conn, [ANN]) == {ANN: later}
