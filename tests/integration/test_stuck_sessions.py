"""A worker frozen while PostgreSQL sends it a result keeps its locks past every timeout: the
server acts on a cancel (statement, transaction timeout) only between messages, and the session
waits in its write to a client that no longer reads. The runtime ends such sessions when it
finds a lock it needs taken (``BatchProcessor._end_stuck_sessions``)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap

import psycopg

from services.processors.projector import ProjectionStage
from services.processors.runtime import BatchProcessor
from tests.conftest import eventually

# a client that locks a row, sends a query whose result is far larger than a socket's buffers,
# and freezes itself (SIGSTOP) before it reads any of it
CLIENT = textwrap.dedent("""
    import os, signal, sys, psycopg
    with psycopg.connect(sys.argv[1], options="-c transaction_timeout=1000") as conn:
        conn.execute("SELECT * FROM stuck_lock WHERE id = 1 FOR UPDATE")
        conn.pgconn.send_query(b"SELECT repeat('x', 1000) FROM generate_series(1, 100000)")
        print("locked", conn.info.backend_pid, flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)
""")


async def _session(settings, pid: int) -> dict | None:
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as c:
        cur = await c.execute("SELECT state, wait_event FROM pg_stat_activity WHERE pid = %s", (pid,))
        row = await cur.fetchone()
    return None if row is None else {"state": row[0], "wait_event": row[1]}


async def test_a_session_stuck_writing_to_a_frozen_client_is_ended_and_its_lock_freed(settings):
    settings = settings.model_copy(update={"transaction_timeout_s": 1.0, "lock_timeout_s": 1.0})
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as c:
        await c.execute("CREATE TABLE stuck_lock (id int PRIMARY KEY); INSERT INTO stuck_lock VALUES (1)")
    client = subprocess.Popen([sys.executable, "-c", CLIENT, settings.database_url],
                              stdout=subprocess.PIPE, text=True)
    try:
        line = await asyncio.to_thread(client.stdout.readline)
        assert line.startswith("locked"), line
        pid = int(line.split()[1])  # the client has stopped itself: it reads no result

        async def writing() -> bool:
            s = await _session(settings, pid)
            return s is not None and s["wait_event"] == "ClientWrite"
        await eventually(writing, timeout_s=30)
        await asyncio.sleep(3)  # three times its transaction timeout
        assert await writing(), "the server ended it by itself: nothing to do here"

        # a batch waiting for that lock times out; the runtime ends the stuck session
        worker = BatchProcessor(settings, ProjectionStage(settings))
        try:
            await worker._end_stuck_sessions()
        finally:
            if worker._conn is not None:
                await worker._conn.close()

        async def gone() -> bool:
            return await _session(settings, pid) is None
        await eventually(gone, timeout_s=30)
        async with await psycopg.AsyncConnection.connect(
                settings.database_url, autocommit=True, options="-c lock_timeout=2000") as c, c.transaction():
            await c.execute("SELECT * FROM stuck_lock WHERE id = 1 FOR UPDATE")  # free again
    finally:
        client.send_signal(signal.SIGCONT)
        client.kill()
        client.wait(10)
