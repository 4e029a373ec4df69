"""The sample generator: deterministic, valid for the platform's contract, and realistic enough."""

import inspect
import re
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import islice, pairwise

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from events import parse_touchpoint
from projections.value.models import Transaction, fit_bgnbd, fit_gamma_gamma, summarise
from services.sample import LAPSE_DAYS, SampleSpec, _population, _uuid4, customer_identities, generate

END = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SPEC = SampleSpec(customers=3000, events=30000, seed=11, end=END)
CHANNELS = {
    "call": {"phone"},
    "email": {"email"},
    "web_visit": {"web", "app"},
    "order": {"web", "app", "store"},
    "complaint": {"phone", "email", "chat", "store"},
    "feedback": {"email", "sms", "web", "app"},
}
PAYLOAD_KEYS = {
    "call": {"direction", "duration_s", "outcome", "agent", "topic"},
    "email": {"direction", "action", "subject", "campaign"},
    "web_visit": {"url", "page_views", "duration_s", "referrer", "session_id"},
    "order": {"order_id", "amount", "currency", "items", "status"},
    "complaint": {"complaint_id", "category", "severity", "text", "status"},
    "feedback": {"scale", "score", "text", "order_id", "complaint_id", "call_event_id"},
}


@pytest.fixture(scope="module")
def sample() -> list[dict]:
    return list(generate(SPEC))


@pytest.fixture(scope="module")
def owners() -> dict[str, int]:
    return owners_of(SPEC)


def owners_of(spec: SampleSpec) -> dict[str, int]:
    """Identifier -> index of the customer it belongs to."""
    owner: dict[str, int] = {}
    for i, person in enumerate(customer_identities(spec)):
        keys = [*person["emails"], person["phone"], *person["external_ids"].values()]
        for key in filter(None, keys):
            assert key not in owner, f"{key} belongs to two customers"
            owner[key] = i
    return owner


def identifiers(event: dict) -> list[str]:
    customer = event["customer"]
    found = [customer["email"], customer["phone"], *customer["external_ids"].values()]
    return [key for key in found if key]


def test_same_seed_same_events_other_seed_other_events(sample):
    assert list(generate(SPEC)) == sample
    other = list(generate(SampleSpec(customers=3000, events=30000, seed=12, end=END)))
    assert other[0]["event_id"] != sample[0]["event_id"]


@pytest.mark.parametrize("events", [0, 1, 100, 257, 5000])
def test_yields_exactly_the_requested_number_of_events(events):
    assert sum(1 for _ in generate(SampleSpec(customers=50, events=events, end=END))) == events


def test_is_a_lazy_stream():
    stream = generate(SampleSpec(customers=100, events=10**12, end=END))
    assert inspect.isgenerator(stream)
    assert len(list(islice(stream, 1000))) == 1000  # a list of 10**12 would never return


def test_every_event_is_valid_for_the_platform_contract(sample):
    for event in sample:
        parsed = parse_touchpoint(event)
        assert str(parsed.event_id) == event["event_id"]


def test_types_mix_and_channels(sample):
    mix = Counter(e["type"] for e in sample)
    share = {kind: count / len(sample) for kind, count in mix.items()}
    assert share["web_visit"] == pytest.approx(0.44, abs=0.05)
    assert share["email"] == pytest.approx(0.23, abs=0.04)
    assert share["order"] == pytest.approx(0.14, abs=0.03)
    assert share["call"] == pytest.approx(0.11, abs=0.03)
    assert share["complaint"] == pytest.approx(0.045, abs=0.02)
    assert share["feedback"] == pytest.approx(0.045, abs=0.02)
    for e in sample:
        assert e["channel"] in CHANNELS[e["type"]]
        v2 = {"wait_s"} if e["schema_version"] == 2 else set()
        assert set(e["payload"]) == PAYLOAD_KEYS[e["type"]] | v2


def test_some_calls_are_logged_at_version_2_with_the_customers_wait(sample):
    calls = [e for e in sample if e["type"] == "call"]
    v2 = [e["payload"] for e in calls if e["schema_version"] == 2]
    assert {e["schema_version"] for e in sample if e["type"] != "call"} == {1}
    assert 0.3 < len(v2) / len(calls) < 0.5
    waits = sorted(p["wait_s"] for p in v2)
    assert waits[0] >= 0 and waits[-1] <= 86400
    assert 10 < waits[len(waits) // 2] < 60  # a median wait of well under a minute
    inbound = [p["wait_s"] for p in v2 if p["direction"] == "inbound"]
    assert max(inbound) > 300  # some wait long in the queue


def test_event_ids_are_unique_uuid4(sample):
    ids = [e["event_id"] for e in sample]
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 4 for i in ids[:1000])


@given(st.integers(min_value=0, max_value=2**128 - 1))
def test_uuid4_matches_the_standard_library(bits):
    assert _uuid4(bits) == str(uuid.UUID(int=bits, version=4))


def test_each_event_carries_a_non_empty_subset_of_one_customers_identifiers(sample, owners):
    for e in sample:
        keys = identifiers(e)
        assert keys and e["customer"]["customer_id"] is None
        assert len({owners[k] for k in keys}) == 1


def test_identities_overlap_so_the_identity_stage_must_link_them(sample, owners):
    shapes = Counter(
        tuple(sorted(k for k in ("email", "phone") if e["customer"][k]))
        + (("crm",) if e["customer"]["external_ids"] else ())
        for e in sample
    )
    assert shapes[("email",)] and shapes[("phone",)] and shapes[("crm",)]
    assert shapes[("email", "phone")] and shapes[("email", "crm")]
    people = customer_identities(SPEC)
    two_emails = [p for p in people if len(p["emails"]) == 2]
    assert 10 <= len(two_emails) <= 60  # about 1%
    assert all(p["phone"] or p["external_ids"] for p in two_emails)
    seconds = {p["emails"][1] for p in two_emails}
    for e in sample:  # the wire has one email: a second address travels with a linking id
        if e["customer"]["email"] in seconds:
            assert e["customer"]["phone"] or e["customer"]["external_ids"]


def test_phone_numbers_are_valid(sample):
    phones = {p["phone"] for p in customer_identities(SampleSpec(customers=4000))} - {None}
    phones |= {e["customer"]["phone"] for e in sample[:5000]} - {None}
    assert len(phones) > 2000
    for phone in phones:
        number = phonenumbers.parse(phone)
        assert phonenumbers.is_valid_number(number), phone
        assert phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) == phone


def test_order_amounts_are_the_sum_of_their_items(sample):
    orders = [e["payload"] for e in sample if e["type"] == "order"]
    money = re.compile(r"^\d+\.\d\d$")
    for order in orders:
        assert money.match(order["amount"]) and order["order_id"].startswith("O-")
        total = Decimal(0)
        for item in order["items"]:
            assert money.match(item["unit_price"]) and item["quantity"] >= 1
            total += item["quantity"] * Decimal(item["unit_price"])
        assert Decimal(order["amount"]) == total
    assert len({o["order_id"] for o in orders}) == len(orders)


def test_a_customer_mostly_pays_in_one_currency(sample, owners):
    currencies: dict[int, Counter] = defaultdict(Counter)
    for e in sample:
        if e["type"] == "order":
            currencies[owners[identifiers(e)[0]]][e["payload"]["currency"]] += 1
    main = sum(c.most_common(1)[0][1] for c in currencies.values())
    assert main / sum(sum(c.values()) for c in currencies.values()) > 0.9


def test_occurred_at_is_utc_inside_the_window_and_roughly_ordered(sample):
    times = [datetime.fromisoformat(e["occurred_at"]) for e in sample]
    assert all(t.utcoffset() == timedelta(0) for t in times)
    assert END - timedelta(days=SPEC.days) <= min(times) and max(times) < END
    assert times != sorted(times)  # out of order, like real feeds ...
    assert max(times[:1000]) < min(times[-1000:])  # ... but only locally


def test_default_window_ends_now():
    event = next(generate(SampleSpec(customers=10, events=10)))
    age = datetime.now(UTC) - datetime.fromisoformat(event["occurred_at"])
    assert timedelta(0) < age <= timedelta(days=180, minutes=1)


def test_naive_end_is_rejected():
    with pytest.raises(ValueError, match="timezone-aware"):
        next(generate(SampleSpec(end=datetime(2025, 1, 1))))


def test_activity_is_skewed(sample, owners):
    per_customer = Counter(owners[identifiers(e)[0]] for e in sample)
    counts = sorted(per_customer.values(), reverse=True)
    top_1_percent = sum(counts[: SPEC.customers // 100]) / len(sample)
    assert top_1_percent > 0.05
    assert counts[len(counts) // 2] < len(sample) / SPEC.customers  # median below mean


def test_some_complaints_are_resolved_later(sample):
    opened, resolved = {}, {}
    for e in sample:
        if e["type"] == "complaint":
            status = e["payload"]["status"]
            (opened if status == "open" else resolved)[e["payload"]["complaint_id"]] = e
    assert 0.3 < len(resolved) / len(opened) < 0.7
    for cid, e in resolved.items():
        assert e["occurred_at"] > opened[cid]["occurred_at"]


def test_orders_of_a_customer_are_spaced_in_time(sample, owners):
    orders: dict[int, list[datetime]] = defaultdict(list)
    for e in sample:
        if e["type"] == "order":
            orders[owners[identifiers(e)[0]]].append(datetime.fromisoformat(e["occurred_at"]))
    gaps = [b - a for times in orders.values() for a, b in pairwise(sorted(times))]
    assert gaps and min(gaps) >= timedelta(days=2)


def _customer_of(event: dict, owners: dict[str, int]) -> int:
    return owners[identifiers(event)[0]]


def test_csat_answers_follow_the_customers_own_orders_calls_and_resolutions(sample, owners):
    earlier: dict[str, dict[str, dict]] = {"order_id": {}, "call_event_id": {}, "complaint_id": {}}
    for e in sample:
        if e["type"] == "order":
            earlier["order_id"][e["payload"]["order_id"]] = e
        elif e["type"] == "call":
            earlier["call_event_id"][e["event_id"]] = e
        elif e["type"] == "complaint" and e["payload"]["status"] == "resolved":
            earlier["complaint_id"][e["payload"]["complaint_id"]] = e
    about: Counter = Counter()
    for e in sample:
        if e["type"] != "feedback":
            continue
        answer = e["payload"]
        subjects = [key for key in earlier if answer[key] is not None]
        assert answer["scale"] == ("csat" if subjects else "nps") and len(subjects) <= 1
        for key in subjects:
            about[key] += 1
            subject = earlier[key][answer[key]]
            assert subject["occurred_at"] < e["occurred_at"]
            assert _customer_of(subject, owners) == _customer_of(e, owners)
    assert about["order_id"] > about["call_event_id"] > about["complaint_id"] > 0


def test_satisfaction_is_a_realistic_mix_lower_after_complaints(sample, owners):
    complaints: dict[int, list[datetime]] = defaultdict(list)
    for e in sample:
        if e["type"] == "complaint" and e["payload"]["status"] == "open":
            complaints[_customer_of(e, owners)].append(datetime.fromisoformat(e["occurred_at"]))
    after, clear, per_customer = [], [], defaultdict(list)
    nps: Counter = Counter()
    for e in sample:
        if e["type"] != "feedback":
            continue
        score, who = e["payload"]["score"], _customer_of(e, owners)
        if e["payload"]["scale"] == "nps":
            nps["promoter" if score >= 9 else "passive" if score >= 7 else "detractor"] += 1
            continue
        at = datetime.fromisoformat(e["occurred_at"])
        recent = any(timedelta(0) <= at - filed <= timedelta(days=30) for filed in complaints[who])
        (after if recent else clear).append(score)
        per_customer[who].append(score)
    mean = lambda scores: sum(scores) / len(scores)  # noqa: E731
    assert 4.0 <= mean(clear) <= 4.6  # most customers are satisfied ...
    assert mean(after) < mean(clear) - 0.7  # ... less so after a complaint
    unhappy = [who for who, scores in per_customer.items() if mean(scores) <= 2]
    # about 700 customers answer, some 2-4% of them unhappy depending on the seed (binomial
    # noise of about 0.6 points): the lower bound leaves room for it
    assert 0.01 < len(unhappy) / len(per_customer) < 0.2
    answers = sum(nps.values())
    assert answers > 100 and 0.3 < nps["promoter"] / answers < 0.6
    assert 0.1 < nps["detractor"] / answers < 0.35


def test_lapsers_pause_four_months_without_a_touchpoint_well_inside_the_window(sample, owners):
    start, window = END - timedelta(days=SPEC.days), timedelta(days=SPEC.days)
    pauses = {i: (start + c.pause * window, start + c.resume * window)
              for i, c in enumerate(_population(SPEC)) if c.pause <= 1.0}
    assert 0.1 < len(pauses) / SPEC.customers < 0.4
    for begin, end in pauses.values():
        assert end - begin >= timedelta(days=LAPSE_DAYS)
        assert begin - start >= timedelta(days=5) and END - end >= timedelta(days=5)
    seen_back = 0
    for e in sample:
        who = _customer_of(e, owners)
        if who in pauses:
            at, (begin, end) = datetime.fromisoformat(e["occurred_at"]), pauses[who]
            assert not begin <= at < end - timedelta(seconds=1)  # (stamps are truncated)
            seen_back += at >= end
    assert seen_back > 1000


STAGES = ("prospect", "new", "repeat", "at_risk", "lapsed", "won_back")


def lifecycle_stage(purchase_days: list, as_of) -> str:
    """The stage of a customer with touchpoints, by the dates of their placed orders."""
    if not purchase_days:
        return "prospect"
    last = purchase_days[-1]
    if (as_of - last).days >= 120:
        return "lapsed"
    if (as_of - last).days >= 60:
        return "at_risk"
    if len(purchase_days) >= 2 and (last - purchase_days[-2]).days >= 120:
        return "won_back"
    return "new" if len(purchase_days) == 1 else "repeat"


@pytest.fixture(scope="module")
def default_sample() -> tuple[list[dict], dict[str, int]]:
    """What `make run` publishes, and its owners."""
    spec = SampleSpec()
    return list(generate(spec)), owners_of(spec)


def test_default_sample_populates_every_lifecycle_stage_and_spend_follows_20_80(default_sample):
    events, owner = default_sample
    days: dict[int, set] = defaultdict(set)
    spend: dict[int, Decimal] = defaultdict(Decimal)
    seen, as_of = set(), None
    for e in events:
        who, at = _customer_of(e, owner), datetime.fromisoformat(e["occurred_at"])
        seen.add(who)
        as_of = at if as_of is None else max(as_of, at)
        if e["type"] == "order" and e["payload"]["status"] == "placed":
            days[who].add(at.date())  # (currencies vary: treated as equal here)
            spend[who] += Decimal(e["payload"]["amount"])
    stages = Counter(lifecycle_stage(sorted(days[who]), as_of.date()) for who in seen)
    shares = {stage: stages[stage] / len(seen) for stage in STAGES}
    totals = sorted(spend.values(), reverse=True)
    top_20 = sum(totals[: len(totals) // 5]) / sum(totals)
    print(f"stages of {len(seen)} customers:", {k: f"{v:.1%}" for k, v in shares.items()},
          f"top 20% of {len(totals)} buyers hold {top_20:.1%} of spend")
    assert all(share >= 0.03 for share in shares.values()), shares
    assert 0.5 <= top_20 <= 0.85


def test_default_samples_ledger_supports_both_purchase_models(default_sample):
    """`make run` shows lifetime values only if its ledger can be fitted: customers must be seen
    to drop out (BG/NBD's a and b finite and identified) and spend must vary (Gamma-Gamma)."""
    events, owner = default_sample
    ledger = [
        Transaction(str(_customer_of(e, owner)), datetime.fromisoformat(e["occurred_at"]).date(),
                    Decimal(e["payload"]["amount"]))
        for e in events if e["type"] == "order" and e["payload"]["status"] == "placed"
    ]
    cohort = summarise(ledger, max(t.date for t in ledger))
    purchases, spend = fit_bgnbd(cohort.x, cohort.t_x, cohort.T), fit_gamma_gamma(cohort.x, cohort.m_x)
    dropout = purchases.a / (purchases.a + purchases.b)  # the mean chance of leaving per purchase
    print(f"{len(cohort)} buyers: {purchases}, {spend}, mean dropout {dropout:.2f}")
    assert 0.05 <= dropout <= 0.5
    alive = purchases.p_alive(cohort.x, cohort.t_x, cohort.T)
    print(f"P(alive) of repeat buyers: below 0.5 {(alive[cohort.x > 0] < 0.5).mean():.0%}")
    assert 0.01 <= (alive[cohort.x > 0] < 0.5).mean() <= 0.6  # some are seen to have left
