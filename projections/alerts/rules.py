"""Churn alert rules, pure: which conditions hold for one customer at a time, why, and when the
next one would start to hold if nothing happened.

A customer's alert facts (``Facts``, a JSON document) keep what the rules need of their history:
inbound contacts not yet answered and the latest answer, complaints, bad satisfaction scores,
weekly engagement. ``fold`` adds one touchpoint; facts do not depend on the order touchpoints
arrive in (a late answer still answers what came before it). ``conditions`` evaluates every rule
at a time, by event time in a replay and by the clock live, with the customer's value (tier,
P(alive), purchase rhythm: ``Standing``); ``next_due`` says when a rule that waits on time would
fire, for the timer. ``decide`` compares what holds with the alerts open: a condition that holds
opens an alert once (deterministic id from customer, rule and the condition's key; not again
within the suppression window), and an alert whose condition no longer holds is resolved with
the event that removed it, except dissatisfaction, which only a person resolves.

Rules (thresholds in ``Rules``, from the settings):
- ``unanswered``: an inbound email, call or complaint with no outbound answer within the service
  level of the customer's tier;
- ``complaint``: a complaint of high or critical severity, open;
- ``complaints``: N complaints filed within a window, until each of them is resolved;
- ``complaint_overdue``: a complaint open longer than its severity's service level;
- ``silence``: no purchase for k times the customer's own mean time between purchase days;
- ``model``: P(alive) below a threshold for a customer at or above a configured tier;
- ``dissatisfaction``: a CSAT of 1-2 or an NPS detractor score (a good score closes nothing);
- ``engagement``: web visits and e-mail engagement in the recent weeks well below the customer's
  own weekly baseline.
Severity starts at each rule's level and rises with the tier.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

HOUR_S = 3600.0
DAY_S = 86400.0
WEEK_S = 7 * DAY_S
SEVERITIES = ("low", "medium", "high", "critical")
NAMESPACE = uuid.UUID("6f1c2b8e-93a4-5d0e-b7a2-4c1f0e9d8a31")
KEEP_INBOUND = 50  # unanswered inbound contacts kept (the oldest is the one that counts)
KEEP_FEEDBACK = 20
KEEP_COMPLAINTS = 20  # beyond this, resolved complaints older than the window are dropped
BASE = {"unanswered": "medium", "complaint": "high", "complaints": "high",
        "complaint_overdue": "medium", "silence": "medium", "model": "medium",
        "dissatisfaction": "medium", "engagement": "low"}
PEOPLE_RESOLVE = frozenset({"dissatisfaction"})  # never resolved by an event
# one alert per episode: while one is open, the condition holding again is the same alert
EPISODIC = frozenset({"model", "engagement"})


@dataclass(frozen=True)
class Rules:
    tiers: tuple[str, ...] = ("platinum", "gold", "silver", "bronze", "unranked", "prospect")
    answer_within_h: dict[str, float] = field(default_factory=lambda: {
        "platinum": 2.0, "gold": 4.0, "silver": 12.0, "bronze": 24.0, "unranked": 48.0,
        "prospect": 48.0})
    complaint_severities: tuple[str, ...] = ("high", "critical")
    complaints_n: int = 3
    complaints_window_days: float = 30.0
    complaint_open_h: dict[str, float] = field(default_factory=lambda: {
        "low": 168.0, "medium": 72.0, "high": 24.0, "critical": 8.0})
    silence_k: float = 3.0
    silence_min_days: int = 3  # purchase days before a customer has a rhythm of their own
    model_p_alive: float = 0.3
    model_min_tier: str = "gold"
    csat_max: int = 2
    nps_max: int = 6
    engagement_weeks: int = 4  # the recent window
    engagement_baseline_weeks: int = 12  # the weeks before it
    engagement_ratio: float = 0.3
    engagement_min_per_week: float = 1.0  # a baseline below this is no habit to lose
    suppress_h: float = 168.0  # an episodic rule (model, engagement) fires once within it
    stale_days: float = 30.0  # a condition that began to hold longer ago than this is history
    raise_tiers: int = 2  # the top tiers raise severity: the first by this many levels, ...

    @classmethod
    def from_settings(cls, settings: Any) -> Rules:
        """The thresholds of ``services.config.Settings`` (``alert_*``); the tiers are the value
        pyramid's, from the top, then unranked buyers and prospects."""
        s = settings
        return cls(tiers=(*s.value_tiers, "unranked", "prospect"),
                   answer_within_h=dict(s.alert_answer_within_h),
                   complaint_severities=tuple(s.alert_complaint_severities),
                   complaints_n=s.alert_complaints_n,
                   complaints_window_days=s.alert_complaints_window_days,
                   complaint_open_h=dict(s.alert_complaint_open_h), silence_k=s.alert_silence_k,
                   model_p_alive=s.alert_model_p_alive, model_min_tier=s.alert_model_min_tier,
                   csat_max=s.alert_csat_max, nps_max=s.alert_nps_max,
                   engagement_ratio=s.alert_engagement_ratio, suppress_h=s.alert_suppress_h,
                   stale_days=s.alert_stale_days)

    def answer_within_s(self, tier: str) -> float:
        return self.answer_within_h.get(tier, max(self.answer_within_h.values())) * HOUR_S

    def severity(self, rule: str, tier: str, base: str | None = None) -> str:
        level = SEVERITIES.index(base or BASE[rule])
        rank = self.tiers.index(tier) if tier in self.tiers else len(self.tiers)
        return SEVERITIES[min(level + max(self.raise_tiers - rank, 0), len(SEVERITIES) - 1)]

    def at_or_above(self, tier: str, floor: str) -> bool:
        return tier in self.tiers and self.tiers.index(tier) <= self.tiers.index(floor)


class Touch(NamedTuple):
    """What the rules read of a touchpoint (times in epoch seconds)."""

    event_id: str
    type: str
    at: float
    inbound: bool = False  # asks for an answer: an inbound e-mail or call, a complaint
    answer: bool = False  # answers the customer: an outbound e-mail sent or a call that reached them
    engaged: bool = False  # a web visit, or the customer opened, clicked or replied to an e-mail
    complaint_id: str | None = None
    severity: str | None = None
    resolved: bool = False
    scale: str | None = None
    score: int | None = None


def read(event: dict[str, Any]) -> Touch:
    """The rules' reading of a touchpoint document; raises for one it cannot read."""
    kind, p = event["type"], event["payload"]
    at = datetime.fromisoformat(event["occurred_at"])
    if at.tzinfo is None:
        raise ValueError("occurred_at without a time zone")
    t, eid = at.timestamp(), event["event_id"]
    if kind == "email":  # a campaign is no answer: a personal message (no campaign) is
        inbound, wrote = p["direction"] == "inbound", p["action"] in ("sent", "delivered", "replied")
        return Touch(eid, kind, t, inbound=inbound and wrote,
                     answer=not inbound and wrote and not p.get("campaign"),
                     engaged=p["action"] in ("opened", "clicked") or (inbound and p["action"] == "replied"))
    if kind == "call":  # a conversation answers, whoever called; a caller not reached waits
        talked = p["outcome"] in ("answered", "resolved", "escalated")
        return Touch(eid, kind, t, inbound=p["direction"] == "inbound" and not talked,
                     answer=talked)
    if kind == "complaint":
        resolved = p.get("status") == "resolved"
        return Touch(eid, kind, t, inbound=not resolved, answer=resolved,
                     complaint_id=p["complaint_id"], severity=p["severity"], resolved=resolved)
    if kind == "feedback":
        return Touch(eid, kind, t, scale=p["scale"], score=int(p["score"]))
    if kind == "web_visit":
        return Touch(eid, kind, t, engaged=True)
    return Touch(eid, kind, t)


def new_facts() -> dict[str, Any]:
    return {"inbound": [], "answered": None, "complaints": {}, "feedback": [], "weeks": {}}


def fold(facts: dict[str, Any], t: Touch, rules: Rules) -> None:
    """Add one touchpoint to the facts, in place (any arrival order gives the same facts)."""
    if t.answer and (facts["answered"] is None or t.at > facts["answered"][0]):
        facts["answered"] = [t.at, t.event_id, t.type]
    if t.inbound:
        facts["inbound"].append([t.at, t.event_id, t.type])
    answered = facts["answered"][0] if facts["answered"] else None
    facts["inbound"] = sorted({e[1]: e for e in facts["inbound"]
                               if answered is None or e[0] > answered}.values())[-KEEP_INBOUND:]
    if t.complaint_id is not None:
        c = facts["complaints"].setdefault(t.complaint_id, {"filed": t.at, "severity": t.severity,
                                                            "resolved": None, "events": []})
        c["filed"] = min(c["filed"], t.at) if not t.resolved else c["filed"]
        if t.resolved:
            if c["resolved"] is None or t.at < c["resolved"][0]:
                c["resolved"] = [t.at, t.event_id]
        elif SEVERITIES.index(t.severity or "low") > SEVERITIES.index(c["severity"] or "low"):
            c["severity"] = t.severity
        if t.event_id not in c["events"]:
            c["events"] = sorted([*c["events"], t.event_id])
        if len(facts["complaints"]) > KEEP_COMPLAINTS:  # resolved ones outside any window
            horizon = max(c["filed"] for c in facts["complaints"].values()) \
                - rules.complaints_window_days * DAY_S
            facts["complaints"] = {k: c for k, c in facts["complaints"].items()
                                   if c["resolved"] is None or c["filed"] >= horizon}
    if t.scale is not None and t.score is not None and _unhappy(t.scale, t.score, rules):
        facts["feedback"] = sorted({f[1]: f for f in [*facts["feedback"],
                                                     [t.at, t.event_id, t.scale, t.score]]}.values())
        facts["feedback"] = facts["feedback"][-KEEP_FEEDBACK:]
    if t.engaged:
        week = str(int(t.at // WEEK_S))
        facts["weeks"][week] = facts["weeks"].get(week, 0) + 1
        keep = rules.engagement_weeks + rules.engagement_baseline_weeks + 1
        for w in sorted(facts["weeks"], key=int)[:-keep]:
            del facts["weeks"][w]


def _unhappy(scale: str, score: int, rules: Rules) -> bool:
    return score <= (rules.csat_max if scale == "csat" else rules.nps_max)


class Standing(NamedTuple):
    """What the value projection knows of the customer, as of the evaluation."""

    tier: str = "prospect"
    p_alive: float | None = None
    purchase_days: int = 0
    first_purchase: float | None = None  # epoch seconds of the first and last purchase days
    last_purchase: float | None = None


class Condition(NamedTuple):
    rule: str
    key: str  # with the customer and the rule, the alert's identity
    severity: str
    reason: str
    evidence: tuple[str, ...]  # the event ids behind it
    since: float  # when it began to hold


def conditions(facts: dict[str, Any], standing: Standing, rules: Rules, now: float) -> list[Condition]:
    """Every condition that holds at ``now``, with its reason."""
    out: list[Condition] = []
    tier = standing.tier
    sev = rules.severity
    if facts["inbound"]:
        at, eid, kind = facts["inbound"][0]
        due = at + rules.answer_within_s(tier)
        if now >= due:
            waiting = tuple(e[1] for e in facts["inbound"])
            out.append(Condition(
                "unanswered", eid, sev("unanswered", tier),
                f"{_article(kind)} {kind} from a {tier} customer has waited "
                f"{_span(now - at)} for an answer (service level {_span(rules.answer_within_s(tier))})"
                + (f"; {len(waiting) - 1} more contact(s) since" if len(waiting) > 1 else ""),
                waiting, due))
    filed = sorted((c["filed"], cid) for cid, c in facts["complaints"].items() if c["filed"] <= now)
    for cid, c in facts["complaints"].items():
        if c["filed"] > now or _resolved_by(c, now):
            continue
        if c["severity"] in rules.complaint_severities:
            out.append(Condition("complaint", cid, sev("complaint", tier, c["severity"]),
                                 f"a {c['severity']} complaint ({cid}) is open", tuple(c["events"]),
                                 c["filed"]))
        overdue = c["filed"] + rules.complaint_open_h.get(c["severity"], 72.0) * HOUR_S
        if now >= overdue:
            out.append(Condition("complaint_overdue", cid, sev("complaint_overdue", tier),
                                 f"complaint {cid} ({c['severity']}) has been open "
                                 f"{_span(now - c['filed'])}, past its service level of "
                                 f"{_span(overdue - c['filed'])}",
                                 tuple(c["events"]), overdue))
    window = rules.complaints_window_days * DAY_S
    for i in range(len(filed) - rules.complaints_n + 1):
        group = filed[i:i + rules.complaints_n]
        if group[-1][0] - group[0][0] <= window and \
                any(not _resolved_by(facts["complaints"][cid], now) for _, cid in group):
            ids = tuple(cid for _, cid in group)
            out.append(Condition("complaints", ids[0], sev("complaints", tier),
                                 f"{rules.complaints_n} complaints within "
                                 f"{_span(group[-1][0] - group[0][0])} ({', '.join(ids)})",
                                 tuple(e for cid in ids for e in facts["complaints"][cid]["events"]),
                                 group[-1][0]))
            break
    silence = _silence_due(standing, rules)
    if silence is not None and now >= silence:
        gap = (standing.last_purchase - standing.first_purchase) / (standing.purchase_days - 1)  # type: ignore[operator]
        out.append(Condition("silence", str(int(standing.last_purchase // DAY_S)),  # type: ignore[operator]
                             sev("silence", tier),
                             f"no purchase for {_span(now - standing.last_purchase)} "  # type: ignore[operator]
                             f"({rules.silence_k:g} times this customer's usual {_span(gap)} between "
                             "purchases)", (), silence))
    if (standing.p_alive is not None and standing.p_alive < rules.model_p_alive
            and rules.at_or_above(tier, rules.model_min_tier)):
        out.append(Condition("model", str(int(now // DAY_S)), sev("model", tier),
                             f"P(alive) {standing.p_alive:.2f} is below {rules.model_p_alive:g} for a "
                             f"{tier} customer", (), now))
    for at, eid, scale, score in facts["feedback"]:
        if at <= now:
            out.append(Condition("dissatisfaction", eid, sev("dissatisfaction", tier),
                                 f"{scale.upper()} score {score} (dissatisfied: {scale} at or below "
                                 f"{rules.csat_max if scale == 'csat' else rules.nps_max})", (eid,), at))
    dropped = _engagement(facts, rules, now)
    if dropped is not None:
        started, baseline, recent = dropped
        out.append(Condition("engagement", str(started), sev("engagement", tier),
                             f"{recent:.1f} visits and e-mail engagements a week over the last "
                             f"{rules.engagement_weeks} weeks, against {baseline:.1f} before",
                             (), (started + rules.engagement_weeks) * WEEK_S))
    return out


def _resolved_by(complaint: dict[str, Any], now: float) -> bool:
    return complaint["resolved"] is not None and complaint["resolved"][0] <= now


def _silence_due(standing: Standing, rules: Rules) -> float | None:
    if (standing.purchase_days < rules.silence_min_days or standing.first_purchase is None
            or standing.last_purchase is None):
        return None
    gap = (standing.last_purchase - standing.first_purchase) / (standing.purchase_days - 1)
    return standing.last_purchase + rules.silence_k * max(gap, DAY_S)


def _engagement(facts: dict[str, Any], rules: Rules, now: float) -> tuple[int, float, float] | None:
    """(first recent week, baseline per week, recent per week) when engagement dropped."""
    this_week = int(now // WEEK_S)
    first_recent = this_week - rules.engagement_weeks  # whole weeks only: this one is not over
    weeks = {int(w): n for w, n in facts["weeks"].items()}
    baseline = sum(n for w, n in weeks.items()
                   if first_recent - rules.engagement_baseline_weeks <= w < first_recent)
    baseline /= rules.engagement_baseline_weeks
    recent = sum(n for w, n in weeks.items() if first_recent <= w < this_week) / rules.engagement_weeks
    if baseline >= rules.engagement_min_per_week and recent < rules.engagement_ratio * baseline:
        return first_recent, baseline, recent
    return None


def next_due(facts: dict[str, Any], standing: Standing, rules: Rules, now: float) -> float | None:
    """The earliest time after ``now`` at which a condition that waits on time starts to hold,
    if nothing happens before (None: no such condition)."""
    dues = []
    if facts["inbound"]:
        dues.append(facts["inbound"][0][0] + rules.answer_within_s(standing.tier))
    for c in facts["complaints"].values():
        if c["resolved"] is None:
            dues.append(c["filed"] + rules.complaint_open_h.get(c["severity"], 72.0) * HOUR_S)
    silence = _silence_due(standing, rules)
    if silence is not None:
        dues.append(silence)
    if sum(facts["weeks"].values()) >= rules.engagement_min_per_week * rules.engagement_baseline_weeks:
        dues.append((int(now // WEEK_S) + 1) * WEEK_S)  # a habit to lose: weighed at week ends
    later = [d for d in dues if d > now]
    return min(later) if later else None


def alert_id(customer_id: str, rule: str, key: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{customer_id}\x1f{rule}\x1f{key}"))


class Opened(NamedTuple):
    alert_id: str
    condition: Condition


class Resolved(NamedTuple):
    alert_id: str
    rule: str
    reason: str
    event_id: str | None  # the event that removed the condition (None: time did)


def decide(customer_id: str, holding: list[Condition], open_alerts: dict[str, tuple[str, float]],
           fired: dict[str, float], rules: Rules, now: float,
           cause: Touch | None = None) -> tuple[list[Opened], list[Resolved]]:
    """Alerts to open and to resolve. ``open_alerts``: id -> (rule, since) of the customer's open
    alerts; ``fired``: when each alert id, and each episodic rule (``rule:NAME``), last opened (an
    id fires once; an episodic rule once within the suppression window; ``prune`` keeps it
    short); ``cause``: the touchpoint being folded, if any (named as what removed a
    condition)."""
    window = rules.suppress_h * HOUR_S
    episodes = {rule: aid for aid, (rule, _) in open_alerts.items() if rule in EPISODIC}
    opened, still = [], set()
    for c in holding:
        aid = episodes.get(c.rule) or alert_id(customer_id, c.rule, c.key)
        still.add(aid)
        if aid in open_alerts or now - c.since > rules.stale_days * DAY_S:
            continue  # open already; or it began to hold too long ago to be news
        if c.rule in EPISODIC:
            if now - fired.get(f"rule:{c.rule}", -window) < window:
                continue  # the same rule fired for this customer within the window
        elif aid in fired:
            continue  # one condition (a contact, a complaint, a score, a silence): one alert
        opened.append(Opened(aid, c))
    resolved = []
    for aid, (rule, since) in open_alerts.items():
        if aid in still or rule in PEOPLE_RESOLVE:
            continue
        if cause is not None and cause.at < since:
            reason = (f"{_article(cause.type)} {cause.type} of {_when(cause.at)}, received late, "
                      "shows the condition did not hold")
        elif cause is not None:
            reason = f"{_article(cause.type)} {cause.type} on {_when(cause.at)} removed the condition"
        else:
            reason = "the condition no longer holds"
        resolved.append(Resolved(aid, rule, reason, cause.event_id if cause else None))
    return opened, resolved


def prune(fired: dict[str, float], rules: Rules, now: float) -> dict[str, float]:
    """``fired`` without what can no longer matter: an id opened before the staleness horizon
    belongs to a condition too old to open again, and a rule's window has passed."""
    horizon = now - max(rules.stale_days * DAY_S, rules.suppress_h * HOUR_S)
    return {k: t for k, t in fired.items() if t >= horizon}


class Step(NamedTuple):
    """What one evaluation of a customer decided: the facts, what fired and when the timer next
    looks, to keep; the alerts to open and to resolve, as the store takes them."""

    facts: dict[str, Any]
    fired: dict[str, float]
    due: float | None
    opened: list[dict[str, Any]]
    resolved: list[dict[str, Any]]


REMOVES = ("order",)  # touchpoint types that end a condition without an answer flag


def evaluate(customer_id: str, facts: dict[str, Any] | None, fired: dict[str, float],
             open_alerts: dict[str, tuple[str, float]], standing: Standing, touches: list[Touch],
             rules: Rules, now: float, look_again: float | None = None) -> Step:
    """Fold a customer's new touchpoints (none: time passed) into their facts, then decide at
    ``now`` which alerts open and which resolve. A batch is weighed as a whole (an inbound
    contact answered in the same batch never opens); what removed a condition is named by the
    latest touchpoint that answers, resolves or orders, else the latest. ``look_again``: another
    time the timer should look (when the value projection re-decides the customer)."""
    facts = facts if facts is not None else new_facts()
    for t in touches:
        fold(facts, t, rules)
    cause = None
    if touches:
        removing = [t for t in touches if t.answer or t.type in REMOVES] or touches
        cause = max(removing, key=lambda t: t.at)
    holding = conditions(facts, standing, rules, now)
    opened, resolved = decide(customer_id, holding, open_alerts, fired, rules, now, cause)
    fired = prune(fired, rules, now)
    window = rules.suppress_h * HOUR_S
    rows = []
    for o in opened:
        c = o.condition
        fired[o.alert_id] = now
        if c.rule in EPISODIC:
            fired[f"rule:{c.rule}"] = now
        rows.append({"alert_id": o.alert_id, "customer_id": customer_id, "rule": c.rule,
                     "dedup_key": c.key, "severity": c.severity, "tier": standing.tier,
                     "reason": c.reason, "evidence": list(c.evidence), "since": c.since,
                     "opened_at": now, "suppress_until": now + window})
    ended = [{"alert_id": r.alert_id, "at": now, "reason": r.reason, "event_id": r.event_id}
             for r in resolved]
    due = next_due(facts, standing, rules, now)
    if any(rule == "engagement" for rule, _ in open_alerts.values()):  # ends at a week's end
        look_again = min(look_again or math.inf, (int(now // WEEK_S) + 1) * WEEK_S)
    if look_again is not None and look_again > now:
        due = look_again if due is None else min(due, look_again)
    return Step(facts, fired, due, rows, ended)


def _span(seconds: float) -> str:
    if seconds >= 2 * DAY_S:
        return f"{seconds / DAY_S:.0f} days"
    if seconds >= 2 * HOUR_S:
        return f"{seconds / HOUR_S:.0f} hours"
    return f"{max(seconds, 0) / 60:.0f} minutes"


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
