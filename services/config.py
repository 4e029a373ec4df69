"""One Settings object, read from the environment (prefix-free names, as operators expect)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
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

    # Customer value (projections/value). Amounts are converted to one currency at fixed rates
    # (units of value_currency per unit of each currency); orders in a currency without a rate
    # count in the ledger but not in value, and the explanation lists them.
    value_currency: str = "EUR"
    value_rates: dict[str, float] = {"EUR": 1.0, "GBP": 1.17, "USD": 0.92}
    # Expected lifetime value: horizon and annual discount rate.
    value_horizon_weeks: float = Field(52.0, gt=0, le=520)
    value_discount_rate: float = Field(0.10, ge=0, lt=1)
    # The value pyramid: tiers from the top, each the share of ranked customers it takes; the
    # last takes the rest. Ranked by expected lifetime value ("clv") or by the value of the
    # trailing 12 months ("trailing_12m").
    value_tiers: dict[str, float] = {"platinum": 0.01, "gold": 0.04, "silver": 0.15, "bronze": 0.80}
    value_rank_by: str = Field("clv", pattern=r"^(clv|trailing_12m)$")
    # Lifecycle: a customer is at risk after this many days without a purchase, or when P(alive)
    # falls below value_at_risk_p_alive; lapsed after value_lapsed_days; won back by an order
    # after a lapse.
    value_at_risk_days: float = Field(60.0, gt=0)
    value_lapsed_days: float = Field(120.0, gt=0)
    value_at_risk_p_alive: float = Field(0.3, ge=0, le=1)
    # Schedules of the projection worker: tier thresholds recomputed, models refitted on the
    # order ledger (0: never; the first fit happens once value_min_customers have bought),
    # customers whose stage changes with time re-examined.
    value_thresholds_every_s: float = Field(600.0, gt=0)
    value_refit_every_h: float = Field(24.0, ge=0)
    value_min_customers: int = Field(50, ge=10)
    value_sweep_every_s: float = Field(5.0, gt=0)

    # Churn alerts (projections/alerts/rules.py has the rules). An inbound contact is answered
    # within the service level of the customer's tier (hours); a complaint of these severities
    # alerts while open, N complaints within a window alert, and a complaint open past its
    # severity's service level (hours); silence is k times the customer's own gap between
    # purchase days; the model rule watches P(alive) of customers at or above a tier; CSAT and
    # NPS at or below these scores are dissatisfied; engagement below this share of the
    # customer's own weekly baseline has dropped. An episodic alert (model, engagement) fires
    # once per customer within the suppression window; a condition that began to hold more than
    # alert_stale_days ago is history, not news.
    alert_answer_within_h: dict[str, float] = {"platinum": 2.0, "gold": 4.0, "silver": 12.0,
                                               "bronze": 24.0, "unranked": 48.0, "prospect": 48.0}
    alert_complaint_severities: list[str] = ["high", "critical"]
    alert_complaints_n: int = Field(3, ge=2)
    alert_complaints_window_days: float = Field(30.0, gt=0)
    alert_complaint_open_h: dict[str, float] = {"low": 168.0, "medium": 72.0, "high": 24.0,
                                                "critical": 8.0}
    alert_silence_k: float = Field(3.0, gt=1)
    alert_model_p_alive: float = Field(0.3, ge=0, le=1)
    alert_model_min_tier: str = "gold"
    alert_csat_max: int = Field(2, ge=1, le=5)
    alert_nps_max: int = Field(6, ge=0, le=10)
    alert_engagement_ratio: float = Field(0.3, gt=0, lt=1)
    alert_suppress_h: float = Field(168.0, ge=0)
    alert_stale_days: float = Field(30.0, gt=0)
    # How often the alert timer looks for conditions that time alone makes hold; how long the
    # alert log (the positions of the live stream) is kept; a stream client's queue, beyond which
    # it is told to reconnect from its last position; heartbeats on an idle stream.
    alert_timer_every_s: float = Field(1.0, gt=0)
    alert_log_retention_h: float = Field(168.0, gt=0)
    alert_stream_queue: int = Field(1000, ge=10)
    alert_heartbeat_s: float = Field(10.0, gt=0)
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    # A positive value makes workers yield the CPU to the API on a shared machine. 0 by default:
    # accepted events then wait behind the requests, and freshness lost far more than the API
    # gained (BENCHMARKS.md).
    worker_nice: int = Field(0, ge=0, le=19)

    @model_validator(mode="after")
    def _value_rules(self) -> Settings:
        shares = list(self.value_tiers.values())
        if not shares or any(not 0 < v <= 1 for v in shares) or sum(shares) > 1 + 1e-9:
            raise ValueError("value_tiers: each share in (0, 1], together at most 1")
        if "prospect" in self.value_tiers:
            raise ValueError("value_tiers: prospect is the tier of customers without an order")
        if self.value_lapsed_days <= self.value_at_risk_days:
            raise ValueError("value_lapsed_days must exceed value_at_risk_days")
        if self.value_currency not in self.value_rates or any(r <= 0 for r in self.value_rates.values()):
            raise ValueError("value_rates: positive rates, value_currency among them")
        tiers = (*self.value_tiers, "unranked", "prospect")
        if self.alert_model_min_tier not in tiers:
            raise ValueError(f"alert_model_min_tier: one of {', '.join(tiers)}")
        if set(self.alert_answer_within_h) - set(tiers) or any(
                h <= 0 for h in self.alert_answer_within_h.values()):
            raise ValueError(f"alert_answer_within_h: positive hours for tiers among {', '.join(tiers)}")
        severities = ("low", "medium", "high", "critical")
        if set(self.alert_complaint_severities) - set(severities) or \
                set(self.alert_complaint_open_h) - set(severities):
            raise ValueError(f"alert complaint severities: among {', '.join(severities)}")
        return self

    @property
    def alerts_topic(self) -> str:
        return self.topic("alerts")

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

    @property
    def customer_changes_topic(self) -> str:
        return self.topic("customer-changes")

    def group(self, processor: str) -> str:
        return f"{self.consumer_group_prefix}.{processor}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
