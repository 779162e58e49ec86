"""Tables for the rules that had none: fair-use conduct, retention, the policy's
configuration parsing, the ticket rules (transitions, post admission, changes)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta

import pytest

from server.errors import ClosedTicket, Forbidden, NotFound
from server.principal import Principal, Role
from server.rules.conduct import Record, decide, is_downgrade
from server.rules.config import Rules
from server.rules.limits import Limit, parse_limit
from server.rules.policy import SupportPolicy, parse_closed_dates, parse_hours, parse_open_dates, parse_targets
from server.rules.records import Ticket
from server.rules.retention import LifecyclePolicy, parse_duration
from server.rules.severity import Severity
from server.rules.sla import Target
from server.rules.tickets import ThreadState, admit_post, may_move, note_is_internal, ticket_changes
from server.settings import Settings, SettingsError

NOW = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)  # Wednesday 10:00 in Warsaw
CUSTOMER = Principal(Role.customer, "u1", "Ala", shop="s1")
STRANGER = Principal(Role.customer, "u9", "Ola", shop="s2")
AGENT = Principal(Role.agent, "a1", "Agnieszka")


# ------------------------------------------------------------------ conduct
@pytest.mark.parametrize(("claimed", "record", "severity", "deprioritized", "told"), [
    ("critical", Record(0, 0), "critical", False, False),
    ("critical", Record(2, 2), "critical", False, False),  # two claims are bad luck, not a pattern
    ("critical", Record(3, 1), "critical", False, False),  # mostly right
    ("critical", Record(3, 2), "major", True, True),  # mostly overstated: one level lower, and told
    ("major", Record(4, 3), "minor", True, True),
    ("minor", Record(4, 3), "minor", True, False),  # not a claim of urgency: severity kept, queued behind
    ("question", Record(10, 10), "question", True, False),
    ("critical", Record(4, 2), "critical", False, False),  # exactly half is not "most"
])
def test_conduct_decides_by_the_shops_record(claimed: str, record: Record, severity: str, deprioritized: bool,
                                             told: bool) -> None:
    decision = decide(claimed, record)
    assert (decision.severity, decision.claimed, decision.deprioritized) == (severity, claimed, deprioritized)
    assert (decision.note is not None) == told


@pytest.mark.parametrize(("claimed", "severity", "lowered"), [
    ("critical", "major", True), ("critical", "critical", False), ("major", "minor", True),
    ("major", "critical", False), ("minor", "question", False), (None, "minor", False),
])
def test_a_downgrade_is_a_claim_lowered(claimed: str | None, severity: str, lowered: bool) -> None:
    assert is_downgrade(claimed, severity) is lowered


# ---------------------------------------------------------------- retention
@pytest.mark.parametrize(("text", "expected"), [
    ("14d", timedelta(days=14)), (" 36h ", timedelta(hours=36)), ("90m", timedelta(minutes=90)),
    ("30s", timedelta(seconds=30)),
])
def test_durations_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text, "X") == expected


@pytest.mark.parametrize("text", ["", "14", "d14", "0d", "-1d", "1w", "1.5d"])
def test_bad_durations_name_the_variable(text: str) -> None:
    with pytest.raises(ValueError, match="POMOC_RETENTION"):
        parse_duration(text, "POMOC_RETENTION")


def test_retention_boundaries() -> None:
    policy = LifecyclePolicy()
    closed = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert policy.visible_until(closed) == closed + timedelta(days=90)
    assert policy.purge_closed_before(closed + timedelta(days=90)) == closed  # exactly 90 days: goes
    assert policy.purge_closed_before(closed + timedelta(days=90, seconds=-1)) < closed  # a second early: stays
    assert policy.reminder_due_before(0, NOW) == NOW - timedelta(days=14)
    assert policy.reminder_due_before(1, NOW) == NOW - timedelta(days=17)
    assert policy.silent_resolve_before(NOW) == NOW - timedelta(days=21)
    assert policy.close_resolved_before(NOW) == NOW - timedelta(days=7)


@pytest.mark.parametrize(("reminders", "resolve"), [("14d,17d", "17d"), ("17d,14d", "21d"), ("14d", "10d")])
def test_reminders_must_come_in_order_before_resolving(reminders: str, resolve: str) -> None:
    with pytest.raises(ValueError, match="in order"):
        LifecyclePolicy.from_config(reminders, resolve)


# ------------------------------------------------------------------ policy
@pytest.mark.parametrize(("text", "expected"), [
    ("mon-fri 09:00-17:00", {d: (time(9), time(17)) for d in range(5)}),
    ("mon-fri 09:00-17:00; sat 09:00-13:00", {**{d: (time(9), time(17)) for d in range(5)}, 5: (time(9), time(13))}),
    ("tue 8:30-12:00", {1: (time(8, 30), time(12))}),
    ("Mon-Sun 00:00-23:59", {d: (time(0), time(23, 59)) for d in range(7)}),
])
def test_opening_hours_parse(text: str, expected: dict[int, tuple[time, time]]) -> None:
    assert parse_hours(text) == expected


@pytest.mark.parametrize(("text", "why"), [
    ("", "no opening hours"), ("mon-fri", "HH:MM-HH:MM"), ("xyz 09:00-17:00", "unknown day"),
    ("fri-mon 09:00-17:00", "backwards"), ("mon 17:00-09:00", "not an opening span"),
    ("mon 09:00-25:00", "not an opening span"),
    ("mon-fri 09:00-13:00; mon-fri 14:00-17:00", "second opening span"),  # a split shift is refused
    ("mon 09:00-17:00; mon 10:00-12:00", "second opening span"),
])
def test_bad_opening_hours_are_refused_by_name(text: str, why: str) -> None:
    with pytest.raises(ValueError, match="POMOC_HOURS") as refused:
        parse_hours(text)
    assert why in str(refused.value)


def test_extra_dates_parse() -> None:
    assert parse_closed_dates("2026-12-31 Inwentaryzacja, 2027-01-02") == {
        date(2026, 12, 31): "Inwentaryzacja", date(2027, 1, 2): "zamknięte"}
    assert parse_open_dates("2026-12-27 10:00-14:00") == {date(2026, 12, 27): (time(10), time(14))}
    with pytest.raises(ValueError, match="POMOC_CLOSED_DATES"):
        parse_closed_dates("31.12.2026")
    with pytest.raises(ValueError, match="POMOC_OPEN_DATES"):
        parse_open_dates("2026-12-27")


@pytest.mark.parametrize(("text", "expected"), [
    ("critical=8h", {Severity.CRITICAL: Target(8, "hours")}),
    ("major=16wh, minor=3wd", {Severity.MAJOR: Target(16, "working_hours"), Severity.MINOR: Target(3, "working_days")}),
])
def test_reaction_targets_parse(text: str, expected: dict[Severity, Target]) -> None:
    assert parse_targets(text, "POMOC_SLA") == expected


@pytest.mark.parametrize("text", ["critical=8", "urgent=8h", "critical=8d", "critical"])
def test_bad_reaction_targets_are_refused_by_name(text: str) -> None:
    with pytest.raises(ValueError, match="POMOC_SLA"):
        parse_targets(text, "POMOC_SLA")


@pytest.mark.parametrize(("text", "expected"), [
    ("30/10s", Limit(30, timedelta(seconds=10))), ("1000/1m", Limit(1000, timedelta(minutes=1))),
    ("50/1d", Limit(50, timedelta(days=1))), ("5/h", Limit(5, timedelta(hours=1))), ("off", None), ("0", None),
])
def test_limits_parse(text: str, expected: Limit | None) -> None:
    assert parse_limit(text, "X") == expected


@pytest.mark.parametrize(("env", "name"), [
    ({"POMOC_HOURS": "mon-fri 9-5"}, "POMOC_HOURS"), ({"POMOC_SLA": "critical=1x"}, "POMOC_SLA"),
    ({"POMOC_SLA_WARNING": "x"}, "POMOC_SLA_WARNING"), ({"POMOC_CLOSED_DATES": "jutro"}, "POMOC_CLOSED_DATES"),
    ({"POMOC_RATE_USER_MESSAGES": "lots"}, "POMOC_RATE_USER_MESSAGES"),
    ({"POMOC_RETENTION": "3 months"}, "POMOC_RETENTION"), ({"POMOC_DEPARTMENTS": "a:b"}, "POMOC_DEPARTMENTS"),
    ({"POMOC_DEFAULT_DEPARTMENT": "nowhere"}, "POMOC_DEFAULT_DEPARTMENT"),
])
def test_the_rules_configuration_fails_at_startup_naming_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Rules.from_settings(Settings.from_env(env))


def test_the_configured_time_zone_is_the_calendars() -> None:
    rules = Rules.from_settings(Settings.from_env({"POMOC_TIMEZONE": "Europe/London"}))
    assert str(rules.policy.calendar.tz) == "Europe/London"
    # 9:00 in London is 10:00 in Warsaw: open there, an hour before Warsaw's opening.
    assert rules.policy.service(datetime(2026, 11, 18, 9, 30, tzinfo=UTC))["open"] is True
    warsaw = SupportPolicy.from_config()
    assert warsaw.service(datetime(2026, 11, 18, 7, 30, tzinfo=UTC))["open"] is False


# ------------------------------------------------------------ ticket rules
OPEN = ThreadState("s1", "open", "minor", None)


MONDAY = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def never_held(severity: str, now: datetime, plan: str | None = None) -> datetime | None:
    return None


def open_now(now: datetime, plan: str | None = None) -> datetime | None:
    return None


def closed_till_monday(now: datetime, plan: str | None = None) -> datetime | None:
    return MONDAY


def held_till_monday(severity: str, now: datetime, plan: str | None = None) -> datetime | None:
    return None if severity == "critical" else datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(("who", "state", "raised"), [
    (CUSTOMER, None, Forbidden), (STRANGER, OPEN, Forbidden), (AGENT, None, NotFound),  # a customer: same answer
    (CUSTOMER, ThreadState("s1", "closed", "minor", None), ClosedTicket),
    (AGENT, ThreadState("s1", "closed", "minor", None), ClosedTicket),
])
def test_posting_is_refused(who: Principal, state: ThreadState | None, raised: type[Exception]) -> None:
    with pytest.raises(raised):
        admit_post(who, 7, state, NOW, never_held, open_now)


@pytest.mark.parametrize(("who", "state", "hold", "queued", "reopens"), [
    (CUSTOMER, OPEN, never_held, None, False),
    (AGENT, OPEN, held_till_monday, None, False),  # agents are never held
    (CUSTOMER, OPEN, held_till_monday, MONDAY, False),
    (CUSTOMER, ThreadState("s1", "open", "critical", None), held_till_monday, None, False),
    # A held ticket's follow-ups wait with it, even when the message alone would not.
    (CUSTOMER, ThreadState("s1", "open", "minor", datetime(2026, 11, 23, 8, 0, tzinfo=UTC)), never_held,
     datetime(2026, 11, 23, 8, 0, tzinfo=UTC), False),
    (CUSTOMER, ThreadState("s1", "open", "minor", NOW - timedelta(hours=1)), never_held, None, False),
    (CUSTOMER, ThreadState("s1", "waiting_on_customer", "minor", None), never_held, None, True),
    (CUSTOMER, ThreadState("s1", "resolved", "minor", None), never_held, None, True),
    (AGENT, ThreadState("s1", "resolved", "minor", None), never_held, None, False),
])
def test_posting_is_admitted(who: Principal, state: ThreadState, hold: Callable[..., datetime | None],
                             queued: datetime | None, reopens: bool) -> None:
    admitted = admit_post(who, 7, state, NOW, hold, open_now)
    assert (admitted.queued_until, admitted.reopens) == (queued, reopens)
    assert not admitted.takes_over


@pytest.mark.parametrize(("state", "closed_until", "takes_over", "live_until"), [
    (OPEN, open_now, False, None),  # an ordinary reply in working hours
    (OPEN, closed_till_monday, True, MONDAY),  # answering outside working hours: handling it till opening
    (ThreadState("s1", "open", "minor", None, MONDAY), closed_till_monday, False, None),  # already handled
    (ThreadState("s1", "open", "minor", MONDAY), closed_till_monday, True, MONDAY),  # a held ticket taken in hand
    (ThreadState("s1", "open", "minor", MONDAY), open_now, True, None),  # held, answered as support opens
])
def test_an_agent_who_answers_off_hours_takes_the_ticket_in_hand(
        state: ThreadState, closed_until: Callable[..., datetime | None], takes_over: bool,
        live_until: datetime | None) -> None:
    admitted = admit_post(AGENT, 7, state, NOW, held_till_monday, closed_until)
    assert (admitted.takes_over, admitted.live_until, admitted.queued_until) == (takes_over, live_until, None)


def test_a_customers_reply_to_a_ticket_being_handled_flows_live() -> None:
    handled = ThreadState("s1", "open", "minor", None, live_until=MONDAY)
    assert admit_post(CUSTOMER, 7, handled, NOW, held_till_monday, closed_till_monday).queued_until is None
    over = ThreadState("s1", "open", "minor", None, live_until=NOW - timedelta(minutes=1))
    assert admit_post(CUSTOMER, 7, over, NOW, held_till_monday, closed_till_monday).queued_until == MONDAY
    queued = admit_post(CUSTOMER, 7, ThreadState("s1", "open", "minor", MONDAY), NOW, never_held, open_now)
    assert queued.ticket_queued and queued.queued_until == MONDAY


@pytest.mark.parametrize(("who", "current", "target", "allowed"), [
    (AGENT, "open", "waiting_on_customer", True), (AGENT, "resolved", "open", True),
    (AGENT, "open", "closed", True), (AGENT, "closed", "open", False),
    (CUSTOMER, "open", "resolved", True), (CUSTOMER, "waiting_on_customer", "resolved", True),
    (CUSTOMER, "open", "closed", False), (CUSTOMER, "resolved", "open", False), (CUSTOMER, "closed", "resolved", False),
])
def test_who_may_move_a_ticket_where(who: Principal, current: str, target: str, allowed: bool) -> None:
    assert may_move(who, current, target) is allowed


def ticket(**fields: object) -> Ticket:
    base: dict[str, object] = dict(id=7, shop_id="s1", created_by="u1", title="Płatności", status="open",
                                   severity="major", department="payments", assignee=None, context={}, last_seq=3,
                                   created_at=NOW, updated_at=NOW, sla_due_at=None, queued_until=None,
                                   closed_at=None, claimed_severity="critical", deprioritized=True)
    return Ticket(**{**base, **fields})  # type: ignore[arg-type]


def test_a_status_change_records_a_note_and_its_timestamps() -> None:
    change = ticket_changes(AGENT, ticket(), {"status": "waiting_on_customer"}, NOW, SupportPolicy.from_config())
    assert change.fields == {"status": "waiting_on_customer", "resolved_at": None, "waiting_since": NOW,
                             "reminders_sent": 0}
    # Waiting on the customer: a running deadline stops (nothing is due from support).
    running = ticket(sla_due_at=NOW + timedelta(hours=4), inbox_rank=1)
    stopped = ticket_changes(AGENT, running, {"status": "waiting_on_customer"}, NOW, SupportPolicy.from_config())
    assert (stopped.fields["sla_due_at"], stopped.fields["sla_warning_at"], stopped.fields["inbox_rank"]) == (
        None, None, 100)
    assert change.notes == ("Agnieszka: status otwarte → czeka na klienta.",)
    resolved = ticket_changes(CUSTOMER, ticket(), {"status": "resolved"}, NOW, SupportPolicy.from_config())
    assert resolved.fields["resolved_at"] == NOW and resolved.fields["waiting_since"] is None


def test_raising_the_severity_moves_the_deadline_and_confirms_the_claim() -> None:
    policy = SupportPolicy.from_config()
    change = ticket_changes(AGENT, ticket(), {"severity": "critical"}, NOW, policy)
    assert change.fields["sla_due_at"] == NOW + timedelta(hours=16)  # critical: 16 h on the clock, 24/7
    assert change.fields["severity_reviewed"] is True and change.fields["deprioritized"] is False
    # How urgent support judged it is support's business: a private note.
    assert change.notes == () and change.internal_notes == ("Agnieszka: priorytet → critical.",)
    same = ticket_changes(AGENT, ticket(), {"severity": "major", "assignee": None}, NOW, policy)
    assert same.fields == {} and same.notes == () and same.internal_notes == ()


@pytest.mark.parametrize(("requested", "public", "internal"), [
    ({"status": "waiting_on_customer"}, ("Agnieszka: status otwarte → czeka na klienta.",), ()),
    ({"assignee": "a1"}, (), ("Agnieszka: przypisane do → a1.",)),
    ({"department": "technical"}, (), ("Agnieszka: dział → technical.",)),
    ({"department": None}, (), ("Agnieszka: dział → —.",)),
    ({"severity": "minor"}, (), ("Agnieszka: priorytet → minor.",)),
    ({"status": "resolved", "assignee": "a2", "severity": "critical"},
     ("Agnieszka: status otwarte → rozwiązane.",),
     ("Agnieszka: priorytet → critical.", "Agnieszka: przypisane do → a2.")),
])
def test_only_the_notes_that_concern_the_customer_are_public(requested: dict[str, str | None],
                                                             public: tuple[str, ...],
                                                             internal: tuple[str, ...]) -> None:
    change = ticket_changes(AGENT, ticket(), requested, NOW, SupportPolicy.from_config())
    assert change.notes == public and change.internal_notes == internal


@pytest.mark.parametrize(("field", "internal"), [("status", False), ("severity", True), ("department", True),
                                                 ("assignee", True), ("title", False)])
def test_which_system_notes_are_private(field: str, internal: bool) -> None:
    assert note_is_internal(field) is internal


def test_only_agents_write_private_notes_and_a_note_handles_nothing() -> None:
    state = ThreadState("s1", "open", "major", queued_until=NOW + timedelta(hours=8))
    with pytest.raises(Forbidden):
        admit_post(CUSTOMER, 7, state, NOW, lambda _s, _n, _p: None, lambda _n, _p: None, internal=True)
    # A note into a held ticket, support closed: it is not an answer, the ticket stays queued.
    closed = lambda _n, _p: NOW + timedelta(hours=8)  # noqa: E731
    note = admit_post(AGENT, 7, state, NOW, lambda _s, _n, _p: None, closed, internal=True)
    assert not note.takes_over and not note.reopens and note.queued_until is None
    assert admit_post(AGENT, 7, state, NOW, lambda _s, _n, _p: None, closed).takes_over


@pytest.mark.parametrize(("who", "requested", "raised"), [
    (CUSTOMER, {"status": "closed"}, Forbidden), (CUSTOMER, {"severity": "critical"}, Forbidden),
    (CUSTOMER, {"status": "resolved", "assignee": "a1"}, Forbidden),
])
def test_customers_may_only_resolve(who: Principal, requested: dict[str, str | None], raised: type[Exception]) -> None:
    with pytest.raises(raised):
        ticket_changes(who, ticket(), requested, NOW, SupportPolicy.from_config())


def test_a_closed_ticket_is_read_only_for_everyone() -> None:
    for who in (AGENT, CUSTOMER):
        with pytest.raises(ClosedTicket):
            ticket_changes(who, ticket(status="closed"), {"status": "open"}, NOW, SupportPolicy.from_config())


def test_raising_a_held_ticket_to_critical_releases_it_and_tells_the_on_call_team() -> None:
    held = ticket(severity="minor", queued_until=MONDAY, deprioritized=False, claimed_severity="minor")
    change = ticket_changes(AGENT, held, {"severity": "critical"}, NOW, SupportPolicy.from_config())
    assert change.fields["queued_until"] is None and change.release_held
    ((event, key, payload),) = change.events
    assert (event, key, payload["ticket_id"], payload["severity"]) == ("ticket.critical", "ticket.critical", 7,
                                                                      "critical")
    lowered = ticket_changes(AGENT, held, {"severity": "question"}, NOW, SupportPolicy.from_config())
    assert "queued_until" not in lowered.fields and not lowered.release_held and not lowered.events
