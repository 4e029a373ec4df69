"""Prometheus metrics, shared by every process (multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ACCEPTED = Counter("touchstream_events_accepted_total", "Events accepted by a door", ["door"])
REJECTED = Counter("touchstream_events_rejected_total", "Events refused by a door", ["door", "reason"])
DEAD_LETTERED = Counter("touchstream_events_dead_lettered_total",
                        "Records sent to the DLQ (invalid or poison)",
                        ["stage"])
PROCESSED = Counter("touchstream_events_processed_total", "Records whose effects were committed",
                    ["processor"])
DUPLICATES = Counter("touchstream_events_duplicate_total", "Events skipped as already processed",
                     ["processor"])
BATCH_SECONDS = Histogram("touchstream_batch_seconds", "Time to process and commit one batch",
                          ["processor"],
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
LAG = Gauge("touchstream_consumer_lag", "High watermark minus position (from fetch responses)",
            ["processor", "partition"], multiprocess_mode="livemax")
QUARANTINED = Counter("touchstream_records_quarantined_total",
                      "Records a stage's write path failed on alone, sent to the DLQ (poison)",
                      ["stage"])
RESEEKS = Counter("touchstream_reseeks_total",
                  "Times a processor went back to its tracked positions (a batch out of place, "
                  "a failed assignment, an unexpected failure)", ["processor"])
CHANGES_PUBLISHED = Counter("touchstream_customer_changes_published_total",
                            "Tier and stage changes published on customer-changes")
ALERTS_PUBLISHED = Counter("touchstream_alert_events_published_total",
                           "Alert lifecycle events published on alerts")
