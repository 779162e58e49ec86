"""The ticket rules: who may see and change a ticket, what a new ticket gets, when a
message may be posted and what posting it does to the ticket.

- Access: an agent sees every ticket, a customer only its own shop's (PROTOCOL.md).
  A customer hears the same `forbidden` of a ticket that does not exist as of
  another shop's, so sequential ids tell it nothing about other shops; agents hear
  `not_found`.
- Departments: an agent files a ticket under a configured department only.
- Status transitions, as a table per role; `closed` is final and read-only.
- The post-admission rule (`admit_post`), the one both ways of storing a message
  (the group commit and the single transaction) apply: the ticket must exist, be
  the customer's own and not be closed; a customer's message outside working hours
  waits for the next opening (as long as its ticket does, at least) unless an agent
  is handling the ticket; a customer's reply to a ticket that waits on them or was
  resolved reopens it. An agent who answers a ticket held in the off-hours queue, or
  any ticket outside working hours, is handling it: the ticket leaves the queue, its
  held messages reach the agents, and until support opens the customer's replies
  flow live.
- Private notes: only an agent writes one; it is not an answer to the customer, so
  it neither takes a held ticket in hand nor counts as the first response.
- The ticket-change rule (`ticket_changes`): what an `update_ticket` changes and the
  system notes that record it. Which of those notes are private (`INTERNAL_FIELDS`):
  who handles a ticket, how urgent support judged it and which department has it
  are support's business; a status change concerns the customer and is public.
- A new ticket (`plan_ticket`): fair use, deadline and queue, department, the
  acknowledgment and, for a vague ticket, the request for missing facts.

Pure module: it must not import starlette, redis, sqlalchemy, asyncio or jwt, and it
reads no clock (`now` comes in).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.errors import BadRequest, ClosedTicket, Forbidden, NotFound, PomocError, Stale
from server.principal import Principal
from server.rules.conduct import Record, decide, is_downgrade
from server.rules.deadlines import FIRST_RESPONSE, Running, after_status
from server.rules.intake import Department, completeness, missing_facts_message, route
from server.rules.policy import SupportPolicy
from server.rules.records import SYSTEM, Author, NewTicket, Ticket

STATUSES = ("open", "waiting_on_customer", "resolved", "closed")
# The notes that record a change, in the ticket's language (its opener's).
STATUS_LABELS = {
    "pl": {"open": "otwarte", "waiting_on_customer": "czeka na klienta", "resolved": "rozwiązane",
           "closed": "zamknięte"},
    "en": {"open": "open", "waiting_on_customer": "waiting for the customer", "resolved": "resolved",
           "closed": "closed"},
}
FIELD_LABELS = {
    "pl": {"severity": "priorytet", "department": "dział", "assignee": "przypisane do"},
    "en": {"severity": "severity", "department": "department", "assignee": "assigned to"},
}
# A customer's reply to a ticket in one of these returns it to support.
REOPENED_BY_REPLY = frozenset({"waiting_on_customer", "resolved"})

# Who may move a ticket from a status to which: support sets any status of a ticket
# that is not closed (and reopens resolved ones); a customer may only mark its own
# ticket resolved. Closed is final for everyone.
AGENT_TRANSITIONS: Mapping[str, frozenset[str]] = {s: frozenset(STATUSES) for s in STATUSES if s != "closed"}
CUSTOMER_TRANSITIONS: Mapping[str, frozenset[str]] = {
    "open": frozenset({"resolved"}),
    "waiting_on_customer": frozenset({"resolved"}),
    "resolved": frozenset({"resolved"}),
}

# Until when a customer's message waits: (severity, now, plan) → the opening, or None.
Hold = Callable[[str, datetime, "str | None"], "datetime | None"]
# Until when support is closed for a plan at an instant (None while it is open).
ClosedUntil = Callable[[datetime, "str | None"], "datetime | None"]
# The next-response clock a customer's message starts: (severity, plan, at) → Running.
StartClock = Callable[[str, "str | None", datetime], Running]


# A customer's `send` with `internal: true`.
CUSTOMER_NOTE = "only support writes internal notes"
# The system notes of these fields' changes are private notes (support's business).
INTERNAL_FIELDS = frozenset({"severity", "department", "assignee"})


def note_is_internal(field: str) -> bool:
    """Is the system note recording a change of `field` for agents only?"""
    return field in INTERNAL_FIELDS


# The one answer a customer gets for a ticket it may not see, whether it exists or not.
NOT_YOURS = "this ticket is not one of your shop's tickets, or does not exist"


def check_access(principal: Principal, shop_id: str) -> None:
    if not principal.is_agent and principal.shop != shop_id:
        raise Forbidden(NOT_YOURS)


def unknown_ticket(principal: Principal, ticket_id: int) -> PomocError:
    """The error for a ticket that does not exist, as `principal` hears it."""
    if principal.is_agent:
        return NotFound(f"ticket {ticket_id} does not exist")
    return Forbidden(NOT_YOURS)


def check_department(value: str | None, departments: Sequence[Department], *, everything: bool = False) -> None:
    """A department an agent names must be configured (`None` clears it; with
    `everything`, `"*"` stands for all). Raises BadRequest listing the keys."""
    keys = [d.key for d in departments]
    if value is None or value in keys or (everything and value == "*"):
        return
    also = ', or "*" for all' if everything else ", or null"
    raise BadRequest(f"'department' must be one of {', '.join(keys)}{also}")


def may_move(principal: Principal, current: str, target: str) -> bool:
    table = AGENT_TRANSITIONS if principal.is_agent else CUSTOMER_TRANSITIONS
    return target in table.get(current, frozenset())


# ------------------------------------------------------------------- posting
@dataclass(frozen=True, slots=True)
class ThreadState:
    """What posting needs to know about a ticket (its row, locked for the post)."""

    shop_id: str
    status: str
    severity: str
    queued_until: datetime | None
    live_until: datetime | None = None
    plan: str | None = None  # the plan the ticket was opened under (its calendar)
    sla_due_at: datetime | None = None  # the deadline now in force (None: none runs)

    def queued_at(self, now: datetime) -> bool:
        """The ticket itself waits in the off-hours queue."""
        return self.queued_until is not None and self.queued_until > now


@dataclass(frozen=True, slots=True)
class Admission:
    queued_until: datetime | None  # the message waits for working hours until then
    reopens: bool  # the ticket returns to support (status open, silent-customer chain stops)
    # An agent takes the ticket in hand: out of the queue, its held messages released,
    # the customer's replies live until `live_until` (the next opening).
    takes_over: bool = False
    live_until: datetime | None = None
    ticket_queued: bool = False  # the ticket waits in the queue (agents looking at it see it live)


def admit_post(principal: Principal, ticket_id: int, state: ThreadState | None, now: datetime,
               hold: Hold, closed_until: ClosedUntil, internal: bool = False) -> Admission:
    """May `principal` post into the ticket now (`internal`: a private note), and what
    does the post do to it? Raises NotFound (agents), Forbidden or ClosedTicket."""
    if internal and not principal.is_agent:
        raise Forbidden(CUSTOMER_NOTE)
    if state is None:
        raise unknown_ticket(principal, ticket_id)
    check_access(principal, state.shop_id)
    if state.status == "closed":
        raise ClosedTicket("this ticket is closed; open a new ticket for a new problem")
    queued_ticket = state.queued_at(now)
    if internal:
        return Admission(None, reopens=False)  # a note to colleagues handles nothing
    if principal.is_agent:
        closed = closed_until(now, state.plan)
        # Answering a held ticket, or any ticket while support is closed, is handling it.
        extends = closed is not None and (state.live_until is None or state.live_until < closed)
        if queued_ticket or extends:
            return Admission(None, reopens=False, takes_over=True, live_until=closed or state.live_until)
        return Admission(None, reopens=False)
    reopens = state.status in REOPENED_BY_REPLY
    if state.live_until is not None and state.live_until > now and not queued_ticket:
        return Admission(None, reopens=reopens)  # an agent is handling it: live
    queued = hold(state.severity, now, state.plan)
    if queued_ticket:
        # A held ticket's follow-ups wait with it.
        assert state.queued_until is not None
        queued = max(queued or state.queued_until, state.queued_until)
    return Admission(queued, reopens=reopens, ticket_queued=queued_ticket)


def may_be_stale(seen_seq: int | None, last_seq: int) -> bool:
    """Whether an agent's send must look for other agents' replies it has not seen:
    only when the thread moved past what its console showed (`seen_seq`, None: no
    check). The common case — the console is up to date — costs nothing more than
    the ticket row the post reads anyway."""
    return seen_seq is not None and last_seq > seen_seq


def stale_reply(ticket_id: int, seqs: Sequence[int]) -> Stale:
    """The answer to a send made without having seen another agent's newer replies."""
    return Stale(f"another agent replied in ticket {ticket_id} since you last read it; send again with force to "
                 "send anyway", ticket=ticket_id, seqs=list(seqs))


# A customer's reply reopened the ticket: the changes to its row.
REOPEN_CHANGES: Mapping[str, Any] = {"status": "open", "waiting_since": None, "reminders_sent": 0,
                                     "resolved_at": None}


# ------------------------------------------------------------------ changing
@dataclass(frozen=True, slots=True)
class Change:
    fields: dict[str, Any]
    notes: tuple[str, ...]  # public: the shop sees them
    # Private notes (`INTERNAL_FIELDS`), stored after the public ones.
    internal_notes: tuple[str, ...] = ()
    # Raised to critical while held: out of the queue now, with its messages.
    release_held: bool = False
    # Durable notifications stored with the change: (event, dedup key, payload).
    events: tuple[tuple[str, str, dict[str, Any]], ...] = ()


def critical_event(ticket_id: int | None, title: str, shop: str | None, shop_name: str | None,
                   created_at: datetime, due: datetime, now: datetime) -> tuple[str, str, dict[str, Any]]:
    """`ticket.critical`: the on-call team is told at once (seed 003), once per ticket."""
    payload: dict[str, Any] = {"event": "ticket.critical", "title": title, "severity": "critical", "shop": shop,
                               "shop_name": shop_name, "created_at": created_at.isoformat(),
                               "sla_due_at": due.isoformat(), "step": FIRST_RESPONSE, "at": now.isoformat()}
    if ticket_id is not None:
        payload["ticket_id"] = ticket_id
    return "ticket.critical", "ticket.critical", payload


def ticket_changes(principal: Principal, ticket: Ticket, requested: Mapping[str, str | None], now: datetime,
                   policy: SupportPolicy) -> Change:
    """What an update_ticket request changes, and the system notes that record it.
    Raises ClosedTicket or Forbidden."""
    if ticket.status == "closed":
        raise ClosedTicket("this ticket is closed and read-only; open a new ticket for a new problem")
    if not principal.is_agent and set(requested) != {"status"}:
        raise Forbidden("a customer may only mark its ticket resolved")
    changes: dict[str, Any] = {}
    notes: list[str] = []
    internal: list[str] = []
    status = requested.get("status")
    if status is not None and not may_move(principal, ticket.status, status):
        raise Forbidden("a customer may only mark its ticket resolved")
    if status is not None and status != ticket.status:
        changes["status"] = status
        if status == "resolved":
            changes["resolved_at"] = now
            if ticket.resolution_s is None:  # the reports time the first resolution
                changes["resolution_s"] = policy.working_seconds(ticket.severity, ticket.plan, ticket.created_at,
                                                                 now)
        elif status == "closed":
            changes["closed_at"] = now
        else:
            changes["resolved_at"] = None
        # The silent-customer chain runs only while waiting on the customer.
        changes["waiting_since"] = now if status == "waiting_on_customer" else None
        changes["reminders_sent"] = 0
        stopped = after_status(status)
        if stopped is not None and ticket.sla_due_at is not None:
            changes.update(stopped.columns())  # nothing is due from support while it waits
        labels = STATUS_LABELS.get(ticket.lang, STATUS_LABELS["pl"])
        notes.append(f"{principal.name}: status {labels[ticket.status]} → {labels[status]}.")
    for name in ("severity", "department", "assignee"):
        if name in requested and requested[name] != getattr(ticket, name):
            changes[name] = requested[name]
            field = FIELD_LABELS.get(ticket.lang, FIELD_LABELS["pl"])[name]
            note = f"{principal.name}: {field} → {requested[name] or '—'}."
            (internal if note_is_internal(name) else notes).append(note)
    release = False
    events: tuple[tuple[str, str, dict[str, Any]], ...] = ()
    if "severity" in changes:
        changes["severity_reviewed"] = True
        if ticket.deprioritized and not is_downgrade(ticket.claimed_severity, changes["severity"]):
            changes["deprioritized"] = False  # an agent confirmed the claim
        # The reaction deadlines follow the severity, each counted from when its step
        # started: the first reaction's from when the ticket came in.
        first = policy.first_response(changes["severity"], ticket.plan, ticket.created_at)
        changes["first_response_due_at"] = first.due_at
        status_after = changes.get("status", ticket.status)
        running: Running | None = None
        if status_after == "open" and ticket.first_response_at is None:
            running = first
        elif ticket.sla_due_at is not None and status_after == "open":
            running = policy.next_response(changes["severity"], ticket.plan, ticket.sla_started_at or ticket.created_at)
        if running is not None:
            changes.update(running.columns())
        due = running.due_at if running is not None else first.due_at
        assert due is not None
        if changes["severity"] == "critical":
            # Seed 004: critical tickets are handled at once, weekends and holidays included.
            if ticket.queued_until is not None:
                changes["queued_until"] = None
                changes["held_s"] = int((now - ticket.created_at).total_seconds())  # held until now
                release = True
            events = (critical_event(ticket.id, ticket.title, ticket.shop_id, ticket.shop_name, ticket.created_at,
                                     due, now),)
    return Change(changes, tuple(notes), internal_notes=tuple(internal), release_held=release, events=events)


# ------------------------------------------------------------------- opening
@dataclass(frozen=True, slots=True)
class Request:
    """A customer's open_ticket, as the rules need it."""

    title: str
    body: str
    severity: str
    context: Mapping[str, str]
    client_id: str
    attachments: int = 0


def plan_ticket(principal: Principal, request: Request, record: Record, agents_online: int, now: datetime,
                policy: SupportPolicy, departments: Sequence[Department], default_department: str
                ) -> tuple[NewTicket, list[tuple[Author, str]]]:
    """A ticket with its deadline and queue state, and its first messages: the
    customer's description, then the acknowledgment every ticket gets at once (and,
    for a ticket too vague to act on, a request for exactly what is missing)."""
    lang = principal.lang
    conduct = decide(request.severity, record, lang)
    severity = conduct.severity
    intake = policy.intake(severity, now, agents_online, lang, principal.plan)
    events: tuple[tuple[str, str, dict[str, Any]], ...] = ()
    if severity == "critical":
        events = (critical_event(None, request.title, principal.shop, principal.shop_name, now, intake.sla_due_at,
                                 now),)
    department = route(request.title, request.body, departments, default_department)
    facts = completeness(request.title, request.body, request.context, request.attachments, severity=severity)
    new = NewTicket(title=request.title, body=request.body, severity=severity,
                    context={**request.context, "completeness": facts.public()}, client_id=request.client_id,
                    sla_due_at=intake.sla_due_at, queued_until=intake.queued_until,
                    sla_warning_at=intake.warning_at, events=events, department=department,
                    claimed_severity=conduct.claimed, deprioritized=conduct.deprioritized, lang=lang,
                    plan=policy.plan(principal.plan).name, rank=intake.rank)
    acknowledgment = intake.acknowledgment if conduct.note is None else f"{intake.acknowledgment} {conduct.note}"
    first = [(Author.of(principal), request.body), (SYSTEM, acknowledgment)]
    asking = missing_facts_message(facts, lang)
    if asking is not None:
        first.append((SYSTEM, asking))
    return new, first
