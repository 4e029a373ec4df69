"""Reads as of a time, on the real broker and PostgreSQL: a customer's profile and timeline at a
time T equal what the events known at T fold to (computed here from the events sent), in both
senses of known, and after everything they equal the live reads."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import pytest

from projections.contacts.store import decode_cursor
from services.processors.archive import ArchiveStage
from services.processors.identity import IdentityStage
from services.processors.projector import ProjectionStage
from tests.integration.faults import drained
from tests.integration.pipeline import api_client, running_stages, touchpoint

pytestmark = pytest.mark.integration

ALL = (IdentityStage, ProjectionStage, ArchiveStage)
STAGES = ("identity", "projections", "archive")
RANK = {"placed": 0, "cancelled": 1, "refunded": 1}


class Sent(NamedTuple):
    event: dict[str, Any]
    at: datetime
    phase: int  # sent after phases 1 .. phase - 1 were archived
    owner: str  # a, b, or root: whose stream it lands in


def _log(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _known(sent: list[Sent], at: datetime, archived_phases: int | None) -> list[Sent]:
    """Known at ``at``: occurred by then (``archived_phases`` None), or archived by then."""
    if archived_phases is None:
        return [s for s in sent if s.at <= at]
    return [s for s in sent if s.phase <= archived_phases]


def _expected(known: list[Sent], ids: dict[str, str]) -> dict[str, Any]:
    """What the profile shows of these events, worked out plainly."""
    complaints: dict[str, tuple[datetime, str, str]] = {}
    orders: dict[str, tuple[int, datetime, str, str, str]] = {}
    for s in known:
        p, key = s.event["payload"], (s.at, s.event["event_id"])
        if s.event["type"] == "complaint":
            held = complaints.get(p["complaint_id"])
            if held is None or key > held[:2]:
                complaints[p["complaint_id"]] = (*key, p.get("status", "open"))
        if s.event["type"] == "order":
            status = p.get("status", "placed")
            held = orders.get(p["order_id"])
            if held is None or (RANK[status], *key) > held[:3]:
                orders[p["order_id"]] = (RANK[status], *key, status, p["amount"])
    statuses = Counter(o[3] for o in orders.values())
    return {
        "customer_id": ids["root"],
        "merged_ids": sorted({ids[s.owner] for s in known} - {ids["root"]}),
        "events_count": len(known),
        "first_seen": _log(min(s.at for s in known)), "last_seen": _log(max(s.at for s in known)),
        "counts": {"by_channel": dict(sorted(Counter(s.event["channel"] for s in known).items())),
                   "by_type": dict(sorted(Counter(s.event["type"] for s in known).items()))},
        "complaints": {"open": sorted(k for k, c in complaints.items() if c[2] == "open"),
                       "all": {k: {"status": c[2], "occurred_at": _log(c[0])}
                               for k, c in sorted(complaints.items())}},
        "orders": (statuses["placed"], statuses["cancelled"],
                   sum(Decimal(o[4]) for o in orders.values() if o[3] == "placed")),
    }


def _timeline_ids(known: list[Sent]) -> list[str]:
    return [s.event["event_id"] for s in sorted(
        known, key=lambda s: (s.at, uuid.UUID(s.event["event_id"])), reverse=True)]


def _instants(page: dict[str, Any]) -> dict[str, Any]:
    """A timeline page with its times as instants: the live rows carry the database session's
    offset, rows as of a time UTC."""
    items = [{**i, "occurred_at": datetime.fromisoformat(i["occurred_at"])} for i in page["items"]]
    cursor = page["next_cursor"] and decode_cursor(page["next_cursor"])
    return {**page, "items": items, "next_cursor": cursor}


async def test_profile_and_timeline_as_of_a_time_are_the_fold_of_what_was_known(settings):
    a, b = f"ann.{uuid.uuid4().hex[:6]}@example.com", f"bo.{uuid.uuid4().hex[:6]}@example.com"
    phone = "+442079460958"
    start = datetime.now(UTC)
    sent: list[Sent] = []

    def event(kind: str, phase: int, owner: str, at: datetime, **fields: Any) -> dict[str, Any]:
        who = {k: fields.pop(k) for k in ("email", "phone") if k in fields}
        doc = touchpoint(kind, at=at, **who, **fields)
        sent.append(Sent(doc, at, phase, owner))
        return doc

    first = [event("call", 1, "a", start - timedelta(seconds=50), email=a),
             event("email", 1, "a", start - timedelta(seconds=40), email=a),
             event("order", 1, "a", start - timedelta(seconds=30), email=a, order_id="O-1"),
             event("complaint", 1, "a", start - timedelta(seconds=20), email=a)]
    late = start - timedelta(seconds=35)  # before the order above, sent after it was archived
    archived_at: list[datetime] = []
    async with running_stages(settings, ALL), api_client(settings) as client:
        async def publish(events: list[dict[str, Any]]) -> None:
            r = await client.post("/v1/touchpoints/batch", json={"events": events})
            assert r.status_code == 202, r.text
            await drained(settings, stages=STAGES)
            archived_at.append(datetime.now(UTC))

        async def customer(**key: str) -> str:
            return (await client.get("/v1/customers", params=key)).json()["items"][0]["customer_id"]

        await publish(first)
        ids = {"a": await customer(email=a)}
        now = datetime.now(UTC)
        await publish([event("web_visit", 2, "b", now, email=b, phone=phone),
                       event("feedback", 2, "b", now + timedelta(milliseconds=1), phone=phone, score=2),
                       event("order", 2, "a", now + timedelta(milliseconds=2), email=a, order_id="O-2",
                             amount="25.50"),
                       event("call", 2, "a", late, email=a)])
        ids["b"] = await customer(phone=phone)  # not linked yet: its own
        now = datetime.now(UTC)  # a touchpoint with both identities links the customers
        await publish([event("call", 3, "root", now, email=a, phone=phone),
                       event("order", 3, "root", now + timedelta(milliseconds=1), email=a,
                             order_id="O-1", status="cancelled"),
                       event("complaint", 3, "root", now + timedelta(milliseconds=2), email=a,
                             status="resolved"),
                       event("web_visit", 3, "root", now + timedelta(milliseconds=3), phone=phone)])

        live = (await client.get(f"/v1/customers/{ids['a']}")).json()
        ids["root"] = live["customer_id"]
        assert ids["root"] in (ids["a"], ids["b"]) and ids["a"] != ids["b"]

        async def as_of(path: str, at: datetime, known: str, **params: Any):
            return await client.get(f"/v1/customers/{ids['a']}{path}",
                                    params={"as_of": at.isoformat(), "known": known, **params})

        # (T, phases archived by T): before anything, at the late event's time exactly (inclusive),
        # between phase 1's events, after the late event occurred but before it arrived, between
        # the link's phase and the rest, after everything
        times = [(start - timedelta(seconds=60), 0), (late, 0), (start - timedelta(seconds=25), 0),
                 (archived_at[0], 1), (archived_at[1], 2), (archived_at[2], 3)]
        for at, phases in times:
            for known, archived_phases in (("event_time", None), ("archived", phases)):
                expected = _known(sent, at, archived_phases)
                profile, timeline = await as_of("", at, known), await as_of("/timeline", at, known)
                if not expected:
                    assert profile.status_code == timeline.status_code == 404, (at, known, profile.text)
                    assert profile.json()["error"] == "no such customer"
                    continue
                assert profile.status_code == 200, profile.text
                got, want = profile.json(), _expected(expected, ids)
                assert {k: got[k] for k in want if k != "orders"} == \
                    {k: v for k, v in want.items() if k != "orders"}, (at, known)
                orders = got["orders"]
                assert (orders["count"], orders["cancelled"], Decimal(orders["spend"].get("EUR", 0))) \
                    == want["orders"], (at, known)
                assert got["value"] is None
                assert [i["event_id"] for i in timeline.json()["items"]] == _timeline_ids(expected)
        assert [len(_known(sent, t, None)) for t, _ in times] == [0, 3, 4, 5, 8, 12], \
            "the times cut the history where this test means them to"
        assert [len(_known(sent, t, p)) for t, p in times][3:] == [4, 8, 12]

        end = archived_at[2]
        for known in ("event_time", "archived"):
            got = (await as_of("", end, known)).json()
            assert {**got, "value": live["value"]} == live, known
            assert (await client.get(f"/v1/customers/{ids['b']}", params={
                "as_of": end.isoformat(), "known": known})).json() == got, "any id of the cluster"
            for params in ({"limit": 50}, {"limit": 4}, {"limit": 2, "type": "call,order"},
                           {"limit": 50, "since": late.isoformat(), "until": archived_at[1].isoformat()}):
                live_page = (await client.get(f"/v1/customers/{ids['a']}/timeline", params=params)).json()
                page = (await as_of("/timeline", end, known, **params)).json()
                assert _instants(page) == _instants(live_page), (known, params)
        # the pages of a timeline as of a time follow its cursors as the live pages do
        pages, cursor = [], None
        while True:
            page = (await as_of("/timeline", archived_at[1], "archived", limit=3,
                                **({"cursor": cursor} if cursor else {}))).json()
            pages += [i["event_id"] for i in page["items"]]
            if not (cursor := page["next_cursor"]):
                break
        assert pages == _timeline_ids(_known(sent, archived_at[1], 2))

        # hostile values are refused with the field and the reason; the next good request answers
        for hostile in ("2026-03-01T10:00:00", "yesterday", "1700000000", "2026-03-01T10:00:00Z\x00",
                        "\x1b[2J", "9" * 5000, ""):
            r = await client.get(f"/v1/customers/{ids['a']}", params={"as_of": hostile})
            assert r.status_code == 422, (hostile, r.text)
            [error] = r.json()["errors"]
            assert error["field"] == "as_of" and "9999" not in error["reason"], error
        r = await client.get(f"/v1/customers/{ids['a']}/timeline", params={"as_of": "2026-03-01"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "as_of"
        r = await as_of("", end, "whenever")
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "known"
        r = await as_of("/timeline", end, "event_time", cursor="MjAyNi0wMS0wMVQwMDowMDowMHx4")
        assert r.status_code == 400 and r.json()["field"] == "cursor"
        assert (await client.get(f"/v1/customers/{ids['a']}", params={
            "as_of": "0001-01-01T00:00:00+23:59"})).status_code == 404
        far = await client.get(f"/v1/customers/{ids['a']}", params={
            "as_of": "9999-12-31T23:59:59.999999-23:59"})
        assert far.status_code == 200 and far.json() == got
