"""Plans: the service hours and the place in line each plan a shop pays for buys.

Seed 001: standard tickets are answered every working day (Saturday mornings where
the team works them); priority tickets are answered on Sundays and statutory holidays
too, and go ahead of the other waiting tickets; a trial shop is served as standard.
A plan is a working calendar (the one its tickets' deadlines, off-hours queue and
"support is closed" run on; critical tickets keep the 24/7 on-call calendar whatever
the plan) and a rank (lower first: in the agents' inbox among tickets with a
deadline running, and in the release of the off-hours queue).

`POMOC_PLANS` changes plans, separated by `|`, each `NAME: HOURS [+holidays] [rank N]`:
- HOURS is `hours` (the normal calendar, `POMOC_HOURS`), `daily` (every day of the
  week: a day `POMOC_HOURS` gives a span keeps it, the others get Monday's, or the
  first configured day's), or an opening spec in `POMOC_HOURS`' own form
  (`mon-sun 08:00-20:00`, parts joined by `;`);
- `+holidays` keeps the plan open on statutory holidays (days closed by
  `POMOC_CLOSED_DATES` stay closed: nobody is at work then);
- `rank N` (0 … 9) its place in line.
Plans not named keep their defaults: `priority: daily +holidays rank 0 |
standard: hours rank 1 | trial: hours rank 1`.

The same-day rule (`POMOC_SAME_DAY_CUTOFF`, e.g. `16:00`; off by default): seed 001
promises that tickets sent before 16:00 are almost always answered the same working
day. A ticket opened on one of its plan's working days, before the cutoff and before
that day's close, is due by that day's close — or earlier, when its reaction target
gives an earlier instant: the rule only ever brings a deadline forward. It applies to
the first reaction (the promise is about tickets sent), not to later steps.

Pure module: it must not import starlette, redis, sqlalchemy, asyncio or jwt, and it
reads no clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time
from types import MappingProxyType

from server.principal import PLANS
from server.rules.calendar import (
    WorkingCalendar,
    day_schedule,
    next_close,
    require_aware,
    to_local,
)
from server.rules.hours import parse_hours
from server.rules.severity import check_lang

DEFAULT_PLAN = "standard"
DEFAULT_PLANS = "priority: daily +holidays rank 0 | standard: hours rank 1 | trial: hours rank 1"
# A ticket with no deadline running is listed after every rank (server.store.models).
IDLE_RANK = 100
MAX_RANK = 9


@dataclass(frozen=True)
class Plan:
    name: str
    calendar: WorkingCalendar
    rank: int
    holidays_open: bool = False


def _daily(base: WorkingCalendar) -> dict[int, tuple[time, time]]:
    first = base.hours.get(0) or next(iter(base.hours.values()))
    return {day: base.hours.get(day, first) for day in range(7)}


def plan_calendar(base: WorkingCalendar, hours: Mapping[int, tuple[time, time]],
                  holidays_open: bool) -> WorkingCalendar:
    """`base` with other weekly hours, and without its holidays when `holidays_open`."""
    return WorkingCalendar(tz=base.tz, hours=dict(hours), holidays={} if holidays_open else base.holidays,
                           extra_closed=base.extra_closed, extra_open=base.extra_open,
                           always_open=base.always_open)


def parse_plans(text: str, base: WorkingCalendar) -> dict[str, Plan]:
    """Every plan of `PLANS`, from the defaults with `text`'s plans over them.
    ValueError naming `POMOC_PLANS` when a part is wrong."""
    plans: dict[str, Plan] = {}
    for source in (DEFAULT_PLANS, text):
        for part in filter(None, (p.strip() for p in source.split("|"))):
            name, colon, spec = part.partition(":")
            name = name.strip().lower()
            if not colon or name not in PLANS:
                raise ValueError(f"POMOC_PLANS: {part!r} must start with a plan name and a colon "
                                 f"({', '.join(PLANS)}), e.g. 'priority: daily +holidays rank 0'")
            spec = spec.strip()
            rank = 1
            match = re.search(r"\brank\s+(\S+)\s*$", spec)
            if match:
                if not match.group(1).isdigit() or int(match.group(1)) > MAX_RANK:
                    raise ValueError(f"POMOC_PLANS: {name}: rank must be a whole number 0 … {MAX_RANK}, "
                                     f"got {match.group(1)!r}")
                rank = int(match.group(1))
                spec = spec[:match.start()].strip()
            holidays_open = False
            if re.search(r"(^|\s)\+holidays$", spec):
                holidays_open = True
                spec = spec[:-len("+holidays")].strip()
            if spec == "hours":
                hours: Mapping[int, tuple[time, time]] = base.hours
            elif spec == "daily":
                hours = _daily(base)
            elif not spec:
                raise ValueError(f"POMOC_PLANS: {name}: say which hours ('hours', 'daily' or e.g. "
                                 "'mon-sun 08:00-20:00')")
            else:
                hours = parse_hours(spec, f"POMOC_PLANS: {name}")
            plans[name] = Plan(name, plan_calendar(base, hours, holidays_open), rank, holidays_open)
    return plans


def parse_cutoff(text: str) -> time | None:
    """`POMOC_SAME_DAY_CUTOFF`: "HH:MM", or empty for no same-day rule."""
    text = text.strip()
    if not text:
        return None
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text)
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f"POMOC_SAME_DAY_CUTOFF must be a time of day HH:MM (e.g. 16:00), got {text!r}")
    return time(int(match.group(1)), int(match.group(2)))


def same_day_due(calendar: WorkingCalendar, cutoff: time | None, opened_at: datetime) -> datetime | None:
    """That day's close for a ticket opened on a working day of `calendar` before
    `cutoff` and before the close; None when the rule does not apply."""
    require_aware(opened_at, "opened_at")
    if cutoff is None or calendar.always_open:
        return None
    local = to_local(calendar, opened_at)
    schedule = day_schedule(calendar, local.date())
    if schedule.opens is None or schedule.closes is None or local.time() >= cutoff:
        return None
    close = next_close(calendar, opened_at)
    if to_local(calendar, close).date() != local.date() or close <= opened_at:
        return None  # pragma: no cover - a working day's close is that day, after a time before it
    return close


# --- the promise, as the acknowledgment states it -----------------------------------

_PL_SHORT = ("pon.", "wt.", "śr.", "czw.", "pt.", "sob.", "niedz.")
_EN_SHORT = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

_PROMISE: Mapping[str, Mapping[str, str]] = MappingProxyType({
    "pl": MappingProxyType({
        "priority": "Plan priorytetowy: Twoje zgłoszenie ma pierwszeństwo przed innymi oczekującymi.",
        "standard": "Plan standardowy.",
        "trial": "Okres próbny: obsługujemy Cię jak w planie standardowym.",
        "hours": "Odpowiadamy: {hours}",
        "holidays": ", także w niedziele i święta",
        "holidays_only": ", także w święta",
        "daily": "codziennie",
        "same_day": "Zgłoszenia wysłane w dzień roboczy przed {cutoff} obsługujemy tego samego dnia.",
    }),
    "en": MappingProxyType({
        "priority": "Priority plan: your ticket goes ahead of the others waiting.",
        "standard": "Standard plan.",
        "trial": "Trial: you are served as on the standard plan.",
        "hours": "We answer: {hours}",
        "holidays": ", Sundays and holidays included",
        "holidays_only": ", holidays included",
        "daily": "every day",
        "same_day": "Tickets sent on a working day before {cutoff} are handled the same day.",
    }),
})


def _clock(t: time) -> str:
    return f"{t.hour}:{t.minute:02d}"


def describe_hours(calendar: WorkingCalendar, lang: str = "pl") -> str:
    """The usual week in words: "pon.–pt. 9:00–17:00, sob. 9:00–13:00" / "codziennie 9:00–17:00"."""
    lang = check_lang(lang)
    names = _PL_SHORT if lang == "pl" else _EN_SHORT
    runs: list[tuple[int, int, tuple[time, time]]] = []
    for day in range(7):
        span = calendar.hours.get(day)
        if span is None:
            continue
        if runs and runs[-1][1] == day - 1 and runs[-1][2] == span:
            runs[-1] = (runs[-1][0], day, span)
        else:
            runs.append((day, day, span))
    if len(runs) == 1 and runs[0][:2] == (0, 6):
        span = runs[0][2]
        return f"{_PROMISE[lang]['daily']} {_clock(span[0])}–{_clock(span[1])}"
    parts = []
    for first, last, (opens, closes) in runs:
        days = names[first] if first == last else f"{names[first]}–{names[last]}"
        parts.append(f"{days} {_clock(opens)}–{_clock(closes)}")
    return ", ".join(parts)


def promise(plan: Plan, cutoff: time | None, lang: str = "pl") -> str:
    """What the plan promises, for the acknowledgment: its place in line, its hours,
    holidays, and the same-day rule when one is configured."""
    text = _PROMISE[check_lang(lang)]
    lead = text.get(plan.name, "")
    hours = text["hours"].format(hours=describe_hours(plan.calendar, lang))
    if plan.holidays_open:
        hours += text["holidays"] if 6 in plan.calendar.hours else text["holidays_only"]
    parts = [p for p in (lead, hours + ".") if p]
    if cutoff is not None:
        parts.append(text["same_day"].format(cutoff=_clock(cutoff)))
    return " ".join(parts)
