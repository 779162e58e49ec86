"""This server process: its services, its live sessions and the routing between them.

A `Node` ties the thread store, the Redis bus and the clock together and carries
out what a request asks (store, then publish). It also routes events arriving from
the bus to the local sessions that need them, encoding each frame once per codec
however many sessions receive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgpack
from redis.asyncio import Redis
from redis.exceptions import RedisError

from server import frames
from server.attachments import AttachmentStore
from server.auth import Principal
from server.bus import Bus
from server.clock import Clock, SystemClock
from server.codec import Codec
from server.conduct import WINDOW as CONDUCT_WINDOW
from server.conduct import decide, is_downgrade
from server.errors import ClosedTicket, Forbidden
from server.intake import completeness, missing_facts_message, route
from server.keys import Keys
from server.live import LiveState
from server.ratelimit import RateLimiter
from server.settings import Settings
from server.threads import SYSTEM, Author, Message, NewTicket, ThreadStore, Ticket
from server.writer import MessageWriter

if TYPE_CHECKING:
    from server.ws import Session

log = logging.getLogger(__name__)

STATUS_LABELS = {"open": "otwarte", "waiting_on_customer": "czeka na klienta", "resolved": "rozwiązane",
                 "closed": "zamknięte"}
FIELD_LABELS = {"severity": "priorytet", "department": "dział", "assignee": "przypisane do"}

# Sources of an event, which decide who receives it.
SHOP = "shop"
INBOX = "inbox"
READER = "reader"
PRESENCE = "presence"


@dataclass(slots=True)
class Outgoing:
    """One event on its way to local sessions, encoded at most once per codec."""

    kind: str
    frame: dict[str, Any]
    origin: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _encoded: dict[str, bytes] = field(default_factory=dict)

    def encoded(self, codec: Codec) -> bytes:
        data = self._encoded.get(codec.name)
        if data is None:
            data = self._encoded[codec.name] = codec.encode(self.frame)
        return data


class Node:
    def __init__(self, settings: Settings, clock: Clock, store: ThreadStore, redis: Redis, bus: Bus,
                 keys: Keys, attachments: AttachmentStore) -> None:
        self.settings = settings
        self.clock = clock
        # The real time, for what other systems stamp (token expiry, signed links).
        self.wall: Clock = SystemClock()
        self.store = store
        self.redis = redis
        self.bus = bus
        self.keys = keys
        self.attachments = attachments
        self.departments = settings.department_list()
        self.node_id = bus.node_id
        self.sessions: set[Session] = set()
        # Channel → its local sessions: the session itself while it is the only one
        # (most channels: a shop's or reader's), a set from the second on.
        self._by_channel: dict[str, Session | set[Session]] = {}
        self._inbox_pending: dict[int, None] = {}
        self._inbox_wakeup = asyncio.Event()
        self.draining = False
        self._all_closed = asyncio.Event()
        self._detached: set[asyncio.Task[None]] = set()
        self.live = LiveState(self)
        self.policy = settings.policy()
        self.limiter = RateLimiter(redis, keys, settings.limits)
        self.limits = frames.Limits(max_body_chars=settings.max_body_chars, max_title_chars=settings.max_title_chars,
                                    history_page_max=settings.history_page_max,
                                    list_page_max=settings.welcome_tickets_max)
        self.writer = MessageWriter(store, self.policy.hold, after_commit=self.publish_batch,
                                    concurrency=settings.writer_concurrency)
        self.bus.on_resubscribed = self._after_redis_returned
        self.bus.route = self.route

    async def _after_redis_returned(self) -> None:
        await self.catch_up_all()
        await self.live.rebuild_local_readers()

    def detach(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a short task that outlives the connection that started it."""
        task = asyncio.get_running_loop().create_task(coro)
        self._detached.add(task)
        task.add_done_callback(self._detached.discard)

    def new_conn_id(self) -> str:
        return f"{self.node_id}:{uuid.uuid4().hex[:12]}"

    def now(self) -> datetime:
        return self.clock.now()

    # --------------------------------------------------------------- routing
    async def listen(self, session: Session, channel: str) -> None:
        members = self._by_channel.get(channel)
        if members is None:
            self._by_channel[channel] = session
        elif isinstance(members, set):
            members.add(session)
        elif members is not session:
            self._by_channel[channel] = {members, session}
        # Returns at once when Redis already confirmed the channel; otherwise waits
        # for the confirmation (whoever asked first), so nothing published after
        # this returns is missed.
        await self.bus.subscribe(channel)

    def forget(self, session: Session) -> None:
        for channel in session.channels:
            members = self._by_channel.get(channel)
            if isinstance(members, set):
                members.discard(session)
                if len(members) > 1:
                    continue
                if members:
                    self._by_channel[channel] = next(iter(members))
                    continue
            elif members is not session:
                continue
            del self._by_channel[channel]
            self.bus.unsubscribe(channel)
        session.channels = ()
        self.sessions.discard(session)
        if not self.sessions:
            self._all_closed.set()

    def route(self, channel: str, event: dict[str, Any]) -> None:
        members = self._by_channel.get(channel)
        if members is None:
            return
        source = _source_of(channel, self.keys)
        out = Outgoing(kind=event.get("k", ""), frame=event["f"], origin=event.get("o"),
                       extra=event.get("x") or {})
        if isinstance(members, set):
            for session in tuple(members):
                session.deliver(source, out)
        else:
            members.deliver(source, out)

    async def catch_up_all(self) -> None:
        """After Redis came back: every session fetches what it missed from the database."""
        for session in tuple(self.sessions):
            await session.catch_up()

    # ------------------------------------------------------------ publishing
    def is_held(self, message: Message) -> bool:
        return message.queued_until is not None and message.queued_until > self.now()

    async def publish_message(self, shop_id: str, message: Message, origin: str | None) -> None:
        held = self.is_held(message)
        event = {"k": "message", "f": message.frame(), "o": origin, "x": {"held": held}}
        await self.bus.publish(self.keys.shop_channel(shop_id), event)
        if not held:
            self.inbox_touch(message.ticket)

    async def publish_batch(self, items: list[tuple[str, Message, str | None, str]]) -> None:
        """Tell everyone about a committed batch: (shop, message, origin connection,
        author's reader key). Local connections at once; other nodes and every
        reader's unread state through one Redis call for the whole batch."""
        remote: list[tuple[str, bytes, int, int, str, str]] = []
        for shop_id, message, origin, author in items:
            held = self.is_held(message)
            event = {"k": "message", "f": message.frame(), "o": origin, "x": {"held": held}}
            channel = self.keys.shop_channel(shop_id)
            self.bus.dispatch(channel, event)
            if not held:
                self.inbox_touch(message.ticket)
            payload = msgpack.packb({"n": self.node_id, "e": event}, use_bin_type=True)
            remote.append((channel, payload, message.ticket, message.seq, author, "customers" if held else "all"))
        try:
            grown, rebuild = await self.live.book.publish_and_count(self.node_id, remote)
        except (RedisError, OSError) as exc:
            log.warning("bus.batch_failed", extra={"messages": len(items), "error": repr(exc)})
            return
        self.dispatch_unread(grown)
        if not rebuild:
            return
        # Tickets whose reader set Redis lost (or never had): rebuilt from the database
        # for the whole batch at once, then counted (already published: no channel).
        wanted = set(rebuild)
        try:
            await self.live.book.set_readers(await self.store.ticket_readers(wanted))
            grown, _ = await self.live.book.publish_and_count(
                self.node_id, [("", b"", ticket, seq, author, who)
                               for _channel, _payload, ticket, seq, author, who in remote if ticket in wanted])
        except (RedisError, OSError) as exc:
            log.warning("unread.count_failed", extra={"tickets": len(wanted), "error": repr(exc)})
            return
        self.dispatch_unread(grown)

    def dispatch_unread(self, grown: list[tuple[str, int, int]]) -> None:
        """Unread counts that grew: Redis already told the other nodes; tell this one."""
        for reader, ticket_id, count in grown:
            frame = {"type": "unread", "tickets": {str(ticket_id): count}, "badge": True}
            self.bus.dispatch(self.keys.reader_channel(reader), {"k": "unread", "f": frame})

    async def publish_release(self, shop_id: str, message: Message) -> None:
        """A message held for working hours goes to the agents now."""
        await self.bus.publish(self.keys.shop_channel(shop_id), {"k": "release", "f": message.frame()})
        await self.live.after_message(message, message.author.key(shop_id), who="agents")

    async def agent_view(self, ticket: Ticket) -> dict[str, Any]:
        return (await self.agent_views([ticket]))[0]

    async def agent_views(self, found: list[Ticket]) -> list[dict[str, Any]]:
        online = await self.customers_online(t.shop_id for t in found)
        views = []
        for ticket in found:
            view = ticket.public(for_agent=True)
            view["customer_online"] = online.get(ticket.shop_id)
            views.append(view)
        return views

    async def publish_ticket(self, ticket: Ticket, *, inbox: bool = True, origin: str | None = None) -> None:
        frame = {"type": "ticket", "ticket": await self.agent_view(ticket)}
        await self.bus.publish(self.keys.shop_channel(ticket.shop_id), {"k": "ticket", "f": frame, "o": origin})
        if inbox and ticket.queued_until is None:
            await self.bus.publish(self.keys.inbox_channel, {"k": "ticket", "f": frame})

    async def publish_typing(self, shop_id: str, ticket_id: int, who: Principal, origin: str) -> None:
        frame = {"type": "typing", "ticket": ticket_id,
                 "who": {"kind": who.role.value, "id": who.id, "name": who.name}}
        await self.bus.publish(self.keys.shop_channel(shop_id),
                               {"k": "typing", "f": frame, "o": origin, "x": {"side": who.role.value}})

    async def publish_unread(self, reader: str, tickets: dict[int, int], badge: bool, *,
                             origin: str | None = None, ref: object = None) -> None:
        """To all of the reader's connections; the one that asked (`origin`) gets its `ref`."""
        frame = {"type": "unread", "tickets": {str(k): v for k, v in tickets.items()}, "badge": badge}
        event: dict[str, Any] = {"k": "unread", "f": frame}
        if origin is not None and ref is not None:
            event["o"] = origin
            event["x"] = {"ref": ref}
        await self.bus.publish(self.keys.reader_channel(reader), event)

    def inbox_touch(self, ticket_id: int) -> None:
        """A ticket changed through a message: agents' inboxes hear of it, coalesced."""
        self._inbox_pending[ticket_id] = None
        self._inbox_wakeup.set()

    async def run_inbox_flusher(self, interval: float = 1.0) -> None:
        """Sends the coalesced inbox updates, about once a second per busy ticket."""
        while True:
            await self._inbox_wakeup.wait()
            self._inbox_wakeup.clear()
            pending, self._inbox_pending = list(self._inbox_pending), {}
            try:
                # One query and one Redis round trip for every busy ticket of the second.
                found = [t for t in await self.store.get_many(pending) if t.queued_until is None]
                for view in await self.agent_views(found):
                    await self.bus.publish(self.keys.inbox_channel, {"k": "ticket", "f": {"type": "ticket",
                                                                                          "ticket": view}})
            except Exception:
                log.exception("inbox.flush_failed", extra={"tickets": len(pending)})
            await asyncio.sleep(interval)

    # ---------------------------------------------------------------- shops
    async def touch_customer(self, principal: Principal, first_seen: bool) -> None:
        """Record the shop user, at most once an hour across all nodes (the arrival
        script keeps the marker: a reconnect storm onto other nodes writes nothing)."""
        if first_seen:
            await self.store.touch_customer(principal, self.clock.now())

    # --------------------------------------------------------------- tickets
    async def new_ticket(self, principal: Principal, title: str, body: str, severity: str,
                         context: dict[str, str], client_id: str, attachments: int = 0
                         ) -> tuple[NewTicket, list[tuple[Author, str]]]:
        """A ticket with its deadline and queue state, and its first messages: the
        customer's description, then the acknowledgment every ticket gets at once."""
        now = self.now()
        record = (await self.store.shop_records([principal.shop or ""], now - CONDUCT_WINDOW))[principal.shop or ""]
        conduct = decide(severity, record)
        severity = conduct.severity
        intake = self.policy.intake(severity, now, await self.agents_online())
        events: tuple[tuple[str, str, dict[str, Any]], ...] = ()
        if severity == "critical":
            events = (("ticket.critical", "ticket.critical", {
                "event": "ticket.critical", "title": title, "severity": severity, "shop": principal.shop,
                "shop_name": principal.shop_name, "created_at": now.isoformat(),
                "sla_due_at": intake.sla_due_at.isoformat(), "at": now.isoformat()}),)
        department = route(title, body, self.departments, self.settings.default_department)
        facts = completeness(title, body, context, attachments, severity=severity)
        new = NewTicket(title=title, body=body, severity=severity,
                        context={**context, "completeness": facts.public()}, client_id=client_id,
                        sla_due_at=intake.sla_due_at, queued_until=intake.queued_until,
                        sla_warning_at=intake.warning_at, events=events, department=department,
                        claimed_severity=conduct.claimed, deprioritized=conduct.deprioritized)
        acknowledgment = intake.acknowledgment if conduct.note is None else f"{intake.acknowledgment} {conduct.note}"
        first = [(Author.of(principal), body), (SYSTEM, acknowledgment)]
        asking = missing_facts_message(facts)
        if asking is not None:
            # Too vague to act on: ask, specifically, for what is missing.
            first.append((SYSTEM, asking))
        return new, first

    def ticket_changes(self, principal: Principal, ticket: Ticket, requested: dict[str, str | None]
                       ) -> tuple[dict[str, Any], list[str]]:
        """What an update_ticket request changes, and the system notes that record it."""
        if ticket.status == "closed":
            raise ClosedTicket("this ticket is closed and read-only; open a new ticket for a new problem")
        if not principal.is_agent and (set(requested) != {"status"} or requested["status"] != "resolved"):
            raise Forbidden("a customer may only mark its ticket resolved")
        now = self.clock.now()
        changes: dict[str, Any] = {}
        notes: list[str] = []
        status = requested.get("status")
        if status is not None and status != ticket.status:
            changes["status"] = status
            if status == "resolved":
                changes["resolved_at"] = now
            elif status == "closed":
                changes["closed_at"] = now
            else:
                changes["resolved_at"] = None
            # The silent-customer chain runs only while waiting on the customer.
            changes["waiting_since"] = now if status == "waiting_on_customer" else None
            changes["reminders_sent"] = 0
            who = principal.name
            notes.append(f"{who}: status {STATUS_LABELS[ticket.status]} → {STATUS_LABELS[status]}.")
        for name in ("severity", "department", "assignee"):
            if name in requested and requested[name] != getattr(ticket, name):
                changes[name] = requested[name]
                notes.append(f"{principal.name}: {FIELD_LABELS[name]} → {requested[name] or '—'}.")
        if "severity" in changes:
            changes["severity_reviewed"] = True
            if ticket.deprioritized and not is_downgrade(ticket.claimed_severity, changes["severity"]):
                changes["deprioritized"] = False  # an agent confirmed the claim
            # The reaction deadline follows the severity, counted from when the ticket came in.
            changes["sla_due_at"] = self.policy.due(changes["severity"], ticket.created_at)
            changes["sla_warning_at"] = self.policy.warning(changes["severity"], ticket.created_at)
        return changes, notes

    # --------------------------------------------------------------- presence
    async def set_presence(self, principal: Principal, conn_id: str, status: str) -> None:
        await self.live.set_status(principal, conn_id, status)

    async def publish_presence(self, frame: dict[str, Any]) -> None:
        await self.bus.publish(self.keys.presence_channel, {"k": "presence", "f": frame})

    def customer_presence(self, shop_id: str, online: bool) -> tuple[list[str], bytes]:
        """Where a shop's presence change goes and the payload other nodes get (for
        the arrival and leaving scripts, which publish it themselves)."""
        event = self._customer_presence_event(shop_id, online)
        return ([self.keys.inbox_channel, self.keys.shop_channel(shop_id)],
                msgpack.packb({"n": self.node_id, "e": event}, use_bin_type=True))

    def dispatch_customer_presence(self, shop_id: str, online: bool) -> None:
        """The local half of a presence change Redis already carried to the other nodes."""
        event = self._customer_presence_event(shop_id, online)
        for channel in (self.keys.inbox_channel, self.keys.shop_channel(shop_id)):
            self.bus.dispatch(channel, event)

    @staticmethod
    def _customer_presence_event(shop_id: str, online: bool) -> dict[str, Any]:
        return {"k": "customer_presence", "f": {"type": "customer_presence", "shop": shop_id, "online": online}}

    async def with_attachments(self, found: list[Message]) -> list[Message]:
        """Messages read back from the database, with their attachments (fresh links)."""
        if not found:
            return found
        # Signed links expire on real time, like the tokens they stand in for.
        entries = await self.attachments.for_messages([m.id for m in found], self.wall.now())
        if not entries:
            return found
        return [replace(m, attachments=tuple(entries[m.id])) if m.id in entries else m for m in found]

    async def forget_tickets(self, readers_by_ticket: dict[int, set[str]]) -> None:
        """Every Redis key about purged tickets goes; a reader whose badge pointed at
        one of them hears its new state."""
        pointed = await self.live.book.forget_tickets(readers_by_ticket)
        for reader, gone in pointed.items():
            snapshot = await self.live.book.snapshot(reader)
            await self.publish_unread(reader, dict.fromkeys(gone, 0), snapshot.badge)

    async def session_opened(self, session: Session) -> None:
        await self.live.connected(session)

    async def session_closed(self, session: Session) -> None:
        await self.live.disconnected(session)

    async def drain(self, grace: float = 5.0) -> None:
        """Going away: close every connection with 1001 so clients reconnect elsewhere."""
        self.draining = True
        for session in tuple(self.sessions):
            session.close(1001, "server going away; reconnect and resume")
        if self.sessions:
            self._all_closed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), grace)

    # ---------------------------------------------------------------- status
    def service_status(self) -> dict[str, Any]:
        return self.policy.service(self.now())

    async def agents_online(self) -> int:
        return await self.live.refresh_agents_online()

    async def customers_online(self, shop_ids: Iterable[str]) -> dict[str, bool]:
        try:
            return await self.live.presence.customers_online(shop_ids, self.now())
        except (RedisError, OSError):
            return {}


def _source_of(channel: str, keys: Keys) -> str:
    if channel == keys.inbox_channel:
        return INBOX
    if channel == keys.presence_channel:
        return PRESENCE
    if channel.startswith(keys.reader_channel("")):
        return READER
    return SHOP
