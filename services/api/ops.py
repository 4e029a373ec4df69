"""Health, readiness and metrics."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from services import store
from services.processors.stages import STAGES

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    state, checks = request.app.state, {}
    try:
        await state.producer.client.fetch_all_metadata()
        checks["broker"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["broker"] = f"unreachable: {exc!r}"
    try:
        async with state.pool.connection() as conn:
            held = await store.assigned_partitions(conn)
        checks["database"] = "ok"
        wanted = set(range(state.settings.partitions))
        for name in STAGES:
            missing = wanted - held.get(name, set())
            checks[f"processor:{name}"] = "ok" if not missing else f"unassigned partitions {sorted(missing)}"
    except Exception as exc:  # noqa: BLE001
        checks["database"] = f"unreachable: {exc!r}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics")
async def metrics() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
