"""``touchstream replay``: rebuild projections from the log of record while the live ones serve.

A replay folds the log (the archive, then topic ``touchpoints`` from where the archive stops; or
the topic alone) into the tables of the named projections, and of those they read
(``Projection.needs``), in schema ``ts_replay``, with the projections' own code: many events per
transaction, the replay's position committed with them, so that an interrupted replay run again
resumes. Once it is close to the live projection stage, it locks the stage's tracked positions
(the live batches wait), folds the last events, compares its tables with the live ones (row
counts, a checksum of the content, the first keys that differ) and, unless it only verifies,
swaps the tables in the same transaction: the live ones go to schema ``ts_previous`` (for
``--rollback``) and the stage's workers drop their caches (the positions' epoch). The API sees
the old tables or the new ones, never a mix or nothing.

A replay publishes nothing. What time alone changes is decided by the log's time: after each
chunk (``Projection.advance``: the alert timers) and, before the comparison, up to now
(``Projection.settle``, reported: the value changes the replay decided are marked as published and
counted; the alerts the live stage had not found are listed and sent to nobody, and what people
did to the live alerts is carried over). After the swap, live readers are told
(``Projection.swapped``: alert streams reload).
It de-duplicates event ids as the live stage does, under a processor name of its own
(``replay:ID``), kept for a rollback of its swap. ``ts_replays`` records every replay.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from projections import REGISTRY, Projection
from projections.clock import Clock
from services import archive, store
from services.config import Settings
from services.kafka import topic_ends
from services.processors.projector import NOT_TOUCHPOINTS, ProjectionStage, project, read

SHADOW = "ts_replay"
PREVIOUS = "ts_previous"
ARCHIVE = "archive"  # the replay's position in the archive (a notification id), as a tracked topic
LIVE = ProjectionStage.name
CHUNK = 5000  # events per transaction
CLOSE = 2 * CHUNK  # events behind the live stage when the replay takes the lock
STALL_S = 30.0  # no record from the log for this long: it does not hold what the positions say
DIFFERENCES = 10  # keys listed per table that differs
LOCK = 7_401_001  # one replay at a time: they share the shadow schema
LOCK_TRY_S, LOCK_TRIES = 0.2, 100  # the swap's tries to lock every live table it moves

DDL = """
CREATE TABLE IF NOT EXISTS ts_replays (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    processor   text        NOT NULL,   -- its de-duplication and positions: replay:ID
    projections text[]      NOT NULL,   -- rebuilt: those named and those they read
    source      text        NOT NULL,   -- archive | kafka
    until       timestamptz,            -- only events that occurred up to then (never swapped)
    mode        text        NOT NULL,   -- replay | verify | rollback
    status      text        NOT NULL,   -- building | swapped | equal | drifted | built | abandoned
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    events      bigint      NOT NULL DEFAULT 0,   -- events folded
    positions   jsonb,                  -- the live positions at the swap: where ts_previous stops
    report      jsonb
);
"""


class ReplayError(RuntimeError):
    """A replay that cannot be done as asked (the message says why)."""


def closure(names: Sequence[str]) -> list[type[Projection]]:
    """The registered projections to rebuild for ``names`` ("all", or projection names): those
    named and those whose tables they read, in the registry's order."""
    by_name = {p.name: p for p in REGISTRY}
    if list(names) == ["all"] or not names:
        return list(REGISTRY)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ReplayError(f"unknown projection {unknown[0]!r}: one of {', '.join(by_name)} or all")
    want: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in want:
            want.add(name)
            todo += by_name[name].needs
    return [p for p in REGISTRY if p.name in want]


class Progress:
    """Events folded, with a rate and the time left: a bar on a terminal (rich), a line every few
    seconds otherwise."""

    EVERY_S = 5.0

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None
        self._phase = ""
        self._total = self._done = 0
        self._started = self._said = 0.0

    def phase(self, name: str, total: int) -> None:
        self.close()
        self._phase, self._total, self._done = name, max(total, 0), 0
        self._started = self._said = time.monotonic()
        if self.tty:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TaskProgressColumn(), TextColumn("{task.fields[rate]} events/s"),
                                 TimeRemainingColumn(), transient=False)
            self._bar.start()
            self._task = self._bar.add_task(name, total=self._total or None, rate="-")

    def advance(self, n: int) -> None:
        self._done += n
        now = time.monotonic()
        rate = self._done / max(now - self._started, 1e-9)
        if self._bar is not None:
            self._bar.update(self._task, advance=n, rate=f"{rate:,.0f}")
        elif self.enabled and now - self._said >= self.EVERY_S:
            self._said = now
            left = (self._total - self._done) / rate if rate and self._total > self._done else 0
            print(f"{self._phase}: {self._done:,}/{self._total:,} events, {rate:,.0f} events/s, "
                  f"{left:,.0f} s left", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self.enabled and self._phase and self._done:
            took = time.monotonic() - self._started
            print(f"{self._phase}: {self._done:,} events in {took:,.1f} s "
                  f"({self._done / max(took, 1e-9):,.0f} events/s)", file=sys.stderr, flush=True)
        self._phase = ""


@dataclass
class Outcome:
    """What a replay did: ``ts_replays``' row, as the command prints it."""

    id: int
    mode: str
    status: str
    projections: list[str]
    events: int = 0
    refused: int = 0
    seconds: float = 0.0
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    settled: dict[str, Any] = field(default_factory=dict)  # the projections' last steps: facts
    notes: list[str] = field(default_factory=list)  # ... and sentences

    @property
    def equal(self) -> bool:
        return all(t["equal"] for t in self.tables.values() if "equal" in t)

    def report(self) -> dict[str, Any]:
        return {"events": self.events, "refused": self.refused, "seconds": round(self.seconds, 3),
                "tables": self.tables, **self.settled}


class Replay:
    def __init__(self, settings: Settings, registry: Sequence[type[Projection]], mode: str,
                 source: str = "archive", until: datetime | None = None,
                 progress: Progress | None = None):
        if source not in ("archive", "kafka"):
            raise ReplayError(f"unknown source {source!r}: archive or kafka")
        if until is not None and until.tzinfo is None:
            raise ReplayError("--until needs a time zone (for example 2026-12-01T00:00:00Z)")
        self.live = settings
        self.settings = settings.model_copy(update={"projection_schema": SHADOW})
        self.registry = list(registry)
        self.names = [p.name for p in self.registry]
        self.mode, self.source, self.until = mode, source, until
        self.progress = progress or Progress(enabled=False)
        self.projections = [cls.build(self.settings) for cls in self.registry]
        for p in self.projections:  # decided by the log's time, never by how long a chunk took
            if isinstance(getattr(p, "clock", None), Clock):
                p.clock.event_time = True
        self.outcome = Outcome(0, mode, "building", self.names)
        self.processor = ""
        self.topic = settings.log_topic
        self._committed: list[Any] = []  # the chunk's callbacks, run once it has committed

    # --- connections and bookkeeping ----------------------------------------------------------

    async def connect(self) -> psycopg.AsyncConnection:
        return await psycopg.AsyncConnection.connect(
            self.live.database_url, autocommit=True,
            options=f"-c search_path={SHADOW},public -c lock_timeout="
                    f"{int(self.live.lock_timeout_s * 1000)}")

    async def _positions(self, conn: psycopg.AsyncConnection, processor: str, topic: str,
                         lock: bool = False) -> dict[int, int]:
        cur = await conn.execute(
            'SELECT partition, "offset" FROM ts_tracking WHERE processor = %s AND topic = %s'
            + (" ORDER BY partition FOR UPDATE" if lock else ""), (processor, topic))
        return dict(await cur.fetchall())

    async def _save(self, conn: psycopg.AsyncConnection, topic: str, positions: dict[int, int]) -> None:
        await conn.execute(
            'INSERT INTO ts_tracking (processor, topic, partition, "offset") '
            "SELECT %s, %s, p, o FROM unnest(%s::int[], %s::bigint[]) AS v(p, o) "
            'ON CONFLICT (processor, topic, partition) DO UPDATE SET "offset" = excluded."offset", '
            "updated_at = now()", (self.processor, topic, list(positions), list(positions.values())))

    async def _begin(self, conn: psycopg.AsyncConnection) -> None:
        """Resume the replay in progress that matches this one, or start afresh."""
        cur = await conn.execute("SELECT * FROM ts_replays WHERE status = 'building' ORDER BY id",
                                 prepare=False)
        cur.row_factory = dict_row  # type: ignore[assignment]
        for row in await cur.fetchall():
            same = (row["mode"] == self.mode and sorted(row["projections"]) == sorted(self.names)
                    and row["source"] == self.source and row["until"] == self.until)
            if same:
                self.processor, self.outcome.id = row["processor"], row["id"]
                self.outcome.events = row["events"]
                if row["events"]:
                    print(f"replay {row['id']}: resuming ({row['events']:,} events folded before)",
                          file=sys.stderr)
                return
            if row["mode"] == "rollback":
                raise ReplayError("a rollback is in progress: run `touchstream replay --rollback` "
                                  "again to finish it")
            await conn.execute("UPDATE ts_replays SET status = 'abandoned', finished_at = now() "
                               "WHERE id = %s", (row["id"],))
        await self._clean(conn)
        async with conn.transaction():
            cur = await conn.execute(
                "INSERT INTO ts_replays (processor, projections, source, until, mode, status) "
                "VALUES ('', %s, %s, %s, %s, 'building') RETURNING id",
                (self.names, self.source, self.until, self.mode))
            self.outcome.id = (await cur.fetchone())[0]
            self.processor = f"replay:{self.outcome.id}"
            await conn.execute("UPDATE ts_replays SET processor = %s WHERE id = %s",
                               (self.processor, self.outcome.id))
            await self._make_shadow(conn)
            if self.source == "archive":
                await self._save(conn, ARCHIVE, {0: 0})
            else:
                await self._save(conn, self.topic, dict.fromkeys(range(self.live.partitions), -1))

    async def _make_shadow(self, conn: psycopg.AsyncConnection) -> None:
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SHADOW)))
        await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SHADOW)))
        await _ddl(conn, SHADOW, self.registry)

    async def _clean(self, conn: psycopg.AsyncConnection) -> None:
        """Drop what earlier replays left, but the de-duplication of the last swap (a rollback
        of it goes on from there)."""
        kept = await _last_swap(conn)
        keep = kept["processor"] if kept else ""
        await conn.execute("DELETE FROM ts_tracking WHERE processor LIKE 'replay:%%'")
        await conn.execute("DELETE FROM ts_processed_events WHERE processor LIKE 'replay:%%' "
                           "AND processor <> %s", (keep,))

    # --- folding -------------------------------------------------------------------------------

    async def _fold(self, conn: psycopg.AsyncConnection, batch: list[tuple[Any, int, int]]) -> None:
        """Fold (document or raw value, partition, offset) records into the shadow, in the
        caller's transaction; a record the live stage would refuse is counted and skipped."""
        readings = []
        for value, partition, offset in batch:
            try:
                event = orjson.loads(value) if isinstance(value, bytes | bytearray) else value
                if event["type"] in NOT_TOUCHPOINTS:
                    continue
                if self.until is not None and _occurred(event) > self.until:
                    continue
                readings.append(read(self.projections, event, partition, offset))
            except Exception:  # noqa: BLE001 - the live stage dead-letters these: so does a replay
                self.outcome.refused += 1
        if readings:
            applied = await project(conn, self.processor, self.projections, readings)
            self._committed.append(applied.committed)
        self.outcome.events += len(batch)

    async def _chunk(self, conn: psycopg.AsyncConnection, batch: list[tuple[Any, int, int]],
                     topic: str, positions: dict[int, int]) -> None:
        self._committed = []
        async with conn.transaction():
            await self._fold(conn, batch)
            for p in self.projections:  # what time alone changes, by the log's time
                await p.advance(conn)
            await self._save(conn, topic, positions)
            await conn.execute("UPDATE ts_replays SET events = %s WHERE id = %s",
                               (self.outcome.events, self.outcome.id))
        for committed in self._committed:  # the projections' caches take what was written
            committed()
        self.progress.advance(len(batch))

    async def _from_archive(self, conn: psycopg.AsyncConnection) -> None:
        """The archive, from the replay's position to its end; then the log from where the archive
        stops (what the archive stage had committed before the archive was read)."""
        if await self._positions(conn, self.processor, self.topic):
            return  # read already
        covered = await self._positions(conn, archive.STAGE, self.topic)
        start = (await self._positions(conn, self.processor, ARCHIVE)).get(0, 0)
        with archive.recorder(self.live.database_url) as r:
            last = await asyncio.to_thread(r.max_notification_id) or 0
            self.progress.phase(f"replay {self.outcome.id} from the archive", last - start)
            while True:
                found = await asyncio.to_thread(r.select_notifications, start + 1, CHUNK)
                if not found:
                    break
                batch = []
                for n in found:
                    e = archive.from_stored(n)
                    if e.topic == self.topic:
                        batch.append((e.event, e.partition, e.offset))
                start = found[-1].id
                await self._chunk(conn, batch, ARCHIVE, {0: start})
        self.progress.close()
        async with conn.transaction():
            await self._save(conn, self.topic, {p: covered.get(p, -1)
                                                for p in range(self.live.partitions)})

    async def _from_log(self, conn: psycopg.AsyncConnection, target: dict[int, int]) -> None:
        """The log from the replay's positions up to ``target`` (per partition, inclusive)."""
        at = await self._positions(conn, self.processor, self.topic)
        todo = {p: o for p, o in target.items() if o > at.get(p, -1)}
        if not todo:
            return
        ends = await topic_ends(self.live, self.topic)
        short = {p: (o, ends.get(p, -1)) for p, o in todo.items() if o > ends.get(p, -1)}
        if short:
            raise ReplayError(f"topic {self.topic} does not hold the positions to replay up to "
                              f"(partition: (position, end)): {short}; replay from the archive")
        self.progress.phase(f"replay {self.outcome.id} from {self.topic}",
                            sum(o - at.get(p, -1) for p, o in todo.items()))
        consumer = AIOKafkaConsumer(bootstrap_servers=self.live.kafka_bootstrap_servers,
                                    enable_auto_commit=False, max_partition_fetch_bytes=8 << 20,
                                    fetch_max_bytes=32 << 20)
        await consumer.start()
        try:
            tps = {p: TopicPartition(self.topic, p) for p in todo}
            consumer.assign(list(tps.values()))
            for p, tp in tps.items():
                consumer.seek(tp, at.get(p, -1) + 1)
            heard = time.monotonic()
            while todo:
                got = await consumer.getmany(timeout_ms=1000, max_records=CHUNK)
                batch: list[tuple[Any, int, int]] = []
                moved: dict[int, int] = {}
                for tp, records in got.items():
                    p = tp.partition
                    for r in records:
                        if p not in todo or r.offset > todo[p]:
                            break
                        batch.append((r.value if r.value is not None else b"", p, r.offset))
                        moved[p] = r.offset
                    if p in todo and moved.get(p, -1) >= todo[p]:
                        del todo[p]
                        consumer.pause(tp)
                if moved:
                    heard = time.monotonic()
                    await self._chunk(conn, batch, self.topic, moved)
                elif time.monotonic() - heard > STALL_S:
                    raise ReplayError(f"no record from {self.topic} for {STALL_S:.0f} s; "
                                      f"still to read (partition: last offset): {todo}")
        finally:
            await consumer.stop()
            self.progress.close()

    # --- comparing and swapping ---------------------------------------------------------------

    async def _settle(self, conn: psycopg.AsyncConnection, now: datetime) -> None:
        """Each projection's last step (``Projection.settle``), its facts and sentences reported."""
        for p in self.projections:
            settled = await p.settle(conn, now, SHADOW, self.live)
            self.outcome.settled.update(settled.facts)
            self.outcome.notes += settled.lines
        await conn.execute("SELECT set_config('search_path', %s, true)", (f"{SHADOW}, public",))

    async def _compare(self, conn: psycopg.AsyncConnection, counts_only: bool = False) -> None:
        for cls in self.registry:
            for table in cls.tables:
                skip = ("*",) if counts_only else cls.unstable.get(table, ())
                self.outcome.tables[table] = await compare(conn, table, "public", SHADOW, skip)

    async def _swap(self, conn: psycopg.AsyncConnection) -> None:
        """The shadow's tables in, the live ones to ``ts_previous``; the views made again over
        the tables now in place (a view follows a table it reads wherever it moves)."""
        moved = [t for cls in self.registry for t in cls.tables]
        await _lock_all(conn, [*moved, *(t for cls in self.registry for t in cls.swap_locks)])
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(PREVIOUS)))
        await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(PREVIOUS)))
        for cls in self.registry:
            for table in cls.tables:
                await conn.execute(sql.SQL("ALTER TABLE public.{} SET SCHEMA {}").format(
                    sql.Identifier(table), sql.Identifier(PREVIOUS)))
                await conn.execute(sql.SQL("ALTER TABLE {}.{} SET SCHEMA public").format(
                    sql.Identifier(SHADOW), sql.Identifier(table)))
        await _ddl(conn, "public", REGISTRY)
        await conn.execute("UPDATE ts_tracking SET epoch = epoch + 1 WHERE processor = %s", (LIVE,))
        for p in self.projections:  # their live readers: what is in place now
            await p.swapped(conn)

    async def _finish(self, conn: psycopg.AsyncConnection, status: str,
                      positions: dict[int, int] | None = None) -> None:
        self.outcome.status = status
        await conn.execute(
            "UPDATE ts_replays SET status = %s, finished_at = now(), events = %s, positions = %s, "
            "report = %s WHERE id = %s",
            (status, self.outcome.events, Jsonb({str(p): o for p, o in (positions or {}).items()}),
             Jsonb(self.outcome.report()), self.outcome.id))

    async def run(self) -> Outcome:
        started = time.monotonic()
        conn = await self.connect()
        try:
            store.migrate(self.live.database_url)  # idempotent: the tables a replay needs
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK,))
            if not (await cur.fetchone())[0]:
                raise ReplayError("another replay is running (they share schema ts_replay); "
                                  "wait for it, or stop it and run this one again")
            await self._begin(conn)
            if self.source == "archive":
                await self._from_archive(conn)
            if self.until is not None:  # a picture of the past: built, never swapped
                await self._from_log(conn, await topic_ends(self.live, self.topic))
                async with conn.transaction():
                    await self._compare(conn, counts_only=True)  # the live tables are of today
                    self.outcome.seconds = time.monotonic() - started
                    await self._finish(conn, "built")
                return self.outcome
            for _ in range(20):  # close in on the live stage without holding it up
                target = await self._positions(conn, LIVE, self.topic)
                at = await self._positions(conn, self.processor, self.topic)
                if sum(max(o - at.get(p, -1), 0) for p, o in target.items()) <= CLOSE:
                    break
                await self._from_log(conn, target)
            status, positions = await self._settle_and_swap(conn)
            self.outcome.seconds = time.monotonic() - started
            async with conn.transaction():
                await self._finish(conn, status, positions)
            if self.mode == "verify":
                await self._discard(conn)
            else:
                await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(SHADOW)))
                await conn.execute("DELETE FROM ts_processed_events WHERE processor LIKE "
                                   "'replay:%%' AND processor <> %s", (self.processor,))
            return self.outcome
        finally:
            self.progress.close()
            await conn.close()

    async def _settle_and_swap(self, conn: psycopg.AsyncConnection) -> tuple[str, dict[int, int]]:
        """Under the live stage's position locks: the last events, the comparison, the swap."""
        async with conn.transaction():
            target = await self._positions(conn, LIVE, self.topic, lock=True)
            await self._from_log(conn, target)  # its chunks: savepoints of this transaction
            await self._settle(conn, datetime.now(UTC))
            await self._compare(conn)
            if self.mode == "verify":
                return ("equal" if self.outcome.equal else "drifted"), target
            await self._swap(conn)
            return "swapped", target

    async def _discard(self, conn: psycopg.AsyncConnection) -> None:
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SHADOW)))
        await conn.execute("DELETE FROM ts_processed_events WHERE processor = %s", (self.processor,))
        await conn.execute("DELETE FROM ts_tracking WHERE processor = %s", (self.processor,))


async def _lock_all(conn: psycopg.AsyncConnection, tables: list[str]) -> None:
    """Every live table a swap moves, locked at once before the first moves. A reader (a
    request, a job) may hold one table while it waits for another; taking them one by one in
    another order would be a deadlock that PostgreSQL ends by failing the reader. A try that
    cannot have them all within LOCK_TRY_S gives back what it took and tries again."""
    names = sql.SQL(", ").join(sql.SQL("public.{}").format(sql.Identifier(t)) for t in tables)
    cur = await conn.execute("SELECT current_setting('lock_timeout')")
    usual = (await cur.fetchone())[0]
    for attempt in range(LOCK_TRIES):
        try:
            async with conn.transaction():  # a savepoint: a failed try gives its locks back
                await conn.execute("SELECT set_config('lock_timeout', %s, true)",
                                   (f"{int(LOCK_TRY_S * 1000)}ms",))
                await conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(names))
            await conn.execute("SELECT set_config('lock_timeout', %s, true)", (usual,))
            return
        except psycopg.errors.LockNotAvailable:
            await asyncio.sleep(LOCK_TRY_S * (1 + attempt % 3))
    raise ReplayError(f"could not lock the live tables for the swap in {LOCK_TRIES} tries; "
                      "run the replay again")


async def _last_swap(conn: psycopg.AsyncConnection) -> dict[str, Any] | None:
    cur = await conn.execute("SELECT * FROM ts_replays WHERE status = 'swapped' ORDER BY id DESC "
                             "LIMIT 1", prepare=False)
    cur.row_factory = dict_row  # type: ignore[assignment]
    return await cur.fetchone()  # type: ignore[return-value]


async def _ddl(conn: psycopg.AsyncConnection, schema: str,
               registry: Sequence[type[Projection]]) -> None:
    """The projections' tables and views in ``schema`` (which must exist), in this transaction."""
    await conn.execute("SELECT set_config('search_path', %s, true)", (f'"{schema}", public',))
    for cls in registry:
        await conn.execute(cls.ddl)
    await conn.execute("SELECT set_config('search_path', %s, true)", (f"{SHADOW}, public",))


def _occurred(event: dict[str, Any]) -> datetime:
    at = datetime.fromisoformat(event["occurred_at"])
    if at.tzinfo is None:
        raise ValueError("occurred_at without a time zone")
    return at


async def compare(conn: psycopg.AsyncConnection, table: str, a: str, b: str,
                  skip: Sequence[str] = ()) -> dict[str, Any]:
    """Row counts of ``table`` in schemas ``a`` and ``b`` and, unless it is a history
    (``skip == ("*",)``), a checksum of the content of its columns but ``skip`` (json as jsonb,
    so that equal documents compare equal: the sum of the rows' MD5s, cut to 64 bits, which needs
    no sort), and the first rows found on one side only."""
    out: dict[str, Any] = {}
    for name, schema in (("live", a), ("rebuilt", b)):
        cur = await conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)))
        out[name] = {"rows": (await cur.fetchone())[0]}
    if tuple(skip) == ("*",):
        return out
    cur = await conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = format('%%I.%%I', %s::text, %s::text)::regclass AND a.attnum > 0 "
        "AND NOT a.attisdropped ORDER BY a.attnum", (a, table))
    columns = [(c, t) for c, t in await cur.fetchall() if c not in skip]
    row = sql.SQL("ROW({})::text").format(sql.SQL(", ").join(
        sql.SQL("{}::jsonb").format(sql.Identifier(c)) if t == "json" else sql.Identifier(c)
        for c, t in columns))
    for name, schema in (("live", a), ("rebuilt", b)):
        cur = await conn.execute(sql.SQL(
            "SELECT coalesce(sum(('x' || left(md5(r), 16))::bit(64)::bigint::numeric), 0)::text "
            "FROM (SELECT {} AS r FROM {}.{}) s").format(row, sql.Identifier(schema),
                                                         sql.Identifier(table)))
        out[name]["checksum"] = (await cur.fetchone())[0]
    out["equal"] = out["live"] == out["rebuilt"]
    if not out["equal"]:
        cur = await conn.execute(sql.SQL(
            "(SELECT 'live only' AS side, r FROM ((SELECT {row} AS r FROM {a}.{t}) EXCEPT "
            "(SELECT {row} FROM {b}.{t})) x ORDER BY r LIMIT {n}) UNION ALL "
            "(SELECT 'rebuilt only', r FROM ((SELECT {row} AS r FROM {b}.{t}) EXCEPT "
            "(SELECT {row} FROM {a}.{t})) y ORDER BY r LIMIT {n})").format(
            row=row, a=sql.Identifier(a), b=sql.Identifier(b), t=sql.Identifier(table),
            n=sql.Literal(DIFFERENCES)))
        out["differences"] = [f"{side}: {r}" for side, r in await cur.fetchall()]
    return out


async def rollback(settings: Settings, name: str, progress: Progress | None = None) -> Outcome:
    """Put back the tables the last swap replaced (``name``: one of the projections it swapped,
    or all): they are caught up from where the swap left them, compared and swapped in again."""
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
        building = await conn.execute("SELECT projections FROM ts_replays WHERE status = 'building' "
                                      "AND mode = 'rollback'")
        resuming = await building.fetchone()
        last = await _last_swap(conn)
    if resuming is not None:
        names = list(resuming[0])
    elif last is None:
        raise ReplayError("no replay has swapped tables: nothing to roll back")
    else:
        names = list(last["projections"])
    if name != "all" and name not in names:
        raise ReplayError(f"the last swap replaced {', '.join(names)}, not {name}")
    registry = [p for p in REGISTRY if p.name in names]
    replay = Replay(settings, registry, "rollback", "kafka", None, progress)
    if resuming is None:
        assert last is not None
        await _restore(replay, last)
    return await replay.run()


async def _restore(replay: Replay, swap: dict[str, Any]) -> None:
    """Set a rollback up: the previous tables in the shadow, at the positions the swap left them,
    with the de-duplication of the replay that swapped (the same events up to there)."""
    async with await replay.connect() as conn, conn.transaction():
        tables = [t for cls in replay.registry for t in cls.tables]
        cur = await conn.execute("SELECT count(*) FROM information_schema.tables WHERE "
                                 "table_schema = %s AND table_name = ANY(%s)", (PREVIOUS, tables))
        if (await cur.fetchone())[0] != len(tables):
            raise ReplayError(f"schema {PREVIOUS} does not hold the previous tables {tables}")
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SHADOW)))
        await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SHADOW)))
        for t in tables:
            await conn.execute(sql.SQL("ALTER TABLE {}.{} SET SCHEMA {}").format(
                sql.Identifier(PREVIOUS), sql.Identifier(t), sql.Identifier(SHADOW)))
        await _ddl(conn, SHADOW, replay.registry)
        await conn.execute("UPDATE ts_replays SET status = 'abandoned', finished_at = now() "
                           "WHERE status = 'building'")
        cur = await conn.execute(
            "INSERT INTO ts_replays (processor, projections, source, mode, status) "
            "VALUES (%s, %s, 'kafka', 'rollback', 'building') RETURNING id",
            (swap["processor"], replay.names))
        replay.outcome.id = (await cur.fetchone())[0]
        replay.processor = swap["processor"]
        await conn.execute("DELETE FROM ts_tracking WHERE processor = %s", (replay.processor,))
        await replay._save(conn, replay.topic, {int(p): o for p, o in swap["positions"].items()})


def describe(outcome: Outcome) -> str:
    """The outcome as the command prints it."""
    lines = [f"replay {outcome.id} ({outcome.mode}, {', '.join(outcome.projections)}): "
             f"{outcome.status}; {outcome.events:,} events folded in {outcome.seconds:,.1f} s"
             + (f" ({outcome.events / outcome.seconds:,.0f} events/s)" if outcome.seconds else "")
             + (f", {outcome.refused:,} refused as the live stage refuses them" if outcome.refused else "")]
    for table, t in outcome.tables.items():
        counts = f"live {t['live']['rows']:,} rows, rebuilt {t['rebuilt']['rows']:,}"
        if "equal" not in t:
            lines.append(f"  {table}: {counts} (counts only)")
        elif t["equal"]:
            lines.append(f"  {table}: {counts}, equal (checksum {t['rebuilt']['checksum']})")
        else:
            lines.append(f"  {table}: {counts}, DIFFERENT; first differences:")
            lines += [f"    {d[:300]}" for d in t.get("differences", [])]
    lines += [f"  {note}" for note in outcome.notes]
    if outcome.status == "swapped":
        lines.append(f"  the replaced tables are in schema {PREVIOUS}: "
                     f"touchstream replay --rollback {outcome.projections[-1]} puts them back")
    return "\n".join(lines)


def main(settings: Settings, projection: str, source: str, until: str | None, verify: bool,
         rollback_: bool, quiet: bool = False) -> int:
    """``touchstream replay``; the exit status (1: a verification found drift)."""
    progress = Progress(enabled=not quiet)
    try:
        from services.infra import attach  # noqa: PLC0415 - the command's, not the module's

        try:
            settings = attach(settings)
        except LookupError as exc:
            raise ReplayError(str(exc)) from None
        if rollback_:
            outcome = asyncio.run(rollback(settings, projection, progress))
        else:
            at = None
            if until:
                try:
                    at = datetime.fromisoformat(until)
                except ValueError as exc:
                    raise ReplayError(f"--until {until!r}: not an ISO 8601 time ({exc})") from exc
            outcome = asyncio.run(Replay(settings, closure([projection]),
                                         "verify" if verify else "replay", source, at,
                                         progress).run())
    except ReplayError as exc:
        print(f"touchstream replay: {exc}", file=sys.stderr)
        return 2
    print(describe(outcome))
    return 1 if outcome.status == "drifted" else 0
