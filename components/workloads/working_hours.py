"""Working hours as PromQL: when a pool should be picking up jobs, in the only clock PromQL has.

Pools describe their working hours like their warm capacity: 5-field cron periods (minute hour
day-of-month month day-of-week) in an IANA time zone. PromQL's `hour()`, `minute()` and
`day_of_week()` read the evaluation time in UTC and know no time zones, so the periods are
turned into ranges of the UTC week (minute 0 is Sunday 00:00 UTC, as `day_of_week()` counts).

A zone with daylight saving time has two UTC offsets; an alert must never watch a pool outside
its working hours, so a UTC minute counts only when it is a working minute under every offset
the zone uses in the years asked for. At `* 7-18 * * mon-fri` in Europe/Berlin that is
06:00-16:59 UTC (winter 06:00-17:59, summer 05:00-16:59). Pure: no Pulumi runtime needed.
"""

import functools
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEK_MINUTES = 7 * 24 * 60
DAY_MINUTES = 24 * 60
_NAMED_DAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_ITEM = re.compile(r"^(\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/([0-9]+))?$")
UTC_MINUTE_OF_WEEK = "(day_of_week() * 1440 + hour() * 60 + minute())"
"""PromQL: the evaluation time's minute of the UTC week, Sunday 00:00 being 0."""


class WorkingHoursError(ValueError):
    """Periods, a time zone or a window that cannot describe working hours."""


def _field_values(text: str, low: int, high: int, what: str, period: str) -> set[int]:
    values: set[int] = set()
    for item in text.lower().split(","):
        match = _ITEM.match(item)
        if match is None:
            raise WorkingHoursError(f"period {period!r}: cannot read {what} {item!r}")
        span, step_text = match[1], match[2]
        if span == "*":
            first, last = low, high
        else:
            bounds = [_number(bound, what, period) for bound in span.split("-")]
            first, last = bounds[0], bounds[-1]
        step = int(step_text) if step_text else 1
        if not (low <= first <= last <= high) or step < 1:
            raise WorkingHoursError(
                f"period {period!r}: {what} {item!r} must lie within {low}-{high}"
            )
        values.update(range(first, last + 1, step))
    return values


def _number(text: str, what: str, period: str) -> int:
    if what == "day of week" and text in _NAMED_DAYS:
        return _NAMED_DAYS[text]
    if not text.isdigit():
        raise WorkingHoursError(f"period {period!r}: cannot read {what} {text!r}")
    return int(text)


def _period_minutes(period: str) -> set[int]:
    """The minutes of the local week a 5-field cron period covers."""
    fields = period.split()
    if len(fields) != 5:
        raise WorkingHoursError(
            f"period {period!r} must have 5 fields (minute hour day-of-month month weekday), "
            "e.g. '* 8-17 * * mon-fri'"
        )
    minute_field, hour_field, day_field, month_field, weekday_field = fields
    if day_field != "*" or month_field != "*":
        raise WorkingHoursError(
            f"period {period!r}: day of month and month must be '*' (working hours repeat "
            "every week)"
        )
    minutes = _field_values(minute_field, 0, 59, "minute", period)
    hours = _field_values(hour_field, 0, 23, "hour", period)
    # cron allows 7 for Sunday too.
    weekdays = {day % 7 for day in _field_values(weekday_field, 0, 7, "day of week", period)}
    return {
        day * DAY_MINUTES + hour * 60 + minute
        for day in weekdays
        for hour in hours
        for minute in minutes
    }


def zone_offsets(timezone: str, years: Sequence[int]) -> set[int]:
    """The UTC offsets (minutes east) a time zone uses in these years."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise WorkingHoursError(
            f"time zone {timezone!r} is not an IANA time zone such as Europe/Berlin or UTC"
        ) from None
    offsets = set()
    for year in years:
        day = datetime(year, 1, 1, 12, tzinfo=UTC)
        while day.year == year:
            offset = day.astimezone(zone).utcoffset()
            assert offset is not None
            offsets.add(int(offset.total_seconds()) // 60)
            day += timedelta(days=1)
    return offsets


def utc_windows(
    periods: Sequence[str], timezone: str, within_minutes: int, years: Sequence[int]
) -> list[tuple[int, int]]:
    """The ranges `[start, end)` of UTC minutes of the week at which the last `within_minutes`
    minutes all were working hours under every offset of the zone, in order."""
    return list(_utc_windows(tuple(periods), timezone, within_minutes, tuple(years)))


# Settings validation, the pool checks and the rule each ask for the same pool's windows.
@functools.cache
def _utc_windows(
    periods: tuple[str, ...], timezone: str, within_minutes: int, years: tuple[int, ...]
) -> tuple[tuple[int, int], ...]:
    if not periods:
        raise WorkingHoursError("at least one period is needed")
    local: set[int] = set()
    for period in periods:
        local |= _period_minutes(period)
    offsets = zone_offsets(timezone, years)
    working = [
        all((minute + offset) % WEEK_MINUTES in local for offset in offsets)
        for minute in range(WEEK_MINUTES)
    ]
    # Minutes of working time up to and including each minute, around the week.
    run = [0] * WEEK_MINUTES
    for _ in range(2):
        for minute in range(WEEK_MINUTES):
            run[minute] = run[minute - 1] + 1 if working[minute] else 0
            run[minute] = min(run[minute], WEEK_MINUTES)
    active = [run[minute] > within_minutes for minute in range(WEEK_MINUTES)]
    windows: list[tuple[int, int]] = []
    for minute, on in enumerate(active):
        if on and (not windows or windows[-1][1] != minute):
            windows.append((minute, minute + 1))
        elif on:
            windows[-1] = (windows[-1][0], minute + 1)
    return tuple(windows)


def promql_condition(windows: Sequence[tuple[int, int]]) -> str | None:
    """A PromQL expression that has a value exactly at the minutes of these ranges (None when
    they cover the whole week)."""
    if list(windows) == [(0, WEEK_MINUTES)]:
        return None
    return " or ".join(f"{UTC_MINUTE_OF_WEEK} >= {start} < {end}" for start, end in windows)


def current_years() -> tuple[int, int]:
    """This year and the next: the offsets a zone uses while the rules are deployed."""
    year = datetime.now(UTC).year
    return year, year + 1
