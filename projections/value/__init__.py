"""Customer value: RFM, the purchase models' figures, the value pyramid tier and the lifecycle
stage of each customer, decided as each touchpoint commits (``fold`` has the rules).

A worker writes the value rows of the customers of its partitions in the batch's transaction,
after the order ledger (``orders``) has taken the batch's orders. It keeps, per customer it last
wrote, when the stage next changes by itself and when the customer was first seen: a touch that
is not an order and changes neither is skipped without a read. Background jobs (``jobs``, in a
process beside the worker) re-age customers whose stage changes with time, recompute the tier
thresholds, refit the models on a schedule, and publish the changes on ``customer-changes``.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from projections.base import Projection, Settled
from projections.clock import Clock
from projections.jobs import halt, spawn
from projections.value import fold, rows, store


class Value(Projection):
    name = "value"
    tables = ("customer_value", "customer_changes")
    needs = ("orders",)
    # The figures are as of each row's last decision (reads re-age them). The tier and stage,
    # when they were taken, the next review and the count of changes depend on when the jobs
    # recomputed the thresholds and fitted the models relative to each customer's decisions (the
    # at-risk rule reads P(alive) from the model in force at a decision, and a refit does not
    # re-decide stored stages); a stage's reason counts the days up to its decision. A rebuild
    # decides them with today's. Compared: the ledger's facts.
    unstable = {"customer_value": ("as_of", "t_cal", "trailing_12m", "p_alive",
                                   "expected_purchases_90d", "expected_order_value", "clv",
                                   "model_version", "tier", "tier_since", "thresholds_version",
                                   "stage", "stage_since", "stage_reason", "review_at", "changes",
                                   "updated_at"),
                "customer_changes": ("*",)}
    ddl = rows.DDL

    def __init__(self, settings: Any = None):
        from services.config import Settings

        self.settings = settings or Settings()
        s = self.settings
        self.rules = fold.Rules(s.value_at_risk_days, s.value_lapsed_days, s.value_at_risk_p_alive)
        self.rates = dict(s.value_rates)
        self.ctx = fold.Context(self.rules, None, [])
        self._versions: tuple[int | None, int | None] = (None, None)
        self.held: OrderedDict[str, tuple[datetime, datetime | None]] = OrderedDict()
        self.cache_size = s.profile_cache_size
        self.clock = Clock.shared()
        self.process: Any = None  # the jobs (``projections.jobs.spawn``)

    @classmethod
    def build(cls, settings: Any) -> Value:
        return cls(settings)

    async def start(self, producer: Any) -> None:
        """The jobs, in a process of their own (``jobs``): the batches keep this one's core."""
        from projections.value.jobs import Jobs  # noqa: PLC0415 - jobs import this module

        self.process = spawn(self.settings, self.clock, Jobs)

    async def stop(self) -> None:
        process, self.process = self.process, None
        await halt(process)

    async def settle(self, conn: psycopg.AsyncConnection, now: datetime, shadow: str,
                     live: Any) -> Settled:
        """The rebuilt customers re-aged to ``now``, as the live jobs do, and the live ones too
        (what the jobs would do next), so that the two compare; the changes the rebuild decided
        are marked as published (a replay publishes nothing) and counted."""
        from projections.value.jobs import SWEEP_CHUNK, Jobs  # noqa: PLC0415 - jobs import this module

        for schema in (shadow, "public"):
            await conn.execute("SELECT set_config('search_path', %s, true)", (f"{schema}, public",))
            jobs = Jobs(live.model_copy(update={"projection_schema": schema}), None)
            while await jobs.sweep(conn, now) == SWEEP_CHUNK:
                pass
        await conn.execute("SELECT set_config('search_path', %s, true)", (f"{shadow}, public",))
        cur = await conn.execute(sql.SQL("UPDATE {}.customer_changes SET published_at = now() "
                                         "WHERE published_at IS NULL").format(sql.Identifier(shadow)))
        n = cur.rowcount
        lines = [f"value changes the replay decided, not published: {n:,}"] if n else []
        return Settled({"unpublished_changes": n}, lines)

    def read(self, event: dict[str, Any], partition: int, offset: int) -> fold.Touch:
        at = datetime.fromisoformat(event["occurred_at"])
        if at.tzinfo is None:
            raise ValueError("occurred_at without a time zone")
        return fold.Touch(event["customer"]["customer_id"], at, event["event_id"],
                          event["type"] == "order")

    def read_link(self, event: dict[str, Any]) -> fold.Touch:
        """Customers linked into one: its value is decided again on the whole cluster's orders,
        and the rows of those linked into it are taken in (``apply``)."""
        return self.read(event, 0, 0)._replace(order=True)

    async def context(self, conn: psycopg.AsyncConnection) -> fold.Context:
        """The active models and the thresholds, reloaded when a version changed: a model set
        activated while the pipeline runs is used from the next batch on."""
        versions = await store.versions(conn)
        if versions != self._versions:
            self.ctx = await load_context(conn, self.settings, self.rules)
            if versions[0] != self._versions[0]:
                self.held.clear()  # when stages change by themselves depends on the model
            self._versions = versions
        return self.ctx

    def _needs(self, touches: list[fold.Touch]) -> bool:
        held = self.held.get(touches[0].customer_id)
        if held is None:
            return True
        first_seen, review = held
        return any(t.order or t.at < first_seen or (review is not None and t.at >= review)
                   for t in touches)

    async def write(self, conn: psycopg.AsyncConnection,
                    readings: list[fold.Touch]) -> Callable[[], None] | None:
        by_customer: dict[str, list[fold.Touch]] = defaultdict(list)
        for t in readings:
            by_customer[t.customer_id].append(t)
        self.clock.saw(max(t.at for t in readings))
        todo = {c: ts for c, ts in by_customer.items() if self._needs(ts)}
        if not todo:
            return None
        ctx = await self.context(conn)
        linked = await rows.clusters(conn, list(todo))
        if linked:  # value is a cluster's: decided under its canonical id, in log order
            todo = _by_canonical(readings, todo, linked)
        saved, changes = await apply(conn, ctx, self.rates, todo, linked=linked)

        def committed() -> None:
            for c in linked:
                self.held.pop(c, None)
            for r in saved:
                self.held[r.customer_id] = (r.first_seen, r.review_at)
                self.held.move_to_end(r.customer_id)
            while len(self.held) > self.cache_size:
                self.held.popitem(last=False)
            if changes:
                self.clock.changed()
        return committed

    def forget(self) -> None:
        self.held.clear()


async def load_context(conn: psycopg.AsyncConnection, settings: Any, rules: fold.Rules) -> fold.Context:
    active = await store.active(conn)
    models = None if active is None else fold.Models(
        active.version, active.purchases, active.spend, settings.value_horizon_weeks,
        settings.value_discount_rate)
    return fold.Context(rules, models, await store.thresholds(conn))


def _by_canonical(readings: list[fold.Touch], todo: dict[str, list[fold.Touch]],
                  linked: dict[str, str]) -> dict[str, list[fold.Touch]]:
    """The touches of these customers by canonical id, in log order."""
    out: dict[str, list[fold.Touch]] = {}
    wanted = {linked.get(c, c) for c in todo}
    for t in readings:
        c = linked.get(t.customer_id, t.customer_id)
        if c in wanted:
            out.setdefault(c, []).append(t)
    return out


async def apply(conn: psycopg.AsyncConnection, ctx: fold.Context, rates: dict[str, float],
                todo: dict[str, list[fold.Touch]], until: datetime | None = None,
                held: dict[str, fold.Row] | None = None, linked: dict[str, str] | None = None
                ) -> tuple[list[fold.Row], list[fold.Change]]:
    """Decide and write the value rows of these customers (their touches in log order; with
    ``until``, also the changes time brings up to then). ``held``: rows already loaded (and
    locked, or checked unchanged before the write) by the caller. ``linked``: the other
    members of their identity clusters (``rows.clusters``), whose rows are taken in: a
    customer's value is that of its cluster, under the canonical id."""
    absorbed: dict[str, list[fold.Row]] = {}
    if held is None and linked:
        held = await rows.load(conn, [*todo, *linked])
        for member, c in linked.items():
            if c in todo and member in held:
                absorbed.setdefault(c, []).append(held.pop(member))
        for c in absorbed:  # the cluster's ledger has changed: decided again
            todo[c] = [*todo[c][:-1], todo[c][-1]._replace(order=True)]
    saved, changes = await decide_rows(conn, ctx, rates, todo, until, held, absorbed)
    await rows.drop(conn, [r.customer_id for rs in absorbed.values() for r in rs])
    await rows.save(conn, saved)
    await rows.save_changes(conn, changes)
    return saved, changes


async def decide_rows(conn: psycopg.AsyncConnection, ctx: fold.Context, rates: dict[str, float],
                      todo: dict[str, list[fold.Touch]], until: datetime | None = None,
                      held: dict[str, fold.Row] | None = None,
                      absorbed: dict[str, list[fold.Row]] | None = None
                      ) -> tuple[list[fold.Row], list[fold.Change]]:
    """``apply`` without the write: the rows and changes the decisions give."""
    current = held if held is not None else await rows.load(conn, list(todo))
    absorbed = absorbed or {}
    need_orders = [c for c, ts in todo.items()
                   if any(t.order for t in ts) or (c in current and current[c].facts.frequency)]
    ledger = await rows.orders(conn, need_orders)
    plans = []
    for c, ts in todo.items():
        days, _ = fold.purchases(ledger.get(c, ()), rates)
        seen = min((r.first_seen for r in absorbed.get(c, ())), default=None)
        p = fold.plan(ctx, c, current.get(c), days, ts, until, seen)
        if p is not None:
            plans.append(p)
    every = [d.facts for _, decisions in plans for d in decisions]
    figs = await asyncio.to_thread(fold.figures, ctx.models, every) if len(every) > 2000 \
        else fold.figures(ctx.models, every)
    saved, changes, i = [], [], 0
    for row, decisions in plans:
        row, changed = fold.decide(ctx, row, decisions, figs[i:i + len(decisions)])
        i += len(decisions)
        saved.append(row)
        changes += changed
    return saved, changes
