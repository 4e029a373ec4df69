"""Ingest through the doors: HTTP single events, HTTP batches of 500, and the Python SDK.

The API and the workers run as `make run` runs them; our load generator is another process.
Single events: p50/p99 at a fixed 2,000 requests/s offered, then offered load in steps up to the
first step whose p99 reaches 25 ms. Between measurements the workers catch up, so a backlog left by
one does not slow the next.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import psycopg

from bench import importable
from bench.env import END, BenchEnv, cpu_seconds, wait_until
from bench.loadgen import measure
from bench.pipeline import caught_up
from services.config import Settings
from services.infra.broker import free_port
from services.kafka import topic_ends
from services.sample import SampleSpec, generate
from services.sdk import TouchstreamProducer

FIXED_RPS = 2000
STEPS = (100, 250, 500, 1000, 1500, 2000, 3000, 4000, 6000)
P99_LIMIT_MS = 25.0


def write_events(path: Path, events: int, customers: int, seed: int) -> Path:
    """Wire-shaped sample events, one JSON document a line (what a channel would POST)."""
    with path.open("wb") as f:
        for e in generate(SampleSpec(customers=customers, events=events, seed=seed, end=END)):
            f.write(orjson.dumps(e) + b"\n")
    return path


def drain(settings: Settings, timeout_s: float = 600) -> None:
    """Wait until both stages have processed everything published so far."""
    raw = asyncio.run(topic_ends(settings, settings.raw_topic))
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        wait_until(lambda: caught_up(conn, "identity", raw), timeout_s, interval_s=0.1)
        log = asyncio.run(topic_ends(settings, settings.log_topic))
        wait_until(lambda: caught_up(conn, "projections", log), timeout_s, interval_s=0.1)


def run(env: BenchEnv, quick: bool) -> dict:
    s = env.isolated(http_port=free_port())
    procs = env.serve(s)
    url = f"http://{s.http_host}:{s.http_port}"
    seconds, warmup = (10, 2) if quick else (30, 5)
    step_s = 5 if quick else 10
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # runs start where the last stopped; past the end the generator starts again at the top
            need = 100_000 if quick else 250_000
            events = write_events(Path(tmp, "events.jsonl"), need, customers=20_000, seed=11)
            used = 0

            def offer(rate: float, secs: float, warm: float) -> dict:
                nonlocal used
                cpu = cpu_seconds(procs[0].pid, children=True)
                out = measure("post-single", url, events, rate=rate, seconds=secs, warmup=warm, skip=used)
                sent = int(rate * (secs + warm)) + 1
                spent = cpu_seconds(procs[0].pid, children=True) - cpu  # uvicorn's workers too
                out["api_cpu_ms_per_request"] = round(spent / sent * 1000, 3)
                used += sent
                drain(s)
                return out

            Path(tmp, "healthz.txt").write_text("/healthz\n")
            healthz = measure("get", url, Path(tmp, "healthz.txt"), rate=FIXED_RPS, seconds=5)
            offer(200, 2, 0)  # first requests open the producer's connections
            fixed = offer(FIXED_RPS, seconds, warmup)
            steps = []
            for rate in STEPS:
                steps.append(offer(rate, step_s, 1))
                if not steps[-1]["p99_ms"] or steps[-1]["p99_ms"] >= P99_LIMIT_MS or steps[-1]["errors"]:
                    break
            batch = measure("post-batch", url, events, seconds=seconds, warmup=warmup, batch=500,
                            connections=4, skip=used)
            drain(s)
        sdk = sdk_publish(s, 20_000 if quick else 100_000)
        drain(s)
    finally:
        for p in procs:
            env.stop_child(p)
    passed = [st["offered_rps"] for st in steps
              if st["p99_ms"] and st["p99_ms"] < P99_LIMIT_MS and not st["errors"]]
    return {
        "http_single": {"p50_ms": fixed["p50_ms"], "p99_ms": fixed["p99_ms"], "offered_rps": FIXED_RPS,
                        "achieved_rps": fixed["achieved_rps"],
                        "max_rps_p99_under_25ms": max(passed, default=0),
                        "errors": fixed["errors"], "steps": [_step(st) for st in steps],
                        "generator": fixed["generator"]},
        "http_batch": {"events_per_s": batch["events_per_s"], "batch_p50_ms": batch["p50_ms"],
                       "batch_p99_ms": batch["p99_ms"], "errors": batch["errors"],
                       "connections": batch["connections"]},
        "sdk": sdk,
        "generator": {"healthz_offered_rps": FIXED_RPS, "healthz_achieved_rps": healthz["achieved_rps"],
                      "healthz_p99_ms": healthz["p99_ms"], **healthz["generator"]},
    }


def _step(st: dict) -> dict:
    return {k: st[k] for k in ("offered_rps", "achieved_rps", "p50_ms", "p99_ms", "errors",
                               "api_cpu_ms_per_request")}


def sdk_publish(s: Settings, events: int) -> dict:
    """TouchstreamProducer as a channel uses it, in a process of its own (like a channel; the
    bench's own heap would otherwise slow its garbage collector): validate and send each event,
    then flush. It holds the signing key: a trusted channel, as our doors are."""
    done = subprocess.run([sys.executable, "-m", "bench.ingest", s.kafka_bootstrap_servers,
                           s.raw_topic, str(events)], capture_output=True, text=True, timeout=3600,
                          env=importable({**os.environ, "SIGNING_KEY": s.signing_key}))
    if done.returncode:
        raise RuntimeError(f"SDK publisher failed: {done.stderr[-2000:]}")
    return orjson.loads(done.stdout.strip().splitlines()[-1])


def _sdk_publisher(bootstrap_servers: str, topic: str, events: int) -> dict:
    sample = list(generate(SampleSpec(customers=20_000, events=events, seed=12, end=END)))
    with TouchstreamProducer(bootstrap_servers, topic=topic,
                             signing_key=os.environ.get("SIGNING_KEY", "")) as producer:
        started = time.perf_counter()
        for e in sample:
            producer.publish(e)
        producer.flush()
        elapsed = time.perf_counter() - started
    return {"events": events, "seconds": round(elapsed, 2), "events_per_s": round(events / elapsed, 1)}


if __name__ == "__main__":
    print(orjson.dumps(_sdk_publisher(sys.argv[1], sys.argv[2], int(sys.argv[3]))).decode())
