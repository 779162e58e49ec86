"""Notifications in the database: queued with their events, claimed with leases, finished once.

`queue_notice` runs inside the caller's transaction — the one that opens the ticket,
changes its status or posts the lifecycle's system message — so a notification
exists exactly when its event does. Its `key` is the idempotency key (a second
queueing of the same notification stores nothing) and names the mail for good: the
Message-ID is made from it. Delivery (`server.worker.mail`, `server.worker.sms`)
claims due rows with a lease in one UPDATE (`FOR UPDATE SKIP LOCKED` on PostgreSQL),
so two workers never send the same row at once; a finished row is marked with how
it ended, a failed one tried again with capped exponential backoff. Also here: the
users' opt-outs and the local mailbox of the embedded mode. This module decides
nothing (`server.rules.notices` does) and talks to no mail server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.rules.notices import Notice
from server.store.db import single_statements
from server.store.models import customers, mail_optouts, mailbox, notifications, read_cursors, tickets
from server.store.outbox import backoff
from server.store.rows import insert_for

LEASE = timedelta(seconds=60)
# About a day of retries at the capped backoff (10 s, 20 s … 1 h), then the row is given up.
MAX_ATTEMPTS = 30


@dataclass(frozen=True, slots=True)
class Claimed:
    """A notification claimed for delivery."""

    id: int
    key: str
    kind: str
    channel: str
    recipient: str
    lang: str
    ticket_id: int | None
    shop_id: str | None
    user_id: str | None
    data: Mapping[str, Any]
    attempts: int
    created_at: datetime


async def queue(conn: AsyncConnection, insert: Any, *, key: str, kind: str, channel: str, recipient: str,
                lang: str, now: datetime, data: Mapping[str, Any], ticket_id: int | None = None,
                shop_id: str | None = None, user_id: str | None = None, outbox_id: int | None = None) -> bool:
    """Store one notification inside the caller's transaction; False if its key exists."""
    result = await conn.execute(insert(notifications).values(
        key=key[:400], kind=kind, channel=channel, recipient=recipient, lang=lang, ticket_id=ticket_id,
        shop_id=shop_id, user_id=user_id, outbox_id=outbox_id, data=dict(data), created_at=now,
        next_attempt_at=now, attempts=0,
    ).on_conflict_do_nothing(index_elements=[notifications.c.key]))
    return bool(result.rowcount)


async def queue_notice(conn: AsyncConnection, insert: Any, ticket_id: int, notice: Notice, anchor: int | str,
                       now: datetime) -> bool:
    """A mail about a ticket to its opener, inside the caller's transaction: at
    `notice.to`, or at the address stored for the opener (none: no mail). `anchor`
    tells this notice from others of its kind on the ticket (the seq of the system
    message it goes with)."""
    row = (await conn.execute(
        select(tickets.c.shop_id, tickets.c.created_by, tickets.c.lang, customers.c.email)
        .select_from(tickets.outerjoin(customers, and_(customers.c.shop_id == tickets.c.shop_id,
                                                       customers.c.user_id == tickets.c.created_by)))
        .where(tickets.c.id == ticket_id))).first()
    if row is None:
        return False
    recipient = notice.to or row.email
    if not recipient:
        return False
    return await queue(conn, insert, key=f"{notice.kind}:{ticket_id}:{anchor}", kind=notice.kind, channel="mail",
                       recipient=recipient, lang=row.lang or "pl", now=now, data=notice.data, ticket_id=ticket_id,
                       shop_id=row.shop_id, user_id=row.created_by)


class NotificationStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.single = single_statements(engine)
        self._insert = insert_for(engine)

    # ------------------------------------------------------------- delivery
    async def claim(self, channel: str, now: datetime, batch: int) -> list[Claimed]:
        """Due rows of a channel, leased to this worker until now + LEASE."""
        free = or_(notifications.c.locked_until.is_(None), notifications.c.locked_until < now)
        due = (select(notifications.c.id)
               .where(notifications.c.finished_at.is_(None), notifications.c.channel == channel,
                      notifications.c.next_attempt_at <= now, free)
               .order_by(notifications.c.next_attempt_at, notifications.c.id).limit(batch))
        if self.engine.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        async with self.engine.begin() as conn:
            ids = [r[0] for r in await conn.execute(due)]
            if not ids:
                return []
            rows = await conn.execute(
                update(notifications)
                .where(notifications.c.id.in_(ids), notifications.c.finished_at.is_(None), free)
                .values(locked_until=now + LEASE, attempts=notifications.c.attempts + 1)
                .returning(notifications.c.id, notifications.c.key, notifications.c.kind, notifications.c.channel,
                           notifications.c.recipient, notifications.c.lang, notifications.c.ticket_id,
                           notifications.c.shop_id, notifications.c.user_id, notifications.c.data,
                           notifications.c.attempts, notifications.c.created_at))
            claimed = [Claimed(r.id, r.key, r.kind, r.channel, r.recipient, r.lang, r.ticket_id, r.shop_id,
                               r.user_id, r.data or {}, int(r.attempts), r.created_at) for r in rows]
        return sorted(claimed, key=lambda c: c.id)

    async def finish(self, row_id: int, now: datetime, outcome: str, error: str | None = None) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(notifications).where(notifications.c.id == row_id).values(
                finished_at=now, outcome=outcome, locked_until=None, last_error=error[:500] if error else None))

    async def finish_many(self, row_ids: Iterable[int], now: datetime, outcome: str) -> None:
        """Record several rows as ended the same way, in one statement."""
        ids = list(row_ids)
        if not ids:
            return
        async with self.engine.begin() as conn:
            await conn.execute(update(notifications).where(notifications.c.id.in_(ids)).values(
                finished_at=now, outcome=outcome, locked_until=None, last_error=None))

    async def retry(self, row_id: int, attempts: int, error: str, now: datetime) -> bool:
        """Try again after the backoff; False (and given up) after MAX_ATTEMPTS."""
        if attempts >= MAX_ATTEMPTS:
            await self.finish(row_id, now, "gave_up", error)
            return False
        async with self.engine.begin() as conn:
            await conn.execute(update(notifications).where(notifications.c.id == row_id).values(
                locked_until=None, next_attempt_at=now + backoff(attempts), last_error=error[:500]))
        return True

    async def release(self, row_ids: Iterable[int]) -> None:
        """Give claimed rows back untouched (this worker ran out of its lease)."""
        ids = list(row_ids)
        if not ids:
            return
        async with self.engine.begin() as conn:
            await conn.execute(update(notifications).where(notifications.c.id.in_(ids))
                               .values(locked_until=None, attempts=notifications.c.attempts - 1))

    async def outcomes(self, ticket_id: int) -> list[dict[str, Any]]:
        """Every notification of a ticket with how it ended (tests, support questions)."""
        async with self.single.connect() as conn:
            rows = await conn.execute(select(notifications.c.id, notifications.c.key, notifications.c.kind,
                                             notifications.c.channel, notifications.c.outcome,
                                             notifications.c.attempts)
                                      .where(notifications.c.ticket_id == ticket_id).order_by(notifications.c.id))
            return [dict(r._mapping) for r in rows]

    async def cursor(self, ticket_id: int, reader: str) -> int:
        """How far a reader has read a ticket (0: nothing)."""
        async with self.single.connect() as conn:
            seq = (await conn.execute(select(read_cursors.c.seq).where(
                read_cursors.c.ticket_id == ticket_id, read_cursors.c.reader == reader))).scalar()
        return int(seq or 0)

    # -------------------------------------------------------------- opt-outs
    async def opt_out(self, shop_id: str, user_id: str, ticket_id: int, now: datetime) -> bool:
        """Turn a user's mail off for one ticket (or all, 0); False if the shop is gone."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(self._insert(mail_optouts).values(
                    shop_id=shop_id, user_id=user_id, ticket_id=ticket_id, created_at=now,
                ).on_conflict_do_nothing())
        except IntegrityError:
            return False
        return True

    async def opted_out(self, wanted: Iterable[tuple[str, str, int]]) -> set[tuple[str, str, int]]:
        """Which (shop, user, ticket) of `wanted` the user turned off, for that ticket or all."""
        asked = set(wanted)
        if not asked:
            return set()
        users = {(shop, user) for shop, user, _ in asked}
        async with self.single.connect() as conn:
            rows = (await conn.execute(select(mail_optouts.c.shop_id, mail_optouts.c.user_id,
                                              mail_optouts.c.ticket_id)
                                       .where(tuple_(mail_optouts.c.shop_id, mail_optouts.c.user_id).in_(users))
                                       )).all()
        off = {(r[0], r[1], int(r[2])) for r in rows}
        return {(shop, user, t) for shop, user, t in asked if (shop, user, 0) in off or (shop, user, t) in off}

    # --------------------------------------------------------------- mailbox
    async def keep(self, notification_id: int, recipient: str, subject: str, message: str, now: datetime) -> None:
        """A mail into the local mailbox (once per notification)."""
        async with self.engine.begin() as conn:
            await conn.execute(self._insert(mailbox).values(
                notification_id=notification_id, recipient=recipient, subject=subject[:500], message=message,
                created_at=now).on_conflict_do_nothing(index_elements=[mailbox.c.notification_id]))

    async def mailbox(self, recipient: str, limit: int = 50) -> list[dict[str, Any]]:
        """A recipient's newest mails in the local mailbox."""
        async with self.single.connect() as conn:
            rows = await conn.execute(select(mailbox.c.id, mailbox.c.subject, mailbox.c.message,
                                             mailbox.c.created_at)
                                      .where(mailbox.c.recipient == recipient)
                                      .order_by(mailbox.c.id.desc()).limit(limit))
            return [dict(r._mapping) for r in rows]
