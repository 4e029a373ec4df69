"""Broker and database, embedded or configured, started and stopped in one place."""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services.config import Settings
from services.infra.broker import EmbeddedBroker
from services.infra.database import EmbeddedDatabase
from services.infra.topics import ensure_topics

log = logging.getLogger(__name__)
SERVERS = "servers.json"  # under STATE_DIR while embedded servers run: where they listen


class Infra:
    """Resolves where the broker and database are; starts embedded ones only when unconfigured."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.broker: EmbeddedBroker | None = None
        self.database: EmbeddedDatabase | None = None

    def start(self) -> Settings:
        """Start what is not configured, create the topics and tables; on any failure, stop
        what this call started (a failed migration used to leave the embedded broker running)."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> Settings:
        s = self.settings
        updates: dict[str, str] = {}
        if not s.kafka_bootstrap_servers:
            self.broker = EmbeddedBroker(s.state_dir).start()
            updates["kafka_bootstrap_servers"] = self.broker.bootstrap_servers
        if not s.database_url:
            self.database = EmbeddedDatabase(s.state_dir).start()
            updates["database_url"] = self.database.url
        if not s.signing_key:
            updates["signing_key"] = local_secret(Path(s.state_dir, "signing.key"))
        self.settings = s.model_copy(update=updates)
        if self.broker or self.database:
            self._announce()
        ensure_topics(self.settings)
        from services import archive
        from services.store import forget_positions, migrate

        migrate(self.settings.database_url, self.settings.projection_schema)
        if archive.behind(self.settings):
            # The log lost what the archive holds (the embedded broker keeps nothing across a
            # restart): write it again from the archive. Positions tracked against the lost log
            # mean nothing now; the stages read the log again from its start and skip what they
            # already applied (event_id de-duplication).
            started = time.monotonic()
            n = archive.refill(self.settings)
            log.info("refilled %s with %s archived events in %.1f s", self.settings.log_topic, n,
                     time.monotonic() - started)
            forget_positions(self.settings.database_url)
        elif self.broker:
            forget_positions(self.settings.database_url)  # a new embedded log, nothing archived
        return self.settings

    def child_env(self) -> dict[str, str]:
        """Environment for child processes: they use what we started and start nothing."""
        return {**os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": self.settings.kafka_bootstrap_servers,
                "DATABASE_URL": self.settings.database_url,
                "SIGNING_KEY": self.settings.signing_key}

    def _announce(self) -> None:
        """Say where the embedded servers listen, for commands run beside (``attach``)."""
        path = Path(self.settings.state_dir, SERVERS)
        path.write_text(json.dumps({"pid": os.getpid(),
                                    "kafka_bootstrap_servers": self.settings.kafka_bootstrap_servers,
                                    "database_url": self.settings.database_url}))

    def stop(self) -> None:
        if self.broker or self.database:
            Path(self.settings.state_dir, SERVERS).unlink(missing_ok=True)
        if self.broker:
            self.broker.stop()
            self.broker = None
        if self.database:
            self.database.stop()
            self.database = None


def attach(settings: Settings) -> Settings:
    """``settings`` with the broker and database of the platform ``make run`` runs under
    STATE_DIR where they are not configured; raises ``LookupError`` when none runs."""
    if settings.kafka_bootstrap_servers and settings.database_url:
        return settings
    path = Path(settings.state_dir, SERVERS)
    try:
        found = json.loads(path.read_text())
        os.kill(found["pid"], 0)
    except (OSError, ValueError, KeyError):
        raise LookupError(f"no running platform under {Path(settings.state_dir).resolve()}: start "
                          "`make run`, or set KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL") from None
    return settings.model_copy(update={
        "kafka_bootstrap_servers": settings.kafka_bootstrap_servers or found["kafka_bootstrap_servers"],
        "database_url": settings.database_url or found["database_url"]})


def local_secret(path: Path) -> str:
    """The secret kept in ``path`` (readable by its owner only), made on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


@contextmanager
def running(settings: Settings) -> Iterator[Infra]:
    infra = Infra(settings)
    try:
        infra.start()
        yield infra
    finally:
        infra.stop()
