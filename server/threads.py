"""Per-ticket threads, the use case: open a ticket, post into it, read it, page its
history, list and follow tickets, change their status.

Each request is carried out in the same order: charge the fair-use limits (Redis),
decide by the rules (`server.rules.tickets`), store (`server.store`, the source of
truth), answer the connection that asked (through its session), and hand what was
stored to the announce path (`server.chat.announce`) for everyone else. A send is
acknowledged only once it is committed; a connection's sends are pipelined in order
through the group-commit writer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from server.chat.adapters import Adapters
from server.chat.connection import Connection, with_links
from server.chat.inbox import views_for
from server.errors import BadRequest, Forbidden, PomocError, RateLimited, Unauthorized, Unavailable
from server.principal import Principal
from server.protocol import frames, views
from server.protocol.events import Source
from server.rules.conduct import WINDOW as CONDUCT_WINDOW
from server.rules.limits import Limit
from server.rules.notices import acknowledgment_notice, status_notice
from server.rules.records import Author, Committed, Posted, Ticket
from server.rules.satisfaction import answer_outcome
from server.rules.tickets import (
    CUSTOMER_NOTE,
    Request,
    check_access,
    check_department,
    plan_ticket,
    ticket_changes,
)
from server.store.db import DATABASE_DOWN, describe
from server.store.rows import AttachFn

log = logging.getLogger(__name__)
UNKNOWN_ASSIGNEE = ("'assignee' must be the id of an agent Pomoc knows (one who has signed in to the console), "
                    "or null to release the ticket")


def _me(conn: Connection) -> Principal:
    principal = conn.session.principal
    if principal is None:  # requests other than hello come only after the welcome
        raise Unauthorized("say hello with a token first")
    return principal


async def _charge(a: Adapters, *buckets: tuple[str, str, Limit | None]) -> None:
    # Limits are about real seconds, whatever POMOC_CLOCK says.
    wait = await a.limiter.check(int(a.wall.now().timestamp() * 1000), *buckets)
    if wait > 0:
        raise RateLimited(f"too many requests; retry in {wait:g} s", retry_after=wait)


def _attacher(a: Adapters, principal: Principal) -> AttachFn:
    async def attach(conn: AsyncConnection, ids: list[str], ticket_id: int, message_id: int
                     ) -> list[dict[str, Any]]:
        # Signed links expire on real time, like the tokens they stand in for.
        return await a.attachments.attach(ids, ticket_id, message_id, principal, a.wall.now(), conn=conn)

    return attach


async def _views(a: Adapters, conn: Connection, tickets: list[Ticket]) -> list[dict[str, Any]]:
    return await views_for(_me(conn), tickets, conn.session.unread, presence=a.presence, tickets=a.tickets,
                           now=a.clock.now(), wall_now=a.wall.now())


# ------------------------------------------------------------------- tickets
async def open_ticket(a: Adapters, conn: Connection, req: frames.OpenTicket, ref: object) -> None:
    principal = _me(conn)
    if principal.is_agent:
        raise Forbidden("only customers open tickets")
    limits = a.rules.limits
    shop = principal.shop or ""
    await _charge(a, ("user", principal.key, limits.user_messages), ("shop", shop, limits.shop_messages),
                  ("tickets", shop, limits.shop_tickets))
    now = a.clock.now()
    record = (await a.tickets.shop_records([shop], now - CONDUCT_WINDOW))[shop]
    new, first = plan_ticket(principal, Request(req.title, req.body, req.severity, req.context, req.client_id,
                                                len(req.attachments)),
                             record, await a.attendance.refresh_agents_online(), now, a.rules.policy,
                             a.rules.departments, a.rules.default_department)
    ack = acknowledgment_notice(principal, new, first, a.rules.policy.calendar)
    opened = await a.tickets.open(principal, new, first, now, req.attachments, attach=_attacher(a, principal),
                                  notices=[ack] if ack else [])
    ticket = opened.ticket
    session = conn.session
    follow = session.follow(ticket.id, ticket.shop_id, 0)
    session.reply(views.ticket(views.customer_ticket(views.agent_ticket(ticket), 0)), ref)
    for message in opened.messages:
        follow.cursor = max(follow.cursor, message.seq)
        session.push(session.codec.encode(views.message(message)))
    if not opened.created:
        return
    # Assigned (POMOC_AUTO_ASSIGN) before it is announced: the inbox hears of it once.
    ticket, assignment = await a.assigner.opened(ticket)
    await a.announce.ticket(ticket, origin=session.conn_id)
    await a.readers.opened(principal, ticket.id, follow.cursor)
    items = [Committed(ticket.shop_id, m, session.conn_id, m.author.key(ticket.shop_id)) for m in opened.messages]
    if assignment is not None:
        items.append(Committed(ticket.shop_id, assignment.note, None, "system"))
    await a.announce.committed(items)
    if assignment is not None:
        await a.assigner.tell(ticket, assignment)
    log.info("ticket.opened", extra={"conn_id": session.conn_id, "ticket_id": ticket.id,
                                     "severity": ticket.severity})


async def update_ticket(a: Adapters, conn: Connection, req: frames.UpdateTicket, ref: object) -> None:
    principal = _me(conn)
    if "department" in req.changes:
        check_department(req.changes["department"], a.rules.departments)
    assignee = req.changes.get("assignee")
    if assignee is not None and principal.is_agent and not await a.agents.known(assignee):
        raise BadRequest(UNKNOWN_ASSIGNEE)
    ticket = await a.tickets.get_for(principal, req.ticket)
    now = a.clock.now()
    change = ticket_changes(principal, ticket, req.changes, now, a.rules.policy)
    if change.fields:
        done = status_notice(principal, ticket, change.fields)
        ticket, notes, released = await a.tickets.update(ticket.id, change.fields, change.notes, now,
                                                         release=change.release_held, events=change.events,
                                                         notices=[done] if done else [],
                                                         internal_notes=change.internal_notes)
        await a.announce.ticket(ticket)
        await a.announce.committed([Committed(ticket.shop_id, note, None, "system") for note in notes]
                                   + [Committed(ticket.shop_id, m, None, m.author.key(ticket.shop_id),
                                                audience="agents", released=True) for m in released])
        if "assignee" in change.fields and ticket.assignee is not None and ticket.assignee != principal.id:
            # A teammate handed it over: the new assignee hears of it at once.
            await a.announce.assigned(ticket.assignee, ticket, Author.of(principal))
    conn.session.reply(views.ticket((await _views(a, conn, [ticket]))[0]), ref)


async def rate(a: Adapters, conn: Connection, req: frames.Rate, ref: object) -> None:
    """The customer's answer to "was the problem solved?": yes closes the ticket with a
    rating, no reopens it with a new reaction deadline (server.rules.satisfaction)."""
    principal = _me(conn)
    if principal.is_agent:
        raise Forbidden("only the shop's users answer whether their problem is solved")
    ticket = await a.tickets.get_for(principal, req.ticket)
    now = a.clock.now()
    outcome = answer_outcome(principal, ticket, req.answer, now, a.rules.policy)
    ticket, note = await a.ratings.answer(principal, ticket.id, req.answer, outcome.fields, outcome.note, now)
    await a.announce.ticket(ticket)
    await a.announce.committed([Committed(ticket.shop_id, note, None, "system")])
    log.info("ticket.rated", extra={"conn_id": conn.session.conn_id, "ticket_id": ticket.id,
                                    "solved": req.answer.solved})
    conn.session.reply(views.ticket((await _views(a, conn, [ticket]))[0]), ref)


async def list_tickets(a: Adapters, conn: Connection, req: frames.ListTickets, ref: object) -> None:
    principal = _me(conn)
    check_department(req.department, a.rules.departments, everything=True)
    settings = a.settings
    default = settings.inbox_page if principal.is_agent else settings.welcome_tickets_max
    limit = min(req.limit or default, settings.welcome_tickets_max)
    assignee = None
    if principal.is_agent and req.assignee is not None:
        assignee = principal.id if req.assignee == "me" else req.assignee
    tickets = await a.tickets.list_for(principal, req.status, limit=limit + 1, now=a.clock.now(),
                                       department=req.department, shop=req.shop if principal.is_agent else None,
                                       assignee=assignee)
    more = len(tickets) > limit
    del tickets[limit:]
    conn.session.unread.update(await a.reads.unread(principal, [t.id for t in tickets]))
    conn.session.reply(views.tickets(await _views(a, conn, tickets), more), ref)


async def follow(a: Adapters, conn: Connection, req: frames.Follow, ref: object) -> None:
    principal = _me(conn)
    session = conn.session
    ticket = await a.tickets.get_for(principal, req.ticket)
    if ticket.id not in session.follows:
        # Subscribe first, then read where the thread stands: nothing committed
        # after that read can be missed, and nothing before it is sent twice.
        await conn.listen([(a.keys.shop_channel(ticket.shop_id), Source.SHOP)])
        ticket = await a.tickets.get(ticket.id)
        session.follow(ticket.id, ticket.shop_id, ticket.last_seq)
    session.unread[ticket.id] = (await a.reads.unread(principal, [ticket.id])).get(ticket.id, 0)
    session.reply(views.ticket((await _views(a, conn, [ticket]))[0]), ref)
    await a.collision.opened(session, ticket.id)


async def unfollow(a: Adapters, conn: Connection, req: frames.Unfollow, ref: object) -> None:
    """The console closed the ticket: its messages stop and its agent is no longer a viewer."""
    principal = _me(conn)
    if not principal.is_agent:
        raise Forbidden("only agents follow and unfollow tickets")
    followed = conn.session.unfollow(req.ticket)
    if followed is not None and followed.viewing:
        await a.collision.closed(conn.session, [req.ticket])
    conn.session.reply(views.unfollowed(req.ticket), ref)


# ------------------------------------------------------------------ messages
async def send(a: Adapters, conn: Connection, req: frames.Send, ref: object) -> None:
    principal = _me(conn)
    if req.internal and not principal.is_agent:
        raise Forbidden(CUSTOMER_NOTE)
    limits = a.rules.limits
    if principal.is_agent:
        await _charge(a, ("agent", principal.id, limits.agent_messages))
    else:
        await _charge(a, ("user", principal.key, limits.user_messages),
                      ("shop", principal.shop or "", limits.shop_messages))
    now = a.clock.now()
    origin = conn.session.conn_id
    # Only an agent's send is checked for a teammate's newer reply, and not when forced.
    seen_seq = req.seen_seq if principal.is_agent and not req.force else None
    if a.writer.batched and not req.attachments:
        # Pipelined: the send takes its place in the writer's queue now (so the seqs
        # follow this connection's order) and the reader goes on to the next frame;
        # the ack goes out once the batch holding it is committed.
        pending = a.writer.submit(principal, req.ticket, req.body, req.client_id, now, origin=origin,
                                  internal=req.internal, seen_seq=seen_seq)
        await conn.track_send(_acked_later(conn, pending, ref))
        return
    posted = await a.writer.post(principal, req.ticket, req.body, req.client_id, now, attachments=req.attachments,
                                 attach=_attacher(a, principal), origin=origin, internal=req.internal,
                                 seen_seq=seen_seq)
    _acked(conn, posted, ref)


async def _acked_later(conn: Connection, pending: asyncio.Future[Posted], ref: object) -> None:
    try:
        posted = await pending
    except PomocError as err:
        conn.failed(err, ref)
        return
    except DATABASE_DOWN as exc:
        log.warning("ws.dependency_failed", extra={"conn_id": conn.session.conn_id, "error": describe(exc)})
        conn.failed(Unavailable("the database is unavailable; retry"), ref)
        return
    _acked(conn, posted, ref)


def _acked(conn: Connection, posted: Posted, ref: object) -> None:
    session = conn.session
    message = posted.message
    session.reply(views.ack(message), ref)
    if not posted.new:
        return
    principal = session.principal
    if principal is not None and not principal.is_agent:
        session.follow(message.ticket, posted.shop_id, message.seq - 1)
    session.own(message.ticket, message.seq)


async def read(a: Adapters, conn: Connection, req: frames.Read, ref: object) -> None:
    principal = _me(conn)
    await a.reads.read(principal, req.ticket, req.seq, a.clock.now())
    await a.readers.after_read(principal, req.ticket, origin=conn.session.conn_id, ref=ref)


async def history(a: Adapters, conn: Connection, req: frames.History, ref: object) -> None:
    principal = _me(conn)
    await a.tickets.get_for(principal, req.ticket)
    found, more = await a.messages.history(req.ticket, before_seq=req.before_seq, after_seq=req.after_seq,
                                           limit=req.limit, public=not principal.is_agent)
    conn.session.reply(views.history(req.ticket, await with_links(a, found), more), ref)


async def typing(a: Adapters, conn: Connection, req: frames.Typing, ref: object) -> None:
    principal = _me(conn)
    session = conn.session
    followed = session.follows.get(req.ticket)
    shop = followed.shop if followed is not None else (await a.tickets.get_for(principal, req.ticket)).shop_id
    check_access(principal, shop)
    if session.may_relay_typing(req.ticket, time.monotonic()):
        await a.announce.typing(shop, req.ticket, principal, session.conn_id)


# -------------------------------------------------------------- the console
async def presence(a: Adapters, conn: Connection, req: frames.Presence, ref: object) -> None:
    principal = _me(conn)
    if not principal.is_agent:
        raise Forbidden("only agents set presence")
    if not conn.session.feed:
        raise BadRequest("a connection without the inbox feed has no presence")
    conn.session.presence_status = req.status
    await a.attendance.set_status(principal, conn.session.conn_id, req.status)


async def ping(a: Adapters, conn: Connection, req: frames.Ping, ref: object) -> None:
    conn.session.reply(views.pong(a.clock.now()), ref)
