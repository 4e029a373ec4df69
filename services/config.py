"""One Settings object, read from the environment (prefix-free names, as operators expect)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Where things run. Empty means: start the embedded server under state_dir.
    kafka_bootstrap_servers: str = ""
    database_url: str = ""
    state_dir: Path = Path(".touchstream")

    # Topics.
    topic_prefix: str = ""
    partitions: int = Field(6, ge=1)
    replication_factor: int = Field(1, ge=1)

    # Doors.
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    api_workers: int = Field(2, ge=1)
    batch_max_events: int = Field(1000, ge=1)
    max_body_bytes: int = Field(5_000_000, ge=1024)
    produce_timeout_s: float = 10.0
    # The secret our doors seal validated records with (services/wire.py); the identity stage
    # validates in full every record without a seal it can verify. Empty: no seals. The
    # embedded platform makes one under state_dir.
    signing_key: str = Field("", repr=False)

    # Processors.
    consumer_group_prefix: str = "touchstream"
    batch_max_records: int = Field(5000, ge=1)
    batch_timeout_ms: int = Field(100, ge=1)
    # Profiles a projection worker keeps after writing them, so that the next batch need not read
    # them back. The worker's memory grows with it (a state document's size: BENCHMARKS.md).
    profile_cache_size: int = Field(100_000, ge=0)
    # The schema the projections' tables live in (a rebuild can fill another one).
    projection_schema: str = Field("public", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    # How long the change feed (ts_changes) keeps what each batch changed.
    changes_retention_hours: float = Field(24.0, gt=0)
    # A worker's transaction idle this long (a frozen process) is ended by PostgreSQL, releasing
    # its locks; above produce_timeout_s, the longest wait for the broker inside a transaction.
    idle_in_transaction_s: float = Field(30.0, gt=0)
    # ... and one whose transaction lasts this long in all (PostgreSQL 17 and later).
    transaction_timeout_s: float = Field(120.0, gt=0)
    # The longest a worker waits for another's locks before retrying (its heartbeat goes on).
    lock_timeout_s: float = Field(10.0, gt=0)
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    # A positive value makes workers yield the CPU to the API on a shared machine. 0 by default:
    # accepted events then wait behind the requests, and freshness lost far more than the API
    # gained (BENCHMARKS.md).
    worker_nice: int = Field(0, ge=0, le=19)

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def raw_topic(self) -> str:
        return self.topic("touchpoints.raw")

    @property
    def log_topic(self) -> str:
        return self.topic("touchpoints")

    @property
    def dlq_topic(self) -> str:
        return self.topic("touchpoints.dlq")

    def group(self, processor: str) -> str:
        return f"{self.consumer_group_prefix}.{processor}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
