"""A profile survives the trip to its ``profiles`` row and back (no database needed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from psycopg.types.json import Jsonb

from projections.profile.fold import Profile, empty
from projections.profile.store import _COLUMNS, from_row, to_row
from tests.unit.test_profile_fold import ANN, T1, T2, T3, complaint, fold, histories, order, touch

COLUMNS = _COLUMNS.split(", ")
BERLIN_SUMMER = timezone(timedelta(hours=2))


def from_db(value: Any, column: str, tz: timezone = UTC) -> Any:
    """What PostgreSQL hands back for a value written by ``to_row``."""
    if isinstance(value, Jsonb):
        return json.loads(json.dumps(value.obj))
    if column in ("first_seen", "last_seen") and value is not None:
        return datetime.fromisoformat(value).astimezone(tz)  # timestamptz, in the session zone
    return value


def round_trip(p: Profile, tz: timezone = UTC) -> Profile:
    row = to_row(p)
    assert len(row) == len(COLUMNS)
    return from_row({c: from_db(v, c, tz) for c, v in zip(COLUMNS, row, strict=True)})


def rich_profile() -> Profile:
    return fold([
        touch("call", at=T2, event_id="e-2", channel="phone", email="ann@example.com",
              external_ids={"crm": "C1"}, attributes={"name": "Ann", "vip": True}),
        order("12.50", at=T1, event_id="e-1", phone="+447456767967",
              external_ids={"crm": "C2", "pos": "P9"}, attributes={"tags": ["a", "b"]}),
        order("2.50", "refunded", currency="USD", at=T1, event_id="e-0"),
        complaint("K-1", "open", T1, event_id="e-3"),
        complaint("K-2", "open", T2, event_id="e-4"),
        complaint("K-1", "resolved", T3, event_id="e-5", email="ann.smith@example.com"),
    ])


def test_profile_round_trips_through_its_row() -> None:
    p = rich_profile()
    assert round_trip(p) == p


def test_row_holds_readable_json() -> None:
    row = dict(zip(COLUMNS, to_row(rich_profile()), strict=True))
    assert row["customer_id"] == ANN
    assert row["emails"] == ["ann.smith@example.com", "ann@example.com"]
    assert row["external_ids"].obj == {"crm": ["C1", "C2"], "pos": ["P9"]}
    assert row["attributes"].obj["name"] == {"value": "Ann", "occurred_at": T2, "event_id": "e-2"}
    assert row["spend"].obj == {"EUR": "12.50", "USD": "-2.50"}
    assert row["complaints"].obj["K-1"] == {"status": "resolved", "occurred_at": T3,
                                           "event_id": "e-5"}
    assert row["open_complaints"] == 1
    assert row["last_contact"].obj == {"event_id": "e-5", "type": "complaint", "channel": "web",
                                       "occurred_at": T3}
    assert (row["first_seen"], row["last_seen"]) == (T1, T3)


def test_empty_profile_round_trips() -> None:
    p = empty(ANN)
    row = dict(zip(COLUMNS, to_row(p), strict=True))
    assert (row["first_seen"], row["last_contact"], row["open_complaints"]) == (None, None, 0)
    assert round_trip(p) == p


def test_timestamps_read_in_another_session_time_zone_come_back_in_utc() -> None:
    # psycopg returns timestamptz in the connection's TimeZone, which need not be UTC.
    p = rich_profile()
    back = round_trip(p, tz=BERLIN_SUMMER)
    assert (back.first_seen, back.last_seen) == (T1, T3)
    assert back == p


def test_spend_keeps_exact_decimals() -> None:
    p = fold([order("0.10"), order("0.20"), order("1234567890.1234", currency="USD")])
    assert round_trip(p).spend == {"EUR": Decimal("0.30"), "USD": Decimal("1234567890.1234")}


@settings(max_examples=150)
@given(histories())
def test_any_folded_profile_round_trips(events: list[dict[str, Any]]) -> None:
    p = fold(events) if events else empty(ANN)
    assert round_trip(p) == p
    assert round_trip(p, tz=BERLIN_SUMMER) == p
