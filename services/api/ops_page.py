"""``GET /ops``: the alert desk, one page of HTML, CSS and script (``static/ops.html``) served by
the API itself, with no build step and nothing loaded from elsewhere.

The page reads the alert API and follows the alert stream from the browser. It is sent with a
Content-Security-Policy that lets only its own inline script and style run (a fresh nonce per
response), lets it talk to this origin alone, and turns on Trusted Types, so that text from an
event can never become markup: the page builds every node with ``textContent`` and
``createElement``, and an ``innerHTML`` with a string would throw.
"""

from __future__ import annotations

import secrets
from functools import cache
from importlib.resources import files

import orjson
from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from projections.alerts.rules import SEVERITIES
from services.api import alerts

router = APIRouter(include_in_schema=False)


@cache
def _template() -> str:
    return files("services.api").joinpath("static", "ops.html").read_text(encoding="utf-8")


def _choices() -> str:
    """The filters' choices, as JSON that cannot end the script element holding it."""
    data = {"severities": list(reversed(SEVERITIES)), "tiers": list(alerts.TIERS),
            "rules": list(alerts.RULES)}
    return (orjson.dumps(data).decode().replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026"))


def _policy(nonce: str) -> str:
    return "; ".join((
        "default-src 'none'", f"script-src 'nonce-{nonce}'", f"style-src 'nonce-{nonce}'",
        "connect-src 'self'", "img-src 'self' data:", "base-uri 'none'", "form-action 'none'",
        "frame-ancestors 'none'", "require-trusted-types-for 'script'", "trusted-types 'none'"))


@router.get("/ops", response_class=HTMLResponse)
async def ops_page() -> HTMLResponse:
    """The alert desk: live alerts, counts, filters, actions and a customer drill-down."""
    nonce = secrets.token_urlsafe(18)
    page = _template().replace("__NONCE__", nonce).replace("__CONFIG__", _choices())
    return HTMLResponse(page, headers={
        "Content-Security-Policy": _policy(nonce), "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})
