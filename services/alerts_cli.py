"""``touchstream alerts tail``: the live alert stream in a terminal.

It follows the API's server-sent events (``GET /v1/alerts/stream``) and prints a line per event;
on a lost connection it reconnects with the last position it printed (``Last-Event-ID``), so it
misses nothing and repeats nothing. ``--severity high`` shows high and critical alerts.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import httpx
import orjson

from services.terminal import printable

SEVERITIES = ("low", "medium", "high", "critical")


class Event(NamedTuple):
    kind: str
    id: str | None
    data: str


def parse(lines: Iterable[str]) -> Iterator[Event]:
    """Server-sent events from a stream's lines (comments and heartbeats skipped)."""
    kind, eid, data = "message", None, []
    for line in lines:
        if line == "":
            if data:
                yield Event(kind, eid, "\n".join(data))
            kind, eid, data = "message", None, []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            kind = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            eid = value


def line(event: Event) -> str:
    """One event as a line for a terminal (text from events escaped)."""
    body: dict[str, Any] = orjson.loads(event.data)
    if event.kind in ("ready", "reload", "overflow"):
        said = body.get("reason") or f"following from position {body['position']}"
        return f"-- {event.kind}: {printable(said)}"
    a = body["alert"]
    who = a.get("acknowledged_by") if event.kind == "acknowledged" else \
        a.get("resolved_by") if event.kind == "resolved" else None
    extra = f" by {printable(who)}" if who else ""
    if event.kind == "snoozed":
        extra = f" until {a['snoozed_until']}"
    detail = a["resolution"] if event.kind == "resolved" else a["reason"]
    return (f"{body['recorded_at'][:19]}Z #{body['seq']:<6} {a['severity'].upper():<8} "
            f"{a['tier']:<9} {a['rule']:<17} {event.kind}{extra}  customer {a['customer_id']}  "
            f"{printable(detail)}")


def tail(base_url: str, params: dict[str, str], after: int | None = None,
         out: Any = sys.stdout, retries: int | None = None) -> None:
    """Print the stream until interrupted (``retries``: give up after that many failed
    connections in a row; None: never)."""
    position = after
    failures = 0
    while True:
        headers = {"Accept": "text/event-stream"}
        if position is not None:
            headers["Last-Event-ID"] = str(position)
        try:
            with httpx.stream("GET", f"{base_url.rstrip('/')}/v1/alerts/stream", params=params,
                              headers=headers, timeout=httpx.Timeout(5.0, read=60.0)) as r:
                if r.status_code != 200:
                    r.read()
                    sys.exit(f"{r.status_code}: {r.text}")
                failures = 0
                for event in parse(r.iter_lines()):
                    if event.id is not None:
                        position = int(event.id)
                    print(line(event), file=out, flush=True)
                    if event.kind == "overflow":
                        break  # reconnect from the position
        except httpx.HTTPError as exc:
            failures += 1
            if retries is not None and failures > retries:
                sys.exit(f"cannot follow {base_url}: {exc}")
            print(f"-- connection lost ({exc.__class__.__name__}); reconnecting from "
                  f"{position if position is not None else 'the present'}", file=sys.stderr)
            time.sleep(min(5.0, 0.5 * failures))


def _tail(args: argparse.Namespace) -> None:
    from services.config import get_settings

    s = get_settings()
    base = args.url or f"http://{s.http_host}:{s.http_port}"
    params = {}
    if args.severity:
        params["severity"] = ",".join(SEVERITIES[SEVERITIES.index(args.severity):])
    for name in ("tier", "rule", "customer_id"):
        if getattr(args, name):
            params[name] = getattr(args, name)
    with contextlib.suppress(KeyboardInterrupt):
        tail(base, params, args.after, retries=None if args.follow_forever else 20)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("alerts", help="churn alerts: follow them live")
    alerts = p.add_subparsers(dest="alerts_command", required=True)
    t = alerts.add_parser("tail", help="print alert events as they happen (Ctrl-C stops)")
    t.add_argument("--severity", choices=SEVERITIES, help="this severity and those above it")
    t.add_argument("--tier", help="comma-separated value tiers (platinum,gold,...)")
    t.add_argument("--rule", help="comma-separated rules (unanswered,complaint,silence,...)")
    t.add_argument("--customer-id", dest="customer_id", help="one customer (and those linked)")
    t.add_argument("--after", type=int, help="start after this log position (default: now)")
    t.add_argument("--url", help="the API (default http://HTTP_HOST:HTTP_PORT)")
    t.add_argument("--follow-forever", action="store_true",
                   help="never give up reconnecting (default: after 20 failures in a row)")
    t.set_defaults(func=_tail)
