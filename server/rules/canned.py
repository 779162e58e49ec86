"""Canned replies: what a reply may hold, and how one is filled in for a ticket.

A canned reply is a title, a shortcut the composer finds it by (`/prz` finds
`przelewy24`), a body with placeholders and links to help-centre articles. The
placeholders are a closed set (`PLACEHOLDERS`): a body naming any other `{word}` is
refused when it is saved, so what an agent inserts never shows a customer a raw
`{imię}`. When a value is missing at fill time (a customer who never gave a name) the
placeholder takes its fallback (`FALLBACKS`); the name's fallback is nothing at all,
and the space before it goes too, so "Dzień dobry {imie}," reads "Dzień dobry,".

Limits keep a filled reply inside a message's limit (10,000 characters): a body of at
most `MAX_BODY_CHARS` with at most `MAX_PLACEHOLDERS` placeholders of values of at most
200 characters (a shop's and a customer's names, a ticket's title), and at most
`MAX_ARTICLES` links.

Pure module: standard library only; it must not import starlette, redis,
sqlalchemy, asyncio or jwt.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from server.rules.text import text_problem

PLACEHOLDERS: Mapping[str, str] = {
    "imie": "imię klienta",
    "sklep": "nazwa sklepu",
    "zgloszenie": "numer i tytuł zgłoszenia",
}
FALLBACKS: Mapping[str, str] = {
    "imie": "",
    "sklep": "Twój sklep",
    "zgloszenie": "Twoje zgłoszenie",
}
MAX_TITLE_CHARS = 120
MAX_BODY_CHARS = 4000
MAX_PLACEHOLDERS = 20
MAX_ARTICLES = 5
SHORTCUT_MIN, SHORTCUT_MAX = 2, 32
# What follows a `/` in the composer: lower-case ASCII letters, digits and dashes,
# starting with a letter — quick to type, and never confused with a path or a date.
_SHORTCUT = re.compile(r"[a-z][a-z0-9_-]*")
# Anything that looks like a placeholder: a word in braces (Unicode letters too, so a
# mistyped `{imię}` is caught rather than sent as it is).
_PLACEHOLDER = re.compile(r"\{(\w{1,40})\}")


def shortcut_problem(value: str) -> str | None:
    """Why `value` is not an acceptable shortcut, or None."""
    if not SHORTCUT_MIN <= len(value) <= SHORTCUT_MAX:
        return f"must be {SHORTCUT_MIN} to {SHORTCUT_MAX} characters"
    if _SHORTCUT.fullmatch(value) is None:
        return "must be lower-case letters a-z, digits, '-' or '_', starting with a letter (e.g. przelewy24)"
    return None


def title_problem(value: str) -> str | None:
    if not value.strip():
        return "must not be empty"
    if len(value) > MAX_TITLE_CHARS:
        return f"must be at most {MAX_TITLE_CHARS} characters"
    if "\n" in value or "\r" in value:
        return "must be one line"
    return text_problem(value)


def body_problem(value: str) -> str | None:
    """Why `value` is not an acceptable body: empty, too long, a refused character, a
    placeholder that is not one of `PLACEHOLDERS`, or too many of them."""
    if not value.strip():
        return "must not be empty"
    if len(value) > MAX_BODY_CHARS:
        return f"must be at most {MAX_BODY_CHARS} characters"
    problem = text_problem(value)
    if problem is not None:
        return problem
    found = placeholders_in(value)
    unknown = sorted({name for name in found if name not in PLACEHOLDERS})
    if unknown:
        known = ", ".join("{" + name + "}" for name in PLACEHOLDERS)
        return (f"names an unknown placeholder {', '.join('{' + n + '}' for n in unknown)}; "
                f"the placeholders are {known}")
    if len(found) > MAX_PLACEHOLDERS:
        return f"may hold at most {MAX_PLACEHOLDERS} placeholders"
    return None


def placeholders_in(body: str) -> list[str]:
    """Every placeholder-looking `{word}` in `body`, in order, repeats included."""
    return _PLACEHOLDER.findall(body)


@dataclass(frozen=True, slots=True)
class TicketFacts:
    """What the placeholders are filled from: the ticket's number and title, its shop's
    name and the name and id of the customer who opened it (None when not known)."""

    ticket_id: int
    title: str
    department: str | None
    shop_name: str | None
    customer_name: str | None
    customer_id: str | None = None


def values_for(facts: TicketFacts) -> dict[str, str | None]:
    """The placeholders' values for a ticket. `{imie}` is the first word of the
    customer's name: a greeting says "Dzień dobry Anno"-style first names, not
    "Anna Kowalska". A name that is only the customer's id is no name: tokens
    without a `name` claim name the customer by its `sub`."""
    name = (facts.customer_name or "").strip()
    if facts.customer_id is not None and name == facts.customer_id.strip():
        name = ""
    return {
        "imie": name.split()[0] if name else None,
        "sklep": (facts.shop_name or "").strip() or None,
        "zgloszenie": f"#{facts.ticket_id} „{facts.title.strip()}”" if facts.title.strip() else f"#{facts.ticket_id}",
    }


@dataclass(frozen=True, slots=True)
class Link:
    title: str
    url: str


def fill(body: str, values: Mapping[str, str | None], links: Sequence[Link] = ()) -> str:
    """`body` with each known placeholder replaced by its value, or by its fallback
    when the value is missing or blank, and the links listed after it. Unknown
    placeholders (refused at save time) are left as they are."""
    for name in PLACEHOLDERS:
        if (values.get(name) or "").strip() or FALLBACKS[name]:
            continue
        # A value that is missing with nothing to stand in for it takes its spacing
        # along: "Dzień dobry {imie}," → "Dzień dobry,"; "Witaj {imie} i…" → "Witaj i…";
        # "{imie}, dzień dobry" at a line's start → "dzień dobry".
        token = r"\{" + name + r"\}"
        body = re.sub(r"^[ \t]*" + token + r"[,;:]?[ \t]*", "", body, flags=re.MULTILINE)
        body = re.sub(r"[ \t]*" + token + r"(?=[ \t]*(?:[,.;:!?)]|$))", "", body, flags=re.MULTILINE)
        body = re.sub(token + r"[ \t]*", "", body)

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in PLACEHOLDERS:
            return match.group(0)
        given = (values.get(name) or "").strip()
        return given or FALLBACKS[name]

    text = _PLACEHOLDER.sub(value, body)
    if links:
        lines = "\n".join(f"• {link.title}: {link.url}" for link in links)
        text = f"{text.rstrip()}\n\nWięcej w Centrum Pomocy:\n{lines}"
    return text
