"""The WebSocket endpoint and the protocol core: handshake, dispatch, subscriptions, resume.

A `Session` is one connection's protocol state. It takes decoded frames through
`handle()` and puts encoded frames into a bounded outbox (`server.delivery`, which
also holds the per-ticket, sequence-numbered delivery); the Starlette endpoint at
the bottom is only a loop that feeds it from the socket and drains the outbox into
it. Tests can drive a `Session` without a socket.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from datetime import datetime
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from server import frames
from server.auth import Principal, authenticate
from server.codec import Codec, negotiate
from server.conduct import WINDOW as CONDUCT_WINDOW
from server.delivery import Delivery, Follow, for_customer
from server.errors import (
    CLOSE_FORBIDDEN,
    CLOSE_HELLO_TIMEOUT,
    CLOSE_RATE_LIMITED,
    CLOSE_UNAUTHORIZED,
    BadRequest,
    Forbidden,
    PomocError,
    RateLimited,
    Unauthorized,
    Unavailable,
    error_frame,
)
from server.node import Node
from server.ratelimit import Limit
from server.threads import AttachFn, Message, Posted, Ticket, check_access, iso

log = logging.getLogger(__name__)
CLOSE_GRACE = 10.0  # seconds a closing connection gets to take its last frames
MAX_SENDS_IN_FLIGHT = 64


class Session(Delivery):
    """One connection's protocol state: the incoming side (handshake, dispatch,
    handlers) on top of its outgoing side (`Delivery`)."""

    # Frame type → handler name: one table for the class, not a dict per connection.
    HANDLERS: dict[type, str] = {
        frames.OpenTicket: "on_open_ticket",
        frames.Send: "on_send",
        frames.Read: "on_read",
        frames.Typing: "on_typing",
        frames.History: "on_history",
        frames.ListTickets: "on_list_tickets",
        frames.Follow: "on_follow",
        frames.UpdateTicket: "on_update_ticket",
        frames.Presence: "on_presence",
        frames.Ping: "on_ping",
    }

    __slots__ = ("limits", "channels", "presence_status", "admitted", "_bad", "_limited",
                 "_typing_sent", "_sends")

    def __init__(self, node: Node, codec: Codec, conn_id: str) -> None:
        super().__init__(node, codec, conn_id)
        self.limits = node.limits
        self.channels: tuple[str, ...] = ()  # a handful at most: a tuple is the smallest
        self.presence_status = "online"
        self.admitted = False
        # Rarely needed: created on first use (an idle connection stays small).
        self._bad: deque[float] | None = None
        self._limited: deque[float] | None = None
        self._typing_sent: dict[int, float] | None = None
        self._sends: list[asyncio.Task[None]] | None = None

    @property
    def counts_as_presence(self) -> bool:
        """Agents with the inbox feed are people at a console; feed-less ones are bots."""
        return self.principal is not None and self.principal.is_agent and self.feed

    # ---------------------------------------------------------------- input
    async def handle(self, data: bytes | str) -> None:
        ref: object = None
        try:
            frame = self.codec.decode(data)
            ref = frames.valid_ref(frame)
            request = frames.parse(frame, self.limits)
            if self.principal is None:
                if not isinstance(request, frames.Hello):
                    raise Unauthorized("say hello with a token first")
                await self.on_hello(request, ref)
                return
            if isinstance(request, frames.Hello):
                raise BadRequest("hello was already said on this connection")
            await getattr(self, self.HANDLERS[type(request)])(request, ref)
        except PomocError as err:
            self.send(error_frame(err, ref))
            if isinstance(err, BadRequest | Unauthorized) and self.principal is not None:
                self._count_bad()
            elif isinstance(err, RateLimited):
                self._count_limited()
        except (OperationalError, DBAPIError, PoolTimeout, OSError) as exc:
            log.error("ws.dependency_failed", extra={"conn_id": self.conn_id, "error": repr(exc)})
            self.send(error_frame(Unavailable("the database is unavailable; retry"), ref))

    def _count_bad(self) -> None:
        now = time.monotonic()
        bad = self._bad = self._bad if self._bad is not None else deque()
        bad.append(now)
        while bad and now - bad[0] > self.settings.bad_frame_window.total_seconds():
            bad.popleft()
        if len(bad) > self.settings.max_bad_frames * 5:
            self.close(CLOSE_RATE_LIMITED, "too many bad frames")

    def _count_limited(self) -> None:
        """A client that keeps hammering after `rate_limited` is closed (4429)."""
        now = time.monotonic()
        limited = self._limited = self._limited if self._limited is not None else deque()
        limited.append(now)
        while limited and now - limited[0] > 60:
            limited.popleft()
        if len(limited) > self.settings.max_rate_limited and self.close_code is None:
            self.close(CLOSE_RATE_LIMITED, "rate limited too often; slow down")
            if self.principal is not None:
                # Outlives this connection: the cooldown is the point.
                self.node.detach(self.node.live.penalize(self.principal))

    async def _charge(self, *buckets: tuple[str, str, Limit | None]) -> None:
        wait = await self.node.limiter.check(int(self.node.now().timestamp() * 1000), *buckets)
        if wait > 0:
            raise RateLimited(f"too many requests; retry in {wait:g} s", retry_after=wait)

    # ---------------------------------------------------------------- hello
    async def on_hello(self, req: frames.Hello, ref: object) -> None:
        node = self.node
        try:
            # Tokens come from other systems on real time: POMOC_CLOCK moves only the support rules.
            principal = authenticate(req.token, self.settings.secret, node.wall.now())
        except Unauthorized as err:
            self.send(error_frame(err, ref))
            self.close(CLOSE_UNAUTHORIZED, err.message[:100])
            return
        first_seen = False
        if principal.is_agent:
            wait = await node.live.admit(principal, self.conn_id)
        else:
            arrival = await node.live.arrive(principal, self.conn_id)
            wait, first_seen = arrival.wait, arrival.first_seen
        if wait > 0:
            self.send(error_frame(RateLimited("too many connections for this user, or too many requests; "
                                              f"retry in {wait:g} s", retry_after=round(wait, 3)), ref))
            self.close(CLOSE_RATE_LIMITED, "too many connections or requests")
            return
        self.admitted = True
        self.principal = principal
        self.feed = req.feed if principal.is_agent else True
        channels = [node.keys.reader_channel(principal.key), node.keys.presence_channel]
        if principal.is_agent:
            if self.feed:
                channels.append(node.keys.inbox_channel)
            await self._listen(*channels)
            # The inbox's first page, most urgent first: a welcome costs the same with
            # 40 open tickets or 20,000 (the console asks for more with list_tickets).
            page = min(self.settings.inbox_page, self.settings.welcome_tickets_max)
            tickets = await node.store.list_for(principal, limit=page + 1) if self.feed else []
            more = len(tickets) > page
            del tickets[page:]
        else:
            channels.append(node.keys.shop_channel(principal.shop or ""))
            await asyncio.gather(node.touch_customer(principal, first_seen), self._listen(*channels))
            tickets = await node.store.list_for(principal, limit=self.settings.welcome_tickets_max)
            more = False
            for ticket in tickets:
                self.follows[ticket.id] = Follow(ticket.shop_id, ticket.last_seq)

        replay: dict[int, list[Message]] = {}
        incomplete: set[int] = set()
        denied: list[int] = []
        if req.resume:
            known = {t.id: t for t in tickets}
            others = {t.id: t for t in await node.store.get_many(t for t in req.resume if t not in known)}
            resumed: dict[int, Ticket] = {}
            for ticket_id in req.resume:
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
                await self._listen(*(node.keys.shop_channel(t.shop_id) for t in resumed.values()))
            # Where each thread stands, read after subscribing; a customer's listed
            # tickets were listed after subscribing: fresh enough.
            stale = {t for t in resumed if principal.is_agent or t not in known}
            lasts = await node.store.last_seqs(stale) if stale else {}
            resume: dict[int, int] = {}
            for ticket_id, found in resumed.items():
                last = lasts.get(ticket_id, 0) if ticket_id in stale else found.last_seq
                resume[ticket_id] = min(req.resume[ticket_id], last)
                self.follows[ticket_id] = Follow(found.shop_id, resume[ticket_id])
            replay, incomplete = await node.store.missed(resume, self.settings.resume_max)
            # One attachments query for the whole replay, not one per ticket.
            linked = iter(await node.with_attachments([m for msgs in replay.values() for m in msgs]))
            replay = {t: [next(linked) for _ in msgs] for t, msgs in replay.items()}
            for ticket_id, missed in replay.items():
                self.follows[ticket_id].cursor = missed[-1].seq
            for ticket_id in incomplete:
                # The newest messages were replayed; older ones come with `history`.
                self.follows[ticket_id].cursor = replay[ticket_id][-1].seq

        ids = [t.id for t in tickets]
        self.unread = await node.live.snapshot_for(principal, set(ids) | set(self.follows))
        self.send({
            "type": "welcome",
            "principal": principal.public(),
            "tickets": await self._views(tickets),
            "unread": {str(k): v for k, v in self.unread.items() if v},
            "badge": any(self.unread.values()),
            "agents_online": node.live.agents_online,
            "service": node.service_status(),
            "limits": {"max_body_chars": self.settings.max_body_chars,
                       "max_title_chars": self.settings.max_title_chars},
            "resume_incomplete": sorted(incomplete),
            "conn_id": self.conn_id,
            "now": node.now().isoformat(),
            **({"departments": [{"key": d.key, "name": d.name} for d in node.departments],
                "tickets_more": more}
               if principal.is_agent else {}),
        }, ref)
        for ticket_id in sorted(replay):
            for message in replay[ticket_id]:
                if principal.is_agent and node.is_held(message):
                    continue  # reaches agents when the queue is released
                await self.enqueue_paced(self.codec.encode(message.frame()))
        for ticket_id in denied:
            self.send(error_frame(Forbidden(f"resume: ticket {ticket_id} is not yours or does not exist")), ref)
        self.ready = True
        early, self._early = self._early or [], None
        for source, out in early:
            self.deliver(source, out)
        await node.session_opened(self)
        log.info("ws.hello", extra={"conn_id": self.conn_id, "role": principal.role.value,
                                    "tickets": len(tickets), "replayed": sum(map(len, replay.values()))})

    async def _views(self, tickets: list[Ticket]) -> list[dict[str, Any]]:
        """Tickets as this principal sees them (agents also see who is connected)."""
        principal = self._me()
        views = [t.public(self.unread.get(t.id, 0), for_agent=principal.is_agent) for t in tickets]
        if principal.is_agent and tickets:
            online = await self.node.customers_online(t.shop_id for t in tickets)
            records = await self.node.store.shop_records((t.shop_id for t in tickets),
                                                         self.node.now() - CONDUCT_WINDOW)
            for view, ticket in zip(views, tickets, strict=True):
                view["customer_online"] = online.get(ticket.shop_id)
                view["shop_record"] = records[ticket.shop_id].public()
        else:
            views = [for_customer(v, v["unread"]) for v in views]
        return views

    async def _listen(self, *channels: str) -> None:
        """Subscribe (all at once: one round trip to Redis, not one per channel)."""
        new = tuple(c for c in dict.fromkeys(channels) if c not in self.channels)
        self.channels += new
        await asyncio.gather(*(self.node.listen(self, channel) for channel in new))

    # -------------------------------------------------------------- tickets
    def _me(self) -> Principal:
        if self.principal is None:  # handlers run only after hello
            raise Unauthorized("say hello with a token first")
        return self.principal

    async def on_open_ticket(self, req: frames.OpenTicket, ref: object) -> None:
        principal = self._me()
        if principal.is_agent:
            raise Forbidden("only customers open tickets")
        node = self.node
        limits = self.settings.limits
        await self._charge(("user", principal.key, limits.user_messages),
                           ("shop", principal.shop or "", limits.shop_messages),
                           ("tickets", principal.shop or "", limits.shop_tickets))
        new, first = await node.new_ticket(principal, req.title, req.body, req.severity, req.context, req.client_id,
                                           attachments=len(req.attachments))
        now = node.now()
        opened = await node.store.open(principal, new, first, now, req.attachments,
                                       attach=self._attacher(principal, now))
        ticket = opened.ticket
        if ticket.id not in self.follows:
            self.follows[ticket.id] = Follow(ticket.shop_id, 0)
        follow = self.follows[ticket.id]
        self.send({"type": "ticket", "ticket": for_customer(ticket.public(0), 0)}, ref)
        for message in opened.messages:
            if message.seq > follow.cursor:
                follow.cursor = message.seq
            self.enqueue(self.codec.encode(message.frame()))
        if opened.created:
            await node.publish_ticket(ticket, origin=self.conn_id)
            await node.live.opened(principal, ticket.id, follow.cursor)
            who = "customers" if ticket.queued_until is not None else "all"
            for message in opened.messages:
                await node.publish_message(ticket.shop_id, message, origin=self.conn_id)
                await node.live.after_message(message, message.author.key(ticket.shop_id), who)
            log.info("ticket.opened", extra={"conn_id": self.conn_id, "ticket_id": ticket.id,
                                             "severity": ticket.severity})

    async def on_send(self, req: frames.Send, ref: object) -> None:
        principal = self._me()
        node = self.node
        limits = self.settings.limits
        if principal.is_agent:
            await self._charge(("agent", principal.id, limits.agent_messages))
        else:
            await self._charge(("user", principal.key, limits.user_messages),
                               ("shop", principal.shop or "", limits.shop_messages))
        now = node.now()
        if node.writer.batched and not req.attachments:
            # Pipelined: the send takes its place in the writer's queue now (so the
            # seqs follow this connection's order) and the reader goes on to the next
            # frame; the ack goes out once the batch holding it is committed.
            await self._bound_in_flight()
            pending = node.writer.submit(principal, req.ticket, req.body, req.client_id, now, origin=self.conn_id)
            task = asyncio.ensure_future(self._complete_send(pending, ref))
            if self._sends is None:
                self._sends = []
            self._sends.append(task)
            task.add_done_callback(self._send_done)
            return
        posted = await node.writer.post(principal, req.ticket, req.body, req.client_id, now,
                                        attachments=req.attachments, attach=self._attacher(principal, now))
        await self._after_post(posted, ref)

    async def _bound_in_flight(self) -> None:
        # At most this many sends of one connection wait for their commit at once.
        while self._sends and len(self._sends) >= MAX_SENDS_IN_FLIGHT:
            await asyncio.wait({self._sends[0]})

    def _send_done(self, task: asyncio.Task[None]) -> None:
        if self._sends and task in self._sends:
            self._sends.remove(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("ws.send_failed", extra={"conn_id": self.conn_id}, exc_info=task.exception())

    async def _complete_send(self, pending: asyncio.Future[Posted], ref: object) -> None:
        try:
            posted = await pending
        except PomocError as err:
            self.send(error_frame(err, ref))
            if isinstance(err, RateLimited):
                self._count_limited()
            return
        except (OperationalError, DBAPIError, PoolTimeout, OSError) as exc:
            log.error("ws.dependency_failed", extra={"conn_id": self.conn_id, "error": repr(exc)})
            self.send(error_frame(Unavailable("the database is unavailable; retry"), ref))
            return
        await self._after_post(posted, ref)

    async def _after_post(self, posted: Posted, ref: object) -> None:
        principal = self._me()
        node = self.node
        message = posted.message
        ack: dict[str, Any] = {"type": "ack", "ticket": message.ticket, "seq": message.seq,
                               "client_id": message.client_id, "created_at": message.created_at.isoformat(),
                               "queued_until": iso(message.queued_until)}
        if message.attachments:
            ack["attachments"] = list(message.attachments)  # the sender's own copy of the links
        self.send(ack, ref)
        if not posted.new:
            return
        if message.ticket not in self.follows and not principal.is_agent:
            self.follows[message.ticket] = Follow(posted.shop_id, message.seq - 1)
        follow = self.follows.get(message.ticket)
        if follow is not None:
            self._own(message.ticket, follow, message.seq)
        if not posted.published:
            await node.publish_message(posted.shop_id, message, origin=self.conn_id)
            await node.live.after_message(message, principal.key, "customers" if node.is_held(message) else "all")
        if posted.notes:
            await node.publish_ticket(await node.store.get(message.ticket))
            for note in posted.notes:
                await node.publish_message(posted.shop_id, note, origin=None)
                await node.live.after_message(note, "system")

    def _attacher(self, principal: Principal, now: datetime) -> AttachFn:
        store = self.node.attachments

        async def attach(conn: AsyncConnection, ids: list[str], ticket_id: int, message_id: int
                         ) -> list[dict[str, Any]]:
            # Signed links expire on real time, like the tokens they stand in for.
            return await store.attach(ids, ticket_id, message_id, principal, self.node.wall.now(), conn=conn)

        return attach

    async def on_read(self, req: frames.Read, ref: object) -> None:
        principal = self._me()
        node = self.node
        await node.store.read(principal, req.ticket, req.seq, node.now())
        await node.live.after_read(principal, req.ticket, origin=self.conn_id, ref=ref)

    async def on_typing(self, req: frames.Typing, ref: object) -> None:
        principal = self._me()
        follow = self.follows.get(req.ticket)
        shop = follow.shop if follow is not None else (await self.node.store.get_for(principal, req.ticket)).shop_id
        check_access(principal, shop)
        now = time.monotonic()
        sent = self._typing_sent = self._typing_sent if self._typing_sent is not None else {}
        if now - sent.get(req.ticket, -1e9) < 2.0:
            return  # at most one relay per sender and ticket every 2 s
        sent[req.ticket] = now
        await self.node.publish_typing(shop, req.ticket, principal, self.conn_id)

    async def on_history(self, req: frames.History, ref: object) -> None:
        principal = self._me()
        await self.node.store.get_for(principal, req.ticket)
        found, more = await self.node.store.history(req.ticket, before_seq=req.before_seq, after_seq=req.after_seq,
                                                    limit=req.limit)
        found = await self.node.with_attachments(found)
        items = []
        for message in found:
            item = message.frame()
            del item["type"]  # only live deliveries are typed "message"
            items.append(item)
        self.send({"type": "history", "ticket": req.ticket, "messages": items, "more": more}, ref)

    async def on_list_tickets(self, req: frames.ListTickets, ref: object) -> None:
        principal = self._me()
        default = self.settings.inbox_page if principal.is_agent else self.settings.welcome_tickets_max
        limit = min(req.limit or default, self.settings.welcome_tickets_max)
        tickets = await self.node.store.list_for(principal, req.status, limit=limit + 1,
                                                 now=self.node.now(), department=req.department)
        more = len(tickets) > limit
        del tickets[limit:]
        self.unread.update(await self.node.store.unread(principal, [t.id for t in tickets]))
        self.send({"type": "tickets", "tickets": await self._views(tickets), "more": more}, ref)

    async def on_follow(self, req: frames.Follow, ref: object) -> None:
        principal = self._me()
        node = self.node
        ticket = await node.store.get_for(principal, req.ticket)
        if ticket.id not in self.follows:
            # Subscribe first, then read where the thread stands: nothing committed
            # after that read can be missed, and nothing before it is sent twice.
            await self._listen(node.keys.shop_channel(ticket.shop_id))
            ticket = await node.store.get(ticket.id)
            self.follows[ticket.id] = Follow(ticket.shop_id, ticket.last_seq)
        self.unread[ticket.id] = (await node.store.unread(principal, [ticket.id])).get(ticket.id, 0)
        self.send({"type": "ticket", "ticket": (await self._views([ticket]))[0]}, ref)

    async def on_update_ticket(self, req: frames.UpdateTicket, ref: object) -> None:
        principal = self._me()
        node = self.node
        ticket = await node.store.get_for(principal, req.ticket)
        changes, notes = node.ticket_changes(principal, ticket, req.changes)
        if changes:
            ticket, added = await node.store.update(ticket.id, changes, notes, node.now())
            await node.publish_ticket(ticket)
            for message in added:
                await node.publish_message(ticket.shop_id, message, origin=None)
                await node.live.after_message(message, "system")
        self.send({"type": "ticket", "ticket": (await self._views([ticket]))[0]}, ref)

    async def on_presence(self, req: frames.Presence, ref: object) -> None:
        principal = self._me()
        if not principal.is_agent:
            raise Forbidden("only agents set presence")
        if not self.feed:
            raise BadRequest("a connection without the inbox feed has no presence")
        self.presence_status = req.status
        await self.node.set_presence(principal, self.conn_id, req.status)

    async def on_ping(self, req: frames.Ping, ref: object) -> None:
        self.send({"type": "pong", "now": self.node.now().isoformat()}, ref)

    async def finish(self) -> None:
        for task in list(self._tasks or ()):
            task.cancel()
        self.node.forget(self)
        await self.node.session_closed(self)


def origin_allowed(origin: str | None, allowed: tuple[str, ...]) -> bool:
    if origin is None:
        return True  # bots and integrations send no Origin; they still need a token
    return "*" in allowed or origin.rstrip("/") in allowed


async def websocket_endpoint(websocket: WebSocket) -> None:
    node: Node = websocket.app.state.node
    if not origin_allowed(websocket.headers.get("origin"), node.settings.allowed_origins):
        await _deny(websocket, 403, "forbidden", "this Origin is not allowed")
        return
    if node.draining:
        await _deny(websocket, 503, "unavailable", "the server is restarting; retry")
        return
    if len(node.sessions) >= node.settings.max_connections:
        await _deny(websocket, 503, "unavailable", "this server is full; retry (possibly another node)")
        return
    codec, subprotocol = negotiate(websocket.scope.get("subprotocols") or [])
    await websocket.accept(subprotocol=subprotocol)
    session = Session(node, codec, node.new_conn_id())
    node.sessions.add(session)
    # This coroutine reads; one task writes. (Two tasks and an asyncio.wait per
    # connection cost over a kilobyte each of thousands of idle connections.)
    writer = asyncio.ensure_future(_write(websocket, session))
    try:
        await _read(websocket, session)
    finally:
        if not writer.done():
            session.close(session.close_code or 1000)
            # The writer sends what is due and the close frame as soon as the socket
            # takes them; a peer that never reads is cut loose after the grace period.
            try:
                await asyncio.wait_for(writer, CLOSE_GRACE)
            except (TimeoutError, asyncio.CancelledError):
                writer.cancel()
        await session.finish()
        log.info("ws.closed", extra={"conn_id": session.conn_id, "code": session.close_code})


async def _read(websocket: WebSocket, session: Session) -> None:
    """Feed the session from the socket until either side closes.

    Once the session decides to close (or the writer fails), the wait for the
    client's next frame is cancelled: the loop stops without waiting for a client
    that may never send again. A handler that is running finishes first."""
    task = asyncio.current_task()
    assert task is not None
    waiting = False

    def stop_waiting() -> None:
        if waiting:
            task.cancel()

    session.on_close = stop_waiting
    deadline = asyncio.get_running_loop().time() + session.settings.hello_timeout.total_seconds()
    try:
        while session.close_code is None:
            waiting = True
            try:
                if session.principal is None:
                    left = deadline - asyncio.get_running_loop().time()
                    try:
                        message = await asyncio.wait_for(websocket.receive(), max(0.0, left))
                    except TimeoutError:
                        waiting = False  # closing must not cancel this task: the writer sends the close
                        session.close(CLOSE_HELLO_TIMEOUT, "no hello in time")
                        return
                else:
                    message = await websocket.receive()
            except asyncio.CancelledError:
                if session.close_code is None:
                    raise  # cancelled from outside (the server is stopping)
                task.uncancel()
                return
            finally:
                waiting = False
            if message["type"] == "websocket.disconnect":
                session.close(message.get("code") or 1000)
                return
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
            if data is None:
                continue
            del message  # not kept alive while the connection idles
            try:
                await session.handle(data)
            except Exception:
                # A bug must cost one request, not the connection (never 1011).
                log.exception("ws.handler_failed", extra={"conn_id": session.conn_id})
                session.send(error_frame(Unavailable("internal error; retry")))
            del data
    except WebSocketDisconnect as exc:
        session.close(exc.code)


async def _write(websocket: WebSocket, session: Session) -> None:
    binary = session.codec.binary
    try:
        while True:
            batch = await session.next_outgoing()
            if batch is None:
                break
            await _send_all(websocket, batch, binary)
            # Not kept alive while waiting: an idle connection would hold its last
            # frames (the welcome, kilobytes) for as long as it stays open.
            del batch
        if websocket.application_state == WebSocketState.CONNECTED and session.close_code is not None:
            code = session.close_code
            if code in (1000, 1001, 1005, 1006, 1012):
                code = code if code in (1000, 1001, 1012) else 1000
            await websocket.close(code=code, reason=session.close_reason[:120])
    except (WebSocketDisconnect, RuntimeError, OSError):
        session.close(session.close_code or 1006)


async def _send_all(websocket: WebSocket, batch: list[bytes], binary: bool) -> None:
    for data in batch:
        if binary:
            await websocket.send({"type": "websocket.send", "bytes": data})
        else:
            await websocket.send({"type": "websocket.send", "text": data.decode()})


async def _deny(websocket: WebSocket, status: int, code: str, message: str) -> None:
    response = JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
    try:
        await websocket.send_denial_response(response)
    except RuntimeError:
        await websocket.close(code=CLOSE_FORBIDDEN)
