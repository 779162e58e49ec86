"""The outbox: durable notifications waiting for delivery, claimed with leases.

Each pending row is claimed with a lease (`locked_until`) in one UPDATE, so two
workers never send the same row at the same time; a delivered row is marked, a
failed one scheduled again with capped exponential backoff. Rows live in the
database, so a restart loses none. Sending is the worker's (`server.worker.webhook`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from server.store.models import outbox

LEASE = timedelta(seconds=60)
MAX_BACKOFF = timedelta(hours=1)


def backoff(attempts: int) -> timedelta:
    """10 s, 20 s, 40 s … up to an hour."""
    return min(timedelta(seconds=10 * 2 ** max(0, attempts - 1)), MAX_BACKOFF)


async def claim(engine: AsyncEngine, now: datetime, batch: int) -> list[dict[str, Any]]:
    due = (select(outbox.c.id).where(and_(
        outbox.c.delivered_at.is_(None), outbox.c.next_attempt_at <= now,
        or_(outbox.c.locked_until.is_(None), outbox.c.locked_until < now),
    )).order_by(outbox.c.id).limit(batch))
    if engine.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    async with engine.begin() as conn:
        ids = [r[0] for r in await conn.execute(due)]
        if not ids:
            return []
        rows = await conn.execute(
            update(outbox).where(and_(outbox.c.id.in_(ids), outbox.c.delivered_at.is_(None),
                                      or_(outbox.c.locked_until.is_(None), outbox.c.locked_until < now)))
            .values(locked_until=now + LEASE, attempts=outbox.c.attempts + 1)
            .returning(outbox.c.id, outbox.c.event, outbox.c.payload, outbox.c.attempts))
        return [dict(r._mapping) for r in rows]


async def delivered(engine: AsyncEngine, row_id: int, now: datetime) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(outbox).where(outbox.c.id == row_id)
                           .values(delivered_at=now, locked_until=None, last_error=None))


async def failed(engine: AsyncEngine, row_id: int, attempts: int, error: str, now: datetime) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(outbox).where(outbox.c.id == row_id).values(
            locked_until=None, next_attempt_at=now + backoff(attempts), last_error=error[:500]))
