"""Severities and reaction-time rules (server.rules.severity, server.rules.sla)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.rules.calendar import add_working_time, default_calendar, is_open, working_time_between
from server.rules.severity import (
    BY_PRIORITY,
    Severity,
    definition,
    label,
    lower,
    parse_severity,
    rank,
)
from server.rules.sla import (
    SlaPolicy,
    Target,
    acknowledgment,
    calendar_for,
    due_at,
    format_due,
    format_opening,
    queued_until,
    warning_at,
)

WAW = ZoneInfo("Europe/Warsaw")
CAL = default_calendar(years=range(2025, 2029))
POLICY = SlaPolicy()
H = timedelta(hours=1)
PROPERTY = settings(database=None, deadline=None, max_examples=100)


def w(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=WAW).astimezone(UTC)


# --- severity --------------------------------------------------------------------------


def test_wire_values_are_exactly_these_strings() -> None:
    assert [s.value for s in Severity] == ["critical", "major", "minor", "question", "suggestion"]
    assert Severity.CRITICAL == "critical"


def test_rank_orders_the_queue_critical_first() -> None:
    shuffled = [Severity.QUESTION, Severity.CRITICAL, Severity.SUGGESTION, Severity.MINOR, Severity.MAJOR]
    assert sorted(shuffled, key=rank, reverse=True) == list(BY_PRIORITY)
    assert rank(Severity.CRITICAL) > rank(Severity.MAJOR) > rank(Severity.MINOR)
    assert rank(Severity.MINOR) > rank(Severity.QUESTION) > rank(Severity.SUGGESTION)


@pytest.mark.parametrize(
    ("sev", "expected"),
    [
        (Severity.CRITICAL, Severity.MAJOR),
        (Severity.MAJOR, Severity.MINOR),
        (Severity.MINOR, Severity.QUESTION),
        (Severity.QUESTION, Severity.SUGGESTION),
        (Severity.SUGGESTION, Severity.SUGGESTION),
    ],
)
def test_lower_is_one_step_down(sev: Severity, expected: Severity) -> None:
    assert lower(sev) is expected


@pytest.mark.parametrize("value", ["critical", "major", "minor", "question", "suggestion", Severity.MINOR])
def test_parse_severity_accepts_wire_values(value: str) -> None:
    assert parse_severity(value) == Severity(value)


@pytest.mark.parametrize("value", ["urgent", "Critical", " minor", "", "krytyczne"])
def test_parse_severity_lists_allowed_values(value: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_severity(value)
    message = str(info.value)
    assert repr(value) in message
    assert "critical, major, minor, question, suggestion" in message


@pytest.mark.parametrize("value", [None, 1, b"critical", ["critical"]])
def test_parse_severity_rejects_non_strings(value: object) -> None:
    with pytest.raises(ValueError, match="critical, major, minor, question, suggestion"):
        parse_severity(value)


@pytest.mark.parametrize("lang", ["pl", "en"])
@pytest.mark.parametrize("sev", list(Severity))
def test_every_severity_has_a_label_and_definition(sev: Severity, lang: str) -> None:
    assert label(sev, lang)
    assert definition(sev, lang).endswith(".")


def test_labels() -> None:
    assert [label(s) for s in BY_PRIORITY] == ["krytyczne", "poważne", "drobne", "pytanie", "sugestia"]
    assert [label(s, "en") for s in BY_PRIORITY] == [s.value for s in BY_PRIORITY]


def test_critical_definition_excludes_self_configured_integrations() -> None:
    pl = definition(Severity.CRITICAL)
    assert "nie może sprzedawać" in pl
    assert "Nie jest krytyczny" in pl and "Przelewy24" in pl and "API" in pl
    en = definition(Severity.CRITICAL, "en")
    assert "not critical" in en and "Przelewy24" in en and "payment gateway" in en


def test_other_definitions_follow_seed_002() -> None:
    assert "nie działa" in definition(Severity.MAJOR)
    assert "obejście" in definition(Severity.MINOR) and "dokumentacją" in definition(Severity.MINOR)
    assert "dokumentacji" in definition(Severity.QUESTION)
    assert "nową funkcję" in definition(Severity.SUGGESTION)


@pytest.mark.parametrize("call", [lambda: label(Severity.MINOR, "de"), lambda: definition(Severity.MINOR, "")])
def test_unknown_language_is_rejected(call: object) -> None:
    with pytest.raises(ValueError, match="supported: pl, en"):
        call()  # type: ignore[operator]


# --- policy ----------------------------------------------------------------------------


def test_default_policy_is_seed_002_and_003() -> None:
    assert dict(POLICY.reaction) == {
        Severity.CRITICAL: Target(16, "hours"),
        Severity.MAJOR: Target(24, "working_hours"),
        Severity.MINOR: Target(4, "working_days"),
        Severity.QUESTION: Target(7, "working_days"),
        Severity.SUGGESTION: Target(14, "working_days"),
    }
    assert dict(POLICY.warning) == {
        Severity.CRITICAL: Target(2, "hours"),
        Severity.MAJOR: Target(2, "working_hours"),
        Severity.MINOR: Target(24, "working_hours"),
        Severity.QUESTION: Target(24, "working_hours"),
        Severity.SUGGESTION: Target(24, "working_hours"),
    }


@pytest.mark.parametrize(
    ("amount", "unit", "message"),
    [
        (-1, "hours", "non-negative"),
        (1.5, "hours", "non-negative"),
        (True, "hours", "non-negative"),
        (1, "days", "unit"),
    ],
)
def test_invalid_targets_are_rejected(amount: object, unit: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Target(amount, unit)  # type: ignore[arg-type]


def test_a_policy_must_cover_every_severity() -> None:
    with pytest.raises(ValueError, match="no target for: suggestion"):
        SlaPolicy(reaction={s: Target(1, "hours") for s in BY_PRIORITY[:-1]})
    with pytest.raises(ValueError, match="must be a Target"):
        SlaPolicy(warning={s: 2 for s in Severity})  # type: ignore[misc]


def test_only_critical_runs_on_call() -> None:
    assert calendar_for(Severity.CRITICAL, CAL).always_open
    for sev in BY_PRIORITY[1:]:
        assert calendar_for(sev, CAL) is CAL


# --- due_at / warning_at ---------------------------------------------------------------

DUE = [
    ("acceptance: minor Wed 23.12.2026 16:30", Severity.MINOR, w(2026, 12, 23, 16, 30), w(2026, 12, 31, 16, 30)),
    ("critical on Sunday: 16 h later", Severity.CRITICAL, w(2026, 11, 22, 10), w(2026, 11, 23, 2)),
    ("critical on Christmas Day", Severity.CRITICAL, w(2026, 12, 25, 12), w(2026, 12, 26, 4)),
    # Autumn switch night: 16 real hours, which on the wall clock reads 15.
    ("critical across the autumn switch", Severity.CRITICAL, w(2026, 10, 24, 20), w(2026, 10, 25, 11)),
    ("major Monday 9:00: 24 wh end Wednesday 17:00", Severity.MAJOR, w(2026, 11, 23, 9), w(2026, 11, 25, 17)),
    ("major Monday 13:00", Severity.MAJOR, w(2026, 11, 23, 13), w(2026, 11, 26, 13)),
    ("major on Saturday starts Monday 9:00", Severity.MAJOR, w(2026, 11, 21, 12), w(2026, 11, 25, 17)),
    ("major Friday 16:59", Severity.MAJOR, w(2026, 11, 20, 16, 59), w(2026, 11, 25, 16, 59)),
    ("minor Friday 16:59", Severity.MINOR, w(2026, 11, 20, 16, 59), w(2026, 11, 26, 16, 59)),
    ("question on Saturday", Severity.QUESTION, w(2026, 11, 21, 12), w(2026, 12, 2, 9)),
    ("suggestion Monday 10:00", Severity.SUGGESTION, w(2026, 11, 23, 10), w(2026, 12, 11, 10)),
    ("minor over the May long weekend", Severity.MINOR, w(2026, 4, 29, 10), w(2026, 5, 6, 10)),
]


@pytest.mark.parametrize(("case", "sev", "opened", "expected"), DUE, ids=[c[0] for c in DUE])
def test_due_at(case: str, sev: Severity, opened: datetime, expected: datetime) -> None:
    result = due_at(POLICY, sev, opened, CAL)
    assert result == expected
    assert result.tzinfo is UTC


def test_critical_due_is_sixteen_real_hours() -> None:
    opened = w(2026, 10, 24, 20)
    assert due_at(POLICY, Severity.CRITICAL, opened, CAL) - opened == 16 * H


WARN = [
    ("critical: 2 h, even on Sunday", Severity.CRITICAL, w(2026, 11, 22, 10), w(2026, 11, 22, 12)),
    ("major: 2 working hours", Severity.MAJOR, w(2026, 11, 20, 16), w(2026, 11, 23, 10)),
    ("minor: 24 working hours", Severity.MINOR, w(2026, 11, 23, 9), w(2026, 11, 25, 17)),
    ("question on Saturday", Severity.QUESTION, w(2026, 11, 21, 12), w(2026, 11, 25, 17)),
    ("suggestion", Severity.SUGGESTION, w(2026, 11, 23, 10), w(2026, 11, 26, 10)),
]


@pytest.mark.parametrize(("case", "sev", "opened", "expected"), WARN, ids=[c[0] for c in WARN])
def test_warning_at(case: str, sev: Severity, opened: datetime, expected: datetime) -> None:
    assert warning_at(POLICY, sev, opened, CAL) == expected


def test_warning_is_never_later_than_the_deadline() -> None:
    odd = SlaPolicy(warning={s: Target(100, "working_days") for s in Severity})
    opened = w(2026, 11, 23, 10)
    for sev in Severity:
        assert warning_at(odd, sev, opened, CAL) == due_at(odd, sev, opened, CAL)


def test_a_configured_elapsed_hours_warning() -> None:
    policy = SlaPolicy(warning={**POLICY.warning, Severity.MINOR: Target(24, "hours")})
    assert warning_at(policy, Severity.MINOR, w(2026, 11, 20, 16), CAL) == w(2026, 11, 21, 16)


@pytest.mark.parametrize("call", [due_at, warning_at])
def test_naive_opened_at_is_rejected(call: object) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        call(POLICY, Severity.CRITICAL, datetime(2026, 11, 23, 10), CAL)  # type: ignore[operator]


severities = st.sampled_from(list(Severity))
instants = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 1), timezones=st.just(UTC))


@PROPERTY
@given(sev=severities, opened=instants)
def test_deadlines_are_ordered(sev: Severity, opened: datetime) -> None:
    warn, due = warning_at(POLICY, sev, opened, CAL), due_at(POLICY, sev, opened, CAL)
    assert opened <= warn <= due
    if sev is Severity.MAJOR:
        assert working_time_between(CAL, opened, due) == 24 * H
        assert due == add_working_time(CAL, opened, 24 * H)


# --- queued_until ----------------------------------------------------------------------

QUEUED = [
    ("question on Saturday", Severity.QUESTION, w(2026, 11, 21, 12), datetime(2026, 11, 23, 8, tzinfo=UTC)),
    ("critical on Sunday is not queued", Severity.CRITICAL, w(2026, 11, 22, 3), None),
    ("critical at night is not queued", Severity.CRITICAL, w(2026, 11, 24, 2), None),
    ("minor during hours", Severity.MINOR, w(2026, 11, 23, 10), None),
    ("major at 9:00 sharp", Severity.MAJOR, w(2026, 11, 23, 9), None),
    ("major at 17:00 sharp", Severity.MAJOR, w(2026, 11, 23, 17), w(2026, 11, 24, 9)),
    ("suggestion in the middle of the night", Severity.SUGGESTION, w(2026, 11, 24, 3), w(2026, 11, 24, 9)),
    ("minor on Christmas Eve 2026", Severity.MINOR, w(2026, 12, 24, 10), w(2026, 12, 28, 9)),
    ("question on New Year's Eve evening", Severity.QUESTION, w(2026, 12, 31, 20), w(2027, 1, 4, 9)),
    ("summer Saturday: Monday 9:00 is 07:00 UTC", Severity.MINOR, w(2026, 7, 4, 12), w(2026, 7, 6, 9)),
]


@pytest.mark.parametrize(("case", "sev", "at", "expected"), QUEUED, ids=[c[0] for c in QUEUED])
def test_queued_until(case: str, sev: Severity, at: datetime, expected: datetime | None) -> None:
    assert queued_until(CAL, sev, at) == expected


@PROPERTY
@given(sev=severities, at=instants)
def test_queued_until_is_the_next_opening_or_none(sev: Severity, at: datetime) -> None:
    release = queued_until(CAL, sev, at)
    if sev is Severity.CRITICAL or is_open(CAL, at):
        assert release is None
    else:
        assert release is not None and release > at and is_open(CAL, release)


# --- wording ---------------------------------------------------------------------------

FORMAT_DUE = [
    (w(2026, 11, 23, 9), "do poniedziałku 23.11, 9:00", "by Monday 23.11, 9:00"),
    (w(2026, 11, 24, 13), "do wtorku 24.11, 13:00", "by Tuesday 24.11, 13:00"),
    (w(2026, 11, 25, 17), "do środy 25.11, 17:00", "by Wednesday 25.11, 17:00"),
    (w(2026, 12, 31, 16, 30), "do czwartku 31.12, 16:30", "by Thursday 31.12, 16:30"),
    (w(2027, 1, 1, 0, 5), "do piątku 01.01, 0:05", "by Friday 01.01, 0:05"),
    (w(2026, 11, 21, 10), "do soboty 21.11, 10:00", "by Saturday 21.11, 10:00"),
    (w(2026, 3, 1, 23, 59), "do niedzieli 01.03, 23:59", "by Sunday 01.03, 23:59"),
    (datetime(2026, 7, 6, 7, tzinfo=UTC), "do poniedziałku 06.07, 9:00", "by Monday 06.07, 9:00"),
]


@pytest.mark.parametrize(("dt", "pl", "en"), FORMAT_DUE, ids=[c[1] for c in FORMAT_DUE])
def test_format_due(dt: datetime, pl: str, en: str) -> None:
    assert format_due(dt, CAL) == pl
    assert format_due(dt, CAL, "en") == en


def test_format_opening() -> None:
    assert format_opening(w(2026, 11, 23, 9), CAL) == "poniedziałek 23.11 o 9:00"
    assert format_opening(w(2026, 11, 23, 9), CAL, "en") == "Monday 23.11 at 9:00"
    assert format_opening(w(2026, 12, 2, 9), CAL) == "środa 02.12 o 9:00"


def test_format_due_rejects_naive_and_unknown_language() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_due(datetime(2026, 11, 23, 9), CAL)
    with pytest.raises(ValueError, match="supported"):
        format_due(w(2026, 11, 23, 9), CAL, "fr")


def _ack(sev: Severity, opened: datetime, agents: int, lang: str = "pl") -> str:
    return acknowledgment(
        sev,
        opened,
        due_at(POLICY, sev, opened, CAL),
        queued_until(CAL, sev, opened),
        agents,
        CAL,
        lang,
    )


def test_acceptance_minor_before_christmas() -> None:
    text = _ack(Severity.MINOR, w(2026, 12, 23, 16, 30), agents=2)
    assert "do czwartku 31.12, 16:30" in text
    assert "przyjęliśmy" in text and "drobne" in text
    assert "Konsultant jest teraz dostępny" in text
    assert "kolejce" not in text


def test_acknowledgment_when_queued() -> None:
    text = _ack(Severity.QUESTION, w(2026, 11, 21, 12), agents=3)
    assert "czeka w kolejce do najbliższego otwarcia: poniedziałek 23.11 o 9:00" in text
    assert "do środy 02.12, 9:00" in text
    # Agents online at a weekend do not make a queued ticket live.
    assert "dostępny" not in text
    english = _ack(Severity.QUESTION, w(2026, 11, 21, 12), agents=3, lang="en")
    assert "until the next opening: Monday 23.11 at 9:00" in english
    assert "by Wednesday 02.12, 9:00" in english
    assert "question" in english


def test_acknowledgment_with_nobody_online() -> None:
    text = _ack(Severity.MAJOR, w(2026, 11, 23, 10), agents=0)
    assert "żaden konsultant nie jest na czacie" in text
    assert "do czwartku 26.11, 10:00" in text
    assert "No agent is in the chat" in _ack(Severity.MAJOR, w(2026, 11, 23, 10), agents=0, lang="en")


def test_acknowledgment_for_critical_on_sunday() -> None:
    text = _ack(Severity.CRITICAL, w(2026, 11, 22, 10), agents=1)
    assert "krytyczne" in text
    assert "kolejce" not in text
    assert "w weekendy i święta" in text
    assert "do poniedziałku 23.11, 2:00" in text
    english = _ack(Severity.CRITICAL, w(2026, 11, 22, 10), agents=1, lang="en")
    assert "at weekends and on holidays" in english and "by Monday 23.11, 2:00" in english


def test_acknowledgment_for_critical_in_hours_does_not_mention_on_call() -> None:
    assert "weekendy" not in _ack(Severity.CRITICAL, w(2026, 11, 23, 10), agents=1)


def test_acknowledgment_english_acceptance() -> None:
    text = _ack(Severity.MINOR, w(2026, 12, 23, 16, 30), agents=1, lang="en")
    assert text.startswith("Thank you, we have received your ticket (severity: minor).")
    assert "by Thursday 31.12, 16:30" in text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"agents_online": -1}, "agents_online"),
        ({"due_at": w(2026, 11, 23, 9)}, "before opened_at"),
        ({"queued_until": w(2026, 11, 20, 9)}, "before opened_at"),
        ({"opened_at": datetime(2026, 11, 23, 10)}, "timezone-aware"),
        ({"lang": "de"}, "supported"),
    ],
)
def test_acknowledgment_validates_inputs(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "severity": Severity.MINOR,
        "opened_at": w(2026, 11, 23, 10),
        "due_at": w(2026, 11, 27, 10),
        "queued_until": None,
        "agents_online": 1,
        "calendar": CAL,
        "lang": "pl",
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        acknowledgment(**args)  # type: ignore[arg-type]


def test_saturday_morning_team_does_not_queue_saturday_tickets() -> None:
    sat = default_calendar(years=range(2026, 2027), saturday=(time(9), time(13)))
    assert queued_until(sat, Severity.QUESTION, w(2026, 11, 21, 10)) is None
    assert queued_until(sat, Severity.QUESTION, w(2026, 11, 21, 13)) == w(2026, 11, 23, 9)
    assert due_at(POLICY, Severity.MINOR, w(2026, 11, 20, 12), sat) == w(2026, 11, 25, 12)
