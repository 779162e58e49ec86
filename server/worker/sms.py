"""SMS to the on-call team: a small gateway seam and its delivery job.

A `Gateway` sends one text to one phone and says whether a failure is worth trying
again. Two are built in:

- `pomoc` (the default): a JSON POST `{"to": "+48…", "text": "…"}` to `POMOC_SMS_URL`,
  signed exactly like the escalation webhook (`X-Pomoc-Signature: sha256=HMAC(secret,
  timestamp.body)` with `POMOC_WEBHOOK_SECRET`, `X-Pomoc-Timestamp`, and
  `X-Pomoc-Delivery` for deduplication) — for a relay of your own;
- `smsapi`: SMSAPI.pl's REST API (`POST https://api.smsapi.pl/sms.do`, `Authorization:
  Bearer POMOC_SMS_TOKEN`, form fields `to` (digits with the country code), `message`,
  `from` (`POMOC_SMS_FROM`, a sender name registered there, optional), `encoding=utf-8`,
  `format=json`, and `idx` with `check_idx=1`, so SMSAPI itself refuses a second copy of
  one notification). It answers 200 with `{"count": …, "list": […]}`, or with
  `{"error": code, "message": …}` when it refused the message.

Delivery (`SmsDelivery`) claims due SMS rows like the mail delivery (leased, so two
workers never send one), sends each, records it sent, retries a temporary failure
(no answer, 5xx, 401, 403, 408, 429, an SMSAPI error) with capped backoff for about a
day and records a permanent one (any other 4xx) as rejected. The text is
`server.rules.mailtext.sms_text`'s.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from typing import Protocol

import httpx

from server.metrics import Metrics
from server.rules.calendar import WorkingCalendar
from server.rules.mailtext import sms_text
from server.settings import Settings
from server.store.notifications import Claimed, NotificationStore
from server.worker.smtp import PermanentFailure, TemporaryFailure
from server.worker.webhook import signature

log = logging.getLogger(__name__)


class Gateway(Protocol):
    name: str

    async def send(self, client: httpx.AsyncClient, to: str, text: str, delivery: Claimed, at: datetime) -> None:
        """Raises TemporaryFailure or PermanentFailure."""


def _failure(response: httpx.Response) -> Exception | None:
    if 200 <= response.status_code < 300:
        return None
    # Busy, down, or refusing our credentials (fixed by the operator, then it goes): later.
    if response.status_code >= 500 or response.status_code in (401, 403, 408, 429):
        return TemporaryFailure(f"HTTP {response.status_code}")
    return PermanentFailure(f"HTTP {response.status_code}")


async def _post(client: httpx.AsyncClient, url: str, headers: dict[str, str], *, content: bytes | None = None,
                data: dict[str, str] | None = None) -> httpx.Response:
    try:
        return await client.post(url, headers=headers, content=content, data=data)
    except httpx.HTTPError as exc:
        raise TemporaryFailure(f"{type(exc).__name__}: {exc}"[:300]) from exc


class PomocGateway:
    """JSON `{to, text}`, signed like the webhook."""

    name = "pomoc"

    def __init__(self, url: str, secret: str) -> None:
        self.url = url
        self.secret = secret

    async def send(self, client: httpx.AsyncClient, to: str, text: str, delivery: Claimed, at: datetime) -> None:
        body = json.dumps({"to": to, "text": text}, ensure_ascii=False, sort_keys=True).encode()
        stamp = str(int(at.timestamp()))
        response = await _post(client, self.url, content=body, headers={
            "Content-Type": "application/json",
            "User-Agent": "Pomoc-SMS/1",
            "X-Pomoc-Event": "sms",
            "X-Pomoc-Delivery": str(delivery.id),
            "X-Pomoc-Timestamp": stamp,
            "X-Pomoc-Signature": signature(self.secret, stamp, body),
        })
        failure = _failure(response)
        if failure is not None:
            raise failure


class SmsApiGateway:
    """SMSAPI.pl (https://www.smsapi.pl/docs, "Wysyłka SMS")."""

    name = "smsapi"

    def __init__(self, url: str, token: str, sender: str = "") -> None:
        self.url = url
        self.token = token
        self.sender = sender

    @staticmethod
    def idx(delivery: Claimed) -> str:
        """The `idx` SMSAPI deduplicates a notification's SMS on: 36 letters and digits,
        the same for every attempt."""
        return "pomoc" + hashlib.sha256(delivery.key.encode()).hexdigest()[:31]

    async def send(self, client: httpx.AsyncClient, to: str, text: str, delivery: Claimed, at: datetime) -> None:
        form = {"to": to.lstrip("+"), "message": text, "encoding": "utf-8", "format": "json",
                "idx": self.idx(delivery), "check_idx": "1"}
        if self.sender:
            form["from"] = self.sender
        response = await _post(client, self.url, data=form, headers={
            "Authorization": f"Bearer {self.token}", "User-Agent": "Pomoc-SMS/1"})
        failure = _failure(response)
        if failure is not None:
            raise failure
        try:
            answer = response.json()
        except ValueError:
            raise TemporaryFailure("SMSAPI answered with no JSON") from None
        if isinstance(answer, dict) and answer.get("error"):
            raise TemporaryFailure(f"SMSAPI error {answer.get('error')}: {str(answer.get('message', ''))[:200]}")


def gateway_for(settings: Settings) -> Gateway | None:
    if not settings.sms_url:
        return None
    if settings.sms_gateway == "smsapi":
        return SmsApiGateway(settings.sms_url, settings.sms_token, settings.sms_from)
    return PomocGateway(settings.sms_url, settings.webhook_secret)


class SmsDelivery:
    def __init__(self, store: NotificationStore, gateway: Gateway, calendar: WorkingCalendar,
                 client: httpx.AsyncClient, batch: int = 50, metrics: Metrics | None = None) -> None:
        self.metrics = metrics or Metrics()
        self.store = store
        self.gateway = gateway
        self.calendar = calendar
        self.client = client
        self.batch = batch

    async def deliver_due(self, now: datetime) -> int:
        sent = 0
        for row in await self.store.claim("sms", now, self.batch):
            text = sms_text(row.data, row.ticket_id, self.calendar, row.lang)
            try:
                await self.gateway.send(self.client, row.recipient, text, row, now)
            except PermanentFailure as exc:
                await self.store.finish(row.id, now, "rejected", str(exc))
                self.metrics.sms.labels("rejected").inc()
                log.warning("sms.rejected", extra={"notification_id": row.id, "error": str(exc)})
            except TemporaryFailure as exc:
                again = await self.store.retry(row.id, row.attempts, str(exc), now)
                self.metrics.sms.labels("failed").inc()
                log.warning("sms.failed" if again else "sms.gave_up",
                            extra={"notification_id": row.id, "attempts": row.attempts, "error": str(exc)})
            else:
                await self.store.finish(row.id, now, "sent")
                self.metrics.sms.labels("sent").inc()
                sent += 1
        return sent
