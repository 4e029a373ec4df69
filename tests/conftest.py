"""Real servers for the tests: the embedded broker and PostgreSQL, started once per session.

Set KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL to run the same tests against servers of your own.
Each test gets its own topics (unique prefix), consumer groups and database.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from services.config import Settings
from services.infra.broker import EmbeddedBroker
from services.infra.database import EmbeddedDatabase
from services.infra.topics import ensure_topics
from services.store import migrate


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory):
    state = tmp_path_factory.mktemp("state")
    broker = database = None
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    db = os.environ.get("DATABASE_URL", "")
    if not kafka:
        broker = EmbeddedBroker(state).start()
        kafka = broker.bootstrap_servers
    if not db:
        database = EmbeddedDatabase(state).start()
        db = database.url
    yield {"kafka": kafka, "database": db, "state": state, "broker": broker}
    if broker:
        broker.stop()
    if database:
        database.stop()


def fresh_database(admin_url: str) -> str:
    name = f"ts_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_conninfo(admin_url, dbname=name)


def make_settings(servers: dict, state_dir: Path) -> Settings:
    """Settings for one isolated pipeline: its own topics, consumer groups and database."""
    tag = uuid.uuid4().hex[:8]
    s = Settings(
        kafka_bootstrap_servers=servers["kafka"],
        database_url=fresh_database(servers["database"]),
        state_dir=state_dir,
        topic_prefix=f"t{tag}.",
        consumer_group_prefix=f"g{tag}",
        batch_timeout_ms=50,
        signing_key=f"test-{tag}",
    )
    ensure_topics(s)
    migrate(s.database_url, s.projection_schema)
    return s


@pytest.fixture
def settings(servers, tmp_path: Path) -> Settings:
    return make_settings(servers, tmp_path)


async def eventually(check: Callable, timeout_s: float = 30.0, interval_s: float = 0.1):
    """Bounded retry: return the first truthy result of ``check()``, or fail with the last one."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result or time.monotonic() > deadline:
            assert result, f"condition not met within {timeout_s}s (last: {result!r})"
            return result
        await asyncio.sleep(interval_s)
