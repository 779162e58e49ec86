"""The off-hours queue: releasing held tickets and messages when support opens.

Outside working hours a non-critical ticket or customer message is stored and acked
at once but carries `queued_until` (the next opening) and reaches no agent. The
worker's release job clears `queued_until` on whatever is due — the plans that go
first (priority, `POMOC_PLANS`' ranks: a held ticket has its first deadline running,
a held follow-up its next one, so `inbox_rank` is its plan's rank), then critical
first and by severity, then (fair use) shops with a record of overstated claims
after the rest, then oldest first — and the caller then tells the agents.

A ticket and its held messages are released together, in one transaction, by one
worker (a queued ticket's messages wait for the ticket; follow-ups held on a ticket
that is not queued go on their own). On PostgreSQL the due tickets are locked `FOR
UPDATE SKIP LOCKED`, and so are the tickets of the held messages taken (`FOR UPDATE
OF tickets SKIP LOCKED`): a second worker running at once skips the tickets the
first one holds and their messages with them. Each `UPDATE … RETURNING` only clears
what is still held, so nothing is released twice. SQLite takes its write lock before
reading (a second worker waits for the first to commit, then finds nothing due).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from server.rules.severity import BY_PRIORITY
from server.store.models import messages, tickets

# Severity order for SQL: critical 0 … suggestion 4.
_RANK = case({s.value: i for i, s in enumerate(BY_PRIORITY)}, value=tickets.c.severity, else_=len(BY_PRIORITY))


@dataclass(frozen=True, slots=True)
class Released:
    tickets: list[int]
    messages: list[tuple[int, int]]  # (ticket, seq), in release order


async def release_due(engine: AsyncEngine, now: datetime, batch: int = 500) -> Released:
    postgres = engine.dialect.name == "postgresql"
    async with engine.connect() as conn:
        if not postgres:
            # The write lock first: reads taken before it could be stale by the
            # time of the writes (another worker may have released them meanwhile).
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
        due = (select(tickets.c.id).where(and_(tickets.c.queued_until.is_not(None), tickets.c.queued_until <= now))
               .order_by(tickets.c.inbox_rank, _RANK, tickets.c.deprioritized, tickets.c.created_at, tickets.c.id)
               .limit(batch))
        if postgres:
            due = due.with_for_update(skip_locked=True)
        ids = [r[0] for r in await conn.execute(due)]
        released_tickets: list[int] = []
        if ids:
            changed = {r[0] for r in await conn.execute(
                update(tickets).where(and_(tickets.c.id.in_(ids), tickets.c.queued_until.is_not(None)))
                .values(queued_until=None).returning(tickets.c.id))}
            released_tickets = [i for i in ids if i in changed]
        # The held messages of tickets not waiting in the queue: the ones just
        # released (this transaction holds them) and tickets that never were, whose
        # follow-ups alone were held. A ticket still queued keeps its messages until
        # it is released itself; a ticket another worker holds is that one's to release.
        held = (select(messages.c.id, messages.c.ticket_id, messages.c.seq)
                .select_from(messages.join(tickets, tickets.c.id == messages.c.ticket_id))
                .where(and_(messages.c.queued_until.is_not(None), messages.c.queued_until <= now,
                            tickets.c.queued_until.is_(None)))
                .order_by(tickets.c.inbox_rank, _RANK, tickets.c.deprioritized, messages.c.created_at, messages.c.id)
                .limit(batch * 10))
        if postgres:
            held = held.with_for_update(of=tickets, skip_locked=True)
        rows = (await conn.execute(held)).all()
        released_messages: list[tuple[int, int]] = []
        if rows:
            changed = {r[0] for r in await conn.execute(
                update(messages).where(and_(messages.c.id.in_([r[0] for r in rows]),
                                            messages.c.queued_until.is_not(None)))
                .values(queued_until=None).returning(messages.c.id))}
            released_messages = [(r[1], r[2]) for r in rows if r[0] in changed]
        await conn.commit()
    return Released(released_tickets, released_messages)
