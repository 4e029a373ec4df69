"""The pipeline: all events on touchpoints.raw, then identity, every registered projection (contact
history, order ledger, profile, customer value, churn alerts) and the archive committed.

Workers are `touchstream worker` processes, started as `make run` starts them (acks=all,
exactly-once tracking, committed transactions). The clock starts when every partition of both
stages is assigned and stops when the tracked offsets of both stages reach the ends of their
topics (ends from fetch responses, not ListOffsets).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import psutil
import psycopg

from bench.baseline import Baseline
from bench.env import BenchEnv, cpu_seconds, rss_mb, wait_until
from bench.limits import produce
from projections import REGISTRY
from services.kafka import topic_ends

STAGES = ("identity", "projections", "archive")  # as `make run` starts them
BEFORE_ARCHIVE = ("identity", "projections")  # what a baseline commit without the archive runs
# rows written per event (for the COPY limit): the runtime's, identity's, the archive's and every
# projection's tables (a baseline's checkout counts those it has)
ROW_TABLES = ("ts_processed_events", "identity_keys", "identity_customers", "identity_links",
              "archive_events", "ts_changes", "alert_log",
              *(t for p in REGISTRY for t in p.tables))


def _positions(conn: psycopg.Connection, processor: str) -> dict[int, int]:
    return dict(conn.execute('SELECT partition, "offset" FROM ts_tracking WHERE processor = %s',
                             (processor,)).fetchall())


def _assigned(conn: psycopg.Connection, partitions: int, stages: tuple[str, ...]) -> bool:
    held: dict[str, set[int]] = {}
    for processor, parts in conn.execute("SELECT processor, partitions FROM ts_workers").fetchall():
        held.setdefault(processor, set()).update(parts)
    return all(held.get(s, set()) >= set(range(partitions)) for s in stages)


def caught_up(conn: psycopg.Connection, processor: str, ends: dict[int, int]) -> bool:
    done = _positions(conn, processor)
    return all(done.get(p, -1) >= end for p, end in ends.items())


def _rows_written(conn: psycopg.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT relname, n_tup_ins + n_tup_upd FROM pg_stat_user_tables "
                        "WHERE relname = ANY(%s)", (list(ROW_TABLES),)).fetchall()
    return dict(rows)


def run(env: BenchEnv, records: list[tuple[bytes, bytes]], workers: int = 1,
        stages: list[str] | None = None, baseline: Baseline | None = None) -> dict:
    """The pipeline of this code, or of ``baseline``'s checkout (its own tables and marks), one
    worker process per stage of ``stages`` (default: one process running every stage)."""
    s = env.isolated(migrated=baseline is None)
    if baseline is not None:
        baseline.migrate(s)
    sealed = baseline is None or baseline.sealed
    produced = asyncio.run(produce(s, s.raw_topic, records, sealed=sealed,
                                   headers=None if sealed else baseline.headers))
    raw_ends = produced["end_offsets"]
    n = len(records)
    per_stage = [["--stages", st] for st in stages] if stages else [[]]
    procs = [env.spawn(s, ["worker", "--loglevel", "warning", *extra], f"bench-worker-{i}-{j}",
                       baseline.source if baseline else None)
             for i in range(workers) for j, extra in enumerate(per_stage)]
    memory: dict[str, dict[str, float]] = {}
    try:
        with psycopg.connect(s.database_url, autocommit=True) as conn:
            running = tuple(stages) if stages else BEFORE_ARCHIVE if baseline else STAGES
            wait_until(lambda: _assigned(conn, s.partitions, running), timeout_s=120)
            started = time.perf_counter()
            cpu_before = _cpu(env, procs)
            def follow(stage: str, ends: dict[int, int]) -> None:
                """Wait for a stage to reach ``ends``; sample memory at 20% of the projections."""
                while not caught_up(conn, stage, ends):
                    if "20pct" not in memory and sum(_positions(conn, "projections").values()) >= 0.2 * n:
                        memory["20pct"] = _rss(env, procs)
                    _check_alive(procs)
                    time.sleep(0.05)

            follow("identity", raw_ends)  # the end of touchpoints is known once identity is done
            log_ends = asyncio.run(topic_ends(s, s.log_topic))
            for stage in running[1:]:
                follow(stage, log_ends)
            elapsed = time.perf_counter() - started
            cpu = {k: v - cpu_before.get(k, 0.0) for k, v in _cpu(env, procs).items()}
            memory["100pct"] = _rss(env, procs)
            time.sleep(1.0)  # let the statistics collector catch up
            written = _rows_written(conn)
            contacts = conn.execute("SELECT count(*) FROM contacts").fetchone()[0]
    finally:
        for p in procs:
            env.stop_child(p)
    return {
        "events": n,
        "workers": workers,
        "seconds": elapsed,
        "events_per_s": n / elapsed,
        "contacts_rows": contacts,
        "rows_written": written,
        "rows_per_event": sum(written.values()) / n,
        "log_records": sum(e + 1 for e in log_ends.values()),
        "produce": {k: v for k, v in produced.items() if k != "end_offsets"},
        "memory": memory,
        "cpu_us_per_event": {k: round(v / n * 1e6, 1) for k, v in cpu.items()},
        "settings": s,
    }


def _per_process(env: BenchEnv, procs, read) -> dict[str, float]:
    """``read(pid, children)`` for each worker, the processes it started (the value jobs), the
    broker and PostgreSQL (with its backends)."""
    out = {}
    for i, p in enumerate(procs):
        out[f"worker-{i}"] = read(p.pid, False)
        with contextlib.suppress(psutil.NoSuchProcess):
            kids = psutil.Process(p.pid).children(recursive=True)
            if kids:
                out[f"worker-{i}-jobs"] = sum(read(k.pid, False) for k in kids)
    for name, pid in env.server_pids().items():
        out[name] = read(pid, name == "database")
    return out


def _cpu(env: BenchEnv, procs) -> dict[str, float]:
    return _per_process(env, procs, cpu_seconds)


def _rss(env: BenchEnv, procs) -> dict[str, float]:
    return _per_process(env, procs, rss_mb)


def _check_alive(procs) -> None:
    for p in procs:
        if p.poll() is not None:
            raise RuntimeError(f"a bench worker exited with {p.returncode}")
