"""Agents in the database, and assignment as one transaction each.

The support team is recorded from the agents' tokens (`touch`, at a hello, at most once
an hour or when the token's name or departments change) and kept fresh while they are
connected (`seen`, about once a minute per node: the release job's "last seen").

`assign` gives tickets to online agents in ONE transaction that holds the candidate
agents' rows: on PostgreSQL `SELECT … ORDER BY id FOR UPDATE` (in id order: two
assigners never deadlock), on SQLite a write to those rows first (SQLite serializes
writers; taking the write lock before reading keeps a WAL snapshot from going stale
under us). Holding the rows, it counts each agent's open assigned tickets, lets the
rule choose (`server.rules.assignment.plan`) and stores each choice with a conditional
UPDATE (`WHERE assignee IS NULL`), so two nodes assigning at once never give one ticket
twice nor one agent more than its capacity: the second waits for the first's commit
and counts what it stored. `release` hands an offline agent's open tickets back to
the pool, one UPDATE that only one worker wins per ticket. Each change adds its
private note to the thread in the same transaction.

What this module does not do: decide (the rules do), talk to Redis or sockets.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, or_, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.principal import Principal
from server.rules.assignment import Candidate, plan
from server.rules.records import SYSTEM, Message
from server.store.db import single_statements
from server.store.models import ACTIVE_TICKETS, agents, tickets
from server.store.rows import append_message, insert_for

POOL_BATCH = 200  # pool tickets one run of the job looks at (the most urgent first)


@dataclass(frozen=True, slots=True)
class Assigned:
    """One ticket that changed hands, with the private note that records it."""

    ticket: int
    agent: str | None  # None: back in the pool
    note: Message


class AgentStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.single = single_statements(engine)
        self._insert = insert_for(engine)

    @property
    def _postgres(self) -> bool:
        return self._insert is postgresql.insert

    # --------------------------------------------------------------- the team
    async def touch(self, principal: Principal, now: datetime) -> None:
        """Record the agent as its token names it (one statement)."""
        stmt = self._insert(agents).values(id=principal.id, name=principal.name,
                                           departments=list(principal.departments), first_seen_at=now,
                                           last_seen_at=now)
        stmt = stmt.on_conflict_do_update(index_elements=[agents.c.id],
                                          set_={"name": stmt.excluded.name, "departments": stmt.excluded.departments,
                                                "last_seen_at": stmt.excluded.last_seen_at})
        # begin(): one statement, committed (on PostgreSQL no BEGIN goes out: autocommit).
        async with self.single.begin() as conn:
            await conn.execute(stmt)

    async def known(self, agent_id: str) -> bool:
        async with self.single.connect() as conn:
            return (await conn.execute(select(agents.c.id).where(agents.c.id == agent_id))).first() is not None

    async def seen(self, agent_ids: Iterable[str], now: datetime) -> None:
        """These agents are connected now (one statement for all of them)."""
        ids = sorted(set(agent_ids))
        if not ids:
            return
        async with self.single.begin() as conn:
            await conn.execute(update(agents).where(agents.c.id.in_(ids)).values(last_seen_at=now))

    # ------------------------------------------------------------- assigning
    async def assign(self, online: Sequence[str], now: datetime, capacity: int,
                     ticket_ids: Sequence[int] | None = None, limit: int = POOL_BATCH,
                     note: Callable[[str, str, str], str] | None = None) -> list[Assigned]:
        """Give unassigned active tickets (these, or the pool's most urgent) that are
        not held for working hours to the online agents, by the rule; one transaction.
        `note(lang, agent name, agent id)` words each assignment's private note."""
        wanted = sorted(set(online))
        if not wanted or ticket_ids is not None and not ticket_ids:
            return []
        out: list[Assigned] = []
        async with self.engine.begin() as conn:
            rows = await self._lock_agents(conn, wanted)
            if not rows:
                return []
            candidates = [Candidate(r.id, tuple(r.departments or ()), r.last_assigned_at) for r in rows]
            names = {r.id: r.name for r in rows}
            loads = {r[0]: int(r[1]) for r in await conn.execute(
                select(tickets.c.assignee, func.count()).where(tickets.c.assignee.in_(names), ACTIVE_TICKETS)
                .group_by(tickets.c.assignee))}
            pool = select(tickets.c.id, tickets.c.department, tickets.c.lang).where(
                tickets.c.assignee.is_(None), ACTIVE_TICKETS,
                or_(tickets.c.queued_until.is_(None), tickets.c.queued_until <= now))
            if ticket_ids is not None:
                pool = pool.where(tickets.c.id.in_(sorted(set(ticket_ids))))
            pool = pool.order_by(tickets.c.inbox_rank, tickets.c.sla_due_at, tickets.c.id).limit(limit)
            found = (await conn.execute(pool)).all()
            langs = {r.id: r.lang for r in found}
            chosen = plan([(r.id, r.department) for r in found], candidates, loads, capacity, now)
            for ticket_id, agent_id in chosen.items():
                taken = await conn.execute(update(tickets).where(
                    tickets.c.id == ticket_id, tickets.c.assignee.is_(None), ACTIVE_TICKETS,
                ).values(assignee=agent_id, updated_at=now))
                if taken.rowcount != 1:
                    continue  # an agent assigned it by hand meanwhile
                body = note(langs[ticket_id], names[agent_id], agent_id) if note else f"→ {agent_id}"
                message = await append_message(conn, ticket_id, SYSTEM, body, f"system:{uuid.uuid4().hex}", now,
                                               None, internal=True)
                out.append(Assigned(ticket_id, agent_id, message))
            given = sorted({a.agent for a in out if a.agent is not None})
            if given:
                await conn.execute(update(agents).where(agents.c.id.in_(given)).values(last_assigned_at=now))
        return out

    async def _lock_agents(self, conn: AsyncConnection, ids: list[str]) -> list[Row[Any, Any, Any, Any]]:
        columns = (agents.c.id, agents.c.name, agents.c.departments, agents.c.last_assigned_at)
        if self._postgres:
            query = select(*columns).where(agents.c.id.in_(ids)).order_by(agents.c.id).with_for_update()
            return list((await conn.execute(query)).all())
        # SQLite: a write first takes the database's write lock (waiting for another
        # writer up to the busy timeout) before anything is read.
        touched = update(agents).where(agents.c.id.in_(ids)).values(id=agents.c.id).returning(*columns)
        return sorted((await conn.execute(touched)).all(), key=lambda r: r.id)

    # -------------------------------------------------------------- releasing
    async def stale_assignees(self, seen_before: datetime) -> list[tuple[str, datetime | None]]:
        """Agents holding open tickets whom Pomoc has not seen since `seen_before` (or
        ever), with when it last saw them: the candidates for a release (their
        presence decides)."""
        query = (select(tickets.c.assignee, agents.c.last_seen_at).distinct()
                 .select_from(tickets.outerjoin(agents, agents.c.id == tickets.c.assignee))
                 .where(tickets.c.assignee.is_not(None), ACTIVE_TICKETS,
                        or_(agents.c.last_seen_at.is_(None), agents.c.last_seen_at <= seen_before)))
        async with self.single.connect() as conn:
            return sorted((r[0], r[1]) for r in await conn.execute(query))

    async def release(self, agent_id: str, seen_before: datetime, now: datetime,
                      note: Callable[[str], str]) -> list[Assigned]:
        """The agent's open tickets back to the pool, unless it was seen meanwhile;
        `note(lang)` words each one's private note. One transaction."""
        fresh = select(agents.c.id).where(agents.c.id == agent_id, agents.c.last_seen_at > seen_before)
        out: list[Assigned] = []
        async with self.engine.begin() as conn:
            rows = (await conn.execute(update(tickets).where(
                tickets.c.assignee == agent_id, ACTIVE_TICKETS, ~fresh.exists(),
            ).values(assignee=None, updated_at=now).returning(tickets.c.id, tickets.c.lang))).all()
            for ticket_id, lang in sorted(rows):
                message = await append_message(conn, ticket_id, SYSTEM, note(lang), f"system:{uuid.uuid4().hex}",
                                               now, None, internal=True)
                out.append(Assigned(ticket_id, None, message))
        return out

