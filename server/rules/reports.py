"""The lead's reports: the period asked for, the groups, the percentile rule and the
CSV layout (server.store.reports runs the SQL; server.web.reports_api answers HTTP).

- **Period.** `from` and `to` are business dates (`YYYY-MM-DD`) in the calendar's
  zone (Europe/Warsaw), both included: tickets opened from `from` 00:00 local time
  up to, not including, the day after `to` 00:00 local time (DST-safe: a day is
  23, 24 or 25 hours). At most `MAX_DAYS` days; `from` after `to` is refused.
- **Who is counted.** Tickets *opened* in the period (their first response,
  next responses, resolution, SLA and queueing, wherever those fell), ratings
  *given* in the period (grouped by their ticket), help-centre deflections
  *recorded* in the period (total only: a deflection has no ticket).
- **Groups.** The total, then by department, severity, plan and agent — the agent
  whose answer was the ticket's first response (`first_responder`); tickets nobody
  answered and those without a department are grouped under `null`.
- **Business time.** Every duration is working time on the calendar the ticket's
  deadlines run on: its plan's opening hours without the calendar's closed days
  (statutory holidays unless the plan keeps them open), or round the clock for a
  critical ticket (the on-call calendar). An answer at 10:00 Monday to a ticket
  opened at 16:30 Friday (hours 9–17) took 1 h 30 min. Stored as whole seconds when
  the event happens (server.rules.deadlines.answered, ticket resolution).
- **Percentiles.** Nearest rank: the p-th percentile of n sorted values is the
  value at rank ceil(p·n/100) (1-based) — the median of 4 values is the 2nd, p90 of
  10 values the 9th. Always a value that occurred; the same in SQLite and
  PostgreSQL because both compute it with integer ranks.
- **Next response.** Each ticket's next-response steps are stored as a count, a sum
  of working seconds and how many were late; a ticket's next-response time is its
  mean step, and the median and p90 are over those per-ticket means.
- **SLA.** The steps decided: a first response answered (met when by its deadline)
  or still unanswered past it (a breach); every next-response step answered (late
  ones are breaches), and one running past its deadline now (a breach). Met % =
  met / decided.

Pure module: standard library only; it must not import starlette, redis,
sqlalchemy, asyncio or jwt, and it reads no clock.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from server.errors import BadRequest

MAX_DAYS = 366
DIMENSIONS = ("department", "severity", "plan", "agent")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True, slots=True)
class Period:
    first: date
    last: date  # included
    start: datetime  # UTC, included
    end: datetime  # UTC, excluded

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


def _date(value: str | None, name: str) -> date:
    if value is None or value == "":
        raise BadRequest(f"'{name}' is required: a date YYYY-MM-DD")
    if not _DATE.fullmatch(value):
        raise BadRequest(f"'{name}' must be a date YYYY-MM-DD, got {value[:40]!r}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"'{name}' is not a real date: {value!r}") from None


def parse_period(first: str | None, last: str | None, tz: ZoneInfo) -> Period:
    """The period `from`..`to` (both included) as UTC instants. Raises BadRequest
    naming the parameter."""
    a, b = _date(first, "from"), _date(last, "to")
    if a > b:
        raise BadRequest(f"'from' ({a}) is after 'to' ({b})")
    days = (b - a).days + 1
    if days > MAX_DAYS:
        raise BadRequest(f"the period is {days} days; at most {MAX_DAYS} days at once")
    return Period(a, b, local_midnight(a, tz), local_midnight(b + timedelta(days=1), tz))


def local_midnight(d: date, tz: ZoneInfo) -> datetime:
    """00:00 of `d` in `tz`, as a UTC instant (midnight exists every day in Warsaw)."""
    return datetime.combine(d, time(0), tzinfo=tz).astimezone(UTC)


def nearest_rank(values: Sequence[float], percent: int) -> float | None:
    """The `percent`-th percentile of `values` by nearest rank (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(percent * len(ordered) / 100)) - 1]


def rank_of(n: int, percent: int) -> int:
    """The 1-based rank nearest-rank picks among `n` values: ceil(percent·n/100),
    spelled as integer arithmetic so SQL computes the same."""
    return (percent * n + 99) // 100


def pct(part: int | float | None, whole: int | float | None) -> float | None:
    if not whole:
        return None
    return round(100.0 * float(part or 0) / float(whole), 1)


def sla_figures(fr_met: int, fr_late: int, fr_overdue: int, steps: int, steps_late: int, steps_overdue: int
                ) -> dict[str, Any]:
    """The SLA block of a row from its counts (see the module docstring)."""
    decided = fr_met + fr_late + fr_overdue + steps + steps_overdue
    met = fr_met + steps - steps_late
    return {"decided": decided, "met": met, "met_pct": pct(met, decided),
            "breaches": fr_late + fr_overdue + steps_late + steps_overdue}


# ----------------------------------------------------------------------- CSV
CSV_COLUMNS = (
    "dimension", "key", "tickets_opened",
    "first_response_count", "first_response_median_s", "first_response_p90_s",
    "next_response_tickets", "next_response_steps", "next_response_median_s", "next_response_p90_s",
    "resolution_count", "resolution_median_s", "resolution_p90_s",
    "sla_decided", "sla_met", "sla_met_pct", "sla_breaches",
    "held_tickets", "held_total_s", "held_mean_s", "held_max_s",
    "csat_count", "csat_average", "csat_satisfied_pct", "not_solved_answers",
    "help_deflections",
)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}" if not value.is_integer() else str(int(value))
    return str(value)


def csv_rows(report: Mapping[str, Any]) -> Iterable[list[str]]:
    """The report as CSV rows (the header first): one row per group, the total first;
    only the total carries the deflections (they belong to no ticket)."""
    yield list(CSV_COLUMNS)
    for dimension in ("total", *DIMENSIONS):
        for row in report["groups"][dimension]:
            fr, nr, res, sla, held, csat = (row["first_response"], row["next_response"], row["resolution"],
                                            row["sla"], row["held"], row["csat"])
            values = [dimension, row["key"], row["tickets_opened"],
                      fr["count"], fr["median_s"], fr["p90_s"],
                      nr["tickets"], nr["steps"], nr["median_s"], nr["p90_s"],
                      res["count"], res["median_s"], res["p90_s"],
                      sla["decided"], sla["met"], sla["met_pct"], sla["breaches"],
                      held["tickets"], held["total_s"], held["mean_s"], held["max_s"],
                      csat["count"], csat["average"], csat["satisfied_pct"], csat["not_solved"],
                      report["deflections"] if dimension == "total" else None]
            yield [_cell(v) for v in values]
