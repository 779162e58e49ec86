"""The reaction clock of every step, the plans and the same-day rule, as tables:
DST changes (last Sundays of March and October in Warsaw), holidays (Christmas Eve
from 2025, Easter Monday, 1 and 3 May, Corpus Christi), midnight."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from server.rules.config import Rules
from server.rules.deadlines import FIRST_RESPONSE, NEXT_RESPONSE, STOPPED, Running, after_message, after_status, step
from server.rules.plans import IDLE_RANK, describe_hours, parse_cutoff, parse_plans, promise, same_day_due
from server.rules.policy import SupportPolicy
from server.settings import Settings, SettingsError

WAW = ZoneInfo("Europe/Warsaw")
POLICY = SupportPolicy.from_config()
SAME_DAY = SupportPolicy.from_config(same_day_cutoff="16:00")
SATURDAYS = SupportPolicy.from_config(hours="mon-fri 09:00-17:00; sat 09:00-13:00", same_day_cutoff="16:00")


def w(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    """A Warsaw wall-clock instant, in UTC."""
    return datetime(y, mo, d, h, mi, tzinfo=WAW).astimezone(UTC)


# ------------------------------------------------------------------ plans: holds
@pytest.mark.parametrize(("plan", "severity", "at", "held"), [
    # Sunday noon: a priority ticket is handled, a standard one waits for Monday 9:00.
    ("priority", "major", w(2026, 11, 22, 12), None),
    ("standard", "major", w(2026, 11, 22, 12), w(2026, 11, 23, 9)),
    ("trial", "major", w(2026, 11, 22, 12), w(2026, 11, 23, 9)),
    (None, "major", w(2026, 11, 22, 12), w(2026, 11, 23, 9)),  # no plan: standard
    # Holidays: Christmas Eve 2026 (a holiday from 2025), Easter Monday 2027, 1 and 3 May, Corpus Christi.
    ("priority", "minor", w(2026, 12, 24, 10), None),
    ("standard", "minor", w(2026, 12, 24, 10), w(2026, 12, 28, 9)),
    ("priority", "question", w(2027, 3, 29, 10), None),
    ("standard", "question", w(2027, 3, 29, 10), w(2027, 3, 30, 9)),
    ("priority", "minor", w(2026, 5, 1, 11), None),
    ("standard", "minor", w(2026, 5, 1, 11), w(2026, 5, 4, 9)),  # 1 May Friday, 3 May Sunday
    ("priority", "minor", w(2026, 6, 4, 11), None),  # Corpus Christi
    ("standard", "minor", w(2026, 6, 4, 11), w(2026, 6, 5, 9)),
    # Night on a Sunday: priority waits too, for its own next opening (Monday 9:00 either way).
    ("priority", "major", w(2026, 11, 22, 22), w(2026, 11, 23, 9)),
    # Saturday night into Sunday: priority opens Sunday 9:00, standard Monday.
    ("priority", "minor", w(2026, 11, 21, 23, 30), w(2026, 11, 22, 9)),
    ("standard", "minor", w(2026, 11, 21, 23, 30), w(2026, 11, 23, 9)),
    # Midnight exactly, and critical on any plan: never held.
    ("priority", "minor", w(2026, 11, 22, 0), w(2026, 11, 22, 9)),
    ("standard", "critical", w(2026, 11, 22, 3), None),
    # DST: Sunday 29 March 2026 (02:00 → 03:00) and Sunday 25 October 2026 (03:00 → 02:00).
    ("priority", "minor", w(2026, 3, 29, 1, 30), w(2026, 3, 29, 9)),
    ("standard", "minor", w(2026, 3, 29, 10), w(2026, 3, 30, 9)),
    ("priority", "minor", w(2026, 10, 25, 10), None),
])
def test_which_tickets_wait_for_the_opening_by_plan(plan: str | None, severity: str, at: datetime,
                                                    held: datetime | None) -> None:
    assert POLICY.hold(severity, at, plan) == held


# --------------------------------------------------------- plans: deadlines
@pytest.mark.parametrize(("policy", "plan", "severity", "opened", "due"), [
    # major = 24 working hours. Priority counts every day (and holidays), standard Mon–Fri.
    (POLICY, "priority", "major", w(2026, 11, 22, 10), w(2026, 11, 25, 10)),
    (POLICY, "standard", "major", w(2026, 11, 22, 10), w(2026, 11, 25, 17)),
    # Over Christmas 2026: Thu 24 (Wigilia), Fri 25, Sat 26 are holidays, then a Sunday.
    (POLICY, "priority", "major", w(2026, 12, 23, 16), w(2026, 12, 26, 16)),
    (POLICY, "standard", "major", w(2026, 12, 23, 16), w(2026, 12, 30, 16)),
    # Across the spring DST change: 9:00–17:00 is 8 hours on both sides, whatever the offset.
    (POLICY, "priority", "major", w(2026, 3, 28, 9), w(2026, 3, 30, 17)),
    # Across the autumn change.
    (POLICY, "priority", "major", w(2026, 10, 24, 13), w(2026, 10, 27, 13)),
    # critical: 16 h on the clock whatever the plan; the autumn night is an hour longer.
    (POLICY, "standard", "critical", w(2026, 10, 24, 20), w(2026, 10, 25, 11)),
    (POLICY, "priority", "critical", w(2026, 10, 24, 20), w(2026, 10, 25, 11)),
    # Saturday mornings for the standard plan where configured.
    (SATURDAYS, "standard", "major", w(2026, 11, 20, 16), w(2026, 11, 25, 12)),
])
def test_deadlines_run_on_the_plans_calendar(policy: SupportPolicy, plan: str, severity: str, opened: datetime,
                                             due: datetime) -> None:
    assert policy.due(severity, opened, plan) == due
    assert policy.warning(severity, opened, plan) <= due


# ------------------------------------------------------------- same-day rule
@pytest.mark.parametrize(("policy", "plan", "severity", "opened", "due"), [
    # Before 16:00 on a working day: by 17:00 that day.
    (SAME_DAY, "standard", "minor", w(2026, 11, 18, 10), w(2026, 11, 18, 17)),
    (SAME_DAY, "standard", "question", w(2026, 11, 18, 15, 59), w(2026, 11, 18, 17)),
    # Before the opening counts (the ticket is there when support comes in).
    (SAME_DAY, "standard", "major", w(2026, 11, 18, 0, 0), w(2026, 11, 18, 17)),
    # At or after the cutoff: the target alone.
    (SAME_DAY, "standard", "minor", w(2026, 11, 18, 16), w(2026, 11, 24, 16)),
    # Never later than the target: a critical ticket at 0:30 is due 16:30 by the clock, before the
    # close, so the target stands; at 2:00 its target (18:00) is later and the close wins.
    (SAME_DAY, "standard", "critical", w(2026, 11, 18, 0, 30), w(2026, 11, 18, 16, 30)),
    (SAME_DAY, "standard", "critical", w(2026, 11, 18, 2), w(2026, 11, 18, 17)),
    # Not a working day for the plan: Sunday, and holidays (Christmas Eve 2026, 3 May 2027).
    (SAME_DAY, "standard", "minor", w(2026, 11, 22, 10), w(2026, 11, 27, 9)),
    (SAME_DAY, "standard", "minor", w(2026, 12, 24, 10), w(2027, 1, 4, 9)),
    (SAME_DAY, "standard", "minor", w(2027, 5, 3, 10), w(2027, 5, 10, 9)),  # a Monday holiday
    # ... but Sunday and holidays are a priority ticket's working days.
    (SAME_DAY, "priority", "minor", w(2026, 11, 22, 10), w(2026, 11, 22, 17)),
    (SAME_DAY, "priority", "minor", w(2026, 12, 24, 10), w(2026, 12, 24, 17)),
    # Saturday morning: that day's close is 13:00; after it the rule does not apply.
    (SATURDAYS, "standard", "minor", w(2026, 11, 21, 10), w(2026, 11, 21, 13)),
    (SATURDAYS, "standard", "minor", w(2026, 11, 21, 14), w(2026, 11, 27, 9)),
    # DST days: 17:00 local, whatever the offset.
    (SAME_DAY, "priority", "minor", w(2026, 3, 29, 10), w(2026, 3, 29, 17)),
    (SAME_DAY, "priority", "minor", w(2026, 10, 25, 10), w(2026, 10, 25, 17)),
    # Without a cutoff, no rule.
    (POLICY, "standard", "minor", w(2026, 11, 18, 10), w(2026, 11, 24, 10)),
])
def test_the_same_day_rule_only_brings_a_deadline_forward(policy: SupportPolicy, plan: str, severity: str,
                                                          opened: datetime, due: datetime) -> None:
    assert policy.due(severity, opened, plan) == due


def test_the_same_day_rule_is_the_first_reactions_only() -> None:
    at = w(2026, 11, 18, 10)
    assert SAME_DAY.next_response("minor", "standard", at).due_at == w(2026, 11, 24, 10)


@pytest.mark.parametrize(("cutoff", "opened", "due"), [
    (time(16), w(2026, 11, 18, 16, 30), None), (time(16), w(2026, 11, 18, 17, 30), None),
    (None, w(2026, 11, 18, 10), None), (time(16), w(2026, 11, 18, 23, 59), None),
])
def test_same_day_due_does_not_apply(cutoff: time | None, opened: datetime, due: datetime | None) -> None:
    assert same_day_due(POLICY.calendar, cutoff, opened) == due


# ------------------------------------------------------------------ the clock
DUE = w(2026, 11, 20, 12)
RUNNING = Running(DUE, DUE - timedelta(hours=1), w(2026, 11, 18, 10), 1)


def start(at: datetime) -> Running:
    return POLICY.next_response("major", "standard", at)


@pytest.mark.parametrize(("current", "author", "reopens", "after"), [
    (RUNNING, "agent", False, STOPPED),  # somebody reacted
    (STOPPED, "agent", False, None),  # already stopped
    (STOPPED, "customer", False, "start"),  # the customer writes after the agent's answer
    (RUNNING, "customer", False, None),  # a burst does not push the deadline back
    (RUNNING, "customer", True, "start"),  # a reply that reopens always starts one
    (STOPPED, "customer", True, "start"),
    (STOPPED, "system", False, None), (RUNNING, "system", False, None),
])
def test_what_a_message_does_to_the_clock(current: Running, author: str, reopens: bool, after: object) -> None:
    now = w(2026, 11, 19, 11)
    moved = after_message(current, author, reopens, now, start)
    assert moved == (start(now) if after == "start" else after)


def test_a_next_response_deadline_uses_the_same_targets_warnings_and_plans() -> None:
    at = w(2026, 11, 20, 16)  # Friday 16:00, major: 24 working hours, warning after 2
    standard = POLICY.next_response("major", "standard", at)
    assert (standard.due_at, standard.warning_at, standard.started_at, standard.rank) == (
        w(2026, 11, 25, 16), w(2026, 11, 23, 10), at, 1)
    priority = POLICY.next_response("major", "priority", at)
    assert (priority.due_at, priority.warning_at, priority.rank) == (w(2026, 11, 23, 16), w(2026, 11, 21, 10), 0)


@pytest.mark.parametrize(("status", "after"), [
    ("waiting_on_customer", STOPPED), ("resolved", STOPPED), ("closed", STOPPED), ("open", None),
])
def test_waiting_on_the_customer_stops_the_clock(status: str, after: Running | None) -> None:
    assert after_status(status) == after


def test_which_deadline_is_running() -> None:
    assert step(None, None) is None and step(None, DUE) is None
    assert step(DUE, None) == FIRST_RESPONSE and step(DUE, w(2026, 11, 18, 11)) == NEXT_RESPONSE
    assert STOPPED.columns() == {"sla_due_at": None, "sla_warning_at": None, "sla_started_at": None,
                                 "inbox_rank": IDLE_RANK}


# -------------------------------------------------------- configuration
def test_the_default_plans_are_seed_001s() -> None:
    plans = POLICY.plans
    assert (plans["priority"].rank, plans["standard"].rank, plans["trial"].rank) == (0, 1, 1)
    assert sorted(plans["priority"].calendar.hours) == list(range(7)) and not plans["priority"].calendar.holidays
    assert sorted(plans["standard"].calendar.hours) == list(range(5)) and plans["standard"].calendar.holidays
    assert plans["trial"].calendar == plans["standard"].calendar


def test_plans_can_be_configured() -> None:
    base = SupportPolicy.from_config(hours="mon-fri 09:00-17:00; sat 09:00-13:00").calendar
    plans = parse_plans("priority: mon-sun 08:00-20:00 +holidays rank 2 | trial: hours rank 5", base)
    assert plans["priority"].calendar.hours[6] == (time(8), time(20)) and plans["priority"].rank == 2
    assert plans["trial"].rank == 5 and plans["trial"].calendar.hours[5] == (time(9), time(13))
    assert plans["standard"].rank == 1  # not named: its default
    daily = parse_plans("priority: daily", base)["priority"]
    assert daily.calendar.hours[5] == (time(9), time(13)) and daily.calendar.hours[6] == (time(9), time(17))
    assert daily.calendar.holidays  # without +holidays the holidays stay closed


@pytest.mark.parametrize(("env", "words"), [
    ({"POMOC_PLANS": "gold: daily"}, "POMOC_PLANS"),
    ({"POMOC_PLANS": "priority daily"}, "POMOC_PLANS"),
    ({"POMOC_PLANS": "priority: daily rank 12"}, "rank"),
    ({"POMOC_PLANS": "priority: daily rank x"}, "rank"),
    ({"POMOC_PLANS": "priority:"}, "POMOC_PLANS: priority"),
    ({"POMOC_PLANS": "priority: mon-sun 9-17"}, "POMOC_PLANS: priority"),
    ({"POMOC_PLANS": "standard: sun-mon 09:00-17:00"}, "POMOC_PLANS: standard"),
    ({"POMOC_SAME_DAY_CUTOFF": "4pm"}, "POMOC_SAME_DAY_CUTOFF"),
    ({"POMOC_SAME_DAY_CUTOFF": "24:00"}, "POMOC_SAME_DAY_CUTOFF"),
])
def test_bad_plans_fail_at_startup_naming_the_variable(env: dict[str, str], words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        Rules.from_settings(Settings.from_env(env))


def test_settings_reach_the_policy() -> None:
    rules = Rules.from_settings(Settings.from_env({"POMOC_SAME_DAY_CUTOFF": "15:30",
                                                   "POMOC_PLANS": "priority: daily +holidays rank 3"}))
    assert rules.policy.same_day_cutoff == time(15, 30) and rules.policy.plans["priority"].rank == 3
    assert parse_cutoff("") is None


# ------------------------------------------------------------- the promise
def test_the_acknowledgment_states_the_plans_promise() -> None:
    sunday = w(2026, 11, 22, 10)
    priority = POLICY.intake("major", sunday, 0, "pl", "priority")
    assert priority.queued_until is None and priority.rank == 0
    assert "Plan priorytetowy" in priority.acknowledgment and "także w niedziele i święta" in priority.acknowledgment
    assert "codziennie 9:00–17:00" in priority.acknowledgment
    standard = POLICY.intake("major", sunday, 0, "pl", "standard")
    assert standard.queued_until == w(2026, 11, 23, 9)
    assert "Plan standardowy" in standard.acknowledgment and "pon.–pt. 9:00–17:00" in standard.acknowledgment
    trial = SATURDAYS.intake("minor", w(2026, 11, 18, 10), 1, "en", "trial")
    assert "Trial" in trial.acknowledgment and "Mon–Fri 9:00–17:00, Sat 9:00–13:00" in trial.acknowledgment
    assert "before 16:00 are handled the same day" in trial.acknowledgment
    assert "by Wednesday 18.11, 17:00" in trial.acknowledgment  # the same-day deadline


def test_hours_in_words() -> None:
    assert describe_hours(SATURDAYS.calendar) == "pon.–pt. 9:00–17:00, sob. 9:00–13:00"
    assert promise(POLICY.plan("priority"), None, "en") == (
        "Priority plan: your ticket goes ahead of the others waiting. "
        "We answer: every day 9:00–17:00, Sundays and holidays included.")


def test_each_plans_week_is_the_one_its_calendar_gives() -> None:
    from server.rules.policy import weekly_hours

    monday_to_friday = {"days": [0, 1, 2, 3, 4], "opens": "09:00", "closes": "17:00"}
    assert POLICY.weekly_hours_of("standard") == [monday_to_friday]
    assert POLICY.weekly_hours_of("priority") == [{"days": [0, 1, 2, 3, 4, 5, 6], "opens": "09:00",
                                                  "closes": "17:00"}]
    # No plan, or one the shop no longer has: the standard plan's week.
    assert POLICY.weekly_hours_of(None) == POLICY.weekly_hours_of("gold") == [monday_to_friday]
    assert SATURDAYS.weekly_hours_of("standard") == [monday_to_friday,
                                                     {"days": [5], "opens": "09:00", "closes": "13:00"}]
    for name in POLICY.plans:
        assert POLICY.weekly_hours_of(name) == weekly_hours(POLICY.calendar_of(name))


def test_the_remembered_opening_answers_as_the_calendar_does() -> None:
    """`hold` and `closed_until` remember the opening interval they saw last; every
    instant of a fortnight around the autumn DST switch, Christmas Eve and 1 November
    (every 13 minutes, each interval's last and first microsecond, in order and shuffled)
    gets the calendar's own answer, for every plan."""
    import random

    from server.rules.calendar import is_open, next_open
    from server.rules.severity import Severity
    from server.rules.sla import queued_until

    instants: list[datetime] = []
    for start in (w(2026, 10, 22), w(2026, 10, 29), w(2026, 12, 21)):
        instants += [start + timedelta(minutes=13 * k) for k in range(7 * 24 * 60 // 13)]
        for day in range(7):
            for hour in (9, 13, 17):  # the intervals' edges (a Saturday plan closes at 13:00)
                edge = datetime.combine((start + timedelta(days=day)).astimezone(WAW).date(), time(hour),
                                        tzinfo=WAW).astimezone(UTC)
                instants += [edge - timedelta(microseconds=1), edge]
    shuffled = random.Random(7).sample(instants, len(instants))
    fresh = SupportPolicy.from_config()
    for policy in (fresh, SATURDAYS):
        for order in (instants, shuffled):
            for at in order:
                for plan in (*policy.plans, None, "gold"):
                    calendar = policy.calendar_of(plan)
                    closed = None if is_open(calendar, at) else next_open(calendar, at)
                    assert policy.closed_until(at, plan) == closed, (plan, at)
                    for severity in ("minor", "critical"):
                        assert policy.hold(severity, at, plan) == queued_until(calendar, Severity(severity), at)
    # It did remember; plan names nobody has are the standard plan's, not a memory each.
    assert fresh.__dict__["_open"] and set(fresh.__dict__["_open"]) <= set(fresh.plans)


# ------------------------------------------------------- on-call wording
def test_the_on_call_sms_and_mail_name_the_step() -> None:
    from server.rules.mailtext import sms_text

    data = {"event": "sla.breached", "title": "Płatności", "shop_name": "Sklep", "sla_due_at": DUE.isoformat()}
    assert "Reakcja do piątku 20.11, 12:00" in sms_text({**data, "step": "first_response"}, 7, POLICY.calendar)
    assert "Odpowiedź na kolejną wiadomość do piątku 20.11, 12:00" in sms_text(
        {**data, "step": "next_response"}, 7, POLICY.calendar)
    assert "Reply to the next message by Friday" in sms_text({**data, "step": "next_response"}, 7,
                                                            POLICY.calendar, "en")
