"""Tables for what Pomoc takes from outside: free text, identifiers, links, each
frame field that carries one, the configured departments, and what a customer hears
of a ticket that is not there."""

from __future__ import annotations

from typing import Any

import pytest

from server.errors import BadRequest, Forbidden, NotFound, TooLarge
from server.principal import Principal, Role
from server.protocol import frames
from server.rules.intake import default_departments
from server.rules.text import http_link, identifier_problem, text_problem
from server.rules.tickets import NOT_YOURS, check_access, check_department, unknown_ticket

LIMITS = frames.Limits()
CUSTOMER = Principal(Role.customer, "u1", "Ala", shop="s1")
AGENT = Principal(Role.agent, "a1", "Agnieszka")


# ------------------------------------------------------------------ free text
@pytest.mark.parametrize(("value", "found"), [
    ("zażółć gęślą jaźń", None),
    ("line\nbreak\r\nand\ttab", None),
    ("emoji 🙂 and ZWJ 👩‍💻", None),
    ("\u202eright-to-left", None),  # format characters are text (the console shows them safely)
    ("\x85 C1 is not refused in text", None),
    ("", None),
    ("a\x00b", "U+0000"),
    ("\x01", "U+0001"),
    ("bell\x07", "U+0007"),
    ("back\x08space", "U+0008"),
    ("vertical\x0btab", "U+000B"),
    ("form\x0cfeed", "U+000C"),
    ("shift\x0eout", "U+000E"),
    ("\x1b[31mred", "U+001B"),
    ("unit\x1fsep", "U+001F"),
    ("del\x7f", "U+007F"),
    ("lone \ud800 surrogate", "U+D800"),
    ("lone \udfff surrogate", "U+DFFF"),
])
def test_free_text_refuses_control_characters_but_line_breaks_and_tabs(value: str, found: str | None) -> None:
    problem = text_problem(value)
    if found is None:
        assert problem is None
    else:
        assert problem is not None and found in problem


@pytest.mark.parametrize(("value", "ok"), [
    ("c-1", True), ("5f0c5e4e-8d7a-4a70-8f36-3e2a7b3d1c11", True), ("with space", True), ("zażółć", True),
    ("a:b%c", True), ("x" * 200, True),
    ("", False), ("x" * 201, False), ("nul\x00", False), ("tab\t", False), ("line\n", False),
    ("\x7f", False), ("\x85", False), ("zero\u200bwidth", False), ("\u202e", False), ("\u2028", False),
    ("\ud800", False), ("\ue000private", False), ("\u00a0nbsp", False),
])
def test_identifiers_are_bounded_printable_strings(value: str, ok: bool) -> None:
    assert (identifier_problem(value, 200) is None) is ok


@pytest.mark.parametrize(("value", "kept"), [
    ("https://sklep.example/admin/orders/55", "https://sklep.example/admin/orders/55"),
    ("http://localhost:8000/demo?x=1#y", "http://localhost:8000/demo?x=1#y"),
    ("HTTPS://SKLEP.EXAMPLE/", "HTTPS://SKLEP.EXAMPLE/"),
    ("  https://sklep.example/a  ", "https://sklep.example/a"),
    ("https://[::1]/x", "https://[::1]/x"),
    ("https://user@sklep.example/", "https://user@sklep.example/"),
    ("javascript:alert(1)", None), ("JAVASCRIPT:alert(1)", None), (" javascript:alert(1)", None),
    ("java\tscript:alert(1)", None), ("java\nscript:alert(1)", None), ("\x01javascript:alert(1)", None),
    ("data:text/html,<script>", None), ("vbscript:x", None), ("file:///etc/passwd", None),
    ("ftp://sklep.example/", None), ("//sklep.example/x", None), ("/admin/orders/1", None),
    ("sklep.example/orders/1", None), ("12345", None), ("https://", None), ("http:/x", None),
    ("http:\\\\evil.example", None), ("https:///path", None), ("https://[::1/x", None),
    ("https://sklep.example/\u202eexe.pdf", None), ("https://x.example/" + "a" * 2000, None), ("", None),
])
def test_only_absolute_http_links_with_a_host_are_kept(value: str, kept: str | None) -> None:
    assert http_link(value, 2000) == kept


# ---------------------------------------------------------- the frames' fields
def _open(**fields: Any) -> dict[str, Any]:
    return {"type": "open_ticket", "title": "Faktury korekta", "body": "Opis.", "client_id": "c1", **fields}


@pytest.mark.parametrize(("frame", "field"), [
    (_open(title="a\x00b"), "title"),
    (_open(title="a\x1bb"), "title"),
    (_open(body="a\x07"), "body"),
    (_open(client_id="c\x00"), "client_id"),
    (_open(client_id="c\n"), "client_id"),
    (_open(context={"browser": "Fire\x00fox"}), "context.browser"),
    (_open(context={"browser_version": "1\x7f"}), "context.browser_version"),
    (_open(context={"occurred_at": "\x00"}), "context.occurred_at"),
    (_open(context={"steps_tried": "a\x0bb"}), "context.steps_tried"),
    (_open(context={"expectations": "\ud800"}), "context.expectations"),
    (_open(context={"page_url": "https://x.example/\x00"}), "context.page_url"),
    (_open(attachments=["a\x00"]), "attachments"),
    (_open(attachments=[""]), "attachments"),
    (_open(attachments=["a" * 65]), "attachments"),
    (_open(attachments=[7]), "attachments"),
    ({"type": "send", "ticket": 1, "body": "x\x00"}, "body"),
    ({"type": "send", "ticket": 1, "body": "x\x1f"}, "body"),
    ({"type": "send", "ticket": 1, "body": "x", "client_id": "\x00"}, "client_id"),
    ({"type": "send", "ticket": 1, "body": "x", "client_id": ["c"]}, "client_id"),
    ({"type": "update_ticket", "ticket": 1, "department": "pay\x00"}, "department"),
    ({"type": "update_ticket", "ticket": 1, "department": "d" * 201}, "department"),
    ({"type": "update_ticket", "ticket": 1, "assignee": "a\x00"}, "assignee"),
    ({"type": "update_ticket", "ticket": 1, "assignee": "a\u200b"}, "assignee"),
    ({"type": "update_ticket", "ticket": 1, "assignee": 5}, "assignee"),
    ({"type": "list_tickets", "department": "x\x00"}, "department"),
    ({"type": "list_tickets", "department": ""}, "department"),
    ({"type": "list_tickets", "department": 3}, "department"),
    ({"type": "hello", "token": "t", "resume": {"1": 2**31}}, "resume"),
    ({"type": "hello", "token": "t", "resume": {"1": 2**40}}, "resume"),
])
def test_a_frame_field_with_a_refused_string_is_a_bad_request_naming_it(frame: dict[str, Any], field: str) -> None:
    with pytest.raises(BadRequest) as raised:
        frames.parse(frame, LIMITS)
    assert f"'{field}'" in raised.value.message


@pytest.mark.parametrize("frame", [
    _open(title="t" * 201), _open(body="b" * 10_001), _open(context={"page_url": "https://x.example/" + "a" * 2000}),
])
def test_too_long_is_too_large_before_anything_else(frame: dict[str, Any]) -> None:
    with pytest.raises(TooLarge):
        frames.parse(frame, LIMITS)


def test_text_fields_keep_line_breaks_and_tabs() -> None:
    parsed = frames.parse(_open(body="a\tb\r\nc\n", context={"steps_tried": "1.\tx\n2.\ty"}), LIMITS)
    assert isinstance(parsed, frames.OpenTicket)
    assert parsed.body == "a\tb\r\nc\n" and parsed.context == {"steps_tried": "1.\tx\n2.\ty"}


def test_context_keeps_http_links_and_drops_every_other_link() -> None:
    parsed = frames.parse(_open(context={"page_url": " https://sklep.example/koszyk ", "order_url": "javascript:x",
                                         "browser": "Firefox"}), LIMITS)
    assert isinstance(parsed, frames.OpenTicket)
    assert parsed.context == {"page_url": "https://sklep.example/koszyk", "browser": "Firefox"}


@pytest.mark.parametrize(("frame", "expected"), [
    ({"type": "hello", "token": "t", "resume": {"1": 2**31 - 1}}, frames.Hello("t", {1: 2**31 - 1})),
    ({"type": "send", "ticket": 1, "body": "x", "client_id": "k" * 200}, frames.Send(1, "x", "k" * 200)),
    ({"type": "update_ticket", "ticket": 1, "assignee": "agent 7"}, frames.UpdateTicket(1, {"assignee": "agent 7"})),
    ({"type": "list_tickets", "department": "*"}, frames.ListTickets(None, "*")),
])
def test_the_edges_of_what_is_accepted(frame: dict[str, Any], expected: frames.Request) -> None:
    assert frames.parse(frame, LIMITS) == expected


# ---------------------------------------------------------------- departments
@pytest.mark.parametrize(("value", "everything", "ok"), [
    ("payments", False, True), ("technical", True, True), (None, False, True), (None, True, True),
    ("*", True, True), ("*", False, False), ("marketing", False, False), ("marketing", True, False),
    ("Payments", False, False), ("payments ", False, False),
])
def test_only_configured_departments_are_accepted(value: str | None, everything: bool, ok: bool) -> None:
    departments = default_departments()
    if ok:
        check_department(value, departments, everything=everything)
        return
    with pytest.raises(BadRequest) as raised:
        check_department(value, departments, everything=everything)
    assert "'department'" in raised.value.message
    assert all(d.key in raised.value.message for d in departments)


# ------------------------------------------------- a ticket that is not there
def test_a_customer_hears_the_same_of_a_missing_ticket_as_of_another_shops() -> None:
    missing = unknown_ticket(CUSTOMER, 10**12)
    with pytest.raises(Forbidden) as foreign:
        check_access(CUSTOMER, "another-shop")
    assert isinstance(missing, Forbidden)
    assert (missing.code, missing.message) == (foreign.value.code, foreign.value.message) == ("forbidden", NOT_YOURS)


def test_an_agent_hears_that_a_ticket_does_not_exist() -> None:
    missing = unknown_ticket(AGENT, 42)
    assert isinstance(missing, NotFound) and "42" in missing.message
    check_access(AGENT, "any-shop")
