"""Reading "when" for follow-ups: every form, in the operator's zone, on a fixed "now"; bad input gives one
clear error."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from graph.followups.when import WhenError, add_business_days, parse_when

# Wednesday 2026-12-02, 23:30 UTC: already Thursday 2026-12-03 in Auckland, still Wednesday in New York.
NOW = datetime(2026, 12, 2, 23, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "zone", "due"),
    [
        ("3d", "UTC", datetime(2026, 12, 5, 9, 0, tzinfo=UTC)),
        ("2w", "UTC", datetime(2026, 12, 16, 9, 0, tzinfo=UTC)),
        ("2026-12-20", "UTC", datetime(2026, 12, 20, 9, 0, tzinfo=UTC)),
        ("friday", "UTC", datetime(2026, 12, 4, 9, 0, tzinfo=UTC)),
        ("Fri", "UTC", datetime(2026, 12, 4, 9, 0, tzinfo=UTC)),
        ("wednesday", "UTC", datetime(2026, 12, 9, 9, 0, tzinfo=UTC)),  # today is Wednesday: the next one
        ("today", "UTC", datetime(2026, 12, 2, 9, 0, tzinfo=UTC)),
        ("tomorrow", "UTC", datetime(2026, 12, 3, 9, 0, tzinfo=UTC)),
        # In Auckland it is Thursday 3 December (UTC+13): 09:00 there is 20:00 UTC the day before.
        ("3d", "Pacific/Auckland", datetime(2026, 12, 5, 20, 0, tzinfo=UTC)),
        ("friday", "Pacific/Auckland", datetime(2026, 12, 3, 20, 0, tzinfo=UTC)),
        ("2026-12-20", "America/New_York", datetime(2026, 12, 20, 14, 0, tzinfo=UTC)),
    ],
)
def test_every_form_is_read_in_the_operators_zone(text: str, zone: str, due: datetime) -> None:
    assert parse_when(text, NOW, zone) == due


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("soon", 'I could not read "soon" as a day: use 3d, 2w, 2026-12-20 or a weekday such as friday.'),
        ("3x", 'I could not read "3x" as a day'),
        ("fr", 'I could not read "fr" as a day'),
        ("2026-02-30", 'I could not read "2026-02-30" as a day'),
        ("2026-12-01", "2026-12-01 has passed: give a day from today on."),
        ("999w", "is more than two years away"),
        ("", 'I could not read "" as a day'),
    ],
)
def test_bad_input_gives_one_clear_error(text: str, error: str) -> None:
    with pytest.raises(WhenError) as caught:
        parse_when(text, NOW, "UTC")
    assert error in str(caught.value) and "\n" not in str(caught.value)


def test_business_days_skip_the_weekend_and_keep_the_time() -> None:
    thursday = datetime(2026, 12, 3, 15, 45, tzinfo=UTC)
    assert add_business_days(thursday, 5, "UTC") == datetime(2026, 12, 10, 15, 45, tzinfo=UTC)
    assert add_business_days(thursday, 1, "UTC") == datetime(2026, 12, 4, 15, 45, tzinfo=UTC)
    assert add_business_days(thursday, 2, "UTC") == datetime(2026, 12, 7, 15, 45, tzinfo=UTC)
    saturday = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    assert add_business_days(saturday, 1, "UTC") == datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    # Friday evening in New York is Saturday in UTC: business days count in the operator's zone.
    friday_ny = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)
    assert add_business_days(friday_ny, 1, "America/New_York") == datetime(2026, 12, 8, 2, 0, tzinfo=UTC)
