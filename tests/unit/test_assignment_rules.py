"""The automatic assignment's choice, as a table: coverage, fewest open tickets,
capacity, the tie-break, a batch, and when an offline assignee is released."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from server.rules.assignment import Candidate, assigned_note, choose, covers, plan, released_note, stale

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
EARLY = NOW - timedelta(hours=2)
LATE = NOW - timedelta(minutes=5)


@pytest.mark.parametrize(("departments", "department", "expected"), [
    ((), "payments", True),  # no departments in the token: every department
    (("payments",), "payments", True),
    (("payments", "shipping"), "shipping", True),
    (("payments",), "shipping", False),
    (("payments",), None, True),  # a ticket without a department is anybody's
])
def test_who_covers_a_department(departments, department, expected):
    assert covers(departments, department) is expected


@pytest.mark.parametrize(("candidates", "loads", "department", "expected"), [
    # The fewest open assigned tickets wins.
    ([Candidate("a"), Candidate("b")], {"a": 3, "b": 1}, None, "b"),
    # Only those covering the department; the lightest of them, even if another is lighter.
    ([Candidate("a", ("shipping",)), Candidate("b", ("payments",))], {"a": 0, "b": 5}, "payments", "b"),
    # At capacity (8): not chosen, however the others stand.
    ([Candidate("a"), Candidate("b")], {"a": 8, "b": 7}, None, "b"),
    ([Candidate("a"), Candidate("b")], {"a": 8, "b": 8}, None, None),
    # Nobody covers it: nobody.
    ([Candidate("a", ("shipping",))], {}, "payments", None),
    ([], {}, None, None),
    # A tie: the least recently assigned (never counts as longest ago), then the lowest id.
    ([Candidate("a", (), LATE), Candidate("b", (), EARLY)], {"a": 2, "b": 2}, None, "b"),
    ([Candidate("a", (), LATE), Candidate("b")], {}, None, "b"),
    ([Candidate("b"), Candidate("a")], {}, None, "a"),
    ([Candidate("b", (), EARLY), Candidate("a", (), EARLY)], {}, None, "a"),
])
def test_the_choice(candidates, loads, department, expected):
    chosen = choose(department, candidates, loads, capacity=8)
    assert (chosen.id if chosen else None) == expected


def test_the_choice_does_not_depend_on_the_order_candidates_come_in():
    agents = [Candidate("c", (), EARLY), Candidate("a", (), LATE), Candidate("b", (), EARLY)]
    loads = {"a": 1, "b": 1, "c": 1}
    assert {choose(None, order, loads, 8).id for order in (agents, agents[::-1], agents[1:] + agents[:1])} == {"b"}


def test_twenty_tickets_over_three_agents_with_capacity_eight_spread_evenly_within_it():
    agents = [Candidate("a1"), Candidate("a2"), Candidate("a3")]
    got = plan([(i, "payments") for i in range(1, 21)], agents, {}, capacity=8, now=NOW)
    assert len(got) == 20
    counts = {a: list(got.values()).count(a) for a in ("a1", "a2", "a3")}
    assert sorted(counts.values()) == [6, 7, 7]  # fewest first: an even spread
    assert max(counts.values()) <= 8
    # Round-robin by load and recency: a1, a2, a3, a1, …
    assert [got[i] for i in range(1, 7)] == ["a1", "a2", "a3", "a1", "a2", "a3"]


def test_a_batch_counts_what_agents_already_have_and_leaves_the_rest_in_the_pool():
    agents = [Candidate("a1"), Candidate("a2"), Candidate("a3")]
    got = plan([(i, None) for i in range(1, 21)], agents, {"a1": 6, "a2": 8, "a3": 0}, capacity=8, now=NOW)
    assert list(got.values()).count("a2") == 0
    assert list(got.values()).count("a1") == 2
    assert list(got.values()).count("a3") == 8
    assert len(got) == 10  # the other ten stay in the pool


def test_a_batch_respects_departments():
    agents = [Candidate("pay", ("payments",)), Candidate("all")]
    got = plan([(1, "shipping"), (2, "shipping"), (3, "payments")], agents, {}, capacity=1, now=NOW)
    # "all" is the only one for shipping and is full after one; payments go to "pay".
    assert got == {1: "all", 3: "pay"}


@pytest.mark.parametrize(("present", "seen", "expected"), [
    (True, NOW - timedelta(days=3), False),  # connected: never released, however long ago it said hello
    (False, NOW - timedelta(minutes=14), False),
    (False, NOW - timedelta(minutes=15), True),  # exactly the release time
    (False, NOW - timedelta(hours=1), True),
    (False, None, True),  # never seen (an assignee typed before agents were known)
])
def test_when_an_offline_assignee_is_released(present, seen, expected):
    assert stale(present, seen, NOW, timedelta(minutes=15)) is expected


def test_the_notes_name_the_agent_in_the_tickets_language():
    assert "przypisane do → a1 (Anna)" in assigned_note("pl", "Anna", "a1")
    assert "assigned to → a1 (Anna)" in assigned_note("en", "Anna", "a1")
    assert "15 min" in released_note("pl", "a1", timedelta(minutes=15))
    assert "pula" in released_note("pl", "a1", timedelta(minutes=15)) or "puli" in released_note(
        "pl", "a1", timedelta(minutes=15))
