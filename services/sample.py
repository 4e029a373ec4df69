"""Seeded, realistic sample touchpoints as wire-shaped dicts, fast enough for the benchmarks.

A population of customers, each with a stable identity (emails, phone, CRM id), a locale, a
currency, a lifetime inside the window and an activity rate from a gamma distribution (a few very
active, most occasional). Event times are the sorted uniforms over the window, drawn one at a time;
each goes to a customer picked by activity among those alive then, and carries a non-empty subset
of that customer's identifiers. Output is locally shuffled, as real feeds arrive out of order.
"""

from __future__ import annotations

import heapq
from bisect import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate
from random import Random


def _cum(*weights: float) -> tuple[float, ...]:
    """Cumulative weights ending at exactly 1.0, for `bisect(cum, random())`."""
    return (*accumulate(w / sum(weights) for w in weights[:-1]), 1.0)


TYPES = ("web_visit", "email", "order", "call", "complaint")
# orders too soon after the last become visits; calls to customers without a phone, emails
TYPE_CUM = _cum(0.38, 0.19, 0.22, 0.16, 0.03)
# (locale, phone prefix, currency, cities): every prefix followed by 7 digits is a valid mobile
LOCALES = (
    ("en-GB", "+44745", "GBP", ("London", "Leeds", "Bristol", "Glasgow", "Cardiff")),
    ("de-DE", "+491511", "EUR", ("Berlin", "Hamburg", "Munich", "Cologne")),
    ("en-US", "+1", "USD", ("New York", "Chicago", "Boston", "San Francisco")),
    ("fr-FR", "+3361", "EUR", ("Paris", "Lyon", "Lille", "Nantes")),
)
LOCALE_CUM = _cum(0.40, 0.25, 0.20, 0.15)
US_AREAS = ("212", "312", "617", "415")  # followed by [2-9] and six digits
FIRST = ("Anna", "Ben", "Chloe", "David", "Emma", "Felix", "Grace", "Hugo", "Ines", "Jonas",
         "Karen", "Liam", "Maria", "Noah", "Olivia", "Paul", "Sara", "Tom", "Lea", "Yusuf")
LAST = ("Smith", "Jones", "Muller", "Schmidt", "Martin", "Bernard", "Brown", "Taylor", "Garcia",
        "Weber", "Dubois", "Wilson", "Fischer", "Moreau", "Clark", "Evans", "Wagner", "Lee")
DOMAINS = ("example.com", "example.org", "example.net")
# probability that an event of a type carries the customer's email, phone, CRM id
CARRIES = {"call": (0.1, 0.95, 0.3), "email": (1.0, 0.0, 0.2), "web_visit": (0.95, 0.02, 0.05),
           "order": (0.9, 0.3, 0.6), "complaint": (0.6, 0.6, 0.5)}
CALL_OUTCOMES = ("answered", "missed", "voicemail", "resolved", "escalated", "callback_requested")
CALL_CUM = _cum(0.35, 0.12, 0.08, 0.30, 0.07, 0.08)
TOPICS = ("order status", "billing", "returns", "product question", "account", None)
EMAIL_ACTIONS = ("sent", "delivered", "opened", "clicked", "bounced", "unsubscribed")
EMAIL_CUM = _cum(0.30, 0.27, 0.25, 0.14, 0.03, 0.01)
CAMPAIGNS = ("spring-sale", "new-arrivals", "loyalty-bonus", "win-back", "newsletter")
PAGES = ("/", "/search?q=shoes", "/cart", "/checkout", "/account", "/help", "/offers")
REFERRERS = ("https://www.google.com/", "https://www.bing.com/", "newsletter", None, None, None)
CATEGORIES = {
    "delivery": "My parcel arrived late and the box was damaged.",
    "billing": "I was charged twice for the same order.",
    "product": "The item stopped working after a week.",
    "service": "Nobody answered my last two messages.",
}
RESOLVED = "The issue was resolved and the case closed."
SEVERITY_CUM = _cum(0.40, 0.35, 0.20, 0.05)
SEVERITIES = ("low", "medium", "high", "critical")
DAY = 86400.0
HH_MM = tuple(f"{m // 60:02d}:{m % 60:02d}:" for m in range(1440))
SS = tuple(f"{s:02d}+00:00" for s in range(60))
SHUFFLE = 256  # events held back to shuffle the output locally


@dataclass(frozen=True)
class SampleSpec:
    customers: int = 3000
    events: int = 30000
    seed: int = 7
    days: int = 180
    end: datetime | None = None  # tz-aware; None -> now (UTC) truncated to the minute


@dataclass(slots=True)
class _Customer:
    emails: tuple[str, ...]
    phone: str | None
    crm: str | None
    attributes: dict[str, str]
    currency: str
    weight: float  # relative activity
    born: float  # lifetime and order gap as fractions of the window
    dies: float
    order_gap: float
    last_order: float = -1.0


def _population(spec: SampleSpec) -> list[_Customer]:
    rng = Random(f"{spec.seed}:customers")
    r, out = rng.random, []
    for i in range(spec.customers):
        locale, prefix, currency, cities = LOCALES[bisect(LOCALE_CUM, r())]
        first, last = _any(r, FIRST), _any(r, LAST)
        k = i * 2_750_159 % 8_000_000  # a bijection on range(8M): no two customers share a phone
        phone = f"+1{US_AREAS[i % 4]}{2 + k // 10**6}{k % 10**6:06d}" if locale == "en-US" \
            else f"{prefix}{k:07d}"
        emails = (f"{first}.{last}{i}@{_any(r, DOMAINS)}".lower(),)
        if r() < 0.01:
            emails += (f"{first[0]}{last}.{i}@mail.example".lower(),)
        has_email, has_phone, crm = r() < 0.9, r() < 0.6, f"C{i + 1:07d}" if r() < 0.4 else None
        if len(emails) == 2 and not (has_phone or crm):
            crm = f"C{i + 1:07d}"  # the wire has one email field: the second links via the CRM id
        born = 0.0 if r() < 0.7 else 0.9 * r()
        dies = max(born + 0.05, born + (1.0 - born) * r()) if r() < 0.3 else 1.0
        out.append(_Customer(
            emails if has_email or len(emails) == 2 or not (has_phone or crm) else (),
            phone if has_phone else None, crm,
            {"name": f"{first} {last}", "locale": locale, "city": _any(r, cities)},
            currency, rng.gammavariate(0.5, 1.0), born, dies, (2.0 + 28.0 * r()) / spec.days))
    return out


def customer_identities(spec: SampleSpec) -> list[dict]:
    """Each customer's full identifier set, in customer order: what identity should join."""
    return [{"emails": list(c.emails), "phone": c.phone,
             "external_ids": {"crm": c.crm} if c.crm else {}, "attributes": dict(c.attributes)}
            for c in _population(spec)]


def generate(spec: SampleSpec) -> Iterator[dict]:
    """Yield exactly `spec.events` events, roughly in time order but locally shuffled."""
    if spec.customers < 1 or spec.days < 1:
        raise ValueError("a sample needs at least one customer and one day")
    end = spec.end or datetime.now(UTC).replace(second=0, microsecond=0)
    if end.tzinfo is None:
        raise ValueError("SampleSpec.end must be timezone-aware")
    stamp = _clock(end, spec.days)
    customers = _population(spec)
    rng = Random(spec.seed)
    r, made, pick = rng.random, _Touchpoints(spec, rng), _picker(customers, rng.random)
    build = {kind: getattr(made, kind) for kind in TYPES}
    buffer: list[dict] = []
    t = 0.0
    for left in range(spec.events, 0, -1):
        t += (1.0 - t) * (1.0 - r() ** (1.0 / left))  # the least of `left` uniforms on [t, 1)
        if made.pending and made.pending[0][0] <= t:
            at, _, c, *complaint = heapq.heappop(made.pending)
            kind, channel, source, payload = made.complaint_event(*complaint, "resolved", RESOLVED)
        else:
            at, c = t, pick(t)
            kind = TYPES[bisect(TYPE_CUM, r())]
            kind, channel, source, payload = build[kind](c, t, spec.events - left)
        event = {
            "event_id": _uuid4(rng.getrandbits(128)),
            "type": kind, "schema_version": 1, "customer": _identity(r, c, kind),
            "occurred_at": stamp(at),
            "channel": channel, "source": source, "payload": payload,
        }
        if len(buffer) < SHUFFLE:
            buffer.append(event)
            continue
        j = int(r() * SHUFFLE)
        yield buffer[j]
        buffer[j] = event
    rng.shuffle(buffer)
    yield from buffer


def _picker(customers: list[_Customer], r):
    """Pick a customer by activity in O(1) (Walker's alias method), among those alive at `t`."""
    n, total = len(customers), sum(c.weight for c in customers)
    share, alias = [c.weight * n / total for c in customers], list(range(n))
    small = [i for i in range(n) if share[i] < 1.0]
    large = [i for i in range(n) if share[i] >= 1.0]
    while small and large:
        i, j = small.pop(), large.pop()
        alias[i], share[j] = j, share[j] - (1.0 - share[i])
        (small if share[j] < 1.0 else large).append(j)

    def pick(t: float) -> _Customer:
        for _ in range(64):  # rejection: customers not yet born or already gone
            i = int(r() * n)
            c = customers[i if r() < share[i] else alias[i]]
            if c.born <= t <= c.dies:
                break
        return c

    return pick


def _identity(r, c: _Customer, kind: str) -> dict:
    """A non-empty subset of the customer's identifiers, typical of the touchpoint type."""
    p_email, p_phone, p_crm = CARRIES[kind]
    email = None
    if c.emails and r() < p_email:
        email = c.emails[0] if len(c.emails) == 1 or r() < 0.6 else c.emails[1]
    phone = c.phone if c.phone and r() < p_phone else None
    crm = c.crm if c.crm and r() < p_crm else None
    if email and email != c.emails[0] and not (phone or crm):
        phone, crm = (c.phone, None) if c.phone else (None, c.crm)  # links the second email
    if not (email or phone or crm):  # never anonymous: the channel's natural identifier
        if c.phone and (kind == "call" or not c.emails):
            phone = c.phone
        elif c.emails:
            email = c.emails[0]
        else:
            crm = c.crm
    customer = {"customer_id": None, "email": email, "phone": phone,
                "external_ids": {"crm": crm} if crm else {}}
    if r() < 0.1:
        customer["attributes"] = dict(c.attributes)
    return customer


def _uuid4(bits: int) -> str:
    """str(uuid.UUID(int=bits, version=4)), at half the cost."""
    h = "%032x" % (bits & ~(0xF000 << 64 | 0xC000 << 48) | (0x4000 << 64 | 0x8000 << 48))
    return "-".join((h[:8], h[8:12], h[12:16], h[16:20], h[20:]))


def _clock(end: datetime, days: int):
    """Window fraction -> ISO-8601 UTC string by table look-up (datetime.isoformat is 5x slower)."""
    base = int(end.timestamp()) - days * 86400
    first_day = base // 86400
    dates = [datetime.fromtimestamp((first_day + d) * 86400, UTC).strftime("%Y-%m-%dT")
             for d in range(days + 2)]

    def stamp(fraction: float) -> str:
        day, second = divmod(base + int(fraction * days * DAY), 86400)
        return dates[day - first_day] + HH_MM[second // 60] + SS[second % 60]

    return stamp


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


class _Touchpoints:
    """Payload builders on one random stream; each returns (type, channel, source, payload)."""

    def __init__(self, spec: SampleSpec, rng: Random) -> None:
        self.rng, self.seed, self.days = rng, spec.seed, spec.days
        self.prices = [max(99, round(rng.lognormvariate(3.0, 0.8) * 100)) for _ in range(400)]
        self.pending: list[tuple] = []  # (due, n, customer, complaint_id, category, severity)

    def web_visit(self, c: _Customer, t: float, n: int) -> tuple:
        rng, r = self.rng, self.rng.random
        views = 1 + int(rng.expovariate(0.4))
        path = f"/products/sku-{100 + int(r() * 400)}" if r() < 0.5 else _any(r, PAGES)
        return "web_visit", "app" if r() < 0.3 else "web", "web", {
            "url": "https://shop.example.com" + path, "page_views": views,
            "duration_s": round(views * rng.expovariate(1 / 40), 1),
            "referrer": _any(r, REFERRERS), "session_id": f"s-{rng.getrandbits(48):012x}"}

    def email(self, c: _Customer, t: float, n: int) -> tuple:
        if not c.emails and c.phone:
            return self.call(c, t, n)
        r = self.rng.random
        if r() < 0.12:
            return "email", "email", "contact-center", {
                "direction": "inbound", "action": "replied" if r() < 0.6 else "sent",
                "subject": "Question about my order", "campaign": None}
        campaign = _any(r, CAMPAIGNS) if r() < 0.7 else None
        return "email", "email", "esp", {
            "direction": "outbound", "action": EMAIL_ACTIONS[bisect(EMAIL_CUM, r())],
            "subject": campaign.replace("-", " ").capitalize() if campaign else "Your order",
            "campaign": campaign}

    def call(self, c: _Customer, t: float, n: int) -> tuple:
        if not c.phone and c.emails:
            return self.email(c, t, n)
        r = self.rng.random
        outcome = CALL_OUTCOMES[bisect(CALL_CUM, r())]
        talked = outcome not in ("missed", "voicemail")
        seconds = min(self.rng.lognormvariate(5.3, 0.8), DAY) if talked \
            else 0.0 if outcome == "missed" else 10.0 + 50.0 * r()
        return "call", "phone", "contact-center", {
            "direction": "inbound" if r() < 0.75 else "outbound", "duration_s": round(seconds, 1),
            "outcome": outcome, "agent": f"agent-{1 + int(r() * 40):02d}" if talked else None,
            "topic": _any(r, TOPICS) if talked else None}

    def order(self, c: _Customer, t: float, n: int) -> tuple:
        if t - c.last_order < c.order_gap:
            return self.web_visit(c, t, n)  # a buyer browses between purchases
        c.last_order = t
        r, lines = self.rng.random, {}
        for _ in range(1 + min(int(self.rng.expovariate(1.2)), 5)):
            sku = int(len(self.prices) * r() ** 2)  # popular items first
            lines[sku] = lines.get(sku, 0) + (1 if r() < 0.8 else 2 + int(r() * 3))
        x = r()
        return "order", "web" if x < 0.55 else "app" if x < 0.8 else "store", "shop", {
            "order_id": f"O-{self.seed}-{n:07d}",
            "amount": _money(sum(q * self.prices[s] for s, q in lines.items())),
            "currency": c.currency if r() < 0.96 else _any(r, ("EUR", "GBP", "USD")),
            "items": [{"sku": f"SKU-{100 + s}", "quantity": q, "unit_price": _money(self.prices[s])}
                      for s, q in lines.items()],
            "status": "placed" if x < 0.92 else "cancelled" if x < 0.97 else "refunded"}

    def complaint(self, c: _Customer, t: float, n: int) -> tuple:
        rng, r = self.rng, self.rng.random
        category, severity = _any(r, tuple(CATEGORIES)), SEVERITIES[bisect(SEVERITY_CUM, r())]
        cid = f"K-{self.seed}-{n:07d}"
        if r() < 0.6:  # resolved after an hour plus a few days, if still inside the window
            due = t + (3600.0 + rng.expovariate(1 / (4 * DAY))) / (self.days * DAY)
            heapq.heappush(self.pending, (due, n, c, cid, category, severity))
        return self.complaint_event(cid, category, severity, "open", CATEGORIES[category])

    def complaint_event(self, cid: str, category: str, severity: str, status: str, text: str):
        x = self.rng.random()
        channel = "phone" if x < 0.35 else "email" if x < 0.65 else "chat" if x < 0.9 else "store"
        return "complaint", channel, "contact-center", {
            "complaint_id": cid, "category": category, "severity": severity, "text": text,
            "status": status}


def _any(r, seq: tuple):
    return seq[int(r() * len(seq))]
