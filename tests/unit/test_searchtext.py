"""Search's words: folding both ways (ł/Ł too), case, punctuation, what a query may be,
snippets; and the rule and migration 0012's SQL function agree letter for letter."""

from __future__ import annotations

import importlib.util

import pytest

from server.errors import BadRequest
from server.protocol.frames import Limits, Search, parse
from server.rules.searchtext import POLISH, POLISH_BASE, fold, parse_query, query_problem, snippet, words
from tests.servers import ROOT


@pytest.mark.parametrize(("text", "expected"), [
    ("Płatność", ["platnosc"]),
    ("PŁATNOŚĆ", ["platnosc"]),
    ("platnosc", ["platnosc"]),
    ("Łódź Żółć źdźbło gęś", ["lodz", "zolc", "zdzblo", "ges"]),
    ("ąćęłńóśźż ĄĆĘŁŃÓŚŹŻ", ["acelnoszz", "acelnoszz"]),
    ("Przelewy24, BLIK; PayU!", ["przelewy24", "blik", "payu"]),
    ("e-mail jan@x.pl #48213 12.5", ["e", "mail", "jan", "x", "pl", "48213", "12", "5"]),
    ("snake_case\ttab\nnew", ["snake", "case", "tab", "new"]),
    ("café Dvořák Müller", ["caf", "dvo", "k", "m", "ller"]),  # Polish letters only
    ("привет — …", []),
    ("", []),
])
def test_words_are_folded_runs_of_letters_and_digits(text, expected):
    assert words(text) == expected


def test_folding_keeps_the_length_so_matches_stay_in_place():
    text = "Zażółć GĘŚLĄ jaźń ŁÓDŹ"
    assert len(fold(text)) == len(text) and fold(text) == "zazolc gesla jazn lodz"


def test_the_rule_and_the_migrations_sql_function_fold_the_same_letters():
    spec = importlib.util.spec_from_file_location("m0012", ROOT / "migrations" / "versions" / "0012_search.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (module.POLISH, module.POLISH_BASE) == (POLISH, POLISH_BASE)
    assert len(POLISH) == len(POLISH_BASE) and "'" not in POLISH + POLISH_BASE


@pytest.mark.parametrize(("q", "terms"), [
    ("platnosc przelewy24", ("platnosc", "przelewy24")),
    ("Płatność  PRZELEWY24?", ("platnosc", "przelewy24")),
    ("płatność a przelew w banku", ("platnosc", "przelew", "banku")),  # one-letter words narrow nothing
    ("faktura faktura FAKTURA", ("faktura",)),
    ("\"; DROP TABLE messages; --", ("drop", "table", "messages")),
    ("'a' & | ! :* (x)", None),
])
def test_a_query_is_its_distinct_words_of_two_characters_or_more(q, terms):
    if terms is None:
        assert query_problem(q) is not None
        return
    assert query_problem(q) is None
    query = parse_query(q)
    assert query.terms == terms
    assert query.tsquery() == " & ".join(terms)
    assert query.fts5() == " ".join(f'"{t}"' for t in terms)


@pytest.mark.parametrize(("q", "problem"), [
    ("", "1 to 200"), ("x" * 201, "1 to 200"), ("a", "at least one word"), ("a b c ! ?", "at least one word"),
    ("   ", "at least one word"), (" ".join(f"w{i}" for i in range(11)), "more than 10 words"),
])
def test_queries_that_cannot_be_searched_say_why(q, problem):
    assert problem in (query_problem(q) or "")


LIMITS = Limits()


@pytest.mark.parametrize(("frame", "field"), [
    ({}, "'q'"), ({"q": 5}, "'q'"), ({"q": ""}, "'q'"), ({"q": "a"}, "'q'"), ({"q": "x" * 201}, "'q'"),
    ({"q": "ok\x00no"}, "'q'"), ({"q": "ok", "status": "queued"}, "'status'"), ({"q": "ok", "status": 1}, "'status'"),
    ({"q": "ok", "limit": 0}, "'limit'"), ({"q": "ok", "limit": 51}, "'limit'"), ({"q": "ok", "limit": "5"}, "'limit'"),
    ({"q": "ok", "limit": True}, "'limit'"), ({"q": "ok", "shop": ""}, "'shop'"), ({"q": "ok", "shop": 7}, "'shop'"),
    ({"q": "ok", "department": ["x"]}, "'department'"),
])
def test_a_bad_search_frame_names_its_field(frame, field):
    with pytest.raises(BadRequest) as err:
        parse({"type": "search", **frame}, LIMITS)
    assert field in err.value.message


def test_a_search_frame_with_everything():
    req = parse({"type": "search", "q": "Płatność Przelewy24", "shop": "s1", "status": "open",
                 "department": "payments", "limit": 50}, LIMITS)
    assert isinstance(req, Search)
    assert (req.query.terms, req.shop, req.status, req.department, req.limit) == (
        ("platnosc", "przelewy24"), "s1", "open", "payments", 50)
    assert parse({"type": "search", "q": "ok"}, LIMITS).limit == 20  # type: ignore[union-attr]


def test_a_snippet_is_cut_around_the_first_match():
    body = "Dzień dobry. " * 30 + "Od rana PŁATNOŚĆ przez Przelewy24 nie działa. " + "Pozdrawiam. " * 30
    cut = snippet(body, parse_query("platnosc przelewy24"))
    assert "PŁATNOŚĆ przez Przelewy24" in cut and cut.startswith("…") and cut.endswith("…")
    assert len(cut) <= 162
    assert snippet("krótko:\n  płatność", parse_query("platnosc")) == "krótko: płatność"
