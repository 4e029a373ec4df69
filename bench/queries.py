"""Queries: profile and timeline lookups of known customers at 500 requests/s, open loop.

Once with the pipeline idle (a sample published and projected), then again while the workers
work through a large batch published to touchpoints.raw. The result says whether the pipeline was
still busy when the last request was answered; if not, the "load" figures flatter.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import psycopg

from bench.env import BenchEnv, cpu_seconds, raw_records
from bench.ingest import drain
from bench.limits import produce
from bench.loadgen import measure
from bench.pipeline import caught_up
from services.config import Settings
from services.infra.broker import free_port
from services.kafka import topic_ends

RATE = 500
ENDPOINTS = {"profile": "/v1/customers/{}", "timeline": "/v1/customers/{}/timeline"}


@contextlib.contextmanager
def busy_pipeline(s: Settings, events: int):
    """Publish a large batch (acks=all) and let the workers chew on it."""
    asyncio.run(produce(s, s.raw_topic, raw_records(events, customers=50_000, seed=31)))
    yield


def run(env: BenchEnv, quick: bool,
        during: Callable[[Settings], AbstractContextManager] | None = None,
        pipeline_events_per_s: float = 10_000, produce_events_per_s: float = 50_000) -> dict:
    """`during(settings)` keeps the pipeline busy for the second round; default: a batch that the
    workers need longer than both rounds take, at the pipeline rate measured in the same run."""
    s = env.isolated(http_port=free_port())
    procs = env.serve(s)
    url = f"http://{s.http_host}:{s.http_port}"
    seconds, warmup = (10, 2) if quick else (20, 3)
    # The workers start on the backlog while it is published, and the lookups start after: it must
    # outlast publishing plus both rounds at the pipeline rate measured in the same run.
    rate, publish = pipeline_events_per_s, max(produce_events_per_s, pipeline_events_per_s * 1.5)
    backlog = int((2 * (seconds + warmup) + 5) * rate * publish / (publish - rate) * 1.5)
    during = during or (lambda st: busy_pipeline(st, backlog))
    out: dict[str, dict] = {name: {} for name in ENDPOINTS}
    try:
        asyncio.run(produce(s, s.raw_topic, raw_records(20_000, customers=2_000, seed=7)))
        drain(s)
        with psycopg.connect(s.database_url, autocommit=True) as conn:
            ids = [str(r[0]) for r in conn.execute(
                "SELECT customer_id FROM profiles ORDER BY customer_id LIMIT 2000").fetchall()]
        with tempfile.TemporaryDirectory() as tmp:
            paths = {}
            for name, template in ENDPOINTS.items():
                paths[name] = Path(tmp, f"{name}.txt")
                paths[name].write_text("".join(template.format(i) + "\n" for i in ids))

            def lookups(phase: str) -> None:
                for name, path in paths.items():
                    cpu = cpu_seconds(procs[0].pid, children=True)
                    r = measure("get", url, path, rate=RATE, seconds=seconds, warmup=warmup)
                    api_ms = ((cpu_seconds(procs[0].pid, children=True) - cpu)
                              / (RATE * (seconds + warmup)) * 1000)
                    out[name].update({f"{phase}_p50_ms": r["p50_ms"], f"{phase}_p99_ms": r["p99_ms"],
                                      f"{phase}_achieved_rps": r["achieved_rps"],
                                      f"{phase}_errors": r["errors"],
                                      f"{phase}_api_cpu_ms_per_request": round(api_ms, 3)})

            lookups("idle")
            with during(s):
                lookups("load")
                busy = _still_busy(s)
    finally:
        for p in procs:
            env.stop_child(p)
    return {**out, "rate_rps": RATE, "seconds": seconds, "customers": len(ids),
            "pipeline_busy_throughout": busy}


def _still_busy(s: Settings) -> bool:
    with psycopg.connect(s.database_url, autocommit=True) as conn:
        if not caught_up(conn, "identity", asyncio.run(topic_ends(s, s.raw_topic))):
            return True
        return not caught_up(conn, "projections", asyncio.run(topic_ends(s, s.log_topic)))
