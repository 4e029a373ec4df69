"""Helpers that run the real stages (in this process) and read what they wrote."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from services.api.app import create_app
from services.config import Settings
from services.processors.identity import IdentityStage
from services.processors.projector import ProjectionStage
from services.processors.runtime import BatchProcessor


@contextlib.asynccontextmanager
async def running_stages(settings: Settings, stages=(IdentityStage, ProjectionStage)):
    processors = [BatchProcessor(settings, stage(settings)) for stage in stages]
    for p in processors:
        await p.start()
    try:
        yield processors
    finally:
        for p in processors:
            await p.stop()


@contextlib.asynccontextmanager
async def api_client(settings: Settings):
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def touchpoint(kind: str = "call", *, email: str | None = None, phone: str | None = None,
               at: datetime | None = None, event_id: str | None = None,
               **payload: Any) -> dict[str, Any]:
    at = at or datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    defaults = {
        "call": {"direction": "inbound", "duration_s": 90, "outcome": "resolved"},
        "email": {"direction": "outbound", "action": "opened", "subject": "Hello"},
        "web_visit": {"url": "https://shop.example.com/", "page_views": 2, "duration_s": 30},
        "order": {"order_id": f"O-{uuid.uuid4().hex[:6]}", "amount": "10.00", "currency": "EUR",
                  "items": [{"sku": "A", "quantity": 1, "unit_price": "10.00"}]},
        "complaint": {"complaint_id": "K-1", "category": "delivery", "severity": "high",
                      "text": "Late."},
        "feedback": {"scale": "csat", "score": 4},
    }[kind]
    channel = {"call": "phone", "email": "email", "web_visit": "web", "order": "web",
               "complaint": "chat", "feedback": "email"}[kind]
    customer = {k: v for k, v in (("email", email), ("phone", phone)) if v}
    return {"event_id": event_id or str(uuid.uuid4()), "type": kind, "customer": customer,
            "occurred_at": at.isoformat(), "channel": channel, "source": "test",
            "payload": {**defaults, **payload}}


def series(email: str, n: int, start: datetime | None = None) -> list[dict[str, Any]]:
    start = start or datetime(2026, 1, 1, tzinfo=UTC)
    kinds = ["call", "email", "web_visit", "order", "complaint"]
    return [touchpoint(kinds[i % 5], email=email, at=start + timedelta(hours=i))
            for i in range(n)]


async def rows(settings: Settings, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn, \
            conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, args)
        return await cur.fetchall()


async def count(settings: Settings, sql: str, *args: Any) -> int:
    return (await rows(settings, sql, *args))[0]["n"]


async def read_topic(settings: Settings, topic: str, n: int) -> list:
    """At least ``n`` records of ``topic`` from its start (bounded wait)."""
    from aiokafka import AIOKafkaConsumer

    from tests.conftest import eventually

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    records: list = []
    try:
        async def enough() -> bool:
            got = await consumer.getmany(timeout_ms=200)
            records.extend(r for rs in got.values() for r in rs)
            return len(records) >= n
        await eventually(enough)
    finally:
        await consumer.stop()
    return records


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def api_process(settings: Settings):
    """The API in a process of its own (``touchstream api``), as the platform runs it; yields
    its base URL once it answers."""
    import os
    import subprocess
    import sys
    import time

    port = free_port()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
           "DATABASE_URL": settings.database_url, "TOPIC_PREFIX": settings.topic_prefix,
           "CONSUMER_GROUP_PREFIX": settings.consumer_group_prefix,
           "SIGNING_KEY": settings.signing_key, "STATE_DIR": str(settings.state_dir),
           "API_WORKERS": "1"}
    child = subprocess.Popen([sys.executable, "-m", "services.cli", "api", "--port", str(port),
                              "--loglevel", "warning"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if child.poll() is not None:
                raise RuntimeError(f"the API exited with {child.returncode}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the API did not answer")
            time.sleep(0.1)
        yield base
    finally:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
