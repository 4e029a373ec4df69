"""The benchmark's peers: the same two projections run by faust-streaming and by quixstreams.

Both peers call ``project`` below: our projection stage's write path, minus its exactly-once
tracking and dead letters (the peers let their framework commit offsets and
rely on ``first_seen`` for redeliveries). So the only difference between the three runs is how
events reach the folds and how the rows reach PostgreSQL.

Each run gets a fresh database (same topics, new consumer groups) and one process, spawned as a
user would start it. The clock starts at the spawn; the database is polled every 0.25 s.
``seconds`` / ``events_per_s`` are measured from the first committed rows to the last (events
already committed at the first sighting are left out), so a framework's start-up and group join
do not count; ``wall_seconds`` / ``wall_events_per_s`` are from the spawn, ``startup_s`` the gap.
``cpu_us_per_event`` (the process, the broker, PostgreSQL with its backends) covers the same window
and does not depend on what else runs on the machine. Polling makes each figure good to about
0.25 s: use 100,000 events or more.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg

from bench import importable
from bench.env import BenchEnv, cpu_seconds
from projections import REGISTRY
from services import changes
from services.config import Settings
from services.processors import projector
from services.processors.projector import NOT_TOUCHPOINTS

PEERS = {"faust": "bench.peer_faust", "quixstreams": "bench.peer_quix"}
POLL_S = 0.25


_PROJECTIONS = [cls() for cls in REGISTRY]  # no profile cache: each batch reads its profiles back


async def project(conn: psycopg.AsyncConnection, processor: str,
                  records: Iterable[tuple[dict[str, Any], int, int]]) -> None:
    """One batch of decoded (event, partition, offset), in the caller's transaction: our
    projection stage's own write path (``projector.project``) over every registered projection,
    and its row of the change feed."""
    batch = [projector.read(_PROJECTIONS, event, partition, offset)
             for event, partition, offset in records if event["type"] not in NOT_TOUCHPOINTS]
    applied = await projector.project(conn, processor, _PROJECTIONS, batch)
    await changes.record(conn, applied.events, applied.customer_ids)


def run_peer(env: BenchEnv, kind: str, log_topic_settings: Settings, expected: int) -> dict:
    """A peer (``faust`` or ``quixstreams``) projecting the resolved events already in the log."""
    s = env.fresh_database(log_topic_settings)
    started = time.perf_counter()
    child = _spawn_peer(env, s, kind)
    return {"kind": kind, **_measure(env, s, child, started, expected)}


def run_ours(env: BenchEnv, log_topic_settings: Settings, expected: int) -> dict:
    """Our projection stage (one `touchstream worker --stages projections`) on the same log."""
    s = env.fresh_database(log_topic_settings)
    started = time.perf_counter()
    child = env.spawn(s, ["worker", "--loglevel", "warning", "--stages", "projections"],
                      "bench-ours-projections")
    return {"kind": "touchstream", **_measure(env, s, child, started, expected)}


def _spawn_peer(env: BenchEnv, s: Settings, kind: str) -> subprocess.Popen:
    peer_dir = Path(env.base.state_dir, "peers", s.consumer_group_prefix).resolve()
    peer_dir.mkdir(parents=True, exist_ok=True)
    child_env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
                 "DATABASE_URL": s.database_url, "LOG_TOPIC": s.log_topic,
                 "PEER_GROUP": f"{s.consumer_group_prefix}.peer-{kind}",
                 "PEER_STATE_DIR": str(peer_dir)}
    child_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    logs = Path(env.base.state_dir, "logs")
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"bench-peer-{kind}.log", "ab") as log:
        child = subprocess.Popen([sys.executable, "-m", PEERS[kind]], env=importable(child_env), stdout=log,
                                 stderr=subprocess.STDOUT, cwd=peer_dir)
    env.children.append(child)
    return child


def _measure(env: BenchEnv, s: Settings, child: subprocess.Popen, started: float, expected: int,
             stall_s: float = 120) -> dict:
    """Poll until ``expected`` rows; fail if the process exits or no row comes for ``stall_s``
    (a crashed faust agent leaves its worker running)."""
    first_at, first_rows, rows, moved_at, cpu_first = None, 0, 0, started, {}
    try:
        with psycopg.connect(s.database_url, autocommit=True) as conn:
            while True:
                n = (conn.execute("SELECT count(*) FROM contacts").fetchone() or (0,))[0]
                now = time.perf_counter()
                if n and first_at is None:
                    first_at, first_rows, cpu_first = now, n, _cpu(env, child)
                if n != rows:
                    rows, moved_at = n, now
                if rows >= expected:
                    break
                if child.poll() is not None:
                    raise RuntimeError(f"{child.args!r} exited with {child.returncode} at {rows} rows")
                if now - moved_at > stall_s:
                    raise TimeoutError(f"{child.args!r}: stuck at {rows} of {expected} rows for {stall_s}s")
                time.sleep(POLL_S)
        cpu_last = _cpu(env, child)
    finally:
        env.stop_child(child)
    assert first_at is not None
    steady, wall, counted = now - first_at, now - started, expected - first_rows
    return {"events": expected, "rows": rows,
            "seconds": steady, "events_per_s": counted / steady if steady else None,
            "wall_seconds": wall, "wall_events_per_s": expected / wall, "startup_s": first_at - started,
            "rows_at_first_sighting": first_rows,
            # CPU per event in the same window: robust to other load on the machine
            "cpu_us_per_event": {k: round((v - cpu_first[k]) / counted * 1e6, 1) if counted else None
                                 for k, v in cpu_last.items()},
            "database": s.database_url}


def _cpu(env: BenchEnv, child: subprocess.Popen) -> dict[str, float]:
    out = {"process": cpu_seconds(child.pid)}
    for name, pid in env.server_pids().items():
        out[name] = cpu_seconds(pid, children=name == "database")
    return out
