"""The OpenAPI document, with every schema that a request body refers to under components, and
server-sent event streams described as OpenAPI 3.1 can.

The doors' request bodies are the JSON Schemas of the event models (services/gateway/routes.py):
pydantic writes their definitions beside them, under `$defs`, and points at them with
`#/components/schemas/...`. FastAPI passes such bodies through as they are, so the definitions
are moved to where the references point.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI


def with_components(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """A replacement for `app.openapi` that moves every `$defs` into components.schemas."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()  # kept by FastAPI as app.openapi_schema
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        _hoist(document["paths"], schemas)
        _event_streams(document["paths"])
        return document

    return openapi


def _event_streams(paths: dict[str, Any]) -> None:
    """A server-sent event stream as OpenAPI 3.1 can say it: FastAPI describes each event with
    3.2's ``itemSchema``, which a 3.1 document may not hold; the stream is a string whose events
    the operation's description names."""
    for operation in (op for item in paths.values() for op in item.values() if isinstance(op, dict)):
        for response in operation.get("responses", {}).values():
            media = response.get("content", {}).get("text/event-stream")
            if media is not None and "itemSchema" in media:
                del media["itemSchema"]
                media["schema"] = {"type": "string", "description": (
                    "server-sent events: `event:`, `data:` (JSON), `id:` lines, a blank line "
                    "after each event")}


def _hoist(node: Any, schemas: dict[str, Any]) -> None:
    if isinstance(node, list):
        for item in node:
            _hoist(item, schemas)
        return
    if not isinstance(node, dict):
        return
    for name, definition in node.pop("$defs", {}).items():
        if schemas.setdefault(name, definition) != definition:
            raise ValueError(f"two different schemas are called {name!r}")
        _hoist(definition, schemas)
    for value in node.values():
        _hoist(value, schemas)
