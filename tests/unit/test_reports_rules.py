"""The reports' and ratings' pure rules, as tables: the period (Warsaw dates, DST,
bounds), nearest-rank percentiles, the SLA figures, business time (working time on
the ticket's calendar), what an agent's answer records, the rate frame and what an
answer does to a ticket."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from server.errors import BadRequest, ClosedTicket, Conflict, Forbidden
from server.principal import Principal, Role
from server.protocol.frames import Limits, Rate, parse
from server.rules.deadlines import NEXT_RESPONSE, Answered, answered, step
from server.rules.policy import SupportPolicy
from server.rules.records import Ticket
from server.rules.reports import (
    CSV_COLUMNS,
    csv_rows,
    nearest_rank,
    parse_period,
    rank_of,
    sla_figures,
)
from server.rules.satisfaction import Answer, answer_outcome

WARSAW = ZoneInfo("Europe/Warsaw")
POLICY = SupportPolicy.from_config()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=WARSAW).astimezone(UTC)


# ------------------------------------------------------------------ period
@pytest.mark.parametrize("first, last, start, end, days", [
    ("2026-11-01", "2026-11-30", "2026-10-31T23:00:00+00:00", "2026-11-30T23:00:00+00:00", 30),
    # The month DST ends: 31 days of 24 h but the 26th of October has 25 h.
    ("2025-10-01", "2025-10-31", "2025-09-30T22:00:00+00:00", "2025-10-31T23:00:00+00:00", 31),
    # The day DST starts is 23 hours long.
    ("2026-03-29", "2026-03-29", "2026-03-28T23:00:00+00:00", "2026-03-29T22:00:00+00:00", 1),
    ("2024-01-01", "2024-12-31", "2023-12-31T23:00:00+00:00", "2024-12-31T23:00:00+00:00", 366),
])
def test_the_period_is_warsaw_business_dates(first, last, start, end, days):
    period = parse_period(first, last, WARSAW)
    assert (period.start.isoformat(), period.end.isoformat(), period.days) == (start, end, days)
    assert period.first == date.fromisoformat(first) and period.last == date.fromisoformat(last)


@pytest.mark.parametrize("first, last, words", [
    (None, "2026-11-30", "'from' is required"), ("2026-11-01", "", "'to' is required"),
    ("01.11.2026", "2026-11-30", "YYYY-MM-DD"), ("20261101", "2026-11-30", "YYYY-MM-DD"),
    ("2026-11-01T00:00", "2026-11-30", "YYYY-MM-DD"), ("2026-02-29", "2026-03-01", "not a real date"),
    ("2026-12-01", "2026-11-30", "is after"), ("2025-01-01", "2026-01-02", "at most 366 days"),
])
def test_a_bad_period_says_what_is_wrong(first, last, words):
    with pytest.raises(BadRequest, match=words):
        parse_period(first, last, WARSAW)


# ------------------------------------------------------------- percentiles
@pytest.mark.parametrize("values, p50, p90", [
    ([], None, None), ([7], 7, 7), ([3, 1], 1, 3), ([600, 1200, 3600], 1200, 3600), ([4, 1, 3, 2], 2, 4),
    (list(range(1, 11)), 5, 9), (list(range(1, 12)), 6, 10), (list(range(100, 0, -1)), 50, 90),
])
def test_nearest_rank_percentiles(values, p50, p90):
    assert nearest_rank(values, 50) == p50 and nearest_rank(values, 90) == p90


@pytest.mark.parametrize("n", range(1, 250))
def test_the_integer_rank_the_sql_uses_is_the_nearest_rank(n):
    values = list(range(1, n + 1))
    assert rank_of(n, 50) == nearest_rank(values, 50) and rank_of(n, 90) == nearest_rank(values, 90)


@pytest.mark.parametrize("counts, expected", [
    ((0, 0, 0, 0, 0, 0), {"decided": 0, "met": 0, "met_pct": None, "breaches": 0}),
    ((2, 1, 1, 2, 1, 0), {"decided": 6, "met": 3, "met_pct": 50.0, "breaches": 3}),
    ((1, 0, 0, 0, 0, 1), {"decided": 2, "met": 1, "met_pct": 50.0, "breaches": 1}),
    ((3, 0, 0, 0, 0, 0), {"decided": 3, "met": 3, "met_pct": 100.0, "breaches": 0}),
])
def test_the_sla_figures(counts, expected):
    assert sla_figures(*counts) == expected


# ----------------------------------------------------------- business time
@pytest.mark.parametrize("severity, plan, start, end, seconds", [
    # Friday 16:30 → Monday 10:00 on the normal hours (9–17): 30 min + 1 h.
    ("minor", "standard", "2026-11-20T16:30", "2026-11-23T10:00", 5400),
    # The same for a priority shop (every day 9–17): + Saturday and Sunday.
    ("minor", "priority", "2026-11-20T16:30", "2026-11-23T10:00", 5400 + 2 * 8 * 3600),
    # Critical runs round the clock, whatever the plan.
    ("critical", "standard", "2026-11-20T16:30", "2026-11-23T10:00", 65 * 3600 + 1800),
    # A night: nothing.
    ("major", "standard", "2026-11-18T18:00", "2026-11-19T08:59", 0),
    # 11 November (Independence Day) is closed for standard; priority works it.
    ("minor", "standard", "2026-11-10T16:00", "2026-11-12T10:00", 2 * 3600),
    ("minor", "priority", "2026-11-10T16:00", "2026-11-12T10:00", 10 * 3600),
    # Across the end of DST (25-hour Sunday) the working hours are the same.
    ("minor", "standard", "2025-10-24T16:00", "2025-10-27T10:00", 2 * 3600),
    ("critical", "standard", "2025-10-25T12:00", "2025-10-26T12:00", 25 * 3600),
])
def test_business_time_is_the_tickets_own_calendar(severity, plan, start, end, seconds):
    assert POLICY.working_seconds(severity, plan, at(start), at(end)) == seconds


def _seconds(a: datetime, b: datetime) -> int:
    return POLICY.working_seconds("minor", "standard", a, b)


@pytest.mark.parametrize("responded, due, started, answer, expected", [
    # The first answer is the first response, timed from the opening (Friday 16:30).
    (None, "2026-11-26T16:30", None, "2026-11-23T10:00", Answered(first_s=5400)),
    # Later, a running next-response step ends: timed from the customer's message.
    ("2026-11-23T10:00", "2026-11-27T12:00", "2026-11-23T12:00", "2026-11-23T12:30", Answered(next_s=1800)),
    ("2026-11-23T10:00", "2026-11-23T12:10", "2026-11-23T12:00", "2026-11-23T12:30", Answered(next_s=1800, late=True)),
    # The agent already had the last word: nothing to record.
    ("2026-11-23T10:00", None, None, "2026-11-23T12:30", None),
])
def test_what_an_agents_answer_records(responded, due, started, answer, expected):
    def instant(v: str | None) -> datetime | None:
        return None if v is None else at(v)

    got = answered(instant(responded), instant(due), instant(started), at("2026-11-20T16:30"), at(answer), _seconds)
    assert got == expected


# --------------------------------------------------------------- the frame
LIMITS = Limits()


@pytest.mark.parametrize("frame, answer", [
    ({"score": 5}, Answer(True, 5, None)), ({"score": 1, "comment": "  Słabo\n"}, Answer(True, 1, "Słabo")),
    ({"score": 3, "comment": "   "}, Answer(True, 3, None)), ({"solved": False}, Answer(False, None, None)),
    ({"solved": False, "comment": "Dalej nie działa"}, Answer(False, None, "Dalej nie działa")),
    ({"solved": True, "score": 4, "comment": "x" * 1000}, Answer(True, 4, "x" * 1000)),
])
def test_the_rate_frame(frame, answer):
    assert parse({"type": "rate", "ticket": 7, **frame}, LIMITS) == Rate(7, answer)


@pytest.mark.parametrize("frame, field", [
    ({"score": 0}, "'score'"), ({"score": 6}, "'score'"), ({"score": 2.0}, "'score'"), ({"score": None}, "'score'"),
    ({"score": False}, "'score'"), ({"solved": 0, "score": 1}, "'solved'"), ({"solved": False, "score": 5}, "'score'"),
    ({"score": 5, "comment": "y" * 1001}, "'comment'"), ({"score": 5, "comment": "\x07"}, "'comment'"),
    ({"score": 5, "comment": ["a"]}, "'comment'"), ({"score": 5, "ticket": None}, "'ticket'"),
])
def test_a_bad_rate_frame_names_the_field(frame, field):
    with pytest.raises(BadRequest, match=field):
        parse({"type": "rate", "ticket": 7, **frame}, LIMITS)


# ------------------------------------------------------------- the answer
OWNER = Principal(Role.customer, "owner", "Ola", shop="s1")
NOW = at("2026-11-18T10:00")


def _ticket(status: str, shop: str = "s1", lang: str = "pl") -> Ticket:
    return Ticket(id=1, shop_id=shop, created_by="owner", title="T", status=status, severity="major", department=None,
                  assignee=None, context={}, last_seq=3, created_at=NOW - timedelta(days=1), updated_at=NOW,
                  sla_due_at=None, queued_until=None, closed_at=None, plan="standard", lang=lang,
                  first_response_at=NOW - timedelta(hours=20), resolved_at=NOW - timedelta(hours=1))


def test_yes_closes_with_the_rating_in_the_note():
    outcome = answer_outcome(OWNER, _ticket("resolved"), Answer(True, 4), NOW, POLICY)
    assert outcome.fields["status"] == "closed" and outcome.fields["closed_at"] == NOW
    assert "4/5" in outcome.note and "zamknięte" in outcome.note
    assert "4/5" in answer_outcome(OWNER, _ticket("resolved", lang="en"), Answer(True, 4), NOW, POLICY).note


def test_no_reopens_with_a_next_response_deadline():
    outcome = answer_outcome(OWNER, _ticket("resolved"), Answer(False), NOW, POLICY)
    fields = outcome.fields
    assert fields["status"] == "open" and fields["resolved_at"] is None and fields["waiting_since"] is None
    assert fields["sla_started_at"] == NOW and fields["sla_due_at"] == POLICY.next_response("major", "standard",
                                                                                            NOW).due_at
    assert step(fields["sla_due_at"], NOW) == NEXT_RESPONSE
    assert "nie został rozwiązany" in outcome.note


@pytest.mark.parametrize("who, status, error", [
    (Principal(Role.agent, "a1", "Anna"), "resolved", Forbidden),
    (Principal(Role.customer, "x", "X", shop="s2"), "resolved", Forbidden),
    (OWNER, "open", Conflict), (OWNER, "waiting_on_customer", Conflict), (OWNER, "closed", ClosedTicket),
])
def test_who_may_answer_and_when(who, status, error):
    with pytest.raises(error):
        answer_outcome(who, _ticket(status), Answer(True, 5), NOW, POLICY)


# -------------------------------------------------------------------- CSV
def test_the_csv_has_one_row_per_group_the_total_first():
    empty = {"tickets_opened": 0, "first_response": {"count": 0, "median_s": None, "p90_s": None},
             "next_response": {"tickets": 0, "steps": 0, "median_s": None, "p90_s": None},
             "resolution": {"count": 0, "median_s": None, "p90_s": None}, "sla": sla_figures(1, 0, 0, 0, 0, 0),
             "held": {"tickets": 0, "total_s": 0, "mean_s": None, "max_s": None},
             "csat": {"count": 2, "average": 4.5, "satisfied_pct": 100.0, "not_solved": 0}}
    report = {"deflections": 9, "groups": {"total": [{**empty, "key": None}], "department": [{**empty, "key": "p"}],
                                           "severity": [], "plan": [], "agent": [{**empty, "key": None}]}}
    rows = list(csv_rows(report))
    assert rows[0] == list(CSV_COLUMNS)
    assert [r[:2] for r in rows[1:]] == [["total", ""], ["department", "p"], ["agent", ""]]
    total = dict(zip(CSV_COLUMNS, rows[1], strict=True))
    assert (total["sla_met_pct"], total["csat_average"], total["help_deflections"]) == ("100", "4.5", "9")
    assert dict(zip(CSV_COLUMNS, rows[2], strict=True))["help_deflections"] == ""
