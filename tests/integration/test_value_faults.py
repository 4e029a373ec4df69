"""Customer value under faults: tier and stage changes reach ``customer-changes`` exactly once.

1. The projection worker (a separate process, which also runs the value relay) is SIGKILLed inside
   a batch's transaction while orders flow; a new one takes over. Every row of
   ``customer_changes`` is then on the topic once, nothing else is, and each customer's changes
   form one unbroken chain (in the table by ``seq``, and on the topic in partition order).
2. The relay dies between the send and the mark: the chunk is on the topic, the rows are still
   unpublished. A fresh relay (``Jobs``) taking over reads the topic's tail, marks what it finds
   and publishes only the rest.
3. One thresholds version re-tiers a customer twice (a batch tiered her by the previous version
   in between): both changes are recorded, each under its own id (the customer's n-th change).
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psutil
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord
from psycopg.rows import dict_row

from projections.value import rows as value_rows
from projections.value import store
from projections.value.fold import Change
from projections.value.jobs import RELAY_CHUNK, Jobs
from projections.value.models import BgNbd, GammaGamma
from services.kafka import producer as new_producer
from services.kafka import topic_ends
from services.processors.projector import ProjectionStage
from tests.conftest import eventually
from tests.integration.faults import (
    PacedPublisher,
    Worker,
    check_alive,
    drained,
    freeze_mid_batch,
    held_partitions,
    resolved,
    spawn_worker,
    stop_worker,
)
from tests.integration.pipeline import api_client, count, rows, touchpoint

pytestmark = pytest.mark.integration
DAY = timedelta(days=1)


# -- reading what is where -----------------------------------------------------------------------

async def topic_records(settings) -> list[tuple[int, int, str | None, dict[str, Any]]]:
    """Every record of customer-changes: (partition, offset, ts-change-id header, document)."""
    topic = settings.customer_changes_topic
    ends = await topic_ends(settings, topic)
    if all(e < 0 for e in ends.values()):
        return []
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[tuple[int, int, str | None, dict[str, Any]]] = []
    try:
        left = {p for p, e in ends.items() if e >= 0}
        deadline = time.monotonic() + 30
        while left:
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            got = await consumer.getmany(timeout_ms=500)
            for tp, records in got.items():
                for r in records:
                    if r.offset > ends[tp.partition]:
                        continue
                    header = next((v.decode() for k, v in r.headers if k == "ts-change-id"), None)
                    out.append((tp.partition, r.offset, header, orjson.loads(r.value)))
                if records and records[-1].offset >= ends[tp.partition]:
                    left.discard(tp.partition)
    finally:
        await consumer.stop()
    out.sort(key=lambda r: (r[0], r[1]))
    return out


async def table_changes(settings) -> list[dict[str, Any]]:
    return await rows(settings, "SELECT change_id::text, customer_id::text, kind, old, new, seq, "
                                "published_at FROM customer_changes ORDER BY seq")


async def snapshot(settings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """customer_changes (by seq) and customer_value, as one moment saw them."""
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            await cur.execute("SELECT change_id::text, customer_id::text, kind, old, new, seq, "
                              "occurred_at, event_id::text, reason FROM customer_changes "
                              "ORDER BY seq")
            changes = await cur.fetchall()
            await cur.execute("SELECT customer_id::text, stage, tier, stage_since, tier_since, "
                              "as_of, review_at, thresholds_version FROM customer_value")
            return changes, await cur.fetchall()


def broken_links(chains: dict[tuple[str, str], list[tuple[str | None, str]]]) -> list[str]:
    """Where a customer's (old, new) changes of one kind do not follow on from each other."""
    out = []
    for (customer, kind), links in chains.items():
        if links[0][0] != "prospect":
            out.append(f"{customer} {kind}: the first change starts from {links[0][0]!r}")
        for (_, prev_new), (old, new) in zip(links, links[1:], strict=False):
            if old != prev_new:
                out.append(f"{customer} {kind}: {old!r} -> {new!r} after a change to {prev_new!r}")
    return out


def assert_once_and_consistent(on_topic: list, recorded: list[dict[str, Any]]) -> None:
    """Each change on the topic once, the topic's set the table's, both chains unbroken."""
    headers = [h for _, _, h, _ in on_topic]
    ids = [d["change_id"] for _, _, _, d in on_topic]
    assert headers == ids, "a record's ts-change-id header is not its change's id"
    twice = {i: n for i, n in Counter(ids).items() if n > 1}
    assert not twice, f"{len(twice)} changes published more than once, e.g. {list(twice.items())[:3]}"
    table_ids = {r["change_id"] for r in recorded}
    assert len(table_ids) == len(recorded)
    assert set(ids) == table_ids, (f"on the topic only: {sorted(set(ids) - table_ids)[:3]}, "
                                   f"in the table only: {sorted(table_ids - set(ids))[:3]}")
    assert all(r["published_at"] is not None for r in recorded)

    by_seq: dict[tuple[str, str], list[tuple[str | None, str]]] = defaultdict(list)
    for r in recorded:  # ordered by seq
        by_seq[(r["customer_id"], r["kind"])].append((r["old"], r["new"]))
    assert not (broken := broken_links(by_seq)), f"{len(broken)} broken in the table: {broken[:5]}"

    partitions: dict[str, set[int]] = defaultdict(set)
    by_offset: dict[tuple[str, str], list[tuple[str | None, str]]] = defaultdict(list)
    for partition, _, _, d in on_topic:  # ordered by (partition, offset)
        partitions[d["customer_id"]].add(partition)
        by_offset[(d["customer_id"], d["kind"])].append((d["old"], d["new"]))
    assert all(len(p) == 1 for p in partitions.values()), "a customer's changes on two partitions"
    assert not (broken := broken_links(by_offset)), f"{len(broken)} broken on the topic: {broken[:5]}"


# -- 1. The projection worker killed mid-batch while orders flow ---------------------------------

def _customer(i: int, tag: str, now: datetime) -> list[dict[str, Any]]:
    """A customer whose stage (and tier) moves over its history: prospects, one-order customers,
    lapsed ones, regulars, and customers who lapse and come back."""
    email = f"vf{i}.{tag}@example.com"
    kind = i % 6
    if kind == 0:
        return [touchpoint("web_visit", email=email, at=now - 3 * DAY)]
    if kind == 1:
        days = [10.0]
    elif kind == 2:
        days = [400.0, 300.0, 200.0]  # lapsed long ago
    elif kind == 3:
        days = [300.0, 290.0, 150.0, 5.0]  # at risk, lapsed, won back
    else:
        days = [14.0 * k for k in range(2 + i % 5, 0, -1)]  # a regular
    amount = f"{10 + 7 * (i % 23)}.00"
    out = [touchpoint("web_visit", email=email, at=now - (days[0] + 1) * DAY)]
    for k, ago in enumerate(days):
        out.append(touchpoint("order", email=email, at=now - ago * DAY, order_id=f"O-{tag}-{i}-{k}",
                              amount=amount, items=[{"sku": "A", "quantity": 1,
                                                     "unit_price": amount}]))
    return out


def _interleaved(customers: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Round robin over the customers: each one's events land in different batches, in order."""
    out = []
    for k in range(max(len(c) for c in customers)):
        out += [c[k] for c in customers if k < len(c)]
    return out


async def _holds_all(settings, stage: str, worker: Worker, also: list[Worker]) -> bool:
    check_alive([worker, *also])
    return (await held_partitions(settings)).get((worker.pid, stage)) == set(range(settings.partitions))


async def _unpublished(settings) -> int:
    return await count(settings, "SELECT count(*)::int AS n FROM customer_changes "
                                 "WHERE published_at IS NULL")


async def test_tier_and_stage_changes_published_once_when_the_projection_worker_is_killed_mid_batch(
        settings, tmp_path, monkeypatch):
    # The workers read their settings from the environment (spawn_worker passes it on).
    for name, value in {"VALUE_MIN_CUSTOMERS": "10", "VALUE_SWEEP_EVERY_S": "0.2",
                        "VALUE_THRESHOLDS_EVERY_S": "2"}.items():
        monkeypatch.setenv(name, value)
    now = datetime.now(UTC).replace(microsecond=0)
    tag = uuid.uuid4().hex[:6]
    customers = [_customer(i, tag, now) for i in range(180)]
    events = _interleaved(customers)
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
        await store.save(conn, now.date(), BgNbd(0.243, 4.414, 0.793, 2.426),
                         GammaGamma(6.25, 3.74, 15.44), {"source": "test", "customers": 10**6})

    identity = spawn_worker(settings, tmp_path / "identity", stages="identity")
    victim = spawn_worker(settings, tmp_path / "projections-1", stages="projections",
                          batch_max_records=25)
    workers = [identity, victim]
    try:
        await eventually(lambda: _holds_all(settings, "identity", identity, workers), timeout_s=60,
                         interval_s=0.2)
        await eventually(lambda: _holds_all(settings, "projections", victim, workers),
                         timeout_s=60, interval_s=0.2)
        publisher = PacedPublisher(settings, events, per_s=120).start()

        # Kill it inside a batch once the relay has published some changes and more are coming.
        async def going() -> bool:
            check_alive(workers)
            found = await rows(settings, "SELECT count(*)::int AS n, count(published_at)::int "
                                         "AS published FROM customer_changes")
            return (publisher.sent >= len(events) // 2 and found[0]["n"] >= 300
                    and found[0]["published"] >= 100)
        await eventually(going, timeout_s=40, interval_s=0.05)
        jobs = psutil.Process(victim.pid).children(recursive=True)
        assert jobs, "the worker runs its value jobs in a process of its own"
        await freeze_mid_batch(settings, victim)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        # its jobs process sees its worker gone and stops (it would relay beside the successor)
        _, alive = psutil.wait_procs(jobs, timeout=10)
        assert not alive, f"the killed worker's jobs still run: {alive}"
        at_kill = await rows(settings, "SELECT count(*)::int AS n, count(published_at)::int AS "
                                       "published FROM customer_changes")
        sent_at_kill = publisher.sent
        assert sent_at_kill < len(events), "the stream was done before the kill"

        successor = spawn_worker(settings, tmp_path / "projections-2", stages="projections",
                                 batch_max_records=25)
        workers = [identity, successor]
        await eventually(lambda: _holds_all(settings, "projections", successor, workers),
                         timeout_s=45, interval_s=0.2)
        await publisher.join(timeout_s=30)

        # A few more orders after the takeover, from customers the killed worker had written.
        async with api_client(settings) as client:
            for i in (1, 4, 7, 13, 19):
                email = f"vf{i}.{tag}@example.com"
                order = touchpoint("order", email=email, at=now, order_id=f"O-{tag}-{i}-late",
                                   amount="250.00",
                                   items=[{"sku": "B", "quantity": 1, "unit_price": "250.00"}])
                r = await client.post("/v1/touchpoints", json=order)
                assert r.status_code == 202, r.text
        await drained(settings, workers, timeout_s=45)

        # Until every recorded change is published and the topic holds exactly those.
        async def settled():
            check_alive(workers)
            if await _unpublished(settings):
                return None
            on_topic = await topic_records(settings)
            recorded = await table_changes(settings)
            if {d["change_id"] for *_, d in on_topic} != {r["change_id"] for r in recorded} \
                    or any(r["published_at"] is None for r in recorded):
                return None
            return on_topic, recorded
        on_topic, recorded = await eventually(settled, timeout_s=30, interval_s=0.3)
        recorded_now, values = await snapshot(settings)
    finally:
        for w in workers:
            stop_worker(w)
    print(f"killed after {sent_at_kill} of {len(events)} events were sent, with {at_kill[0]['n']} "
          f"changes recorded, {at_kill[0]['published']} published; at the end {len(recorded)} "
          f"recorded, {len(on_topic)} records on the topic")

    assert len(recorded) > at_kill[0]["n"], "nothing changed after the takeover"
    assert_once_and_consistent(on_topic, recorded)
    # each customer's chains end at the stage and tier its value row holds
    last = {(r["customer_id"], r["kind"]): r["new"] for r in recorded_now}
    held = {(v["customer_id"], kind): v[kind] for v in values for kind in ("stage", "tier")}
    differ = {k: (v, held.get(k)) for k, v in last.items() if held.get(k) != v}
    assert not differ, f"{len(differ)} chains end elsewhere than the row (last change, row): " \
                       f"{list(differ.items())[:5]}"
    kinds = Counter((r["kind"], r["new"]) for r in recorded)
    assert {("stage", s) for s in ("new", "repeat", "lapsed", "won_back")} <= set(kinds), kinds


# -- 2. The relay killed between the send and the mark -------------------------------------------

STAGES = ("prospect", "new", "repeat", "at_risk", "lapsed", "won_back")


def _changes(customers: int, steps: int) -> list[Change]:
    """Stage chains of ``steps`` changes per customer, step by step across the customers (so
    that ``seq`` follows each chain), as the value projection records them."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [str(uuid.uuid4()) for _ in range(customers)]
    return [Change(cid, "stage", STAGES[k], STAGES[k + 1], f"step {k}",
                   str(uuid.uuid4()), None, None, start + k * DAY + i * timedelta(seconds=1), k + 1)
            for k in range(steps) for i, cid in enumerate(ids)]


class RelayKilled(Exception):
    pass


class DiesAtTheMark:
    """The relay's connection, as seen by a relay killed right after the broker acknowledged the
    chunk: the statement that marks the chunk published never runs."""

    def __init__(self, conn: psycopg.AsyncConnection):
        self.conn = conn

    async def execute(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        if sql.startswith("UPDATE customer_changes SET published_at"):
            raise RelayKilled("killed between the send and the mark")
        return await self.conn.execute(sql, *args, **kwargs)


@pytest.mark.parametrize("takeover", ["recover_then_publish", "relay_loop"])
async def test_relay_killed_between_send_and_mark_does_not_send_twice(settings, takeover):
    """1,200 changes: the first relay publishes and marks a chunk of 500, sends the next 500 and
    dies before marking them. The relay taking over (recover + publish called directly, or its
    running loop) marks those 500 from the topic's tail and sends only the last 200."""
    changes = _changes(customers=300, steps=4)
    assert len(changes) > 2 * RELAY_CHUNK
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
        await value_rows.save_changes(conn, changes)

    first_producer = new_producer(settings, "relay-1")
    await first_producer.start()
    try:
        first = Jobs(settings, first_producer)
        async with await first.connect() as conn:
            assert await first.publish(conn) == RELAY_CHUNK
            with pytest.raises(RelayKilled):
                await first.publish(DiesAtTheMark(conn))  # type: ignore[arg-type]
    finally:
        await first_producer.stop()
    assert len(await topic_records(settings)) == 2 * RELAY_CHUNK
    assert await _unpublished(settings) == len(changes) - RELAY_CHUNK

    second_producer = new_producer(settings, "relay-2")
    await second_producer.start()
    second = Jobs(settings, second_producer)
    try:
        if takeover == "recover_then_publish":
            async with await second.connect() as conn:
                assert await second.recover(conn) == RELAY_CHUNK
                assert await second.publish(conn) == len(changes) - 2 * RELAY_CHUNK
                assert await second.publish(conn) == 0
        else:
            second.start()
            async def all_marked() -> bool:
                return await _unpublished(settings) == 0
            await eventually(all_marked, timeout_s=30)
            # wait for more: nothing is sent after everything is marked
            await asyncio.sleep(1.5)
    finally:
        await second.stop()
        await second_producer.stop()

    on_topic = await topic_records(settings)
    assert len(on_topic) == len(changes), f"{len(on_topic) - len(changes)} sent twice"
    assert_once_and_consistent(on_topic, await table_changes(settings))


# -- 3. One recomputation re-tiers a customer twice -----------------------------------------------

def _customer_id(event: dict[str, Any]) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, orjson.dumps(event["customer"],
                                                           option=orjson.OPT_SORT_KEYS).decode()))


async def _project(settings, stage, events: list[dict[str, Any]], first_offset: int) -> int:
    """One batch of the projection stage, in this process (no worker, no background jobs)."""
    docs = [resolved(e, _customer_id(e)) for e in events]
    records = [ConsumerRecord(topic=settings.log_topic, partition=0, offset=first_offset + i,
                              timestamp=0, timestamp_type=0, key=d["customer"]["customer_id"].encode(),
                              value=orjson.dumps(d), checksum=None, serialized_key_size=36,
                              serialized_value_size=0, headers=())
               for i, d in enumerate(docs)]
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn, \
            conn.transaction():
        await stage.handle(conn, list(zip(records, stage.prepare(records), strict=True)))
    return first_offset + len(records)


def _order(email: str, at: datetime, amount: str) -> dict[str, Any]:
    return touchpoint("order", email=email, at=at, order_id=f"O-{uuid.uuid4().hex[:8]}",
                      amount=amount, items=[{"sku": "A", "quantity": 1, "unit_price": amount}])


async def test_a_customer_re_tiered_twice_by_one_recomputation_has_every_change_recorded(
        settings, monkeypatch):
    """Tiers by trailing 12 months (no model set), gold for the top half. A batch with Carol's
    order loads the thresholds (v1), then a recomputation (v2) commits and re-tiers her before
    the batch reads her row; the batch tiers her by v1, and the recompute loop's next chunk (in
    production: the next RETIER_CHUNK of 2,000 customers) re-tiers her by v2 again."""
    settings = settings.model_copy(update={"value_min_customers": 10,
                                           "value_tiers": {"gold": 0.5, "bronze": 0.5}})
    now = datetime.now(UTC).replace(microsecond=0)
    t1, t2 = now + timedelta(seconds=1), now + timedelta(seconds=2)
    tag = uuid.uuid4().hex[:6]
    stage = ProjectionStage(settings)  # not started: the jobs are driven by hand below
    jobs = Jobs(settings, None)
    carol = f"carol.{tag}@example.com"
    carol_id = _customer_id(_order(carol, now, "1.00"))

    # ten buyers of 10 to 100 (Carol 60): the cut of gold is 60, Carol is gold (v1)
    offset = await _project(settings, stage, [
        _order(carol if v == 60 else f"b{v}.{tag}@example.com", now - 2 * DAY, f"{v}.00")
        for v in range(10, 101, 10)], 0)
    async with await jobs.connect() as conn:
        first = await jobs.recompute(conn, force=True, now=t1)
    # ten big buyers, tiered by v1 in their batch
    offset = await _project(settings, stage, [
        _order(f"big{k}.{tag}@example.com", now - 2 * DAY, "1000.00") for k in range(10)], offset)

    # Carol orders again; her batch has loaded the thresholds (v1) when v2 is recomputed
    # (cut 1,000: Carol bronze) and its first chunk re-tiers her, then the batch reads her row.
    load, second = value_rows.load, []

    async def load_after_a_recomputation(conn, customer_ids, lock=True):
        if carol_id in customer_ids and not second:
            async with await jobs.connect() as other:
                second.append(await jobs.recompute(other, force=True, now=t2))
        return await load(conn, customer_ids, lock)
    monkeypatch.setattr(value_rows, "load", load_after_a_recomputation)
    offset = await _project(settings, stage, [_order(carol, now - DAY, "5.00")], offset)
    monkeypatch.setattr(value_rows, "load", load)
    assert first is not None and second[0] is not None and second[0] > first
    # ... and the recompute loop's next chunk takes the rows not decided by v2: Carol again
    async with await jobs.connect() as conn:
        assert await jobs.retier(conn, second[0], t2, [carol_id]) == []

    changes = await rows(settings, "SELECT kind, old, new, n FROM customer_changes "
                                   "WHERE customer_id = %s ORDER BY seq", carol_id)
    tiers = [(r["old"], r["new"]) for r in changes if r["kind"] == "tier"]
    [row] = await rows(settings, "SELECT tier, changes FROM customer_value WHERE customer_id = %s",
                       carol_id)
    assert tiers == [("prospect", "unranked"), ("unranked", "gold"), ("gold", "bronze"),
                     ("bronze", "gold"), ("gold", "bronze")], tiers
    assert tiers[-1][1] == row["tier"], f"the row says {row['tier']}, the changes {tiers}"
    assert not broken_links({(carol_id, "tier"): tiers}), tiers
    # her changes are numbered 1, 2, ... in the order they were recorded, and the row counts them
    assert [r["n"] for r in changes] == list(range(1, len(changes) + 1)), changes
    assert row["changes"] == len(changes)


async def test_a_backlog_racing_through_event_time_is_not_re_ranked_at_every_interval(settings):
    """While a backlog is worked off, hours of event time pass in seconds: the thresholds'
    interval has to pass on the wall clock as well, since any worker's jobs recomputed them, or
    the whole population would be ranked again at every round. A population that doubled is
    ranked again at once."""
    settings = settings.model_copy(update={"value_min_customers": 10,
                                           "value_thresholds_every_s": 600.0})
    now = datetime.now(UTC).replace(microsecond=0)
    tag = uuid.uuid4().hex[:6]
    stage = ProjectionStage(settings)  # not started: the jobs are driven by hand below
    jobs, other = Jobs(settings, None), Jobs(settings, None)  # two workers' jobs
    offset = await _project(settings, stage, [
        _order(f"b{v}.{tag}@example.com", now - 2 * DAY, f"{v}.00") for v in range(10, 101, 10)], 0)
    async with await jobs.connect() as conn:
        first = await jobs.recompute(conn, now=now)
        assert first is not None, "no thresholds yet: due at once"
        # an hour of event time later, no wall time later: not again, by either worker's jobs
        assert await jobs.recompute(conn, now=now + timedelta(hours=1)) is None
        assert await other.recompute(conn, now=now + timedelta(hours=1)) is None
        # the interval passed on the wall clock too: due
        await conn.execute("UPDATE value_thresholds SET recorded_at = recorded_at - "
                           "interval '601 seconds' WHERE version = %s", (first,))
        second = await other.recompute(conn, now=now + timedelta(hours=2))
        assert second is not None and second > first
    # ten more buyers: the ranked population doubled, ranked again with no time passing at all
    await _project(settings, stage, [
        _order(f"c{v}.{tag}@example.com", now - DAY, f"{v}.00") for v in range(10, 101, 10)], offset)
    async with await jobs.connect() as conn:
        third = await jobs.recompute(conn, now=now + timedelta(hours=2))
    assert third is not None and third > second


async def test_a_ranking_made_in_a_backlog_is_made_again_once_the_log_is_worked_off(settings):
    """A first load ranks the population somewhere in its middle (the jobs' time is the event
    time reached, the wall clock says a minute ago): once the log is worked off, those thresholds
    are ranked again at once, not an interval of the wall clock later, so that the pyramid a
    user sees after the load is the population's. While the backlog lasts they are not."""
    settings = settings.model_copy(update={"value_min_customers": 10,
                                           "value_thresholds_every_s": 600.0})
    now = datetime.now(UTC).replace(microsecond=0)
    tag = uuid.uuid4().hex[:6]
    stage = ProjectionStage(settings)  # not started: the jobs are driven by hand below
    jobs = Jobs(settings, None)
    await _project(settings, stage, [
        _order(f"d{v}.{tag}@example.com", now - 40 * DAY, f"{v}.00") for v in range(10, 101, 10)], 0)
    async with await jobs.connect() as conn:
        in_backlog = await jobs.recompute(conn, force=True, now=now - 30 * DAY)
        assert in_backlog is not None
        # ten days of event time later, the backlog still being worked off: not again
        assert await jobs.recompute(conn, now=now - 20 * DAY) is None
        # the log worked off (the jobs' time is the wall clock's): ranked again at once
        caught_up = await jobs.recompute(conn, now=datetime.now(UTC))
        assert caught_up is not None and caught_up > in_backlog
        # ... once: that ranking was made at the wall clock's time
        assert await jobs.recompute(conn, now=datetime.now(UTC) + timedelta(minutes=11)) is None
