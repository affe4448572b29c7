"""Working hours turned into UTC minutes of the week, the only clock PromQL has."""

from __future__ import annotations

import pytest

from components.workloads.working_hours import (
    DAY_MINUTES,
    WEEK_MINUTES,
    WorkingHoursError,
    promql_condition,
    utc_windows,
    zone_offsets,
)

YEARS = (2026, 2027)
MONDAY, FRIDAY, SUNDAY = 1, 5, 0


def at(day: int, hour: int, minute: int = 0) -> int:
    """A UTC minute of the week; day 0 is Sunday, as PromQL's day_of_week() counts."""
    return day * DAY_MINUTES + hour * 60 + minute


def test_a_zone_without_daylight_saving_maps_hour_for_hour():
    windows = utc_windows(["* 8-17 * * mon-fri"], "UTC", within_minutes=0, years=YEARS)
    assert windows == [(at(day, 8), at(day, 18)) for day in range(MONDAY, FRIDAY + 1)]


def test_daylight_saving_keeps_only_hours_that_are_working_hours_in_winter_and_summer():
    # Europe/Berlin is UTC+1 in winter and UTC+2 in summer: 07:00-18:59 local is 06:00-17:59
    # UTC in winter and 05:00-16:59 UTC in summer; only 06:00-16:59 UTC is always inside.
    assert zone_offsets("Europe/Berlin", YEARS) == {60, 120}
    windows = utc_windows(["* 7-18 * * mon-fri"], "Europe/Berlin", within_minutes=0, years=YEARS)
    assert windows == [(at(day, 6), at(day, 17)) for day in range(MONDAY, FRIDAY + 1)]


def test_the_window_must_lie_inside_working_hours_so_the_night_never_counts():
    # No job since 07:00 is no news at 07:30 with a 1 h window: the pool slept until 07:00.
    windows = utc_windows(["* 7-18 * * mon-fri"], "UTC", within_minutes=60, years=YEARS)
    assert windows[0] == (at(MONDAY, 8), at(MONDAY, 19))


def test_hours_west_of_utc_cross_utc_midnight_and_the_week_wraps():
    # America/Los_Angeles (UTC-8, UTC-7): Friday 16:00-19:59 local is Saturday 00:00-03:59 UTC
    # in winter and Friday 23:00 to Saturday 02:59 UTC in summer; always: Saturday 00:00-02:59.
    windows = utc_windows(["* 16-19 * * fri"], "America/Los_Angeles", 0, YEARS)
    assert windows == [(at(FRIDAY, 24), at(FRIDAY, 27))]
    # Saturday 20:00 to Sunday 03:59 UTC, in a zone without DST, wraps around the week's end.
    wrapping = utc_windows(["* 20-23 * * sat", "* 0-3 * * sun"], "UTC", 0, YEARS)
    assert wrapping == [(at(SUNDAY, 0), at(SUNDAY, 4)), (at(6, 20), WEEK_MINUTES)]
    # A window that starts before the week's end still needs the hours before it.
    assert utc_windows(["* 20-23 * * sat", "* 0-3 * * sun"], "UTC", 120, YEARS) == [
        (at(SUNDAY, 0), at(SUNDAY, 4)),
        (at(6, 22), WEEK_MINUTES),
    ]


def test_always_needs_no_condition_and_other_windows_become_minute_of_week_ranges():
    assert promql_condition(utc_windows(["* * * * *"], "UTC", 60, YEARS)) is None
    condition = promql_condition([(at(MONDAY, 8), at(MONDAY, 18))])
    assert condition == "(day_of_week() * 1440 + hour() * 60 + minute()) >= 1920 < 2520"


@pytest.mark.parametrize(
    ("periods", "timezone", "problem"),
    [
        (["* 7-18 * *"], "UTC", "must have 5 fields"),
        (["* 7-18 1 * mon-fri"], "UTC", "day of month and month must be '*'"),
        (["* 7-25 * * mon-fri"], "UTC", "hour '7-25' must lie within 0-23"),
        (["* 7-18 * * monday"], "UTC", "cannot read day of week 'monday'"),
        (["* 7-18 * * mon-fri"], "Mars/Olympus", "is not an IANA time zone"),
        ([], "UTC", "at least one period"),
    ],
)
def test_bad_working_hours_name_the_problem(periods, timezone, problem):
    with pytest.raises(WorkingHoursError, match=problem):
        utc_windows(periods, timezone, 0, YEARS)
