"""The notification jobs of a worker: mail delivery.

Built once per `Jobs` from the process's adapters and settings: the transport
(SMTP when `POMOC_SMTP_URL` is set, else the local mailbox), the mail settings,
the support calendar. Each job is a method taking `now`, like every job in
`server.worker.jobs`, and returns how many notifications it sent or queued.
"""

from __future__ import annotations

import logging
from datetime import datetime

from server.chat.adapters import Adapters
from server.store.notifications import NotificationStore
from server.worker.compose import MailSettings
from server.worker.mail import MailDelivery
from server.worker.smtp import MailboxTransport, SmtpTransport, Transport

log = logging.getLogger(__name__)


def transport_for(a: Adapters, store: NotificationStore, mail: MailSettings) -> Transport:
    settings = a.settings
    if settings.smtp_url:
        return SmtpTransport(settings.smtp_url, mail.envelope_from)
    return MailboxTransport(store, a.wall)


class Notifier:
    def __init__(self, a: Adapters) -> None:
        self.a = a
        self.store = NotificationStore(a.engine)
        self.mail_settings = MailSettings.from_settings(a.settings)
        self.transport = transport_for(a, self.store, self.mail_settings)
        self.mail = MailDelivery(store=self.store, transport=self.transport, settings=self.mail_settings,
                                 calendar=a.rules.policy.calendar, tickets=a.tickets, messages=a.messages,
                                 wall=a.wall)

    async def deliver_mail(self, now: datetime) -> int:
        done = await self.mail.deliver_due(now)
        if done.sent or done.failed:
            log.info("mail.delivered", extra={"sent": done.sent, "failed": done.failed, "dropped": done.dropped,
                                              "transport": self.transport.name})
        return done.sent
