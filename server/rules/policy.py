"""The support policy in force: working calendar, reaction targets, and what they mean
for a new ticket or message. Pure: built once from settings, then plain functions of
their inputs and `now`; it must not import starlette, redis, sqlalchemy, asyncio or jwt.

Configuration strings (parsed here so that a bad value fails at startup):
- `POMOC_HOURS`: "mon-fri 09:00-17:00" (default); several parts joined by ";",
  e.g. "mon-fri 09:00-17:00; sat 09:00-13:00" for Saturday mornings;
- `POMOC_CLOSED_DATES`: "2026-12-31 Inwentaryzacja, 2027-01-02" (extra closed days);
- `POMOC_OPEN_DATES`: "2026-12-27 10:00-14:00" (extra opening, wins over holidays);
- `POMOC_SLA`: "critical=16h, major=24wh, minor=4wd" (h: hours on the clock,
  wh: working hours, wd: working days); `POMOC_SLA_WARNING` likewise;
- `POMOC_PLANS` and `POMOC_SAME_DAY_CUTOFF`: the plans' hours and ranks and the
  same-day rule (`server.rules.plans`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from server.rules.calendar import (
    WARSAW,
    WorkingCalendar,
    default_calendar,
    is_open,
    next_open,
    open_span,
    working_time_between,
)
from server.rules.deadlines import Running
from server.rules.hours import parse_hours, parse_span
from server.rules.plans import DEFAULT_PLAN, Plan, parse_cutoff, parse_plans, promise, same_day_due
from server.rules.severity import Severity, parse_severity
from server.rules.sla import SlaPolicy, Target, acknowledgment, calendar_for, due_at, queued_until, warning_at

_UNITS = {"h": "hours", "wh": "working_hours", "wd": "working_days"}


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
            out[date.fromisoformat(day)] = parse_span(span, "POMOC_OPEN_DATES")
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
    """The calendar (the standard plan's), the reaction targets, the plans and the
    same-day rule; every question about a ticket's time is asked with its plan
    (None: the standard plan)."""

    calendar: WorkingCalendar
    sla: SlaPolicy = field(default_factory=SlaPolicy)
    plans: Mapping[str, Plan] = field(default_factory=dict)
    same_day_cutoff: time | None = None

    def __post_init__(self) -> None:
        if not self.plans:
            object.__setattr__(self, "plans", parse_plans("", self.calendar))
        object.__setattr__(self, "plans", MappingProxyType(dict(self.plans)))
        # Every welcome carries its plan's week: worked out once per plan, not per hello.
        object.__setattr__(self, "_weekly", {})
        # Per plan, the opening interval last seen: every customer message asks whether
        # support is open, and the answer stays the same until the interval ends.
        object.__setattr__(self, "_open", {})

    @classmethod
    def from_config(cls, hours: str = "", closed: str = "", opened: str = "", sla: str = "",
                    warning: str = "", tz: ZoneInfo = WARSAW, plans: str = "", same_day_cutoff: str = ""
                    ) -> SupportPolicy:
        calendar = default_calendar(extra_closed=parse_closed_dates(closed), extra_open=parse_open_dates(opened),
                                    tz=tz)
        if hours:
            calendar = WorkingCalendar(tz=calendar.tz, hours=parse_hours(hours), holidays=calendar.holidays,
                                       extra_closed=calendar.extra_closed, extra_open=calendar.extra_open)
        base = SlaPolicy()
        policy = SlaPolicy(reaction={**base.reaction, **parse_targets(sla, "POMOC_SLA")},
                           warning={**base.warning, **parse_targets(warning, "POMOC_SLA_WARNING")})
        return cls(calendar, policy, parse_plans(plans, calendar), parse_cutoff(same_day_cutoff))

    def plan(self, name: str | None) -> Plan:
        """The plan of that name; unknown or None: the standard plan."""
        return self.plans.get(name or DEFAULT_PLAN) or self.plans[DEFAULT_PLAN]

    def calendar_of(self, plan: str | None) -> WorkingCalendar:
        return self.plan(plan).calendar

    def weekly_hours_of(self, plan: str | None) -> list[dict[str, Any]]:
        """`weekly_hours` of the plan's calendar, computed once per plan (callers must
        not change the list: it is shared)."""
        name = plan if plan is not None and plan in self.plans else DEFAULT_PLAN
        cache: dict[str, list[dict[str, Any]]] = self.__dict__["_weekly"]
        hours = cache.get(name)
        if hours is None:
            hours = cache[name] = weekly_hours(self.calendar_of(name))
        return hours

    def intake(self, severity: str, now: datetime, agents_online: int, lang: str = "pl",
               plan: str | None = None) -> Intake:
        """What a new ticket gets: its deadline, whether it waits, and the acknowledgment."""
        sev = Severity(severity)
        chosen = self.plan(plan)
        calendar = chosen.calendar
        held = queued_until(calendar, sev, now)
        # A held ticket's clock starts when support opens; the reaction target counts
        # working time anyway, so the deadline is the same either way.
        due = self.due(sev, now, plan)
        text = acknowledgment(sev, now, due, held, 0 if held else agents_online, calendar, lang,
                              promise=promise(chosen, self.same_day_cutoff, lang))
        return Intake(sla_due_at=due, queued_until=held, acknowledgment=text,
                      warning_at=self.warning(sev, now, plan), rank=chosen.rank)

    def due(self, severity: str, opened_at: datetime, plan: str | None = None) -> datetime:
        """The first reaction's deadline: the target on the plan's calendar, brought
        forward to that day's close by the same-day rule when it applies."""
        calendar = self.calendar_of(plan)
        due = due_at(self.sla, Severity(severity), opened_at, calendar)
        same_day = same_day_due(calendar, self.same_day_cutoff, opened_at)
        return due if same_day is None else min(due, same_day)

    def warning(self, severity: str, opened_at: datetime, plan: str | None = None) -> datetime:
        return min(warning_at(self.sla, Severity(severity), opened_at, self.calendar_of(plan)),
                   self.due(severity, opened_at, plan))

    def next_response(self, severity: str, plan: str | None, at: datetime) -> Running:
        """The clock a customer's message at `at` starts once an agent has answered:
        the same targets, calendars and warnings as the first reaction."""
        chosen = self.plan(plan)
        sev = Severity(severity)
        clock = calendar_for(sev, chosen.calendar)
        due = self.sla.reaction[sev].after(clock, at)
        # (warning_at would compute the deadline a second time: it is on the message path)
        return Running(due, min(self.sla.warning[sev].after(clock, at), due), at, chosen.rank)

    def working_seconds(self, severity: str, plan: str | None, start: datetime, end: datetime) -> int:
        """Business time from `start` to `end`, in whole seconds: the working time of the
        calendar the ticket's deadlines run on (its plan's hours and holidays; 24/7 for
        critical tickets), the time the reports count."""
        clock = calendar_for(Severity(severity), self.plan(plan).calendar)
        return int(working_time_between(clock, start, end).total_seconds())

    def first_response(self, severity: str, plan: str | None, opened_at: datetime) -> Running:
        return Running(self.due(severity, opened_at, plan), self.warning(severity, opened_at, plan), opened_at,
                       self.plan(plan).rank)

    def hold(self, severity: str, now: datetime, plan: str | None = None) -> datetime | None:
        """Until when a customer's message waits (None: it goes to agents now)."""
        if self._known_open(plan, now):
            return None
        return queued_until(self.calendar_of(plan), Severity(severity), now)

    def closed_until(self, now: datetime, plan: str | None = None) -> datetime | None:
        """When support opens next (for the plan), while it is closed; None while it is open."""
        if self._known_open(plan, now):
            return None
        calendar = self.calendar_of(plan)
        return None if is_open(calendar, now) else next_open(calendar, now)

    def _known_open(self, plan: str | None, now: datetime) -> bool:
        """Whether `now` is in the plan's opening interval seen last (or in the one it
        is in now, remembered for the next question); False: ask the calendar."""
        name = plan if plan is not None and plan in self.plans else DEFAULT_PLAN
        cache: dict[str, tuple[datetime, datetime]] = self.__dict__["_open"]
        span = cache.get(name)
        if span is not None and span[0] <= now < span[1]:
            return True
        span = open_span(self.calendar_of(name), now)
        if span is None:
            return False
        cache[name] = span
        return True

    def service(self, now: datetime, plan: str | None = None) -> dict[str, Any]:
        calendar = self.calendar_of(plan)
        open_now = is_open(calendar, now)
        return {"open": open_now, "next_open": None if open_now else next_open(calendar, now).isoformat()}


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
    rank: int = 1  # the plan's place in line (server.rules.plans)

