"""Rebuilds and refills over the events the pipeline measurement left: every projection rebuilt
(``touchstream replay all --verify``) from the archive and from the log, and an empty topic
refilled from the archive; each with its CPU per event, this process (the replay's folds) and
PostgreSQL's, which say what limits the rate."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from bench.env import BenchEnv, cpu_seconds
from services import archive
from services.config import Settings
from services.infra.topics import ensure_topics
from services.replay import Replay, closure


def _timed(env: BenchEnv, job: Any) -> tuple[Any, dict[str, float]]:
    pids = env.server_pids()
    before = {"replay": cpu_seconds(os.getpid())} | {
        k: cpu_seconds(p, children=True) for k, p in pids.items()}
    started = time.perf_counter()
    result = job()
    took = time.perf_counter() - started
    after = {"replay": cpu_seconds(os.getpid())} | {
        k: cpu_seconds(p, children=True) for k, p in pids.items()}
    return result, {"seconds": took} | {f"cpu_s_{k}": after[k] - before[k] for k in before}


def rebuild(env: BenchEnv, s: Settings, source: str) -> dict[str, Any]:
    outcome, t = _timed(env, lambda: asyncio.run(
        Replay(s, closure(["all"]), "verify", source).run()))
    n = max(outcome.events, 1)
    return {"events": outcome.events, "seconds": t["seconds"],
            "events_per_s": outcome.events / t["seconds"], "status": outcome.status,
            "equal": outcome.equal, "refused": outcome.refused,
            "cpu_us_per_event": {k[6:]: round(v / n * 1e6, 1) for k, v in t.items()
                                 if k.startswith("cpu_s_")},
            "tables": {name: {"rows": table["rebuilt"]["rows"], "equal": table.get("equal")}
                       for name, table in outcome.tables.items()}}


def refill(env: BenchEnv, s: Settings) -> dict[str, Any]:
    """The archive written to a new, empty topic, as a restarted platform does to its log."""
    target = s.model_copy(update={"log_topic": f"{s.log_topic}-refilled"})
    ensure_topics(target, [target.log_topic])
    written, t = _timed(env, lambda: archive.refill(target))
    return {"events": written, "seconds": t["seconds"], "events_per_s": written / t["seconds"],
            "cpu_us_per_event": {k[6:]: round(v / max(written, 1) * 1e6, 1) for k, v in t.items()
                                 if k.startswith("cpu_s_")}}


def run(env: BenchEnv, s: Settings, log: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for source in ("archive", "kafka"):
        try:
            out[source] = rebuild(env, s, source)
            log(f"rebuild from {source}: {out[source]['events']:,} events, "
                f"{out[source]['events_per_s']:,.0f} events/s, {out[source]['status']}")
        except Exception as exc:  # noqa: BLE001 - reported beside the other figures
            out[source] = {"error": repr(exc), "events_per_s": None}
            log(f"rebuild from {source} failed: {exc!r}")
    try:
        out["refill"] = refill(env, s)
        log(f"refill: {out['refill']['events']:,} events in {out['refill']['seconds']:.1f} s")
    except Exception as exc:  # noqa: BLE001
        out["refill"] = {"error": repr(exc), "seconds": None}
        log(f"refill failed: {exc!r}")
    return out
