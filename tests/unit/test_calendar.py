"""Working calendar: holidays, opening hours, DST, working-time arithmetic (server.rules.calendar)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.rules.calendar import (
    DaySchedule,
    WorkingCalendar,
    add_working_days,
    add_working_time,
    always_open,
    day_schedule,
    default_calendar,
    is_open,
    next_close,
    next_open,
    polish_holidays,
    working_time_between,
)

WAW = ZoneInfo("Europe/Warsaw")
CAL = default_calendar(years=range(2024, 2029))
SAT_CAL = default_calendar(years=range(2024, 2029), saturday=(time(9), time(13)))
ON_CALL = always_open()
H = timedelta(hours=1)
M = timedelta(minutes=1)
US = timedelta(microseconds=1)
# No example database: tests must not leave files in the repository.
PROPERTY = settings(database=None, deadline=None, max_examples=150)


def w(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    """A Warsaw wall-clock time as the UTC instant the API speaks."""
    return datetime(y, mo, d, h, mi, tzinfo=WAW).astimezone(UTC)


# --- holidays ------------------------------------------------------------------------

STATUTORY = [
    # 2025
    (date(2025, 1, 1), "Nowy Rok"),
    (date(2025, 1, 6), "Święto Trzech Króli"),
    (date(2025, 4, 20), "Niedziela Wielkanocna"),
    (date(2025, 4, 21), "Poniedziałek Wielkanocny"),
    (date(2025, 5, 1), "Święto Państwowe"),
    (date(2025, 5, 3), "Święto Narodowe Trzeciego Maja"),
    (date(2025, 6, 8), "Zielone Świątki"),
    (date(2025, 6, 19), "Dzień Bożego Ciała"),
    (date(2025, 8, 15), "Wniebowzięcie Najświętszej Marii Panny"),
    (date(2025, 11, 1), "Uroczystość Wszystkich Świętych"),
    (date(2025, 11, 11), "Narodowe Święto Niepodległości"),
    (date(2025, 12, 24), "Wigilia Bożego Narodzenia"),
    (date(2025, 12, 25), "Boże Narodzenie (pierwszy dzień)"),
    (date(2025, 12, 26), "Boże Narodzenie (drugi dzień)"),
    # 2026
    (date(2026, 1, 1), "Nowy Rok"),
    (date(2026, 1, 6), "Święto Trzech Króli"),
    (date(2026, 4, 5), "Niedziela Wielkanocna"),
    (date(2026, 4, 6), "Poniedziałek Wielkanocny"),
    (date(2026, 5, 1), "Święto Państwowe"),
    (date(2026, 5, 3), "Święto Narodowe Trzeciego Maja"),
    (date(2026, 5, 24), "Zielone Świątki"),
    (date(2026, 6, 4), "Dzień Bożego Ciała"),
    (date(2026, 8, 15), "Wniebowzięcie Najświętszej Marii Panny"),
    (date(2026, 11, 1), "Uroczystość Wszystkich Świętych"),
    (date(2026, 11, 11), "Narodowe Święto Niepodległości"),
    (date(2026, 12, 24), "Wigilia Bożego Narodzenia"),
    (date(2026, 12, 25), "Boże Narodzenie (pierwszy dzień)"),
    (date(2026, 12, 26), "Boże Narodzenie (drugi dzień)"),
    # 2027
    (date(2027, 1, 1), "Nowy Rok"),
    (date(2027, 1, 6), "Święto Trzech Króli"),
    (date(2027, 3, 28), "Niedziela Wielkanocna"),
    (date(2027, 3, 29), "Poniedziałek Wielkanocny"),
    (date(2027, 5, 1), "Święto Państwowe"),
    (date(2027, 5, 3), "Święto Narodowe Trzeciego Maja"),
    (date(2027, 5, 16), "Zielone Świątki"),
    (date(2027, 5, 27), "Dzień Bożego Ciała"),
    (date(2027, 8, 15), "Wniebowzięcie Najświętszej Marii Panny"),
    (date(2027, 11, 1), "Uroczystość Wszystkich Świętych"),
    (date(2027, 11, 11), "Narodowe Święto Niepodległości"),
    (date(2027, 12, 24), "Wigilia Bożego Narodzenia"),
    (date(2027, 12, 25), "Boże Narodzenie (pierwszy dzień)"),
    (date(2027, 12, 26), "Boże Narodzenie (drugi dzień)"),
]


def test_polish_holidays_2025_to_2027_are_exactly_the_statutory_list() -> None:
    assert polish_holidays(range(2025, 2028)) == dict(STATUTORY)


@pytest.mark.parametrize(("day", "name"), STATUTORY, ids=[d.isoformat() for d, _ in STATUTORY])
def test_every_statutory_holiday_is_closed_all_day(day: date, name: str) -> None:
    schedule = day_schedule(CAL, day)
    assert schedule == DaySchedule(day, None, None, name)
    for hour in (0, 9, 12, 16):
        assert not is_open(CAL, w(day.year, day.month, day.day, hour))
    # Even a team that works Saturday mornings does not work on a holiday Saturday.
    assert not is_open(SAT_CAL, w(day.year, day.month, day.day, 10))


@pytest.mark.parametrize("year", [2025, 2026, 2027])
def test_christmas_eve_is_a_holiday_from_2025(year: int) -> None:
    assert polish_holidays([year])[date(year, 12, 24)] == "Wigilia Bożego Narodzenia"


def test_christmas_eve_2024_was_still_a_working_day() -> None:
    assert date(2024, 12, 24) not in polish_holidays([2024])
    assert is_open(CAL, w(2024, 12, 24, 10))


def test_polish_holidays_of_no_years_is_empty() -> None:
    assert polish_holidays([]) == {}


# --- is_open / day_schedule ------------------------------------------------------------

IS_OPEN = [
    ("Monday 8:59:59", w(2026, 11, 23, 8, 59) + 59 * timedelta(seconds=1), False),
    ("Monday 9:00 opens", w(2026, 11, 23, 9), True),
    ("Monday 16:59:59.999999", w(2026, 11, 23, 17) - US, True),
    ("Monday 17:00 closed", w(2026, 11, 23, 17), False),
    ("Tuesday local midnight", w(2026, 11, 24, 0), False),
    ("Wednesday noon", w(2026, 11, 25, 12), True),
    ("Saturday noon", w(2026, 11, 21, 12), False),
    ("Sunday noon", w(2026, 11, 22, 12), False),
    ("Friday 16:30", w(2026, 11, 27, 16, 30), True),
    ("summer Monday 9:00 (07:00 UTC)", datetime(2026, 7, 6, 7, 0, tzinfo=UTC), True),
    ("summer Monday 06:59 UTC", datetime(2026, 7, 6, 6, 59, tzinfo=UTC), False),
    ("winter Monday 9:00 (08:00 UTC)", datetime(2026, 1, 12, 8, 0, tzinfo=UTC), True),
    ("winter Monday 07:59 UTC", datetime(2026, 1, 12, 7, 59, tzinfo=UTC), False),
]


@pytest.mark.parametrize(("case", "t", "expected"), IS_OPEN, ids=[c[0] for c in IS_OPEN])
def test_is_open(case: str, t: datetime, expected: bool) -> None:
    assert is_open(CAL, t) is expected


def test_is_open_accepts_any_aware_zone() -> None:
    assert is_open(CAL, datetime(2026, 11, 23, 9, tzinfo=WAW))
    assert not is_open(CAL, datetime(2026, 11, 23, 17, tzinfo=WAW))


SCHEDULES = [
    (date(2026, 11, 23), DaySchedule(date(2026, 11, 23), time(9), time(17))),
    (date(2026, 11, 21), DaySchedule(date(2026, 11, 21), None, None, "weekend")),
    (date(2026, 11, 22), DaySchedule(date(2026, 11, 22), None, None, "weekend")),
    (date(2026, 12, 25), DaySchedule(date(2026, 12, 25), None, None, "Boże Narodzenie (pierwszy dzień)")),
    (date(2026, 8, 15), DaySchedule(date(2026, 8, 15), None, None, "Wniebowzięcie Najświętszej Marii Panny")),
]


@pytest.mark.parametrize(("day", "expected"), SCHEDULES, ids=[d.isoformat() for d, _ in SCHEDULES])
def test_day_schedule(day: date, expected: DaySchedule) -> None:
    assert day_schedule(CAL, day) == expected
    assert day_schedule(CAL, day).is_open is (expected.opens is not None)


def test_day_schedule_of_the_on_call_calendar_is_all_day() -> None:
    schedule = day_schedule(ON_CALL, date(2026, 12, 25))
    assert schedule.all_day and schedule.is_open
    assert schedule.reason == "dyżur 24/7"


def test_a_closed_weekday_that_is_not_a_weekend_says_so() -> None:
    four_days = WorkingCalendar(hours={d: (time(9), time(17)) for d in range(4)})
    assert day_schedule(four_days, date(2026, 11, 27)).reason == "dzień wolny"


def test_day_schedule_rejects_a_datetime() -> None:
    with pytest.raises(ValueError, match="expected a date"):
        day_schedule(CAL, datetime(2026, 11, 23, 9))


# --- next_open / next_close ------------------------------------------------------------

NEXT_OPEN = [
    ("open now returns t", w(2026, 11, 23, 10, 15), w(2026, 11, 23, 10, 15)),
    ("exactly 9:00", w(2026, 11, 23, 9), w(2026, 11, 23, 9)),
    ("before opening same day", w(2026, 11, 23, 7), w(2026, 11, 23, 9)),
    ("local midnight", w(2026, 11, 24, 0), w(2026, 11, 24, 9)),
    ("UTC 23:30 Monday is local Tuesday 0:30", datetime(2026, 11, 23, 23, 30, tzinfo=UTC), w(2026, 11, 24, 9)),
    ("Friday 17:00", w(2026, 11, 20, 17), w(2026, 11, 23, 9)),
    ("Saturday", w(2026, 11, 21, 12), w(2026, 11, 23, 9)),
    ("Sunday 23:59", w(2026, 11, 22, 23, 59), w(2026, 11, 23, 9)),
    ("long weekend 1-3 May 2026", w(2026, 4, 30, 17), w(2026, 5, 4, 9)),
    ("Christmas 2026", w(2026, 12, 23, 17), w(2026, 12, 28, 9)),
    ("year end 2025 -> 2 Jan 2026", w(2025, 12, 31, 17), w(2026, 1, 2, 9)),
    ("year end 2026 -> 4 Jan 2027", w(2026, 12, 31, 17), w(2027, 1, 4, 9)),
    ("Easter 2027 across DST", w(2027, 3, 26, 17), w(2027, 3, 30, 9)),
    ("DST spring weekend 2026", w(2026, 3, 27, 17), w(2026, 3, 30, 9)),
    ("DST autumn weekend 2026", w(2026, 10, 23, 17), w(2026, 10, 26, 9)),
]


@pytest.mark.parametrize(("case", "t", "expected"), NEXT_OPEN, ids=[c[0] for c in NEXT_OPEN])
def test_next_open(case: str, t: datetime, expected: datetime) -> None:
    result = next_open(CAL, t)
    assert result == expected
    assert result.tzinfo is UTC


def test_next_open_after_the_spring_switch_is_9_local_which_is_7_utc() -> None:
    assert next_open(CAL, w(2026, 3, 27, 17)) == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    assert next_open(CAL, w(2026, 10, 23, 17)) == datetime(2026, 10, 26, 8, 0, tzinfo=UTC)


NEXT_CLOSE = [
    ("open: end of today", w(2026, 11, 23, 10), w(2026, 11, 23, 17)),
    ("before opening: end of today", w(2026, 11, 23, 6), w(2026, 11, 23, 17)),
    ("at 17:00: end of the next day", w(2026, 11, 23, 17), w(2026, 11, 24, 17)),
    ("Friday evening: Monday", w(2026, 11, 20, 18), w(2026, 11, 23, 17)),
    ("Christmas Eve 2026: Monday 28th", w(2026, 12, 24, 10), w(2026, 12, 28, 17)),
]


@pytest.mark.parametrize(("case", "t", "expected"), NEXT_CLOSE, ids=[c[0] for c in NEXT_CLOSE])
def test_next_close(case: str, t: datetime, expected: datetime) -> None:
    assert next_close(CAL, t) == expected


def test_the_on_call_calendar_is_always_open_and_never_closes() -> None:
    t = w(2026, 12, 25, 3)
    assert is_open(ON_CALL, t)
    assert next_open(ON_CALL, t) == t
    with pytest.raises(ValueError, match="never closes"):
        next_close(ON_CALL, t)


# --- add_working_time ------------------------------------------------------------------

ADD_TIME = [
    ("Friday 16:59 + 2 min -> Monday 9:01", w(2026, 11, 20, 16, 59), 2 * M, w(2026, 11, 23, 9, 1)),
    ("exactly the rest of the day ends at 17:00", w(2026, 11, 20, 16), H, w(2026, 11, 20, 17)),
    ("one microsecond more rolls over", w(2026, 11, 20, 16), H + US, w(2026, 11, 23, 9) + US),
    ("whole day from 9:00 ends at 17:00", w(2026, 11, 23, 9), 8 * H, w(2026, 11, 23, 17)),
    ("within the day", w(2026, 11, 23, 10), 3 * H, w(2026, 11, 23, 13)),
    ("from Saturday starts Monday 9:00", w(2026, 11, 21, 12), 2 * H, w(2026, 11, 23, 11)),
    ("from local midnight", w(2026, 11, 24, 0), H, w(2026, 11, 24, 10)),
    ("from 17:00 rolls to next day", w(2026, 11, 23, 17), H, w(2026, 11, 24, 10)),
    ("24 working hours = 3 days", w(2026, 11, 23, 13), 24 * H, w(2026, 11, 26, 13)),
    ("long weekend 1-3 May 2026", w(2026, 4, 30, 16), 2 * H, w(2026, 5, 4, 10)),
    ("Christmas 2026", w(2026, 12, 23, 16), 2 * H, w(2026, 12, 28, 10)),
    ("year end 2025", w(2025, 12, 31, 16, 30), H, w(2026, 1, 2, 9, 30)),
    ("DST spring: Friday -> Monday", w(2026, 3, 27, 16), 2 * H, w(2026, 3, 30, 10)),
    ("DST autumn: Friday -> Monday", w(2026, 10, 23, 16), 2 * H, w(2026, 10, 26, 10)),
    ("zero delta returns t even when closed", w(2026, 11, 21, 12), timedelta(0), w(2026, 11, 21, 12)),
]


@pytest.mark.parametrize(("case", "t", "delta", "expected"), ADD_TIME, ids=[c[0] for c in ADD_TIME])
def test_add_working_time(case: str, t: datetime, delta: timedelta, expected: datetime) -> None:
    result = add_working_time(CAL, t, delta)
    assert result == expected
    assert result.tzinfo is UTC


def test_add_working_time_rejects_negative_delta() -> None:
    with pytest.raises(ValueError, match="negative"):
        add_working_time(CAL, w(2026, 11, 23, 10), -M)


def test_add_working_time_on_call_is_real_elapsed_time_across_dst() -> None:
    t = w(2026, 10, 24, 20)  # Saturday before the autumn switch
    assert add_working_time(ON_CALL, t, 16 * H) == t + 16 * H


# --- add_working_days ------------------------------------------------------------------

ADD_DAYS = [
    ("acceptance: Wed 23.12.2026 16:30 + 4", w(2026, 12, 23, 16, 30), 4, w(2026, 12, 31, 16, 30)),
    ("zero days from open time is t", w(2026, 11, 23, 10), 0, w(2026, 11, 23, 10)),
    ("zero days from Saturday is next opening", w(2026, 11, 21, 10), 0, w(2026, 11, 23, 9)),
    ("Saturday + 1 -> Tuesday 9:00", w(2026, 11, 21, 10), 1, w(2026, 11, 24, 9)),
    ("Saturday + 7 (question)", w(2026, 11, 21, 10), 7, w(2026, 12, 2, 9)),
    ("Friday 16:59 + 1 -> Monday 16:59", w(2026, 11, 20, 16, 59), 1, w(2026, 11, 23, 16, 59)),
    ("14 working days (suggestion)", w(2026, 11, 23, 10), 14, w(2026, 12, 11, 10)),
    ("before opening: normalised to 9:00", w(2026, 11, 23, 7), 1, w(2026, 11, 24, 9)),
    ("after closing: next opening", w(2026, 11, 23, 18), 1, w(2026, 11, 25, 9)),
    ("long weekend May 2026", w(2026, 4, 30, 11), 1, w(2026, 5, 4, 11)),
    ("year end 2025 -> 2 Jan", w(2025, 12, 31, 11), 1, w(2026, 1, 2, 11)),
    ("year end 2026 -> 4 Jan", w(2026, 12, 31, 11), 1, w(2027, 1, 4, 11)),
    ("DST spring keeps local time", w(2026, 3, 27, 10), 1, w(2026, 3, 30, 10)),
    ("DST autumn keeps local time", w(2026, 10, 23, 10), 1, w(2026, 10, 26, 10)),
    ("Easter 2026", w(2026, 4, 3, 15), 2, w(2026, 4, 8, 15)),
]


@pytest.mark.parametrize(("case", "t", "n", "expected"), ADD_DAYS, ids=[c[0] for c in ADD_DAYS])
def test_add_working_days(case: str, t: datetime, n: int, expected: datetime) -> None:
    result = add_working_days(CAL, t, n)
    assert result == expected
    assert result.tzinfo is UTC


def test_add_working_days_spring_switch_is_23_real_hours_on_call() -> None:
    t = w(2026, 3, 28, 12)
    result = add_working_days(ON_CALL, t, 1)
    assert result == w(2026, 3, 29, 12)
    assert result - t == 23 * H


@pytest.mark.parametrize("n", [-1, True, 1.0])
def test_add_working_days_rejects_bad_n(n: object) -> None:
    with pytest.raises(ValueError, match="non-negative int"):
        add_working_days(CAL, w(2026, 11, 23, 10), n)  # type: ignore[arg-type]


# --- Saturday mornings, extra closed / open dates --------------------------------------

SATURDAY = [
    ("Saturday 9:00 opens", "is_open", w(2026, 11, 21, 9), True),
    ("Saturday 12:59 open", "is_open", w(2026, 11, 21, 12, 59), True),
    ("Saturday 13:00 closed", "is_open", w(2026, 11, 21, 13), False),
    ("Sunday closed", "is_open", w(2026, 11, 22, 10), False),
    ("Friday 16:59 + 2 min -> Saturday 9:01", "add", w(2026, 11, 20, 16, 59), w(2026, 11, 21, 9, 1)),
    ("Saturday 12:30 + 1 h -> Monday 9:30", "add", w(2026, 11, 21, 12, 30), w(2026, 11, 23, 9, 30)),
    ("Friday 15:00 + 1 day clamps to Saturday 13:00", "days", w(2026, 11, 20, 15), w(2026, 11, 21, 13)),
    ("Friday 10:00 + 1 day -> Saturday 10:00", "days", w(2026, 11, 20, 10), w(2026, 11, 21, 10)),
    ("Saturday 13:00 next opening is Monday", "next_open", w(2026, 11, 21, 13), w(2026, 11, 23, 9)),
]


@pytest.mark.parametrize(("case", "op", "t", "expected"), SATURDAY, ids=[c[0] for c in SATURDAY])
def test_saturday_morning_configuration(case: str, op: str, t: datetime, expected: object) -> None:
    if op == "is_open":
        assert is_open(SAT_CAL, t) is expected
    elif op == "add":
        delta = 2 * M if case.startswith("Friday") else H
        assert add_working_time(SAT_CAL, t, delta) == expected
    elif op == "days":
        assert add_working_days(SAT_CAL, t, 1) == expected
    else:
        assert next_open(SAT_CAL, t) == expected


def test_saturday_week_has_44_working_hours() -> None:
    assert working_time_between(SAT_CAL, w(2026, 11, 23), w(2026, 11, 30)) == 44 * H


INVENTORY = date(2026, 11, 25)  # a Wednesday
WORKING_SATURDAY = date(2026, 11, 28)
EXTRA = default_calendar(
    years=range(2026, 2027),
    extra_closed={INVENTORY: "inwentaryzacja"},
    extra_open={WORKING_SATURDAY: (time(10), time(14)), date(2026, 11, 11): (time(9), time(12))},
)


def test_extra_closed_date_is_closed_with_its_reason() -> None:
    assert day_schedule(EXTRA, INVENTORY) == DaySchedule(INVENTORY, None, None, "inwentaryzacja")
    assert not is_open(EXTRA, w(2026, 11, 25, 12))
    assert next_open(EXTRA, w(2026, 11, 24, 17)) == w(2026, 11, 26, 9)
    assert add_working_days(EXTRA, w(2026, 11, 24, 11), 1) == w(2026, 11, 26, 11)


def test_extra_open_saturday() -> None:
    schedule = day_schedule(EXTRA, WORKING_SATURDAY)
    assert (schedule.opens, schedule.closes, schedule.reason) == (time(10), time(14), "dodatkowe otwarcie")
    assert is_open(EXTRA, w(2026, 11, 28, 10))
    assert not is_open(EXTRA, w(2026, 11, 28, 14))
    assert next_open(EXTRA, w(2026, 11, 27, 17)) == w(2026, 11, 28, 10)
    # 9:30 is before the Saturday opening: clamp up to 10:00.
    assert add_working_days(EXTRA, w(2026, 11, 27, 9, 30), 1) == w(2026, 11, 28, 10)
    assert add_working_time(EXTRA, w(2026, 11, 27, 16), 2 * H) == w(2026, 11, 28, 11)


def test_extra_open_wins_over_a_holiday() -> None:
    assert is_open(EXTRA, w(2026, 11, 11, 10))
    assert not is_open(EXTRA, w(2026, 11, 11, 12))
    assert not is_open(CAL, w(2026, 11, 11, 10))


def test_a_plain_set_of_holidays_is_accepted() -> None:
    cal = WorkingCalendar(holidays={date(2026, 11, 24)})
    assert not is_open(cal, w(2026, 11, 24, 10))
    assert day_schedule(cal, date(2026, 11, 24)).reason == "święto ustawowe"
    # No holidays given: Christmas is an ordinary Friday.
    assert is_open(WorkingCalendar(), w(2026, 12, 25, 10))


def test_calendar_copies_its_inputs() -> None:
    closed = {INVENTORY: "inwentaryzacja"}
    cal = WorkingCalendar(extra_closed=closed)
    closed[date(2026, 11, 26)] = "later"
    assert is_open(cal, w(2026, 11, 26, 10))


# --- working_time_between --------------------------------------------------------------

BETWEEN = [
    ("b before a", w(2026, 11, 23, 12), w(2026, 11, 23, 10), timedelta(0)),
    ("equal", w(2026, 11, 23, 12), w(2026, 11, 23, 12), timedelta(0)),
    ("within a day", w(2026, 11, 23, 10), w(2026, 11, 23, 12, 30), 150 * M),
    ("whole week", w(2026, 11, 23), w(2026, 11, 30), 40 * H),
    ("weekend only", w(2026, 11, 20, 17), w(2026, 11, 23, 9), timedelta(0)),
    ("Friday 16:59 -> Monday 9:01", w(2026, 11, 20, 16, 59), w(2026, 11, 23, 9, 1), 2 * M),
    ("Christmas week 2026", w(2026, 12, 21), w(2026, 12, 28), 24 * H),
    ("1-3 May 2026 week", w(2026, 4, 27), w(2026, 5, 4), 32 * H),
    # Two weeks around the spring switch (29.3.2026): 10 days of 8 h, though the
    # real elapsed time is an hour short of 12 days.
    ("DST spring fortnight", w(2026, 3, 23), w(2026, 4, 4), 80 * H),
    ("DST spring Fri 9:00 -> Mon 17:00", w(2026, 3, 27, 9), w(2026, 3, 30, 17), 16 * H),
    ("DST autumn Fri 9:00 -> Mon 17:00", w(2026, 10, 23, 9), w(2026, 10, 30, 17), 48 * H),
    ("year 2026: 253 working days", w(2026, 1, 1), w(2027, 1, 1), 253 * 8 * H),
    ("year 2025: 251 working days", w(2025, 1, 1), w(2026, 1, 1), 251 * 8 * H),
]


@pytest.mark.parametrize(("case", "a", "b", "expected"), BETWEEN, ids=[c[0] for c in BETWEEN])
def test_working_time_between(case: str, a: datetime, b: datetime, expected: timedelta) -> None:
    assert working_time_between(CAL, a, b) == expected


def test_dst_fortnight_real_time_differs_but_working_time_does_not() -> None:
    a, b = w(2026, 3, 23), w(2026, 4, 4)
    assert b - a == 12 * 24 * H - H
    assert working_time_between(ON_CALL, a, b) == b - a


# --- validation ------------------------------------------------------------------------

NAIVE = datetime(2026, 11, 23, 10)


@pytest.mark.parametrize(
    "call",
    [
        lambda: is_open(CAL, NAIVE),
        lambda: next_open(CAL, NAIVE),
        lambda: next_close(CAL, NAIVE),
        lambda: add_working_time(CAL, NAIVE, H),
        lambda: add_working_days(CAL, NAIVE, 1),
        lambda: working_time_between(CAL, NAIVE, w(2026, 11, 24)),
        lambda: working_time_between(CAL, w(2026, 11, 22), NAIVE),
        lambda: is_open(ON_CALL, NAIVE),
    ],
    ids=["is_open", "next_open", "next_close", "add_time", "add_days", "between_a", "between_b", "on_call"],
)
def test_naive_datetimes_are_rejected(call: object) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        call()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hours": {0: (time(17), time(9))}}, "open before it closes"),
        ({"hours": {0: (time(9), time(9))}}, "open before it closes"),
        ({"hours": {7: (time(9), time(17))}}, "weekday"),
        ({"hours": {0: (time(9, tzinfo=UTC), time(17))}}, "naive"),
        ({"hours": {0: (9, 17)}}, "datetime.time"),
        ({"tz": UTC}, "ZoneInfo"),
        ({"holidays": {datetime(2026, 1, 1): "x"}}, "expected a date"),
        ({"extra_open": {date(2026, 1, 1): (time(9),)}}, "opens, closes"),
        (
            {"extra_open": {date(2026, 1, 2): (time(9), time(10))}, "extra_closed": {date(2026, 1, 2): "x"}},
            "both extra_open and extra_closed",
        ),
    ],
)
def test_invalid_calendars_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WorkingCalendar(**kwargs)  # type: ignore[arg-type]


def test_a_never_open_calendar_raises_instead_of_looping() -> None:
    never = WorkingCalendar(hours={})
    t = w(2026, 11, 23, 10)
    assert not is_open(never, t)
    assert working_time_between(never, t, t + 30 * 24 * H) == timedelta(0)
    for call in (
        lambda: next_open(never, t),
        lambda: next_close(never, t),
        lambda: add_working_time(never, t, H),
        lambda: add_working_days(never, t, 1),
    ):
        with pytest.raises(ValueError, match="no opening within 400 days"):
            call()


def test_a_calendar_open_once_a_year_still_works() -> None:
    once = WorkingCalendar(hours={}, extra_open={date(2027, 6, 1): (time(9), time(10))})
    assert next_open(once, w(2026, 7, 1)) == w(2027, 6, 1, 9)
    assert add_working_time(once, w(2026, 7, 1), 30 * M) == w(2027, 6, 1, 9, 30)


def test_absurdly_long_spans_are_refused() -> None:
    with pytest.raises(ValueError):
        add_working_days(CAL, w(2026, 1, 1), 10**9)
    with pytest.raises(ValueError):
        working_time_between(CAL, datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC))


# --- properties ------------------------------------------------------------------------

instants = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 1), timezones=st.just(UTC))
durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=300))
calendars = st.sampled_from([CAL, SAT_CAL, EXTRA])


@PROPERTY
@given(cal=calendars, t=instants, a=durations, b=durations)
def test_add_working_time_is_associative(cal: WorkingCalendar, t: datetime, a: timedelta, b: timedelta) -> None:
    assert add_working_time(cal, t, a + b) == add_working_time(cal, add_working_time(cal, t, a), b)


@PROPERTY
@given(cal=calendars, t=instants, d=durations)
def test_working_time_between_inverts_add_working_time(cal: WorkingCalendar, t: datetime, d: timedelta) -> None:
    end = add_working_time(cal, t, d)
    assert end >= t
    assert working_time_between(cal, t, end) == d
    if d:
        # Earliest such instant: a microsecond sooner is not enough.
        assert working_time_between(cal, t, end - US) < d


@PROPERTY
@given(cal=calendars, t=instants)
def test_next_open_is_open_and_nothing_earlier_is(cal: WorkingCalendar, t: datetime) -> None:
    opening = next_open(cal, t)
    assert opening >= t
    assert is_open(cal, opening)
    assert working_time_between(cal, t, opening) == timedelta(0)
    assert (opening == t) is is_open(cal, t)
    if opening > t:
        assert not is_open(cal, opening - US)


@PROPERTY
@given(cal=calendars, t=instants)
def test_next_close_ends_a_fully_open_interval(cal: WorkingCalendar, t: datetime) -> None:
    opening, closing = next_open(cal, t), next_close(cal, t)
    assert closing > opening
    assert working_time_between(cal, opening, closing) == closing - opening
    assert not is_open(cal, closing)
    assert is_open(cal, closing - US)


@PROPERTY
@given(cal=calendars, a=instants, b=instants, c=instants)
def test_working_time_between_is_additive_and_bounded(
    cal: WorkingCalendar, a: datetime, b: datetime, c: datetime
) -> None:
    a, b, c = sorted((a, b, c))
    assert working_time_between(cal, a, c) == working_time_between(cal, a, b) + working_time_between(cal, b, c)
    assert working_time_between(cal, a, c) <= c - a


@PROPERTY
@given(cal=calendars, t=instants, n=st.integers(min_value=0, max_value=30))
def test_add_working_days_lands_in_hours_and_moves_forward(cal: WorkingCalendar, t: datetime, n: int) -> None:
    result = add_working_days(cal, t, n)
    assert result >= next_open(cal, t)
    # Inside the day's hours, or exactly at a clamped closing.
    assert is_open(cal, result) or is_open(cal, result - US)
    assert add_working_days(cal, t, n + 1) > result
    if n:
        # n following working days: each starts a new local date with an opening.
        start_day = next_open(cal, t).astimezone(cal.tz).date()
        end_day = result.astimezone(cal.tz).date()
        open_days = sum(
            1
            for k in range(1, (end_day - start_day).days + 1)
            if day_schedule(cal, start_day + timedelta(days=k)).is_open
        )
        assert open_days == n


@PROPERTY
@given(t=instants, d=durations)
def test_on_call_calendar_is_plain_elapsed_time(t: datetime, d: timedelta) -> None:
    assert add_working_time(ON_CALL, t, d) == t + d
    assert working_time_between(ON_CALL, t, t + d) == d
    assert next_open(ON_CALL, t) == t


def test_the_package_pin_admits_only_holidays_releases_that_know_wigilia() -> None:
    """24 December is a statutory day off from 2025; the `holidays` package knows it
    from 0.64. An older release would make a minor ticket of 23.12 due a day early."""
    import re
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    (pin,) = [d for d in project["project"]["dependencies"] if d.startswith("holidays")]
    minimum = re.search(r">=\s*(\d+)\.(\d+)", pin)
    assert minimum is not None, pin
    assert (int(minimum.group(1)), int(minimum.group(2))) >= (0, 64), pin
