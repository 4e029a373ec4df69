"""Contact history: one row per touchpoint, with a one-line summary. Pure."""

from __future__ import annotations

from typing import Any, NamedTuple

from events.touchpoints import SCORES


class ContactRow(NamedTuple):
    customer_id: str
    occurred_at: str
    event_id: str
    type: str
    channel: str
    source: str
    summary: str
    source_partition: int
    source_offset: int


def _call(p: dict) -> str:
    """Like: Inbound call about billing, 2.1 min, resolved, waited 45 s. The wait only where it
    was measured (version 2): a call of version 1 and the same call read at version 2 (a wait of
    null) give the same row."""
    minutes = round(float(p["duration_s"]) / 60, 1)
    topic = f" about {p['topic']}" if p.get("topic") else ""
    text = f"{p['direction'].capitalize()} call{topic}, {minutes} min, {p['outcome'].replace('_', ' ')}"
    wait = p.get("wait_s")
    if wait is None:
        return text
    wait = float(wait)
    return f"{text}, waited {round(wait)} s" if wait < 60 else f"{text}, waited {round(wait / 60, 1)} min"


def _email(p: dict) -> str:
    subject = f": {p['subject']}" if p.get("subject") else ""
    return f"{p['direction'].capitalize()} email {p['action']}{subject}"


def _web_visit(p: dict) -> str:
    views = p.get("page_views", 1)
    return f"Visited {p['url']} ({views} page{'s' if views != 1 else ''})"


def _order(p: dict) -> str:
    items = len(p.get("items") or [])
    plural = "s" if items != 1 else ""
    status = p.get("status", "placed")
    return f"Order {p['order_id']} {status}: {p['amount']} {p['currency']}, {items} item{plural}"


def _complaint(p: dict) -> str:
    state = "resolved" if p.get("status") == "resolved" else "filed"
    return f"Complaint {p['complaint_id']} {state} ({p['severity']}, {p['category']})"


def _feedback(p: dict) -> str:
    """Like: CSAT 2/5 about order O-1: Late again (line breaks of the text become spaces)."""
    text = f"{p['scale'].upper()} {p['score']}/{SCORES[p['scale']][-1]}"
    about = [f"{what} {p[key]}" for what, key in (
        ("order", "order_id"), ("complaint", "complaint_id"), ("call", "call_event_id")) if p.get(key)]
    if about:
        text += f" about {', '.join(about)}"
    words = " ".join((p.get("text") or "").split())
    return f"{text}: {words}" if words else text


SUMMARIES = {"call": _call, "email": _email, "web_visit": _web_visit, "order": _order,
             "complaint": _complaint, "feedback": _feedback}


def summary(event: dict[str, Any]) -> str:
    text = SUMMARIES[event["type"]](event["payload"])
    return text if len(text) <= 200 else text[:199] + "…"


def row(event: dict[str, Any], partition: int, offset: int) -> ContactRow:
    return ContactRow(
        customer_id=event["customer"]["customer_id"],
        occurred_at=event["occurred_at"],
        event_id=event["event_id"],
        type=event["type"],
        channel=event["channel"],
        source=event["source"],
        summary=summary(event),
        source_partition=partition,
        source_offset=offset,
    )
