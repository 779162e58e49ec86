"""Delivery of mail notifications: claim, check, render, send, record — never on the hot path.

Each run claims due mail rows in batches (`server.store.notifications`, leased: two
workers never send one row at once), drops what must not go any more (the user
turned that mail off; every reply of an unread-replies mail was read in the panel
meanwhile), renders the rest in the recipient's language and sends them, a batch
shared over up to four SMTP connections at once (one ticket's mails over one, in
order). Sent rows are recorded every ten mails and at the end of each share; a
temporary failure (SMTP down, a 4xx) is tried again with capped exponential backoff
for about a day; a permanent one (5xx) is recorded as rejected. A worker that dies
between sending and recording sends those mails again after the lease (at most the
last ten of a share), with the same Message-IDs. Rows whose lease would run out
before their turn are handed back, so a slow server never lets a second worker send
them too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from server.clock import Clock
from server.rules.calendar import WorkingCalendar
from server.rules.mailtext import Links, MailView, ReplyLine, render
from server.rules.notices import ONCALL_KIND
from server.rules.records import Ticket
from server.store.messages import MessageStore
from server.store.notifications import LEASE, Claimed, NotificationStore
from server.store.tickets import TicketStore
from server.worker.compose import MailSettings, compose
from server.worker.smtp import PermanentFailure, TemporaryFailure, Transport

log = logging.getLogger(__name__)
# Sent mails are recorded every this many (one UPDATE for all of them) and at the end of
# each share: a worker killed in between sends at most these again, with their Message-IDs.
RECORD_EVERY = 10


@dataclass(frozen=True, slots=True)
class Delivered:
    sent: int = 0
    failed: int = 0
    dropped: int = 0

    def __add__(self, other: Delivered) -> Delivered:
        return Delivered(self.sent + other.sent, self.failed + other.failed, self.dropped + other.dropped)


class MailDelivery:
    def __init__(self, *, store: NotificationStore, transport: Transport, settings: MailSettings,
                 calendar: WorkingCalendar, tickets: TicketStore, messages: MessageStore, wall: Clock,
                 batch: int = 50, budget: float = 30.0, connections: int = 4) -> None:
        self.store = store
        self.transport = transport
        self.settings = settings
        self.calendar = calendar
        self.tickets = tickets
        self.messages = messages
        self.wall = wall
        self.batch = batch
        self.budget = budget  # seconds one run may spend before leaving the rest to the next
        # SMTP connections a batch is shared over (the local mailbox is one table: one).
        self.connections = connections if transport.name != "mailbox" else 1

    async def deliver_due(self, now: datetime) -> Delivered:
        done = Delivered()
        started = time.monotonic()
        while time.monotonic() - started < self.budget:
            rows = await self.store.claim("mail", now, self.batch)
            if not rows:
                break
            done += await self._batch(rows, now)
            if len(rows) < self.batch:
                break
        return done

    async def _batch(self, rows: list[Claimed], now: datetime) -> Delivered:
        claimed_at = time.monotonic()
        off = await self.store.opted_out((r.shop_id, r.user_id, r.ticket_id or 0) for r in rows
                                         if r.shop_id is not None and r.user_id is not None)
        found = {t.id: t for t in await self.tickets.get_many({r.ticket_id for r in rows if r.ticket_id})}
        ready: list[tuple[Claimed, EmailMessage]] = []
        dropped = 0
        for row in rows:
            if row.shop_id is not None and row.user_id is not None and (row.shop_id, row.user_id,
                                                                        row.ticket_id or 0) in off:
                await self.store.finish(row.id, now, "suppressed")
                dropped += 1
                continue
            ticket = found.get(row.ticket_id) if row.ticket_id else None
            try:
                message = await self._message(row, ticket)
            except (ValueError, LookupError, TypeError) as exc:
                # Data this code cannot word must not block the others (a database error
                # is not caught: the job fails and the rows come back after the lease).
                log.exception("mail.render_failed", extra={"notification_id": row.id, "kind": row.kind})
                await self.store.finish(row.id, now, "rejected", f"render: {type(exc).__name__}")
                dropped += 1
                continue
            if message is None:
                await self.store.finish(row.id, now, "read")
                dropped += 1
                continue
            ready.append((row, message))
        if not ready:
            return Delivered(dropped=dropped)
        # Several connections at once: a remote server's round trips, not this worker,
        # are what a mail waits for. One ticket's mails share a connection, so they leave
        # in the order they were queued (an acknowledgment before the closing).
        shares: dict[int, list[tuple[Claimed, EmailMessage]]] = {}
        for row, message in ready:
            shares.setdefault((row.ticket_id or row.id) % self.connections, []).append((row, message))
        lanes = list(shares.values())
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._lane(lane, now, claimed_at)) for lane in lanes]
        done = Delivered(dropped=dropped)
        for task in tasks:
            done += task.result()
        return done

    async def _lane(self, lane: list[tuple[Claimed, EmailMessage]], now: datetime, claimed_at: float) -> Delivered:
        """Send one share of a batch through one transport session."""
        sent: list[int] = []
        recorded = failed = 0
        outcome = "mailbox" if self.transport.name == "mailbox" else "sent"
        pending = list(lane)
        try:
            async with self.transport.session() as send:
                while pending:
                    row, message = pending[0]
                    if time.monotonic() - claimed_at > LEASE.total_seconds() * 0.75:
                        # The lease is nearly over: whatever is left goes back for the next run.
                        await self.store.release(r.id for r, _ in pending)
                        pending = []
                        break
                    try:
                        await send(message, row.recipient, row.id)
                    except PermanentFailure as exc:
                        await self.store.finish(row.id, now, "rejected", str(exc))
                        log.warning("mail.rejected", extra={"notification_id": row.id, "kind": row.kind,
                                                            "error": str(exc)})
                        failed += 1
                    except TemporaryFailure as exc:
                        await self._retry(row, str(exc), now)
                        failed += 1
                    else:
                        sent.append(row.id)
                    pending.pop(0)
                    if len(sent) - recorded >= RECORD_EVERY:
                        await self.store.finish_many(sent[recorded:], now, outcome)
                        recorded = len(sent)
        except TemporaryFailure as exc:
            # The server could not be reached (or went away): what was not tried waits for the backoff.
            for row, _ in pending:
                await self._retry(row, str(exc), now)
                failed += 1
        finally:
            await self.store.finish_many(sent[recorded:], now, outcome)
        return Delivered(len(sent), failed)

    async def _retry(self, row: Claimed, error: str, now: datetime) -> None:
        again = await self.store.retry(row.id, row.attempts, error, now)
        log.warning("mail.failed" if again else "mail.gave_up",
                    extra={"notification_id": row.id, "kind": row.kind, "attempts": row.attempts, "error": error})

    async def _message(self, row: Claimed, ticket: Ticket | None) -> EmailMessage | None:
        """The mail of a row; None when nothing is left to say (every reply was read)."""
        title = ticket.title if ticket is not None else str(row.data.get("title", ""))
        replies: tuple[ReplyLine, ...] = ()
        if row.kind == "replies":
            replies = await self._unread_replies(row)
            if not replies:
                return None
        if row.kind == ONCALL_KIND:
            links = Links(console=f"{self.settings.public_base}/agent")
        else:
            links = self.settings.customer_links(row.ticket_id, row.shop_id, row.user_id, row.lang)
        view = MailView(kind=row.kind, lang=row.lang, ticket_id=row.ticket_id, title=title, data=row.data,
                        links=links, replies=replies)
        return compose(render(view, self.calendar), key=row.key, recipient=row.recipient, lang=row.lang,
                       ticket_id=row.ticket_id, settings=self.settings, links=links, sent_at=self.wall.now())

    async def _unread_replies(self, row: Claimed) -> tuple[ReplyLine, ...]:
        """The replies the mail is about that are still unread now."""
        seqs = sorted(int(s) for s in row.data.get("seqs", ()))
        if not seqs or row.ticket_id is None:
            return ()
        read = await self.store.cursor(row.ticket_id, str(row.data.get("reader", "")))
        wanted = {s for s in seqs if s > read}
        if not wanted:
            return ()
        found = await self.messages.between(row.ticket_id, min(wanted) - 1, max(wanted))
        return tuple(ReplyLine(m.author.name, m.created_at, m.body) for m in found
                     if m.seq in wanted and m.author.kind == "agent" and not m.internal)
