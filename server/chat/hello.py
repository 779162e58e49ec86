"""The hello: admitting an authenticated connection and telling it where it stands.

In order: the node's admission queue (`POMOC_HELLO_CONCURRENCY` hellos at a time);
admission (the user's connection limit and cool-down, one Redis call);
the channels it listens on (subscribed before anything is read, so nothing
committed after the reads can be missed); the tickets it sees (a customer's shop,
an agent's inbox page, most urgent first); for a `resume`, where each thread stands
and which of its messages were missed (the newest `resume_max` per ticket); the
unread counts; then the `welcome` (and one `error forbidden` naming every resumed
ticket the principal may not see), the replay, and whatever arrived meanwhile.

Everything up to the welcome is abandoned once the database has not answered for
`POMOC_DATABASE_TIMEOUT` (a busy node still being answered goes on). A hello that
fails or is abandoned on a dependency (or on a bug) undoes the admission and the
subscriptions and is answered `unavailable`: the client may say hello again on the
same connection.

The replay is streamed: a page of `REPLAY_PAGE` messages is read from the database,
queued for the socket, and the next page is read only once the socket writer has
taken it, so a replay costs the node about two pages of memory however much was
missed. A replay that fails on the database after the welcome closes the connection
with 1013: the client reconnects and resumes from what it got.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace

from server.chat.adapters import Adapters
from server.chat.connection import Connection
from server.chat.inbox import views_for
from server.errors import CLOSE_RATE_LIMITED, Forbidden, RateLimited, Unavailable
from server.principal import Principal
from server.protocol import frames, views
from server.protocol.events import Source
from server.rules.records import Message, Ticket
from server.rules.tickets import check_access
from server.store.db import DATABASE_DOWN, describe

log = logging.getLogger(__name__)
REPLAY_PAGE = 100  # messages a replay reads from the database at a time
DENIED_NAMED = 10  # refused tickets named in the error's text (all are in its `tickets`)


@dataclass(frozen=True, slots=True)
class Replay:
    """What a resume still has to send after the welcome."""

    windows: dict[int, tuple[int, int]]  # ticket → (replay after this seq, up to this seq)
    queued: frozenset[int]  # tickets waiting in the off-hours queue (agents see their held messages)
    listed: int = 0  # tickets the welcome listed
    # ticket → where its delivery stands after the replay: a customer's window ends at
    # the newest message it may see, private notes after it are passed over unread.
    ends: dict[int, int] = field(default_factory=dict)


async def hello(a: Adapters, conn: Connection, principal: Principal, req: frames.Hello, ref: object) -> None:
    session = conn.session
    # The node's admission queue: a storm's hellos are worked on a few dozen at a time,
    # in order of arrival, up to their welcome (the replay streams outside it, at the
    # pace of each client's reading).
    async with a.roster.hellos:
        if session.close_code is not None:
            return  # gone while it waited its turn
        replay = await _admitted(a, conn, principal, req, ref)
    if replay is None:
        return
    try:
        replayed = await _replay(a, conn, principal, replay)
    except DATABASE_DOWN as exc:
        log.warning("ws.replay_failed", extra={"conn_id": session.conn_id, "error": describe(exc)})
        session.fill_failed()  # 1013: the client reconnects and resumes from what it got
        return
    session.opened()
    if replayed:
        a.metrics.messages_replayed.inc(replayed)
    await a.attendance.connected(session)
    log.info("ws.hello", extra={"conn_id": session.conn_id, "role": principal.role.value,
                                "tickets": replay.listed, "replayed": replayed})


async def _admitted(a: Adapters, conn: Connection, principal: Principal, req: frames.Hello,
                    ref: object) -> Replay | None:
    """Admission, then everything up to the welcome; None when the hello ended there
    (refused, or failed: the client may say hello again)."""
    session = conn.session
    if principal.is_agent:
        arrival = await a.attendance.admit(principal, session.conn_id)
    else:
        arrival = await a.attendance.arrive(principal, session.conn_id)
    wait, first_seen = arrival.wait, arrival.first_seen
    if wait > 0:
        conn.failed(RateLimited("too many connections for this user, or too many requests; "
                                f"retry in {wait:g} s", retry_after=round(wait, 3)), ref)
        session.close(CLOSE_RATE_LIMITED, "too many connections or requests")
        return None
    session.authenticated(principal, req.feed)
    try:
        return await conn.bounded(_welcome(a, conn, principal, req, ref, first_seen),
                                  a.settings.database_timeout.total_seconds(), a.writer.pulse)
    except Exception as exc:
        if isinstance(exc, DATABASE_DOWN):
            log.warning("ws.hello_failed", extra={"conn_id": session.conn_id, "error": describe(exc)})
            why = "the database is unavailable; say hello again"
        else:
            log.exception("ws.hello_failed", extra={"conn_id": session.conn_id})
            why = "internal error; say hello again"
        # Undo it all: the client may say hello again on this connection.
        conn.unlisten()
        await a.attendance.release(principal, session.conn_id, unseen=first_seen and principal.is_agent)
        session.hello_failed()
        conn.failed(Unavailable(why), ref)
        return None


async def _welcome(a: Adapters, conn: Connection, principal: Principal, req: frames.Hello, ref: object,
                   first_seen: bool) -> Replay:
    """Everything up to the welcome (sent here); returns what the replay has to send."""
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
        inbox = a.tickets.list_for(principal, limit=page + 1) if session.feed else _nothing()
        if first_seen:
            # The team's record of this agent (assignment names only known agents): at
            # most once an hour per agent across all nodes, or at once when its token
            # names it differently; beside the inbox read, not after it.
            tickets, _ = await asyncio.gather(inbox, a.agents.touch(principal, a.clock.now()))
        else:
            tickets = await inbox
        more = len(tickets) > page
        del tickets[page:]
    else:
        channels.append((keys.shop_channel(principal.shop or ""), Source.SHOP))
        if first_seen:
            # At most once an hour across all nodes (the arrival script keeps the
            # marker: a reconnect storm onto other nodes writes nothing).
            await asyncio.gather(conn.listen(channels), a.hello_reads.touch_customer(principal, a.clock.now()))
        else:
            await conn.listen(channels)
        tickets = await a.hello_reads.shop_tickets(principal)
        more = False
        for ticket in tickets:
            session.follow(ticket.id, ticket.shop_id, ticket.last_seq)

    replay = Replay({}, frozenset())
    incomplete: set[int] = set()
    denied: list[int] = []
    if req.resume:
        replay, incomplete, denied = await _resume(a, conn, principal, req.resume, {t.id: t for t in tickets})

    ids = [t.id for t in tickets]
    session.unread.update(await a.readers.snapshot_for(principal, set(ids) | set(session.follows)))
    now, wall_now = a.clock.now(), a.wall.now()
    session.reply(views.welcome(
        principal, await views_for(principal, tickets, session.unread, presence=a.presence, tickets=a.tickets,
                                   now=now, wall_now=wall_now),
        # A customer hears its own plan's hours (a priority shop's Sunday is open).
        session.unread, agents_online=a.attendance.agents_online, service=a.rules.policy.service(now, principal.plan),
        hours=a.rules.policy.weekly_hours_of(principal.plan),
        limits={"max_body_chars": settings.max_body_chars, "max_title_chars": settings.max_title_chars},
        incomplete=incomplete, conn_id=session.conn_id, now=now,
        departments=[(d.key, d.name) for d in a.rules.departments], more=more, wall_now=wall_now), ref)
    if denied:
        # One frame however many: a thousand refusals must not crowd out the welcome.
        named = ", ".join(map(str, denied[:DENIED_NAMED])) + (" …" if len(denied) > DENIED_NAMED else "")
        session.reply(views.error(Forbidden(f"resume: {len(denied)} ticket(s) are not yours or do not exist: "
                                            f"{named}"), tickets=denied), ref)
    return replace(replay, listed=len(tickets))


async def _nothing() -> list[Ticket]:
    return []


async def _resume(a: Adapters, conn: Connection, principal: Principal, asked: dict[int, int],
                  known: dict[int, Ticket]) -> tuple[Replay, set[int], list[int]]:
    """Where the replay of every ticket the client may resume starts and ends, the
    tickets where more were missed than a replay holds, and the ones it may not
    resume. Reads no message: the replay does, a page at a time."""
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
    # were listed after subscribing: fresh enough. Whatever is committed later
    # arrives as events, held until the replay is out.
    stale = {t for t in resumed if principal.is_agent or t not in known}
    lasts = await a.messages.last_seqs(stale) if stale else {}
    windows: dict[int, tuple[int, int]] = {}
    ends: dict[int, int] = {}
    for ticket_id, found in resumed.items():
        last = ends[ticket_id] = lasts.get(ticket_id, 0) if ticket_id in stale else found.last_seq
        if ticket_id not in stale and not principal.is_agent:
            # Nothing to read when all the customer missed are private notes.
            last = found.last_public_seq
        windows[ticket_id] = (min(asked[ticket_id], last), last)
    starts, incomplete = await a.messages.replay_starts(windows, a.settings.resume_max)
    for ticket_id, found in resumed.items():
        # For an incomplete ticket only the newest are replayed (older ones come with `history`).
        follow = session.follow(ticket_id, found.shop_id, starts[ticket_id])
        follow.cursor = starts[ticket_id]
    now = a.clock.now()
    queued = frozenset(t.id for t in resumed.values() if t.queued_until is not None and t.queued_until > now)
    replay = Replay({t: (starts[t], upto) for t, (_, upto) in windows.items() if starts[t] < upto}, queued,
                    ends=ends)
    return replay, incomplete, sorted(denied)


async def _replay(a: Adapters, conn: Connection, principal: Principal, replay: Replay) -> int:
    """Send the missed messages, ticket by ticket, oldest first, a page at a time;
    returns how many were sent."""
    session = conn.session
    codec = session.codec
    timeout = a.settings.database_timeout.total_seconds()
    sent = 0
    for ticket_id in sorted(replay.windows):
        after, upto = replay.windows[ticket_id]
        while after < upto and session.close_code is None:
            page = await conn.bounded(_page(a, ticket_id, after, upto), timeout, a.writer.pulse)
            if not page:
                break
            after = page[-1].seq
            now = a.clock.now()
            page.reverse()
            while page and session.close_code is None:
                message = page.pop()  # gone once encoded: a page is held once, not twice
                if principal.is_agent and message.held_at(now) and ticket_id not in replay.queued:
                    continue  # a held follow-up reaches agents when the queue releases it
                if not message.visible_to(principal):
                    continue  # a private note: never a customer's
                await conn.room()
                session.push(codec.encode(views.message(message)))
                sent += 1
            del page
            await conn.flushed()
        follow = session.follows.get(ticket_id)
        if follow is not None:
            follow.cursor = max(follow.cursor, upto)
    for ticket_id, end in replay.ends.items():
        follow = session.follows.get(ticket_id)
        if follow is not None and session.close_code is None:
            follow.cursor = max(follow.cursor, end)
    return sent


async def _page(a: Adapters, ticket_id: int, after: int, upto: int) -> list[Message]:
    return await a.hello_reads.replay_page(ticket_id, after, upto, REPLAY_PAGE)
