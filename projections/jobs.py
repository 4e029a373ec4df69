"""What a projection runs beside its batches (``Background``), in a process of its own beside
each projection worker (``spawn``, ``run_process``): the jobs' Python would otherwise hold the
batches' event loop, and a projection worker and its database use about one core between them.

The worker and its jobs share a ``Clock`` through shared memory: the time the jobs work at, and
a count of batches that committed changes, which wakes the jobs' relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from projections.clock import Clock
from services.kafka import producer as new_producer

STOP_S = 10.0  # for a jobs process to finish what it does, then it is killed
WATCH_S = 0.05  # how often a jobs process looks at its clock and its parent


class Background:
    """Jobs that run in loops, each on a connection of its own, reconnecting after failures
    (``_loop``); ``start`` creates the loops."""

    name = "jobs"

    def __init__(self, settings: Any, producer: Any, clock: Clock | None = None):
        self.settings = settings
        self.producer = producer
        self.clock = clock or Clock()
        self.log = logging.getLogger(f"touchstream.{self.name}")
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        raise NotImplementedError

    def changed(self) -> None:
        """A batch committed changes: wake the relay."""
        self._wake.set()

    async def stop(self) -> None:
        """Cancel the jobs and wait for them. A cancellation can be lost when it lands in the same
        turn as a completed wait (``asyncio.wait_for`` before 3.12), so it is repeated until the
        task is done."""
        for t in self._tasks:
            while not t.done():
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait({t}, timeout=0.5)
        self._tasks = []

    async def connect(self, autocommit: bool = True) -> psycopg.AsyncConnection:
        s = self.settings
        return await psycopg.AsyncConnection.connect(
            s.database_url, autocommit=autocommit,
            options=f"-c search_path={s.projection_schema},public "
                    f"-c lock_timeout={int(s.lock_timeout_s * 1000)} "
                    f"-c idle_in_transaction_session_timeout={int(s.idle_in_transaction_s * 1000)}")

    async def _loop(self, name: str, job: Callable[[psycopg.AsyncConnection], Awaitable[Any]],
                    every_s: float, wake: asyncio.Event | None = None) -> None:
        """Run ``job(conn)`` every ``every_s`` (or when woken), reconnecting after failures."""
        conn: psycopg.AsyncConnection | None = None
        while True:
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = await self.connect()
                await job(conn)
            except asyncio.CancelledError:
                if conn is not None:
                    await conn.close()
                raise
            except Exception:  # noqa: BLE001 - a job retries after any failure; the batches go on
                self.log.exception("%s %s failed; retrying", self.name, name)
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
                conn = None
            if wake is None:
                await asyncio.sleep(every_s)
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(every_s):
                        await wake.wait()
                wake.clear()


def quiet_collector() -> None:
    """For a process that holds a batch at a time (workers, jobs). The collector's young
    generation counts container objects alive, not allocated: a batch holds hundreds of
    thousands (decoded records, readings, rows), so at 50,000 each batch set off several
    collections, each tracing the whole batch for cycles it does not have (its objects are freed
    by reference counting). Collect only when a million more are alive for good; what start-up
    loaded is frozen out of every collection."""
    gc.freeze()
    gc.set_threshold(1_000_000, 20, 100)


def spawn(settings: Any, clock: Clock, jobs_class: type[Background]) -> Any:
    """A started process running ``jobs_class`` for this worker (``run_process``)."""
    ctx = multiprocessing.get_context("spawn")
    process = ctx.Process(
        target=run_process, name=f"touchstream-{jobs_class.name}-jobs", daemon=True,
        args=(settings, clock.cells, os.getpid(),
              logging.getLevelName(logging.getLogger().getEffectiveLevel()), jobs_class))
    process.start()
    return process


async def halt(process: Any) -> None:
    """Stop a process ``spawn`` started: terminated, then killed after STOP_S."""
    if process is None:
        return
    process.terminate()
    await asyncio.to_thread(process.join, STOP_S)
    if process.is_alive():
        process.kill()
        await asyncio.to_thread(process.join)


def run_process(settings: Any, cells: Any, parent: int, loglevel: str,
                jobs_class: type[Background]) -> None:
    """The jobs of one projection worker, in their own process. It stops on SIGTERM or SIGINT,
    and when its worker is gone (even killed: the parent changes)."""
    logging.basicConfig(level=loglevel, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("kafka", "aiokafka"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    quiet_collector()  # a recomputation holds every buyer's row at once
    asyncio.run(_serve(settings, Clock(cells), parent, jobs_class))


async def _serve(settings: Any, clock: Clock, parent: int, jobs_class: type[Background]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    producer = new_producer(settings, f"touchstream-{jobs_class.name}-jobs")
    await producer.start()
    jobs = jobs_class(settings, producer, clock)
    jobs.start()
    seen = clock.changes
    try:
        while not stop.is_set() and os.getppid() == parent:
            if clock.changes != seen:  # a batch committed changes: the relay publishes them
                seen = clock.changes
                jobs.changed()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WATCH_S):
                    await stop.wait()
    finally:
        await jobs.stop()
        await producer.stop()
