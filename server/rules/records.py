"""The records of a support conversation: authors, messages, tickets.

Plain frozen dataclasses: the store reads and writes them, the rules decide on them,
the protocol's views turn them into frames (`server.protocol.views`: a record never
knows how it is shown, so a field added here reaches no client until a view lists
it). Pure module: standard library and the kernel only; it must not import starlette,
redis, sqlalchemy, asyncio or jwt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.principal import Principal, agent_key, customer_key


@dataclass(frozen=True, slots=True)
class Author:
    kind: str  # "customer" | "agent" | "system"
    id: str
    name: str

    @classmethod
    def of(cls, principal: Principal) -> Author:
        return cls(principal.role.value, principal.id, principal.name)

    def key(self, shop_id: str) -> str:
        """The reader key of this author (see Principal.key)."""
        if self.kind == "agent":
            return agent_key(self.id)
        return customer_key(shop_id, self.id) if self.kind == "customer" else "system"


SYSTEM = Author("system", "pomoc", "Pomoc")


@dataclass(frozen=True, slots=True)
class Message:
    ticket: int
    seq: int
    id: int
    author: Author
    body: str
    created_at: datetime
    client_id: str
    queued_until: datetime | None = None
    attachments: tuple[dict[str, Any], ...] = ()
    # A private note: for agents only (`visible_to`).
    internal: bool = False

    def visible_to(self, principal: Principal) -> bool:
        """May this reader see the message? A private note is support's alone."""
        return principal.is_agent or not self.internal

    def held_at(self, now: datetime) -> bool:
        """Still waiting for working hours at `now` (agents do not see it yet)."""
        return self.queued_until is not None and self.queued_until > now


@dataclass(frozen=True, slots=True)
class Ticket:
    id: int
    shop_id: str
    created_by: str
    title: str
    status: str
    severity: str
    department: str | None
    assignee: str | None
    context: Mapping[str, Any]
    last_seq: int
    created_at: datetime
    updated_at: datetime
    sla_due_at: datetime | None
    queued_until: datetime | None
    closed_at: datetime | None
    shop_name: str | None = None
    plan: str | None = None
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    waiting_since: datetime | None = None
    reminders_sent: int = 0
    claimed_severity: str | None = None
    deprioritized: bool = False
    live_until: datetime | None = None
    lang: str = "pl"
    # The newest message the shop may see (private notes come after it or between).
    last_public_seq: int = 0
    # The reaction clock (server.rules.deadlines): when the deadline now in force
    # started, the first reaction's own deadline, and the ticket's inbox rank.
    sla_started_at: datetime | None = None
    first_response_due_at: datetime | None = None
    inbox_rank: int = 1
    # Working seconds from opening to the first resolution (reports; None: not yet).
    resolution_s: int | None = None


@dataclass(frozen=True, slots=True)
class NewTicket:
    """A ticket about to be stored: what the customer sent and what the rules decided."""

    title: str
    body: str
    severity: str
    context: Mapping[str, Any]
    client_id: str
    sla_due_at: datetime | None = None
    queued_until: datetime | None = None
    department: str | None = None
    sla_warning_at: datetime | None = None
    claimed_severity: str | None = None
    deprioritized: bool = False
    lang: str = "pl"
    plan: str | None = None  # the plan it is opened under
    rank: int = 1  # its place in line while a deadline runs (server.rules.plans)
    # Durable notifications stored with the ticket: (event, dedup key, payload).
    events: tuple[tuple[str, str, dict[str, Any]], ...] = ()


@dataclass(frozen=True, slots=True)
class Posted:
    """A send as stored: the message, and whether this call stored it (False: a retry)."""

    message: Message
    shop_id: str
    new: bool
    # System messages the post caused (the ticket reopened), stored with it.
    notes: tuple[Message, ...] = ()
    # The ticket itself changed with this post (a customer reply reopened it, an
    # agent took it out of the off-hours queue).
    ticket_changed: bool = False
    # Held messages of the ticket released by this post (an agent took it in hand).
    released: tuple[Message, ...] = ()
    # The ticket waits in the off-hours queue (agents looking at it see it live).
    ticket_queued: bool = False


@dataclass(frozen=True, slots=True)
class Opened:
    ticket: Ticket
    messages: tuple[Message, ...]
    created: bool = True


@dataclass(frozen=True, slots=True)
class Committed:
    """A stored message on its way to everyone else (`server.chat.announce`)."""

    shop_id: str
    message: Message
    origin: str | None  # the connection that sent it: it gets an ack, not a copy
    author: str  # the author's reader key: not unread for them
    # Whose unread it counts in: "all", "customers" (held for working hours, agents
    # do not see it yet) or "agents" (released from the queue: customers saw it).
    audience: str = "all"
    released: bool = False  # a held message reaching the agents now
    ticket_changed: bool = False  # the ticket's row changed with it: announce the ticket too
    ticket_queued: bool = False  # a message of a ticket in the queue: agents following it see it
