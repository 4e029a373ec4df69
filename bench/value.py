"""Customer value: the models fitted on the run's order ledger, and order -> value freshness.

Models fit: on the pipeline measurement's database (every order of the run, projected), the steps
of `touchstream models fit` on the ledger, each timed: reading the ledger
(``store.ledger_transactions``, converted at the configured rates), the per-customer summary
(``summarise``), the BG/NBD fit and the Gamma-Gamma fit. The calibration end is the sample's last
day, so every run fits the same cohort. Nothing is stored. A fit the data cannot support reports
its FitError message instead of its parameters (its time is still given).

Order -> value freshness: the API and one worker per stage, as `make run` starts them, with nothing
else publishing. Each of N customers of its own first gets one order two weeks back (batch POSTs,
then waited for until its value answers ``rfm.frequency`` 1). Then each customer's second order
(dated now: frequency counts purchase days) is POSTed on its own through the gateway, open loop at
a modest rate; after its 202 the bench polls `GET /v1/customers/{id}/value` every 10 ms until
``rfm.frequency`` is 2. The figure runs from the 202, as the profile's freshness does; from the
send is also reported.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import psycopg

from bench.env import END, BenchEnv, wait_until
from bench.ingest import drain
from bench.loadgen import ms
from projections.value import store
from projections.value.models import FitError, fit_bgnbd, fit_gamma_gamma, summarise
from services.config import Settings
from services.infra.broker import free_port

RATE = 10  # second orders per second, open loop
POLL_MS = 10
GIVE_UP_S = 30.0  # after its 202, an order not shown by then counts as never seen
FIRST_ORDER_DAYS_AGO = 14
FIT_LIMIT_S = 60.0


# --- models fit on the ledger --------------------------------------------------------------

def fit(s: Settings) -> dict[str, Any]:
    """Read the ledger of ``s``'s database, summarise it and fit both models, each step timed."""
    started = time.perf_counter()
    transactions = asyncio.run(_ledger(s))
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    cohort = summarise(transactions, END.date())
    summarise_s = time.perf_counter() - started
    bgnbd = _timed(lambda: fit_bgnbd(cohort.x, cohort.t_x, cohort.T))
    gamma_gamma = _timed(lambda: fit_gamma_gamma(cohort.x, cohort.m_x))
    return {"transactions": len(transactions), "customers": len(cohort),
            "repeat_customers": int((cohort.x > 0).sum()),
            "calibration_end": cohort.calibration_end.isoformat(),
            "read_s": read_s, "summarise_s": summarise_s, "bgnbd": bgnbd, "gamma_gamma": gamma_gamma,
            "total_s": read_s + summarise_s + bgnbd["seconds"] + gamma_gamma["seconds"],
            "limit_s": FIT_LIMIT_S}


async def _ledger(s: Settings) -> list:
    """``store.ledger_transactions`` on a connection that sees the projections' schema."""
    async with await psycopg.AsyncConnection.connect(
            s.database_url, options=f"-c search_path={s.projection_schema},public") as conn:
        return await store.ledger_transactions(conn, dict(s.value_rates))


def _timed(fit_one: Callable[[], Any]) -> dict[str, Any]:
    """One model's fit: its wall time, and its parameters or the FitError's message."""
    started = time.perf_counter()
    try:
        model = fit_one()
    except FitError as e:
        return {"seconds": time.perf_counter() - started, "error": str(e), "params": None}
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "error": None,
            "params": dict(zip(model.PARAMS, model.params, strict=True)),
            "log_likelihood": model.fit.log_likelihood if model.fit else None,
            "iterations": model.fit.iterations if model.fit else None}


# --- order -> value freshness ----------------------------------------------------------------

def freshness(env: BenchEnv, quick: bool, rate: float = RATE) -> dict[str, Any]:
    """Second orders of known customers until their value shows them, on servers of their own."""
    n = 50 if quick else 300
    s = env.isolated(http_port=free_port())
    procs = env.serve(s)
    url = f"http://{s.http_host}:{s.http_port}"
    try:
        customers = first_orders(s, url, n)
        samples = asyncio.run(second_orders(url, customers, rate))
        drain(s)
    finally:
        for p in procs:
            env.stop_child(p)
    return _summary(samples, rate)


def order_event(email: str, at: datetime, order_id: str) -> dict[str, Any]:
    """An order of one line, placed, by the customer known by ``email``, as a channel POSTs it."""
    return {"type": "order", "schema_version": 1,
            "customer": {"customer_id": None, "email": email, "phone": None, "external_ids": {}},
            "occurred_at": at.isoformat(), "channel": "web", "source": "shop",
            "payload": {"order_id": order_id, "amount": "49.90", "currency": "EUR", "status": "placed",
                        "items": [{"sku": "SKU-100", "quantity": 1, "unit_price": "49.90"}]}}


def first_orders(s: Settings, url: str, n: int) -> list[tuple[str, str]]:
    """One order two weeks back for each of ``n`` new customers, projected and readable as value
    frequency 1; (email, customer id) of each."""
    at = datetime.now(UTC) - timedelta(days=FIRST_ORDER_DAYS_AGO)
    emails = [f"value-{i}@bench.touchstream.test" for i in range(n)]
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(0, n, 500):
            events = [order_event(e, at, f"V1-{i + j:05d}") for j, e in enumerate(emails[i:i + 500])]
            client.post("/v1/touchpoints/batch", json={"events": events}).raise_for_status()
        drain(s)
        out = []
        for email in emails:
            found = client.get("/v1/customers", params={"email": email}).json()["items"]
            if not found:
                raise RuntimeError(f"bench: no profile for {email} once the pipeline caught up")
            customer_id = found[0]["customer_id"]
            wait_until(lambda c=customer_id: _frequency(client.get(f"/v1/customers/{c}/value")) == 1,
                       timeout_s=60, interval_s=0.1)
            out.append((email, customer_id))
    return out


def _frequency(answer: httpx.Response) -> int | None:
    return orjson.loads(answer.content)["rfm"]["frequency"] if answer.status_code == 200 else None


async def second_orders(url: str, customers: list[tuple[str, str]], rate: float) -> list[dict]:
    """Each customer's second order due at start + i / rate (open loop), each watched on its own."""
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, timeout=GIVE_UP_S, limits=limits) as client:
        start = time.monotonic() + 0.05
        tasks = []
        for i, (email, customer_id) in enumerate(customers):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(watch(client, email, customer_id, f"V2-{i:05d}")))
        return list(await asyncio.gather(*tasks))


async def watch(client: httpx.AsyncClient, email: str, customer_id: str, order_id: str) -> dict:
    """POST the order; after its 202, poll the customer's value until its frequency is 2."""
    body = orjson.dumps(order_event(email, datetime.now(UTC), order_id))
    sent = time.monotonic()
    answer = await client.post("/v1/touchpoints", content=body,
                               headers={"content-type": "application/json"})
    accepted = time.monotonic()
    out: dict[str, Any] = {"status": answer.status_code, "post_s": accepted - sent, "fresh_s": None,
                           "polls": 0, "get_s": []}
    if answer.status_code != 202:
        return out
    while time.monotonic() - accepted < GIVE_UP_S:
        asked = time.monotonic()
        value = await client.get(f"/v1/customers/{customer_id}/value")
        now = time.monotonic()
        out["polls"] += 1
        out["get_s"].append(now - asked)
        if (_frequency(value) or 0) >= 2:
            out["fresh_s"], out["from_send_s"] = now - accepted, now - sent
            return out
        await asyncio.sleep(POLL_MS / 1000)
    return out


def _summary(samples: list[dict], rate: float) -> dict[str, Any]:
    """Percentiles over the accepted orders; one never seen counts as GIVE_UP_S, so that it
    raises the p99 instead of leaving the sample."""
    never = [x for x in samples if x["status"] == 202 and x["fresh_s"] is None]
    seen = sorted([x["fresh_s"] for x in samples if x["fresh_s"] is not None]
                  + [GIVE_UP_S] * len(never))
    from_send = sorted([x["from_send_s"] for x in samples if x["fresh_s"] is not None]
                       + [GIVE_UP_S + x["post_s"] for x in never])
    posts = sorted(x["post_s"] for x in samples)
    gets = sorted(g for x in samples for g in x["get_s"])
    errors: dict[str, int] = {}
    for x in samples:
        if x["status"] != 202:
            errors[str(x["status"])] = errors.get(str(x["status"]), 0) + 1
    return {"orders": len(samples), "offered_per_s": rate, "seen": len(seen) - len(never),
            "never_seen": len(never),
            "errors": errors, "p50_ms": ms(seen, 0.5), "p99_ms": ms(seen, 0.99), "max_ms": ms(seen, 1),
            "from_send_p50_ms": ms(from_send, 0.5), "from_send_p99_ms": ms(from_send, 0.99),
            "post_p50_ms": ms(posts, 0.5), "post_p99_ms": ms(posts, 0.99),
            "value_get_p50_ms": ms(gets, 0.5), "value_get_p99_ms": ms(gets, 0.99),
            "polls": sum(x["polls"] for x in samples), "poll_ms": POLL_MS, "give_up_s": GIVE_UP_S}
