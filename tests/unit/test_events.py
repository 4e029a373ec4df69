"""The event contract: what parses, how it is normalised, and how it is rejected."""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from events import (
    ENVELOPES,
    TOUCHPOINT_TYPES,
    CallTouchpoint,
    CallTouchpointV2,
    Customer,
    CustomersLinked,
    InvalidEvent,
    OrderPlaced,
    dump_touchpoint,
    identity_keys,
    parse_touchpoint,
    with_customer_id,
    with_recorded_at,
)
from events.envelope import ATTRIBUTE
from events.identifiers import SYSTEM

EVENT_ID = "0b6f1e6e-3c1a-4b8e-9a39-5b7f6f0f2a11"
PAYLOADS: dict[str, dict[str, Any]] = {
    "call": {"direction": "inbound", "duration_s": 125.5, "outcome": "answered", "agent": "kim"},
    "email": {"direction": "outbound", "action": "opened", "subject": "Your order"},
    "web_visit": {"url": "https://shop.example.com/p/1", "page_views": 3, "duration_s": 42.0},
    "order": {
        "order_id": "o-1",
        "amount": "59.90",
        "currency": "eur",
        "items": [{"sku": "sku-1", "quantity": 2, "unit_price": "29.95"}],
    },
    "complaint": {
        "complaint_id": "c-1",
        "category": "delivery",
        "severity": "high",
        "text": "Parcel arrived damaged",
    },
    "feedback": {"scale": "csat", "score": 2, "text": "Late again.", "order_id": "o-1"},
}


def event(type_: str = "order", **overrides: Any) -> dict[str, Any]:
    data = {
        "type": type_,
        "customer": {"email": "ann@example.com"},
        "occurred_at": "2024-05-01T10:00:00Z",
        "channel": "web",
        "source": "shop",
        "payload": PAYLOADS[type_],
    }
    return data | overrides


def reasons(data: Any) -> dict[str, str]:
    with pytest.raises(InvalidEvent) as caught:
        parse_touchpoint(data)
    return {error["field"]: error["reason"] for error in caught.value.errors}


@pytest.mark.parametrize("type_", TOUCHPOINT_TYPES)
def test_each_type_parses_from_json_and_dict(type_: str) -> None:
    data = event(type_)
    parsed = parse_touchpoint(orjson.dumps(data))
    assert isinstance(parsed, ENVELOPES[type_])
    assert parsed.type == type_
    assert parsed.schema_version == 1
    assert parse_touchpoint(data).payload == parsed.payload


CALL_V2 = PAYLOADS["call"] | {"wait_s": 42.5}


def test_a_call_is_at_version_1_unless_it_says_2_and_then_it_carries_the_wait() -> None:
    for data in (event("call"), event("call", schema_version=1)):
        for form in (data, orjson.dumps(data)):
            parsed = parse_touchpoint(form)
            assert type(parsed) is CallTouchpoint and parsed.schema_version == 1
    for wait in (42.5, 0, 86400, None):  # None: not measured
        data = event("call", schema_version=2, payload=PAYLOADS["call"] | {"wait_s": wait})
        for form in (data, orjson.dumps(data)):
            parsed = parse_touchpoint(form)
            assert type(parsed) is CallTouchpointV2 and parsed.payload.wait_s == wait
            dumped = orjson.loads(dump_touchpoint(parsed))
            assert (dumped["schema_version"], dumped["payload"]["wait_s"]) == (2, wait)
            assert parse_touchpoint(dump_touchpoint(parsed)) == parsed


@pytest.mark.parametrize(("data", "errors"), [
    (event("call", schema_version=2), {"payload.wait_s": "Field required"}),
    (event("call", schema_version=2, payload=CALL_V2 | {"wait_s": -1}),
     {"payload.wait_s": "Input should be greater than or equal to 0"}),
    (event("call", schema_version=2, payload=CALL_V2 | {"wait_s": 86401}),
     {"payload.wait_s": "Input should be less than or equal to 86400"}),
    (event("call", schema_version=2, payload=CALL_V2 | {"wait_s": "a while"}),
     {"payload.wait_s": "Input should be a valid number, unable to parse string as a number"}),
    (event("call", payload=CALL_V2), {"payload.wait_s": "Extra inputs are not permitted"}),
    (event("call", schema_version=3),
     {"schema_version": "unknown schema_version 3 for type 'call'; allowed versions: 1, 2"}),
    (event("call", schema_version=3, payload=CALL_V2 | {"direction": "sideways"}),
     {"schema_version": "unknown schema_version 3 for type 'call'; allowed versions: 1, 2"}),
    (event("call", schema_version="2", payload=CALL_V2),
     {"schema_version": "unknown schema_version '2' for type 'call'; allowed versions: 1, 2"}),
    (event("call", schema_version="x" * 100),
     {"schema_version": f"unknown schema_version '{'x' * 38}… for type 'call'; allowed versions: 1, 2"}),
    (event("email", schema_version=2),
     {"schema_version": "unknown schema_version 2 for type 'email'; allowed versions: 1"}),
])
def test_call_versions_are_refused_naming_the_field(data: dict[str, Any], errors: dict[str, str]) -> None:
    """A refused version is said alone: the rest was checked against a version not claimed."""
    assert reasons(data) == errors
    assert reasons(orjson.dumps(data)) == errors


def test_email_is_trimmed_and_lower_cased() -> None:
    parsed = parse_touchpoint(event(customer={"email": " Ann@Example.COM "}))
    assert parsed.customer.email == "ann@example.com"


@pytest.mark.parametrize("phone", ["+44 20 7946 0958", "00442079460958", "+44 (0)20 7946-0958"])
def test_phone_is_normalised_to_e164(phone: str) -> None:
    assert parse_touchpoint(event(customer={"phone": phone})).customer.phone == "+442079460958"


def test_phone_without_country_code_is_rejected() -> None:
    reason = reasons(event(customer={"phone": "020 7946 0958"}))["customer.phone"]
    assert reason == "phone must be in international format (+<country code>...)"


@pytest.mark.parametrize("phone", ["+44 20 7946", "+999 1234567", "+not a number"])
def test_invalid_phone_number_is_rejected(phone: str) -> None:
    assert reasons(event(customer={"phone": phone}))["customer.phone"].startswith("phone is not")


def test_email_must_look_like_an_email() -> None:
    assert "email" in reasons(event(customer={"email": "ann at example"}))["customer.email"]


def test_naive_occurred_at_is_rejected() -> None:
    reason = reasons(event(occurred_at="2024-05-01T10:00:00"))["occurred_at"]
    assert reason == "occurred_at must include a timezone offset"


def test_offset_is_converted_to_utc() -> None:
    parsed = parse_touchpoint(event(occurred_at="2024-05-01T12:30:00+02:00"))
    assert parsed.occurred_at == datetime(2024, 5, 1, 10, 30, tzinfo=UTC)
    assert parsed.occurred_at.utcoffset() == timedelta(0)
    assert orjson.loads(dump_touchpoint(parsed))["occurred_at"] == "2024-05-01T10:30:00Z"


def test_occurred_at_far_in_the_future_is_rejected() -> None:
    soon = datetime.now(UTC) + timedelta(hours=23)
    assert parse_touchpoint(event(occurred_at=soon.isoformat())).occurred_at == soon
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    assert "1 day in the future" in reasons(event(occurred_at=later))["occurred_at"]


@pytest.mark.parametrize("customer", [{}, {"external_ids": {}}, {"attributes": {"name": "Ann"}}])
def test_customer_without_identifier_is_rejected(customer: dict[str, Any]) -> None:
    assert reasons(event(customer=customer)) == {
        "customer": "customer needs at least one identifier "
        "(customer_id, email, phone or external_ids)"
    }


def test_external_ids_and_attributes_are_checked() -> None:
    customer = {"external_ids": {"crm": " 42 "}, "attributes": {"name": "Ann", "vip": True}}
    assert parse_touchpoint(event(customer=customer)).customer.external_ids == {"crm": "42"}
    bad = {"external_ids": {"CRM": "42"}, "attributes": {"tags": ["a"], "Name": "Ann"}}
    errors = reasons(event(customer=bad))
    assert errors["customer.external_ids.CRM"].startswith("invalid key")
    assert errors["customer.attributes.Name"].startswith("invalid key")
    assert errors["customer.attributes.tags"] == (
        "attribute values must be a string, number, boolean or null"
    )


def test_unknown_type_is_rejected_naming_the_allowed_types() -> None:
    reason = reasons(event() | {"type": "fax"})["type"]
    assert "'fax'" in reason
    assert all(type_ in reason for type_ in TOUCHPOINT_TYPES)
    data = event()
    del data["type"]
    assert "call, email, web_visit, order, complaint, feedback" in reasons(data)["type"]


def test_extra_fields_are_rejected_on_envelope_and_payload() -> None:
    payload = PAYLOADS["call"] | {"colour": "red"}
    errors = reasons(event("call", nickname="annie", payload=payload))
    assert errors == {
        "nickname": "Extra inputs are not permitted",
        "payload.colour": "Extra inputs are not permitted",
    }


def test_negative_amount_names_the_field() -> None:
    errors = reasons(event(payload=PAYLOADS["order"] | {"amount": "-1"}))
    assert list(errors) == ["payload.amount"]


def test_order_amounts_are_decimals_dumped_as_strings() -> None:
    parsed = parse_touchpoint(event())
    assert isinstance(parsed.payload, OrderPlaced)
    assert parsed.payload.amount == Decimal("59.90")
    assert parsed.payload.currency == "EUR"
    dumped = orjson.loads(dump_touchpoint(parsed))["payload"]
    assert dumped["amount"] == "59.90"
    assert dumped["items"][0]["unit_price"] == "29.95"
    assert "payload.currency" in reasons(event(payload=PAYLOADS["order"] | {"currency": "euro"}))


@pytest.mark.parametrize(("scale", "scores", "reason"), [
    ("csat", range(1, 6), "a csat score is 1 to 5"),
    ("nps", range(0, 11), "an nps score is 0 to 10"),
])
def test_a_score_is_within_its_scale_and_a_refusal_names_the_scale(
        scale: str, scores: range, reason: str) -> None:
    for score in scores:
        parsed = parse_touchpoint(event("feedback", payload={"scale": scale, "score": score}))
        assert (parsed.payload.scale, parsed.payload.score) == (scale, score)  # type: ignore[attr-defined]
    for score in (scores[0] - 1, scores[-1] + 1, 10**30):
        assert reasons(event("feedback", payload={"scale": scale, "score": score})) == {
            "payload.score": reason}


def test_feedback_names_what_it_is_about_optionally() -> None:
    bare = parse_touchpoint(event("feedback", payload={"scale": "nps", "score": 9}))
    assert bare.payload.model_dump() == {  # type: ignore[attr-defined]
        "scale": "nps", "score": 9, "text": None, "order_id": None, "complaint_id": None,
        "call_event_id": None}
    about = {"scale": "csat", "score": 5, "text": " Thank you!\n", "order_id": "o-1",
             "complaint_id": "c-1", "call_event_id": EVENT_ID.upper()}
    payload = parse_touchpoint(event("feedback", payload=about)).payload
    assert payload.model_dump() == about | {"text": "Thank you!", "call_event_id": EVENT_ID}
    assert reasons(event("feedback", payload={"scale": "ces", "score": 3})) == {
        "payload.scale": "Input should be 'csat' or 'nps'"}
    assert list(reasons(event("feedback", payload={"scale": "csat", "score": 2.5}))) == ["payload.score"]
    assert reasons(event("feedback", payload={"scale": "csat", "score": 4, "call_event_id": "c-7"})
                   ) == {"payload.call_event_id": "must be a UUID"}
    assert list(reasons(event("feedback", payload={"scale": "csat", "score": 4, "order_id": " "}))
                ) == ["payload.order_id"]


def test_web_visit_url_must_be_http() -> None:
    payload = PAYLOADS["web_visit"] | {"url": "ftp://example.com"}
    assert "payload.url" in reasons(event("web_visit", payload=payload))


NO_CONTROLS = "must not contain control characters"
PROSE_ONLY = "must not contain control characters other than tab, line feed and carriage return"


def _nested(type_: str, path: str, value: Any) -> dict[str, Any]:
    """event(type_) with the value at a dotted path (numbers index lists) replaced."""
    data = orjson.loads(orjson.dumps(event(type_)))
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    target = data
    for part in parents:
        target = target[part]
    target[last] = value
    return data


@pytest.mark.parametrize(
    ("type_", "path", "value", "field", "reason"),
    [
        ("call", "source", "cr\x00m", "source", f"{NO_CONTROLS} (found U+0000)"),
        ("call", "customer", {"email": "a@b.co", "external_ids": {"crm": "x\x1fy"}},
         "customer.external_ids.crm", f"{NO_CONTROLS} (found U+001F)"),
        ("call", "customer", {"external_ids": {"crm": "1", "c\x00rm": "2"}},
         "customer.external_ids.c\\u0000rm", "invalid key: "),
        ("call", "customer", {"email": "a@b.co", "attributes": {"name": "Ann\x00"}},
         "customer.attributes.name", f"{NO_CONTROLS} (found U+0000)"),
        ("call", "customer", {"email": "a@b.co", "attributes": {"name": "Ann\nLee"}},
         "customer.attributes.name", f"{NO_CONTROLS} (found U+000A)"),
        ("call", "customer", {"email": "a\x01b@example.com"}, "customer.email",
         f"{NO_CONTROLS} (found U+0001)"),
        ("call", "customer", {"phone": "+44 20 7946\x000958"}, "customer.phone",
         f"{NO_CONTROLS} (found U+0000)"),
        ("call", "customer", {"customer_id": EVENT_ID[:-1] + "\x00"}, "customer.customer_id",
         f"{NO_CONTROLS} (found U+0000)"),
        ("call", "channel", "we\x1fb", "channel", f"{NO_CONTROLS} (found U+001F)"),
        ("call", "payload.agent", "kim\tlee", "payload.agent", f"{NO_CONTROLS} (found U+0009)"),
        ("call", "payload.topic", "billing\x00", "payload.topic", f"{PROSE_ONLY} (found U+0000)"),
        ("email", "payload.subject", "Hello\x0bthere", "payload.subject",
         f"{PROSE_ONLY} (found U+000B)"),
        ("order", "payload.order_id", "O-\x001", "payload.order_id", f"{NO_CONTROLS} (found U+0000)"),
        ("order", "payload.items.0.sku", "s\x1fku", "payload.items.0.sku",
         f"{NO_CONTROLS} (found U+001F)"),
        ("order", "payload.currency", "EU\x00", "payload.currency", f"{NO_CONTROLS} (found U+0000)"),
        ("web_visit", "payload.url", "https://x.example/\x00", "payload.url",
         f"{NO_CONTROLS} (found U+0000)"),
        ("complaint", "payload.text", "Broken\x00", "payload.text", f"{PROSE_ONLY} (found U+0000)"),
        ("complaint", "payload.category", "deli\nvery", "payload.category",
         f"{NO_CONTROLS} (found U+000A)"),
        ("feedback", "payload.text", "Late\x1f", "payload.text", f"{PROSE_ONLY} (found U+001F)"),
        ("feedback", "payload.order_id", "o-\t1", "payload.order_id", f"{NO_CONTROLS} (found U+0009)"),
    ],
)
def test_control_characters_are_refused_naming_field_and_character(
    type_: str, path: str, value: Any, field: str, reason: str
) -> None:
    for data in (_nested(type_, path, value), orjson.dumps(_nested(type_, path, value))):
        errors = reasons(data)
        assert list(errors) == [field]
        assert errors[field].startswith(reason)


def test_prose_keeps_tabs_and_line_breaks_and_surrounding_whitespace_is_trimmed() -> None:
    text = "Parcel arrived damaged.\r\n\tSecond line."
    parsed = parse_touchpoint(_nested("complaint", "payload.text", text))
    assert parsed.payload.text == text  # type: ignore[attr-defined]
    assert parse_touchpoint(_nested("email", "payload.subject", "Re:\n  your order")).payload
    trimmed = parse_touchpoint(event(source="\tshop\r\n", customer={"external_ids": {"crm": " 7\n"}}))
    assert (trimmed.source, trimmed.customer.external_ids) == ("shop", {"crm": "7"})
    assert reasons(event(source=" \n\u3000 ")) == {"source": "String should have at least 1 character"}


def test_lone_surrogates_and_invalid_utf8_are_refused() -> None:
    assert list(reasons(event(source="a\ud800b"))) == ["source"]
    bad = {"email": "a@b.co", "attributes": {"name": "Ann\udc00"}}
    assert reasons(event(customer=bad)) == {
        "customer.attributes.name": "must be valid Unicode (found a lone surrogate U+DC00)"}
    [field] = reasons(event(customer={"external_ids": {"crm\ud800": "1"}}))
    assert field.startswith("customer.external_ids.crm") and field.encode()  # pydantic puts U+FFFD
    good = orjson.dumps(event())
    for body in (good.replace(b'"shop"', b'"\\ud800"'), good.replace(b'"shop"', b'"sh\xffop"'),
                 good.replace(b'"shop"', b'"\xed\xa0\x80"')):
        [error] = InvalidEvent_errors(body)
        assert error["field"] == "" and error["reason"].startswith("not valid JSON")


def InvalidEvent_errors(data: Any) -> list[dict[str, str]]:  # noqa: N802 - reads as the type
    with pytest.raises(InvalidEvent) as caught:
        parse_touchpoint(data)
    return caught.value.errors


@pytest.mark.parametrize("moment", ["0001-01-01T00:30:00+01:00", "9999-12-31T23:00:00-05:00"])
def test_times_out_of_range_in_utc_are_refused_not_raised(moment: str) -> None:
    for field in ("occurred_at", "recorded_at"):
        assert reasons(event(**{field: moment})) == {
            field: f"{field} is out of range once converted to UTC"}


@pytest.mark.parametrize("uuid", [
    "{0b6f1e6e-3c1a-4b8e-9a39-5b7f6f0f2a11}",
    "0b6f1e6e3c1a4b8e9a395b7f6f0f2a11",
    "urn:uuid:0b6f1e6e-3c1a-4b8e-9a39-5b7f6f0f2a11",
    "0b6f1e6e-3c1a-4b8e-9a39-5b7f6f0f2a1",
])
def test_ids_are_uuids_in_their_hyphenated_form(uuid: str) -> None:
    assert reasons(event(event_id=uuid)) == {"event_id": "must be a UUID"}


def test_error_details_carry_no_control_characters() -> None:
    errors = InvalidEvent_errors(event(customer={"external_ids": {"\x1f": "1"}}, nickname="x"))
    text = orjson.dumps(errors).decode()
    assert not any(ord(c) < 0x20 for c in text)


def test_events_are_frozen() -> None:
    parsed = parse_touchpoint(event())
    with pytest.raises(ValidationError):
        parsed.source = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        parsed.payload.amount = Decimal(1)  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        parsed.customer.email = "bob@example.com"  # type: ignore[misc]


def test_event_id_is_generated_when_missing_and_kept_when_given() -> None:
    first, second = parse_touchpoint(event()), parse_touchpoint(event())
    assert UUID(first.event_id).version == 4
    assert first.event_id != second.event_id
    assert parse_touchpoint(event(event_id=EVENT_ID.upper())).event_id == EVENT_ID
    assert reasons(event(event_id="nope")) == {"event_id": "must be a UUID"}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"type": "order",', "not valid JSON: "),
        ("not json", "not valid JSON: "),
        (b"[1, 2]", "event must be a JSON object"),
        (b'"order"', "event must be a JSON object"),
        ([1, 2], "event must be a JSON object"),
    ],
)
def test_input_that_is_not_a_json_object_is_rejected(data: Any, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_touchpoint(data)
    assert isinstance(caught.value, ValueError)
    [error] = caught.value.errors
    assert error["field"] == ""
    assert error["reason"].startswith(reason)


def test_identity_keys_are_in_a_deterministic_order() -> None:
    customer = Customer(
        external_ids={"shop": "s-9", "crm": "c-1"},
        phone="+44 20 7946 0958",
        email="Ann@Example.com",
        customer_id=EVENT_ID,
    )
    assert identity_keys(customer) == [
        f"id:{EVENT_ID}",
        "email:ann@example.com",
        "phone:+442079460958",
        "ext:crm:c-1",
        "ext:shop:s-9",
    ]
    assert identity_keys(Customer(email="ann@example.com")) == ["email:ann@example.com"]


def test_copies_set_recorded_at_and_customer_id() -> None:
    original = parse_touchpoint(event())
    when = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    recorded = with_recorded_at(original, when)
    assert recorded.recorded_at == when and recorded.recorded_at.tzinfo == UTC
    assert original.recorded_at is None
    with pytest.raises(ValueError, match="timezone"):
        with_recorded_at(original, datetime(2024, 5, 1))
    linked = with_customer_id(original, EVENT_ID.upper())
    assert linked.customer.customer_id == EVENT_ID
    assert linked.customer.email == "ann@example.com"
    assert original.customer.customer_id is None
    assert parse_touchpoint(dump_touchpoint(linked)) == linked


def test_a_door_stamps_recorded_at_whatever_the_event_says() -> None:
    when = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    plain = {**event(), "event_id": EVENT_ID}
    claimed = {**plain, "recorded_at": "2024-04-01T00:00:00Z"}
    for data in (plain, claimed, orjson.dumps(claimed)):
        stamped = parse_touchpoint(data, recorded_at=when)
        assert stamped.recorded_at == when and stamped.recorded_at.tzinfo == UTC
        assert stamped == with_recorded_at(parse_touchpoint(data), when)
    with pytest.raises(ValueError, match="timezone"):
        parse_touchpoint(event(), recorded_at=datetime(2024, 5, 1))
    with pytest.raises(InvalidEvent):
        parse_touchpoint({**event(), "occurred_at": "soon"}, recorded_at=when)


def test_customers_linked() -> None:
    other = "5f0c3f9e-8a53-4c4e-b0a9-4bb6a5c7e0d2"
    linked = CustomersLinked(
        customer_id=EVENT_ID, merged_ids=(other,), reason="same email", keys=("email:a@b.co",)
    )
    assert linked.merged_ids == (other,)
    with pytest.raises(ValidationError, match="survivor"):
        CustomersLinked(customer_id=EVENT_ID, merged_ids=(EVENT_ID,), reason="same email")
    with pytest.raises(ValidationError):
        CustomersLinked(customer_id=EVENT_ID, merged_ids=(other,), reason="x", keys=("nope",))


# Property: every valid event survives dump -> parse unchanged.

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs")), max_size=20)
_words = _text.filter(bool)
_phones = st.sampled_from(
    [
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        for region in ("GB", "US", "DE", "FR", "JP", "IN", "BR")
        if (number := phonenumbers.example_number(region))
    ]
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
)
_customers = st.fixed_dictionaries(
    {"external_ids": st.dictionaries(st.from_regex(SYSTEM, fullmatch=True), _words, max_size=3)},
    optional={
        "customer_id": st.uuids().map(str),
        "email": st.from_regex(r"[A-Za-z0-9._]{1,12}@[a-z]{1,12}\.(com|org|de)", fullmatch=True),
        "phone": _phones,
        "attributes": st.dictionaries(
            st.from_regex(ATTRIBUTE, fullmatch=True), _scalars, max_size=5
        ),
    },
).filter(lambda c: c["external_ids"] or {"customer_id", "email", "phone"} & c.keys())
_seconds = st.floats(0, 86400)
_money = st.decimals(0, Decimal("9999999999.9999"), places=4)
_payloads = {
    "call": st.fixed_dictionaries(
        {
            "direction": st.sampled_from(["inbound", "outbound"]),
            "duration_s": _seconds,
            "outcome": st.sampled_from(["answered", "missed", "voicemail", "escalated"]),
        },
        optional={"agent": _words, "topic": st.none() | _text},
    ),
    "email": st.fixed_dictionaries(
        {
            "direction": st.sampled_from(["inbound", "outbound"]),
            "action": st.sampled_from(["sent", "opened", "clicked", "bounced"]),
        },
        optional={"subject": _text, "campaign": _words},
    ),
    "web_visit": st.fixed_dictionaries(
        {"url": _words.map(lambda path: f"https://example.com/{path}"), "duration_s": _seconds},
        optional={"page_views": st.integers(1, 10**6), "session_id": _words},
    ),
    "order": st.fixed_dictionaries(
        {
            "order_id": _words,
            "amount": _money,
            "currency": st.from_regex(r"[A-Za-z]{3}", fullmatch=True),
            "items": st.lists(
                st.fixed_dictionaries(
                    {"sku": _words, "quantity": st.integers(1, 99), "unit_price": _money}
                ),
                max_size=3,
            ),
        },
        optional={"status": st.sampled_from(["placed", "cancelled", "refunded"])},
    ),
    "complaint": st.fixed_dictionaries(
        {
            "complaint_id": _words,
            "category": _words,
            "severity": st.sampled_from(["low", "medium", "high", "critical"]),
            "text": _words,
        }
    ),
    "feedback": st.one_of(
        st.fixed_dictionaries({"scale": st.just("csat"), "score": st.integers(1, 5)}),
        st.fixed_dictionaries({"scale": st.just("nps"), "score": st.integers(0, 10)}),
    ).flatmap(
        lambda rating: st.fixed_dictionaries(
            {k: st.just(v) for k, v in rating.items()},
            optional={
                "text": st.none() | _text,
                "order_id": _words,
                "complaint_id": _words,
                "call_event_id": st.uuids().map(str),
            },
        )
    ),
}
_payloads["call.v2"] = _payloads["call"].flatmap(
    lambda call: (st.none() | _seconds).map(lambda wait: call | {"wait_s": wait}))
_offsets = st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=5.5))])
_events = st.sampled_from([*TOUCHPOINT_TYPES, "call.v2"]).flatmap(
    lambda shape: st.fixed_dictionaries(
        {
            "type": st.just(shape.split(".")[0]),
            "schema_version": st.just(2 if shape == "call.v2" else 1),
            "customer": _customers,
            "occurred_at": st.datetimes(
                datetime(2000, 1, 1), datetime(2024, 1, 1), timezones=_offsets
            ),
            "channel": st.sampled_from(["web", "phone", "email", "store", "app", "chat", "sms"]),
            "source": _words,
            "payload": _payloads[shape],
        },
        optional={"event_id": st.uuids().map(str), "recorded_at": st.none()},
    )
)


@given(_events)
def test_dump_then_parse_round_trips(data: dict[str, Any]) -> None:
    parsed = parse_touchpoint(data)
    dumped = dump_touchpoint(parsed)
    assert parse_touchpoint(dumped) == parsed
    assert dump_touchpoint(parse_touchpoint(dumped)) == dumped


def test_identity_keys_of_the_json_form_equal_those_of_the_model() -> None:
    from services.sample import SampleSpec, generate

    for raw in generate(SampleSpec(customers=50, events=300, seed=3)):
        event = parse_touchpoint(raw)
        assert identity_keys(event.model_dump(mode="json")["customer"]) == identity_keys(event.customer)
