"""Work waiting in the database, counted for the metrics: one statement, on indexes.

The escalations not yet delivered to the webhook (`outbox`), the mail and SMS not
yet finished (`notifications`, by channel) and the tickets held in the off-hours
queue now. Each count walks a partial or narrow index of the waiting rows only
(`ix_outbox_pending`, `ix_notifications_pending`, `ix_tickets_queued`), so a scrape
costs the same with ten thousand delivered rows or ten million; the caller caches
the answer for a few seconds anyway (`server.chat.scrape`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from server.metrics import Backlog
from server.store.db import single_statements
from server.store.models import notifications, outbox, tickets


async def count_backlog(engine: AsyncEngine, now: datetime) -> Backlog:
    waiting_outbox = select(func.count()).select_from(outbox).where(outbox.c.delivered_at.is_(None))
    queued = select(func.count()).select_from(tickets).where(and_(tickets.c.queued_until.is_not(None),
                                                                  tickets.c.queued_until > now))
    by_channel = (select(notifications.c.channel, func.count()).where(notifications.c.finished_at.is_(None))
                  .group_by(notifications.c.channel))
    async with single_statements(engine).connect() as conn:
        row = (await conn.execute(select(waiting_outbox.scalar_subquery(), queued.scalar_subquery()))).one()
        channels = {str(channel): int(count) for channel, count in await conn.execute(by_channel)}
    return Backlog(outbox=int(row[0]), notifications=channels, queued_tickets=int(row[1]))
