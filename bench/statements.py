"""Where PostgreSQL's time goes in the pipeline: ``pipeline.run`` (one worker per stage, as in the
full run) on the embedded server with ``pg_stat_statements`` loaded, then the statements by total
execution time, the rows each table took and the tier and stage changes the value projection
recorded.

    python -m bench.statements [--events N] [--top K] [--compare REF] [--out FILE]

``--compare REF`` then runs the pipeline of commit REF (a commit with the archive stage and
sealed records, from 2026-12-03 on) on the same servers and events, right after ours: the
figures of both, free of the drift between runs.

Execution times are wall-clock inside the server: on two saturated cores they include waiting
for a core, so they rank statements rather than add up to the database's CPU (which is measured,
per process, beside them).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import psycopg

from bench import pipeline
from bench.baseline import Baseline
from bench.env import BenchEnv, raw_records
from services.config import Settings


def _start(state: Path) -> BenchEnv:
    """The bench's servers, PostgreSQL restarted once with pg_stat_statements loaded."""
    env = BenchEnv.start(Settings(state_dir=state))
    with psycopg.connect(env.base.database_url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    env.stop()
    env = BenchEnv.start(Settings(state_dir=state))
    with psycopg.connect(env.base.database_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("SELECT pg_stat_statements_reset()")
    return env


def _compare(env: BenchEnv, records: list, ref: str) -> dict:
    checkout = Baseline.checkout(ref, Path(env.base.state_dir, "baseline"), sealed=True)
    try:
        then = pipeline.run(env, records, stages=list(pipeline.STAGES), baseline=checkout)
    finally:
        checkout.remove()
    return {"ref": ref, "events_per_s": round(then["events_per_s"]),
            "cpu_us_per_event": then["cpu_us_per_event"]}


def run(events: int, top: int, compare: str | None = None) -> dict:
    state = Path(tempfile.mkdtemp(prefix="ts-statements-"))
    records = raw_records(events, max(events // 10, 1000))
    env = _start(state)
    try:
        ours = pipeline.run(env, records, stages=list(pipeline.STAGES))
        with psycopg.connect(env.base.database_url, autocommit=True) as conn:
            total = conn.execute("SELECT sum(total_exec_time) FROM pg_stat_statements").fetchone()[0]
            rows = conn.execute(
                "SELECT total_exec_time, calls, rows, regexp_replace(query, '\\s+', ' ', 'g') "
                "FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT %s", (top,)).fetchall()
        with psycopg.connect(ours["settings"].database_url) as conn:
            changes = conn.execute("SELECT kind, old, new, count(*) FROM customer_changes "
                                   "GROUP BY 1, 2, 3 ORDER BY 4 DESC").fetchall()
        env.discard()
        before = _compare(env, records, compare) if compare else None
    finally:
        env.stop()
        shutil.rmtree(state, ignore_errors=True)
    return {
        "events": events,
        "events_per_s": round(ours["events_per_s"]),
        "cpu_us_per_event": ours["cpu_us_per_event"],
        "rows_written": ours["rows_written"],
        "exec_ms_total": round(float(total)),
        "statements": [{"exec_ms": round(float(ms)), "share": round(float(ms) / float(total), 3),
                        "calls": calls, "rows": n, "query": q[:300]} for ms, calls, n, q in rows],
        "changes": [{"kind": k, "old": o, "new": n, "count": c} for k, o, n, c in changes],
        "compared": before,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.statements", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000, help="pipeline events (default 1M)")
    p.add_argument("--top", type=int, default=25, help="statements to list")
    p.add_argument("--compare", default="", help="also the pipeline of this commit, same events")
    p.add_argument("--out", default="", help="also write the figures to this JSON file")
    a = p.parse_args(argv)
    result = run(a.events, a.top, a.compare or None)
    print(f"{result['events']:,} events: {result['events_per_s']:,} events/s; CPU us per event "
          f"{result['cpu_us_per_event']}; statements {result['exec_ms_total'] / 1000:,.0f} s")
    for s in result["statements"]:
        print(f"{s['exec_ms'] / 1000:8.1f} s {s['share']:6.1%} {s['calls']:7,} calls "
              f"{s['rows']:10,} rows  {s['query'][:150]}")
    if result["compared"]:
        c = result["compared"]
        print(f"{c['ref']}: {c['events_per_s']:,} events/s; CPU us per event {c['cpu_us_per_event']}")
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    sys.exit(main())
