"""Assignment, the use case: new tickets to the least loaded online agent, the pool, and
releasing an offline agent's tickets; the assignee is told at once.

With `POMOC_AUTO_ASSIGN` on:

- A new ticket (not held for working hours) is assigned right after it is stored,
  before it is announced, so the inbox hears of it once, with its assignee
  (`opened`; one Redis call for who is online, one transaction).
- A ticket that found nobody (everybody offline, away or at capacity), or that was
  released, stays in the pool (`assignee` null). The jobs look at the pool on every
  round (`pool`, every `POMOC_JOBS_INTERVAL`): capacity frees up in many ways (an
  agent resolves, closes or hands over a ticket, comes online, comes back from away,
  a held ticket is released at opening), and one place that looks at the pool covers
  them all, on the worker, never on a web node's hello or message path. The price is
  that a ticket may wait one jobs interval (5 s) for an agent who just came online.
- An assignee with no live connection whom Pomoc has not seen for
  `POMOC_ASSIGN_RELEASE_AFTER` loses its open tickets to the pool, each with a private
  note (`release`, a job); the pool job then gives them to someone online.

Who is online is presence's (Redis): "online", never "away". When Redis does not
answer nobody is assigned and nobody is released (both wait for the next round).
Whatever an assignment stores goes out through the announce path: the ticket, its
private note, and `assigned` to the assignee's connections. The agents' "last seen"
is refreshed here too (`run_seen`): about once a minute per node, one statement for
every agent connected to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial

from redis.exceptions import RedisError

from server.chat.announce import Announcer
from server.chat.connection import Roster
from server.clock import Clock
from server.presence import Presence
from server.rules.assignment import assigned_note, released_note, stale
from server.rules.records import SYSTEM, Committed, Ticket
from server.settings import Settings
from server.store.agents import AgentStore, Assigned
from server.store.db import DATABASE_DOWN, describe
from server.store.tickets import TicketStore

log = logging.getLogger(__name__)
_REDIS_DOWN = (RedisError, OSError, TimeoutError)
SEEN_EVERY = timedelta(seconds=60)  # how often a node refreshes its connected agents' "last seen"


class Assigner:
    def __init__(self, *, settings: Settings, agents: AgentStore, tickets: TicketStore, presence: Presence,
                 announce: Announcer, roster: Roster, clock: Clock) -> None:
        self.settings = settings
        self.agents = agents
        self.tickets = tickets
        self.presence = presence
        self.announce = announce
        self.roster = roster
        self.clock = clock

    @property
    def on(self) -> bool:
        return self.settings.auto_assign

    async def _online(self) -> list[str]:
        try:
            return await self.presence.online_agents()
        except _REDIS_DOWN as exc:
            log.warning("assign.presence_unavailable", extra={"error": str(exc) or repr(exc)})
            return []

    # ---------------------------------------------------------------- new
    async def opened(self, ticket: Ticket) -> tuple[Ticket, Assigned | None]:
        """A ticket just stored: assigned if somebody may take it (the ticket as it
        is now, and the assignment to announce with it). Never fails the opening."""
        now = self.clock.now()
        if not self.on or ticket.assignee is not None or (ticket.queued_until is not None
                                                           and ticket.queued_until > now):
            return ticket, None
        online = await self._online()
        if not online:
            return ticket, None
        try:
            done = await self.agents.assign(online, now, self.settings.agent_capacity, ticket_ids=[ticket.id],
                                            note=assigned_note)
            if not done:
                return ticket, None
            return await self.tickets.get(ticket.id), done[0]
        except DATABASE_DOWN as exc:
            # It stays in the pool: the next round of the jobs assigns it.
            log.warning("assign.failed", extra={"ticket_id": ticket.id, "error": describe(exc)})
            return ticket, None

    async def tell(self, ticket: Ticket, done: Assigned) -> None:
        """The assignee hears of its new ticket (after the ticket and note are announced)."""
        if done.agent is not None:
            await self.announce.assigned(done.agent, ticket, SYSTEM)
            log.info("ticket.assigned", extra={"ticket_id": ticket.id, "agent": done.agent})

    # ------------------------------------------------------------ the jobs
    async def pool(self, now: datetime) -> int:
        """Give the pool's most urgent tickets to whoever may take them now."""
        if not self.on:
            return 0
        online = await self._online()
        if not online:
            return 0
        done = await self.agents.assign(online, now, self.settings.agent_capacity, note=assigned_note)
        await self._announce(done)
        return len(done)

    async def release(self, now: datetime) -> int:
        """Offline assignees' open tickets back to the pool."""
        if not self.on:
            return 0
        after = self.settings.assign_release_after
        before = now - after
        candidates = await self.agents.stale_assignees(before)
        if not candidates:
            return 0
        try:
            statuses = await self.presence.statuses(agent for agent, _ in candidates)
        except _REDIS_DOWN as exc:
            # Not knowing who is connected, release nobody.
            log.warning("assign.presence_unavailable", extra={"error": str(exc) or repr(exc)})
            return 0
        released = 0
        for agent, seen in candidates:
            if not stale(statuses.get(agent, "offline") != "offline", seen, now, after):
                continue  # connected (online or away): its tickets stay
            done = await self.agents.release(agent, before, now, partial(released_note, agent_id=agent,
                                                                         release_after=after))
            await self._announce(done)
            if done:
                log.info("assign.released", extra={"agent": agent, "tickets": len(done)})
            released += len(done)
        return released

    async def _announce(self, done: Sequence[Assigned]) -> None:
        if not done:
            return
        found = {t.id: t for t in await self.tickets.get_many(d.ticket for d in done)}
        for item in done:
            ticket = found.get(item.ticket)
            if ticket is None:
                continue  # purged meanwhile
            await self.announce.ticket(ticket)
            await self.announce.committed([Committed(ticket.shop_id, item.note, None, "system")])
            await self.tell(ticket, item)

    # ------------------------------------------------------------ last seen
    async def run_seen(self) -> None:
        """Refresh the "last seen" of the agents connected here, about once a minute."""
        every = SEEN_EVERY.total_seconds()
        timeout = self.settings.database_timeout.total_seconds()
        while True:
            await asyncio.sleep(every)
            ids = {s.principal.id for s in self.roster.sessions()
                   if s.principal is not None and s.principal.is_agent and s.admitted}
            if not ids:
                continue
            try:
                await asyncio.wait_for(self.agents.seen(ids, self.clock.now()), timeout)
            except (*DATABASE_DOWN, TimeoutError) as exc:
                log.warning("agents.seen_failed", extra={"agents": len(ids), "error": describe(exc)})
