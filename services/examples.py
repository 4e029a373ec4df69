"""What `touchstream run` publishes and prints: the sample, then example requests for a customer
the sample really holds (found by e-mail once the workers have projected that customer)."""

from __future__ import annotations

import json
import shlex
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from events.envelope import normalise_email

UNKNOWN_ID = "<customer_id from the lookup>"


def publish_sample(base_url: str, customers: int, events: int, seed: int) -> dict[str, Any]:
    """Publish the seeded sample in batches; ``emails`` counts the events that carry each
    (normalised) e-mail, so that an example can name someone the sample really has."""
    from services.sample import SampleSpec, generate

    batch: list[dict] = []
    sent, emails = 0, Counter[str]()
    with httpx.Client(base_url=base_url, timeout=30) as client:
        def flush() -> None:
            nonlocal sent
            client.post("/v1/touchpoints/batch", json={"events": batch}).raise_for_status()
            sent += len(batch)
            batch.clear()

        for event in generate(SampleSpec(customers=customers, events=events, seed=seed)):
            if email := event["customer"].get("email"):
                emails[normalise_email(email)] += 1
            batch.append(event)
            if len(batch) == 500:
                flush()
        if batch:
            flush()
    return {"sent": sent, "emails": emails}


def wait_for_customer(base_url: str, email: str, events: int,
                      timeout_s: float = 120) -> dict[str, Any] | None:
    """The profile found by ``email`` once it counts at least ``events`` touchpoints (the
    sample's events with that e-mail: the workers have caught up with this customer), or what
    the lookup gives when ``timeout_s`` runs out (None: nobody yet)."""
    deadline, profile = time.monotonic() + timeout_s, None
    with httpx.Client(base_url=base_url, timeout=5) as client:
        while True:
            try:
                items = client.get("/v1/customers", params={"email": email}).json()["items"]
            except (httpx.HTTPError, ValueError, KeyError):
                items = []
            profile = items[0] if items else profile
            if (profile and profile["events_count"] >= events) or time.monotonic() > deadline:
                return profile
            time.sleep(0.25)


def example_requests(base_url: str, email: str, customer_id: str, intro: str) -> str:
    """curl lines for one customer: look up by e-mail, the timeline, one more touchpoint."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    event = {"type": "call", "customer": {"email": email}, "occurred_at": now, "channel": "phone",
             "source": "crm",
             "payload": {"direction": "inbound", "duration_s": 120, "outcome": "resolved"}}
    return f"""
{intro}
  curl -s '{base_url}/v1/customers?email={quote(email, safe="@")}'
  curl -s '{base_url}/v1/customers/{customer_id}/timeline?limit=5'
  curl -s '{base_url}/v1/customers/{customer_id}/value'
  curl -s '{base_url}/v1/segments?tier=platinum,gold&stage=at_risk&sort=value&limit=5'
  curl -s '{base_url}/v1/value/pareto'
  curl -s -X POST {base_url}/v1/touchpoints -H 'content-type: application/json' \\
    -d {shlex.quote(json.dumps(event))}
  curl -s '{base_url}/v1/alerts?severity=high,critical&limit=5'
  curl -sN '{base_url}/v1/alerts/stream'
  curl -s {base_url}/metrics | grep touchstream_
  OpenAPI: {base_url}/docs
Churn alerts, live: {base_url}/ops
  in a terminal: .venv/bin/touchstream alerts tail --severity high --url {base_url}
Ctrl-C stops everything."""


def after_sample(base_url: str, customers: int, events: int, seed: int) -> str:
    """Publish the sample, wait until its most active customer with an e-mail is projected, and
    give the example requests for that customer."""
    t0 = time.monotonic()
    result = publish_sample(base_url, customers, events, seed)
    print(f"published {result['sent']} sample touchpoints for {customers} customers "
          f"in {time.monotonic() - t0:.1f}s; waiting for the workers ...", flush=True)
    if not result["emails"]:
        return without_sample(base_url)
    email, count = result["emails"].most_common(1)[0]
    profile = wait_for_customer(base_url, email, count)
    if profile is None:
        return example_requests(base_url, email, UNKNOWN_ID,
                                "Try (the workers are still behind; the lookup answers once they catch up):")
    name = profile["attributes"].get("name") or email
    print(value_summary(base_url), flush=True)
    print(alerts_summary(base_url), flush=True)
    return example_requests(base_url, email, profile["customer_id"],
                            f"Try, for {name}, one of the sample's customers:")


def value_summary(base_url: str, timeout_s: float = 60) -> str:
    """Tiers and stages of the sample's customers, once the tier thresholds have been computed
    (the models are fitted on the ledger first)."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=base_url, timeout=5) as client:
        while True:
            try:
                pareto = client.get("/v1/value/pareto").json()
            except (httpx.HTTPError, ValueError):
                pareto = {}
            # the thresholds first, then the re-tiering they cause: until it is done, buyers
            # are still unranked; and the ranking of the whole sample, not one the jobs made in
            # the middle of the load (they rank again once it is worked off)
            unranked = sum(t["customers"] for t in pareto.get("tiers", ()) if t["tier"] == "unranked")
            computed = pareto.get("thresholds_computed_at")
            current = computed is not None and datetime.fromisoformat(computed) > \
                datetime.now(UTC) - timedelta(minutes=10)
            if (current and not unranked) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    if not pareto.get("thresholds_version"):
        return "value: tiers not computed yet (GET /v1/value/pareto shows them once they are)"
    tiers = ", ".join(f"{t['tier']} {t['customers']}" for t in pareto["tiers"])
    stages = ", ".join(f"{k} {v}" for k, v in pareto["stages"].items())
    top = pareto["top_20_percent"]
    if top["clv_share"] is not None:
        share = f"{top['clv_share']:.0%} of expected value"
    elif top["spend_share"] is not None:
        share = f"{top['spend_share']:.0%} of spend so far (expected value once a model is fitted)"
    else:
        share = "n/a"
    return (f"value pyramid: {tiers}; the top 20% of buyers hold {share}\n"
            f"lifecycle: {stages}")


def alerts_summary(base_url: str) -> str:
    """The alerts the sample opened, by severity and rule (the rules weigh every customer as
    their touchpoints commit; silences and missed service levels fire on the clock)."""
    try:
        found = httpx.get(f"{base_url}/v1/alerts/summary", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return "alerts: not readable yet (GET /v1/alerts/summary)"
    severities = ", ".join(f"{k} {v}" for k, v in found["by_severity"].items() if v)
    rules = ", ".join(f"{k} {v}" for k, v in found["by_rule"].items())
    return (f"alerts: {found['active']} active ({severities or 'none yet'}); "
            f"by rule: {rules or 'none yet'}")


def without_sample(base_url: str) -> str:
    return example_requests(base_url, "ann@example.com", UNKNOWN_ID,
                            "Try (publish a touchpoint, then look its customer up):")
