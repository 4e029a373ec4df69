"""Profile state documents and the order ledger come back from PostgreSQL whole, and the view
reads as documented."""

from __future__ import annotations

import psycopg
import pytest

from projections.orders import fold as ledger
from projections.orders import store as orders
from projections.profile import store
from projections.profile.fold import add_touch, new_state, read_touch
from services.store import migrate
from tests.conftest import fresh_database
from tests.unit.test_profile_fold import ANN, BOB, T1, T2, T3, complaint, feedback, order, touch

NASTY = "tab\there, newline\nthere, back\\slash, \"quoted\", {braces}, NULL, \\N, ünïcødé"


def state(*events) -> dict:
    s = new_state()
    for e in events:
        add_touch(s, read_touch(e))
    return s


def rich_state() -> dict:
    return state(
        touch("call", at=T2, event_id="e-2", channel="phone", email="ann@example.com",
              external_ids={"crm": "C1"}, attributes={"name": "Ann", "vip": True}),
        order("12.50", at=T1, event_id="e-1", phone="+447456767967",
              external_ids={"crm": "C2", "pos": "P9"}, attributes={"tags": ["a", "b"]}),
        complaint("K-1", "open", T1, event_id="e-3"),
        complaint("K-2", "open", T2, event_id="e-4"),
        complaint("K-1", "resolved", T3, event_id="e-5", email="ann.smith@example.com"),
        feedback("csat", 2, T2, event_id="e-6", order_id="O-1"),
        feedback("nps", 9, T3, event_id="e-7"),
    )


@pytest.fixture
def url(servers) -> str:
    u = fresh_database(servers["database"])
    migrate(u)
    return u


async def test_states_round_trip_through_the_table(url: str) -> None:
    odd = state(touch("call", event_id="e-9", attributes={"note": NASTY, NASTY: [NASTY]},
                      external_ids={"crm": NASTY}, email="\"o\\\\d,d\"@example.com",
                      phone=NASTY, customer_id=BOB))
    quiet = "6b1f0c1e-7f7a-4d6b-9a51-2c3d4e5f6a03"
    async with await psycopg.AsyncConnection.connect(url) as conn:
        written = await store.save_states(conn, {ANN: rich_state(), BOB: odd, quiet: new_state()})
        await conn.commit()
        loaded = await store.load_states(conn, [ANN, BOB, quiet])
    assert loaded == {ANN: rich_state(), BOB: odd, quiet: new_state()}
    assert set(written) == {ANN, BOB, quiet}


async def test_columns_and_view_read_as_documented(url: str) -> None:
    placed = ledger.read(order("12.50", order_id="O-1", at=T1,
                               event_id="00000000-0000-4000-8000-000000000001"))
    refunded = ledger.read(order("2.50", "refunded", currency="USD", order_id="O-2", at=T1,
                                 event_id="00000000-0000-4000-8000-000000000002"))
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await store.save_states(conn, {ANN: rich_state()})
        await orders.save(conn, [placed, refunded])
        await conn.commit()
        row = await (await conn.execute(
            "SELECT emails, phones, first_seen = %s::timestamptz, last_seen = %s::timestamptz, "
            "events_count, open_complaints FROM profiles WHERE customer_id = %s",
            (T1, T3, ANN))).fetchone()
        view = await (await conn.execute(
            "SELECT external_ids, attributes, orders_count, spend, complaints, satisfaction "
            "FROM customer_profiles WHERE customer_id = %s", (ANN,))).fetchone()
        back = await orders.load(conn, [(ANN, "O-1"), (ANN, "O-2"), (ANN, "O-3")])
    assert row == (["ann.smith@example.com", "ann@example.com"], ["+447456767967"], True, True, 7, 1)
    external_ids, attributes, orders_count, spend, complaints, satisfaction = view
    assert external_ids == {"crm": ["C1", "C2"], "pos": ["P9"]}
    assert attributes == {"name": "Ann", "vip": True, "tags": ["a", "b"]}
    assert (orders_count, spend) == (1, {"EUR": "12.50"})
    assert complaints["K-1"][2] == "resolved"
    assert satisfaction == {"csat": {"latest": [T2, "e-6", 2], "counts": {"2": 1}},
                            "nps": {"latest": [T3, "e-7", 9], "counts": {"9": 1}}}
    assert back == {(ANN, "O-1"): placed, (ANN, "O-2"): refunded}


async def test_saving_again_replaces_the_row(url: str) -> None:
    first = state(touch(event_id="a", email="ann@example.com"))
    later = state(touch(event_id="a", email="ann@example.com"), touch(event_id="b", at=T3))
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await store.save_states(conn, {ANN: first})
        await store.save_states(conn, {ANN: later})
        await conn.commit()
        assert await store.load_states(conn, [ANN]) == {ANN: later}


async def test_a_document_stored_before_satisfaction_existed_loads_and_folds(url: str) -> None:
    old = state(touch(event_id="a", email="ann@example.com"))
    del old["satisfaction"]
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await store.save_states(conn, {ANN: old})
        await conn.commit()
        [view] = await (await conn.execute(
            "SELECT satisfaction FROM customer_profiles WHERE customer_id = %s", (ANN,))).fetchone()
        loaded = (await store.load_states(conn, [ANN]))[ANN]
    assert view == {} and loaded == old
    add_touch(loaded, read_touch(feedback("nps", 3, T2, event_id="b")))
    assert loaded["satisfaction"] == {"nps": {"latest": [T2, "b", 3], "counts": {"3": 1}}}
