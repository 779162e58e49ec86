"""Where mails go: an SMTP server (aiosmtplib), or the local mailbox without one.

A transport opens a session for a batch of mails (one SMTP connection for all of
them) and sends each to one recipient. `smtp://user:pass@host:587` upgrades with
STARTTLS whenever the server offers it; `smtps://…:465` speaks TLS from the first
byte. Failures come out as `TemporaryFailure` (connection refused or lost, a 4xx
answer: try again later) or `PermanentFailure` (a 5xx answer about this mail or
recipient: trying again cannot help). Without `POMOC_SMTP_URL` the mails are kept in
the database's `mailbox` table (the embedded mode; `/demo/mailbox` shows the demo
user's).
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib

from server.clock import Clock
from server.store.notifications import NotificationStore

# Sends one mail to one recipient; the notification id lets the mailbox keep it once.
Send = Callable[[EmailMessage, str, int], Awaitable[None]]


class TemporaryFailure(Exception):
    """Try again later: the server is down or busy, or answered 4xx."""


class PermanentFailure(Exception):
    """The server refused this mail or recipient for good (5xx)."""


class Transport(Protocol):
    name: str

    def session(self) -> contextlib.AbstractAsyncContextManager[Send]: ...


# 5xx answers that are the sender's configuration, not the mail: keep it and retry
# once the operator has fixed the credentials or the sender address.
_CONFIGURATION = {530, 534, 535, 538}


def _failure(code: int, what: str) -> Exception:
    if code >= 500 and code not in _CONFIGURATION:
        return PermanentFailure(f"{what}: {code}")
    return TemporaryFailure(f"{what}: {code}")


class SmtpTransport:
    name = "smtp"

    def __init__(self, url: str, envelope_from: str, *, timeout: float = 30.0,
                 tls_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        self.implicit_tls = parts.scheme == "smtps"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (465 if self.implicit_tls else 587)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.envelope_from = envelope_from
        self.timeout = timeout
        self.tls_context = tls_context

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Send]:
        client = aiosmtplib.SMTP(hostname=self.host, port=self.port, username=self.username,
                                 password=self.password, use_tls=self.implicit_tls,
                                 # None: STARTTLS whenever the server offers it.
                                 start_tls=False if self.implicit_tls else None,
                                 timeout=self.timeout, tls_context=self.tls_context)
        try:
            await client.connect()
        except aiosmtplib.SMTPResponseException as exc:
            raise _failure(exc.code, "connect") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TemporaryFailure(f"connect: {type(exc).__name__}: {exc}") from exc

        async def send(message: EmailMessage, recipient: str, notification_id: int) -> None:
            try:
                await client.send_message(message, sender=self.envelope_from, recipients=[recipient])
            except aiosmtplib.SMTPRecipientsRefused as exc:
                raise _failure(min(r.code for r in exc.recipients), "recipient refused") from exc
            except aiosmtplib.SMTPResponseException as exc:
                raise _failure(exc.code, type(exc).__name__) from exc
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                raise TemporaryFailure(f"{type(exc).__name__}: {exc}") from exc

        try:
            yield send
        finally:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await client.quit()


class MailboxTransport:
    """The embedded mode's mail server: every mail kept in the database."""

    name = "mailbox"

    def __init__(self, store: NotificationStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Send]:
        async def send(message: EmailMessage, recipient: str, notification_id: int) -> None:
            now: datetime = self.clock.now()
            await self.store.keep(notification_id, recipient, str(message["Subject"]), message.as_string(), now)

        yield send
