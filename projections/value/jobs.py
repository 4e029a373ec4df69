"""What the value projection runs beside its batches, in each projection worker; a PostgreSQL
advisory lock makes one worker at a time do each job.

- **sweep** (every ``value_sweep_every_s``): customers whose stage changes by itself (``review_at``
  passed: at risk, lapsed, P(alive) below the threshold) are re-decided up to now, the changes
  dated when they happened. Rows a batch holds are skipped (``SKIP LOCKED``) and taken next time.
- **refit**: the models are fitted on the order ledger when none is active and enough customers
  have bought, when the active set is older than ``value_refit_every_h``, or when the ledger's
  buyers have doubled since it was fitted, with the calibration period ending at the jobs' "now"
  (below); the new set is activated (batches pick it up). A fit
  the data cannot support is retried once the buyers grew by a fifth, or after RETRY_FIT_S.
- **thresholds** (every ``value_thresholds_every_s``, of the jobs' time and of the wall clock alike,
  so that a backlog worked off in minutes is not ranked again for each ten minutes of its event
  time; and at once when there are none yet, the model changed, the ranked population
  doubled, or the last ranking was made in a backlog that has now been worked off: a first load
  must not leave a ranking of its middle in force): the tier cuts and RFM quintiles over the
  whole population, recorded as a new version, then the tier of every customer they move
  re-decided against them (after what time alone changed for them); the others keep theirs.
- **relay**: tier and stage changes (``customer_changes``, written in the batches' transactions)
  are published on ``customer-changes``, each exactly once: a relay taking over first reads the
  topic's tail and marks what it finds there as published, so a relay killed between the send and
  the mark does not send again.

"Now" is the event time the log has reached while a backlog is being worked off, and the wall
clock once the worker has caught up (``clock.Clock``).

The jobs run in a process of their own beside each projection worker (``projections.jobs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from projections.clock import Clock
from projections.jobs import Background
from projections.sql import UNPACK, pack
from projections.value import fold, rows, store
from projections.value.models import FitError, fit_bgnbd, fit_gamma_gamma, summarise
from services.kafka import send_keyed, tail_ids
from services.metrics import CHANGES_PUBLISHED

LOCK_SWEEP, LOCK_MODELS, LOCK_RELAY = 7_301_001, 7_301_002, 7_301_003
SWEEP_CHUNK = 500
RETIER_CHUNK = 2000
RETIER_TRIES = 5
RELAY_CHUNK = 500
TAIL = 2 * RELAY_CHUNK  # records per partition a relay reads back when it takes over
RETRY_FIT_S = 600.0


class Jobs(Background):
    name = "value"

    def __init__(self, settings: Any, producer: Any, clock: Clock | None = None):
        super().__init__(settings, producer, clock)
        self.rules = fold.Rules(settings.value_at_risk_days, settings.value_lapsed_days,
                                settings.value_at_risk_p_alive)
        self._fit_failed: tuple[float, int] | None = None  # when, with how many buyers

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop("schedule", self._schedule,
                                                      self.settings.value_sweep_every_s)),
                       asyncio.create_task(self._loop("relay", self._relay, 1.0, self._wake))]

    # --- schedule: refit, thresholds, sweep ----------------------------------------------------

    async def _schedule(self, conn: psycopg.AsyncConnection) -> None:
        await self.refit(conn)
        while await self.sweep(conn) == SWEEP_CHUNK:
            pass
        await self.recompute(conn)

    async def sweep(self, conn: psycopg.AsyncConnection, now: datetime | None = None) -> int:
        """Re-decide up to SWEEP_CHUNK customers whose stage changes by itself; how many were
        written (rows a batch changed meanwhile are left to the next round)."""
        from projections.value import decide_rows, load_context  # noqa: PLC0415 - imports jobs

        now = now or self.clock.now()
        seen = await rows.peek(conn, "review_at <= %s ORDER BY review_at", (now,), SWEEP_CHUNK)
        if not seen:
            return 0
        ctx = await load_context(conn, self.settings, self.rules)
        saved, changes = await decide_rows(conn, ctx, dict(self.settings.value_rates),
                                           {c: [] for c in seen}, until=now,
                                           held={c: r for c, (r, _) in seen.items()})
        return len(await self._write_unchanged(conn, seen, saved, changes))

    async def _write_unchanged(self, conn: psycopg.AsyncConnection,
                               seen: dict[str, tuple[fold.Row, datetime]], saved: list[fold.Row],
                               changes: list[fold.Change]) -> set[str]:
        """Write what was decided on rows read unlocked, for the rows still as read (a batch that
        changed or holds one has decided it anew): the locks last only for the write."""
        async with conn.transaction():
            free = await rows.claim(conn, {c: at for c, (_, at) in seen.items()})
            kept = [r for r in saved if r.customer_id in free]
            changed = [c for c in changes if c.customer_id in free]
            await rows.save(conn, kept)
            await rows.save_changes(conn, changed)
        if changed:
            self._wake.set()
        return {r.customer_id for r in kept}

    async def refit(self, conn: psycopg.AsyncConnection) -> int | None:
        """Fit and activate a model set if one is due; its version."""
        s = self.settings
        if s.value_refit_every_h <= 0:
            return None
        async with conn.transaction():
            if not await _try_lock(conn, LOCK_MODELS):
                return None
            active = await store.active(conn)
            cur = await conn.execute("SELECT count(DISTINCT customer_id) FROM orders "
                                     "WHERE status = 'placed'")
            buyers = (await cur.fetchone())[0]
            if buyers < s.value_min_customers:
                return None
            if self._fit_failed is not None:  # retry once the data grew, or after a while
                at, then = self._fit_failed
                if time.monotonic() - at < RETRY_FIT_S and buyers < 1.2 * then:
                    return None
            if active is not None:
                age = datetime.now(UTC) - active.fitted_at
                seen = int(active.data.get("customers", 0))
                if age < timedelta(hours=s.value_refit_every_h) and buyers < 2 * seen:
                    return None
            transactions = await store.ledger_transactions(conn, dict(s.value_rates))
            end = self.clock.now().date()  # where the log is: a backlog's orders end there
            try:
                cohort, purchases, spend = await asyncio.to_thread(_fit, transactions, end)
            except FitError as e:
                self._fit_failed = (time.monotonic(), buyers)
                self.log.warning("value models: no fit on the ledger yet (%s)", e)
                return None
            version = await store.save(conn, end, purchases, spend,
                                       {"source": "ledger", "customers": len(cohort),
                                        "repeat_customers": int((cohort.x > 0).sum()),
                                        "scheduled": True})
        self.log.info("value models: fitted version %s on %s customers", version, len(cohort))
        return version

    async def recompute(self, conn: psycopg.AsyncConnection, force: bool = False,
                        now: datetime | None = None) -> int | None:
        """Recompute the tier thresholds if due (or ``force``), then re-tier the customers whose
        tier they change (the others keep theirs, and the version that decided it); the version."""
        s = self.settings
        now = now or self.clock.now()
        async with conn.transaction():
            if not await _try_lock(conn, LOCK_MODELS):
                return None
            ctx = await _context(conn, s, self.rules)
            last = ctx.thresholds[-1] if ctx.thresholds else None
            model_version = ctx.models.version if ctx.models else None
            cur = await conn.execute("SELECT count(*) FROM customer_value WHERE frequency > 0")
            buyers = (await cur.fetchone())[0]
            if buyers < s.value_min_customers:
                return None
            ranked = await _ranked(conn, last.version) if last else 0
            every = s.value_thresholds_every_s
            due = (force or last is None or last.model_version != model_version
                   or buyers >= 2 * ranked  # the population doubled since (each re-tiers all)
                   or (now - last.computed_at >= timedelta(seconds=every)
                       and not await store.ranked_within(  # a backlog's ranking gives way once
                           conn, every, caught_up=now >= datetime.now(UTC) - timedelta(seconds=every))))
            if not due:
                return None
            cur = await conn.execute(
                "SELECT customer_id::text, x, t_x, m_x, first_purchase, last_purchase, frequency, "
                "monetary, tier FROM customer_value WHERE frequency > 0")
            found = await cur.fetchall()
            many = [_facts_now(r, now) for r in found]
            trailing = await _trailing(conn, s.value_rates, now)
            rank_by = s.value_rank_by if ctx.models is not None else "trailing_12m"
            figs = await asyncio.to_thread(fold.figures, ctx.models, many) if rank_by == "clv" \
                else [fold.NO_FIGURES] * len(many)
            values = [fig.clv or 0.0 for fig in figs] if rank_by == "clv" \
                else [trailing.get(r[0], 0.0) for r in found]
            rfm = ([f.recency_days or 0.0 for f in many], [f.frequency for f in many],
                   [float(f.monetary) for f in many])
            th = fold.compute_thresholds(0, now, rank_by, model_version, dict(s.value_tiers),
                                         values, rfm)
            version = await store.save_thresholds(conn, th, len(values))
        movers = [r[0] for r, v in zip(found, values, strict=True) if th.tier_of(v) != r[-1]]
        self.log.info("value tiers: thresholds version %s over %s customers, %s change tier",
                 version, len(values), len(movers))
        for i in range(0, len(movers), RETIER_CHUNK):
            left = movers[i:i + RETIER_CHUNK]
            for _ in range(RETIER_TRIES):  # a row a batch changed meanwhile is tried again
                left = await self.retier(conn, version, now, left)
                if not left:
                    break
        return version

    async def retier(self, conn: psycopg.AsyncConnection, version: int, now: datetime,
                     customer_ids: list[str]) -> list[str]:
        """Re-decide these customers' tiers by ``version`` (after what time alone changed for
        them); the customers left to try again (a batch changed their row meanwhile)."""
        ctx = await _context(conn, self.settings, self.rules)
        th = next((t for t in ctx.thresholds if t.version == version), None)
        if th is None or ctx.thresholds[-1].version != version:
            return []  # a newer recomputation took over
        seen = await rows.peek(conn, f"frequency > 0 AND customer_id IN (SELECT c::uuid FROM "
                                     f"{UNPACK} AS c)", (pack(customer_ids),), len(customer_ids))
        if not seen:
            return []
        held = [r for r, _ in seen.values()]
        ledger = await rows.orders(conn, [r.customer_id for r in held])
        rates = dict(self.settings.value_rates)
        bought = [fold.purchases(ledger.get(r.customer_id, ()), rates)[0] for r in held]
        saved, changes = [], []
        # first what time has changed up to the recomputation (stages), then the tier
        plans = [fold.plan(ctx, r.customer_id, r, b, [], until=now)
                 for r, b in zip(held, bought, strict=True)]
        steps = [d.facts for p in plans if p is not None for d in p[1]]
        many = [fold.facts(b, max(now, r.as_of)) for r, b in zip(held, bought, strict=True)]
        figs = await asyncio.to_thread(fold.figures, ctx.models, steps + many)
        k = 0
        for r, p, f, fig in zip(held, plans, many, figs[len(steps):], strict=True):
            if p is not None and p[1]:
                r, changed = fold.decide(ctx, p[0], p[1], figs[k:k + len(p[1])])
                k += len(p[1])
                changes += changed
            row, changed = fold.retier(ctx, r, th, f, fig)
            saved.append(row)
            changes += changed
        written = await self._write_unchanged(conn, seen, saved, changes)
        return [c for c in seen if c not in written]

    # --- relay: customer_changes -> topic customer-changes, once each --------------------------

    async def _relay(self, conn: psycopg.AsyncConnection) -> None:
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_RELAY,))
        if not (await cur.fetchone())[0]:
            return  # another worker relays; this one stands by
        try:
            await self.recover(conn)
            while await self.publish(conn) == RELAY_CHUNK:
                pass
            while True:  # hold the lock: publish whenever woken
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._wake.wait()
                self._wake.clear()
                while await self.publish(conn) == RELAY_CHUNK:
                    pass
        finally:
            if not conn.closed and not conn.broken:
                with contextlib.suppress(Exception):
                    await conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_RELAY,))

    async def recover(self, conn: psycopg.AsyncConnection) -> int:
        """Mark as published what the topic's tail already holds; how many were unmarked."""
        ids = await tail_ids(self.settings, self.settings.customer_changes_topic, TAIL)
        if not ids:
            return 0
        cur = await conn.execute("UPDATE customer_changes SET published_at = now() "
                                 "WHERE change_id = ANY(%s::uuid[]) AND published_at IS NULL",
                                 (ids,))
        return cur.rowcount

    async def publish(self, conn: psycopg.AsyncConnection) -> int:
        """Publish the oldest unpublished changes (keyed by customer: a customer's changes stay in
        order on one partition), then mark them; how many. PostgreSQL writes the documents."""
        cur = await conn.execute(
            f"SELECT change_id::text, customer_id::text, {DOCUMENT}::text FROM customer_changes "
            "WHERE published_at IS NULL ORDER BY seq LIMIT %s", (RELAY_CHUNK,))
        found = await cur.fetchall()
        if not found:
            return 0
        records = [(cid.encode(), doc.encode(), [("ts-change-id", change_id.encode())])
                   for change_id, cid, doc in found]
        await send_keyed(self.producer, self.settings.customer_changes_topic, records)
        await conn.execute("UPDATE customer_changes SET published_at = now() "
                           "WHERE change_id = ANY(%s::uuid[])", ([r[0] for r in found],))
        CHANGES_PUBLISHED.inc(len(found))
        return len(found)


# A change as published on ``customer-changes``: times in UTC with microseconds, as the timeline's.
DOCUMENT = (
    "json_build_object('change_id', change_id, 'customer_id', customer_id, 'n', n, 'kind', kind, "
    "'old', old, 'new', new, 'reason', reason, 'event_id', event_id, "
    "'thresholds_version', thresholds_version, 'model_version', model_version, "
    "'occurred_at', to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))")


async def _ranked(conn: psycopg.AsyncConnection, version: int) -> int:
    cur = await conn.execute("SELECT customers FROM value_thresholds WHERE version = %s", (version,))
    found = await cur.fetchone()
    return found[0] if found else 0


async def _try_lock(conn: psycopg.AsyncConnection, key: int) -> bool:
    cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (key,))
    return bool((await cur.fetchone())[0])


async def _context(conn: psycopg.AsyncConnection, settings: Any, rules: fold.Rules) -> fold.Context:
    from projections.value import load_context

    return await load_context(conn, settings, rules)


def _fit(transactions: list, end: Any) -> tuple[Any, Any, Any]:
    cohort = summarise(transactions, end)
    return cohort, fit_bgnbd(cohort.x, cohort.t_x, cohort.T), fit_gamma_gamma(cohort.x, cohort.m_x)


def _facts_now(r: tuple, now: datetime) -> fold.Facts:
    """Facts as of now from a value row's columns (the trailing 12 months come from the ledger)."""
    _, x, t_x, m_x, first, last, frequency, monetary, *_ = r
    start = datetime.combine(first, datetime.min.time(), UTC)
    return fold.Facts(now, frequency, first, last, None, monetary, 0, x, t_x,
                      max((now - start).total_seconds() / fold.WEEK_S, t_x), m_x)


async def _trailing(conn: psycopg.AsyncConnection, rates: dict[str, float],
                    now: datetime) -> dict[str, float]:
    """Value of each customer's purchases in the 12 months before ``now``."""
    cur = await conn.execute(
        "SELECT o.customer_id::text, sum(o.amount * r.rate)::float8 FROM orders o "
        "JOIN unnest(%s::text[], %s::numeric[]) AS r(currency, rate) USING (currency) "
        "WHERE o.status = 'placed' AND o.placed_at > %s GROUP BY o.customer_id",
        (list(rates), [str(v) for v in rates.values()], now - fold.TRAILING))
    return dict(await cur.fetchall())
