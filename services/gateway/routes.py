"""HTTP door in: touchpoints are accepted only once the broker has acknowledged them (acks=all)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter

from events import (
    InvalidEvent,
    Touchpoint,
    TouchpointEvent,
    parse_touchpoint,
)
from events.strings import printable
from services.config import Settings
from services.kafka import send_grouped
from services.metrics import ACCEPTED, REJECTED
from services.wire import raw_record, signing_key

router = APIRouter(prefix="/v1", tags=["gateway"])
_SCHEMA = TypeAdapter(Touchpoint).json_schema(ref_template="#/components/schemas/{model}")
_ONE = {"requestBody": {"required": True, "content": {"application/json": {"schema": _SCHEMA}}}}
_MANY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["events"], "additionalProperties": False,
    "properties": {"events": {
        "type": "array", "items": _SCHEMA, "minItems": 1,
        "description": "At most BATCH_MAX_EVENTS events (1,000 unless configured); all or none "
                       "are accepted."}}}}}}}


class Rejected(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        self.status, self.body, self.headers = status, body, headers or {}


def _problem(status: int, error: str, **extra: Any) -> Rejected:
    return Rejected(status, {"error": error, **extra})


def _validate(items: list[Any], door: str) -> list[TouchpointEvent]:
    now = datetime.now(UTC)
    events, errors = [], []
    for index, item in enumerate(items):
        try:
            events.append(parse_touchpoint(item, recorded_at=now))
        except InvalidEvent as exc:
            errors += [{"index": index, **e} for e in exc.errors]
    if errors:
        for _e in errors:
            REJECTED.labels(door, "invalid").inc()
        raise _problem(422, "validation failed", errors=errors)
    return events


async def _publish(producer: AIOKafkaProducer, settings: Settings, events: list[TouchpointEvent],
                   door: str) -> list[str]:
    """Send all, wait for every ack; on failure say which were acknowledged (ids make retries safe).

    One event goes through the client's per-record path, where concurrent requests share record
    batches; a batch of events goes as one record batch per partition."""
    key = signing_key(settings.signing_key)
    records = [raw_record(e, key) for e in events]
    timeout = settings.produce_timeout_s
    if len(records) == 1:
        try:
            async with asyncio.timeout(timeout):
                key, value, headers = records[0]
                await (await producer.send(settings.raw_topic, key=key, value=value, headers=headers))
            errors: list[BaseException | None] = [None]
        except Exception as exc:  # noqa: BLE001 - any failure is a 503 that names what was acked
            errors = [exc]
    else:
        errors = await send_grouped(producer, settings.raw_topic, records, timeout)
    acked = [e.event_id for e, error in zip(events, errors, strict=True) if error is None]
    ACCEPTED.labels(door).inc(len(acked))
    if len(acked) < len(events):
        REJECTED.labels(door, "broker_unavailable").inc(len(events) - len(acked))
        raise Rejected(503, {"error": "the event broker did not acknowledge the events; retry",
                             "accepted_event_ids": acked},
                       {"Retry-After": "5"})
    return acked


async def _json(request: Request) -> Any:
    return _parse(await request.body())


def _parse(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _problem(422, "validation failed",
                       errors=[{"index": 0, "field": "", "reason": f"not valid JSON: {exc}"}]) from None


async def get_producer(request: Request) -> AIOKafkaProducer:
    return request.app.state.producer


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


Producer = Annotated[AIOKafkaProducer, Depends(get_producer)]
Config = Annotated[Settings, Depends(get_settings)]


async def accept_one(body: bytes, producer: AIOKafkaProducer, settings: Settings) -> dict:
    """POST /v1/touchpoints: one event, validated, acknowledged by the broker. Raises Rejected."""
    events = _validate([_parse(body)], "http")
    return {"accepted": await _publish(producer, settings, events, "http")}


@router.post("/touchpoints", status_code=202, openapi_extra=_ONE)
async def publish_touchpoint(request: Request, producer: Producer, settings: Config) -> dict:
    """Documents the route; requests are answered by ``SingleEventDoor`` (same ``accept_one``)."""
    return await accept_one(await request.body(), producer, settings)


class SingleEventDoor:
    """ASGI middleware answering POST /v1/touchpoints before routing: the busiest request skips
    Starlette's routing, request object and dependency injection, which cost more CPU than the
    event's validation and publishing (BENCHMARKS.md). Everything else goes on to the
    application."""

    PATH = "/v1/touchpoints"

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != self.PATH or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        state = scope["app"].state
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers: dict[str, str] = {}
        try:
            status, body = 202, await accept_one(b"".join(chunks), state.producer, state.settings)
        except Rejected as exc:
            status, body, headers = exc.status, exc.body, exc.headers
        payload = orjson.dumps(body)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode()),
                                *((k.lower().encode(), v.encode()) for k, v in headers.items())]})
        await send({"type": "http.response.body", "body": payload})


@router.post("/touchpoints/batch", status_code=202, openapi_extra=_MANY)
async def publish_batch(request: Request, producer: Producer, settings: Config) -> dict:
    body = await _json(request)
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise _problem(422, "validation failed",
                       errors=[{"index": None, "field": "events", "reason": "must be a list of events"}])
    extra = sorted(k for k in body if k != "events")
    if extra:
        raise _problem(422, "validation failed", errors=[
            {"index": None, "field": printable(k)[:100], "reason": "unknown field; a batch has only events"}
            for k in extra[:10]])
    items = body["events"]
    if not items or len(items) > settings.batch_max_events:
        raise _problem(422, "validation failed", errors=[{
            "index": None, "field": "events",
            "reason": f"must hold 1 to {settings.batch_max_events} events, got {len(items)}"}])
    events = _validate(items, "http_batch")
    return {"accepted": await _publish(producer, settings, events, "http_batch")}


def rejected_handler(_: Request, exc: Rejected) -> JSONResponse:
    return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)


