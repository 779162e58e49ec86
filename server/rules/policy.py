"""The support policy in force: working calendar, reaction targets, and what they mean
for a new ticket or message. Pure: built once from settings, then plain functions of
their inputs and `now`; it must not import starlette, redis, sqlalchemy, asyncio or jwt.

Configuration strings (parsed here so that a bad value fails at startup):
- `POMOC_HOURS`: "mon-fri 09:00-17:00" (default); several parts joined by ";",
  e.g. "mon-fri 09:00-17:00; sat 09:00-13:00" for Saturday mornings;
- `POMOC_CLOSED_DATES`: "2026-12-31 Inwentaryzacja, 2027-01-02" (extra closed days);
- `POMOC_OPEN_DATES`: "2026-12-27 10:00-14:00" (extra opening, wins over holidays);
- `POMOC_SLA`: "critical=16h, major=24wh, minor=4wd" (h: hours on the clock,
  wh: working hours, wd: working days); `POMOC_SLA_WARNING` likewise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from server.rules.calendar import WARSAW, WorkingCalendar, default_calendar, is_open, next_open
from server.rules.severity import Severity, parse_severity
from server.rules.sla import SlaPolicy, Target, acknowledgment, due_at, queued_until, warning_at

_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_DAY_NAMES = {v: k for k, v in _DAYS.items()}
_UNITS = {"h": "hours", "wh": "working_hours", "wd": "working_days"}


def _span(text: str, what: str) -> tuple[time, time]:
    match = re.fullmatch(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})", text.strip())
    if not match:
        raise ValueError(f"{what}: expected HH:MM-HH:MM, got {text!r}")
    h1, m1, h2, m2 = map(int, match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59 or (h1, m1) >= (h2, m2):
        raise ValueError(f"{what}: {text!r} is not an opening span within one day")
    return time(h1, m1), time(h2, m2)


def parse_hours(text: str) -> dict[int, tuple[time, time]]:
    hours: dict[int, tuple[time, time]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        days, _, span = part.partition(" ")
        first, _, last = days.lower().partition("-")
        if first not in _DAYS or (last and last not in _DAYS):
            raise ValueError(f"POMOC_HOURS: unknown day in {part!r} (use mon … sun)")
        start, end = _DAYS[first], _DAYS[last or first]
        if end < start:
            raise ValueError(f"POMOC_HOURS: {days!r} runs backwards")
        for day in range(start, end + 1):
            if day in hours:
                # One opening span per day: a split shift would silently lose a span.
                raise ValueError(f"POMOC_HOURS: {part!r} gives {_DAY_NAMES[day]} a second opening span; "
                                 "one span per day (e.g. 'mon-fri 09:00-17:00; sat 09:00-13:00')")
            hours[day] = _span(span, "POMOC_HOURS")
    if not hours:
        raise ValueError("POMOC_HOURS names no opening hours")
    return hours


def parse_closed_dates(text: str) -> dict[date, str]:
    out: dict[date, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        day, _, reason = part.partition(" ")
        try:
            out[date.fromisoformat(day)] = reason.strip() or "zamknięte"
        except ValueError:
            raise ValueError(f"POMOC_CLOSED_DATES: {day!r} is not a date (YYYY-MM-DD)") from None
    return out


def parse_open_dates(text: str) -> dict[date, tuple[time, time]]:
    out: dict[date, tuple[time, time]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        day, _, span = part.partition(" ")
        try:
            out[date.fromisoformat(day)] = _span(span, "POMOC_OPEN_DATES")
        except ValueError as exc:
            raise ValueError(f"POMOC_OPEN_DATES: {part!r}: {exc}") from None
    return out


def parse_targets(text: str, what: str) -> dict[Severity, Target]:
    out: dict[Severity, Target] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        match = re.fullmatch(r"(\d+)\s*(h|wh|wd)", value.strip())
        if not match:
            raise ValueError(f"{what}: expected severity=N(h|wh|wd), got {part!r}")
        try:
            severity = parse_severity(name.strip())
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None
        out[severity] = Target(int(match.group(1)), _UNITS[match.group(2)])  # type: ignore[arg-type]
    return out


@dataclass(frozen=True)
class SupportPolicy:
    calendar: WorkingCalendar
    sla: SlaPolicy = field(default_factory=SlaPolicy)

    @classmethod
    def from_config(cls, hours: str = "", closed: str = "", opened: str = "", sla: str = "",
                    warning: str = "", tz: ZoneInfo = WARSAW) -> SupportPolicy:
        calendar = default_calendar(extra_closed=parse_closed_dates(closed), extra_open=parse_open_dates(opened),
                                    tz=tz)
        if hours:
            calendar = WorkingCalendar(tz=calendar.tz, hours=parse_hours(hours), holidays=calendar.holidays,
                                       extra_closed=calendar.extra_closed, extra_open=calendar.extra_open)
        base = SlaPolicy()
        policy = SlaPolicy(reaction={**base.reaction, **parse_targets(sla, "POMOC_SLA")},
                           warning={**base.warning, **parse_targets(warning, "POMOC_SLA_WARNING")})
        return cls(calendar, policy)

    def intake(self, severity: str, now: datetime, agents_online: int, lang: str = "pl") -> Intake:
        """What a new ticket gets: its deadline, whether it waits, and the acknowledgment."""
        sev = Severity(severity)
        held = queued_until(self.calendar, sev, now)
        # A held ticket's clock starts when support opens; the reaction target counts
        # working time anyway, so the deadline is the same either way.
        due = due_at(self.sla, sev, now, self.calendar)
        text = acknowledgment(sev, now, due, held, 0 if held else agents_online, self.calendar, lang)
        return Intake(sla_due_at=due, queued_until=held, acknowledgment=text,
                      warning_at=warning_at(self.sla, sev, now, self.calendar))

    def due(self, severity: str, opened_at: datetime) -> datetime:
        return due_at(self.sla, Severity(severity), opened_at, self.calendar)

    def warning(self, severity: str, opened_at: datetime) -> datetime:
        return warning_at(self.sla, Severity(severity), opened_at, self.calendar)

    def hold(self, severity: str, now: datetime) -> datetime | None:
        """Until when a customer's message waits (None: it goes to agents now)."""
        return queued_until(self.calendar, Severity(severity), now)

    def closed_until(self, now: datetime) -> datetime | None:
        """When support opens next, while it is closed; None while it is open."""
        return None if is_open(self.calendar, now) else next_open(self.calendar, now)

    def service(self, now: datetime) -> dict[str, Any]:
        open_now = is_open(self.calendar, now)
        return {"open": open_now, "next_open": None if open_now else next_open(self.calendar, now).isoformat()}


def weekly_hours(calendar: WorkingCalendar) -> list[dict[str, Any]]:
    """The usual week, runs of days with the same hours: [{days: [0…4], opens: "09:00",
    closes: "17:00"}] (0 = Monday; holidays and extra dates are not listed)."""
    runs: list[dict[str, Any]] = []
    for day in range(7):
        span = calendar.hours.get(day)
        if span is None:
            continue
        opens, closes = f"{span[0]:%H:%M}", f"{span[1]:%H:%M}"
        last = runs[-1] if runs else None
        if last and last["days"][-1] == day - 1 and (last["opens"], last["closes"]) == (opens, closes):
            last["days"].append(day)
        else:
            runs.append({"days": [day], "opens": opens, "closes": closes})
    return runs


@dataclass(frozen=True, slots=True)
class Intake:
    sla_due_at: datetime
    queued_until: datetime | None
    acknowledgment: str
    warning_at: datetime

