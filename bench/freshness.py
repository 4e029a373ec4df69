"""Freshness: from a POST's 202 until the event shows in the customer's profile over HTTP.

Single events are offered at a steady 2,000/s through the gateway by our load generator (its own
process). Every Nth event (about ten a second) is for a customer of its own; after its 202 the
generator polls `GET /v1/customers?email=...` every 10 ms until the profile's last contact is that
event. The sample is small so that polling adds little load; its size and poll rate are reported.

The same run gives the window in which an acknowledged event is not yet archived (what an
embedded broker that dies takes with it): per archived event, from the time the gateway accepted
it (``recorded_at``, just before the broker's acknowledgement) to the time the archive stage
stamped it (the archived state's ``timestamp``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import orjson
import psycopg

from bench.env import END, BenchEnv
from bench.ingest import drain
from bench.loadgen import measure
from services import archive
from services.infra.broker import free_port
from services.sample import SampleSpec, generate

RATE = 2000
SAMPLES_PER_S = 10
POLL_MS = 10


def write_events(path: Path, events: int, every: int) -> Path:
    """Sample events; each `every`th is the only event of a new customer, found by its email."""
    with path.open("wb") as f:
        for i, e in enumerate(generate(SampleSpec(customers=20_000, events=events, seed=21, end=END))):
            if i % every == 0:
                e["customer"] = {"customer_id": None, "email": f"fresh-{i}@bench.touchstream.test",
                                 "phone": None, "external_ids": {}}
            f.write(orjson.dumps(e) + b"\n")
    return path


def run(env: BenchEnv, quick: bool, rate: int = RATE) -> dict:
    s = env.isolated(http_port=free_port())
    procs = env.serve(s)
    seconds, warmup = (20, 2) if quick else (60, 5)
    every = max(1, rate // SAMPLES_PER_S)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            events = write_events(Path(tmp, "events.jsonl"), int(rate * (seconds + warmup)), every)
            out = measure("fresh", f"http://{s.http_host}:{s.http_port}", events, rate=rate,
                          seconds=seconds, warmup=warmup, poll_every=every, poll_ms=POLL_MS)
        drain(s)
        archive.drain(s, 120)
        window = archive_window(s)
    finally:
        for p in procs:
            env.stop_child(p)
    fresh = out["freshness"]
    return {"p50_ms": fresh["p50_ms"], "p99_ms": fresh["p99_ms"], "max_ms": fresh["max_ms"],
            "offered_rps": rate, "achieved_rps": out["achieved_rps"], "events": out["ok"],
            "seconds": seconds, "sampled": fresh["sampled"], "never_seen": fresh["never_seen"],
            "poll_ms": POLL_MS, "polls_per_s": fresh["polls_per_s"],
            "post_p50_ms": out["p50_ms"], "post_p99_ms": out["p99_ms"], "errors": out["errors"],
            "generator": out["generator"], "archive_window": window}


def archive_window(s) -> dict:
    """Percentiles (ms) of archived-at minus accepted-at over the events the run archived."""
    with psycopg.connect(s.database_url) as conn:
        row = conn.execute(
            "WITH w AS (SELECT extract(epoch FROM (d ->> 'timestamp')::timestamptz - "
            "(d -> 'event' ->> 'recorded_at')::timestamptz) * 1000 AS ms FROM ("
            f"SELECT convert_from(state, 'UTF8')::jsonb AS d FROM {archive.TABLE}) x "
            "WHERE d -> 'event' ? 'recorded_at') "
            "SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), "
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), max(ms)::float FROM w").fetchone()
    return {"events": row[0], "p50_ms": row[1], "p99_ms": row[2], "max_ms": row[3]}
