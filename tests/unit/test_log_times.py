"""The identity stage writes every time in one format: UTC, microseconds, 'Z'."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.processors.identity import _log_time, utc_text

ZONES = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))])


@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1)), ZONES)
def test_any_offset_and_precision_gives_the_log_format(when: datetime, zone) -> None:
    aware = when.replace(tzinfo=zone)
    expected = utc_text(aware)
    for text in (aware.isoformat(), aware.isoformat().replace("+00:00", "Z"),
                 aware.isoformat(timespec="seconds").replace("+00:00", "Z")
                 if aware.microsecond == 0 else aware.isoformat()):
        assert _log_time(text) == expected
    assert len(expected) == 27 and expected.endswith("Z")


def test_what_the_doors_write_is_kept_or_padded() -> None:
    assert _log_time("2026-04-04T10:08:07Z") == "2026-04-04T10:08:07.000000Z"
    assert _log_time("2026-04-04T10:08:07.123456Z") == "2026-04-04T10:08:07.123456Z"
    assert _log_time("2026-04-04T12:08:07+02:00") == "2026-04-04T10:08:07.000000Z"


@pytest.mark.parametrize("text", ["2026-04-04T10:08:07", "2026-13-04T10:08:07Z",
                                  "2026-04-04T10:08:07.12345xZ", "yesterday"])
def test_times_that_are_not_real_or_have_no_offset_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        _log_time(text)
