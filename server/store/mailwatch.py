"""What the worker reads to decide which mails to queue itself: unread agent replies.

`pending_replies` finds, per ticket, the agent replies its opener has neither read
(their read cursor) nor been mailed yet (`mail_cursors`), among the replies written
since `since` — one range scan of the partial index of agent messages by time
(`ix_messages_agent_replies`), joined to the tickets, the opener's stored address and
both cursors; closed tickets, openers without an address and openers who turned that
mail off are left out. `queue_replies` moves the mailed cursor and stores the mail
in one transaction, and only if the cursor still stands where the scan saw it: two
workers deciding at once queue one mail, never two overlapping ones.

Deciding is `server.rules.notices.replies_mail`'s; presence is Redis's
(`server.realtime.online`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, exists, false, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from server.rules.notices import Reply
from server.store.db import single_statements
from server.store.models import (
    AGENT_MESSAGES,
    customers,
    mail_cursors,
    mail_optouts,
    messages,
    read_cursors,
    tickets,
)
from server.store.notifications import queue
from server.store.rows import insert_for

SCAN_LIMIT = 5000


@dataclass(slots=True)
class Pending:
    """A ticket's agent replies its opener has neither read nor been mailed."""

    ticket_id: int
    shop_id: str
    user_id: str
    email: str
    lang: str
    read_seq: int
    mailed_seq: int
    replies: list[Reply] = field(default_factory=list)

    @property
    def reader(self) -> str:
        """The opener's reader key (server.principal.Principal.key)."""
        return f"c:{self.shop_id}:{self.user_id}"


class ReplyWatch:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.single = single_statements(engine)
        self._insert = insert_for(engine)

    async def pending_replies(self, since: datetime, now: datetime) -> list[Pending]:
        reader = literal("c:") + tickets.c.shop_id + literal(":") + tickets.c.created_by
        read = read_cursors.alias("rc")
        mailed = mail_cursors.alias("mc")
        read_seq = func.coalesce(read.c.seq, 0)
        mailed_seq = func.coalesce(mailed.c.seq, 0)
        opted_out = exists().where(and_(mail_optouts.c.shop_id == tickets.c.shop_id,
                                        mail_optouts.c.user_id == tickets.c.created_by,
                                        or_(mail_optouts.c.ticket_id == 0, mail_optouts.c.ticket_id == tickets.c.id)))
        query = (
            select(messages.c.ticket_id, messages.c.seq, messages.c.created_at, tickets.c.shop_id,
                   tickets.c.created_by, tickets.c.lang, customers.c.email, read_seq, mailed_seq)
            .select_from(
                messages.join(tickets, tickets.c.id == messages.c.ticket_id)
                .join(customers, and_(customers.c.shop_id == tickets.c.shop_id,
                                      customers.c.user_id == tickets.c.created_by))
                .outerjoin(read, and_(read.c.ticket_id == messages.c.ticket_id, read.c.reader == reader))
                .outerjoin(mailed, and_(mailed.c.ticket_id == messages.c.ticket_id, mailed.c.reader == reader)))
            # A private note is not a reply: never mailed, never counted unread.
            .where(AGENT_MESSAGES, messages.c.internal == false(), messages.c.created_at > since,
                   messages.c.created_at <= now,
                   tickets.c.status != "closed", customers.c.email.is_not(None),
                   messages.c.seq > read_seq, messages.c.seq > mailed_seq, ~opted_out)
            .order_by(messages.c.ticket_id, messages.c.seq)
            .limit(SCAN_LIMIT))
        async with self.single.connect() as conn:
            rows = (await conn.execute(query)).all()
        found: dict[int, Pending] = {}
        for ticket_id, seq, at, shop_id, user_id, lang, email, read_at, mailed_at in rows:
            entry = found.get(ticket_id)
            if entry is None:
                entry = found[ticket_id] = Pending(ticket_id, shop_id, user_id, email, lang or "pl", int(read_at),
                                                   int(mailed_at))
            entry.replies.append(Reply(int(seq), at))
        return list(found.values())

    async def queue_replies(self, pending: Pending, seqs: Sequence[int], now: datetime) -> bool:
        """Record `seqs` as mailed and store their mail, if no other worker moved the
        mailed cursor since `pending` was read; False otherwise."""
        upto = max(seqs)
        async with self.engine.begin() as conn:
            if pending.mailed_seq == 0:
                moved = await conn.execute(self._insert(mail_cursors).values(
                    ticket_id=pending.ticket_id, reader=pending.reader, seq=upto, updated_at=now,
                ).on_conflict_do_nothing())
            else:
                moved = await conn.execute(update(mail_cursors).where(and_(
                    mail_cursors.c.ticket_id == pending.ticket_id, mail_cursors.c.reader == pending.reader,
                    mail_cursors.c.seq == pending.mailed_seq)).values(seq=upto, updated_at=now))
            if moved.rowcount != 1:
                await conn.rollback()
                return False
            await queue(conn, self._insert, key=f"replies:{pending.ticket_id}:{pending.reader}:{upto}",
                        kind="replies", channel="mail", recipient=pending.email, lang=pending.lang, now=now,
                        data={"seqs": list(seqs), "reader": pending.reader}, ticket_id=pending.ticket_id,
                        shop_id=pending.shop_id, user_id=pending.user_id)
        return True
