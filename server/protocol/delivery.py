"""Which events a connection takes, and the per-ticket sequence state that keeps a
thread whole.

Delivery decisions are small pure predicates, one per event kind (`ACCEPTS`), of the
connection's identity and subscriptions, the event and the channel it came by —
in the manner of Zulip's `accepts_event`. What a connection does with an accepted
event (the per-ticket sequence below, the customer's view of a ticket, unread
bookkeeping) is the session's (`server.protocol.session`).

Per ticket a connection keeps the highest `seq` handed to its client (`cursor`). A
message at `cursor + 1` goes out, an older one is a duplicate, a newer one means
something was missed (an event lost while Redis was away, or overtaken on another
node): the gap is filled from the database before anything newer goes out. So a
client sees every message of a followed ticket once, in order, whatever the bus does.
Sans-I/O: it must not import starlette, redis, sqlalchemy, asyncio or jwt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from server.principal import Principal
from server.protocol.events import Event, Source


@dataclass(slots=True)
class Follow:
    """Delivery state of one ticket on one connection."""

    shop: str
    cursor: int
    # This connection's own messages beyond the cursor (it got an ack, not a copy).
    own: set[int] = field(default_factory=set)
    # A console shows this ticket: its agent counts among the ticket's viewers.
    viewing: bool = False
    filling: bool = False
    pending: list[Event] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages the connection must fetch from the database: seq in (after, upto];
    `upto` None means everything after (a catch-up after Redis came back)."""

    ticket: int
    after: int
    upto: int | None


class Reader(Protocol):
    """What the predicates look at: who the connection is and what it follows."""

    @property
    def principal(self) -> Principal | None: ...

    @property
    def feed(self) -> bool: ...

    @property
    def follows(self) -> dict[int, Follow]: ...

    @property
    def conn_id(self) -> str: ...


def _message(r: Reader, source: Source, e: Event) -> bool:
    p = r.principal
    if p is None:
        return False
    # A customer follows its whole shop: a ticket opened elsewhere is met first through a message.
    return e.frame["ticket"] in r.follows or (not p.is_agent and source is Source.SHOP)


def _ticket(r: Reader, source: Source, e: Event) -> bool:
    p = r.principal
    if p is None or e.origin == r.conn_id:
        return False
    if not p.is_agent:
        return source is Source.SHOP
    # The inbox feed, or (a feed-less bot) the tickets it follows.
    return (source is Source.INBOX and r.feed) or (
        not r.feed and source is Source.SHOP and e.frame["ticket"]["id"] in r.follows)


def _typing(r: Reader, source: Source, e: Event) -> bool:
    p = r.principal
    if p is None or e.origin == r.conn_id or e.frame["ticket"] not in r.follows:
        return False
    # To the other side (a customer's to agents, an agent's to customers), and an
    # agent's to the other agents following the ticket (a teammate is replying).
    return e.side != p.role.value or (p.is_agent and e.frame["who"]["id"] != p.id)


def _viewers(r: Reader, source: Source, e: Event) -> bool:
    p = r.principal
    # Agents' business only: a customer never learns who on the team looks at its ticket.
    return p is not None and p.is_agent and e.origin != r.conn_id and e.frame["ticket"] in r.follows


def _unread(r: Reader, source: Source, e: Event) -> bool:
    return r.principal is not None  # the reader channel is this reader's own


def _assigned(r: Reader, source: Source, e: Event) -> bool:
    # Published on the assignee's own reader channel: every connection of that agent.
    p = r.principal
    return p is not None and p.is_agent and source is Source.READER


def _release(r: Reader, source: Source, e: Event) -> bool:
    # A message held for working hours reaches the agents following its ticket.
    p = r.principal
    return p is not None and p.is_agent and e.frame["ticket"] in r.follows


def _presence(r: Reader, source: Source, e: Event) -> bool:
    p = r.principal
    # Agents see each agent's status; customers only how many agents are online.
    return p is not None and (p.is_agent or "agents_online" in e.frame)


def _customer_presence(r: Reader, source: Source, e: Event) -> bool:
    p = r.principal
    if p is None or not p.is_agent:
        return False
    shop = e.frame["shop"]
    return (source is Source.INBOX and r.feed) or (
        source is Source.SHOP and not r.feed and any(f.shop == shop for f in r.follows.values()))


ACCEPTS: Mapping[str, Callable[[Reader, Source, Event], bool]] = {
    "message": _message,
    "ticket": _ticket,
    "typing": _typing,
    "viewers": _viewers,
    "unread": _unread,
    "assigned": _assigned,
    "release": _release,
    "presence": _presence,
    "customer_presence": _customer_presence,
}


def accepts(reader: Reader, source: Source, event: Event) -> bool:
    predicate = ACCEPTS.get(event.kind)
    return predicate is not None and predicate(reader, source, event)
