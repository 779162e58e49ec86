"""Client frames: validation of each request type into a typed value (sans-I/O).

`parse(frame, limits)` checks one decoded frame against PROTOCOL.md and returns a
request dataclass, or raises `BadRequest` / `TooLarge` naming the field. Every
string that may reach the database or Redis is checked here by the rules of
`server.rules.text` (free text, identifiers, links), so nothing the database would
refuse gets past the edge to fail a group commit. Nothing
here touches sockets, the database or Redis, so the tests just feed dicts: it must
not import starlette, redis, sqlalchemy, asyncio or jwt.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from server.errors import BadRequest, TooLarge
from server.rules.satisfaction import MAX_COMMENT_CHARS, SCORES, Answer
from server.rules.searchtext import Query, parse_query, query_problem
from server.rules.text import http_link, identifier_problem, text_problem

SEVERITIES = ("critical", "major", "minor", "question", "suggestion")
STATUSES = ("open", "waiting_on_customer", "resolved", "closed")
CONTEXT_FIELDS = ("browser", "browser_version", "page_url", "occurred_at", "steps_tried", "expectations",
                  "order_url")
# Context fields that are links: kept only as absolute http(s) URLs (dropped otherwise).
LINK_FIELDS = frozenset({"page_url", "order_url"})
MAX_ID_CHARS = 200
MAX_ATTACHMENT_ID_CHARS = 64
MAX_SEQ = 2**31 - 1  # messages.seq is a 32-bit integer in the database
MAX_CONTEXT_CHARS = 2000
MAX_ATTACHMENTS = 10
SEARCH_LIMIT_MAX = 50
SEARCH_LIMIT_DEFAULT = 20


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_chars: int = 10_000
    max_title_chars: int = 200
    history_page_max: int = 200
    list_page_max: int = 500


@dataclass(frozen=True, slots=True)
class Hello:
    token: object
    resume: dict[int, int] = field(default_factory=dict)
    feed: bool = True
    lang: str | None = None  # an extension: the client's language for system messages


@dataclass(frozen=True, slots=True)
class Auth:
    """An extension: a fresh token for the connection's principal, said after the welcome."""

    token: object


@dataclass(frozen=True, slots=True)
class OpenTicket:
    title: str
    body: str
    severity: str
    context: dict[str, str]
    client_id: str
    attachments: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Send:
    ticket: int
    body: str
    client_id: str
    attachments: tuple[str, ...] = ()
    internal: bool = False  # an extension: an agent's private note (agents only see it)
    # Extensions (agents): the last seq the console has shown, and a send that goes
    # out even though another agent has replied since.
    seen_seq: int | None = None
    force: bool = False


@dataclass(frozen=True, slots=True)
class Read:
    ticket: int
    seq: int


@dataclass(frozen=True, slots=True)
class Typing:
    ticket: int


@dataclass(frozen=True, slots=True)
class History:
    ticket: int
    before_seq: int | None
    after_seq: int | None
    limit: int


@dataclass(frozen=True, slots=True)
class ListTickets:
    status: str | None
    department: str | None = None
    limit: int | None = None  # an extension: how many (the inbox pages; `more` says if there are others)
    shop: str | None = None  # an extension (agents): one shop's tickets, newest first (the context panel)
    # An extension (agents): the tickets assigned to this agent id ("me": the asker), the "Moje" tab.
    assignee: str | None = None


@dataclass(frozen=True, slots=True)
class Follow:
    ticket: int


@dataclass(frozen=True, slots=True)
class Unfollow:
    """An extension: the console no longer shows this ticket."""

    ticket: int


@dataclass(frozen=True, slots=True)
class UpdateTicket:
    ticket: int
    changes: dict[str, str | None]


@dataclass(frozen=True, slots=True)
class Presence:
    status: str


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Search:
    """An extension: tickets and messages holding every word of `q` (folded terms in `query`)."""

    q: str
    query: Query
    shop: str | None = None
    status: str | None = None
    department: str | None = None
    limit: int = SEARCH_LIMIT_DEFAULT


@dataclass(frozen=True, slots=True)
class Rate:
    """An extension: a customer's answer to "was the problem solved?" on a resolved ticket."""

    ticket: int
    answer: Answer


Request = (Hello | Auth | OpenTicket | Send | Read | Typing | History | ListTickets | Follow | Unfollow | UpdateTicket
           | Presence | Ping | Search | Rate)


# ------------------------------------------------------------------ fields
def ticket_id(value: object, name: str = "ticket") -> int:
    if isinstance(value, bool):
        raise BadRequest(f"'{name}' must be a ticket id (a positive integer)")
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        value = int(value)
    if not isinstance(value, int) or value <= 0 or value >= 2**63:
        raise BadRequest(f"'{name}' must be a ticket id (a positive integer)")
    return value


def _int(frame: Mapping[str, Any], name: str, *, required: bool, minimum: int = 0) -> int | None:
    value = frame.get(name)
    if value is None:
        if required:
            raise BadRequest(f"'{name}' is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"'{name}' must be an integer")
    if value < minimum or value > MAX_SEQ:
        raise BadRequest(f"'{name}' must be between {minimum} and {MAX_SEQ}")
    return value


def _free_text(value: str, name: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise BadRequest(f"'{name}' {problem}")
    return value


def _identifier(value: object, name: str, max_chars: int = MAX_ID_CHARS) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"'{name}' must be a string of 1 to {max_chars} characters")
    problem = identifier_problem(value, max_chars)
    if problem is not None:
        raise BadRequest(f"'{name}' {problem}")
    return value


def _text(frame: Mapping[str, Any], name: str, *, max_chars: int, required: bool = True) -> str:
    value = frame.get(name)
    if value is None:
        if required:
            raise BadRequest(f"'{name}' is required")
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"'{name}' must be a string")
    if len(value) > max_chars:
        raise TooLarge(f"'{name}' is longer than {max_chars} characters")
    _free_text(value, name)
    if required and not value.strip():
        raise BadRequest(f"'{name}' must not be empty")
    return value


def _client_id(frame: Mapping[str, Any]) -> str:
    value = frame.get("client_id")
    if value is None:
        # Without a client id a retry cannot be recognised; the send still works.
        return uuid.uuid4().hex
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return _identifier(value, "client_id")


def _attachments(frame: Mapping[str, Any]) -> tuple[str, ...]:
    value = frame.get("attachments")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise BadRequest("'attachments' must be a list of attachment ids")
    if len(value) > MAX_ATTACHMENTS:
        raise BadRequest(f"at most {MAX_ATTACHMENTS} attachments per message")
    return tuple(_identifier(v, "attachments", MAX_ATTACHMENT_ID_CHARS) for v in value)


def _ticket(frame: Mapping[str, Any]) -> int:
    if "ticket" not in frame:
        raise BadRequest("'ticket' is required")
    return ticket_id(frame["ticket"])


# ----------------------------------------------------------------- parsers
def _hello(frame: Mapping[str, Any], limits: Limits) -> Hello:
    resume_raw = frame.get("resume")
    resume: dict[int, int] = {}
    if resume_raw is not None:
        if not isinstance(resume_raw, dict):
            raise BadRequest("'resume' must be an object {ticket_id: last_seq}")
        if len(resume_raw) > 1000:
            raise BadRequest("'resume' names more than 1000 tickets")
        for key, seq in resume_raw.items():
            if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
                raise BadRequest(f"'resume' values must be sequence numbers (integers from 0 to {MAX_SEQ})")
            resume[ticket_id(key, "resume")] = seq
    feed = frame.get("feed", True)
    if not isinstance(feed, bool):
        raise BadRequest("'feed' must be true or false")
    lang = frame.get("lang")
    if lang is not None and lang not in ("pl", "en"):
        raise BadRequest("'lang' must be 'pl' or 'en'")
    return Hello(token=frame.get("token"), resume=resume, feed=feed, lang=lang)


def _open_ticket(frame: Mapping[str, Any], limits: Limits) -> OpenTicket:
    title = _text(frame, "title", max_chars=limits.max_title_chars).strip()
    body = _text(frame, "body", max_chars=limits.max_body_chars)
    severity = frame.get("severity", "question")
    if severity not in SEVERITIES:
        raise BadRequest(f"'severity' must be one of {', '.join(SEVERITIES)}")
    raw_context = frame.get("context") or {}
    if not isinstance(raw_context, dict):
        raise BadRequest("'context' must be an object")
    context: dict[str, str] = {}
    for key, value in raw_context.items():
        if key not in CONTEXT_FIELDS or value is None:
            continue  # unknown context fields are extensions; dropped, not stored blindly
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise BadRequest(f"'context.{key}' must be a string")
        if len(value) > MAX_CONTEXT_CHARS:
            raise TooLarge(f"'context.{key}' is longer than {MAX_CONTEXT_CHARS} characters")
        _free_text(value, f"context.{key}")
        if key in LINK_FIELDS:
            # A link the console may show as one: a web page, never javascript: or data:.
            link = http_link(value, MAX_CONTEXT_CHARS)
            if link is None:
                continue
            value = link
        context[key] = value
    return OpenTicket(title=title, body=body, severity=str(severity), context=context,
                      client_id=_client_id(frame), attachments=_attachments(frame))


def _send(frame: Mapping[str, Any], limits: Limits) -> Send:
    attachments = _attachments(frame)
    # A message may be just files; without files it needs words.
    body = _text(frame, "body", max_chars=limits.max_body_chars, required=not attachments)
    internal = frame.get("internal", False)
    if not isinstance(internal, bool):
        raise BadRequest("'internal' must be true or false")
    force = frame.get("force", False)
    if not isinstance(force, bool):
        raise BadRequest("'force' must be true or false")
    return Send(ticket=_ticket(frame), body=body, client_id=_client_id(frame), attachments=attachments,
                internal=internal, seen_seq=_int(frame, "seen_seq", required=False), force=force)


def _read(frame: Mapping[str, Any], limits: Limits) -> Read:
    seq = _int(frame, "seq", required=True)
    return Read(ticket=_ticket(frame), seq=seq or 0)


def _history(frame: Mapping[str, Any], limits: Limits) -> History:
    before = _int(frame, "before_seq", required=False, minimum=1)
    after = _int(frame, "after_seq", required=False)
    if before is not None and after is not None:
        raise BadRequest("give 'before_seq' or 'after_seq', not both")
    limit = _int(frame, "limit", required=False, minimum=1)
    if limit is not None and limit > limits.history_page_max:
        raise BadRequest(f"'limit' must be at most {limits.history_page_max}")
    return History(ticket=_ticket(frame), before_seq=before, after_seq=after, limit=limit or 50)


def _list_tickets(frame: Mapping[str, Any], limits: Limits) -> ListTickets:
    status = frame.get("status")
    if status is not None and status not in STATUSES and status != "queued":
        raise BadRequest(f"'status' must be one of {', '.join(STATUSES)}, queued")
    department = frame.get("department")
    if department is not None:
        # Which keys exist is the configuration's (the use case checks); this is the shape.
        _identifier(department, "department")
    limit = _int(frame, "limit", required=False, minimum=1)
    if limit is not None and limit > limits.list_page_max:
        raise BadRequest(f"'limit' must be at most {limits.list_page_max}")
    shop = frame.get("shop")
    if shop is not None:
        _identifier(shop, "shop")
    assignee = frame.get("assignee")
    if assignee is not None:
        _identifier(assignee, "assignee")
    return ListTickets(status=status, department=department, limit=limit, shop=shop, assignee=assignee)


def _update_ticket(frame: Mapping[str, Any], limits: Limits) -> UpdateTicket:
    changes: dict[str, str | None] = {}
    if "status" in frame:
        if frame["status"] not in STATUSES:
            raise BadRequest(f"'status' must be one of {', '.join(STATUSES)}")
        changes["status"] = frame["status"]
    if "severity" in frame:
        if frame["severity"] not in SEVERITIES:
            raise BadRequest(f"'severity' must be one of {', '.join(SEVERITIES)}")
        changes["severity"] = frame["severity"]
    for name in ("department", "assignee"):
        if name in frame:
            value = frame[name]
            if value is not None:
                if not isinstance(value, str) or not value.strip():
                    raise BadRequest(f"'{name}' must be a non-empty string or null")
                _identifier(value, name)
            changes[name] = value
    if not changes:
        raise BadRequest("update_ticket needs at least one of status, severity, department, assignee")
    return UpdateTicket(ticket=_ticket(frame), changes=changes)


def _presence(frame: Mapping[str, Any], limits: Limits) -> Presence:
    status = frame.get("status")
    if status not in ("online", "away"):
        raise BadRequest("'status' must be 'online' or 'away'")
    return Presence(status=str(status))


def _search(frame: Mapping[str, Any], limits: Limits) -> Search:
    q = frame.get("q")
    if q is None:
        raise BadRequest("'q' is required")
    if not isinstance(q, str):
        raise BadRequest("'q' must be a string")
    problem = query_problem(q)
    if problem is not None:
        raise BadRequest(f"'q' {problem}")
    _free_text(q, "q")
    shop = frame.get("shop")
    if shop is not None:
        _identifier(shop, "shop")
    status = frame.get("status")
    if status is not None and status not in STATUSES:
        raise BadRequest(f"'status' must be one of {', '.join(STATUSES)}")
    department = frame.get("department")
    if department is not None:
        _identifier(department, "department")  # which keys exist is the configuration's (the use case checks)
    limit = _int(frame, "limit", required=False, minimum=1)
    if limit is not None and limit > SEARCH_LIMIT_MAX:
        raise BadRequest(f"'limit' must be between 1 and {SEARCH_LIMIT_MAX}")
    return Search(q=q, query=parse_query(q), shop=shop, status=status, department=department,
                  limit=limit or SEARCH_LIMIT_DEFAULT)


def _rate(frame: Mapping[str, Any], limits: Limits) -> Rate:
    solved = frame.get("solved", True)
    if not isinstance(solved, bool):
        raise BadRequest("'solved' must be true or false")
    score = frame.get("score")
    if solved:
        if score is None:
            raise BadRequest("'score' is required (an integer 1–5) unless 'solved' is false")
        if isinstance(score, bool) or not isinstance(score, int) or score not in SCORES:
            raise BadRequest("'score' must be an integer from 1 to 5")
    elif score is not None:
        raise BadRequest("'score' must be left out when 'solved' is false")
    comment = frame.get("comment")
    if comment is not None:
        if not isinstance(comment, str):
            raise BadRequest("'comment' must be a string")
        if len(comment) > MAX_COMMENT_CHARS:
            raise BadRequest(f"'comment' must be at most {MAX_COMMENT_CHARS} characters")
        _free_text(comment, "comment")
        comment = comment.strip() or None
    return Rate(ticket=_ticket(frame), answer=Answer(solved=solved, score=score if solved else None,
                                                     comment=comment))


PARSERS: dict[str, Callable[[Mapping[str, Any], Limits], Request]] = {
    "hello": _hello,
    "auth": lambda f, lim: Auth(token=f.get("token")),
    "open_ticket": _open_ticket,
    "send": _send,
    "read": _read,
    "typing": lambda f, lim: Typing(ticket=_ticket(f)),
    "history": _history,
    "list_tickets": _list_tickets,
    "follow": lambda f, lim: Follow(ticket=_ticket(f)),
    "unfollow": lambda f, lim: Unfollow(ticket=_ticket(f)),
    "update_ticket": _update_ticket,
    "presence": _presence,
    "ping": lambda f, lim: Ping(),
    "search": _search,
    "rate": _rate,
}


def parse(frame: Mapping[str, Any], limits: Limits) -> Request:
    kind = frame.get("type")
    if not isinstance(kind, str):
        raise BadRequest("a frame needs a string 'type'")
    parser = PARSERS.get(kind)
    if parser is None:
        raise BadRequest(f"unknown frame type {kind[:40]!r}")
    return parser(frame, limits)


def valid_ref(frame: Mapping[str, Any]) -> object:
    """The frame's `ref` if it is one a reply may carry (a short string or an int)."""
    ref = frame.get("ref")
    if isinstance(ref, bool):
        return None
    if isinstance(ref, int) and -(2**53) < ref < 2**53:
        return ref
    if isinstance(ref, str) and len(ref) <= MAX_ID_CHARS:
        return ref
    return None
