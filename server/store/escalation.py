"""Escalations: durable notifications when nobody reacts, written to the outbox.

`ticket.critical` is stored with the ticket itself (same transaction). The SLA job
finds open tickets whose deadline now in force (`sla_due_at`: the first reaction's,
or the next response's once the customer wrote again after an agent's answer; see
`server.rules.deadlines`) or its warning has passed and adds `sla.warning` /
`sla.breached` rows, saying which deadline in `step`. The dedup key includes the
deadline (and, for later steps, the step), so each happens once per deadline however
many workers run, and a severity change that moves the deadline can warn again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from server.rules.deadlines import NEXT_RESPONSE, step
from server.store.models import outbox, shops, tickets


def ticket_payload(row: Any, event: str, now: datetime) -> dict[str, Any]:
    return {
        "event": event,
        "ticket_id": row.id,
        "title": row.title,
        "severity": row.severity,
        "status": row.status,
        "shop": row.shop_id,
        "shop_name": row.shop_name,
        "created_at": row.created_at.isoformat(),
        "sla_due_at": row.sla_due_at.isoformat() if row.sla_due_at else None,
        "step": step(row.sla_due_at, row.first_response_at),
        "at": now.isoformat(),
    }


async def find_due(engine: AsyncEngine, now: datetime, batch: int = 500) -> int:
    """Add sla.warning and sla.breached rows for tickets nobody reacted to; returns
    how many new rows were added."""
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    columns = (tickets.c.id, tickets.c.title, tickets.c.severity, tickets.c.status, tickets.c.shop_id,
               shops.c.name.label("shop_name"), tickets.c.created_at, tickets.c.sla_due_at,
               tickets.c.sla_warning_at, tickets.c.first_response_at)
    source = tickets.join(shops, shops.c.id == tickets.c.shop_id)
    # A deadline runs only on open tickets the agent has not answered last.
    unanswered = tickets.c.status == "open"
    added = 0
    async with engine.begin() as conn:
        for event, deadline in (("sla.warning", tickets.c.sla_warning_at), ("sla.breached", tickets.c.sla_due_at)):
            rows = (await conn.execute(select(*columns).select_from(source).where(
                and_(unanswered, deadline.is_not(None), deadline <= now)).order_by(deadline).limit(batch))).all()
            for row in rows:
                stamp = (row.sla_warning_at if event == "sla.warning" else row.sla_due_at).isoformat()
                # The first reaction's key is what it always was (rows stored before
                # later steps existed keep deduplicating).
                later = "" if row.first_response_at is None else f"{NEXT_RESPONSE}:"
                result = await conn.execute(insert(outbox).values(
                    ticket_id=row.id, event=event, dedup_key=f"{event}:{row.id}:{later}{stamp}",
                    payload=ticket_payload(row, event, now), created_at=now, next_attempt_at=now, attempts=0,
                ).on_conflict_do_nothing(index_elements=[outbox.c.dedup_key]))
                added += result.rowcount or 0
    return added
