"""The one way news leaves a node: committed → published → counted unread → inbox.

Whatever stored something (a send, an opened ticket, a status change, a reminder, a
release from the off-hours queue) hands it here. `committed(items)` routes each
message to this node's connections at once, publishes it to the other nodes and
counts it into every other reader's unread state with one Redis call for the whole
batch (the script publishes the readers' new counts too), rebuilds reader sets
Redis lost from the database, and marks the tickets for the agents' inboxes, which
hear of busy tickets about once a second (`run_inbox`, coalesced; `flush_inbox` at
shutdown, so a worker that releases the queue and exits still updates them).

Events that are not stored (typing, presence, unread answers) go out here too, so
every channel name, envelope and local dispatch is in one place. Redis failures
never fail the caller: the message is stored and acknowledged.

While Redis does not answer (down, or past the deadline of its calls, see
`server.realtime.health`) what this node could not publish is kept, in order, in a
bounded backlog (`BACKLOG_MAX` events; past it the oldest go), and once Redis
answers again it is published and counted, oldest first, before anything newer:
the other nodes' live connections get it then (a connection that already has a
message drops the copy by its seq), and a node whose subscriber reconnected
meanwhile fetches it from the database anyway. Typing and presence events are not
kept: they would be stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from server.chat.inbox import agent_views
from server.clock import Clock
from server.metrics import Metrics
from server.presence import Presence
from server.principal import Principal, agent_key
from server.protocol import views
from server.protocol.events import Event, envelope
from server.protocol.session import Session
from server.realtime.bus import Bus
from server.realtime.health import RedisHealth
from server.realtime.keys import Keys
from server.realtime.router import Router
from server.realtime.unread import UnreadBook
from server.rules.records import Author, Committed, Ticket
from server.store.db import DATABASE_DOWN, describe
from server.store.reads import ReadStore
from server.store.tickets import TicketStore

log = logging.getLogger(__name__)
_REDIS_DOWN = (RedisError, OSError, TimeoutError)
BACKLOG_MAX = 20_000  # events kept while Redis does not answer (a few MB at most)
_REPLAY_CHUNK = 500  # events per Redis call when the backlog goes out

# A stored message on its way out: (channel, payload, ticket, seq, author, who).
Counted = tuple[str, bytes, int, int, str, str]


@dataclass(frozen=True, slots=True)
class _Kept:
    """An event this node could not publish yet: a stored message (to be counted
    unread too) or any other event."""

    channel: str
    payload: bytes
    message: Counted | None = None


class Announcer:
    def __init__(self, *, node_id: str, keys: Keys, bus: Bus, router: Router[Session], book: UnreadBook,
                 reads: ReadStore, tickets: TicketStore, presence: Presence, clock: Clock, wall: Clock,
                 health: RedisHealth, inbox_interval: float = 1.0, metrics: Metrics | None = None) -> None:
        self.wall = wall
        self.metrics = metrics or Metrics()
        self.health = health
        self.node_id = node_id
        self.keys = keys
        self.bus = bus
        self.router = router
        self.book = book
        self.reads = reads
        self.tickets = tickets
        self.presence = presence
        self.clock = clock
        self.inbox_interval = inbox_interval
        self._inbox_pending: dict[int, None] = {}
        self._inbox_wakeup = asyncio.Event()
        self._backlog: deque[_Kept] = deque()
        self._replaying = False
        self.dropped = 0  # kept events that had to go (the backlog was full)
        health.on_up(self.replay)

    # -------------------------------------------------------------- messages
    async def committed(self, items: Sequence[Committed]) -> None:
        """Stored messages: to everyone who follows their tickets, into every other
        reader's unread count, and (unless held) the agents' inboxes."""
        now = self.clock.now()
        remote: list[Counted] = []
        changed: list[int] = []
        stored: dict[str, int] = {}
        for item in items:
            message = item.message
            held = message.held_at(now)
            if not item.released:  # a release announces what was stored (and counted) before
                kind = message.author.kind
                stored[kind] = stored.get(kind, 0) + 1
            if item.released:
                event = Event("release", views.message(message))
            else:
                event = Event("message", views.message(message), item.origin, held=held,
                              queued=held and item.ticket_queued)
            channel = self.keys.shop_channel(item.shop_id)
            self.router.route(channel, event)
            if not held and not item.released:
                self.touch(message.ticket)
            if item.ticket_changed:
                changed.append(message.ticket)
            audience = "customers" if held and not item.released else item.audience
            if item.author == "system":
                # Pomoc's own messages are news to the shop, not to support.
                audience = "none" if audience == "agents" else "customers"
            if message.internal:
                # A private note is never the shop's; an agent's is news to the other agents.
                audience = "none" if item.author == "system" else "agents"
            remote.append((channel, envelope(self.node_id, event), message.ticket, message.seq, item.author,
                           audience))
        self.metrics.stored(stored)  # once per batch and author kind
        await self._publish_and_count(remote)
        # The post changed these tickets too (reopened, taken out of the queue).
        for ticket in await self.tickets.get_many(dict.fromkeys(changed)):
            await self.ticket(ticket)

    async def _publish_and_count(self, remote: list[Counted]) -> None:
        if not remote:
            return
        if self._backlog or not self.health.up:
            self._keep([_Kept(item[0], item[1], item) for item in remote])
            return
        try:
            await self._count(remote)
        except _REDIS_DOWN as exc:
            log.warning("bus.batch_failed", extra={"messages": len(remote), "error": str(exc) or repr(exc)})
            if not self.health.up:  # not answering: kept until it does (an error answer is not retried)
                self._keep([_Kept(item[0], item[1], item) for item in remote])

    async def _count(self, remote: list[Counted]) -> None:
        """Publish and count a batch (raises when Redis did not take it)."""
        grown, rebuild = await self.book.publish_and_count(self.node_id, remote)
        self._local_unread(grown)
        if not rebuild:
            return
        # Tickets whose reader set Redis lost (or never had): rebuilt from the database
        # for the whole batch at once, then counted (already published: no channel).
        wanted = set(rebuild)
        try:
            await self.book.set_readers(await self.reads.ticket_readers(wanted))
            grown, _ = await self.book.publish_and_count(
                self.node_id, [("", b"", ticket, seq, author, who)
                               for _channel, _payload, ticket, seq, author, who in remote if ticket in wanted])
        except _REDIS_DOWN as exc:
            log.warning("unread.count_failed", extra={"tickets": len(wanted), "error": str(exc) or repr(exc)})
            return
        self._local_unread(grown)

    def _local_unread(self, grown: list[tuple[str, int, int]]) -> None:
        """Unread counts that grew: Redis already told the other nodes; tell this one."""
        for reader, ticket_id, count in grown:
            self.router.route(self.keys.reader_channel(reader),
                              Event("unread", views.unread({ticket_id: count}, True)))

    # --------------------------------------------------------------- tickets
    async def ticket(self, ticket: Ticket, *, origin: str | None = None, inbox: bool = True) -> None:
        """A ticket was created or changed: its shop, and (unless held) the inbox."""
        view = (await agent_views(self.presence, [ticket], self.wall.now()))[0]
        frame = views.ticket(view)
        await self._publish(self.keys.shop_channel(ticket.shop_id), Event("ticket", frame, origin))
        if inbox and ticket.queued_until is None:
            await self._publish(self.keys.inbox_channel, Event("ticket", frame))

    async def assigned(self, agent_id: str, ticket: Ticket, by: Author) -> None:
        """Tell the agent a ticket was just assigned to it: all of its connections, on
        every node (its reader channel); kept while Redis does not answer."""
        view = (await agent_views(self.presence, [ticket], self.wall.now()))[0]
        await self._publish(self.keys.reader_channel(agent_key(agent_id)),
                            Event("assigned", views.assigned(view, (by.kind, by.id, by.name))))

    def touch(self, ticket_id: int) -> None:
        """A ticket changed through a message: agents' inboxes hear of it, coalesced."""
        self._inbox_pending[ticket_id] = None
        self._inbox_wakeup.set()

    async def run_inbox(self) -> None:
        """Sends the coalesced inbox updates, about once a second per busy ticket."""
        while True:
            await self._inbox_wakeup.wait()
            self._inbox_wakeup.clear()
            await self.flush_inbox()
            await asyncio.sleep(self.inbox_interval)

    async def flush_inbox(self) -> None:
        pending, self._inbox_pending = list(self._inbox_pending), {}
        if not pending:
            return
        try:
            # One query and one Redis round trip for every busy ticket of the second.
            found = [t for t in await self.tickets.get_many(pending) if t.queued_until is None]
            for view in await agent_views(self.presence, found, self.wall.now()):
                await self._publish(self.keys.inbox_channel, Event("ticket", views.ticket(view)))
        except DATABASE_DOWN as exc:
            # Tried again at the next flush (about a second): an inbox row lags, none is lost.
            log.warning("inbox.flush_failed", extra={"tickets": len(pending), "error": describe(exc)})
            for ticket_id in pending:
                self._inbox_pending.setdefault(ticket_id, None)
            self._inbox_wakeup.set()
        except Exception:
            log.exception("inbox.flush_failed", extra={"tickets": len(pending)})

    @contextlib.asynccontextmanager
    async def running(self) -> Any:
        """The inbox feed runs as long as anything may announce (and is flushed at the end)."""
        task = asyncio.get_running_loop().create_task(self.run_inbox(), name="inbox")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.flush_inbox()
            await self.replay()  # what is still kept, if Redis answers now

    # ------------------------------------------------------- not stored, live
    async def typing(self, shop_id: str, ticket_id: int, who: Principal, origin: str) -> None:
        await self._publish(self.keys.shop_channel(shop_id),
                            Event("typing", views.typing(ticket_id, who), origin, side=who.role.value), keep=False)

    async def unread(self, reader: str, counts: dict[int, int], badge: bool, *, origin: str | None = None,
                     ref: object = None) -> None:
        """To all of the reader's connections; the one that asked (`origin`) gets its `ref`."""
        event = Event("unread", views.unread(counts, badge))
        if origin is not None and ref is not None:
            event.origin, event.ref = origin, ref
        await self._publish(self.keys.reader_channel(reader), event)

    async def viewers(self, event: Event) -> None:
        """Who has a ticket open changed: to the agents following it (by the inbox
        channel, which only agents' consoles listen on; not kept while Redis is away)."""
        await self._publish(self.keys.inbox_channel, event, keep=False)

    async def presence_changed(self, frame: dict[str, Any]) -> None:
        await self._publish(self.keys.presence_channel, Event("presence", frame), keep=False)

    def customer_presence(self, shop_id: str, online: bool) -> tuple[list[str], bytes]:
        """Where a shop's presence change goes and the payload other nodes get (for
        the arrival and leaving scripts, which publish it themselves)."""
        event = Event("customer_presence", views.customer_presence(shop_id, online))
        return [self.keys.inbox_channel, self.keys.shop_channel(shop_id)], envelope(self.node_id, event)

    def customer_presence_here(self, shop_id: str, online: bool) -> None:
        """The local half of a presence change Redis already carried to the other nodes."""
        event = Event("customer_presence", views.customer_presence(shop_id, online))
        for channel in (self.keys.inbox_channel, self.keys.shop_channel(shop_id)):
            self.router.route(channel, event)

    async def _publish(self, channel: str, event: Event, *, keep: bool = True) -> None:
        """To this node's connections at once, and to the other nodes through Redis (or,
        with `keep`, once Redis answers again)."""
        self.router.route(channel, event)
        payload = envelope(self.node_id, event)
        if self._backlog or not self.health.up:
            if keep:
                self._keep([_Kept(channel, payload)])
            return
        if not await self.bus.publish(channel, payload) and keep and not self.health.up:
            self._keep([_Kept(channel, payload)])

    # ------------------------------------------------------- the backlog
    def _keep(self, entries: list[_Kept]) -> None:
        if not self._backlog:
            log.warning("announce.keeping", extra={"events": len(entries)})
        for entry in entries:
            if len(self._backlog) >= BACKLOG_MAX:
                self._backlog.popleft()
                if not self.dropped % 1000:
                    log.warning("announce.backlog_full", extra={"dropped": self.dropped + 1})
                self.dropped += 1
            self._backlog.append(entry)

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    async def replay(self) -> None:
        """Redis answers again: what was kept goes out, oldest first, before anything
        newer (which keeps joining the backlog until it is empty)."""
        if self._replaying or not self._backlog:
            return
        self._replaying = True
        sent = 0
        try:
            while self._backlog and self.health.up:
                chunk = self._take_run()
                try:
                    if chunk[0].message is not None:
                        await self._count([entry.message for entry in chunk if entry.message is not None])
                        done = True
                    else:
                        done = await self.bus.publish_many([(entry.channel, entry.payload) for entry in chunk])
                except _REDIS_DOWN as exc:
                    log.warning("announce.replay_failed", extra={"error": str(exc) or repr(exc)})
                    done = False
                if not done and not self.health.up:
                    self._put_back(chunk)  # not answering again: the next time it does
                    break
                if not done:
                    # An error answer (not a hang): retrying would not help, and the
                    # other nodes fetch these messages from the database at the next gap.
                    log.warning("announce.replay_dropped", extra={"events": len(chunk)})
                    self.dropped += len(chunk)
                    continue
                sent += len(chunk)
        finally:
            self._replaying = False
            log.info("announce.replayed", extra={"events": sent, "left": len(self._backlog), "dropped": self.dropped})

    def _take_run(self) -> list[_Kept]:
        """The oldest events of one kind (stored messages, or other events), up to a chunk."""
        backlog = self._backlog
        counted = backlog[0].message is not None
        chunk: list[_Kept] = []
        while backlog and len(chunk) < _REPLAY_CHUNK and (backlog[0].message is not None) == counted:
            chunk.append(backlog.popleft())
        return chunk

    def _put_back(self, chunk: list[_Kept]) -> None:
        room = BACKLOG_MAX - len(self._backlog)
        for entry in reversed(chunk[len(chunk) - room:] if room < len(chunk) else chunk):
            self._backlog.appendleft(entry)
        self.dropped += max(0, len(chunk) - room)
