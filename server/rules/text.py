"""What text Pomoc takes from outside: free text, identifiers and links.

Everything a client sends that reaches the database or Redis is one of three kinds,
and each has one rule here, so the frame parser and the HTTP endpoints refuse the
same things the same way (PROTOCOL.md, "Text"):

- **free text** (titles, bodies, context fields, a help query): any Unicode except
  the C0 control characters other than tab, line feed and carriage return, DEL, and
  unpaired surrogates. NUL is the one PostgreSQL refuses outright; the rest have no
  place in a message and would only reach a screen or a log as something else.
- **identifiers** (`client_id`, attachment ids, department keys, assignees): 1 to
  `max_chars` printable characters (`str.isprintable`: no control, format,
  separator other than the space, surrogate, private-use or unassigned code point).
- **links** a customer supplies (`context.page_url`, `context.order_url`): kept
  only when they are absolute `http://` or `https://` URLs with a host, so whatever
  shows one as a link shows a web page, never a `javascript:` or `data:` URL.

The functions say what is wrong (or return the cleaned value); the caller words the
error for its field. Pure module: standard library only; it must not import
starlette, redis, sqlalchemy, asyncio or jwt.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# Refused in free text: C0 controls but TAB, LF and CR; DEL; lone surrogates.
_REFUSED_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_HTTP = re.compile(r"https?://", re.IGNORECASE)


def codepoint(char: str) -> str:
    """A character as people look it up: U+0000."""
    return f"U+{ord(char):04X}"


def text_problem(value: str) -> str | None:
    """Why `value` is not acceptable free text, or None when it is."""
    found = _REFUSED_IN_TEXT.search(value)
    if found is None:
        return None
    return f"must not contain control characters other than tab and line breaks (found {codepoint(found.group())})"


def identifier_problem(value: str, max_chars: int) -> str | None:
    """Why `value` is not an acceptable identifier, or None when it is."""
    if not value or len(value) > max_chars:
        return f"must be a string of 1 to {max_chars} characters"
    if not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        return f"must be printable characters only (found {codepoint(bad)})"
    return None


def http_link(value: str, max_chars: int) -> str | None:
    """`value` without surrounding spaces if it is an absolute http(s) URL with a
    host, made of printable characters and at most `max_chars` long; else None."""
    link = value.strip()
    if len(link) > max_chars or not link.isprintable() or not _HTTP.match(link):
        return None
    try:
        host = urlsplit(link).hostname
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return None
    return link if host else None
