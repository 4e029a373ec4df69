"""The bench's servers (embedded unless configured) and an isolated pipeline per measurement."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from services.config import Settings
from services.infra import Infra
from services.infra.topics import delete_topics, ensure_topics
from services.sample import SampleSpec, generate
from services.store import migrate

END = datetime(2026, 10, 1, tzinfo=UTC)  # fixed: the same data on every run


@dataclass
class BenchEnv:
    base: Settings
    infra: Infra
    children: list[subprocess.Popen] = field(default_factory=list)
    made: list[Settings] = field(default_factory=list)  # databases and topics to discard

    @classmethod
    def start(cls, settings: Settings) -> BenchEnv:
        infra = Infra(settings)
        return cls(infra.start(), infra)

    def isolated(self, migrated: bool = True, **overrides) -> Settings:
        """Fresh topics, consumer groups and database (tables made unless not ``migrated``) on
        the same servers."""
        tag = uuid.uuid4().hex[:8]
        name = f"bench_{tag}"
        with psycopg.connect(self.base.database_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        s = self.base.model_copy(update={
            "database_url": make_conninfo(self.base.database_url, dbname=name),
            "topic_prefix": f"b{tag}.", "consumer_group_prefix": f"b{tag}", **overrides})
        ensure_topics(s)
        if migrated:
            migrate(s.database_url)
        self.made.append(s)
        return s

    def fresh_database(self, settings: Settings) -> Settings:
        """The topics of ``settings`` with a new, migrated database and new consumer groups."""
        tag = uuid.uuid4().hex[:8]
        name = f"bench_{tag}"
        with psycopg.connect(self.base.database_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        s = settings.model_copy(update={
            "database_url": make_conninfo(self.base.database_url, dbname=name),
            "consumer_group_prefix": f"b{tag}"})
        migrate(s.database_url)
        self.made.append(s.model_copy(update={"topic_prefix": ""}))  # the topics are not its own
        return s

    def discard(self) -> None:
        """Drop the databases and delete the topics of earlier measurements, so that their
        autovacuum, their dirty pages and the broker's memory do not weigh on the next one:
        latency measured while the kernel writes back a million-event measurement's pages is
        inflated (BENCHMARKS.md)."""
        with psycopg.connect(self.base.database_url, autocommit=True) as conn:
            for s in self.made:
                name = conninfo_to_dict(s.database_url)["dbname"]
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute("CHECKPOINT")
        os.sync()
        topics = [t for s in self.made if s.topic_prefix
                  for t in (s.raw_topic, s.log_topic, s.dlq_topic)]
        if self.infra.broker is not None:
            # The embedded broker's memory storage keeps what deleted topics held, and a full one
            # answers more slowly: start it again, empty, on the same port.
            self.infra.broker.stop()
            self.infra.broker.start()
        elif topics:
            delete_topics(self.base, topics)
        self.made.clear()

    def spawn(self, settings: Settings, args: list[str], log_name: str,
              source: Path | None = None) -> subprocess.Popen:
        """A Touchstream process, started exactly as `make run` starts it (from the code in
        ``source``, a checkout of another commit, when given)."""
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
               "DATABASE_URL": settings.database_url, "TOPIC_PREFIX": settings.topic_prefix,
               "CONSUMER_GROUP_PREFIX": settings.consumer_group_prefix,
               "HTTP_PORT": str(settings.http_port), "STATE_DIR": str(Path(settings.state_dir).resolve()),
               "SIGNING_KEY": settings.signing_key}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if source is not None:
            env["PYTHONPATH"] = str(source)
        logs = Path(self.base.state_dir, "logs")
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{log_name}.log", "ab") as log:
            child = subprocess.Popen([sys.executable, "-m", "services.cli", *args], env=env,
                                     stdout=log, stderr=subprocess.STDOUT, cwd=source)
        self.children.append(child)
        return child

    def stop_child(self, child: subprocess.Popen, timeout_s: float = 30) -> None:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout_s)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if child in self.children:
            self.children.remove(child)

    def stop(self) -> None:
        for child in list(self.children):
            self.stop_child(child)
        self.infra.stop()

    def serve(self, settings: Settings, timeout_s: float = 120) -> list[subprocess.Popen]:
        """The API and one worker per stage, as `make run` starts them; returns once /readyz is 200."""
        procs = [self.spawn(settings, ["api", "--loglevel", "warning"], "bench-api")] + [
            self.spawn(settings, ["worker", "--stages", stage, "--loglevel", "warning"], f"bench-{stage}")
            for stage in ("identity", "projections", "archive")]
        url = f"http://{settings.http_host}:{settings.http_port}/readyz"

        def ready() -> bool:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"a bench process exited; see {self.base.state_dir}/logs")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(url, timeout=2).status_code == 200
            return False

        try:
            wait_until(ready, timeout_s, interval_s=0.25)
        except BaseException:
            for p in procs:
                self.stop_child(p)
            raise
        return procs

    def server_pids(self) -> dict[str, int]:
        pids = {}
        if self.infra.broker and self.infra.broker.pid:
            pids["broker"] = self.infra.broker.pid
        if self.infra.database and self.infra.database.pid:
            pids["database"] = self.infra.database.pid
        return pids


def raw_records(events: int, customers: int, seed: int = 7) -> list[tuple[bytes, bytes]]:
    """The sample exactly as the gateway publishes it: validated, normalised, recorded_at set,
    keyed by an identifier; send with the ``VALIDATED`` header (``limits.produce`` does)."""
    from events import parse_touchpoint
    from services.wire import raw_record

    out = []
    for e in generate(SampleSpec(customers=customers, events=events, seed=seed, end=END)):
        key, value, _ = raw_record(parse_touchpoint(e, recorded_at=END))
        out.append((key, value))
    return out


def rss_mb(pid: int, children: bool = False) -> float:
    """Resident memory of a process; with its children (PostgreSQL's backends) as PSS, so that
    shared buffers are not counted once per backend."""
    try:
        proc = psutil.Process(pid)
        if not children:
            return proc.memory_info().rss / 2**20
        total = 0
        for p in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += p.memory_full_info().pss
        return total / 2**20
    except psutil.NoSuchProcess:
        return 0.0


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU time of a process (and, for PostgreSQL, its backends: those running and
    those that have ended, whose time the server process took over when it reaped them)."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)] if children else [proc]
        total = 0.0
        if children:
            t = proc.cpu_times()
            total += t.children_user + t.children_system
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                t = p.cpu_times()
                total += t.user + t.system
        return total
    except psutil.NoSuchProcess:
        return 0.0


def wait_until(check, timeout_s: float, interval_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval_s)
    raise TimeoutError(f"bench: condition not met in {timeout_s}s")
