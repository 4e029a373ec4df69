"""Seeded, realistic sample touchpoints as wire-shaped dicts, fast enough for the benchmarks.

A population of customers, each with a stable identity (emails, phone, CRM id), a locale, a
currency, a lifetime inside the window, an activity rate from a gamma distribution (a few very
active, most occasional), a spend level (lognormal: a few spend many times more per order than
most) and a disposition. Some of those present all along lapse, regulars more often: a pause of
LAPSE_DAYS or more (about 70% of a shorter window) well inside the window, without a single
touchpoint. Around it they buy more often than others (seasonal shoppers), so that many buy on
both sides of it: won back. Others leave for good with a repeat order, each with a chance of
their own. Event times are the sorted uniforms over the window, drawn one at a
time; each goes to a customer picked by activity among those active then (born, not gone, not
pausing), and carries a non-empty subset of that customer's identifiers.
Some events have follow-ups, due later: a complaint is resolved, an order, a call or a
resolution gets a CSAT answer, most inbound e-mails get an agent's reply and most callers not
reached get a call back, within hours (unless the customer is pausing by then). Satisfaction answers
(those and occasional NPS answers) follow the customer's disposition, less what their recent
complaints still weigh. Some calls come from a contact center that logs calls at version 2,
with how long the customer waited. Output is locally shuffled, as real feeds arrive out of order.
"""

from __future__ import annotations

import heapq
from bisect import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate, count
from math import exp, inf
from operator import attrgetter
from random import Random
from statistics import NormalDist
from typing import Any, TypeVar

T = TypeVar("T")


def _cum(*weights: float) -> tuple[float, ...]:
    """Cumulative weights ending at exactly 1.0, for `bisect(cum, random())`."""
    return (*accumulate(w / sum(weights) for w in weights[:-1]), 1.0)


TYPES = ("web_visit", "email", "order", "call", "complaint", "feedback")
# orders too soon after the last become visits; calls to customers without a phone, emails;
# feedback drawn here answers the occasional NPS survey (CSAT answers are follow-ups)
TYPE_CUM = _cum(0.38, 0.19, 0.22, 0.16, 0.03, 0.006)
LAPSER_TYPE_CUM = _cum(0.38, 0.19, 0.6, 0.16, 0.03, 0.006)  # seasonal: around, they come to buy
CHANNELS = {  # a repeated channel is proportionally more likely
    "web_visit": ("web", "web", "app"),
    "email": ("email",),
    "order": ("web", "web", "app", "store"),
    "call": ("phone",),
    "complaint": ("phone", "phone", "email", "chat", "chat", "store"),
    "feedback": ("email", "email", "email", "sms", "web", "app"),
}
SOURCES = {
    "web_visit": "web",
    "email": "esp",
    "order": "shop",
    "call": "contact-center",
    "complaint": "contact-center",
    "feedback": "survey",
}
# probability that an event of a type carries the customer's email, phone, CRM id
CARRIES = {
    "web_visit": (0.95, 0.02, 0.05),
    "email": (1.0, 0.0, 0.2),
    "order": (0.9, 0.3, 0.6),
    "call": (0.1, 0.95, 0.3),
    "complaint": (0.6, 0.6, 0.5),
    "feedback": (0.8, 0.3, 0.4),
}
# locale, currency, cities, phone prefix: any prefix + 7 digits is a valid mobile number
LOCALES = (
    ("en-GB", "GBP", ("London", "Leeds", "Bristol", "Glasgow"), "+44745"),
    ("de-DE", "EUR", ("Berlin", "Hamburg", "Munich", "Cologne"), "+491511"),
    ("en-US", "USD", ("Seattle", "Chicago", "Boston", "Denver"), "+1"),
    ("fr-FR", "EUR", ("Paris", "Lyon", "Lille", "Nantes"), "+3361"),
)
LOCALE_CUM = _cum(0.40, 0.25, 0.20, 0.15)
US_AREAS = ("212", "312", "617", "415")  # followed by [2-9] and six digits
FIRST = ("Anna", "Ben", "Chloe", "David", "Emma", "Felix", "Grace", "Hugo", "Ines", "Jonas", "Liam")
LAST = ("Smith", "Jones", "Muller", "Schmidt", "Martin", "Bernard", "Brown", "Garcia", "Dubois")
DOMAINS = ("example.com", "example.org", "example.net")
CALL_OUTCOMES = ("answered", "missed", "voicemail", "resolved", "escalated", "callback_requested")
CALL_CUM = _cum(0.35, 0.12, 0.08, 0.30, 0.07, 0.08)
# the share of calls logged at version 2, with the customer's wait: an inbound caller waits in the
# queue (mean seconds, if answered and if not: they gave up or went to voicemail), an outbound
# call rings (seconds, least and most, likewise)
CALL_V2_SHARE = 0.4
QUEUE_MEAN_S = (45.0, 120.0)
RING_S = ((3.0, 25.0), (20.0, 40.0))
TOPICS = ("order status", "billing", "returns", "product question", "account", None)
EMAIL_ACTIONS = ("sent", "delivered", "opened", "clicked", "bounced", "unsubscribed")
EMAIL_CUM = _cum(0.30, 0.27, 0.25, 0.14, 0.03, 0.01)
CAMPAIGNS = ("spring-sale", "new-arrivals", "loyalty-bonus", "win-back", "newsletter", None)
PAGES = ("/", "/search?q=shoes", "/cart", "/checkout", "/account", "/help", "/offers")
REFERRERS = ("https://www.google.com/", "https://www.bing.com/", "newsletter", None, None, None)
COMPLAINTS = {
    "delivery": "My parcel arrived late and the box was damaged.",
    "billing": "I was charged twice for the same order.",
    "product": "The item stopped working after a week.",
    "service": "Nobody answered my last two messages.",
}
RESOLVED = "The issue was resolved and the case closed."
SEVERITIES = ("low", "medium", "high", "critical")
SEVERITY_CUM = _cum(0.40, 0.35, 0.20, 0.05)
# how much a complaint of each severity lowers satisfaction (a customer's disposition is about
# 0.78 on a 0-1 feeling scale); the weight halves every GRUDGE_DAYS and when it is resolved
GRIEVANCE = {"low": 0.25, "medium": 0.4, "high": 0.6, "critical": 0.8}
GRUDGE_DAYS = 30
# share of placed orders, conversations and resolved complaints that get a CSAT answer
CSAT_AFTER = {"order": 0.15, "call": 0.15, "complaint": 0.3}
# the contact center answers most inbound e-mails and calls back most callers it missed, after
# a few hours (mean seconds); the rest wait, which is what the unanswered-contact alert is for
ANSWERED = {"email": (0.85, 5 * 3600.0), "call": (0.7, 3 * 3600.0)}
# what the experience itself adds to the feeling: a cancelled order, an escalated call
ORDER_LIFT = {"placed": 0.0, "cancelled": -0.2, "refunded": -0.15}
CALL_LIFT = {"answered": 0.0, "resolved": 0.05, "escalated": -0.15, "callback_requested": -0.1}
# what people write: unhappy (CSAT 1-2, NPS 0-6), lukewarm (CSAT 3, NPS 7-8), happy; how often
REMARKS = (
    ("Far too slow, and nobody kept me informed.", "I had to explain everything twice.",
     "Not what I was promised.\nI will think twice before ordering again."),
    ("It was fine.", "OK, but it took a while.", "Good product, the delivery could be faster."),
    ("Quick and friendly, thank you!", "Everything arrived as promised.", "Very happy, as always."),
)
REMARK_SHARE = (0.6, 0.2, 0.35)
DAY = 86400.0
HH_MM = tuple(f"{m // 60:02d}:{m % 60:02d}:" for m in range(1440))
SS = tuple(f"{s:02d}+00:00" for s in range(60))
SHUFFLE = 256  # events held back to shuffle the output locally
# customers present all along who lapse: a pause with no events at all, of LAPSE_DAYS or more
# (see _pause_lengths), at least PAUSE_MARGIN of the window from either end; the chance is
# LAPSE_ODDS times the activity weight (a gamma(0.5) variate, mean 0.5), at most LAPSE_CAP.
# Their touchpoints are drawn by LAPSER_TYPE_CUM: almost three times as many orders.
LAPSE_ODDS, LAPSE_CAP = 1.5, 0.6
LAPSE_DAYS = 120
# a customer who is not a lapser leaves for good with a repeat order with a chance drawn from
# beta(DROP_BETA) (mean 0.24; CDNOW's cohort: beta(0.79, 2.43)), as the BG/NBD model has it: so
# that the ledger shows the dropout a purchase model can learn, and `make run` fits one
DROP_BETA = (0.8, 2.5)
PAUSE_MARGIN = 0.05
# a customer's spend level, lognormal with mean 1 (a few spend far more per order), as a table of
# quantiles: drawing from it costs much less than a lognormal variate, for millions of customers
BASKET_SIGMA = 0.8
BASKETS = tuple(
    exp(BASKET_SIGMA * NormalDist().inv_cdf((k + 0.5) / 512) - BASKET_SIGMA**2 / 2)
    for k in range(512)
)


@dataclass(frozen=True)
class SampleSpec:
    customers: int = 3000
    events: int = 30000
    seed: int = 7
    days: int = 180
    end: datetime | None = None  # tz-aware; None -> now (UTC) truncated to the minute


def generate(spec: SampleSpec) -> Iterator[dict]:
    """Yield exactly `spec.events` events, roughly in time order but locally shuffled."""
    if spec.customers < 1 or spec.days < 1:
        raise ValueError("a sample needs at least one customer and one day")
    end = spec.end or datetime.now(UTC).replace(second=0, microsecond=0)
    if end.tzinfo is None:
        raise ValueError("SampleSpec.end must be timezone-aware")
    stamp, customers, rng = _clock(end, spec.days), _population(spec), Random(spec.seed)
    r, make, pick = rng.random, _Touchpoints(spec, rng), _picker(customers, rng.random)
    buffer: list[dict] = []
    t = 0.0
    for left in range(spec.events, 0, -1):
        t += (1.0 - t) * (1.0 - r() ** (1.0 / left))  # the least of `left` uniforms on [t, 1)
        event_id = _uuid4(rng.getrandbits(128))
        if make.pending and make.pending[0][0] <= t:  # a follow-up of an earlier event is due
            at, _, c, follow_up, detail = heapq.heappop(make.pending)
            kind, payload = follow_up(c, at, detail)
        else:
            at, c = t, pick(t)
            kind, payload = make.payload(TYPES[bisect(c.types, r())], c, t, spec.events - left,
                                         event_id)
        event = {
            "event_id": event_id,
            "type": kind,
            "schema_version": 2 if kind == "call" and "wait_s" in payload else 1,
            "customer": _identity(r, c, kind),
            "occurred_at": stamp(at),
            "channel": _any(r, CHANNELS[kind]),
            "source": SOURCES[kind],
            "payload": payload,
        }
        if len(buffer) < SHUFFLE:
            buffer.append(event)
            continue
        j = int(r() * SHUFFLE)
        yield buffer[j]
        buffer[j] = event
    rng.shuffle(buffer)
    yield from buffer


def customer_identities(spec: SampleSpec) -> list[dict]:
    """Each customer's full identifier set, in customer order: what identity should join."""
    return [
        {
            "emails": list(c.emails),
            "phone": c.phone,
            "external_ids": {"crm": c.crm} if c.crm else {},
            "attributes": dict(c.attributes),
        }
        for c in _population(spec)
    ]


@dataclass(slots=True)
class _Customer:
    emails: tuple[str, ...]
    phone: str | None
    crm: str | None
    attributes: dict[str, str]
    currency: str
    weight: float  # relative activity
    born: float  # lifetime and the least gap between orders, as fractions of the window
    dies: float
    order_gap: float
    disposition: float  # how satisfied the customer tends to be, about 0 to 1
    basket: float = 1.0  # spend level: scales the lines and quantities of their orders
    pause: float = 2.0  # a lapse, [pause, resume) as fractions of the window; 2.0: none
    resume: float = 2.0
    types: tuple[float, ...] = TYPE_CUM  # how likely each type of touchpoint is, cumulative
    drop: float = 0.0  # the chance of leaving for good with each repeat order
    last_order: float = -1.0
    grievance: float = 0.0  # what their complaints weigh on them, as of `aggrieved_at`
    aggrieved_at: float = 0.0


def _population(spec: SampleSpec) -> list[_Customer]:
    if spec.customers > 8_000_000:
        raise ValueError("at most 8 million customers (phone numbers would repeat)")
    rng, habits = Random(f"{spec.seed}:customers"), Random(f"{spec.seed}:habits")
    loyalty = Random(f"{spec.seed}:loyalty")
    r, h, out = rng.random, habits.random, []
    least, most = _pause_lengths(spec.days)
    for i in range(spec.customers):
        locale, currency, cities, prefix = LOCALES[bisect(LOCALE_CUM, r())]
        first, last = _any(r, FIRST), _any(r, LAST)
        emails: tuple[str, ...] = (f"{first}.{last}{i}@{_any(r, DOMAINS)}".lower(),)
        if r() < 0.01:
            emails += (f"{first[0]}{last}.{i}@mail.example".lower(),)
        phone = _phone(i, locale, prefix) if r() < 0.6 else None
        # the wire has one email field: a second address needs the phone or CRM id to link it
        crm = f"C{i + 1:07d}" if r() < 0.4 or (len(emails) == 2 and not phone) else None
        if r() < 0.1 and len(emails) == 1 and (phone or crm):
            emails = ()  # known without an email
        born = 0.0 if r() < 0.7 else 0.9 * r()
        dies = max(born + 0.05, born + (1.0 - born) * r()) if r() < 0.3 else 1.0
        attributes = {"name": f"{first} {last}", "locale": locale, "city": _any(r, cities)}
        weight, gap = rng.gammavariate(0.5, 1.0), (2.0 + 28.0 * r()) / spec.days
        disposition = rng.gauss(0.82, 0.13)
        # habits come from a generator of their own, so identities stay what they were: a
        # spend level, lognormal with mean 1; and a pause for some of those present all along,
        # regulars more often (an occasional visitor rather drifts away), who buy more when
        # around (they come for a season's shopping)
        basket, pause, resume, types = BASKETS[int(h() * len(BASKETS))], 2.0, 2.0, TYPE_CUM
        if born == 0.0 and dies == 1.0 and h() < min(LAPSE_CAP, LAPSE_ODDS * weight):
            length = least + (most - least) * h()
            pause = PAUSE_MARGIN + (1.0 - 2 * PAUSE_MARGIN - length) * h()
            resume, types = pause + length, LAPSER_TYPE_CUM
        drop = 0.0 if pause <= 1.0 else loyalty.betavariate(*DROP_BETA)
        out.append(_Customer(emails, phone, crm, attributes, currency, weight, born, dies, gap,
                             disposition, basket, pause, resume, types, drop))
    return out


def _pause_lengths(days: int) -> tuple[float, float]:
    """The least and most length of a pause, as fractions of a window of `days`: a lapse of
    LAPSE_DAYS and more where the window has room for it and for some activity either side
    (180 days: 121 to 135 days), else about 70% of the window."""
    least = min(1.01 * LAPSE_DAYS / days, 0.7)
    return least, max(least, min(1.25 * LAPSE_DAYS / days, 0.75))


def _phone(i: int, locale: str, prefix: str) -> str:
    k = i * 2_750_159 % 8_000_000  # a bijection on range(8M): no two customers share a phone
    if locale == "en-US":
        return f"+1{US_AREAS[i % 4]}{2 + k // 10**6}{k % 10**6:06d}"
    return f"{prefix}{k:07d}"


def _picker(customers: list[_Customer], r: Callable[[], float]) -> Callable[[float], _Customer]:
    """Pick a customer by activity among those active at `t`: born, not yet gone, not pausing.

    Most come from Walker's alias table in O(1), rejecting those not yet born or already gone.
    Rejecting those pausing would take many tries (lapsers are active customers and, mid-window,
    most of them pause), so lapsers are picked apart: those active at `t` are the ones back (a
    prefix by end of pause) and the ones yet to pause (a suffix by start), a range of cumulative
    weights to bisect, or all of them (before the first pause, after the last), from an alias
    table of their own. What changes only as a pause starts or ends is worked out beforehand.
    Should 64 tries find nobody (a tiny population), a scan picks among the active; if there
    are none, anyone.
    """
    steady = [c for c in customers if c.pause > 1.0]
    lapsers = sorted((c for c in customers if c.pause <= 1.0), key=attrgetter("pause"))
    by_resume = sorted(lapsers, key=attrgetter("resume"))
    pauses, resumes = [c.pause for c in lapsers], [c.resume for c in by_resume]
    upto_pause = [0.0, *accumulate(c.weight for c in lapsers)]  # the weight of the first k
    upto_resume = [0.0, *accumulate(c.weight for c in by_resume)]
    n, m, held, total = len(steady), len(lapsers), sum(c.weight for c in steady), upto_pause[-1]
    scale = (n - 1e-6) / held if n else 0.0  # a draw below `held` -> an index below n
    lapser_scale = (m - 1e-6) / total if m else 0.0
    share, alias = _alias([c.weight for c in steady])
    # each column's customer and its alias, with their lifetimes at hand: a rejected try reads
    # less memory (a population of millions is far bigger than the cache)
    kept = [(c.born, c.dies, c) for c in steady]
    swapped = [kept[a] for a in alias]
    lapser_share, lapser_alias = _alias([c.weight for c in lapsers])
    # from each time a pause starts or ends to the next: the first k lapsers by start of pause
    # are pausing or back; the steady's weight plus that of the lapsers back; plus that of the
    # lapsers yet to pause; whether all the lapsers are active (as many back as ever paused)
    bounds = [-inf, *sorted({*pauses, *resumes})]
    started, ended = [bisect(pauses, b) for b in bounds], [bisect(resumes, b) for b in bounds]
    segments = [
        (since, until, k, held + upto_resume[j], held + upto_resume[j] + total - upto_pause[k], j == k)
        for since, until, k, j in zip(bounds, [*bounds[1:], inf], started, ended, strict=True)
    ]
    since, until, k, held_back, weight, whole = inf, -inf, 0, 0.0, 0.0, False

    def pick(t: float) -> _Customer:
        nonlocal since, until, k, held_back, weight, whole
        if not since <= t < until:
            since, until, k, held_back, weight, whole = segments[bisect(bounds, t) - 1]
        for _ in range(64):
            x = r() * weight
            if x < held:  # rejection: customers not yet born or already gone
                y = x * scale  # its whole part picks a column, the rest is uniform in it
                i = int(y)
                born, dies, c = kept[i] if y - i < share[i] else swapped[i]
                if born <= t <= dies and t <= c.dies:  # (c.dies: gone after an order)
                    return c
                continue
            if whole:
                y = (x - held) * lapser_scale
                i = int(y)
                c = lapsers[i if y - i < lapser_share[i] else lapser_alias[i]]
            elif x < held_back:  # (bisect's bounds and the check guard against rounding)
                c = by_resume[bisect(upto_resume, x - held, 0, m) - 1]
            else:
                c = lapsers[bisect(upto_pause, upto_pause[k] + x - held_back, 0, m) - 1]
            if c.born <= t <= c.dies and not c.pause <= t < c.resume:
                return c
        active = [c for c in customers if c.born <= t <= c.dies and not c.pause <= t < c.resume]
        x = r() * sum(c.weight for c in active)
        for c in active:
            x -= c.weight
            if x < 0.0:
                break
        return c

    return pick


def _alias(weights: list[float]) -> tuple[list[float], list[int]]:
    """Walker's alias table: pick i uniformly, keep it if ``random() < share[i]``, else take
    ``alias[i]``; each index comes out in proportion to its weight."""
    n, total = len(weights), sum(weights)
    share, alias = [w * n / total for w in weights], list(range(n))
    small = [i for i in range(n) if share[i] < 1.0]
    large = [i for i in range(n) if share[i] >= 1.0]
    while small and large:
        i, j = small.pop(), large.pop()
        alias[i], share[j] = j, share[j] - (1.0 - share[i])
        (small if share[j] < 1.0 else large).append(j)
    return share, alias


def _identity(r: Callable[[], float], c: _Customer, kind: str) -> dict:
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
    ids = {"crm": crm} if crm else {}
    customer = {"customer_id": None, "email": email, "phone": phone, "external_ids": ids}
    if r() < 0.1:
        customer["attributes"] = dict(c.attributes)
    return customer


def _uuid4(bits: int) -> str:
    """str(uuid.UUID(int=bits, version=4)) without building a UUID: the bench draws a million."""
    h = "%032x" % (bits & ~(0xF000 << 64 | 0xC000 << 48) | (0x4000 << 64 | 0x8000 << 48))
    return "-".join((h[:8], h[8:12], h[12:16], h[16:20], h[20:]))


def _clock(end: datetime, days: int) -> Callable[[float], str]:
    """Window fraction -> ISO-8601 UTC string by table look-up, not datetime.isoformat: the bench
    stamps a million events."""
    base = int(end.timestamp()) - days * 86400
    first_day = base // 86400
    dates = [
        datetime.fromtimestamp((first_day + d) * 86400, UTC).strftime("%Y-%m-%dT")
        for d in range(days + 2)
    ]

    def stamp(fraction: float) -> str:
        day, second = divmod(base + int(fraction * days * DAY), 86400)
        return dates[day - first_day] + HH_MM[second // 60] + SS[second % 60]

    return stamp


def _any(r: Callable[[], float], seq: Sequence[T]) -> T:
    return seq[int(r() * len(seq))]


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


class _Touchpoints:
    """Payload builders, one per type, and follow-ups, sharing the event stream's random
    generator. A builder gets the customer, the event's time (a fraction of the window), its
    number and id; a follow-up is due at a later time and gets what its event left it."""

    def __init__(self, spec: SampleSpec, rng: Random) -> None:
        self.rng, self.seed, self.days = rng, spec.seed, spec.days
        # waits come from a generator of their own, so that every other value stays what it was
        self.waits = Random(f"{spec.seed}:waits")
        self.agents = Random(f"{spec.seed}:agents")  # replies and call-backs
        self.loyalty = Random(f"{spec.seed}:leaving")
        self.prices = [max(99, round(rng.lognormvariate(3.0, 0.8) * 100)) for _ in range(400)]
        self.pending: list[tuple] = []  # (due, ticket, customer, follow-up, its detail)
        self.tickets = count()
        self.grudge = GRUDGE_DAYS / spec.days  # the half-life of a grievance, in windows

    def payload(self, kind: str, c: _Customer, t: float, n: int, event_id: str) -> tuple[str, dict]:
        """The payload of the `n`th event, and its type: the drawn one or what fits the customer."""
        if kind == "order" and t - c.last_order < c.order_gap:
            kind = "web_visit"  # a buyer browses between purchases
        elif kind == "call" and not c.phone and c.emails:
            kind = "email"
        elif kind == "email" and not c.emails and c.phone:
            kind = "call"
        return kind, getattr(self, kind)(c, t, n, event_id)

    def later(self, due: float, c: _Customer, follow_up: Callable, detail: Any) -> None:
        """Emit ``follow_up(c, due, detail)`` once the stream reaches ``due`` (never, if that is
        past the window's end or in the customer's pause: nothing reaches them then)."""
        if not c.pause <= due < c.resume:
            heapq.heappush(self.pending, (due, next(self.tickets), c, follow_up, detail))

    def after(self, t: float, seconds: float) -> float:
        return t + seconds / (self.days * DAY)

    def web_visit(self, c: _Customer, t: float, n: int, event_id: str) -> dict:
        rng, r = self.rng, self.rng.random
        views = 1 + int(rng.expovariate(0.4))
        path = f"/products/sku-{100 + int(r() * 400)}" if r() < 0.5 else _any(r, PAGES)
        return {
            "url": "https://shop.example.com" + path,
            "page_views": views,
            "duration_s": round(views * rng.expovariate(1 / 40), 1),
            "referrer": _any(r, REFERRERS),
            "session_id": f"s-{rng.getrandbits(48):012x}",
        }

    def email(self, c: _Customer, t: float, n: int, event_id: str) -> dict:
        r = self.rng.random
        if r() < 0.12:
            action = "replied" if r() < 0.6 else "sent"
            subject = "Re: your order" if action == "replied" else "Question about my order"
            self.answer_later("email", c, t, subject)
            return {"direction": "inbound", "action": action, "subject": subject, "campaign": None}
        campaign = _any(r, CAMPAIGNS)
        return {
            "direction": "outbound",
            "action": EMAIL_ACTIONS[bisect(EMAIL_CUM, r())],
            "subject": campaign.replace("-", " ").capitalize() if campaign else "Your order",
            "campaign": campaign,
        }

    def call(self, c: _Customer, t: float, n: int, event_id: str) -> dict:
        r = self.rng.random
        outcome = CALL_OUTCOMES[bisect(CALL_CUM, r())]
        talked = outcome not in ("missed", "voicemail")
        seconds = 0.0 if outcome == "missed" else 10.0 + 50.0 * r()
        if talked:
            seconds = min(self.rng.lognormvariate(5.3, 0.8), DAY)
            if r() < CSAT_AFTER["call"]:  # the survey after the call, answered within hours
                due = self.after(t, seconds + 300.0 + self.rng.expovariate(1 / 3600))
                self.later(due, c, self.csat, ({"call_event_id": event_id}, CALL_LIFT[outcome]))
        inbound = r() < 0.75
        if inbound and not talked or outcome == "callback_requested":
            self.answer_later("call", c, t, None)
        payload = {
            "direction": "inbound" if inbound else "outbound",
            "duration_s": round(seconds, 1),
            "outcome": outcome,
            "agent": f"agent-{1 + int(r() * 40):02d}" if talked else None,
            "topic": _any(r, TOPICS) if talked else None,
        }
        w = self.waits
        if w.random() < CALL_V2_SHARE:
            if payload["direction"] == "inbound":
                wait = w.expovariate(1 / QUEUE_MEAN_S[not talked])
            else:
                wait = w.uniform(*RING_S[not talked])
            payload["wait_s"] = round(min(wait, DAY), 1)
        return payload

    def order(self, c: _Customer, t: float, n: int, event_id: str) -> dict:
        if c.last_order >= 0.0 and self.loyalty.random() < c.drop:
            c.dies = t  # their last order: they leave for good
        c.last_order, r = t, self.rng.random
        lines: dict[int, int] = {}  # sku -> quantity
        bulk = max(1, round(c.basket))  # big spenders buy more lines and more of each
        for _ in range(1 + min(int(self.rng.expovariate(1.2) * c.basket), 9)):
            sku = int(len(self.prices) * r() ** 2)  # popular items first
            lines[sku] = lines.get(sku, 0) + bulk * (1 if r() < 0.8 else 2 + int(r() * 3))
        x, order_id = r(), f"O-{self.seed}-{n:07d}"
        status = "placed" if x < 0.92 else "cancelled" if x < 0.97 else "refunded"
        if r() < CSAT_AFTER["order"]:  # the survey after delivery, answered days later
            due = self.after(t, DAY + self.rng.expovariate(1 / (2 * DAY)))
            self.later(due, c, self.csat, ({"order_id": order_id}, ORDER_LIFT[status]))
        return {
            "order_id": order_id,
            "amount": _money(sum(q * self.prices[s] for s, q in lines.items())),
            "currency": c.currency if r() < 0.96 else _any(r, ("EUR", "GBP", "USD")),
            "items": [
                {"sku": f"SKU-{100 + s}", "quantity": q, "unit_price": _money(self.prices[s])}
                for s, q in lines.items()
            ],
            "status": status,
        }

    def complaint(self, c: _Customer, t: float, n: int, event_id: str) -> dict:
        rng, r = self.rng, self.rng.random
        category, severity = _any(r, tuple(COMPLAINTS)), SEVERITIES[bisect(SEVERITY_CUM, r())]
        cid = f"K-{self.seed}-{n:07d}"
        c.grievance, c.aggrieved_at = self.grievance(c, t) + GRIEVANCE[severity], t
        if r() < 0.6:  # resolved after an hour plus a few days, if still inside the window
            due = self.after(t, 3600.0 + rng.expovariate(1 / (4 * DAY)))
            self.later(due, c, self.resolution, (cid, category, severity))
        return self.complaint_payload(cid, category, severity, "open")

    def resolution(self, c: _Customer, t: float, detail: tuple[str, str, str]) -> tuple[str, dict]:
        cid, category, severity = detail
        c.grievance, c.aggrieved_at = self.grievance(c, t) / 2, t
        if self.rng.random() < CSAT_AFTER["complaint"]:
            due = self.after(t, 3600.0 + self.rng.expovariate(1 / DAY))
            self.later(due, c, self.csat, ({"complaint_id": cid}, 0.05))
        return "complaint", self.complaint_payload(cid, category, severity, "resolved")

    @staticmethod
    def complaint_payload(cid: str, category: str, severity: str, status: str) -> dict:
        text = COMPLAINTS[category] if status == "open" else RESOLVED
        payload = {"complaint_id": cid, "category": category, "severity": severity}
        return payload | {"text": text, "status": status}

    def feedback(self, c: _Customer, t: float, n: int, event_id: str) -> dict:
        """An answer to the occasional NPS survey ("how likely are you to recommend us?")."""
        return self.answer(c, t, "nps", {}, 0.0)

    def answer_later(self, kind: str, c: _Customer, t: float, subject: str | None) -> None:
        share, mean_s = ANSWERED[kind]
        a = self.agents
        if a.random() < share:
            self.later(self.after(t, 600.0 + a.expovariate(1 / mean_s)), c, self.agent_answer,
                       (kind, subject))

    def agent_answer(self, c: _Customer, t: float, detail: tuple[str, str | None]) -> tuple[str, dict]:
        """An agent's reply to an inbound e-mail, or a call back to a caller not reached."""
        kind, subject = detail
        a = self.agents
        if kind == "email":
            return "email", {"direction": "outbound", "action": "sent",
                             "subject": f"Re: {subject}", "campaign": None}
        return "call", {"direction": "outbound", "duration_s": round(60 + a.expovariate(1 / 180), 1),
                        "outcome": "answered", "agent": f"agent-{1 + int(a.random() * 40):02d}",
                        "topic": _any(a.random, TOPICS)}

    def csat(self, c: _Customer, t: float, detail: tuple[dict, float]) -> tuple[str, dict]:
        """An answer to the CSAT survey after an order, a call or a resolved complaint."""
        about, lift = detail
        return "feedback", self.answer(c, t, "csat", about, lift)

    def grievance(self, c: _Customer, t: float) -> float:
        """What ``c``'s complaints still weigh at ``t`` (follow-ups come a little out of order)."""
        if not c.grievance:
            return 0.0
        return c.grievance * 0.5 ** (max(0.0, t - c.aggrieved_at) / self.grudge)

    def answer(self, c: _Customer, t: float, scale: str, about: dict, lift: float) -> dict:
        r = self.rng.random
        feeling = c.disposition - self.grievance(c, t) + lift + 0.3 * (r() - 0.5)
        if scale == "csat":
            score = min(5, max(1, 1 + int(feeling * 5)))
            tone = 0 if score <= 2 else 1 if score == 3 else 2
        else:
            score = min(10, max(0, int(feeling * 11)))
            tone = 0 if score <= 6 else 1 if score <= 8 else 2
        text = _any(r, REMARKS[tone]) if r() < REMARK_SHARE[tone] else None
        payload = {"scale": scale, "score": score, "text": text, "order_id": None,
                   "complaint_id": None, "call_event_id": None}
        return payload | about
