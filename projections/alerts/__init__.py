"""Churn alerts: each customer's touchpoints, tier, P(alive) and purchase rhythm weighed by the
rules (``rules``, pure) as each batch commits, and by a timer when time alone makes a condition
hold (``jobs``); alerts, their lifecycle and the log the live stream and topic ``alerts`` follow
(``store``).

A worker writes, in the batch's transaction and after the value projection has written the
batch's customers, each touched customer's facts, the alerts that open and those whose condition
ended, and the log entries of both. The timer, the relay of the log to topic ``alerts`` and the
waking of snoozed alerts run in a process beside the worker (``jobs``), as the value jobs do.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg

from projections.alerts import rules, store
from projections.base import Projection, Settled
from projections.clock import Clock
from projections.jobs import halt, spawn

REVIEW_LAG_S = 10.0  # the timer looks again this long after value re-decides a customer by itself


class Alerts(Projection):
    name = "alerts"
    tables = ("alert_state", "alerts")  # alert_log is not swapped: its positions are the stream's
    needs = ("value",)
    # A rebuild decides by event time what the live stage decided by the clock (and a person's
    # actions are not in the log): compared by row count.
    unstable = {"alert_state": ("*",), "alerts": ("*",)}
    swap_locks = ("alert_log",)  # the live streams' log: they reload once the swap commits
    ddl = store.DDL
    REPORTED = 10  # alert ids a replay's report lists

    def __init__(self, settings: Any = None):
        from services.config import Settings

        self.settings = settings or Settings()
        self.rules = rules.Rules.from_settings(self.settings)
        self.clock = Clock.shared()
        self.process: Any = None

    @classmethod
    def build(cls, settings: Any) -> Alerts:
        return cls(settings)

    async def start(self, producer: Any) -> None:
        """The timer and the relay, in a process of their own (``jobs``)."""
        from projections.alerts.jobs import AlertJobs  # noqa: PLC0415 - jobs import this module

        self.process = spawn(self.settings, self.clock, AlertJobs)

    async def stop(self) -> None:
        process, self.process = self.process, None
        await halt(process)

    def read(self, event: dict[str, Any], partition: int, offset: int) -> tuple[str, rules.Touch] | None:
        t = rules.read(event)
        if not (t.inbound or t.answer or t.engaged or t.scale or t.complaint_id or t.type == "order"):
            return None  # changes nothing the rules weigh (time passing is the timer's)
        return event["customer"]["customer_id"], t

    async def write(self, conn: psycopg.AsyncConnection,
                    readings: list[tuple[str, rules.Touch]]) -> Callable[[], None] | None:
        touches: dict[str, list[rules.Touch]] = defaultdict(list)
        for customer_id, t in readings:
            touches[customer_id].append(t)
        self.clock.saw(datetime.fromtimestamp(max(t.at for _, t in readings), UTC))
        now = self.clock.now().timestamp()
        held = await store.load(conn, list(touches))
        steps = [step(h, touches[h.customer_id], self.rules, now) for h in held]
        logged = await save(conn, steps)
        if logged and self.settings.projection_schema == "public":
            await store.notify(conn)
        return self.clock.changed if logged else None

    async def advance(self, conn: psycopg.AsyncConnection, now: datetime | None = None) -> None:
        """The timer's work, up to the replayed log's time: nothing is notified or published."""
        from projections.alerts.jobs import CHUNK, tick  # noqa: PLC0415 - jobs import this module

        now = now or self.clock.now()
        while (await tick(conn, self.rules, now, notify=False))[0] == CHUNK:
            pass

    async def settle(self, conn: psycopg.AsyncConnection, now: datetime, shadow: str,
                     live: Any) -> Settled:
        """The timers run to ``now``; the alerts the rebuild found that the live stage had not are
        reported (a replay sends nothing); what people did to the live alerts is carried over."""
        await self.advance(conn, now)
        new = await store.unseen(conn, shadow)
        await store.carry_over(conn, shadow)
        lines = [f"alerts the replay found that the live stage had not, not sent: {len(new):,} "
                 f"(first: {', '.join(new[:3])})"] if new else []
        return Settled({"new_alerts": len(new), "new_alert_ids": new[:self.REPORTED]}, lines)

    async def swapped(self, conn: psycopg.AsyncConnection) -> None:
        await store.reload_streams(conn)


def step(h: store.Held, touches: list[rules.Touch], r: rules.Rules, now: float) -> tuple[str, rules.Step]:
    # P(alive) changes when value re-decides the customer: the model rule watches the top tiers
    watched = h.review_at is not None and r.at_or_above(h.standing.tier, r.model_min_tier)
    look_again = h.review_at + REVIEW_LAG_S if watched else None  # type: ignore[operator]
    return h.customer_id, rules.evaluate(h.customer_id, h.facts, h.fired, h.open, h.standing,
                                         touches, r, now, look_again)


async def save(conn: psycopg.AsyncConnection, steps: list[tuple[str, rules.Step]]) -> int:
    """Write the evaluations in the caller's transaction; how many log entries they made."""
    opened = [row for _, s in steps for row in s.opened]
    ended = [row for _, s in steps for row in s.resolved]
    await store.save_states(conn, [(c, s.facts, s.fired, s.due) for c, s in steps])
    if opened or ended:  # after the row locks: every writer takes the log's lock last
        await store.lock_log(conn)
    return await store.open_alerts(conn, opened) + await store.resolve_alerts(conn, ended)
