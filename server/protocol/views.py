"""Every frame the server sends, built in one place (PROTOCOL.md, "Server → client").

Records (`server.rules.records`) never render themselves; the functions here decide
what each kind of reader sees. A customer's view of a ticket is an allow-list
(`CUSTOMER_TICKET_FIELDS`): a field added to the agents' view reaches no customer
until it is listed here. Sans-I/O: plain dicts out; it must not import starlette,
redis, sqlalchemy, asyncio or jwt, and reads no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from server.errors import PomocError, Stale
from server.principal import Principal
from server.rules.deadlines import step
from server.rules.records import Message, Ticket

# What a shop's user may see of a ticket. Everything else (context, the shop's
# record, who opened it, fair-use state, presence, plan) is for support only.
CUSTOMER_TICKET_FIELDS = ("id", "title", "status", "severity", "department", "assignee", "created_at", "updated_at",
                          "sla_due_at", "queued_until", "closed_at", "last_seq", "unread", "shop",
                          "first_response_at", "resolved_at", "sla_step")


def iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


# ------------------------------------------------------------------ messages
def message(m: Message, *, typed: bool = True) -> dict[str, Any]:
    """A `message` frame; untyped as an item of `history` (only live deliveries are typed).
    A private note says so (`internal`); no customer is ever handed one
    (`Message.visible_to`, applied where messages are delivered and read)."""
    out: dict[str, Any] = {"type": "message"} if typed else {}
    out["ticket"] = m.ticket
    out["seq"] = m.seq
    out["id"] = m.id
    out["author"] = {"kind": m.author.kind, "id": m.author.id, "name": m.author.name}
    out["body"] = m.body
    out["created_at"] = m.created_at.isoformat()
    out["client_id"] = m.client_id
    out["queued_until"] = iso(m.queued_until)
    if m.attachments:
        out["attachments"] = list(m.attachments)
    if m.internal:
        out["internal"] = True
    return out


def ack(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "ack", "ticket": m.ticket, "seq": m.seq, "client_id": m.client_id,
                           "created_at": m.created_at.isoformat(), "queued_until": iso(m.queued_until)}
    if m.internal:
        out["internal"] = True
    if m.attachments:
        out["attachments"] = list(m.attachments)  # the sender's own copy of the links
    return out


def history(ticket_id: int, found: Sequence[Message], more: bool) -> dict[str, Any]:
    return {"type": "history", "ticket": ticket_id, "messages": [message(m, typed=False) for m in found],
            "more": more}


# ------------------------------------------------------------------- tickets
def agent_ticket(t: Ticket, unread: int = 0, *, customer_online: bool | None = None,
                 shop_record: Mapping[str, object] | None = None) -> dict[str, Any]:
    """A ticket as support sees it."""
    out: dict[str, Any] = {
        "id": t.id, "title": t.title, "status": t.status, "severity": t.severity, "department": t.department,
        "assignee": t.assignee, "created_at": t.created_at.isoformat(), "updated_at": t.updated_at.isoformat(),
        "sla_due_at": iso(t.sla_due_at), "queued_until": iso(t.queued_until), "closed_at": iso(t.closed_at),
        "last_seq": t.last_seq, "unread": unread, "shop": t.shop_id, "shop_name": t.shop_name, "plan": t.plan,
        "created_by": t.created_by, "context": dict(t.context), "first_response_at": iso(t.first_response_at),
        "resolved_at": iso(t.resolved_at), "waiting_since": iso(t.waiting_since),
        "reminders_sent": t.reminders_sent, "claimed_severity": t.claimed_severity,
        "deprioritized": t.deprioritized, "customer_online": customer_online,
        "last_public_seq": t.last_public_seq,
        # Which deadline `sla_due_at` is (server.rules.deadlines), and the first reaction's own.
        "sla_step": step(t.sla_due_at, t.first_response_at), "first_response_due_at": iso(t.first_response_due_at),
        "inbox_rank": t.inbox_rank,  # the inbox's order: rank, then sla_due_at
    }
    if shop_record is not None:
        out["shop_record"] = dict(shop_record)
    return out


def customer_ticket(view: Mapping[str, Any], unread: int) -> dict[str, Any]:
    """A customer's view of a ticket, from any fuller view of it (the allow-list).
    Its `last_seq` is the newest message the shop may see: private notes after it
    are not the shop's to know of."""
    out = {k: view[k] for k in CUSTOMER_TICKET_FIELDS if k in view}
    if "last_public_seq" in view:
        out["last_seq"] = view["last_public_seq"]
    out["unread"] = unread
    return out


def ticket(view: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "ticket", "ticket": view}


def assigned(view: Mapping[str, Any], by: tuple[str, str, str]) -> dict[str, Any]:
    """To the agent a ticket was just assigned to: the ticket (an agent's view) and who
    assigned it, (kind, id, name): "system" for Pomoc's automatic assignment."""
    kind, who, name = by
    return {"type": "assigned", "ticket": dict(view), "by": {"kind": kind, "id": who, "name": name}}


def tickets(views: list[dict[str, Any]], more: bool) -> dict[str, Any]:
    return {"type": "tickets", "tickets": views, "more": more}


def search(results: Iterable[tuple[Mapping[str, Any], int | None, str]]) -> dict[str, Any]:
    """The answer to `search`: each ticket as the asker may see it (build it with
    `agent_ticket` or `customer_ticket`), the seq of the matching message (None: the
    title matched) and a snippet of the text that matched."""
    return {"type": "search", "results": [{"ticket": dict(view), "seq": seq, "snippet": snippet}
                                          for view, seq, snippet in results]}


# ------------------------------------------------------------- live state
def unread(counts: Mapping[int, int] | Mapping[str, int], badge: bool) -> dict[str, Any]:
    return {"type": "unread", "tickets": {str(k): v for k, v in counts.items()}, "badge": badge}


def badge(counts: Iterable[int]) -> bool:
    """The "!" beside POMOC: anything unread at all."""
    return any(n > 0 for n in counts)


def typing(ticket_id: int, who: Principal) -> dict[str, Any]:
    return {"type": "typing", "ticket": ticket_id, "who": {"kind": who.role.value, "id": who.id, "name": who.name}}


def viewers(ticket_id: int, agents: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Who has the ticket open in a console: (agent id, name) pairs."""
    return {"type": "viewers", "ticket": ticket_id, "agents": [{"id": i, "name": n} for i, n in agents]}


def unfollowed(ticket_id: int) -> dict[str, Any]:
    return {"type": "unfollowed", "ticket": ticket_id}


def agent_presence(agent: str, status: str) -> dict[str, Any]:
    return {"type": "presence", "agent": agent, "status": status}


def agents_online(count: int) -> dict[str, Any]:
    return {"type": "presence", "agents_online": count}


def customer_presence(shop_id: str, online: bool) -> dict[str, Any]:
    return {"type": "customer_presence", "shop": shop_id, "online": online}


def pong(now: datetime) -> dict[str, Any]:
    return {"type": "pong", "now": now.isoformat()}


def expiry(expires: float, wall_now: datetime) -> dict[str, Any]:
    """When the connection's token expires: the instant, and the seconds left by the
    server's clock (so a client need not trust its own)."""
    return {"expires_at": datetime.fromtimestamp(expires, UTC).isoformat(),
            "expires_in": max(0, int(expires - wall_now.timestamp()))}


def authenticated(expires: float, wall_now: datetime) -> dict[str, Any]:
    """The answer to `auth`: the connection lives on until the new token's expiry."""
    return {"type": "authenticated", **expiry(expires, wall_now)}


def error(err: PomocError, ref: object = None, *, tickets: Sequence[int] | None = None) -> dict[str, Any]:
    """An `error`; `tickets` names the tickets it is about (a resume's refused ones)."""
    frame: dict[str, Any] = {"type": "error", "code": err.code, "message": err.message}
    if ref is not None:
        frame["ref"] = ref
    if err.retry_after is not None:
        frame["retry_after"] = err.retry_after
    if tickets is not None:
        frame["tickets"] = list(tickets)
    if isinstance(err, Stale):
        frame["ticket"], frame["seqs"] = err.ticket, list(err.seqs)
    return frame


# ------------------------------------------------------------------- welcome
def welcome(principal: Principal, ticket_views: list[dict[str, Any]], counts: Mapping[int, int], *,
            agents_online: int, service: Mapping[str, Any], hours: list[dict[str, Any]],
            limits: Mapping[str, int], incomplete: Iterable[int],
            conn_id: str, now: datetime, departments: Sequence[tuple[str, str]] = (),
            more: bool = False, wall_now: datetime | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "welcome",
        "principal": principal.public(),
        "tickets": ticket_views,
        "unread": {str(k): v for k, v in counts.items() if v},
        "badge": badge(counts.values()),
        "agents_online": agents_online,
        "service": dict(service),
        "hours": hours,
        "limits": dict(limits),
        "resume_incomplete": sorted(incomplete),
        "conn_id": conn_id,
        "now": now.isoformat(),
    }
    if principal.expires and wall_now is not None:
        out.update(expiry(principal.expires, wall_now))  # tokens live on real time (wall_now)
    if principal.is_agent:
        out["departments"] = [{"key": key, "name": name} for key, name in departments]
        out["tickets_more"] = more
    return out
