"""Delivery of the outbox to the escalation webhook (an SMS or e-mail gateway plugs in there).

Each claimed row (`server.store.outbox`) is POSTed as JSON with an HMAC-SHA256
signature; a 2xx marks it delivered, anything else schedules a retry with capped
exponential backoff. A worker that dies between the POST and marking it delivered
sends it again after the lease: receivers deduplicate on `X-Pomoc-Delivery`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from server.store import outbox

log = logging.getLogger(__name__)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


@dataclass(frozen=True, slots=True)
class Delivery:
    sent: int
    failed: int


async def deliver_due(engine: AsyncEngine, url: str | None, secret: str, now: datetime,
                      client: httpx.AsyncClient, batch: int = 50) -> Delivery:
    if not url:
        return Delivery(0, 0)
    sent = failed = 0
    for row in await outbox.claim(engine, now, batch):
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
        if error is None:
            await outbox.delivered(engine, row["id"], now)
            sent += 1
        else:
            attempts = int(row["attempts"])
            await outbox.failed(engine, row["id"], attempts, error, now)
            failed += 1
            log.warning("webhook.failed", extra={"outbox_id": row["id"], "event": row["event"],
                                                 "attempts": attempts, "error": error})
    return Delivery(sent, failed)
