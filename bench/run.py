"""`python -m bench`: run every measurement on one set of servers and report figure beside limit."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench import (
    alerts,
    freshness,
    ingest,
    isolation,
    limits,
    peers,
    pipeline,
    queries,
    replay,
    report,
    value,
)
from bench.baseline import BASELINE_TYPES, DEFAULT_REF, Baseline
from bench.env import BenchEnv, raw_records
from projections import REGISTRY
from services.config import Settings


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def pipeline_figures(env: BenchEnv, records: list, quick: bool,
                     baseline_ref: str | None = DEFAULT_REF) -> tuple[dict[str, Any], Settings]:
    stages = list(pipeline.STAGES)
    log(f"pipeline: {len(records):,} events, one worker process per stage")
    one = pipeline.run(env, records, stages=stages)
    s = one.pop("settings")
    before = baseline_figures(env, records, stages, baseline_ref, one) if baseline_ref else None
    log(f"pipeline: {one['events_per_s']:,.0f} events/s; limits next")
    consumed = asyncio.run(limits.consume(s, s.log_topic, one["log_records"]))
    copied = limits.copy_rows(s, records, rows=min(len(records), 200_000))
    log("pipeline: two worker processes per stage")
    two = pipeline.run(env, records, workers=2, stages=stages)
    two.pop("settings")
    produce_rate = one["produce"]["events_per_s"]
    candidates = {
        "consume": consumed["events_per_s"] / 2,
        "produce": produce_rate,
        "copy": copied["rows_per_s"] / one["rows_per_event"],
    }
    basis = min(candidates, key=candidates.get)
    limit = candidates[basis]
    figures = {
        "events": one["events"],
        "events_per_s": one["events_per_s"],
        "seconds": one["seconds"],
        "limit_events_per_s": limit,
        "limit_basis": (
            f"min(consume {consumed['events_per_s']:,.0f}/s / 2 reads per event, produce "
            f"{produce_rate:,.0f}/s x 1 write per event, COPY {copied['rows_per_s']:,.0f} rows/s / "
            f"{one['rows_per_event']:.2f} rows per event) = {basis}"),
        "limits": {"consume": consumed, "produce": one["produce"], "copy": copied,
                   "rows_per_event": one["rows_per_event"], "rows_written": one["rows_written"]},
        "ratio_to_limit": one["events_per_s"] / limit,
        "two_workers_events_per_s": two["events_per_s"],
        "two_workers_ratio": two["events_per_s"] / one["events_per_s"],
        "cpu_us_per_event": one["cpu_us_per_event"],
        "cpu_us_per_event_by_process": {_process_name(k, stages): v
                                        for k, v in one["cpu_us_per_event"].items()},
        "cpu_us_per_event_total": round(sum(one["cpu_us_per_event"].values()), 1),
        "projections": [p.name for p in REGISTRY],
        "baseline": before,
        "peers": {},
        "ratio_to_faust": None,
        "ratio_to_quixstreams": None,
    }
    expected = one["contacts_rows"]
    log("peers: our projection stage, a faust agent and a quixstreams application on the same log")
    ours = peers.run_ours(env, s, expected)
    figures["projection_stage"] = ours
    for kind in ("faust", "quixstreams"):
        try:
            figures["peers"][kind] = peers.run_peer(env, kind, s, expected)
            figures[f"ratio_to_{kind}"] = ours["events_per_s"] / figures["peers"][kind]["events_per_s"]
        except Exception as exc:  # noqa: BLE001 - a peer that cannot run is reported, not hidden
            figures["peers"][kind] = {"error": repr(exc), "events_per_s": None}
            log(f"peer {kind} failed: {exc!r}")
    memory = {}
    for phase in ("20pct", "100pct"):
        for name, mb in one["memory"].get(phase, {}).items():
            memory.setdefault(_process_name(name, stages), {})[f"rss_mb_{phase}"] = mb
    return {"pipeline": figures, "memory": memory}, s


def baseline_figures(env: BenchEnv, records: list, stages: list[str], ref: str,
                     ours: dict[str, Any]) -> dict[str, Any]:
    """The same events through the pipeline of commit ``ref``, on the same servers. Event types
    that ``ref`` does not know are left out, and ours runs again on the same subset when any are:
    both sides then do the same work."""
    known = [r for r in records if _type(r[1]) in BASELINE_TYPES]
    log(f"pipeline: {len(known):,} events of the types {ref} knows, through its workers and ours")
    try:
        if len(known) < len(records):
            ours = pipeline.run(env, known, stages=stages)
            ours.pop("settings")
        checkout = Baseline.checkout(ref, Path(env.base.state_dir, "baseline"))
        try:
            then = pipeline.run(env, known, stages=list(pipeline.BEFORE_ARCHIVE), baseline=checkout)
        finally:
            checkout.remove()
    except Exception as exc:  # noqa: BLE001 - a baseline that cannot run is reported, not hidden
        log(f"baseline {ref} failed: {exc!r}")
        return {"ref": ref, "error": repr(exc), "events_per_s": None, "ratio": None}
    log(f"pipeline at {ref}: {then['events_per_s']:,.0f} events/s")
    return {"ref": ref, "events": len(known), "events_per_s": then["events_per_s"],
            "seconds": then["seconds"], "cpu_us_per_event": then["cpu_us_per_event"],
            "ours_events_per_s": ours["events_per_s"], "ours_cpu_us_per_event": ours["cpu_us_per_event"],
            "ratio": ours["events_per_s"] / then["events_per_s"]}


def models_figures(s: Settings) -> dict[str, Any]:
    """BG/NBD and Gamma-Gamma fitted on the order ledger the pipeline measurement left in ``s``'s
    database (a fit the data cannot support reports its FitError inside the figures)."""
    log("models: BG/NBD and Gamma-Gamma fitted on the pipeline's order ledger")
    try:
        fitted = value.fit(s)
    except Exception as exc:  # noqa: BLE001 - a fit that cannot run is reported, not hidden
        log(f"models fit failed: {exc!r}")
        return {"error": repr(exc), "total_s": None}
    log(f"models: {fitted['customers']:,} customers ({fitted['repeat_customers']:,} repeat buyers) "
        f"in {fitted['total_s']:.2f} s")
    return fitted


def value_freshness(env: BenchEnv, quick: bool) -> dict[str, Any]:
    """Order -> value freshness (``value.freshness``); an error is reported, not hidden."""
    try:
        return value.freshness(env, quick)
    except Exception as exc:  # noqa: BLE001 - reported beside the other figures
        log(f"value freshness failed: {exc!r}")
        return {"error": repr(exc), "p50_ms": None, "p99_ms": None}


def alert_figures(env: BenchEnv, quick: bool) -> dict[str, Any]:
    """Complaint -> alert stream latency and the fan-out (``alerts.run``); an error is reported,
    not hidden."""
    try:
        return alerts.run(env, quick, log=log)
    except Exception as exc:  # noqa: BLE001 - reported beside the other figures
        log(f"alerts failed: {exc!r}")
        return {"error": repr(exc)}


def _type(value: bytes) -> str:
    return orjson.loads(value)["type"]


def _process_name(name: str, stages: list[str]) -> str:
    if name.startswith("worker-"):
        jobs = "_jobs" if name.endswith("-jobs") else ""
        return f"worker_{stages[int(name.split('-')[1]) % len(stages)]}{jobs}"
    return name


def main(events: int | None, quick: bool, out: Path | None, state_dir: Path,
         baseline_ref: str | None = DEFAULT_REF) -> dict[str, Any]:
    n = events or (200_000 if quick else 1_000_000)
    customers = max(n // 10, 1000)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    shutil.rmtree(state_dir, ignore_errors=True)
    log(f"generating {n:,} events for {customers:,} customers")
    records = raw_records(n, customers)
    env = BenchEnv.start(Settings(state_dir=state_dir))
    try:
        result: dict[str, Any] = {"started_at": started, "quick": quick, "machine": report.machine()}
        figures, pipeline_settings = pipeline_figures(env, records, quick, baseline_ref)
        result.update(figures)
        del records
        result["models"] = models_figures(pipeline_settings)
        log("replay: every projection rebuilt from the archive and from the log; a refill")
        result["replay"] = replay.run(env, pipeline_settings, log)
        env.discard()
        log("ingest: HTTP single and batch, SDK")
        result["ingest"] = ingest.run(env, quick)
        env.discard()
        log("freshness: POST until the profile shows it")
        result["freshness"] = {"profile": freshness.run(env, quick)}
        env.discard()
        log("freshness: a known customer's order until its value shows it")
        result["freshness"]["value"] = value_freshness(env, quick)
        env.discard()
        log(f"alerts: complaint -> alert stream, {alerts.WATCHERS} watchers, with and without load")
        result["alerts"] = alert_figures(env, quick)
        env.discard()
        log("queries: profile and timeline, idle and under load")
        result["query"] = queries.run(
            env, quick, pipeline_events_per_s=figures["pipeline"]["events_per_s"],
            produce_events_per_s=figures["pipeline"]["limits"]["produce"]["events_per_s"])
        env.discard()
        log(f"isolation: one poison record in a batch of {isolation.BATCH:,}")
        result["isolation"] = isolation.run(env)
        env.discard()
    finally:
        env.stop()
    command = "python -m bench " + " ".join(sys.argv[1:])
    path = report.write_json(result, out)
    table = report.markdown(result, command.strip())
    print(table)
    log(f"results in {path}")
    return result
