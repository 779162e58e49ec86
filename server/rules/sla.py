"""Reaction-time rules: deadlines, early warnings, the off-hours queue and the acknowledgment.

Owns the SLA policy (seed 002: critical 16 h, major 24 working hours, minor 4, question
7, suggestion 14 working days; seed 003: warn when no agent has reacted after 2 h for
urgent tickets, 24 h for routine ones), which calendar each severity runs on (critical
on the 24/7 on-call calendar, seed 004), when a message sent outside working hours
leaves the queue, and the wording of the immediate acknowledgment with its expected
reaction time in Warsaw local time. Pure module: it must not import starlette, redis,
sqlalchemy, asyncio, msgpack or jwt, must not read the wall clock and performs no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Literal, get_args

from server.rules.calendar import (
    WorkingCalendar,
    add_working_days,
    add_working_time,
    always_open,
    is_open,
    next_open,
    require_aware,
    to_local,
)
from server.rules.severity import Severity, check_lang, label

Unit = Literal["hours", "working_hours", "working_days"]
UNITS: tuple[str, ...] = get_args(Unit)

# Severities handled around the clock; everything else waits for working hours.
ON_CALL: frozenset[Severity] = frozenset({Severity.CRITICAL})


@dataclass(frozen=True)
class Target:
    """An amount of time measured in one unit.

    "hours" are elapsed real hours whatever the calendar says; "working_hours" count
    only opening time; "working_days" land on the same local time of day n working days
    later (see calendar.add_working_days).
    """

    amount: int
    unit: Unit

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or isinstance(self.amount, bool) or self.amount < 0:
            raise ValueError(f"Target.amount must be a non-negative int, got {self.amount!r}")
        if self.unit not in UNITS:
            raise ValueError(f"Target.unit must be one of {', '.join(UNITS)}; got {self.unit!r}")

    def after(self, cal: WorkingCalendar, start: datetime) -> datetime:
        """The instant this target is reached when counting from `start` on `cal`."""
        if self.unit == "hours":
            require_aware(start, "start")
            return start.astimezone(UTC) + timedelta(hours=self.amount)
        if self.unit == "working_hours":
            return add_working_time(cal, start, timedelta(hours=self.amount))
        return add_working_days(cal, start, self.amount)


def _default_reaction() -> Mapping[Severity, Target]:
    return {
        Severity.CRITICAL: Target(16, "hours"),
        Severity.MAJOR: Target(24, "working_hours"),
        Severity.MINOR: Target(4, "working_days"),
        Severity.QUESTION: Target(7, "working_days"),
        Severity.SUGGESTION: Target(14, "working_days"),
    }


def _default_warning() -> Mapping[Severity, Target]:
    # Working hours, not elapsed hours, for non-critical tickets: a warning that fires on
    # a Saturday evening reaches nobody and is stale by Monday.
    return {
        Severity.CRITICAL: Target(2, "hours"),
        Severity.MAJOR: Target(2, "working_hours"),
        Severity.MINOR: Target(24, "working_hours"),
        Severity.QUESTION: Target(24, "working_hours"),
        Severity.SUGGESTION: Target(24, "working_hours"),
    }


@dataclass(frozen=True)
class SlaPolicy:
    """Reaction deadline and "no agent reaction yet" warning for every severity."""

    reaction: Mapping[Severity, Target] = field(default_factory=_default_reaction)
    warning: Mapping[Severity, Target] = field(default_factory=_default_warning)

    def __post_init__(self) -> None:
        for name in ("reaction", "warning"):
            table: Mapping[Severity, Target] = getattr(self, name)
            missing = [s.value for s in Severity if s not in table]
            if missing:
                raise ValueError(f"SlaPolicy.{name} has no target for: {', '.join(missing)}")
            for sev, target in table.items():
                if not isinstance(target, Target):
                    raise ValueError(f"SlaPolicy.{name}[{sev}] must be a Target, got {target!r}")
            object.__setattr__(self, name, MappingProxyType({Severity(k): v for k, v in table.items()}))


def calendar_for(severity: Severity, calendar: WorkingCalendar) -> WorkingCalendar:
    """The calendar a severity's clock runs on: 24/7 on-call for critical tickets."""
    if Severity(severity) in ON_CALL:
        return always_open(calendar.tz)
    return calendar


def due_at(policy: SlaPolicy, severity: Severity, opened_at: datetime, calendar: WorkingCalendar) -> datetime:
    """Latest instant for the first agent reaction on a ticket opened at `opened_at`."""
    require_aware(opened_at, "opened_at")
    return policy.reaction[Severity(severity)].after(calendar_for(severity, calendar), opened_at)


def warning_at(policy: SlaPolicy, severity: Severity, opened_at: datetime, calendar: WorkingCalendar) -> datetime:
    """When to escalate if no agent has reacted yet; never later than due_at."""
    require_aware(opened_at, "opened_at")
    warn = policy.warning[Severity(severity)].after(calendar_for(severity, calendar), opened_at)
    # A misconfigured policy must not produce a warning after the breach it warns about.
    return min(warn, due_at(policy, severity, opened_at, calendar))


def queued_until(calendar: WorkingCalendar, severity: Severity, at: datetime) -> datetime | None:
    """When a ticket sent at `at` leaves the off-hours queue; None if it is handled now."""
    require_aware(at, "at")
    if Severity(severity) in ON_CALL or is_open(calendar, at):
        return None
    return next_open(calendar, at)


# --- wording -----------------------------------------------------------------------------

# Polish needs the genitive after "do" ("do wtorku") and the nominative in a list
# ("poniedziałek 23.11"); index = date.weekday().
_PL_GENITIVE = ("poniedziałku", "wtorku", "środy", "czwartku", "piątku", "soboty", "niedzieli")
_PL_NOMINATIVE = ("poniedziałek", "wtorek", "środa", "czwartek", "piątek", "sobota", "niedziela")
_EN_WEEKDAY = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _clock_text(local: datetime) -> str:
    return f"{local.hour}:{local.minute:02d}"


def _date_text(local: datetime) -> str:
    return f"{local.day:02d}.{local.month:02d}"


def format_due(dt: datetime, calendar: WorkingCalendar, lang: str = "pl") -> str:
    """A deadline in the calendar's local time: "do wtorku 24.11, 13:00" / "by Tuesday 24.11, 13:00"."""
    local = to_local(calendar, dt)
    if check_lang(lang) == "pl":
        return f"do {_PL_GENITIVE[local.weekday()]} {_date_text(local)}, {_clock_text(local)}"
    return f"by {_EN_WEEKDAY[local.weekday()]} {_date_text(local)}, {_clock_text(local)}"


def format_opening(dt: datetime, calendar: WorkingCalendar, lang: str = "pl") -> str:
    """An opening instant in local time: "poniedziałek 23.11 o 9:00" / "Monday 23.11 at 9:00"."""
    local = to_local(calendar, dt)
    if check_lang(lang) == "pl":
        return f"{_PL_NOMINATIVE[local.weekday()]} {_date_text(local)} o {_clock_text(local)}"
    return f"{_EN_WEEKDAY[local.weekday()]} {_date_text(local)} at {_clock_text(local)}"


_TEXT: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "pl": MappingProxyType(
            {
                "received": "Dziękujemy, przyjęliśmy Twoje zgłoszenie (waga: {label}).",
                "live": "Konsultant jest teraz dostępny, możesz z nami rozmawiać na czacie.",
                "not_live": "W tej chwili żaden konsultant nie jest na czacie; odpiszemy tutaj.",
                "on_call": "Zgłoszenia krytyczne obsługujemy także w nocy, w weekendy i święta.",
                "queued": (
                    "Wsparcie jest teraz nieczynne, więc zgłoszenie czeka w kolejce "
                    "do najbliższego otwarcia: {opening}."
                ),
                "due": "Oczekiwany czas reakcji: {due}.",
            }
        ),
        "en": MappingProxyType(
            {
                "received": "Thank you, we have received your ticket (severity: {label}).",
                "live": "An agent is available now, you can chat with us live.",
                "not_live": "No agent is in the chat right now; we will reply here.",
                "on_call": "Critical tickets are handled at night, at weekends and on holidays too.",
                "queued": (
                    "Support is closed now, so your ticket waits in the queue until the next opening: {opening}."
                ),
                "due": "Expected reaction: {due}.",
            }
        ),
    }
)


def acknowledgment(
    severity: Severity,
    opened_at: datetime,
    due_at: datetime,
    queued_until: datetime | None,
    agents_online: int,
    calendar: WorkingCalendar,
    lang: str = "pl",
    promise: str | None = None,
) -> str:
    """The system message posted at once on a new ticket.

    Says the ticket was received and at which severity, whether an agent is live now
    (someone online and the ticket not queued), when a queued ticket will be picked up,
    what the shop's plan promises (`promise`), and the expected reaction time in the
    calendar's local time.
    """
    text = _TEXT[check_lang(lang)]
    severity = Severity(severity)
    require_aware(opened_at, "opened_at")
    require_aware(due_at, "due_at")
    if due_at < opened_at:
        raise ValueError(f"due_at {due_at.isoformat()} is before opened_at {opened_at.isoformat()}")
    if queued_until is not None:
        require_aware(queued_until, "queued_until")
        if queued_until < opened_at:
            raise ValueError("queued_until is before opened_at")
    if not isinstance(agents_online, int) or agents_online < 0:
        raise ValueError(f"agents_online must be a non-negative int, got {agents_online!r}")

    parts = [text["received"].format(label=label(severity, lang))]
    if queued_until is not None:
        parts.append(text["queued"].format(opening=format_opening(queued_until, calendar, lang)))
    elif agents_online > 0:
        parts.append(text["live"])
    else:
        parts.append(text["not_live"])
    if severity in ON_CALL and not is_open(calendar, opened_at):
        parts.append(text["on_call"])
    if promise:
        parts.append(promise)  # the plan's hours and place in line (server.rules.plans)
    parts.append(text["due"].format(due=format_due(due_at, calendar, lang)))
    return " ".join(parts)
