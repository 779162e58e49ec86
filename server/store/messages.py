"""Messages in the database: storing one in its own transaction, and reading threads
back (history pages, gap fills, the replay of a resume, read a page at a time).

`post` is the single-transaction way to store a send (SQLite, sends with files, a
customer reply that reopens its ticket); the group commit (`server.store.writer`)
stores the rest. Both apply the same admission rule (`server.rules.tickets.admit_post`)
and are idempotent on `(ticket, author, client_id)`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy import and_, false, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.errors import Forbidden
from server.principal import Principal
from server.rules.deadlines import STOPPED, Running, after_message, answered
from server.rules.records import SYSTEM, Author, Message, Posted
from server.rules.retention import REOPENED_TEXT, text
from server.rules.tickets import (
    CUSTOMER_NOTE,
    REOPEN_CHANGES,
    ClosedUntil,
    Hold,
    StartClock,
    ThreadState,
    admit_post,
    may_be_stale,
    stale_reply,
)
from server.store.db import single_statements
from server.store.models import messages, tickets
from server.store.rows import (
    LAST_SEQS,
    MESSAGE_COLUMNS,
    REPLAY_PAGE,
    REPLAY_START,
    AttachFn,
    WorkingSeconds,
    answer_columns,
    append_message,
    bump_seq,
    insert_for,
    message_row,
    release_held,
)


class MessageStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.single = single_statements(engine)
        self._insert = insert_for(engine)

    async def post(self, principal: Principal, ticket_id: int, body: str, client_id: str, now: datetime,
                   hold: Hold, closed_until: ClosedUntil, start: StartClock, attachments: Sequence[str] = (),
                   attach: AttachFn | None = None, internal: bool = False, seen_seq: int | None = None,
                   seconds: WorkingSeconds | None = None) -> Posted:
        """Store a message (`internal`: an agent's private note); `Posted.new` is
        False for a retried send (same client_id). The ticket's reaction clock moves
        with it (`server.rules.deadlines`): an agent's answer stops it in the same
        statement; a customer's message that starts one costs one more UPDATE, once
        per exchange; a note moves nothing. With `seen_seq` (an agent's send), refused
        with `Stale` when another agent's message came after it (nothing is stored).
        `seconds` (the policy's working time) times an agent's answer for the reports
        (`server.rules.deadlines.answered`)."""
        if internal and not principal.is_agent:
            raise Forbidden(CUSTOMER_NOTE)  # before the ticket row is locked
        author = Author.of(principal)
        values = bump_seq(internal, now)
        answering = principal.is_agent and not internal  # a note answers nobody
        if answering and seconds is None:
            values["first_response_at"] = func.coalesce(tickets.c.first_response_at, now)
            values.update(STOPPED.columns())  # somebody reacted (a refused post rolls this back)
        async with self.engine.begin() as conn:
            # Locks the ticket row until commit: this is what makes seq gapless. (With
            # `seconds`, an agent's answer stops the clock below, once the row as it
            # was tells what the answer records for the reports.)
            row = (await conn.execute(
                update(tickets).where(tickets.c.id == ticket_id).values(**values)
                .returning(tickets.c.last_seq, tickets.c.shop_id, tickets.c.status, tickets.c.severity,
                           tickets.c.queued_until, tickets.c.live_until, tickets.c.lang, tickets.c.plan,
                           tickets.c.sla_due_at, tickets.c.first_response_at, tickets.c.sla_started_at,
                           tickets.c.created_at)
            )).first()
            state = None if row is None else ThreadState(row[1], row[2], row[3], row[4], row[5], row[7], row[8])
            admitted = admit_post(principal, ticket_id, state, now, hold, closed_until, internal)
            assert row is not None and state is not None  # admit_post raised otherwise
            seq = row[0]
            if may_be_stale(seen_seq, seq - 1):
                newer = await self._other_agents_since(conn, ticket_id, seen_seq or 0, author.id)
                if newer:
                    raise stale_reply(ticket_id, newer)  # rolls the transaction (and last_seq) back
            ins = self._insert(messages).values(
                ticket_id=ticket_id, seq=seq, author_kind=author.kind, author_id=author.id,
                author_name=author.name, body=body, client_id=client_id, created_at=now,
                queued_until=admitted.queued_until, internal=internal,
            ).on_conflict_do_nothing(
                index_elements=[messages.c.ticket_id, messages.c.author_kind, messages.c.author_id,
                                messages.c.client_id],
            ).returning(messages.c.id)
            msg_id = (await conn.execute(ins)).scalar()
            if msg_id is not None:
                message = Message(ticket_id, seq, msg_id, author, body, now, client_id, admitted.queued_until,
                                  internal=internal)
                if attachments and attach is not None:
                    message = replace(message, attachments=tuple(await attach(conn, list(attachments), ticket_id,
                                                                              msg_id)))
                notes: list[Message] = []
                released: list[Message] = []
                if answering and seconds is not None:
                    facts = answered(row[9], row[8], row[10], row[11], now,
                                     lambda a, b: seconds(state.severity, state.plan, a, b))
                    if facts is not None:
                        # Once per exchange, like the customer's side: the clock stops and
                        # the answer's facts are recorded in one more UPDATE.
                        await conn.execute(update(tickets).where(tickets.c.id == ticket_id).values(
                            **STOPPED.columns(), **answer_columns(facts, author.id, now)))
                clock = None if principal.is_agent else after_message(
                    Running(state.sla_due_at, None, None), "customer", admitted.reopens, now,
                    lambda at: start(state.severity, state.plan, at))
                if clock is not None and not admitted.reopens:
                    # The inbox row shows it through the announce path's coalesced refresh.
                    await conn.execute(update(tickets).where(tickets.c.id == ticket_id).values(**clock.columns()))
                if admitted.takes_over:
                    # An agent took the ticket in hand: out of the queue, its held
                    # messages to the agents, the customer's replies live till opening.
                    held = {"held_s": int((now - row[11]).total_seconds())} if state.queued_at(now) else {}
                    await conn.execute(update(tickets).where(tickets.c.id == ticket_id).values(
                        queued_until=None, live_until=admitted.live_until, **held))
                    released = await release_held(conn, ticket_id)
                if admitted.reopens:
                    # The customer wrote back: the ticket returns to support, the
                    # silent-customer chain stops.
                    await conn.execute(update(tickets).where(tickets.c.id == ticket_id).values(
                        **REOPEN_CHANGES, **(clock.columns() if clock is not None else {})))
                    notes.append(await append_message(conn, ticket_id, SYSTEM, text(REOPENED_TEXT, row[6]),
                                                      f"system:{uuid.uuid4().hex}", now, admitted.queued_until))
                return Posted(message, state.shop_id, new=True, notes=tuple(notes),
                              ticket_changed=admitted.reopens or (admitted.takes_over and state.queued_at(now)),
                              released=tuple(released), ticket_queued=admitted.ticket_queued)
            await conn.rollback()
        # The same client_id again: the first attempt's message, unchanged.
        async with self.single.connect() as conn:
            found = (await conn.execute(select(*MESSAGE_COLUMNS).where(and_(
                messages.c.ticket_id == ticket_id, messages.c.author_kind == author.kind,
                messages.c.author_id == author.id, messages.c.client_id == client_id,
            )))).one()
        return Posted(message_row(found), state.shop_id, new=False)

    @staticmethod
    async def _other_agents_since(conn: AsyncConnection, ticket_id: int, after: int, agent_id: str) -> list[int]:
        rows = await conn.execute(select(messages.c.seq).where(and_(
            messages.c.ticket_id == ticket_id, messages.c.seq > after, messages.c.author_kind == "agent",
            messages.c.author_id != agent_id, messages.c.internal == false())).order_by(messages.c.seq))
        return [r[0] for r in rows]

    # --------------------------------------------------------------- reading
    async def history(self, ticket_id: int, *, before_seq: int | None = None, after_seq: int | None = None,
                      limit: int = 50, public: bool = False) -> tuple[list[Message], bool]:
        """A page of the thread; `public`: without private notes (a customer's page)."""
        query = select(*MESSAGE_COLUMNS).where(messages.c.ticket_id == ticket_id)
        if public:
            query = query.where(messages.c.internal == false())
        if after_seq is not None:
            query = query.where(messages.c.seq > after_seq).order_by(messages.c.seq)
        else:
            if before_seq is not None:
                query = query.where(messages.c.seq < before_seq)
            query = query.order_by(messages.c.seq.desc())
        async with self.single.connect() as conn:
            rows = (await conn.execute(query.limit(limit + 1))).all()
        more = len(rows) > limit
        out = [message_row(r) for r in rows[:limit]]
        if after_seq is None:
            out.reverse()
        return out, more

    async def between(self, ticket_id: int, after_seq: int, upto_seq: int) -> list[Message]:
        """Messages with after_seq < seq <= upto_seq, oldest first (gap fills)."""
        async with self.single.connect() as conn:
            rows = (await conn.execute(select(*MESSAGE_COLUMNS).where(and_(
                messages.c.ticket_id == ticket_id, messages.c.seq > after_seq, messages.c.seq <= upto_seq,
            )).order_by(messages.c.seq))).all()
        return [message_row(r) for r in rows]

    async def replay_starts(self, windows: Mapping[int, tuple[int, int]], max_per_ticket: int
                            ) -> tuple[dict[int, int], set[int]]:
        """Where each ticket's replay of the messages in its window `(after, upto]`
        starts (after this seq): at `after`, or, where more than `max_per_ticket` were
        missed, just before the newest that many; and the tickets where more were
        missed. Only a window wider than the replay costs a query (on the index)."""
        starts = {t: after for t, (after, _) in windows.items()}
        incomplete: set[int] = set()
        wide = {t: w for t, w in windows.items() if w[1] - w[0] > max_per_ticket}
        if not wide:
            return starts, incomplete
        async with self.single.connect() as conn:
            for ticket_id, (after, upto) in wide.items():
                older = (await conn.execute(REPLAY_START, {"ticket": ticket_id, "after": after, "upto": upto,
                                                           "skip": max_per_ticket})).scalar()
                if older is not None:
                    starts[ticket_id] = int(older)
                    incomplete.add(ticket_id)
        return starts, incomplete

    async def replay_page(self, ticket_id: int, after_seq: int, upto_seq: int, limit: int) -> list[Message]:
        """One page of a replay, oldest first: the ticket's messages with
        `after_seq < seq <= upto_seq`, at most `limit` (keyset on (ticket, seq): the
        next page starts after this one's last seq)."""
        async with self.single.connect() as conn:
            rows = (await conn.execute(REPLAY_PAGE, {"ticket": ticket_id, "after": after_seq, "upto": upto_seq,
                                                     "limit": limit})).all()
        return [message_row(r) for r in rows]

    async def last_seqs(self, ticket_ids: Iterable[int]) -> dict[int, int]:
        ids = list(ticket_ids)
        if not ids:
            return {}
        async with self.single.connect() as conn:
            rows = await conn.execute(LAST_SEQS, {"ids": ids})
            return {r[0]: r[1] for r in rows}
