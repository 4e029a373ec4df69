"""The churn alert rules, pure: each rule fires, stays quiet and resolves as it should; facts do
not depend on arrival order; timers say when a silent customer's condition starts to hold;
alert ids are deterministic and a suppression window stops a second firing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from projections.alerts.rules import (
    DAY_S,
    HOUR_S,
    WEEK_S,
    Rules,
    Standing,
    Touch,
    alert_id,
    conditions,
    decide,
    fold,
    new_facts,
    next_due,
    prune,
    read,
)

RULES = Rules()
BRONZE = Standing("bronze")
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC).timestamp()  # a Monday
CUSTOMER = "7b0c5a62-3c39-5c53-8a3e-2f3d39f1c0a1"


def facts_of(*touches: Touch) -> dict:
    facts = new_facts()
    for t in touches:
        fold(facts, t, RULES)
    return facts


def holding(facts: dict, now: float, standing: Standing = BRONZE) -> dict[str, list]:
    out: dict[str, list] = {}
    for c in conditions(facts, standing, RULES, now):
        out.setdefault(c.rule, []).append(c)
    return out


def inbound(eid: str, at: float, kind: str = "email") -> Touch:
    return Touch(eid, kind, at, inbound=True)


def answer(eid: str, at: float, kind: str = "email") -> Touch:
    return Touch(eid, kind, at, answer=True)


def complaint(eid: str, at: float, cid: str, severity: str = "high", resolved: bool = False) -> Touch:
    return Touch(eid, "complaint", at, inbound=not resolved, answer=resolved, complaint_id=cid,
                 severity=severity, resolved=resolved)


def test_reading_touchpoints() -> None:
    def doc(kind: str, **payload) -> dict:
        return {"event_id": "e", "type": kind, "occurred_at": "2026-05-04T09:00:00+00:00",
                "payload": payload}
    assert read(doc("email", direction="inbound", action="sent")).inbound
    assert read(doc("email", direction="outbound", action="sent")).answer
    assert read(doc("email", direction="outbound", action="opened")).engaged
    assert not read(doc("email", direction="outbound", action="opened")).answer
    assert read(doc("call", direction="inbound", outcome="missed")).inbound
    assert not read(doc("call", direction="outbound", outcome="missed")).answer
    assert read(doc("call", direction="outbound", outcome="answered")).answer
    assert read(doc("web_visit", url="https://x.example/", duration_s=3)).engaged
    c = read(doc("complaint", complaint_id="K1", category="c", severity="high", text="t",
                 status="resolved"))
    assert c.resolved and c.answer and not c.inbound
    f = read(doc("feedback", scale="nps", score=3))
    assert (f.scale, f.score) == ("nps", 3)


def test_an_unanswered_contact_fires_after_its_tiers_service_level() -> None:
    facts = facts_of(inbound("in-1", T0))
    assert "unanswered" not in holding(facts, T0 + 23 * HOUR_S)  # bronze: 24 hours
    late = holding(facts, T0 + 25 * HOUR_S)["unanswered"][0]
    assert late.key == "in-1" and late.evidence == ("in-1",) and late.since == T0 + 24 * HOUR_S
    assert "waited 25 hours" in late.reason and "bronze" in late.reason
    gold = holding(facts, T0 + 5 * HOUR_S, Standing("gold"))["unanswered"][0]  # gold: 4 hours
    assert gold.severity == "high"
    assert holding(facts, T0 + 5 * HOUR_S, Standing("platinum"))["unanswered"][0].severity == "critical"
    assert late.severity == "medium"
    assert "unanswered" not in holding(facts_of(inbound("in-1", T0), answer("out-1", T0 + HOUR_S)),
                                       T0 + 30 * HOUR_S)


def test_facts_do_not_depend_on_arrival_order() -> None:
    touches = [inbound("in-1", T0), answer("out-1", T0 + HOUR_S), inbound("in-2", T0 + 2 * HOUR_S),
               complaint("c-1", T0 + 3 * HOUR_S, "K1"), complaint("c-2", T0 + 9 * HOUR_S, "K1",
                                                                  resolved=True),
               Touch("f-1", "feedback", T0 + 4 * HOUR_S, scale="csat", score=1),
               Touch("w-1", "web_visit", T0 + 5 * HOUR_S, engaged=True),
               inbound("in-3", T0 + 10 * HOUR_S, "call"), answer("out-2", T0 + 8 * HOUR_S, "call")]
    expected = facts_of(*touches)
    for seed in range(20):
        shuffled = touches[:]
        random.Random(seed).shuffle(shuffled)
        assert facts_of(*shuffled) == expected
    assert [e[1] for e in expected["inbound"]] == ["in-3"]  # in-1 and in-2 were answered


def test_a_late_answer_resolves_and_says_the_condition_did_not_hold() -> None:
    facts = facts_of(inbound("in-1", T0))
    now = T0 + 30 * HOUR_S
    opened, _ = decide(CUSTOMER, conditions(facts, Standing("bronze"), RULES, now), {}, {}, RULES, now)
    assert [o.condition.rule for o in opened] == ["unanswered"]
    aid, since = opened[0].alert_id, opened[0].condition.since
    reply = answer("out-1", T0 + 2 * HOUR_S)  # sent within the service level, received late
    fold(facts, reply, RULES)
    again, resolved = decide(CUSTOMER, conditions(facts, Standing("bronze"), RULES, now + 60),
                             {aid: ("unanswered", since)}, {aid: now}, RULES, now + 60, cause=reply)
    assert again == [] and [(r.alert_id, r.event_id) for r in resolved] == [(aid, "out-1")]
    assert "did not hold" in resolved[0].reason
    # an answer after the service level removes the condition instead
    reply = answer("out-2", T0 + 28 * HOUR_S)
    _, resolved = decide(CUSTOMER, [], {aid: ("unanswered", since)}, {aid: now}, RULES, now, reply)
    assert "removed the condition" in resolved[0].reason


def test_complaint_rules() -> None:
    high = holding(facts_of(complaint("c-1", T0, "K1", "high")), T0 + 60)
    assert high["complaint"][0].key == "K1" and high["complaint"][0].severity == "high"
    assert "complaint" not in holding(facts_of(complaint("c-1", T0, "K1", "low")), T0 + 60)
    resolved = facts_of(complaint("c-1", T0, "K1"), complaint("c-2", T0 + HOUR_S, "K1", resolved=True))
    assert "complaint" not in holding(resolved, T0 + 2 * HOUR_S)
    overdue = facts_of(complaint("c-1", T0, "K1", "medium"))
    assert "complaint_overdue" not in holding(overdue, T0 + 71 * HOUR_S)
    assert holding(overdue, T0 + 73 * HOUR_S)["complaint_overdue"][0].since == T0 + 72 * HOUR_S
    three = facts_of(*(complaint(f"c-{i}", T0 + i * 10 * DAY_S, f"K{i}", "low") for i in range(3)))
    assert holding(three, T0 + 21 * DAY_S)["complaints"][0].key == "K0"
    spread = facts_of(*(complaint(f"c-{i}", T0 + i * 20 * DAY_S, f"K{i}", "low") for i in range(3)))
    assert "complaints" not in holding(spread, T0 + 41 * DAY_S)


def test_silence_is_measured_against_the_customers_own_rhythm() -> None:
    regular = Standing("silver", purchase_days=4, first_purchase=T0, last_purchase=T0 + 30 * DAY_S)
    facts = new_facts()
    assert "silence" not in holding(facts, T0 + 59 * DAY_S, regular)  # 3 x 10 days after the last
    quiet = holding(facts, T0 + 61 * DAY_S, regular)["silence"][0]
    assert quiet.since == T0 + 60 * DAY_S and "10 days between purchases" in quiet.reason
    assert next_due(facts, regular, RULES, T0 + 31 * DAY_S) == T0 + 60 * DAY_S
    newcomer = Standing("silver", purchase_days=2, first_purchase=T0, last_purchase=T0 + DAY_S)
    assert "silence" not in holding(facts, T0 + 400 * DAY_S, newcomer)  # no rhythm of its own yet


def test_the_model_rule_watches_valuable_customers_only() -> None:
    facts = new_facts()
    assert "model" in holding(facts, T0, Standing("gold", p_alive=0.2))
    assert "model" not in holding(facts, T0, Standing("silver", p_alive=0.2))
    assert "model" not in holding(facts, T0, Standing("platinum", p_alive=0.5))


def test_dissatisfaction_is_closed_by_a_person_not_by_a_good_score() -> None:
    facts = facts_of(Touch("f-1", "feedback", T0, scale="csat", score=2))
    bad = holding(facts, T0 + 1)["dissatisfaction"][0]
    assert bad.evidence == ("f-1",)
    assert "dissatisfaction" not in holding(facts_of(Touch("f-2", "feedback", T0, scale="csat", score=4)),
                                            T0 + 1)
    assert "dissatisfaction" in holding(facts_of(Touch("f-3", "feedback", T0, scale="nps", score=6)), T0 + 1)
    good = Touch("f-4", "feedback", T0 + DAY_S, scale="csat", score=5)
    fold(facts, good, RULES)
    aid = alert_id(CUSTOMER, "dissatisfaction", "f-1")
    _, resolved = decide(CUSTOMER, [], {aid: ("dissatisfaction", T0)}, {aid: T0}, RULES,
                         T0 + DAY_S, good)
    assert resolved == []


def test_engagement_drop_against_the_customers_own_baseline() -> None:
    week0 = int(T0 // WEEK_S)
    habit = [Touch(f"w-{w}-{i}", "web_visit", (week0 + w) * WEEK_S + i * 3600, engaged=True)
             for w in range(12) for i in range(3)]
    facts = facts_of(*habit)
    now = (week0 + 16) * WEEK_S + 60  # four whole weeks without a visit
    drop = holding(facts, now)["engagement"][0]
    assert "0.0 visits" in drop.reason and "against 3.0" in drop.reason
    # it shows when the last whole week closes, so it is news then, late in a week too
    assert drop.since == (week0 + 16) * WEEK_S
    later = now + 6 * DAY_S
    assert decide(CUSTOMER, conditions(facts, BRONZE, RULES, later), {}, {}, RULES, later)[0]
    kept = facts_of(*habit, *(Touch(f"r-{w}", "web_visit", (week0 + w) * WEEK_S + 7200, engaged=True)
                              for w in range(12, 16) for _ in range(2)))
    assert "engagement" not in holding(kept, now)


def test_ids_are_deterministic_and_suppression_stops_a_second_firing() -> None:
    assert alert_id(CUSTOMER, "unanswered", "in-1") == alert_id(CUSTOMER, "unanswered", "in-1")
    assert alert_id(CUSTOMER, "unanswered", "in-1") != alert_id(CUSTOMER, "unanswered", "in-2")
    facts = facts_of(Touch("f-1", "feedback", T0, scale="csat", score=1))
    held = conditions(facts, Standing("bronze"), RULES, T0 + 1)
    aid = alert_id(CUSTOMER, "dissatisfaction", "f-1")
    opened, _ = decide(CUSTOMER, held, {}, {}, RULES, T0 + 1)
    assert [o.alert_id for o in opened] == [aid]
    # resolved by a person an hour after it fired: the same condition never fires again
    for later in (T0 + HOUR_S, T0 + RULES.suppress_h * HOUR_S + 1, T0 + 29 * DAY_S):
        opened, _ = decide(CUSTOMER, held, {}, {aid: T0}, RULES, later)
        assert opened == []


def test_a_condition_that_began_long_ago_is_history_not_news() -> None:
    facts = facts_of(Touch("f-1", "feedback", T0, scale="csat", score=1))
    held = conditions(facts, BRONZE, RULES, T0 + 31 * DAY_S)
    assert [c.rule for c in held] == ["dissatisfaction"]
    assert decide(CUSTOMER, held, {}, {}, RULES, T0 + 31 * DAY_S)[0] == []
    # what has fired is kept as long as it could matter, then forgotten
    fired = {"a": T0, "rule:model": T0 + 20 * DAY_S}
    assert prune(fired, RULES, T0 + 25 * DAY_S) == fired
    assert prune(fired, RULES, T0 + 31 * DAY_S) == {"rule:model": T0 + 20 * DAY_S}


def test_campaigns_do_not_answer_and_conversations_do() -> None:
    def doc(kind: str, **payload) -> dict:
        return {"event_id": "e", "type": kind, "occurred_at": "2026-05-04T09:00:00+00:00",
                "payload": payload}
    assert not read(doc("email", direction="outbound", action="sent", campaign="spring-sale")).answer
    assert read(doc("email", direction="outbound", action="sent", campaign=None)).answer
    reached = read(doc("call", direction="inbound", outcome="answered"))
    assert reached.answer and not reached.inbound
    waiting = read(doc("call", direction="inbound", outcome="callback_requested"))
    assert waiting.inbound and not waiting.answer


def test_an_episode_stays_one_alert_while_it_holds() -> None:
    gold = Standing("gold", p_alive=0.1)
    first = conditions(new_facts(), gold, RULES, T0)
    opened, _ = decide(CUSTOMER, first, {}, {}, RULES, T0)
    aid = opened[0].alert_id
    later = conditions(new_facts(), gold, RULES, T0 + 3 * DAY_S)  # another day: another key
    again, resolved = decide(CUSTOMER, later, {aid: ("model", T0)}, {aid: T0}, RULES, T0 + 3 * DAY_S)
    assert again == [] and resolved == []
    _, resolved = decide(CUSTOMER, [], {aid: ("model", T0)}, {aid: T0}, RULES, T0 + 4 * DAY_S)
    assert [r.event_id for r in resolved] == [None]  # time (a new figure), not an event
    # a new episode within the suppression window of the last one does not fire
    opened, _ = decide(CUSTOMER, later, {}, {aid: T0, "rule:model": T0}, RULES, T0 + 5 * DAY_S)
    assert opened == []


def test_timers_give_the_earliest_condition_waiting_on_time() -> None:
    facts = facts_of(inbound("in-1", T0), complaint("c-1", T0 + HOUR_S, "K1", "critical"))
    due = next_due(facts, Standing("bronze"), RULES, T0)
    assert due == T0 + HOUR_S + 8 * HOUR_S  # the critical complaint's service level comes first
    assert next_due(facts, Standing("platinum"), RULES, T0) == T0 + 2 * HOUR_S  # the answer's
    assert next_due(new_facts(), Standing("bronze"), RULES, T0) is None
    when = datetime.fromtimestamp(due, UTC) - datetime.fromtimestamp(T0, UTC)
    assert when == timedelta(hours=9)


def test_a_batch_is_weighed_as_a_whole_and_the_answer_is_named() -> None:
    from projections.alerts.rules import evaluate

    asked, answered = inbound("in-1", T0), answer("out-1", T0 + 30 * HOUR_S)
    # asked and answered in one batch, decided a day and a half later: nothing opens
    step = evaluate(CUSTOMER, None, {}, {}, BRONZE, [asked, answered], RULES, T0 + 36 * HOUR_S)
    assert step.opened == [] and step.resolved == []
    # asked, then (time passing) the alert, then the answer in a later batch: resolved by it
    first = evaluate(CUSTOMER, None, {}, {}, BRONZE, [asked], RULES, T0 + 25 * HOUR_S)
    [row] = first.opened
    assert (row["rule"], row["evidence"], row["tier"]) == ("unanswered", ["in-1"], "bronze")
    assert first.fired == {row["alert_id"]: T0 + 25 * HOUR_S}
    later = evaluate(CUSTOMER, first.facts, first.fired, {row["alert_id"]: ("unanswered", row["since"])},
                     BRONZE, [answered, Touch("v-1", "web_visit", T0 + 31 * HOUR_S, engaged=True)],
                     RULES, T0 + 32 * HOUR_S)
    [ended] = later.resolved
    assert ended["event_id"] == "out-1" and "removed the condition" in ended["reason"]
    # nothing waits on time (one visit is no habit to lose: no look at the week's end) ...
    assert later.due is None
    habit = {str(int(T0 // WEEK_S) - w): 2 for w in range(1, 13)}
    assert evaluate(CUSTOMER, {**first.facts, "weeks": habit}, {}, {}, BRONZE, [], RULES,
                    T0).due == (int(T0 // WEEK_S) + 1) * WEEK_S
    # ... but value will re-decide the customer: the timer looks again then
    quiet = evaluate(CUSTOMER, None, {}, {}, BRONZE, [], RULES, T0, look_again=T0 + 60)
    assert quiet.due == T0 + 60 and quiet.opened == []
