"""On-call notifications: every escalation in the outbox fanned out to the on-call team.

The escalations themselves (`ticket.critical`, `sla.warning`, `sla.breached`) are
outbox rows, stored with the ticket or by the SLA job exactly once per deadline
(`server.store.escalation`); the webhook delivers them as before. `fan_out` turns
each into one mail per on-call address and one SMS per on-call phone, in one
transaction per escalation, keyed by the outbox row and the recipient: workers
running it at once store every notification once. Escalations older than `since`
are not fanned out any more (a team configured today is not paged for last week).
Which events page the team, and how, is `server.rules.notices.oncall_channels`'.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncEngine

from server.rules.notices import ONCALL_EVENTS, ONCALL_KIND, oncall_channels
from server.store.models import notifications, outbox
from server.store.notifications import queue
from server.store.rows import insert_for


async def fan_out(engine: AsyncEngine, now: datetime, since: datetime, emails: Sequence[str],
                  phones: Sequence[str], lang: str = "pl", batch: int = 200) -> int:
    """Queue the on-call mails and SMS of escalations not fanned out yet; returns how
    many notifications were added."""
    if not emails and not phones:
        return 0
    insert = insert_for(engine)
    done = exists().where(notifications.c.outbox_id == outbox.c.id)
    query = (select(outbox.c.id, outbox.c.ticket_id, outbox.c.event, outbox.c.payload)
             .where(outbox.c.event.in_(ONCALL_EVENTS), outbox.c.created_at > since, ~done)
             .order_by(outbox.c.id).limit(batch))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    added = 0
    for row in rows:
        async with engine.begin() as conn:
            for channel in oncall_channels(row.event):
                for recipient in emails if channel == "mail" else phones:
                    added += await queue(conn, insert, key=f"oncall:{row.id}:{channel}:{recipient}",
                                         kind=ONCALL_KIND, channel=channel, recipient=recipient, lang=lang,
                                         now=now, data=dict(row.payload or {}), ticket_id=row.ticket_id,
                                         outbox_id=row.id)
    return added
