"""The customer's answer to "was the problem solved?" (seed 002: a ticket is closed
when consultant and customer agree it is solved).

When support marks a ticket resolved, the widget asks its shop "Czy problem został
rozwiązany?". The answer is a `rate` frame:
- yes (`score` 1–5, optional `comment`): the rating is stored and the ticket closes;
- no (`solved: false`, optional `comment`): the ticket is reopened and a new reaction
  deadline runs, exactly as when a customer writes back to a resolved ticket (the
  next-response clock of `server.rules.deadlines`, by its severity and plan);
- no answer: nothing here; the existing chain closes resolved tickets after
  `POMOC_CLOSE_RESOLVED` (server.rules.retention).

Only the shop's own users answer, and only while the ticket is resolved: an agent is
`forbidden`, an open or waiting ticket a `conflict`, a closed one `closed_ticket`.

Pure module: it must not import starlette, redis, sqlalchemy, asyncio or jwt, and it
reads no clock (`now` comes in).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.errors import ClosedTicket, Conflict, Forbidden
from server.principal import Principal
from server.rules.policy import SupportPolicy
from server.rules.records import Ticket
from server.rules.tickets import REOPEN_CHANGES, check_access

SCORES = range(1, 6)
MAX_COMMENT_CHARS = 1000
# A rating of 4 or 5 is a satisfied customer (the reports' "% 4–5").
SATISFIED = 4

QUESTION = {"pl": "Czy problem został rozwiązany?", "en": "Has the problem been solved?"}
RATED_TEXT = {
    "pl": "Klient potwierdził, że problem został rozwiązany (ocena {score}/5). Zgłoszenie zamknięte.",
    "en": "The customer confirmed the problem is solved (rating {score}/5). The ticket is closed.",
}
NOT_SOLVED_TEXT = {
    "pl": "Klient odpowiedział, że problem nie został rozwiązany — zgłoszenie wraca do obsługi.",
    "en": "The customer says the problem is not solved — the ticket is back with support.",
}


@dataclass(frozen=True, slots=True)
class Answer:
    """A validated `rate` frame: `solved` with a `score`, or not solved (no score)."""

    solved: bool
    score: int | None = None
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the answer does: the ticket row's changes and the public system note."""

    fields: dict[str, Any]
    note: str


def answer_outcome(principal: Principal, ticket: Ticket, answer: Answer, now: datetime,
                   policy: SupportPolicy) -> Outcome:
    """The changes a customer's answer makes to its resolved ticket. Raises Forbidden
    (an agent, or another shop's ticket), ClosedTicket or Conflict (not resolved)."""
    if principal.is_agent:
        raise Forbidden("only the shop's users answer whether their problem is solved")
    check_access(principal, ticket.shop_id)
    if ticket.status == "closed":
        raise ClosedTicket("this ticket is closed; open a new ticket for a new problem")
    if ticket.status != "resolved":
        raise Conflict("this ticket is not resolved: there is nothing to rate yet")
    lang = ticket.lang if ticket.lang in RATED_TEXT else "pl"
    if answer.solved:
        return Outcome({"status": "closed", "closed_at": now, "waiting_since": None, "reminders_sent": 0},
                       RATED_TEXT[lang].format(score=answer.score))
    # As a customer's reply to a resolved ticket: back to support with a new deadline.
    clock = policy.next_response(ticket.severity, ticket.plan, now)
    return Outcome({**REOPEN_CHANGES, **clock.columns()}, NOT_SOLVED_TEXT[lang])
