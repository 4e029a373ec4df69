"""Call version 2 on the real broker and PostgreSQL: calls of version 1 (as every call was before
version 2, and as producers that have not moved still send them) and of version 2 flow side by
side; each is archived at its own version; a replay from the archive, which reads the version 1
calls at version 2, writes the rows the live stages wrote from the log; the archive gives a
customer's version 1 calls back at version 2, their wait not measured."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from events.archive import TOPICS
from services import archive, replay
from services.processors.archive import ArchiveStage
from services.processors.identity import IdentityStage
from services.processors.projector import ProjectionStage
from tests.integration.faults import drained
from tests.integration.pipeline import api_client, rows, running_stages, touchpoint

pytestmark = pytest.mark.integration

ALL = (IdentityStage, ProjectionStage, ArchiveStage)
STAGES = ("identity", "projections", "archive")
AT = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def _call(email: str, minutes: int, version: int | None, **payload: Any) -> dict[str, Any]:
    event = touchpoint("call", email=email, at=AT + timedelta(minutes=minutes), **payload)
    return event if version is None else event | {"schema_version": version}


async def test_calls_of_both_versions_are_archived_at_their_own_and_replay_to_the_same_rows(settings):
    email = f"evo.{uuid.uuid4().hex[:6]}@example.com"
    v1 = [_call(email, 0, None), _call(email, 1, 1, direction="outbound", outcome="missed")]
    v2 = [_call(email, 2, 2, wait_s=35.5), _call(email, 3, 2, wait_s=None, topic="billing")]
    others = [touchpoint("order", email=email, at=AT + timedelta(minutes=4)),
              touchpoint("feedback", email=email, at=AT + timedelta(minutes=5))]
    after = _call(email, 6, 2, wait_s=5)
    async with running_stages(settings, ALL), api_client(settings) as client:
        r = await client.post("/v1/touchpoints/batch", json={"events": v1 + v2 + others})
        assert r.status_code == 202, r.text
        # a call of version 2 without its wait is refused, naming the field; the next flows
        r = await client.post("/v1/touchpoints", json=_call(email, 7, 2))
        assert r.status_code == 422, r.text
        assert r.json()["errors"] == [{"index": 0, "field": "payload.wait_s", "reason": "Field required"}]
        r = await client.post("/v1/touchpoints", json=after)
        assert r.status_code == 202, r.text
        await drained(settings, stages=STAGES)

        contacts = {r["event_id"]: r["summary"] for r in await rows(
            settings, "SELECT event_id::text, summary FROM contacts WHERE event_id = ANY(%s::uuid[])",
            [e["event_id"] for e in (*v1, *v2, after)])}
        assert contacts[after["event_id"]] == "Inbound call, 1.5 min, resolved, waited 5 s"
        assert contacts[v2[0]["event_id"]].endswith(", waited 36 s")
        assert "waited" not in contacts[v1[0]["event_id"]] + contacts[v2[1]["event_id"]]

        stored = await rows(settings, "SELECT originator_id::text AS c, topic, state FROM archive_events")
        found = {doc["event"]["event_id"]: (r["c"], r["topic"], doc.get("class_version", 1))
                 for r in stored for doc in [orjson.loads(r["state"])]}
        for event, version in [(e, 1) for e in v1] + [(e, 2) for e in (*v2, after)]:
            assert found[event["event_id"]][1:] == (TOPICS["call"], version), event
        assert all(found[e["event_id"]][2] == 1 for e in others)

        # the replay reads the version 1 calls at version 2: the same rows as the live stages'
        outcome = await replay.Replay(settings, replay.closure(["all"]), "verify", "archive").run()
        assert outcome.status == "equal", replay.describe(outcome)

    customer = found[after["event_id"]][0]
    calls = {e.event["event_id"]: e.event for e in archive.stream(settings.database_url, customer)
             if e.event_type == "call"}
    assert len(calls) == len(v1) + len(v2) + 1
    for sent in v1:
        back = calls[sent["event_id"]]
        assert (back["schema_version"], back["payload"]["wait_s"]) == (2, None)
        assert {k: v for k, v in back["payload"].items() if k != "wait_s"} == {
            "agent": None, "topic": None, **sent["payload"]}
    for sent in (*v2, after):
        assert calls[sent["event_id"]]["payload"]["wait_s"] == sent["payload"]["wait_s"]
