"""The ticket lifecycle jobs: reminders to silent customers, closing, retention purge,
and the privacy requests (export and erase a shop).

Every step claims its ticket with a conditional UPDATE in the same transaction as
the system message it writes, so two workers never do a step twice and a crash
never leaves a step half done. The purge deletes in bounded batches (by ticket and
seq range, along the primary index), so a million old messages never hold a long
lock; it is idempotent and never touches a ticket before its retention ends.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, false, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.rules.notices import Notice, reminder_notice, silent_resolved_notice
from server.rules.records import SYSTEM, Message
from server.rules.retention import CLOSED_TEXT, SILENT_RESOLVED_TEXT, LifecyclePolicy, reminder_text, text
from server.store.models import customers, messages, outbox, ratings, read_cursors, shops, tickets
from server.store.notifications import queue_notice
from server.store.rows import append_message, insert_for


@dataclass(frozen=True, slots=True)
class Step:
    ticket_id: int
    message: Message


@dataclass(slots=True)
class PurgePlan:
    """What a purge as of `cutoff` removes."""

    cutoff: datetime
    tickets: list[int] = field(default_factory=list)
    messages: int = 0
    shops: dict[str, int] = field(default_factory=dict)
    # Messages per ticket (its last seq: seqs are gapless), to size the batches.
    sizes: dict[int, int] = field(default_factory=dict)

    def chunks(self, batch: int) -> Iterable[list[int]]:
        """Tickets in groups holding at most about `batch` messages (a bigger ticket
        goes alone and is deleted in seq ranges)."""
        chunk: list[int] = []
        held = 0
        for ticket_id in self.tickets:
            size = self.sizes.get(ticket_id, 0)
            if chunk and (held + size > batch or len(chunk) >= 1000):
                yield chunk
                chunk, held = [], 0
            chunk.append(ticket_id)
            held += size
        if chunk:
            yield chunk

    def summary(self) -> dict[str, Any]:
        return {"closed_before": self.cutoff.isoformat(), "tickets": len(self.tickets), "messages": self.messages,
                "ticket_ids": self.tickets}


async def _append_system(conn: AsyncConnection, ticket_id: int, body: str, now: datetime) -> Message:
    return await append_message(conn, ticket_id, SYSTEM, body, f"system:{uuid.uuid4().hex}", now, None)


class Lifecycle:
    def __init__(self, engine: AsyncEngine, policy: LifecyclePolicy, batch: int = 10_000) -> None:
        self.engine = engine
        self.policy = policy
        self.batch = batch
        self._insert = insert_for(engine)

    # -------------------------------------------------------- silent customer
    async def remind(self, now: datetime) -> list[Step]:
        """Reminders to customers who went silent, each exactly once."""
        done: list[Step] = []
        for step in range(len(self.policy.reminders)):
            before = self.policy.reminder_due_before(step, now)
            async with self.engine.connect() as conn:
                due = [(r[0], r[1]) for r in await conn.execute(select(tickets.c.id, tickets.c.lang).where(and_(
                    tickets.c.status == "waiting_on_customer", tickets.c.reminders_sent == step,
                    tickets.c.waiting_since <= before)).limit(1000))]
            for ticket_id, lang in due:
                async with self.engine.begin() as conn:
                    claimed = await conn.execute(update(tickets).where(and_(
                        tickets.c.id == ticket_id, tickets.c.status == "waiting_on_customer",
                        tickets.c.reminders_sent == step, tickets.c.waiting_since <= before,
                    )).values(reminders_sent=step + 1))
                    if claimed.rowcount == 1:
                        body = reminder_text(step, lang)
                        message = await _append_system(conn, ticket_id, body, now)
                        # Seed 002's two contact attempts: in the chat and by mail.
                        await queue_notice(conn, self._insert, ticket_id, reminder_notice(step, body), message.seq,
                                           now)
                        done.append(Step(ticket_id, message))
        return done

    async def resolve_silent(self, now: datetime) -> list[Step]:
        before = self.policy.silent_resolve_before(now)
        reminders = len(self.policy.reminders)
        return await self._transition(
            and_(tickets.c.status == "waiting_on_customer", tickets.c.reminders_sent >= reminders,
                 tickets.c.waiting_since <= before),
            {"status": "resolved", "resolved_at": now, "waiting_since": None}, SILENT_RESOLVED_TEXT, now,
            mail=silent_resolved_notice)

    async def close_resolved(self, now: datetime) -> list[Step]:
        before = self.policy.close_resolved_before(now)
        return await self._transition(
            and_(tickets.c.status == "resolved", tickets.c.resolved_at <= before),
            {"status": "closed", "closed_at": now}, CLOSED_TEXT, now)

    async def _transition(self, condition: Any, values: dict[str, Any], note: dict[str, str],
                          now: datetime, mail: Callable[[str], Notice] | None = None) -> list[Step]:
        async with self.engine.connect() as conn:
            due = [(r[0], r[1]) for r in await conn.execute(select(tickets.c.id, tickets.c.lang).where(condition)
                                                            .limit(1000))]
        done: list[Step] = []
        for ticket_id, lang in due:
            async with self.engine.begin() as conn:
                claimed = await conn.execute(update(tickets).where(and_(tickets.c.id == ticket_id, condition))
                                             .values(**values, updated_at=now))
                if claimed.rowcount == 1:
                    body = text(note, lang)
                    message = await _append_system(conn, ticket_id, body, now)
                    if mail is not None:
                        await queue_notice(conn, self._insert, ticket_id, mail(body), message.seq, now)
                    done.append(Step(ticket_id, message))
        return done

    # ---------------------------------------------------------------- purge
    async def plan_purge(self, now: datetime, shop: str | None = None) -> PurgePlan:
        """The tickets (and their message count) past retention as of `now`; with
        `shop`, every ticket of that shop whatever its state (erasure)."""
        cutoff = self.policy.purge_closed_before(now)
        if shop is None:
            condition = and_(tickets.c.status == "closed", tickets.c.closed_at <= cutoff)
        else:
            condition = tickets.c.shop_id == shop
        plan = PurgePlan(cutoff)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(tickets.c.id, tickets.c.shop_id, tickets.c.last_seq)
                                       .where(condition).order_by(tickets.c.id))).all()
            plan.tickets = [r[0] for r in rows]
            plan.sizes = {r[0]: int(r[2] or 0) for r in rows}
            for _, shop_id, _ in rows:
                plan.shops[shop_id] = plan.shops.get(shop_id, 0) + 1
            if plan.tickets:
                counted = 0
                for chunk in _chunks(plan.tickets, 1000):
                    counted += int((await conn.execute(select(func.count()).select_from(messages)
                                                       .where(messages.c.ticket_id.in_(chunk)))).scalar_one())
                plan.messages = counted
        return plan

    async def readers_by_ticket(self, ticket_ids: list[int]) -> dict[int, set[str]]:
        """Per ticket, every reader key that may hold Redis state about it: the users
        of its shop and the agents with a cursor on it."""
        out: dict[int, set[str]] = {t: set() for t in ticket_ids}
        async with self.engine.connect() as conn:
            shop_of = {r[0]: r[1] for r in await conn.execute(
                select(tickets.c.id, tickets.c.shop_id).where(tickets.c.id.in_(ticket_ids)))}
            users: dict[str, list[str]] = {}
            for shop_id, user_id in await conn.execute(
                    select(customers.c.shop_id, customers.c.user_id)
                    .where(customers.c.shop_id.in_(set(shop_of.values())))):
                users.setdefault(shop_id, []).append(f"c:{shop_id}:{user_id}")
            for ticket_id, reader in await conn.execute(
                    select(read_cursors.c.ticket_id, read_cursors.c.reader)
                    .where(read_cursors.c.ticket_id.in_(ticket_ids))):
                out[ticket_id].add(reader)
        for ticket_id, shop_id in shop_of.items():
            out[ticket_id].update(users.get(shop_id, ()))
        return out

    async def purge_tickets(self, ticket_ids: list[int], sizes: dict[int, int]) -> int:
        """Delete the tickets with their messages, cursors and outbox rows; returns
        the number of messages deleted. Small tickets go together, a big one in seq
        ranges, so no statement deletes more than about `batch` messages."""
        deleted = 0
        for ticket_id in [t for t in ticket_ids if sizes.get(t, 0) > self.batch]:
            for low in range(0, sizes[ticket_id], self.batch):
                async with self.engine.begin() as conn:
                    result = await conn.execute(delete(messages).where(and_(
                        messages.c.ticket_id == ticket_id, messages.c.seq > low,
                        messages.c.seq <= low + self.batch)))
                    deleted += result.rowcount or 0
        async with self.engine.begin() as conn:
            # Whatever is left (small tickets, and anything past a big one's last seq).
            deleted += (await conn.execute(delete(messages).where(messages.c.ticket_id.in_(ticket_ids)))).rowcount or 0
            await conn.execute(delete(read_cursors).where(read_cursors.c.ticket_id.in_(ticket_ids)))
            await conn.execute(delete(outbox).where(outbox.c.ticket_id.in_(ticket_ids)))
            await conn.execute(delete(ratings).where(ratings.c.ticket_id.in_(ticket_ids)))
            await conn.execute(delete(tickets).where(tickets.c.id.in_(ticket_ids)))
        return deleted

    async def erase_shop_rows(self, shop: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(customers).where(customers.c.shop_id == shop))
            await conn.execute(delete(shops).where(shops.c.id == shop))

    # --------------------------------------------------------------- export
    async def export_shop(self, shop: str) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            shop_row = (await conn.execute(select(shops).where(shops.c.id == shop))).first()
            if shop_row is None:
                return {}
            users = [dict(r._mapping) for r in await conn.execute(select(customers).where(customers.c.shop_id == shop))]
            out_tickets = []
            for ticket in await conn.execute(select(tickets).where(tickets.c.shop_id == shop).order_by(tickets.c.id)):
                # What the shop may see of its threads: support's private notes are not theirs.
                thread = [_public(dict(m._mapping)) for m in await conn.execute(
                    select(messages).where(messages.c.ticket_id == ticket.id, messages.c.internal == false())
                    .order_by(messages.c.seq))]
                row = dict(ticket._mapping)
                row["last_seq"] = row.pop("last_public_seq")
                answers = [dict(r._mapping) for r in await conn.execute(
                    select(ratings).where(ratings.c.ticket_id == ticket.id).order_by(ratings.c.id))]
                out_tickets.append({**row, "messages": thread, "ratings": answers})
        return {"shop": dict(shop_row._mapping), "customers": users, "tickets": out_tickets}


def _public(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out.pop("internal", None)
    return out


def _chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
