"""Working calendar: when the support team is open, and arithmetic over working time.

Owns the opening hours (Mon–Fri 9:00–17:00 Europe/Warsaw by default), Polish statutory
holidays, configured extra closed and extra open dates, the 24/7 on-call calendar used
for critical tickets, and every conversion between UTC instants and Warsaw wall-clock
time. All public functions take and return UTC-aware datetimes; local time exists only
inside this module. Pure module: it must not import starlette, redis, sqlalchemy,
asyncio, msgpack or jwt, must not read the wall clock and performs no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Set
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo

import holidays as holidays_lib

WARSAW = ZoneInfo("Europe/Warsaw")
NINE_TO_FIVE: tuple[time, time] = (time(9, 0), time(17, 0))
DEFAULT_HOURS: Mapping[int, tuple[time, time]] = MappingProxyType({day: NINE_TO_FIVE for day in range(5)})

# A calendar with no opening in this many consecutive days is treated as never open,
# so every search over days terminates.
MAX_CLOSED_DAYS = 400
# Hard ceiling on any single walk over days (about a century), against absurd inputs.
MAX_WALK_DAYS = 36_600

REASON_WEEKEND = "weekend"
REASON_CLOSED_WEEKDAY = "dzień wolny"
REASON_HOLIDAY = "święto ustawowe"
REASON_EXTRA_OPEN = "dodatkowe otwarcie"
REASON_ON_CALL = "dyżur 24/7"

_ZERO = timedelta(0)


@dataclass(frozen=True)
class WorkingCalendar:
    """Opening hours of the support team.

    Precedence for a given local date: `always_open`, then `extra_open` (beats holidays
    and the weekday rule), then `extra_closed`, then `holidays`, then `hours`. Opening
    intervals are half-open: open at `opens`, already closed at `closes`. `holidays` may
    be a set of dates (tests) instead of a date → name mapping.
    """

    tz: ZoneInfo = WARSAW
    hours: Mapping[int, tuple[time, time]] = field(default_factory=lambda: DEFAULT_HOURS)
    holidays: Mapping[date, str] | Set[date] = field(default_factory=dict)
    extra_closed: Mapping[date, str] = field(default_factory=dict)
    extra_open: Mapping[date, tuple[time, time]] = field(default_factory=dict)
    always_open: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.tz, ZoneInfo):
            raise ValueError(f"tz must be a zoneinfo.ZoneInfo, got {self.tz!r}")
        for weekday, span in self.hours.items():
            if not isinstance(weekday, int) or not 0 <= weekday <= 6:
                raise ValueError(f"weekday must be 0 (Monday) … 6 (Sunday), got {weekday!r}")
            _check_span(span, f"hours[{weekday}]")
        for day, span in self.extra_open.items():
            _check_date(day, "extra_open")
            _check_span(span, f"extra_open[{day}]")
        for day in self.extra_closed:
            _check_date(day, "extra_closed")
        both = set(self.extra_open) & set(self.extra_closed)
        if both:
            listed = ", ".join(sorted(d.isoformat() for d in both))
            raise ValueError(f"dates both extra_open and extra_closed: {listed}")
        if isinstance(self.holidays, Mapping):
            named: dict[date, str] = dict(self.holidays)
        else:
            named = {day: REASON_HOLIDAY for day in self.holidays}
        for day in named:
            _check_date(day, "holidays")
        # Copies behind read-only views: a caller mutating its dict later must not
        # change a calendar that is already in use.
        object.__setattr__(self, "hours", MappingProxyType(dict(self.hours)))
        object.__setattr__(self, "holidays", MappingProxyType(named))
        object.__setattr__(self, "extra_closed", MappingProxyType(dict(self.extra_closed)))
        object.__setattr__(self, "extra_open", MappingProxyType(dict(self.extra_open)))

    @classmethod
    def on_call(cls, tz: ZoneInfo = WARSAW) -> WorkingCalendar:
        """The 24/7 on-call calendar: every instant is working time."""
        return cls(tz=tz, hours={}, always_open=True)


def always_open(tz: ZoneInfo = WARSAW) -> WorkingCalendar:
    """The 24/7 on-call calendar that critical tickets run on."""
    return WorkingCalendar.on_call(tz)


@dataclass(frozen=True)
class DaySchedule:
    """Opening hours of one local date, for display.

    `opens`/`closes` are local wall-clock times, both None when closed. `reason` explains
    a closed day (holiday name, "weekend", configured reason) or an unusual opening;
    it is None on an ordinary working day. `all_day` marks the 24/7 calendar.
    """

    date: date
    opens: time | None
    closes: time | None
    reason: str | None = None
    all_day: bool = False

    @property
    def is_open(self) -> bool:
        return self.opens is not None


def polish_holidays(years: Iterable[int]) -> dict[date, str]:
    """Polish statutory non-working days (Polish names) for the given years.

    Christmas Eve is included from 2025 on, as the law (and the `holidays` package) say.
    """
    wanted = sorted(set(years))
    if not wanted:
        return {}
    table = holidays_lib.country_holidays("PL", years=wanted, language="pl")
    return dict(sorted(table.items()))


def default_calendar(
    extra_closed: Mapping[date, str] | None = None,
    extra_open: Mapping[date, tuple[time, time]] | None = None,
    saturday: tuple[time, time] | None = None,
    years: Iterable[int] = range(2020, 2041),
    tz: ZoneInfo = WARSAW,
) -> WorkingCalendar:
    """Mon–Fri 9:00–17:00 without Polish holidays; `saturday` adds Saturday mornings.

    Holidays are computed once here for `years`; dates outside that range have none.
    """
    hours = dict(DEFAULT_HOURS)
    if saturday is not None:
        hours[5] = saturday
    return WorkingCalendar(
        tz=tz,
        hours=hours,
        holidays=polish_holidays(years),
        extra_closed=dict(extra_closed or {}),
        extra_open=dict(extra_open or {}),
    )


def day_schedule(cal: WorkingCalendar, d: date) -> DaySchedule:
    """Opening hours and the reason behind them for one local date."""
    _check_date(d, "day_schedule")
    if cal.always_open:
        return DaySchedule(d, time.min, time.max, REASON_ON_CALL, all_day=True)
    if d in cal.extra_open:
        opens, closes = cal.extra_open[d]
        return DaySchedule(d, opens, closes, REASON_EXTRA_OPEN)
    if d in cal.extra_closed:
        return DaySchedule(d, None, None, cal.extra_closed[d])
    holiday = _holiday_name(cal, d)
    if holiday is not None:
        return DaySchedule(d, None, None, holiday)
    span = cal.hours.get(d.weekday())
    if span is None:
        reason = REASON_WEEKEND if d.weekday() >= 5 else REASON_CLOSED_WEEKDAY
        return DaySchedule(d, None, None, reason)
    return DaySchedule(d, span[0], span[1])


def is_open(cal: WorkingCalendar, t: datetime) -> bool:
    """Whether support is working at instant `t`."""
    require_aware(t, "t")
    if cal.always_open:
        return True
    span = _interval(cal, _local_date(cal, t))
    return span is not None and span[0] <= t < span[1]


def open_span(cal: WorkingCalendar, t: datetime) -> tuple[datetime, datetime] | None:
    """The opening interval `t` is in (UTC instants, end excluded), None while closed
    (and for an always-open calendar, which has no intervals)."""
    require_aware(t, "t")
    if cal.always_open:
        return None
    span = _interval(cal, _local_date(cal, t))
    return span if span is not None and span[0] <= t < span[1] else None


def next_open(cal: WorkingCalendar, t: datetime) -> datetime:
    """`t` itself if open, else the start of the next opening interval."""
    require_aware(t, "t")
    if cal.always_open:
        return t.astimezone(UTC)
    start, _ = _first_interval_ending_after(cal, t)
    return max(start, t).astimezone(UTC)


def next_close(cal: WorkingCalendar, t: datetime) -> datetime:
    """End of the opening interval containing `t`, or of the next one if closed now.

    The on-call calendar never closes, so asking it is a ValueError.
    """
    require_aware(t, "t")
    if cal.always_open:
        raise ValueError("the 24/7 on-call calendar never closes")
    _, end = _first_interval_ending_after(cal, t)
    return end


def add_working_time(cal: WorkingCalendar, t: datetime, delta: timedelta) -> datetime:
    """The earliest instant by which `delta` of working time has passed since `t`.

    Counting starts at next_open(t) when `t` is outside hours. Being the *earliest*
    such instant, using up exactly the rest of a day ends at that day's closing (17:00),
    not at the next opening, and a zero delta returns `t` unchanged.
    """
    require_aware(t, "t")
    if delta < _ZERO:
        raise ValueError(f"delta must not be negative, got {delta}")
    t = t.astimezone(UTC)
    if delta == _ZERO:
        return t
    if cal.always_open:
        return t + delta
    remaining = delta
    for start, end in _intervals_from(cal, _local_date(cal, t)):
        if end <= t:
            continue
        start = max(start, t)
        available = end - start
        if remaining <= available:
            return start + remaining
        remaining -= available
    raise ValueError("no opening found")  # pragma: no cover - _intervals_from raises first


def add_working_days(cal: WorkingCalendar, t: datetime, n: int) -> datetime:
    """The same local time of day on the n-th following working day.

    `t` is first moved to next_open(t). If the target day's hours do not contain that
    time of day (a Saturday morning, a short extra opening), the result is clamped to
    the day's opening or closing.
    """
    require_aware(t, "t")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if n > MAX_WALK_DAYS:
        raise ValueError(f"n must be at most {MAX_WALK_DAYS}, got {n}")
    start = next_open(cal, t)
    if n == 0:
        return start
    local = start.astimezone(cal.tz)
    time_of_day = local.time()
    day = local.date()
    counted = 0
    closed_run = 0
    for _ in range(MAX_WALK_DAYS + MAX_CLOSED_DAYS):
        day = _next_day(day)
        schedule = day_schedule(cal, day)
        if schedule.opens is None or schedule.closes is None:
            closed_run += 1
            if closed_run > MAX_CLOSED_DAYS:
                raise ValueError(f"calendar has no opening within {MAX_CLOSED_DAYS} days")
            continue
        closed_run = 0
        counted += 1
        if counted == n:
            if cal.always_open:
                # Wall-clock time of day on the target date; zoneinfo resolves a time
                # that falls in a DST gap or overlap.
                return datetime.combine(day, time_of_day, tzinfo=cal.tz).astimezone(UTC)
            clamped = min(max(time_of_day, schedule.opens), schedule.closes)
            return datetime.combine(day, clamped, tzinfo=cal.tz).astimezone(UTC)
    raise ValueError("add_working_days walked too far")  # pragma: no cover


def working_time_between(cal: WorkingCalendar, a: datetime, b: datetime) -> timedelta:
    """Working time inside [a, b); zero when b <= a."""
    require_aware(a, "a")
    require_aware(b, "b")
    a, b = a.astimezone(UTC), b.astimezone(UTC)
    if b <= a:
        return _ZERO
    if cal.always_open:
        return b - a
    total = _ZERO
    day = _local_date(cal, a)
    last = _local_date(cal, b)
    if (last - day).days > MAX_WALK_DAYS:
        raise ValueError(f"span longer than {MAX_WALK_DAYS} days")
    while day <= last:
        span = _interval(cal, day)
        if span is not None:
            start, end = max(span[0], a), min(span[1], b)
            if end > start:
                total += end - start
        day = _next_day(day)
    return total


def to_local(cal: WorkingCalendar, t: datetime) -> datetime:
    """`t` as wall-clock time in the calendar's zone (for display only)."""
    require_aware(t, "t")
    return t.astimezone(cal.tz)


def require_aware(t: datetime, name: str) -> None:
    """ValueError unless `t` is a timezone-aware datetime (naive times are ambiguous)."""
    if not isinstance(t, datetime):
        raise ValueError(f"{name} must be a datetime, got {type(t).__name__}")
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {t.isoformat()}")


# --- internals -------------------------------------------------------------------------


def _interval(cal: WorkingCalendar, d: date) -> tuple[datetime, datetime] | None:
    """Opening interval of local date `d` as UTC instants, None when closed.

    Built with datetime.combine(…, tzinfo=tz) so the offset is the one in force at that
    wall-clock time; 9:00–17:00 stays 9:00–17:00 on both sides of a DST switch.
    """
    schedule = day_schedule(cal, d)
    if schedule.opens is None or schedule.closes is None:
        return None
    start = datetime.combine(d, schedule.opens, tzinfo=cal.tz).astimezone(UTC)
    end = datetime.combine(d, schedule.closes, tzinfo=cal.tz).astimezone(UTC)
    return start, end


def _intervals_from(cal: WorkingCalendar, first: date) -> Iterator[tuple[datetime, datetime]]:
    """Opening intervals of `first` and the following dates, in order.

    Raises ValueError after MAX_CLOSED_DAYS days in a row without an opening or after
    MAX_WALK_DAYS days in total, so callers' loops are bounded.
    """
    day = first
    closed_run = 0
    for _ in range(MAX_WALK_DAYS):
        span = _interval(cal, day)
        if span is None:
            closed_run += 1
            if closed_run > MAX_CLOSED_DAYS:
                raise ValueError(f"calendar has no opening within {MAX_CLOSED_DAYS} days")
        else:
            closed_run = 0
            yield span
        day = _next_day(day)
    raise ValueError(f"no result within {MAX_WALK_DAYS} days")


def _first_interval_ending_after(cal: WorkingCalendar, t: datetime) -> tuple[datetime, datetime]:
    for start, end in _intervals_from(cal, _local_date(cal, t)):
        if end > t:
            return start, end
    raise ValueError("no opening found")  # pragma: no cover - _intervals_from raises first


def _holiday_name(cal: WorkingCalendar, d: date) -> str | None:
    table = cal.holidays
    # __post_init__ always leaves a read-only mapping: the concrete check is cheap, the
    # abstract one (isinstance against Mapping) costs more than the lookup it guards.
    if isinstance(table, MappingProxyType) or isinstance(table, Mapping):
        return table.get(d)
    return REASON_HOLIDAY if d in table else None


def _local_date(cal: WorkingCalendar, t: datetime) -> date:
    return t.astimezone(cal.tz).date()


def _next_day(d: date) -> date:
    if d == date.max:
        raise ValueError("date out of range")
    return d + timedelta(days=1)


def _check_date(d: object, what: str) -> None:
    # datetime is a subclass of date; a datetime key would silently never match.
    if not isinstance(d, date) or isinstance(d, datetime):
        raise ValueError(f"{what}: expected a date, got {d!r}")


def _check_span(span: object, what: str) -> None:
    if not (isinstance(span, tuple) and len(span) == 2):
        raise ValueError(f"{what}: expected (opens, closes), got {span!r}")
    opens, closes = span
    if not isinstance(opens, time) or not isinstance(closes, time):
        raise ValueError(f"{what}: opens and closes must be datetime.time, got {span!r}")
    if opens.tzinfo is not None or closes.tzinfo is not None:
        raise ValueError(f"{what}: times must be naive local wall-clock times")
    if not opens < closes:
        raise ValueError(f"{what}: must open before it closes, got {opens}–{closes}")
