"""The hello: admitting an authenticated connection and telling it where it stands.

In order: admission (the user's connection limit and cool-down, one Redis call);
the channels it listens on (subscribed before anything is read, so nothing
committed after the reads can be missed); the tickets it sees (a customer's shop,
an agent's inbox page, most urgent first); for a `resume`, where each thread stands
and the messages missed since (the newest `resume_max` per ticket); the unread
counts; then the `welcome`, the replay, and whatever arrived meanwhile. A hello
that fails on a dependency undoes the admission and the subscriptions, and the
client may say hello again on the same connection.
"""

from __future__ import annotations

import asyncio
import logging

from server.chat.adapters import Adapters
from server.chat.connection import DATABASE_DOWN, Connection, with_links
from server.chat.inbox import views_for
from server.errors import CLOSE_RATE_LIMITED, Forbidden, RateLimited, Unavailable
from server.principal import Principal
from server.protocol import frames, views
from server.protocol.events import Source
from server.rules.policy import weekly_hours
from server.rules.records import Message, Ticket
from server.rules.tickets import check_access

log = logging.getLogger(__name__)


async def hello(a: Adapters, conn: Connection, principal: Principal, req: frames.Hello, ref: object) -> None:
    session = conn.session
    first_seen = False
    if principal.is_agent:
        wait = await a.attendance.admit(principal, session.conn_id)
    else:
        arrival = await a.attendance.arrive(principal, session.conn_id)
        wait, first_seen = arrival.wait, arrival.first_seen
    if wait > 0:
        conn.failed(RateLimited("too many connections for this user, or too many requests; "
                                f"retry in {wait:g} s", retry_after=round(wait, 3)), ref)
        session.close(CLOSE_RATE_LIMITED, "too many connections or requests")
        return
    session.authenticated(principal, req.feed)
    try:
        await _welcome(a, conn, principal, req, ref, first_seen)
    except DATABASE_DOWN as exc:
        log.error("ws.hello_failed", extra={"conn_id": session.conn_id, "error": str(exc) or repr(exc)})
        # Undo it all: the client may say hello again on this connection.
        conn.unlisten()
        await a.attendance.release(principal, session.conn_id)
        session.hello_failed()
        conn.failed(Unavailable("the database is unavailable; say hello again"), ref)


async def _welcome(a: Adapters, conn: Connection, principal: Principal, req: frames.Hello, ref: object,
                   first_seen: bool) -> None:
    session = conn.session
    keys, settings = a.keys, a.settings
    channels = [(keys.reader_channel(principal.key), Source.READER), (keys.presence_channel, Source.PRESENCE)]
    if principal.is_agent:
        if session.feed:
            channels.append((keys.inbox_channel, Source.INBOX))
        await conn.listen(channels)
        # The inbox's first page, most urgent first: a welcome costs the same with
        # 40 open tickets or 20,000 (the console asks for more with list_tickets).
        page = min(settings.inbox_page, settings.welcome_tickets_max)
        tickets = await a.tickets.list_for(principal, limit=page + 1) if session.feed else []
        more = len(tickets) > page
        del tickets[page:]
    else:
        channels.append((keys.shop_channel(principal.shop or ""), Source.SHOP))
        if first_seen:
            # At most once an hour across all nodes (the arrival script keeps the
            # marker: a reconnect storm onto other nodes writes nothing).
            await asyncio.gather(conn.listen(channels), a.tickets.touch_customer(principal, a.clock.now()))
        else:
            await conn.listen(channels)
        tickets = await a.tickets.list_for(principal, limit=settings.welcome_tickets_max)
        more = False
        for ticket in tickets:
            session.follow(ticket.id, ticket.shop_id, ticket.last_seq)

    replay: dict[int, list[Message]] = {}
    incomplete: set[int] = set()
    denied: list[int] = []
    queued: set[int] = set()
    if req.resume:
        replay, incomplete, denied, queued = await _resume(a, conn, principal, req.resume,
                                                            {t.id: t for t in tickets})

    ids = [t.id for t in tickets]
    session.unread.update(await a.readers.snapshot_for(principal, set(ids) | set(session.follows)))
    now, wall_now = a.clock.now(), a.wall.now()
    session.reply(views.welcome(
        principal, await views_for(principal, tickets, session.unread, presence=a.presence, tickets=a.tickets,
                                   now=now, wall_now=wall_now),
        session.unread, agents_online=a.attendance.agents_online, service=a.rules.policy.service(now),
        hours=weekly_hours(a.rules.policy.calendar),
        limits={"max_body_chars": settings.max_body_chars, "max_title_chars": settings.max_title_chars},
        incomplete=incomplete, conn_id=session.conn_id, now=now,
        departments=[(d.key, d.name) for d in a.rules.departments], more=more, wall_now=wall_now), ref)
    codec = session.codec
    for ticket_id in sorted(replay):
        for message in replay[ticket_id]:
            if principal.is_agent and message.held_at(now) and ticket_id not in queued:
                continue  # a held follow-up reaches agents when the queue releases it
            await conn.room()
            session.push(codec.encode(views.message(message)))
    for ticket_id in denied:
        session.reply(views.error(Forbidden(f"resume: ticket {ticket_id} is not yours or does not exist")), ref)
    session.opened()
    await a.attendance.connected(session)
    log.info("ws.hello", extra={"conn_id": session.conn_id, "role": principal.role.value,
                                "tickets": len(tickets), "replayed": sum(map(len, replay.values()))})


async def _resume(a: Adapters, conn: Connection, principal: Principal, asked: dict[int, int],
                  known: dict[int, Ticket]) -> tuple[dict[int, list[Message]], set[int], list[int], set[int]]:
    """The missed messages of every ticket the client may resume, the tickets where
    more were missed than a replay holds, the ones it may not resume, and those that
    wait in the off-hours queue."""
    session = conn.session
    others = {t.id: t for t in await a.tickets.get_many(t for t in asked if t not in known)}
    resumed: dict[int, Ticket] = {}
    denied: list[int] = []
    for ticket_id in asked:
        found = known.get(ticket_id) or others.get(ticket_id)
        if found is None:
            denied.append(ticket_id)
            continue
        try:
            check_access(principal, found.shop_id)
        except Forbidden:
            denied.append(ticket_id)
            continue
        resumed[ticket_id] = found
    if principal.is_agent:
        # Resuming a ticket follows it again (listed in the inbox or not).
        await conn.listen((a.keys.shop_channel(t.shop_id), Source.SHOP) for t in resumed.values())
    # Where each thread stands, read after subscribing; a customer's listed tickets
    # were listed after subscribing: fresh enough.
    stale = {t for t in resumed if principal.is_agent or t not in known}
    lasts = await a.messages.last_seqs(stale) if stale else {}
    resume: dict[int, int] = {}
    for ticket_id, found in resumed.items():
        last = lasts.get(ticket_id, 0) if ticket_id in stale else found.last_seq
        resume[ticket_id] = min(asked[ticket_id], last)
        follow = session.follow(ticket_id, found.shop_id, resume[ticket_id])
        follow.cursor = resume[ticket_id]
    replay, incomplete = await a.messages.missed(resume, a.settings.resume_max)
    # One attachments query for the whole replay, not one per ticket.
    linked = iter(await with_links(a, [m for msgs in replay.values() for m in msgs]))
    replay = {t: [next(linked) for _ in msgs] for t, msgs in replay.items()}
    for ticket_id, missed in replay.items():
        # The newest messages were replayed (for an incomplete ticket, older ones come with `history`).
        session.follows[ticket_id].cursor = missed[-1].seq
    now = a.clock.now()
    queued = {t.id for t in resumed.values() if t.queued_until is not None and t.queued_until > now}
    return replay, incomplete, denied, queued
