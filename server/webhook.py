"""Delivery of the outbox to the escalation webhook (an SMS or e-mail gateway plugs in there).

Each pending row is claimed with a lease (`locked_until`) in one UPDATE, so two
workers never send the same row at the same time; it is POSTed as JSON with an
HMAC-SHA256 signature; a 2xx marks it delivered, anything else schedules a retry
with capped exponential backoff. Rows live in the database, so a restart loses
none. A worker that dies between the POST and marking it delivered sends it again
after the lease: receivers deduplicate on `X-Pomoc-Delivery`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from server.models import outbox

log = logging.getLogger(__name__)
LEASE = timedelta(seconds=60)
MAX_BACKOFF = timedelta(hours=1)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def backoff(attempts: int) -> timedelta:
    """10 s, 20 s, 40 s … up to an hour."""
    return min(timedelta(seconds=10 * 2 ** max(0, attempts - 1)), MAX_BACKOFF)


@dataclass(frozen=True, slots=True)
class Delivery:
    sent: int
    failed: int


async def claim(engine: AsyncEngine, now: datetime, batch: int) -> list[dict[str, object]]:
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


async def deliver_due(engine: AsyncEngine, url: str | None, secret: str, now: datetime,
                      client: httpx.AsyncClient, batch: int = 50) -> Delivery:
    if not url:
        return Delivery(0, 0)
    sent = failed = 0
    for row in await claim(engine, now, batch):
        body = json.dumps(row["payload"], ensure_ascii=False, sort_keys=True).encode()
        stamp = str(int(now.timestamp()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Pomoc-Webhook/1",
            "X-Pomoc-Event": str(row["event"]),
            "X-Pomoc-Delivery": str(row["id"]),
            "X-Pomoc-Timestamp": stamp,
            "X-Pomoc-Signature": signature(secret, stamp, body),
        }
        error: str | None = None
        try:
            response = await client.post(url, content=body, headers=headers)
            if not 200 <= response.status_code < 300:
                error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        async with engine.begin() as conn:
            if error is None:
                await conn.execute(update(outbox).where(outbox.c.id == row["id"])
                                   .values(delivered_at=now, locked_until=None, last_error=None))
                sent += 1
            else:
                attempts = int(row["attempts"])  # type: ignore[call-overload]
                await conn.execute(update(outbox).where(outbox.c.id == row["id"]).values(
                    locked_until=None, next_attempt_at=now + backoff(attempts), last_error=error))
                failed += 1
                log.warning("webhook.failed", extra={"outbox_id": row["id"], "event": row["event"],
                                                     "attempts": attempts, "error": error})
    return Delivery(sent, failed)
