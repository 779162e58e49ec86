"""Canned replies' pure rules: what a reply may hold, and filling it in for a ticket."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.rules import canned
from server.rules.canned import Link, TicketFacts, fill, values_for
from server.rules.canned_seeds import SEED_REPLIES
from server.rules.helpsearch import HelpIndex
from server.rules.intake import DEFAULT_DEPARTMENTS, parse_departments

HELP_DIR = Path(__file__).resolve().parents[2] / "help"
FULL = {"imie": "Anna", "sklep": "Sklep Testowy", "zgloszenie": "#7 „Płatności”"}


@pytest.mark.parametrize(("body", "values", "expected"), [
    ("Dzień dobry {imie}, w sklepie {sklep}.", FULL, "Dzień dobry Anna, w sklepie Sklep Testowy."),
    ("Dotyczy {zgloszenie}; {zgloszenie}", FULL, "Dotyczy #7 „Płatności”; #7 „Płatności”"),
    # The name missing: the greeting loses it and the space before it.
    ("Dzień dobry {imie},\nto jest…", {**FULL, "imie": None}, "Dzień dobry,\nto jest…"),
    ("Dzień dobry {imie}!", {**FULL, "imie": "  "}, "Dzień dobry!"),
    ("Dzień dobry {imie}", {}, "Dzień dobry"),
    ("Witaj {imie} i dziękuję", {}, "Witaj i dziękuję"),
    ("{imie}, dzień dobry", {}, "dzień dobry"),
    ("a\n  {imie}: b", {}, "a\nb"),
    # The others have words to stand in for them.
    ("Sklep: {sklep}.", {"sklep": None}, "Sklep: Twój sklep."),
    ("W sprawie {zgloszenie}.", {"zgloszenie": ""}, "W sprawie Twoje zgłoszenie."),
    # Not placeholders, or not ours: left alone (unknown ones are refused at save time).
    ("{ }, {} i {imię}", FULL, "{ }, {} i {imię}"),
    ("{{imie}}", FULL, "{Anna}"),
    # A value is never filled in again: a shop called "{imie}" stays "{imie}".
    ("{sklep}", {**FULL, "sklep": "{imie}"}, "{imie}"),
])
def test_fill(body: str, values: dict[str, str | None], expected: str) -> None:
    assert fill(body, values) == expected


def test_fill_lists_the_help_links_after_the_body() -> None:
    text = fill("Zobacz artykuł.\n\n", FULL, [Link("Przelewy24", "https://pomoc.example/help/p24"),
                                            Link("Zgłoszenia", "/help/jak")])
    assert text == ("Zobacz artykuł.\n\nWięcej w Centrum Pomocy:\n"
                    "• Przelewy24: https://pomoc.example/help/p24\n• Zgłoszenia: /help/jak")


@pytest.mark.parametrize(("facts", "expected"), [
    (TicketFacts(12, "Płatność nie działa", "payments", "Sklep Testowy", "Anna Kowalska", "u-1"),
     {"imie": "Anna", "sklep": "Sklep Testowy", "zgloszenie": "#12 „Płatność nie działa”"}),
    # A token without a name claim names the customer by its id: that is no name.
    (TicketFacts(3, "x", None, "S", "owner-1", "owner-1"), {"imie": None, "sklep": "S", "zgloszenie": "#3 „x”"}),
    (TicketFacts(3, "  ", None, None, None, None), {"imie": None, "sklep": None, "zgloszenie": "#3"}),
])
def test_values_for_a_ticket(facts: TicketFacts, expected: dict[str, str | None]) -> None:
    assert values_for(facts) == expected


@pytest.mark.parametrize(("value", "ok"), [
    ("przelewy24", True), ("p24", True), ("ab", True), ("dane-klienta", True), ("a_b", True), ("x" * 32, True),
    ("a", False), ("x" * 33, False), ("24p", False), ("Prz", False), ("prz elewy", False), ("płatność", False),
    ("/prz", False), ("", False),
])
def test_shortcuts(value: str, ok: bool) -> None:
    assert (canned.shortcut_problem(value) is None) is ok


@pytest.mark.parametrize(("value", "fragment"), [
    ("", "must not be empty"), ("   ", "must not be empty"), ("x" * 121, "at most 120"),
    ("dwie\nlinie", "one line"), ("zły\x00znak", "U+0000"),
])
def test_titles_refused(value: str, fragment: str) -> None:
    problem = canned.title_problem(value)
    assert problem is not None and fragment in problem


@pytest.mark.parametrize(("value", "fragment"), [
    ("", "must not be empty"), ("\n \t", "must not be empty"), ("x" * 4001, "at most 4000"),
    ("zły\x07znak", "U+0007"), ("Dzień dobry {imię}", "unknown placeholder {imię}"),
    ("{name} i {shop}", "unknown placeholder {name}, {shop}"), ("{imie} " * 21, "at most 20 placeholders"),
])
def test_bodies_refused(value: str, fragment: str) -> None:
    problem = canned.body_problem(value)
    assert problem is not None and fragment in problem
    if "placeholder {" in fragment:
        assert "{imie}, {sklep}, {zgloszenie}" in problem  # the message says which ones exist


def test_bodies_accepted() -> None:
    assert canned.body_problem("Dzień dobry {imie},\n{sklep} {zgloszenie} { } {}\ttab") is None
    assert canned.body_problem("{imie} " * 20) is None


def test_a_filled_reply_fits_a_message() -> None:
    # The longest body, every placeholder a 200-character value, five links: under 10,000.
    body = ("{sklep}" * canned.MAX_PLACEHOLDERS).ljust(canned.MAX_BODY_CHARS, "x")
    values = {name: "y" * 200 for name in canned.PLACEHOLDERS}
    links = [Link("t" * 200, "https://example.com/help/" + "a" * 100)] * canned.MAX_ARTICLES
    assert canned.body_problem(body) is None
    assert len(fill(body, values, links)) <= 10_000


def test_the_seeded_replies_are_valid_and_link_real_articles() -> None:
    index = HelpIndex.from_directory(HELP_DIR)
    departments = {d.key for d in parse_departments(DEFAULT_DEPARTMENTS)}
    shortcuts = set()
    for seed in SEED_REPLIES:
        assert canned.shortcut_problem(seed.shortcut) is None, seed.shortcut
        assert canned.title_problem(seed.title) is None, seed.shortcut
        assert canned.body_problem(seed.body) is None, seed.shortcut
        assert seed.department is None or seed.department in departments
        assert all(index.article(a) is not None for a in seed.articles), seed.shortcut
        assert (seed.department, seed.shortcut) not in shortcuts
        shortcuts.add((seed.department, seed.shortcut))
    p24 = [s for s in SEED_REPLIES if s.shortcut.startswith("prz")]
    assert len(p24) == 1 and "{sklep}" in p24[0].body and "Przelewy24" in p24[0].body
    assert "a nie błąd systemu" in p24[0].body
