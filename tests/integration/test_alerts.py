"""Churn alerts end to end, with the real broker, PostgreSQL, workers and API processes: a
complaint POSTed over HTTP reaches a live stream and topic ``alerts``; people's actions show in
the list and on the stream; a reconnect with Last-Event-ID to another API process misses nothing
and repeats nothing; an unanswered contact fires with no new event and the answer resolves it;
hostile requests get a 4xx naming the field, and the next good one flows."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest

from services.alerts_cli import Event, parse
from tests.conftest import eventually
from tests.integration.pipeline import api_process, read_topic, rows, running_stages, touchpoint

pytestmark = pytest.mark.integration


def alert_settings(settings):
    return settings.model_copy(update={
        "alert_timer_every_s": 0.2, "alert_heartbeat_s": 1.0,
        "alert_answer_within_h": {"prospect": 3 / 3600}})  # a prospect's contact: 3 seconds


class Watcher:
    """A client of ``/v1/alerts/stream`` reading in the background."""

    def __init__(self, base: str, params: dict | None = None, last_event_id: int | None = None):
        self.url, self.params = f"{base}/v1/alerts/stream", params or {}
        self.headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
        self.lines: list[str] = []
        self.task: asyncio.Task | None = None

    async def _read(self) -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(5, read=None)) as client, \
                client.stream("GET", self.url, params=self.params, headers=self.headers) as r:
            assert r.status_code == 200, await r.aread()
            async for line in r.aiter_lines():
                self.lines.append(line)

    @property
    def events(self) -> list[Event]:
        return list(parse([*self.lines, ""]))

    def alerts(self, kind: str | None = None) -> list[dict]:
        return [orjson.loads(e.data) for e in self.events
                if e.kind not in ("ready", "reload", "overflow") and (kind is None or e.kind == kind)]

    async def __aenter__(self) -> Watcher:
        self.task = asyncio.create_task(self._read())
        await eventually(lambda: self.events or (self.task.done() and self.task.result()), 15)
        return self

    async def __aexit__(self, *exc) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


def complaints(w: Watcher) -> list[dict]:
    return [a for a in w.alerts("opened") if a["alert"]["rule"] == "complaint"]


def complaint(email: str, cid: str, severity: str = "critical") -> dict:
    return touchpoint("complaint", email=email, at=datetime.now(UTC), complaint_id=cid,
                      severity=severity, text="The parcel never came.")


async def post(base: str, event: dict) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{base}/v1/touchpoints", json=event)
        assert r.status_code == 202, r.text


async def test_a_complaint_reaches_the_stream_and_the_topic_and_people_act_on_it(settings):
    settings = alert_settings(settings)
    tag = uuid.uuid4().hex[:6]
    async with running_stages(settings):
        with api_process(settings) as base:
            async with Watcher(base) as w, httpx.AsyncClient(base_url=base) as client:
                assert w.events[0].kind == "ready"
                event = complaint(f"k.{tag}@example.com", f"K-{tag}")
                await post(base, event)
                # the complaint opens a complaint alert at once (an unanswered one follows in 3 s)
                opened = await eventually(lambda: complaints(w), 30)
                alert = opened[0]["alert"]
                assert (alert["rule"], alert["severity"], alert["status"]) == \
                    ("complaint", "critical", "open")
                assert alert["evidence"] == [event["event_id"]]
                assert f"K-{tag}" in alert["reason"]
                aid = alert["alert_id"]

                # hostile actions: a 4xx naming the field; nothing changes
                r = await client.post(f"/v1/alerts/{aid}/ack", json={"by": "a\x00b"})
                assert r.status_code == 422 and r.json()["errors"][0]["field"] == "by"
                r = await client.post(f"/v1/alerts/{aid}/ack", json={"note": "who?"})
                assert r.status_code == 422 and r.json()["errors"][0]["field"] == "by"
                r = await client.post(f"/v1/alerts/{aid}/snooze",
                                      json={"by": "ana", "until": "2020-01-01T00:00:00Z"})
                assert r.status_code == 422 and r.json()["errors"][0]["field"] == "until"
                r = await client.post(f"/v1/alerts/{uuid.uuid4()}/ack", json={"by": "ana"})
                assert r.status_code == 404
                r = await client.post("/v1/alerts/not-an-id/ack", json={"by": "ana"})
                assert r.status_code == 404
                r = await client.get("/v1/alerts", params={"severity": "urgent"})
                assert r.status_code == 422 and r.json()["errors"][0]["field"] == "severity"
                r = await client.get("/v1/alerts/stream", headers={"Last-Event-ID": "-3"})
                assert r.status_code == 422 and r.json()["errors"][0]["field"] == "Last-Event-ID"

                # acknowledged, then resolved by a person: the list and the stream show it
                r = await client.post(f"/v1/alerts/{aid}/ack", json={"by": "ana", "note": "calling"})
                assert r.status_code == 200, r.text
                assert (r.json()["status"], r.json()["acknowledged_by"]) == ("acknowledged", "ana")
                listed = (await client.get("/v1/alerts", params={"status": "acknowledged"})).json()
                assert [a["alert_id"] for a in listed["items"]] == [aid]
                await eventually(lambda: w.alerts("acknowledged"), 15)
                r = await client.post(f"/v1/alerts/{aid}/resolve",
                                      json={"by": "ana", "note": "refunded"})
                assert r.json()["status"] == "resolved" and r.json()["resolved_by"] == "ana"
                assert (await client.post(f"/v1/alerts/{aid}/ack", json={"by": "bo"})).status_code == 409
                resolved = await eventually(lambda: w.alerts("resolved"), 15)
                assert resolved[0]["alert"]["resolution"] == "refunded"
                assert (await client.get("/v1/alerts")).json()["items"] == []
                history = (await client.get(f"/v1/alerts/{aid}")).json()["history"]
                assert [h["kind"] for h in history] == ["opened", "acknowledged", "resolved"]

                # the next good request still flows end to end
                await post(base, complaint(f"k2.{tag}@example.com", f"K2-{tag}", "high"))
                await eventually(lambda: len(complaints(w)) == 2, 30)
                seqs = [int(e.id) for e in w.events if e.id is not None]
                assert seqs == sorted(set(seqs))  # in log order, none twice

    records = await read_topic(settings, settings.alerts_topic, 4)
    published = [orjson.loads(r.value) for r in records]
    mine = [(p["kind"], p["alert"]["alert_id"]) for p in published if p["alert"]["alert_id"] == aid]
    assert mine == [("opened", aid), ("acknowledged", aid), ("resolved", aid)]
    assert len({p["seq"] for p in published}) == len(published)


async def test_last_event_id_resumes_on_another_api_process_without_gap_or_repeat(settings):
    settings = alert_settings(settings)
    tag = uuid.uuid4().hex[:6]
    async with running_stages(settings):
        with api_process(settings) as a, api_process(settings) as b:
            async with Watcher(a, {"rule": "complaint"}) as w:
                await post(a, complaint(f"r0.{tag}@example.com", f"R0-{tag}"))
                first = await eventually(lambda: w.alerts("opened"), 30)
                last_id = first[0]["seq"]
            for i in (1, 2, 3):  # while nobody watches
                await post(a, complaint(f"r{i}.{tag}@example.com", f"R{i}-{tag}"))
            await eventually(lambda: _logged(settings, 4), 30)
            async with Watcher(b, {"rule": "complaint"}, last_event_id=last_id) as again:
                got = await eventually(lambda: len(again.alerts("opened")) >= 3 and again.alerts(), 30)
                await asyncio.sleep(1.5)  # anything repeated would have come by now
                got = again.alerts()
                # each once (customers on different partitions commit in either order)
                assert sorted(g["alert"]["dedup_key"] for g in got) == [f"R{i}-{tag}" for i in (1, 2, 3)]
                assert [g["seq"] for g in got] == sorted({g["seq"] for g in got})
                assert all(g["seq"] > last_id for g in got)
            # a filtered stream from the start of the log: only what the filters take
            async with Watcher(b, {"severity": "critical", "rule": "complaint"}, last_event_id=0) as f:
                got = await eventually(lambda: len(f.alerts()) >= 4 and f.alerts(), 30)
                assert {g["alert"]["severity"] for g in got} == {"critical"}
            # a position the log does not hold: told to reload, then followed from the present
            async with Watcher(b, last_event_id=10**9) as r:
                assert r.events[0].kind == "reload"


async def _logged(settings, n: int) -> bool:
    return len(await rows(settings, "SELECT seq FROM alert_log WHERE kind = 'opened' "
                                    "AND alert->>'rule' = 'complaint'")) >= n


async def test_an_unanswered_contact_fires_on_time_alone_and_the_answer_resolves_it(settings):
    settings = alert_settings(settings)
    email = f"u.{uuid.uuid4().hex[:6]}@example.com"
    async with running_stages(settings):
        with api_process(settings) as base:
            async with Watcher(base, {"rule": "unanswered"}) as w:
                asked = touchpoint("email", email=email, at=datetime.now(UTC), direction="inbound",
                                   action="sent", subject="Where is my refund?")
                await post(base, asked)
                await asyncio.sleep(1.0)
                assert w.alerts() == []  # within its service level (3 s for a prospect)
                opened = await eventually(lambda: w.alerts("opened"), 30)  # no new event came
                alert = opened[0]["alert"]
                assert alert["evidence"] == [asked["event_id"]] and "waited" in alert["reason"]
                answer = touchpoint("email", email=email, at=datetime.now(UTC) + timedelta(seconds=1),
                                    direction="outbound", action="sent", subject="Re: refund",
                                    campaign=None)
                await post(base, answer)
                resolved = await eventually(lambda: w.alerts("resolved"), 30)
                done = resolved[0]["alert"]
                assert done["resolved_by"] == "touchstream"
                assert done["resolved_event_id"] == answer["event_id"]
                assert "removed the condition" in done["resolution"]


async def test_a_replay_sends_no_alert_reports_new_ones_and_keeps_what_people_did(settings):
    from services import replay

    settings = alert_settings(settings)
    tag = uuid.uuid4().hex[:6]
    async with running_stages(settings):
        with api_process(settings) as base:
            async with Watcher(base, {"rule": "complaint"}) as w, \
                    httpx.AsyncClient(base_url=base) as client:
                await post(base, complaint(f"p.{tag}@example.com", f"P-{tag}", "critical"))
                await post(base, complaint(f"m.{tag}@example.com", f"M-{tag}", "medium"))
                alert = (await eventually(lambda: w.alerts("opened"), 30))[0]["alert"]
                r = await client.post(f"/v1/alerts/{alert['alert_id']}/ack", json={"by": "ana"})
                assert r.status_code == 200
                await eventually(lambda: _all_published(settings), 30)
                logged = await rows(settings, "SELECT count(*) AS n FROM alert_log")
                sent = await read_topic(settings, settings.alerts_topic, 2)

                # thresholds changed: medium complaints alert too; the log is replayed
                changed = settings.model_copy(update={
                    "alert_complaint_severities": ["medium", "high", "critical"]})
                outcome = await replay.Replay(changed, replay.closure(["alerts"]), "replay",
                                              "kafka").run()
                assert outcome.status == "swapped", replay.describe(outcome)
                found = await rows(settings, "SELECT alert_id::text, dedup_key, status, "
                                             "acknowledged_by FROM alerts WHERE rule = 'complaint' "
                                             "ORDER BY dedup_key")
                assert [(f["dedup_key"], f["status"], f["acknowledged_by"]) for f in found] == \
                    [(f"M-{tag}", "open", None), (f"P-{tag}", "acknowledged", "ana")]
                new = next(f["alert_id"] for f in found if f["dedup_key"] == f"M-{tag}")
                assert new in outcome.settled["new_alert_ids"]  # reported ...
                await eventually(lambda: any(e.kind == "reload" for e in w.events), 15)
                await asyncio.sleep(2.0)  # ... and sent to nobody
                assert not any(a["alert"]["alert_id"] == new for a in w.alerts())
                after = await rows(settings, "SELECT count(*) AS n FROM alert_log WHERE kind <> 'reload'")
                assert after[0]["n"] == logged[0]["n"]
                assert len(await read_topic(settings, settings.alerts_topic, len(sent))) == len(sent)

                # the live stage goes on with the swapped tables
                await post(base, complaint(f"q.{tag}@example.com", f"Q-{tag}", "critical"))
                await eventually(lambda: any(a["alert"]["dedup_key"] == f"Q-{tag}"
                                             for a in w.alerts("opened")), 30)


async def _all_published(settings) -> bool:
    return (await rows(settings, "SELECT count(*) AS n FROM alert_log "
                                 "WHERE published_at IS NULL"))[0]["n"] == 0


async def test_a_silence_fires_with_no_new_event_and_the_next_order_ends_it(settings):
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    first = today - timedelta(days=10)
    # purchase days 10, 9 and 8 days ago: a rhythm of one day; silence k chosen so that it
    # begins 4 seconds from now
    k = ((now + timedelta(seconds=4)) - (today - timedelta(days=8))).total_seconds() / 86400
    settings = alert_settings(settings).model_copy(update={"alert_silence_k": k})
    email = f"s.{uuid.uuid4().hex[:6]}@example.com"
    orders = [touchpoint("order", email=email, at=first + timedelta(days=d, hours=12),
                         order_id=f"S-{email}-{d}") for d in range(3)]
    async with running_stages(settings):
        with api_process(settings) as base:
            async with Watcher(base, {"rule": "silence"}) as w:
                for o in orders:
                    await post(base, o)
                await asyncio.sleep(1.5)
                assert w.alerts() == []
                opened = await eventually(lambda: w.alerts("opened"), 30)
                assert "no purchase for" in opened[0]["alert"]["reason"]
                order = touchpoint("order", email=email, at=datetime.now(UTC), order_id=f"S-{email}-n")
                await post(base, order)
                resolved = await eventually(lambda: w.alerts("resolved"), 30)
                assert resolved[0]["alert"]["resolved_event_id"] == order["event_id"]


async def test_streams_that_connect_together_share_one_follower_of_the_log(settings):
    from services.api.alerts import Hub

    hub, started = Hub(settings), []
    follow = hub._follow

    def counted():
        started.append(1)
        return follow()
    hub._follow = counted  # type: ignore[method-assign]
    await asyncio.gather(*(hub.ensure() for _ in range(50)))
    try:
        assert started == [1]
    finally:
        await hub.stop()


async def test_a_client_that_falls_behind_is_told_where_to_resume_not_thinned(settings):
    from types import SimpleNamespace

    from psycopg_pool import AsyncConnectionPool

    from projections.alerts.store import Entry
    from services.api.alerts import Filters, Hub, _events

    s = settings.model_copy(update={"alert_stream_queue": 10})
    pool = AsyncConnectionPool(s.database_url, min_size=1, max_size=2, open=False)
    await pool.open()
    hub = Hub(s)

    async def connected() -> bool:
        return False
    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(settings=s, pool=pool)),
                              is_disconnected=connected)
    stream = _events(request, hub, Filters(None, None, None, None), None)
    try:
        ready = await stream.__anext__()
        assert (ready.event, ready.id) == ("ready", "0")
        alert = {"severity": "high", "tier": "gold", "rule": "complaint", "customer_id": "c"}
        hub._dispatch(Entry(1, "opened", alert, datetime.now(UTC)))
        first = await stream.__anext__()
        assert (first.event, first.id) == ("opened", "1")
        for seq in range(2, 14):  # more than the client's queue holds, none of them read
            hub._dispatch(Entry(seq, "opened", alert, datetime.now(UTC)))
        told = await stream.__anext__()
        assert told.event == "overflow" and told.data["position"] == 1
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
        assert hub.subscribers == set()
    finally:
        await stream.aclose()
        await pool.close()


async def test_an_engagement_drop_opens_once_against_the_customers_own_habit(settings):
    """A habit of three visits a week, then four silent weeks: an engagement drop, once."""
    from projections.alerts.rules import WEEK_S

    settings = alert_settings(settings)
    email = f"e.{uuid.uuid4().hex[:6]}@example.com"
    this_week = int(datetime.now(UTC).timestamp() // WEEK_S)
    visits = [touchpoint("web_visit", email=email, at=datetime.fromtimestamp(
        (this_week - 16 + w) * WEEK_S + 3600 * (1 + i), UTC)) for w in range(12) for i in range(3)]
    async with running_stages(settings):
        with api_process(settings) as base:
            async with Watcher(base, {"rule": "engagement"}) as w, \
                    httpx.AsyncClient(base_url=base) as client:
                r = await client.post("/v1/touchpoints/batch", json={"events": visits})
                assert r.status_code == 202, r.text
                opened = await eventually(lambda: w.alerts("opened"), 30)
                assert "against 3.0 before" in opened[0]["alert"]["reason"]
                await post(base, touchpoint("call", email=email, at=datetime.now(UTC),
                                            direction="inbound", outcome="answered"))
                await asyncio.sleep(1.5)
                assert len(w.alerts("opened")) == 1
