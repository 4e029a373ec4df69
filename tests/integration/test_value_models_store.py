"""Models fitted on the order ledger are kept in PostgreSQL, one set active, through the CLI."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from projections.clock import Clock
from projections.orders import store as orders
from projections.orders.fold import OrderState
from projections.value import store
from projections.value.jobs import Jobs
from tests.integration.pipeline import rows

pytestmark = pytest.mark.integration
CDNOW = Path(__file__).parent.parent / "data" / "cdnow_sample.csv"
NS = uuid.UUID("0f0e7c1a-5a2b-4c3d-8e9f-112233445566")


def _cli(settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": settings.database_url}
    return subprocess.run([sys.executable, "-m", "services.cli", "models", *args], env=env,
                          capture_output=True, text=True, timeout=120)


async def _ledger_of_cdnow(settings) -> int:
    """Every CDNOW transaction as an order placed that day (ids as UUIDs), plus one cancelled
    order that must not count as a purchase."""
    states = []
    with open(CDNOW, newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            at = f"{row['date']}T12:00:00.000000Z"
            states.append(OrderState(str(uuid.uuid5(NS, row["customer_id"])), f"O-{i}", "placed",
                                     row["amount"], "EUR", at, str(uuid.uuid4()), at))
    states.append(OrderState(states[0].customer_id, "O-cancelled", "cancelled", "999", "EUR",
                             states[0].occurred_at, str(uuid.uuid4()), states[0].placed_at))
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        await orders.save(conn, states)
        await conn.commit()
    return len({s.customer_id for s in states})


async def test_a_fit_on_the_ledger_is_kept_active_and_reproduces_the_cdnow_parameters(settings):
    customers = await _ledger_of_cdnow(settings)
    fitted = _cli(settings, "fit", "--calibration-end", "1997-09-30")
    assert fitted.returncode == 0, fitted.stderr
    assert "model set version 1: active" in fitted.stdout
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        active = await store.active(conn)
    assert active is not None and active.version == 1
    p, s = active.purchases, active.spend
    for got, published in ((p.r, 0.243), (p.alpha, 4.414), (p.a, 0.793), (p.b, 2.426),
                           (s.p, 6.25), (s.q, 3.74), (s.gamma, 15.44)):
        assert got == pytest.approx(published, rel=0.01)
    assert p.fit is not None and p.fit.log_likelihood == pytest.approx(-9582.4, abs=0.1)
    assert active.data == {"source": "ledger", "customers": customers, "repeat_customers": 946}

    # a second set kept aside, then made active by hand; exactly one is active at any time
    again = _cli(settings, "fit", "--calibration-end", "1997-06-30", "--no-activate")
    assert again.returncode == 0 and "model set version 2: kept, not active" in again.stdout
    assert _cli(settings, "activate", "2").returncode == 0
    assert [r["version"] for r in await rows(settings, "SELECT version FROM value_models "
                                                       "WHERE active")] == [2]
    listed = _cli(settings, "list").stdout.splitlines()
    assert [line.split()[0] for line in listed] == ["2", "1"] and "active" in listed[0]
    unknown = _cli(settings, "activate", "7")
    assert unknown.returncode != 0 and "no model set of version 7" in unknown.stderr


async def test_the_scheduled_refit_calibrates_at_the_time_the_log_has_reached(settings):
    """A first load or a replay works through months of orders in minutes: the scheduled fit
    must end its calibration period where the log is, not at today's date, or every customer
    would look silent since their last order and the model would see dropouts everywhere.
    CDNOW's ledger, with the log at the end of its calibration period: the published fit."""
    await _ledger_of_cdnow(settings)
    log_time = datetime(1997, 9, 30, 23, 0, tzinfo=UTC).timestamp()
    jobs = Jobs(settings, None, Clock([log_time, time.monotonic(), 0.0]))  # a batch just saw it
    async with await jobs.connect() as conn:
        version = await jobs.refit(conn)
        active = await store.active(conn)
    assert version == 1 and active is not None and active.version == 1
    assert str(active.calibration_end) == "1997-09-30"
    p = active.purchases
    for got, published in ((p.r, 0.243), (p.alpha, 4.414), (p.a, 0.793), (p.b, 2.426)):
        assert got == pytest.approx(published, rel=0.01)


async def test_without_a_database_the_command_says_what_to_do(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"STATE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "services.cli", "models", "fit"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "set DATABASE_URL, or start `make run`" in done.stderr
